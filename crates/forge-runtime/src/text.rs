//! Text in and out: the project's tokenizer (a Hugging Face `tokenizer.json`, or a GGUF
//! vocabulary tokenized exactly as llama.cpp does), and turning generated ids into text as they
//! arrive without ever splitting a character.

pub mod gguf;

use anyhow::{anyhow, Result};
use std::path::Path;

use gguf::GgufVocab;

/// The file forge writes for a GGUF checkpoint's vocabulary.
pub const GGUF_VOCAB_FILE: &str = "gguf_vocab.json";
/// A Hugging Face checkpoint's own tokenizer file.
pub const HF_TOKENIZER_FILE: &str = "tokenizer.json";

pub enum Tokenizer {
    /// A Hugging Face `tokenizer.json`, run by the `tokenizers` crate, and the BOS the
    /// checkpoint starts a prompt with (its `add_bos_token`).
    Hf {
        inner: Box<tokenizers::Tokenizer>,
        bos: Option<u32>,
    },
    /// A GGUF vocabulary, run as llama.cpp runs it.
    Gguf(Box<GgufVocab>),
}

impl Tokenizer {
    /// The tokenizer forge wrote into the project directory `dir`.
    pub fn open(dir: &Path) -> Result<Tokenizer> {
        let gguf = dir.join(GGUF_VOCAB_FILE);
        match gguf.is_file() {
            true => Tokenizer::load(&gguf),
            false => Tokenizer::load(&dir.join(HF_TOKENIZER_FILE)),
        }
    }

    /// A `gguf_vocab.json` or a `tokenizer.json`, told apart by the file name.
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if !path.is_file() {
            return Err(anyhow!(
                "{}: no such file (the tokenizer forge wrote next to Cargo.toml)",
                path.display()
            ));
        }
        if path.file_name().is_some_and(|name| name == GGUF_VOCAB_FILE) {
            return GgufVocab::load(path).map(|vocab| Tokenizer::Gguf(Box::new(vocab)));
        }
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))?;
        Ok(Tokenizer::Hf {
            inner: Box::new(inner),
            bos: None,
        })
    }

    /// Sets the BOS a Hugging Face tokenizer starts a prompt with when asked to add specials; a
    /// GGUF vocabulary knows its own.
    pub fn with_hf_bos(self, bos: Option<u32>) -> Tokenizer {
        match self {
            Tokenizer::Hf { inner, .. } => Tokenizer::Hf { inner, bos },
            gguf => gguf,
        }
    }

    /// The ids of `text` alone: special tokens written in the text are
    /// recognised, but none are added (the caller decides about BOS).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenize(text, false, true)
    }

    /// llama.cpp's `llama_tokenize(text, add_special, parse_special)`. `add_special` adds what
    /// the model adds to every prompt: a GGUF vocabulary's BOS (or EOS), a Hugging Face
    /// checkpoint's BOS (`with_hf_bos`). Without `parse_special`, text that spells a control
    /// token is tokenized as plain text.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Gguf(vocab) => vocab.tokenize(text, add_special, parse_special),
            Tokenizer::Hf { inner, bos } => {
                let mut plain;
                let inner = match parse_special {
                    true => inner.as_ref(),
                    false => {
                        plain = inner.as_ref().clone();
                        plain.set_encode_special_tokens(true);
                        &plain
                    }
                };
                let encoding = inner
                    .encode(text, false)
                    .map_err(|e| anyhow!("cannot tokenize the text: {e}"))?;
                let bos = bos.filter(|_| add_special);
                Ok(bos
                    .into_iter()
                    .chain(encoding.get_ids().iter().copied())
                    .collect())
            }
        }
    }
}

/// Anything that turns ids into text, special tokens left out.
pub trait Decode {
    fn decode(&self, ids: &[u32]) -> Result<String>;
}

impl Decode for Tokenizer {
    fn decode(&self, ids: &[u32]) -> Result<String> {
        match self {
            Tokenizer::Gguf(vocab) => vocab.detokenize(ids, false, false),
            Tokenizer::Hf { inner, .. } => inner
                .decode(ids, true)
                .map_err(|e| anyhow!("cannot decode token ids {ids:?}: {e}")),
        }
    }
}

/// Incremental detokenisation. Text is decoded from a window starting one
/// emitted token back (so decoders that treat the first token specially, e.g.
/// by dropping its leading space, see the same context every time), and a new
/// piece is released only when it ends in a complete character: a byte-level
/// or byte-fallback token carrying part of a UTF-8 sequence decodes to U+FFFD
/// until the rest arrives.
pub struct TextStream {
    ids: Vec<u32>,
    /// Start of the decoding window.
    prefix: usize,
    /// End of the ids whose text has been released.
    read: usize,
}

impl TextStream {
    /// `context`: ids already shown (e.g. the prompt's last token), decoded only for context.
    pub fn new(context: &[u32]) -> TextStream {
        TextStream {
            ids: context.to_vec(),
            prefix: 0,
            read: context.len(),
        }
    }

    /// Adds one id and returns the text that is now complete (often empty).
    pub fn push(&mut self, decoder: &impl Decode, id: u32) -> Result<String> {
        self.ids.push(id);
        let released = decoder.decode(&self.ids[self.prefix..self.read])?;
        let text = decoder.decode(&self.ids[self.prefix..])?;
        if text.len() <= released.len() || text.ends_with('\u{FFFD}') {
            return Ok(String::new());
        }
        // A decoder that rewrites earlier text (not a plain extension) waits for `finish`.
        match text.get(released.len()..) {
            Some(piece) if text.starts_with(released.as_str()) => {
                let piece = piece.to_string();
                self.prefix = self.read;
                self.read = self.ids.len();
                Ok(piece)
            }
            _ => Ok(String::new()),
        }
    }

    /// The text still held back at the end of generation (an incomplete
    /// character comes out as U+FFFD, as in a whole decode).
    pub fn finish(&mut self, decoder: &impl Decode) -> Result<String> {
        let released = decoder.decode(&self.ids[self.prefix..self.read])?;
        let text = decoder.decode(&self.ids[self.prefix..])?;
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(match text.get(released.len()..) {
            Some(piece) if text.starts_with(released.as_str()) => piece.to_string(),
            _ => String::new(),
        })
    }

    /// What streaming `ids` from the start releases: one piece per id, then the final flush
    /// (their concatenation is the text `generate` prints).
    pub fn pieces(decoder: &impl Decode, ids: &[u32]) -> Result<Vec<String>> {
        let mut stream = TextStream::new(&[]);
        let mut pieces = Vec::with_capacity(ids.len() + 1);
        for &id in ids {
            pieces.push(stream.push(decoder, id)?);
        }
        pieces.push(stream.finish(decoder)?);
        Ok(pieces)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids are bytes; decoding is lossy UTF-8 like a byte-level BPE decoder.
    struct Bytes;

    impl Decode for Bytes {
        fn decode(&self, ids: &[u32]) -> Result<String> {
            let bytes: Vec<u8> = ids.iter().map(|&id| id as u8).collect();
            Ok(String::from_utf8_lossy(&bytes).into_owned())
        }
    }

    /// Word pieces with SentencePiece's convention: a piece's leading space is
    /// dropped when it starts the decoded text.
    struct Pieces(&'static [&'static str]);

    impl Decode for Pieces {
        fn decode(&self, ids: &[u32]) -> Result<String> {
            let text: String = ids.iter().map(|&id| self.0[id as usize]).collect();
            Ok(text.strip_prefix(' ').map(str::to_string).unwrap_or(text))
        }
    }

    fn stream_bytes(text: &str) -> Vec<String> {
        let ids: Vec<u32> = text.bytes().map(u32::from).collect();
        TextStream::pieces(&Bytes, &ids).unwrap()
    }

    #[test]
    fn multi_byte_characters_split_over_tokens_come_out_whole() {
        let text = "aé世🎉b";
        let pieces = stream_bytes(text);
        assert_eq!(pieces.concat(), text);
        assert!(pieces.iter().all(|p| !p.contains('\u{FFFD}')), "{pieces:?}");
        // One piece per character, released by the token that completes it.
        let released: Vec<&str> = pieces
            .iter()
            .filter(|p| !p.is_empty())
            .map(|p| p.as_str())
            .collect();
        assert_eq!(released, ["a", "é", "世", "🎉", "b"]);
        // 'é' is 2 bytes: nothing after its first byte, the character after its second.
        assert_eq!(pieces[1], "");
        assert_eq!(pieces[2], "é");
    }

    #[test]
    fn an_incomplete_character_at_the_end_is_flushed_as_a_replacement() {
        let mut stream = TextStream::new(&[]);
        assert_eq!(stream.push(&Bytes, b'x' as u32).unwrap(), "x");
        assert_eq!(stream.push(&Bytes, 0xE4).unwrap(), "");
        assert_eq!(stream.finish(&Bytes).unwrap(), "\u{FFFD}");
    }

    #[test]
    fn context_keeps_the_leading_space_of_the_first_generated_piece() {
        let vocab = Pieces(&[" The", " cat", " sat"]);
        let mut stream = TextStream::new(&[0]);
        assert_eq!(stream.push(&vocab, 1).unwrap(), " cat");
        assert_eq!(stream.push(&vocab, 2).unwrap(), " sat");
        // Without context the first piece starts the text, as a whole decode would have it.
        let mut stream = TextStream::new(&[]);
        assert_eq!(stream.push(&vocab, 1).unwrap(), "cat");
        assert_eq!(stream.push(&vocab, 2).unwrap(), " sat");
    }
}
