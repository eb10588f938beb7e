#!/usr/bin/env python3
"""Token ids of the real SmolLM2-135M-Instruct tokenizer for a few texts, as test reference.

The Hugging Face hub is unreachable from our machines, so the tokenizer is rebuilt from the GGUF
that `scripts/fetch_smollm2.sh` fetches, by transformers' own GGUF tokenizer loader
(`AutoTokenizer.from_pretrained(dir, gguf_file=...)`), which shares no code with forge.

One correction, on purpose: transformers does not know llama.cpp's pre-tokenizer name "smollm"
and leaves GPT-2's split in place, while the published SmolLM2 `tokenizer.json` splits every digit
off first (`Sequence[Digits(individual_digits=True), ByteLevel(use_regex=True)]`). The script
installs that published pre-tokenizer and records, per text, whether transformers' unchanged
loader would have disagreed.

Usage: python3 scripts/make_tokenizer_reference.py   (writes tests/fixtures/smollm2_tokenizer_reference.json)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GGUF = ROOT / ".cache" / "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = ROOT / "tests" / "fixtures" / "smollm2_tokenizer_reference.json"

TEXTS = [
    "Hello, world!",
    "Café naïve résumé — 日本語のテキスト, Россия, emoji 😀👍🏽.",
    "In 2024, 1234567 apples cost $3.50 (or 3,50 €).",
    "a  b   c    d  1  22   333",
    "line one\nline two\n\n\tindented\r\nend  \n",
    "   leading and trailing spaces   ",
    "I'm sure they'll say it's fine, don't you think? We've SEEN it.",
    "def f(x):\n    return x ** 2  # square\n",
    "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
    "<|im_start|>user\nWhat is 12 + 30?<|im_end|>\n<|im_start|>assistant\n",
]


def main() -> int:
    if not GGUF.exists():
        print(f"{GGUF} is missing: run scripts/fetch_smollm2.sh first", file=sys.stderr)
        return 1
    import tokenizers
    import transformers
    from tokenizers import pre_tokenizers
    from transformers import AutoTokenizer

    loaded = AutoTokenizer.from_pretrained(str(GGUF.parent), gguf_file=GGUF.name)
    backend = loaded.backend_tokenizer
    unchanged = [backend.encode(text, add_special_tokens=False).ids for text in TEXTS]
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    cases = []
    for text, before in zip(TEXTS, unchanged):
        ids = backend.encode(text, add_special_tokens=False).ids
        cases.append(
            {
                "text": text,
                "ids": ids,
                "decoded": backend.decode(ids, skip_special_tokens=False),
                "unpatched_transformers_differs": ids != before,
            }
        )
    reference = {
        "generated_by": "scripts/make_tokenizer_reference.py",
        "source": f".cache/{GGUF.name} (scripts/fetch_smollm2.sh)",
        "method": (
            "transformers GGUF tokenizer loader, pre-tokenizer set to the published SmolLM2 "
            "Sequence[Digits(individual_digits), ByteLevel]; encode(text, add_special_tokens=False)"
        ),
        "versions": {"transformers": transformers.__version__, "tokenizers": tokenizers.__version__},
        "vocab_size": backend.get_vocab_size(),
        "cases": cases,
    }
    OUT.write_text(json.dumps(reference, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT.relative_to(ROOT)}: {len(cases)} texts")
    return 0


if __name__ == "__main__":
    sys.exit(main())
