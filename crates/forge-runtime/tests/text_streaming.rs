//! Streaming detokenisation with real tokenizers: for every fixture's
//! `tokenizer.json` (byte-level BPE, SentencePiece with byte fallback, ...),
//! text streamed one id at a time equals a whole decode, and never shows a
//! replacement character for a split multi-byte character.

mod support;

use forge_runtime::text::{Decode, TextStream, Tokenizer};
use support::repo_root;

/// Accents, CJK, an emoji split over byte tokens, and a dash.
const TEXT: &str = "Grüße aus Köln, 東京 and 🎉 — ok.";

#[test]
fn every_fixture_tokenizer_streams_the_text_of_a_whole_decode() {
    let mut checked = 0;
    for entry in std::fs::read_dir(repo_root().join("tests/fixtures")).unwrap() {
        let path = entry.unwrap().path().join("hf/tokenizer.json");
        if !path.is_file() {
            continue;
        }
        let tokenizer = Tokenizer::load(&path).unwrap();
        let ids = tokenizer.encode(TEXT).unwrap();
        let pieces = TextStream::pieces(&tokenizer, &ids).unwrap();
        let whole = tokenizer.decode(&ids).unwrap();
        assert_eq!(pieces.concat(), whole, "{}", path.display());
        if !whole.contains('\u{FFFD}') {
            assert!(
                pieces.iter().all(|p| !p.contains('\u{FFFD}')),
                "{}: {pieces:?}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} fixture tokenizers");
}

#[test]
fn a_missing_or_broken_tokenizer_is_one_line_naming_the_file() {
    let dir = support::scratch("text-broken");
    let missing = dir.join("tokenizer.json");
    let e = Tokenizer::load(&missing).err().unwrap().to_string();
    assert!(
        e.starts_with(&missing.display().to_string()) && e.contains("no such file"),
        "{e}"
    );
    std::fs::write(&missing, "{\"not\": \"a tokenizer\"}").unwrap();
    let e = Tokenizer::load(&missing).err().unwrap().to_string();
    assert!(
        e.contains("not a usable tokenizer.json") && !e.contains('\n'),
        "{e}"
    );
}

#[test]
fn a_broken_gguf_vocabulary_is_one_line_naming_the_file() {
    let dir = support::scratch("text-broken-gguf");
    let path = dir.join("gguf_vocab.json");
    std::fs::write(&path, "{\"not\": \"a vocabulary\"}").unwrap();
    // The project's GGUF vocabulary is preferred to a tokenizer.json beside it.
    let e = Tokenizer::open(&dir).err().unwrap().to_string();
    assert!(
        e.starts_with(&path.display().to_string())
            && e.contains("not a forge GGUF vocabulary")
            && !e.contains('\n'),
        "{e}"
    );
    std::fs::write(&path, "{\"format\": \"forge-gguf-vocab/0\", \"kind\": \"spm\", \"tokens\": [], \"scores\": [], \"attributes\": [], \"merges\": [], \"split_regexes\": [], \"ignore_merges\": false, \"add_space_prefix\": true, \"add_bos\": false, \"add_eos\": false, \"clean_spaces\": false, \"bos\": null, \"eos\": null}").unwrap();
    let e = Tokenizer::open(&dir).err().unwrap().to_string();
    assert!(
        e.contains("re-run forge compile") && !e.contains('\n'),
        "{e}"
    );
}
