//! `Session`: how a token list becomes passes (decode for one token, prefill
//! chunks otherwise), what each pass is asked to read back, the context
//! limit, and reading the results into an `Output` — with the toy model,
//! which records every pass it runs.

mod support;

use forge_runtime::{Output, Readback};
use support::toy_model::{favourite, CONTEXT, VOCAB};
use support::{toy_project, toy_session};

#[test]
fn a_long_prompt_runs_in_chunks_and_only_the_last_reads_back() {
    let project = toy_project("session-chunks", false);
    let mut session = toy_session(&project);
    let tokens: Vec<u32> = (10..27).collect(); // 17 tokens: 8 + 8 + 1
    let token = session.argmax(&tokens).unwrap();
    assert_eq!(token, favourite(26, 16));
    // (tokens, position, readback): Nothing twice, then the argmax on the
    // decode path, which a one-token pass always takes.
    assert_eq!(session.model().passes, [(8, 0, 0), (8, 8, 0), (1, 16, 3)]);
    assert_eq!(session.position(), 17);
    let next = session.argmax(&[token]).unwrap();
    assert_eq!(next, favourite(token, 17));
    assert_eq!(session.model().passes[3], (1, 17, 3));
}

#[test]
fn all_logits_reads_every_pass_and_last_logits_only_the_last_row() {
    let project = toy_project("session-logits", false);
    let mut session = toy_session(&project);
    let tokens: Vec<u32> = (0..11).collect();
    let Output::Logits(all) = session.forward(&tokens, Readback::AllLogits).unwrap() else {
        panic!("not logits");
    };
    assert_eq!(all.len(), 11 * VOCAB);
    assert_eq!(session.model().passes, [(8, 0, 1), (3, 8, 1)]);
    for (row, &t) in tokens.iter().enumerate() {
        let best =
            (0..VOCAB).max_by(|&a, &b| all[row * VOCAB + a].total_cmp(&all[row * VOCAB + b]));
        assert_eq!(best, Some(favourite(t, row) as usize), "row {row}");
    }
    session.reset();
    assert_eq!(session.position(), 0);
    assert!(session.model().passes.is_empty(), "reset reaches the model");
    let Output::Logits(last) = session.forward(&tokens, Readback::LastLogits).unwrap() else {
        panic!("not logits");
    };
    assert_eq!(last, all[10 * VOCAB..]);
    assert_eq!(session.model().passes, [(8, 0, 0), (3, 8, 2)]);
}

#[test]
fn candidates_see_only_the_penalty_window_and_come_back_best_first() {
    let project = toy_project("session-candidates", false);
    let mut session = toy_session(&project);
    let history: Vec<u32> = (100..110).collect();
    let readback = Readback::Candidates {
        repeat_penalty: 2.0,
        recent: &history,
    };
    let Output::Candidates(c) = session.forward(&[7], readback).unwrap() else {
        panic!("not candidates");
    };
    // The toy's window is 4 ids: 4 + 4 recorded.
    assert_eq!(session.model().passes, [(1, 0, 8)]);
    assert_eq!(c.len(), 64);
    assert_eq!(c[0].0, favourite(7, 0));
    assert!(c.windows(2).all(|w| w[0].1 >= w[1].1), "{c:?}");
}

#[test]
fn bad_token_lists_are_refused_before_any_pass() {
    let project = toy_project("session-errors", false);
    let mut session = toy_session(&project);
    let err = |r: anyhow::Result<Output>| r.unwrap_err().to_string();
    assert_eq!(
        err(session.forward(&[], Readback::Argmax)),
        "no tokens to run"
    );
    assert!(err(session.forward(&[VOCAB as u32], Readback::Argmax))
        .contains("outside the vocabulary of 384"));
    let full: Vec<u32> = vec![1; CONTEXT];
    session.forward(&full, Readback::Nothing).unwrap();
    let e = err(session.forward(&[1], Readback::Argmax));
    assert!(
        e.contains("24 cached + 1 new tokens exceed the context of 24"),
        "{e}"
    );
    assert!(e.contains("forge compile --context"), "{e}");
    assert_eq!(session.model().passes.len(), 3);
    assert!(session.forward(&[1; 3], Readback::Nothing).is_err());
}

#[test]
fn a_sequence_without_recurrent_state_cuts_back_to_an_earlier_position() {
    let project = toy_project("session-truncate", false);
    let mut session = toy_session(&project);
    session.argmax(&[10, 11, 12, 13, 14]).unwrap();
    session.truncate(2).unwrap();
    assert_eq!(session.position(), 2);
    // The next pass starts at position 2, over what positions 2.. held.
    assert_eq!(session.argmax(&[40, 41]).unwrap(), favourite(41, 3));
    assert_eq!(session.model().passes.last(), Some(&(2, 2, 3)));
    let e = session.truncate(5).unwrap_err();
    assert!(
        e.to_string()
            .contains("cannot cut a sequence of 4 tokens back to 5"),
        "{e}"
    );
}
