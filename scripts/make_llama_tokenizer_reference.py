#!/usr/bin/env python3
"""llama.cpp's own tokenizer on the two real GGUF models, as the reference forge's tokenizer must equal.

For every text below and both models (SmolLM2-135M-Instruct Q4_1: byte-level BPE, pre `smollm`;
Gemma 3 270M Q4_K_M: SentencePiece, `add_space_prefix` false, `add_bos` true) the script records,
through llama-cpp-python (its bundled llama.cpp, with `vocab_only=True` so no weights are read):

- `ids`: `llama_tokenize(text, add_special=True, parse_special=True)` (what `llama-tokenize`
  prints, BOS included when the model adds one);
- `ids_plain`: `llama_tokenize(text, add_special=False, parse_special=False)` (`--no-bos
  --no-parse-special`: control tokens spelt in the text stay text);
- `decoded` / `decoded_special`: `llama_detokenize(ids, remove_special=False,
  unparse_special=False / True)` (special tokens left out / written out), UTF-8.

The tiny fixture GGUFs (tests/fixtures/*/gguf/*.f32.gguf: SentencePiece with and without a
space prefix, byte-level BPE with GPT-2's split and its space clean-up, Phi-3's stripped specials)
get the same records on a shorter list of texts, one fixture per distinct vocabulary.

It also records the token attributes llama.cpp's loader gave tokens whose attribute is not the
plain reading of `tokenizer.ggml.token_type` (its fix-ups: control-looking end-of-turn tokens,
`unused` tokens, per-model strip rules), and the vocabulary's add_bos/add_eos/BOS/EOS.

Usage: /tmp/llama-venv/bin/python scripts/make_llama_tokenizer_reference.py
  (needs scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh to have run; writes
  tests/fixtures/llama_tokenizer_reference.json)
"""

from __future__ import annotations

import ctypes
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "tests" / "fixtures" / "llama_tokenizer_reference.json"
MODELS = {
    "smollm2": ROOT / ".cache" / "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3": ROOT / ".cache" / "gemma-3-270m-q4_k_m.gguf",
}

TEXTS = [
    # plain text and leading, repeated and trailing whitespace
    "Hello, world!",
    "",
    " ",
    " Hello",
    "  two leading spaces",
    "     five leading spaces then text",
    "trailing spaces   ",
    "multiple   internal    spaces  and trailing  ",
    "\tleading tab",
    "\t\t\tthree tabs\t\tand two",
    "line one\nline two\n\nline four\r\nend\n",
    "\n\n\nleading newlines",
    "a \n b \n\n c \t\n d",
    "    indented code block\n        deeper\n",
    "def f(x):\n    return x ** 2  # square\n\n\tif x:\n\t\tpass\n",
    "\u00a0non-breaking\u00a0spaces and an \u3000 ideographic space",
    # digits
    "Numbers: 0 7 42 1234567 3.14159 -12 1,000,000 2024-06-01",
    "Digits glued: abc123def 00042 \u00bd \u00b2 \u0663\u0664",
    # accents, CJK, emoji
    "Caf\u00e9 na\u00efve r\u00e9sum\u00e9 fa\u00e7ade \u00c5ngstr\u00f6m \u0395\u03bb\u03bb\u03b7\u03bd\u03b9\u03ba\u03ac \u0420\u043e\u0441\u0441\u0438\u044f",
    "Combining: e\u0301 a\u0308 \u00c0\u00c9\u00ce\u00d5\u00dc",
    "CJK: \u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8 \u4e2d\u6587\u5b57\u7b26 \ud55c\uad6d\uc5b4",
    "Emoji: \U0001f600\U0001f44d\U0001f3fd\U0001f389 family \U0001f468\u200d\U0001f469\u200d\U0001f467 flag \U0001f1eb\U0001f1f7",
    "zero\u200bwidth\u200djoiner",
    "Mixed: 3 apples, 12 pears; caf\u00e9\u2615 and \u6771\u4eac\U0001f5fc!",
    "I'm sure they'll say it's fine, don't you? We've SEEN it. You're right.",
    # special-token text: ChatML (SmolLM2's), Gemma's turns, BOS/EOS spelt out, HTML tags
    # (user-defined tokens of Gemma), a byte token's spelling
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<bos>text after bos",
    "<|endoftext|>",
    "special <|im_start|>glued<|im_end|>words",
    "<eos> <pad> <unk> <mask>",
    "HTML <table><tr><td>cell</td></tr></table> <b>bold</b> </s> <s>",
    "<0x41> is a byte token's spelling",
    "[multimodal] <start_of_image> <unused0>",
    # long repeated characters
    "a" * 200,
    " " * 100,
    "\n" * 40,
    "\t" * 40,
    "=" * 64 + "\n" + "-" * 64,
    "ab" * 100,
    "\U0001f600" * 20,
]


# Fixture vocabularies hold a few hundred tokens: texts that reach their specials, byte fallback,
# whitespace handling and the space clean-up of detokenising.
FIXTURE_TEXTS = [
    "Hello, world!",
    "",
    "  two leading spaces",
    "\tleading tab\n\nnewlines\r\n end",
    "Numbers 12345 and 3.14",
    "Caf\u00e9 \u65e5\u672c\u8a9e \U0001f600",
    "<s>hi</s> <|im_start|>user\n<|im_end|> <bos><eos> <|endoftext|>x",
    "<|user|>\n  Hi<|end|>\n<|assistant|>",
    "Hello , world ! It 's a ' quote ' test . They 're , we 've , I 'm , she 'll",
    "a" * 50,
    " " * 20,
    "x  \n  y",
]


def fixture_models() -> dict[str, Path]:
    """One fixture GGUF per distinct tokenizer (its tokenizer.ggml.* keys, and whether its
    general.name makes llama.cpp apply Phi-3's rules), that llama.cpp loads."""
    import hashlib

    from gguf import GGUFReader

    chosen = {}
    for path in sorted((ROOT / "tests" / "fixtures").glob("*/gguf/*.f32.gguf")):
        fields = GGUFReader(path).fields
        digest = hashlib.sha256()
        for key, field in fields.items():
            if key.startswith("tokenizer.ggml."):
                digest.update(key.encode())
                for part in field.parts:
                    digest.update(bytes(part))
        name = fields["general.name"]
        name = bytes(name.parts[name.data[0]]).decode().lower()
        key = (digest.hexdigest(), "phi3" in name or "phi-3" in name)
        chosen.setdefault(key, path)
    return {path.parent.parent.name: path for path in chosen.values()}


def detokenize(llama_cpp, vocab, ids: list[int], unparse_special: bool) -> str:
    tokens = (llama_cpp.llama_token * max(len(ids), 1))(*ids)
    size = 1024
    while True:
        buffer = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(vocab, tokens, len(ids), buffer, size, False, unparse_special)
        if n >= 0:
            return buffer.raw[:n].decode("utf-8")
        size = -n + 1


def attribute_fixups(llama_cpp, vocab, gguf_path: Path) -> list[list[int]]:
    """[first id, last id, attribute] for every run of tokens whose llama.cpp attribute is not
    their token type's."""
    from gguf import GGUFReader

    field = GGUFReader(gguf_path).fields["tokenizer.ggml.token_type"]
    types = [int(field.parts[i][0]) for i in field.data]
    # llama_token_type -> llama_token_attr (llama.h)
    plain = {0: 0, 1: 1 << 2, 2: 1 << 0, 3: 1 << 3, 4: 1 << 4, 5: 1 << 1, 6: 1 << 5}
    fixups = []
    for token, token_type in enumerate(types):
        attribute = int(llama_cpp.llama_vocab_get_attr(vocab, token))
        if attribute == plain.get(token_type, 0):
            continue
        if fixups and fixups[-1][1] == token - 1 and fixups[-1][2] == attribute:
            fixups[-1][1] = token
        else:
            fixups.append([token, token, attribute])
    return fixups


def to_json(value, indent: str = "") -> str:
    """Objects one key a line, lists of objects one object a line, everything else compact."""
    compact = lambda v: json.dumps(v, ensure_ascii=False, separators=(", ", ": "))
    inner = indent + " "
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {to_json(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + indent + "}"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "[\n" + ",\n".join(inner + compact(v) for v in value) + "\n" + indent + "]"
    return compact(value)


def record(llama_cpp, path: Path, texts: list[str]) -> dict:
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    vocab = llm._model.vocab
    cases = []
    for text in texts:
        ids = llm.tokenize(text.encode("utf-8"), add_bos=True, special=True)
        cases.append(
            {
                "text": text,
                "ids": ids,
                "ids_plain": llm.tokenize(text.encode("utf-8"), add_bos=False, special=False),
                "decoded": detokenize(llama_cpp, vocab, ids, False),
                "decoded_special": detokenize(llama_cpp, vocab, ids, True),
            }
        )
    return {
        "gguf": str(path.relative_to(ROOT)),
        "n_tokens": llama_cpp.llama_vocab_n_tokens(vocab),
        "add_bos": bool(llama_cpp.llama_vocab_get_add_bos(vocab)),
        "add_eos": bool(llama_cpp.llama_vocab_get_add_eos(vocab)),
        "bos": llama_cpp.llama_vocab_bos(vocab),
        "eos": llama_cpp.llama_vocab_eos(vocab),
        "attribute_fixups": attribute_fixups(llama_cpp, vocab, path),
        "cases": cases,
    }


def main() -> int:
    for path in MODELS.values():
        if not path.exists():
            print(f"{path} is missing: run scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh", file=sys.stderr)
            return 1
    import llama_cpp

    models = {name: record(llama_cpp, path, TEXTS) for name, path in MODELS.items()}
    fixtures = {}
    for name, path in fixture_models().items():
        try:
            fixtures[name] = record(llama_cpp, path, FIXTURE_TEXTS)
        except ValueError as e:
            print(f"skipping fixture {name}: llama.cpp does not load it ({e})", file=sys.stderr)
    reference = {
        "generated_by": "scripts/make_llama_tokenizer_reference.py",
        "method": (
            "llama-cpp-python Llama(model_path, vocab_only=True): tokenize(text, add_bos, special) "
            "(llama_tokenize add_special, parse_special); llama_detokenize(ids, remove_special=False, "
            "unparse_special)"
        ),
        "versions": {"llama-cpp-python": llama_cpp.__version__},
        "models": models,
        "fixtures": fixtures,
    }
    OUT.write_text(to_json(reference) + "\n", encoding="utf-8")
    print(
        f"wrote {OUT.relative_to(ROOT)}: {len(TEXTS)} texts x {len(models)} models, "
        f"{len(FIXTURE_TEXTS)} texts x {len(fixtures)} fixtures"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
