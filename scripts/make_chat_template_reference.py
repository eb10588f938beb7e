#!/usr/bin/env python3
"""Render committed conversations with real chat templates through transformers.

forge's generated binary renders the model's own chat template with minijinja
(forge-runtime/src/chat_template). This script makes the byte-exact
expectations it is tested against: every conversation of
tests/fixtures/chat_conversations.json, with and without the generation
prompt, through `tokenizer.apply_chat_template(..., tokenize=False)` for each
template below, written to tests/fixtures/chat_template_reference.json
(a rendering transformers refuses, e.g. through `raise_exception`, is
recorded as the error's message).

Templates:
  smollm2_gguf       tokenizer.chat_template of .cache/SmolLM2-135M-Instruct.Q4_1.gguf
                     (read with gguf-py and written to
                     tests/fixtures/chat_templates/smollm2_gguf.jinja; the
                     tokenizer is transformers' own GGUF loader's)
  qwen2.5_instruct   Qwen2.5-Instruct's published template (tools, tool calls, tool role)
  qwen3              Qwen3's (str methods, namespace, reversed slices, reasoning, enable_thinking)
  llama3.2_instruct  Llama 3.2 Instruct's (strftime_now, date_string, tools in the user turn,
                     tojson(indent=4), items, reject)
  gemma2_it          Gemma 2 IT's (bos_token, raise_exception on a system turn, trim)
  forge_chatml,      forge's fallbacks for checkpoints without a template
  forge_gemma        (templates/chat/chatml.jinja, templates/chat/gemma.jinja)
The published templates are the copies in llama.cpp's models/templates/
(committed under tests/fixtures/chat_templates/); each is rendered with the
special tokens of a fixture tokenizer of its family (TOKENIZERS), recorded
beside the cases so the Rust test passes the same strings.

`strftime_now` reads datetime.now(): the script fixes it at NOW (recorded),
and also records datetime.strftime of NOW for a list of formats, which the
Rust test compares with its own strftime.

Usage (needs transformers, gguf; a few seconds):
  /tmp/qref-venv/bin/python scripts/make_chat_template_reference.py
"""

import argparse
import datetime as datetime_module
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CONVERSATIONS = FIXTURES / "chat_conversations.json"
TEMPLATES = FIXTURES / "chat_templates"
OUT = FIXTURES / "chat_template_reference.json"
SMOLLM2 = Path(os.environ.get("FORGE_CACHE", ROOT / ".cache")) / "SmolLM2-135M-Instruct.Q4_1.gguf"

# template name -> (fixture tokenizer whose special tokens it is rendered with, template file)
TOKENIZERS = {
    "qwen2.5_instruct": ("qwen2", "tests/fixtures/chat_templates/qwen2.5_instruct.jinja"),
    "qwen3": ("qwen3", "tests/fixtures/chat_templates/qwen3.jinja"),
    "llama3.2_instruct": ("llama3", "tests/fixtures/chat_templates/llama3.2_instruct.jinja"),
    "gemma2_it": ("gemma", "tests/fixtures/chat_templates/gemma2_it.jinja"),
    # forge's own fallbacks for checkpoints without a template
    "forge_chatml": ("smollm2", "templates/chat/chatml.jinja"),
    "forge_gemma": ("gemma", "templates/chat/gemma.jinja"),
}

NOW = datetime_module.datetime(2024, 7, 26, 15, 4, 5)
STRFTIME_FORMATS = [
    "%d %b %Y",
    "%Y-%m-%d %H:%M:%S",
    "%A, %B %d",
    "%a %j %p %I %y %m",
    "%-d %B",
    "%e|%%|%M",
]


class FixedDatetime(datetime_module.datetime):
    @classmethod
    def now(cls, tz=None):
        return NOW


def smollm2_template():
    import gguf

    reader = gguf.GGUFReader(str(SMOLLM2))
    field = reader.fields["tokenizer.chat_template"]
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.parse_args()
    import transformers
    from transformers import AutoTokenizer
    from transformers.utils import chat_template_utils

    # strftime_now calls chat_template_utils.datetime.now()
    chat_template_utils.datetime = FixedDatetime

    conversations = json.loads(CONVERSATIONS.read_text())["conversations"]
    templates = {}
    source = smollm2_template()
    (TEMPLATES / "smollm2_gguf.jinja").write_text(source)
    smollm2 = AutoTokenizer.from_pretrained(str(SMOLLM2.parent), gguf_file=SMOLLM2.name)
    if smollm2.chat_template != source:
        sys.exit("transformers' GGUF loader read another chat template than gguf-py")
    templates["smollm2_gguf"] = (smollm2, source)
    files = {"smollm2_gguf": "tests/fixtures/chat_templates/smollm2_gguf.jinja"}
    for name, (fixture, file) in TOKENIZERS.items():
        tokenizer = AutoTokenizer.from_pretrained(str(FIXTURES / fixture / "hf"))
        templates[name] = (tokenizer, (ROOT / file).read_text())
        files[name] = file

    out = {
        "generated_by": "scripts/make_chat_template_reference.py",
        "transformers": transformers.__version__,
        "now": NOW.isoformat(),
        "templates": {},
        "cases": [],
        "strftime": [{"format": f, "text": NOW.strftime(f)} for f in STRFTIME_FORMATS],
    }
    for name, (tokenizer, source) in templates.items():
        specials = tokenizer.special_tokens_map
        out["templates"][name] = {
            "file": files[name],
            "bos_token": specials.get("bos_token"),
            "eos_token": specials.get("eos_token"),
        }
        for conversation in conversations:
            for add_generation_prompt in (True, False):
                case = {
                    "template": name,
                    "conversation": conversation["name"],
                    "add_generation_prompt": add_generation_prompt,
                }
                try:
                    case["text"] = tokenizer.apply_chat_template(
                        conversation["messages"],
                        tools=conversation.get("tools"),
                        chat_template=source,
                        add_generation_prompt=add_generation_prompt,
                        tokenize=False,
                        **conversation.get("kwargs", {}),
                    )
                except Exception as e:  # the template's own refusal
                    case["error"] = str(e)
                out["cases"].append(case)
    OUT.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    errors = sum("error" in c for c in out["cases"])
    print(f"{OUT.relative_to(ROOT)}: {len(out['cases'])} renderings ({errors} refused by their template)")


if __name__ == "__main__":
    main()
