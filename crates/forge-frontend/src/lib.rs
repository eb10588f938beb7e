//! forge-frontend: reads checkpoints from disk into forge-ir models.
