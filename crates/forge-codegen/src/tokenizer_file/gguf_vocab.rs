//! A GGUF vocabulary resolved as llama.cpp's `llama_vocab::impl::load` resolves it: the
//! tokenizer type, default and overridden special ids, `add_bos`/`add_eos`/`add_space_prefix`,
//! the pre-tokenizer's regexes and flags, and every token's attributes after llama.cpp's fix-ups
//! (control-looking end-of-generation tokens, `unused` tokens, per-model strip rules). The
//! generated project's forge-runtime reads the result (`gguf_vocab.json`) and only tokenizes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use forge_ir::{GgufVocab, Model, TokenizerKind};
use serde::Serialize;

use super::pre_tokenizer::rule_for;
use super::TokenizerFileError;

/// The file's name in the project, beside `Cargo.toml`.
pub const GGUF_VOCAB_FILE: &str = "gguf_vocab.json";

/// What the file's `format` field says, so the runtime refuses a file of another layout.
const FORMAT: &str = "forge-gguf-vocab/1";

/// llama.cpp's token attributes (`llama_token_attr` in llama.h), the bits stored per token.
pub mod attr {
    pub const UNDEFINED: u32 = 0;
    pub const UNKNOWN: u32 = 1 << 0;
    pub const UNUSED: u32 = 1 << 1;
    pub const NORMAL: u32 = 1 << 2;
    pub const CONTROL: u32 = 1 << 3;
    pub const USER_DEFINED: u32 = 1 << 4;
    pub const BYTE: u32 = 1 << 5;
    pub const LSTRIP: u32 = 1 << 7;
    pub const RSTRIP: u32 = 1 << 8;
}

/// Token texts llama.cpp treats as the end-of-turn token when the file names none
/// (`tokenizer.ggml.eot_token_id` absent), and the other roles it detects the same way.
const DETECTED_ROLES: [(&str, &[&str]); 8] = [
    (
        "eot",
        &[
            "<|eot_id|>",
            "<|im_end|>",
            "<|end|>",
            "<end_of_turn>",
            "<|endoftext|>",
            "<|end_of_text|>",
            "<EOT>",
            "_<EOT>",
            "[EOT]",
            "<｜end▁of▁sentence｜>",
            "<end_of_utterance>",
        ],
    ),
    ("eom", &["<|eom_id|>"]),
    (
        "fim_pre",
        &[
            "<|fim_prefix|>",
            "<fim-prefix>",
            "<fim_prefix>",
            "<｜fim▁begin｜>",
            "<PRE>",
            "▁<PRE>",
            "<|code_prefix|>",
            "<|prefix|>",
        ],
    ),
    (
        "fim_suf",
        &[
            "<|fim_suffix|>",
            "<fim-suffix>",
            "<fim_suffix>",
            "<｜fim▁hole｜>",
            "<SUF>",
            "▁<SUF>",
            "<|code_suffix|>",
            "<|suffix|>",
        ],
    ),
    (
        "fim_mid",
        &[
            "<|fim_middle|>",
            "<fim-middle>",
            "<fim_middle>",
            "<｜fim▁end｜>",
            "<MID>",
            "▁<MID>",
            "<|code_middle|>",
            "<|middle|>",
        ],
    ),
    (
        "fim_pad",
        &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    ),
    (
        "fim_rep",
        &[
            "<|fim_repo|>",
            "<|repo_name|>",
            "<fim-repo>",
            "<REPO>",
            "<reponame>",
        ],
    ),
    ("fim_sep", &["<|file_sep|>"]),
];

/// Token texts llama.cpp always counts as end of generation (and so as control tokens).
const END_OF_GENERATION: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

/// The layout forge-runtime's `text::gguf` reads.
#[derive(Serialize)]
struct VocabFile<'a> {
    format: &'static str,
    source: String,
    /// `spm` (SentencePiece: merge by piece score, byte fallback) or `bpe` (merge by rank).
    kind: &'static str,
    tokens: Vec<Cow<'a, str>>,
    scores: Vec<f32>,
    attributes: Vec<u32>,
    /// `bpe`: the merges in rank order, `left right`.
    merges: &'a [String],
    /// `bpe`: the regexes that split text into words, applied in turn.
    split_regexes: &'a [&'static str],
    ignore_merges: bool,
    add_space_prefix: bool,
    add_bos: bool,
    add_eos: bool,
    clean_spaces: bool,
    bos: Option<u32>,
    eos: Option<u32>,
}

/// The `gguf_vocab.json` text for a GGUF checkpoint's vocabulary.
pub fn resolve(
    model: &Model,
    kind: TokenizerKind,
    vocab: &GgufVocab,
) -> Result<String, TokenizerFileError> {
    let error = |message: String| TokenizerFileError::Vocab {
        gguf: model.source.clone(),
        message,
    };
    let n = vocab.tokens.len();
    let no_merges: &[String] = &[];
    let mut file = match kind {
        TokenizerKind::SentencePiece => VocabFile {
            kind: "spm",
            merges: no_merges,
            split_regexes: &[],
            ignore_merges: false,
            add_space_prefix: true,
            add_bos: true,
            clean_spaces: false,
            bos: Some(1),
            eos: Some(2),
            ..VocabFile::empty(model)
        },
        TokenizerKind::BytePairBpe => {
            let rule = rule_for(vocab.pre.as_deref()).ok_or_else(|| {
                TokenizerFileError::UnsupportedPreTokenizer {
                    gguf: model.source.clone(),
                    pre: vocab.pre.clone().unwrap_or_default(),
                }
            })?;
            let merges = vocab
                .merges
                .as_deref()
                .ok_or_else(|| error("a gpt2 tokenizer needs tokenizer.ggml.merges".into()))?;
            VocabFile {
                kind: "bpe",
                merges,
                split_regexes: rule.regexes,
                ignore_merges: rule.ignore_merges,
                add_space_prefix: false,
                add_bos: rule.add_bos,
                clean_spaces: rule.clean_spaces,
                bos: (!rule.no_bos).then_some(11),
                eos: Some(11),
                ..VocabFile::empty(model)
            }
        }
        TokenizerKind::Other => {
            return Err(TokenizerFileError::UnsupportedModel {
                gguf: model.source.clone(),
            })
        }
    };
    // Default ids outside the vocabulary are dropped; the file's own ids replace them when in range.
    let in_range = |id: Option<u32>| id.filter(|&id| (id as usize) < n);
    let role = |name: &str| in_range(vocab.token_ids.get(name).copied());
    file.bos = role("bos").or(in_range(file.bos));
    file.eos = role("eos").or(in_range(file.eos));
    file.add_space_prefix = vocab.add_space_prefix.unwrap_or(file.add_space_prefix);
    file.add_bos = vocab.add_bos_token.unwrap_or(file.add_bos);
    file.add_eos = vocab.add_eos_token.unwrap_or(false);
    if file.add_bos && file.bos.is_none() {
        return Err(error(
            "tokenizer.ggml.add_bos_token is true, but tokenizer.ggml.bos_token_id is not set"
                .into(),
        ));
    }
    if file.add_eos && file.eos.is_none() {
        return Err(error(
            "tokenizer.ggml.add_eos_token is true, but tokenizer.ggml.eos_token_id is not set"
                .into(),
        ));
    }

    file.tokens = vocab
        .tokens
        .iter()
        .enumerate()
        .map(|(id, token)| match token.is_empty() {
            // llama.cpp names empty tokens so that each text is unique.
            true => Cow::Owned(format!("[EMPTY_{id}]")),
            false => Cow::Borrowed(token.as_str()),
        })
        .collect();
    let mut ids = HashMap::with_capacity(n);
    for (id, token) in file.tokens.iter().enumerate() {
        if let Some(first) = ids.insert(token.as_ref(), id as u32) {
            return Err(error(format!(
                "duplicate token in vocabulary: {token:?} has ids {first} and {id}"
            )));
        }
    }
    file.scores = match &vocab.scores {
        Some(scores) => scores.clone(),
        None => vec![0.0; n],
    };
    file.attributes = match &vocab.token_types {
        Some(types) => types.iter().map(|&t| attribute_of_type(t)).collect(),
        None => vec![attr::NORMAL; n],
    };
    fix_up_attributes(&mut file.attributes, &ids, vocab, file.eos, &model.name);
    serde_json::to_string(&file).map_err(|e| error(format!("cannot write {GGUF_VOCAB_FILE}: {e}")))
}

impl VocabFile<'_> {
    fn empty(model: &Model) -> VocabFile<'static> {
        VocabFile {
            format: FORMAT,
            source: model.source.display().to_string(),
            kind: "",
            tokens: Vec::new(),
            scores: Vec::new(),
            attributes: Vec::new(),
            merges: &[],
            split_regexes: &[],
            ignore_merges: false,
            add_space_prefix: false,
            add_bos: false,
            add_eos: false,
            clean_spaces: false,
            bos: None,
            eos: None,
        }
    }
}

/// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
/// 6 byte) as an attribute.
fn attribute_of_type(token_type: i32) -> u32 {
    match token_type {
        1 => attr::NORMAL,
        2 => attr::UNKNOWN,
        3 => attr::CONTROL,
        4 => attr::USER_DEFINED,
        5 => attr::UNUSED,
        6 => attr::BYTE,
        _ => attr::UNDEFINED,
    }
}

/// The attribute changes llama.cpp's loader makes from token texts and the model's name.
fn fix_up_attributes(
    attributes: &mut [u32],
    ids: &HashMap<&str, u32>,
    vocab: &GgufVocab,
    eos: Option<u32>,
    model_name: &str,
) {
    let id = |text: &str| ids.get(text).map(|&id| id as usize);
    // A role the file does not name is found by its text, and that token made a control token.
    // (llama.cpp takes the first match in hash order; vocabularies hold one candidate at most.)
    for (role, texts) in DETECTED_ROLES {
        if !vocab.token_ids.contains_key(role) {
            for at in texts.iter().filter_map(|t| id(t)) {
                attributes[at] |= attr::CONTROL;
            }
        }
    }
    for (text, &at) in ids {
        if attributes[at as usize] & attr::CONTROL != 0 && text.contains("unused") {
            attributes[at as usize] |= attr::UNUSED;
        }
    }
    let mut end_of_generation: HashSet<usize> =
        END_OF_GENERATION.iter().filter_map(|t| id(t)).collect();
    for &at in &end_of_generation {
        attributes[at] |= attr::CONTROL;
    }
    // gpt-oss's channel markers are always rendered.
    for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
        if let Some(at) = id(text) {
            attributes[at] = attr::USER_DEFINED;
        }
    }
    let ids_of_roles = ["fim_pad", "fim_rep", "fim_sep", "eot", "eom"];
    end_of_generation.extend(
        ids_of_roles
            .iter()
            .filter_map(|r| vocab.token_ids.get(*r))
            .chain(eos.as_ref())
            .map(|&id| id as usize)
            .filter(|&id| id < attributes.len()),
    );
    let ends_with = |text: &str| id(text).is_some_and(|at| end_of_generation.contains(&at));
    // Harmony and solar-open end a message with <|end|> but a turn with <|return|>/<|call|>.
    if ends_with("<|end|>")
        && ((ends_with("<|return|>") && ends_with("<|call|>"))
            || (ends_with("<|calls|>") && ends_with("<|flush|>")))
    {
        attributes[id("<|end|>").unwrap_or_default()] = attr::USER_DEFINED;
    }
    if ends_with("<|tool_response>") && ends_with("</s>") {
        attributes[id("</s>").unwrap_or_default()] = attr::NORMAL;
    }

    let pre = vocab.pre.as_deref().unwrap_or("");
    let name = model_name.to_lowercase();
    if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
        .iter()
        .any(|p| pre.contains(p))
    {
        set_bit(attributes, id("<mask>"), attr::LSTRIP, true);
    } else if name.contains("phi-3") || name.contains("phi3") {
        // Phi-3 drops the whitespace after its special tokens.
        let special = attr::CONTROL | attr::USER_DEFINED | attr::UNKNOWN;
        for at in attributes.iter_mut().filter(|a| **a & special != 0) {
            *at |= attr::RSTRIP;
        }
        set_bit(attributes, id("</s>"), attr::RSTRIP, true);
        for text in ["<unk>", "<s>", "<|endoftext|>"] {
            set_bit(attributes, id(text), attr::RSTRIP, false);
        }
    } else if name.contains("modern-bert") {
        set_bit(attributes, id("[MASK]"), attr::LSTRIP, true);
    }
}

fn set_bit(attributes: &mut [u32], at: Option<usize>, bit: u32, on: bool) {
    if let Some(at) = at {
        attributes[at] = if on {
            attributes[at] | bit
        } else {
            attributes[at] & !bit
        };
    }
}
