//! A sequence's memory copied out of the model at one position and put back
//! later: how the server's prompt cache resumes a prompt it has seen, for
//! models whose recurrent state cannot be cut back to a shorter prefix.

use anyhow::{bail, Result};

use crate::model::{CompiledModel, SequenceMemory};
use crate::session::Session;

/// A sequence's memory at one position, copied out of the model.
pub struct Snapshot {
    position: usize,
    positional: Vec<Rows>,
    recurrent: Vec<Vec<u8>>,
}

/// Rows `0..position` of every head of one positional buffer, head after head.
struct Rows {
    heads: usize,
    row_bytes: usize,
    bytes: Vec<u8>,
}

impl Snapshot {
    /// Tokens of the sequence it holds.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Host memory it takes (what `--cache-mb` bounds).
    pub fn bytes(&self) -> usize {
        let positional: usize = self.positional.iter().map(|r| r.bytes.len()).sum();
        let recurrent: usize = self.recurrent.iter().map(Vec::len).sum();
        positional + recurrent
    }
}

impl<M: CompiledModel> Session<M> {
    /// Copies out the sequence as it stands: KV rows 0..position of every
    /// head, recurrent state whole.
    pub fn snapshot(&self) -> Snapshot {
        self.copy_out(self.position())
    }

    /// The sequence's first `len` tokens, for a model without recurrent
    /// state: its KV rows up to `len` do not depend on the tokens after them,
    /// so a prefix can be kept after the whole prompt has run.
    pub fn snapshot_prefix(&self, len: usize) -> Result<Snapshot> {
        if M::INFO.recurrent_state {
            bail!("a model with recurrent state holds only the whole sequence; snapshot it at {len} tokens");
        }
        if len > self.position() {
            bail!(
                "cannot snapshot {len} tokens of a sequence of {}",
                self.position()
            );
        }
        Ok(self.copy_out(len))
    }

    /// KV rows `0..position` of every head and the recurrent state.
    fn copy_out(&self, position: usize) -> Snapshot {
        let context = M::INFO.context_length;
        let memory = self.model().memory();
        let positional = memory
            .positional
            .iter()
            .map(|p| {
                let mut bytes = Vec::with_capacity(p.heads * position * p.row_bytes);
                for head in 0..p.heads {
                    let start = head * context * p.row_bytes;
                    bytes.extend(p.buffer.read_bytes(start, position * p.row_bytes));
                }
                Rows {
                    heads: p.heads,
                    row_bytes: p.row_bytes,
                    bytes,
                }
            })
            .collect();
        let recurrent = memory
            .recurrent
            .iter()
            .map(|b| b.read_bytes(0, b.len()))
            .collect();
        Snapshot {
            position,
            positional,
            recurrent,
        }
    }

    /// Puts a snapshot back: the next pass continues from its position
    /// exactly as the sequence it was taken from would. Rows past the
    /// position are left as they are: no pass reads them before writing them.
    pub fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        let context = M::INFO.context_length;
        let memory = self.model().memory();
        check(&memory, snapshot, context)?;
        let position = snapshot.position;
        for (p, rows) in memory.positional.iter().zip(&snapshot.positional) {
            let block = position * p.row_bytes;
            for head in 0..p.heads {
                let data = &rows.bytes[head * block..(head + 1) * block];
                p.buffer.write_bytes(head * context * p.row_bytes, data);
            }
        }
        for (buffer, bytes) in memory.recurrent.iter().zip(&snapshot.recurrent) {
            buffer.write_bytes(0, bytes);
        }
        self.set_position(position);
        Ok(())
    }
}

/// Refuses a snapshot whose buffers are not this model's, before anything is written.
fn check(memory: &SequenceMemory, snapshot: &Snapshot, context: usize) -> Result<()> {
    let position = snapshot.position;
    if position > context {
        bail!("the snapshot holds {position} tokens, more than the context of {context}");
    }
    let (ours, theirs) = (memory.positional.len(), snapshot.positional.len());
    if ours != theirs {
        bail!("the snapshot has {theirs} positional buffers, this model {ours}");
    }
    for (i, (p, rows)) in memory
        .positional
        .iter()
        .zip(&snapshot.positional)
        .enumerate()
    {
        if (rows.heads, rows.row_bytes) != (p.heads, p.row_bytes) {
            bail!(
                "positional buffer {i} of the snapshot has {} heads of {}-byte rows, \
                 this model's {} heads of {}-byte rows",
                rows.heads,
                rows.row_bytes,
                p.heads,
                p.row_bytes
            );
        }
        if p.buffer.len() < p.heads * context * p.row_bytes {
            bail!(
                "positional buffer {i} of this model holds {} bytes, \
                 less than {} heads of {context} rows of {} bytes",
                p.buffer.len(),
                p.heads,
                p.row_bytes
            );
        }
    }
    let (ours, theirs) = (memory.recurrent.len(), snapshot.recurrent.len());
    if ours != theirs {
        bail!("the snapshot has {theirs} recurrent state buffers, this model {ours}");
    }
    for (i, (buffer, bytes)) in memory.recurrent.iter().zip(&snapshot.recurrent).enumerate() {
        if buffer.len() != bytes.len() {
            bail!(
                "recurrent state buffer {i} of the snapshot holds {} bytes, this model's {}",
                bytes.len(),
                buffer.len()
            );
        }
    }
    Ok(())
}
