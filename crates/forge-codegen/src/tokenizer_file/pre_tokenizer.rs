//! How a byte-level BPE vocabulary splits text into words before merging, and the other
//! per-vocabulary choices llama.cpp makes from the `tokenizer.ggml.pre` name its converter records
//! (`llama-vocab.cpp`, `llama_vocab::impl::load` and `llm_tokenizer_bpe`).
//!
//! Each rule is a list of regexes applied in turn, every one splitting the pieces the previous
//! left (matches and the text between them both become pieces), as llama.cpp's
//! `unicode_regex_split` does. The regexes are llama.cpp's, written for the `fancy-regex` engine
//! the generated project compiles them with.

/// GPT-2's word split: contractions, letter runs, digit runs, other symbols, spaces. llama.cpp
/// lists it without the final `\s+` but runs its hand-written GPT-2 splitter for this regex,
/// which ends with that alternative.
const GPT2: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";

/// Llama 3 (tiktoken cl100k style): case-insensitive contractions, digits in groups of three.
const LLAMA3: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 2: the Llama 3 split with single digits.
const QWEN2: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen 3.5: Qwen 2's split with combining marks kept in words.
const QWEN35: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Mistral's Tekken: words split where lower case turns upper, single digits. llama.cpp writes
/// the case classes as "a letter that is not a-z" and "a letter that is not A-Z", so every
/// letter outside ASCII counts as both.
const TEKKEN: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// GPT-4o (o200k style), also Llama 4: Tekken's case split with contractions, digit triples.
const GPT4O: &str = r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Every digit on its own (StarCoder, SmolLM): applied before the GPT-2 split.
const DIGIT: &str = r"\p{N}";

/// What a `tokenizer.ggml.pre` name decides in llama.cpp.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PreTokenizerRule {
    pub regexes: &'static [&'static str],
    /// Whole words found in the vocabulary skip merging (Llama 3's `ignore_merges`).
    pub ignore_merges: bool,
    /// BOS is added unless `tokenizer.ggml.add_bos_token` says otherwise.
    pub add_bos: bool,
    /// Detokenising removes the spaces before `?!.,` and some apostrophes
    /// (`clean_up_tokenization_spaces`).
    pub clean_spaces: bool,
    /// The vocabulary has no BOS token whatever its default id (ChatGLM).
    pub no_bos: bool,
}

const fn rule(regexes: &'static [&'static str], clean_spaces: bool) -> PreTokenizerRule {
    PreTokenizerRule {
        regexes,
        ignore_merges: false,
        add_bos: false,
        clean_spaces,
        no_bos: false,
    }
}

/// Llama 3's rule: words already in the vocabulary are not merged, BOS is added.
const fn whole_words_and_bos(regexes: &'static [&'static str], clean: bool) -> PreTokenizerRule {
    PreTokenizerRule {
        ignore_merges: true,
        add_bos: true,
        ..rule(regexes, clean)
    }
}

/// The rule for a `tokenizer.ggml.pre` name (`None`: the file has none, which llama.cpp treats
/// as `default`), as llama.cpp's `llama-vocab.cpp` assigns them; `None` for a name this table
/// does not know.
pub fn rule_for(pre: Option<&str>) -> Option<PreTokenizerRule> {
    const CLEAN: bool = true;
    const KEEP: bool = false;
    Some(match pre.unwrap_or("default") {
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0"
        | "lfm2" | "jina-v5-nano" => whole_words_and_bos(&[LLAMA3], CLEAN),
        "tekken" => whole_words_and_bos(&[TEKKEN], KEEP),
        "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "a.x-4.0" | "mellum" | "modern-bert" | "mpt" | "olmo" | "jais" | "exaone4" => {
            rule(&[GPT2], CLEAN)
        }
        "trillion" | "granite-docling" => rule(&[GPT2], KEEP),
        "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
            rule(&[DIGIT, GPT2], CLEAN)
        }
        "smollm" | "command-r" => rule(&[DIGIT, GPT2], KEEP),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" | "hunyuan" | "solar-open"
        | "grok-2" => rule(&[QWEN2], KEEP),
        "stablelm2" | "megrez" => rule(&[QWEN2], CLEAN),
        "qwen35" => rule(&[QWEN35], KEEP),
        "dbrx" | "smaug-bpe" => rule(&[LLAMA3], CLEAN),
        "glm4" | "chatglm-bpe" => PreTokenizerRule {
            no_bos: true,
            ..rule(&[LLAMA3], CLEAN)
        },
        "gpt-4o" | "llama4" | "kanana2" | "talkie" => rule(&[GPT4O], KEEP),
        "falcon" => rule(&[r"[\p{P}\$\+<=>\^~\|`]+", GPT2, r"[0-9][0-9][0-9]"], CLEAN),
        // llama.cpp's fallback for a BPE vocabulary whose converter did not recognise it.
        "default" => rule(
            &[r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", r"[0-9][0-9][0-9]"],
            CLEAN,
        ),
        _ => return None,
    })
}
