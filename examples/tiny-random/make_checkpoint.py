#!/usr/bin/env python3
"""Writes a tiny random Llama checkpoint as Hugging Face saves one:
config.json, model.safetensors and a byte-level BPE tokenizer.json.

Python's standard library only (no numpy, no torch, no network), so the
example runs on a fresh machine. The weights are random (seeded): the model
compiles, runs and generates, but its text is noise.

Usage: make_checkpoint.py OUT_DIR [--seed N]
"""

import argparse
import json
import random
import struct
from pathlib import Path

HIDDEN = 64
INTERMEDIATE = 128
LAYERS = 2
HEADS = 4
KV_HEADS = 2
HEAD_DIM = HIDDEN // HEADS
MERGES = 63
# One special token, the 256 byte tokens of byte-level BPE, and MERGES merges.
VOCAB = 1 + 256 + MERGES
# The text the tokenizer's merges are learned from.
CORPUS = (
    "forge compiles a language model checkpoint into a standalone project that "
    "runs the model on the GPU. the kernels are specialised to the shapes of the "
    "model, and the generated code is meant to be read by the people who run it."
)


def byte_to_unicode():
    """GPT-2's reversible map from bytes to printable characters."""
    keep = list(range(ord("!"), ord("~") + 1))
    keep += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def learn_merges(text, count, chars):
    """Byte-pair merges over the words of `text`, most frequent pair first."""
    words = []
    for i, word in enumerate(text.split(" ")):
        piece = (" " if i else "") + word
        words.append([chars[b] for b in piece.encode("utf-8")])
    merges = []
    for _ in range(count):
        pairs = {}
        for w in words:
            for a, b in zip(w, w[1:]):
                pairs[(a, b)] = pairs.get((a, b), 0) + 1
        if not pairs:
            break
        best = max(sorted(pairs), key=lambda p: pairs[p])
        merges.append(best)
        for w in words:
            i = 0
            while i < len(w) - 1:
                if (w[i], w[i + 1]) == best:
                    w[i : i + 2] = [w[i] + w[i + 1]]
                else:
                    i += 1
    return merges


def tokenizer_json():
    chars = byte_to_unicode()
    vocab = {"<|endoftext|>": 0}
    for b in range(256):
        vocab[chars[b]] = len(vocab)
    merges = learn_merges(CORPUS, MERGES, chars)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    assert len(vocab) == VOCAB, len(vocab)
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": 0, "content": "<|endoftext|>", "single_word": False, "lstrip": False,
             "rstrip": False, "normalized": False, "special": True}
        ],
        "normalizer": None,
        "pre_tokenizer": byte_level,
        "post_processor": byte_level,
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
            "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
            "ignore_merges": False, "vocab": vocab, "merges": [[a, b] for a, b in merges],
        },
    }


def config_json():
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": HIDDEN,
        "intermediate_size": INTERMEDIATE,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": KV_HEADS,
        "head_dim": HEAD_DIM,
        "hidden_act": "silu",
        "max_position_embeddings": 256,
        "rms_norm_eps": 1e-05,
        "rope_theta": 10000.0,
        "tie_word_embeddings": False,
        "vocab_size": VOCAB,
        "bos_token_id": None,
        "eos_token_id": 0,
        "torch_dtype": "float32",
    }


def tensors(rng):
    """(name, shape, values) of every weight, initialised as transformers does (std 0.02, norms 1)."""
    def normal(*shape):
        n = 1
        for d in shape:
            n *= d
        return [rng.gauss(0.0, 0.02) for _ in range(n)]

    out = [("model.embed_tokens.weight", (VOCAB, HIDDEN), normal(VOCAB, HIDDEN))]
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        out += [
            (p + "input_layernorm.weight", (HIDDEN,), [1.0] * HIDDEN),
            (p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN), normal(HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), normal(KV_HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), normal(KV_HEADS * HEAD_DIM, HIDDEN)),
            (p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM), normal(HIDDEN, HEADS * HEAD_DIM)),
            (p + "post_attention_layernorm.weight", (HIDDEN,), [1.0] * HIDDEN),
            (p + "mlp.gate_proj.weight", (INTERMEDIATE, HIDDEN), normal(INTERMEDIATE, HIDDEN)),
            (p + "mlp.up_proj.weight", (INTERMEDIATE, HIDDEN), normal(INTERMEDIATE, HIDDEN)),
            (p + "mlp.down_proj.weight", (HIDDEN, INTERMEDIATE), normal(HIDDEN, INTERMEDIATE)),
        ]
    out += [
        ("model.norm.weight", (HIDDEN,), [1.0] * HIDDEN),
        ("lm_head.weight", (VOCAB, HIDDEN), normal(VOCAB, HIDDEN)),
    ]
    return out


def write_safetensors(path, entries):
    """The safetensors layout: u64 header length, JSON header, packed little-endian data."""
    header, blobs, offset = {"__metadata__": {"format": "pt"}}, [], 0
    for name, shape, values in entries:
        blob = struct.pack(f"<{len(values)}f", *values)
        header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "config.json").write_text(json.dumps(config_json(), indent=2) + "\n")
    (args.out / "tokenizer.json").write_text(json.dumps(tokenizer_json(), ensure_ascii=False) + "\n")
    write_safetensors(args.out / "model.safetensors", tensors(random.Random(args.seed)))
    print(f"wrote {args.out}: a random {LAYERS}-layer Llama, hidden {HIDDEN}, vocabulary {VOCAB}")


if __name__ == "__main__":
    main()
