//! How a byte-level BPE vocabulary splits text into words before merging, keyed by the
//! `tokenizer.ggml.pre` name llama.cpp's converter records.
//!
//! Each rule is a list of regexes applied in turn, every one splitting the pieces the previous
//! left (matches and the text between them both become pieces), which is what a `tokenizers`
//! `Sequence` of `Split(..., Isolated)` pre-tokenizers does. The regexes are the ones the
//! checkpoints' own `tokenizer.json` files use, written for the `fancy-regex` engine.

use serde_json::{json, Value};

/// GPT-2's word split: contractions, letter runs, digit runs, other symbols, spaces.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3 (tiktoken cl100k style): case-insensitive contractions, digits in groups of three.
const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2: the Llama 3 split with single digits.
const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken: words split at case changes, single digits.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o (o200k style), also Llama 4: Tekken's case split with contractions, digit triples.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Every digit on its own (StarCoder, SmolLM): applied before the GPT-2 split.
const DIGIT: &str = r"\p{N}";

/// The split a GGUF vocabulary asks for, and whether whole words found in the vocabulary skip
/// merging (Llama 3's `ignore_merges`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreTokenizerRule {
    pub regexes: &'static [&'static str],
    pub ignore_merges: bool,
}

const fn rule(regexes: &'static [&'static str], ignore_merges: bool) -> PreTokenizerRule {
    PreTokenizerRule {
        regexes,
        ignore_merges,
    }
}

/// The rule for a `tokenizer.ggml.pre` name, as llama.cpp's `llama-vocab.cpp` assigns them;
/// `None` for a name this table does not know.
pub fn rule_for(pre: &str) -> Option<PreTokenizerRule> {
    Some(match pre {
        "gpt-2" | "phi-2" | "mpt" | "olmo" | "jais" | "jina-es" | "jina-de" | "jina-v2-es"
        | "jina-v2-de" | "gigachat" | "a.x-4.0" | "mellum" | "exaone4" | "trillion"
        | "granite-docling" => rule(&[GPT2], false),
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" => rule(&[LLAMA3], true),
        "dbrx" | "smaug-bpe" | "chatglm-bpe" | "glm4" => rule(&[LLAMA3], false),
        "qwen2" | "deepseek-r1-qwen" | "stablelm2" | "megrez" | "hunyuan" | "kormo" | "f2llmv2" => {
            rule(&[QWEN2], false)
        }
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            rule(&[DIGIT, GPT2], false)
        }
        "tekken" => rule(&[TEKKEN], true),
        "gpt-4o" | "llama4" => rule(&[GPT4O], false),
        "falcon" => rule(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"], false),
        // llama.cpp's fallback for a BPE vocabulary whose converter did not recognise it.
        "default" => rule(
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            false,
        ),
        _ => return None,
    })
}

impl PreTokenizerRule {
    /// The `tokenizer.json` pre-tokenizer: the splits, then the GPT-2 byte-to-character mapping.
    pub fn to_json(self) -> Value {
        let mut steps: Vec<Value> = self
            .regexes
            .iter()
            .map(|regex| {
                json!({
                    "type": "Split",
                    "pattern": {"Regex": regex},
                    "behavior": "Isolated",
                    "invert": false,
                })
            })
            .collect();
        steps.push(json!({
            "type": "ByteLevel",
            "add_prefix_space": false,
            "trim_offsets": true,
            "use_regex": false,
        }));
        json!({"type": "Sequence", "pretokenizers": steps})
    }
}
