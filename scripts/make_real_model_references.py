#!/usr/bin/env python3
"""Reference outputs of the two real GGUF models, from transformers on dequantised f32 weights.

transformers' `from_pretrained(dir, gguf_file=...)` dequantises every tensor (Q4_1, Q5_0, Q8_0,
Q4_K, Q6_K) to f32 with gguf-py and runs the model in f32: the like-for-like reference for forge's
kernels, which read the same quantised blocks and compute in f32. (llama.cpp quantises activations
inside its matmuls, so its logits are not this reference.)

Per model it records, for a committed prompt, the prompt's ids and at every position the top-1 id
and the top-2 margin (logit of the best minus the second), and the greedy continuation of
"The capital of France is" with each step's margin. Tests compare top-1 only where the margin
exceeds their stated tolerance, and greedy text for as long as every margin does.

Usage (in a venv with torch, transformers 5.23.0, gguf 0.19.0 and accelerate):
    python scripts/make_real_model_references.py      (writes tests/fixtures/real_models/*.json)
The GGUFs come from scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh into .cache/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache"
OUT = ROOT / "tests" / "fixtures" / "real_models"

MODELS = {
    "smollm2_q4_1": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "gemma3_q4_k_m": "gemma-3-270m-q4_k_m.gguf",
}

PROMPT = (
    "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France. "
    "It is named after the engineer Gustave Eiffel, whose company designed and built the tower "
    "from 1887 to 1889."
)
GREEDY_PROMPT = "The capital of France is"
GREEDY_TOKENS = 24


def top2(logits):
    import torch

    values, ids = torch.topk(logits, 2)
    return int(ids[0]), float(values[0] - values[1])


def reference(name: str, gguf: str) -> dict:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = CACHE / gguf
    if not path.is_file():
        sys.exit(f"{path}: missing (run scripts/fetch_smollm2.sh and scripts/fetch_gemma3.sh)")
    tokenizer = AutoTokenizer.from_pretrained(CACHE, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(CACHE, gguf_file=gguf, dtype=torch.float32)
    model.eval()

    with torch.no_grad():
        ids = tokenizer(PROMPT, return_tensors="pt").input_ids
        logits = model(ids).logits[0]
        positions = [top2(row) for row in logits]

        greedy_ids = tokenizer(GREEDY_PROMPT, return_tensors="pt").input_ids
        steps = []
        sequence = greedy_ids
        for _ in range(GREEDY_TOKENS):
            best, margin = top2(model(sequence).logits[0, -1])
            steps.append((best, margin))
            sequence = torch.cat([sequence, torch.tensor([[best]])], dim=1)

    return {
        "model": gguf,
        "made_with": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
        },
        "prompt": PROMPT,
        "prompt_ids": ids[0].tolist(),
        "top1": [p[0] for p in positions],
        "top1_margin": [round(p[1], 6) for p in positions],
        "greedy_prompt": GREEDY_PROMPT,
        "greedy_prompt_ids": greedy_ids[0].tolist(),
        "greedy_ids": [s[0] for s in steps],
        "greedy_margin": [round(s[1], 6) for s in steps],
        # The text of every leading part of the continuation, so a test can stop where it must.
        "greedy_texts": [tokenizer.decode([s[0] for s in steps[: n + 1]]) for n in range(len(steps))],
    }


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, gguf in MODELS.items():
        data = reference(name, gguf)
        target = OUT / f"{name}.json"
        target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {target}: {len(data['prompt_ids'])} prompt tokens, greedy {data['greedy_texts'][-1]!r}")


if __name__ == "__main__":
    main()
