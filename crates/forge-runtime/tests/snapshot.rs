//! `Session::snapshot` and `Session::restore` with the toy model, which
//! keeps KV-like rows per position and a recurrent-like tally: a restored
//! sequence holds exactly what it held when the snapshot was taken and goes
//! on as it would have, and a snapshot of another model's memory is refused.

mod support;

use forge_runtime::gpu::{Buffer, Gpu};
use forge_runtime::weights::WeightsFile;
use forge_runtime::{
    CompiledModel, ModelInfo, Output, Pass, PositionRows, Readback, Result, Results, SequenceMemory,
};
use support::toy_model::{Toy, CONTEXT, KV_HEADS, KV_ROW_BYTES};
use support::{model_session, toy_project, toy_session};

/// Rows `0..len` of every head of the toy's KV buffer, then its tally.
fn memory_of(toy: &Toy, len: usize) -> (Vec<u32>, Vec<u32>) {
    let rows = (0..KV_HEADS)
        .flat_map(|h| {
            toy.kv
                .read_u32(h * CONTEXT * KV_ROW_BYTES, len * KV_ROW_BYTES / 4)
        })
        .collect();
    (rows, toy.tally.read_u32(0, 2))
}

#[test]
fn a_restored_sequence_holds_its_memory_and_goes_on_as_the_original() {
    let project = toy_project("snapshot-round-trip", false);
    let mut session = toy_session(&project);
    let prompt: Vec<u32> = (40..51).collect(); // 11 tokens: 8 + 3
    session.forward(&prompt, Readback::Nothing).unwrap();
    let snapshot = session.snapshot();
    assert_eq!(snapshot.position(), 11);
    // 11 rows of both heads, and the tally's two u32s.
    assert_eq!(snapshot.bytes(), KV_HEADS * 11 * KV_ROW_BYTES + 8);
    let at_snapshot = memory_of(session.model(), 11);
    assert_eq!(at_snapshot.1, [11, (40..51).sum::<u32>()]);

    let rest = [7, 300, 9, 12, 5];
    let original = session.forward(&rest, Readback::AllLogits).unwrap();
    let original_memory = memory_of(session.model(), 16);

    // Another sequence overwrites every row the snapshot holds, and the tally.
    session.reset();
    let other: Vec<u32> = (100..120).collect();
    session.forward(&other, Readback::Nothing).unwrap();
    let past_snapshot = |toy: &Toy| {
        (0..KV_HEADS)
            .map(|h| toy.kv.read_u32((h * CONTEXT + 11) * KV_ROW_BYTES, 2))
            .collect::<Vec<_>>()
    };
    let other_rows = past_snapshot(session.model());

    session.restore(&snapshot).unwrap();
    assert_eq!(session.position(), 11);
    assert_eq!(memory_of(session.model(), 11), at_snapshot);
    assert_eq!(
        past_snapshot(session.model()),
        other_rows,
        "rows past the position stay as they were"
    );
    let resumed = session.forward(&rest, Readback::AllLogits).unwrap();
    assert_eq!(resumed, original);
    assert_eq!(memory_of(session.model(), 16), original_memory);
    assert_eq!(session.position(), 16);

    // One snapshot restores any number of times, here into a new session.
    let mut fresh = toy_session(&project);
    fresh.restore(&snapshot).unwrap();
    assert_eq!(memory_of(fresh.model(), 11), at_snapshot);
    assert_eq!(fresh.forward(&rest, Readback::AllLogits).unwrap(), original);
}

#[test]
fn an_empty_sequence_snapshots_to_its_recurrent_state_alone() {
    let project = toy_project("snapshot-empty", false);
    let mut session = toy_session(&project);
    let empty = session.snapshot();
    assert_eq!((empty.position(), empty.bytes()), (0, 8));
    session.forward(&[1, 2, 3], Readback::Nothing).unwrap();
    session.restore(&empty).unwrap();
    assert_eq!(session.position(), 0);
    assert_eq!(session.model().tally.read_u32(0, 2), [0, 0]);
    let Output::Token(_) = session.forward(&[4], Readback::Argmax).unwrap() else {
        panic!("not a token");
    };
    assert_eq!(session.model().tally.read_u32(0, 2), [1, 4]);
}

/// How [`Reshaped`] describes the toy's memory.
const WIDER_ROWS: u8 = 0;
const EXTRA_STATE: u8 = 1;
const SMALLER_STATE: u8 = 2;

/// The toy with its memory described as a model of another shape would
/// describe its own.
struct Reshaped<const SHAPE: u8> {
    toy: Toy,
    /// Four bytes: a recurrent buffer the toy does not have.
    extra: Buffer,
}

impl<const SHAPE: u8> CompiledModel for Reshaped<SHAPE> {
    const INFO: ModelInfo = Toy::INFO;

    fn load(gpu: Gpu, weights: &WeightsFile) -> Result<Self> {
        let extra = gpu.buffer(4);
        Ok(Reshaped {
            toy: Toy::load(gpu, weights)?,
            extra,
        })
    }

    fn gpu(&self) -> &Gpu {
        self.toy.gpu()
    }

    fn decode(&mut self, token: u32, pass: &Pass, readback: &Readback) -> Result<()> {
        self.toy.decode(token, pass, readback)
    }

    fn prefill(&mut self, tokens: &[u32], pass: &Pass, readback: &Readback) -> Result<()> {
        self.toy.prefill(tokens, pass, readback)
    }

    fn results(&self) -> Results<'_> {
        self.toy.results()
    }

    fn reset(&mut self) {
        self.toy.reset()
    }

    fn memory(&self) -> SequenceMemory<'_> {
        let mut memory = self.toy.memory();
        match SHAPE {
            WIDER_ROWS => {
                memory.positional[0] = PositionRows {
                    buffer: &self.toy.kv,
                    heads: 1,
                    row_bytes: KV_HEADS * KV_ROW_BYTES,
                }
            }
            EXTRA_STATE => memory.recurrent.push(&self.extra),
            _ => memory.recurrent[0] = &self.extra,
        }
        memory
    }
}

/// Restores a snapshot of `M` into the toy and one of the toy into `M`:
/// both are refused with these messages, and neither sequence changes.
fn refused_both_ways<M: CompiledModel>(name: &str, into_toy: &str, from_toy: &str) {
    let project = toy_project(name, false);
    let mut toy = toy_session(&project);
    let mut other = model_session::<M>(&project);
    toy.forward(&[5, 6, 7, 8, 9], Readback::Nothing).unwrap();
    other.forward(&[1, 2, 3], Readback::Nothing).unwrap();
    let before = memory_of(toy.model(), 5);

    let err = toy.restore(&other.snapshot()).unwrap_err();
    assert_eq!(err.to_string(), into_toy);
    assert_eq!(toy.position(), 5);
    assert_eq!(memory_of(toy.model(), 5), before);

    let err = other.restore(&toy.snapshot()).unwrap_err();
    assert_eq!(err.to_string(), from_toy);
    assert_eq!(other.position(), 3);
}

#[test]
fn a_snapshot_of_other_rows_is_refused() {
    refused_both_ways::<Reshaped<WIDER_ROWS>>(
        "snapshot-wider-rows",
        "positional buffer 0 of the snapshot has 1 heads of 16-byte rows, \
         this model's 2 heads of 8-byte rows",
        "positional buffer 0 of the snapshot has 2 heads of 8-byte rows, \
         this model's 1 heads of 16-byte rows",
    );
}

#[test]
fn a_snapshot_of_another_count_of_states_is_refused() {
    refused_both_ways::<Reshaped<EXTRA_STATE>>(
        "snapshot-extra-state",
        "the snapshot has 2 recurrent state buffers, this model 1",
        "the snapshot has 1 recurrent state buffers, this model 2",
    );
}

#[test]
fn a_snapshot_of_other_state_sizes_is_refused() {
    refused_both_ways::<Reshaped<SMALLER_STATE>>(
        "snapshot-smaller-state",
        "recurrent state buffer 0 of the snapshot holds 4 bytes, this model's 8",
        "recurrent state buffer 0 of the snapshot holds 8 bytes, this model's 4",
    );
}

#[test]
fn a_prefix_snapshot_of_a_longer_sequence_holds_the_prefixs_rows() {
    let project = toy_project("snapshot-prefix", false);
    let mut session = toy_session(&project);
    let prompt: Vec<u32> = (40..51).collect();
    session.forward(&prompt, Readback::Nothing).unwrap();
    let rows_at_11 = memory_of(session.model(), 11).0;
    session.forward(&[7, 300, 9], Readback::Nothing).unwrap();
    let prefix = session.snapshot_prefix(11).unwrap();
    assert_eq!(prefix.position(), 11);
    assert!(session.snapshot_prefix(15).is_err(), "14 tokens held");
    session.reset();
    session
        .forward(&(100..120).collect::<Vec<u32>>(), Readback::Nothing)
        .unwrap();
    session.restore(&prefix).unwrap();
    assert_eq!(session.position(), 11);
    assert_eq!(memory_of(session.model(), 11).0, rows_at_11);
}
