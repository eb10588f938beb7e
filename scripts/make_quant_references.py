#!/usr/bin/env python3
"""Make transformers reference outputs for fixtures whose weight matrices are Q8_0/Q4_0.

forge quantises weight matrices exactly as gguf-py does, so its quantised
outputs must be compared with a reference computed on the same quantised
values, not with the f32 reference. For each (fixture, dtype) in CASES this
loads tests/fixtures/<name>/hf in float32, replaces every nn.Linear and
nn.Embedding weight (token embedding, projections, untied lm_head) by
gguf.quants.dequantize(gguf.quants.quantize(w, qtype)) — 32-value blocks along
each row; a matrix whose rows are not whole blocks is rounded to f16 instead,
as forge stores it; norm weights, biases, conv filters and other 1-D tensors
stay f32; a tied embedding is quantised once and stays tied — and writes
tests/fixtures/<name>/reference/<dtype>/:
  prompt_logits.npy  float32 [T, vocab] logits of the f32 reference's prompt ids
  reference.json     prompt ids, 16-token greedy continuation (full recompute
                     each step, eos does not stop), top-1/top-2 margins, how the
                     weights were quantised, max |Δ| against the f32 logits, and
                     whether an f16 K/V cache changes the greedy tokens
and tests/fixtures/quant_references.json indexing the cases.

K-quant cases (Q4_K, Q5_K, Q6_K, Q4_K_M) cannot be made that way: gguf-py
decodes K-quants but does not encode them. Their weights are instead the
GGUF files scripts/make_k_quant_ggufs.py quantised with llama.cpp's own
quantiser (listed in tests/fixtures/k_quant_ggufs.json), and the reference
replaces every parameter by that file's tensor as transformers' GGUF loader
reads it (load_gguf_checkpoint: gguf-py's dequantize, llama's q/k
permutation undone); forge compiles the same file with its formats kept.

Compute follows scripts/make_fixtures.py: float32 weights and activations on
CPU, eager attention, use_cache=False, 1 thread, deterministic algorithms. No
randomness is involved (the checkpoints are already seeded); re-running gives
byte-identical files on the same library versions.

Usage (needs torch, transformers, gguf, numpy; about a minute):
  python3 scripts/make_quant_references.py [--only NAME:DTYPE ...]
  python3 scripts/make_quant_references.py --check   (json + numpy only; CI)

Run it after scripts/make_fixtures.py: regenerating a fixture replaces its
whole directory, these references included, and --check then reports them
missing (or stale, through the recorded checkpoint hashes).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from pathlib import Path

# Offline and single-threaded before torch/transformers load, as make_fixtures.py does.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

# (fixture, weight dtype): every attention/MLP family forge compiles, both block formats.
CASES = [
    ("qwen2", "q8_0"),
    ("qwen2", "q4_0"),
    ("llama3", "q8_0"),
    ("llama3", "q4_0"),
    ("smollm2", "q8_0"),
    ("smollm2", "q4_0"),
    ("mistral", "q8_0"),
    ("mistral", "q4_0"),
    ("gemma", "q8_0"),
    ("gemma", "q4_0"),
    ("phi3", "q8_0"),
    ("phi3", "q4_0"),
    ("qwen3", "q8_0"),
    ("qwen3", "q4_0"),
    ("mamba", "q8_0"),
    ("mamba2", "q4_0"),
    # Hybrids (hidden 48): no matrix row is whole 32-value blocks, so every
    # matrix takes the f16 fallback below; these check that path, not Q8_0 kernels.
    ("lfm2", "q8_0"),
    ("falcon_h1", "q8_0"),
    # lfm2_q: LFM2 at hidden 64 and feed-forward 128, every matrix row whole blocks,
    # so these do quantise a hybrid (short-conv and attention layers) in both formats.
    ("lfm2_q", "q8_0"),
    ("lfm2_q", "q4_0"),
    # Mixtures of experts (hidden 64, expert width 32): the stacked 3-D expert
    # parameters quantised row by row as forge stores them, routers float32.
    ("qwen3_moe", "q8_0"),
    ("qwen3_moe", "q4_0"),
    ("qwen2_moe", "q8_0"),
    # K-quants (hidden 256, every row whole super-blocks): llama.cpp's quantisations of
    # gguf/llama_k.f16.gguf (make_k_quant_ggufs.py), each matrix Q4_K, Q5_K or Q6_K, and
    # llama.cpp's Q4_K_M mix of Q4_K and Q6_K.
    ("llama_k", "q4_k"),
    ("llama_k", "q5_k"),
    ("llama_k", "q6_k"),
    ("llama_k", "q4_k_m"),
    # The same fixture quantised by llama.cpp to its Q4_1, Q5_0 and Q5_1 mixes (every matrix
    # and the token embedding in that format, the head Q6_K), read from those files as above.
    ("llama_k", "q4_1"),
    ("llama_k", "q5_0"),
    ("llama_k", "q5_1"),
    # --dtype with the other legacy formats: biased projections (qwen2) and experts (qwen3_moe).
    ("qwen2", "q5_1"),
    ("qwen3_moe", "q5_0"),
    ("qwen3_moe", "q4_1"),
]
# State-space architectures: no attention, so no K/V cache to round.
STATE_SPACE = {"MambaForCausalLM", "Mamba2ForCausalLM"}
# Linear layers forge keeps in float32 whatever --dtype says: Mamba-1's dt
# projection, which its selective-scan kernel computes itself.
FLOAT32_LINEARS = ("dt_proj",)
# Routers forge keeps in float32 (routing is decided on exact logits): the
# Linear gate of Qwen2-MoE's shared expert, which forge stacks under the router.
ROUTER_LINEARS = ("shared_expert_gate",)
# transformers 5's fused expert stacks, [experts, rows, cols] with cols the
# input: forge stores each expert's rows as a matrix of its own, so each row
# is quantised alone, as for a Linear weight.
EXPERT_STACKS = (".experts.gate_up_proj", ".experts.down_proj")
# The router weight of a TopKRouter module (2-D, not an nn.Linear), kept float32.
ROUTER_WEIGHTS = (".mlp.gate.weight",)
INDEX = "quant_references.json"
# The K-quant GGUFs of make_k_quant_ggufs.py, whose tensors are the weights of their cases.
K_QUANT_GGUFS = "k_quant_ggufs.json"
# Below this top-1/top-2 logit gap a greedy token can legitimately flip under
# float noise of the size an f16 K/V cache or a different summation order adds.
SMALL_MARGIN = 1e-2
# How far (relative to the largest f32 logit) this host's f32 logits may be from the committed
# ones. The same library versions on another x86 host can round some state-space fixtures
# differently in the last bits (seen: falcon_h1 and mamba2, ≤ 1e-6 absolute of logits ~1.5,
# float noise, not staleness); a changed fixture or library moves them far more.
F32_REPRODUCTION_TOLERANCE = 1e-5


class QuantRefError(Exception):
    pass


def case_dir(root: Path, name: str, dtype: str) -> Path:
    return root / name / "reference" / dtype


def top2_margin(row) -> float:
    import numpy as np

    top = np.sort(np.asarray(row, dtype=np.float64))[-2:]
    return float(top[1] - top[0])


def checkpoint_digest(hf: Path) -> dict:
    """sha256 of the safetensors files, so --check notices references older than their checkpoint."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(hf.glob("*.safetensors"))}


# ---------------------------------------------------------------- generation (torch)


def quantise_weights(model, qtype_name: str) -> dict:
    """Replace Linear/Embedding weights in place by their gguf-py quantise/dequantise round trip.

    Mamba's conv filters (nn.Conv1d) and dt projection stay float32, as forge keeps them."""
    import gguf
    import numpy as np
    import torch

    qtype = gguf.GGMLQuantizationType[qtype_name.upper()]
    names = {id(p): n for n, p in model.named_parameters(remove_duplicate=False)}
    done: dict[int, str] = {}
    quantised, tied, f16_fallback = [], [], []
    max_err = 0.0
    for mod_name, module in model.named_modules():
        if not isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
            continue
        if mod_name.endswith(FLOAT32_LINEARS) or mod_name.endswith(ROUTER_LINEARS):
            continue
        w = module.weight
        if id(w) in done:
            tied.append({"name": f"{mod_name}.weight", "same_tensor_as": done[id(w)]})
            continue
        done[id(w)] = names[id(w)]
        src = np.ascontiguousarray(w.detach().numpy(), dtype=np.float32)
        if src.ndim != 2:
            raise QuantRefError(f"{names[id(w)]}: shape {src.shape} is not a matrix")
        if src.shape[1] % 32:
            # Rows that are not whole 32-value blocks: forge stores such a matrix as f16
            # whatever --dtype says, as llama.cpp does (matrix_dtype in
            # crates/forge-codegen/src/plan/options.rs), so round it to f16 (to nearest even).
            # forge rounds after folding Falcon-H1's µP multipliers into the weights; that
            # differs from rounding the checkpoint's weights by at most an f16 ulp per weight.
            deq = src.astype(np.float16).astype(np.float32)
            f16_fallback.append({"name": names[id(w)], "shape": list(src.shape)})
        else:
            deq = gguf.quants.dequantize(gguf.quants.quantize(src, qtype), qtype).astype(np.float32)
            quantised.append({"name": names[id(w)], "shape": list(src.shape)})
        max_err = max(max_err, float(np.abs(deq - src).max()))
        with torch.no_grad():
            w.copy_(torch.from_numpy(deq))
    experts = []
    for n, p in model.named_parameters():
        if not n.endswith(EXPERT_STACKS) or id(p) in done:
            continue
        done[id(p)] = n
        src = np.ascontiguousarray(p.detach().numpy(), dtype=np.float32)
        rows = src.reshape(-1, src.shape[-1])
        if rows.shape[1] % 32:
            deq = rows.astype(np.float16).astype(np.float32)
            f16_fallback.append({"name": n, "shape": list(src.shape)})
        else:
            deq = gguf.quants.dequantize(gguf.quants.quantize(rows, qtype), qtype).astype(np.float32)
            experts.append({"name": n, "shape": list(src.shape)})
        max_err = max(max_err, float(np.abs(deq - rows).max()))
        with torch.no_grad():
            p.copy_(torch.from_numpy(deq.reshape(src.shape)))
    # Anything else with 2+ dims has no defined treatment here.
    kept = []
    float32_modules = {
        id(p)
        for mod_name, module in model.named_modules()
        if isinstance(module, torch.nn.Conv1d) or mod_name.endswith(FLOAT32_LINEARS)
        for p in module.parameters(recurse=False)
    }
    for n, p in model.named_parameters():
        if id(p) in done:
            continue
        # Mamba-1's A_log ([d_inner, d_state]) is a scan parameter forge keeps float32.
        router = n.endswith(ROUTER_WEIGHTS) or any(f"{r}.weight" in n for r in ROUTER_LINEARS)
        if p.dim() >= 2 and id(p) not in float32_modules and not n.endswith(".A_log") and not router:
            raise QuantRefError(f"{n}: {p.dim()}-D parameter outside Linear/Embedding; quantisation undefined")
        kept.append(n)
    method = (
        f"gguf.quants.dequantize(gguf.quants.quantize(w, {qtype.name}), {qtype.name}) on the float32 "
        "weight of every nn.Linear and nn.Embedding (blocks of 32 along each row) but Mamba's dt_proj; "
        "everything else (conv filters, dt_proj, norms, biases, A_log, D) float32"
    )
    weights = {"qtype": qtype_name, "method": method, "quantised": quantised}
    # Only for mixtures, so the other references stay byte-identical on re-runs.
    if experts:
        weights["method"] += (
            "; the stacked expert parameters (experts.gate_up_proj, experts.down_proj) the same way, "
            "each row of each expert alone; routers (mlp.gate, shared_expert_gate) float32, as forge keeps them"
        )
        weights["quantised_experts"] = experts
    # Only when some matrix took it, so references without one stay byte-identical on re-runs.
    if f16_fallback:
        weights["method"] += (
            "; matrices whose rows are not whole 32-value blocks are rounded to f16 instead, "
            "as forge stores them (listed in f16_fallback)"
        )
        weights["f16_fallback"] = f16_fallback
    return {**weights, "tied": tied, "kept_float32": kept, "max_abs_weight_change": max_err}


def k_quant_gguf(root: Path, name: str, dtype: str) -> dict | None:
    """The make_k_quant_ggufs.py entry holding the weights of case (name, dtype), if it is a K-quant case."""
    path = root / K_QUANT_GGUFS
    entries = json.loads(path.read_text())["files"] if path.is_file() else []
    return next((e for e in entries if (e["fixture"], e["format"]) == (name, dtype)), None)


def gguf_weights(model, root: Path, entry: dict) -> dict:
    """Replace every parameter in place by the K-quant GGUF's tensor, as transformers' GGUF loader reads it."""
    import numpy as np
    import torch
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    path = root / entry["file"]
    if hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
        raise QuantRefError(f"{path}: differs from {K_QUANT_GGUFS} (re-run scripts/make_k_quant_ggufs.py)")
    tensors = load_gguf_checkpoint(str(path), return_tensors=True, model_to_load=model)["tensors"]
    params = dict(model.named_parameters())
    if set(tensors) != set(params):
        raise QuantRefError(f"{path}: tensors {sorted(set(tensors) ^ set(params))} do not match the model's")
    max_err = 0.0
    for n, p in params.items():
        t = torch.as_tensor(tensors[n], dtype=torch.float32).reshape(p.shape)
        if p.dim() == 1 and not torch.equal(t, p.detach()):
            # 1-D tensors are stored f32 by the converter and left alone by the quantiser.
            raise QuantRefError(f"{path}: {n} is not the checkpoint's")
        max_err = max(max_err, float((t - p.detach()).abs().max()))
        with torch.no_grad():
            p.copy_(t)
    return {
        "qtype": entry["format"],
        "method": (
            f"every parameter from {entry['file']} (llama.cpp's llama_model_quantize, {entry['ftype']}"
            f"{', pure' if entry['pure'] else ''}; see {K_QUANT_GGUFS}) as transformers' load_gguf_checkpoint "
            "reads it: gguf-py's dequantize, llama's q/k permutation undone; 1-D tensors are the checkpoint's f32"
        ),
        "gguf": {"file": entry["file"], "sha256": entry["sha256"], "tensor_types": entry["tensor_types"]},
        "max_abs_weight_change": max_err,
    }


def kv_attention(dtype):
    """An attention function storing K (after RoPE) and V as `dtype` first, as forge's KV cache does."""

    def attend(module, query, key, value, attention_mask, **kwargs):
        eager = sys.modules[type(module).__module__].eager_attention_forward
        k, v = key.to(dtype).float(), value.to(dtype).float()
        return eager(module, query, k, v, attention_mask, **kwargs)

    return attend


def run_model(model, ids: list[int], n_new: int, prompt_logits) -> tuple:
    """Prompt logits, then greedy tokens by full recompute with each step's top-1/top-2 margin."""
    import numpy as np

    logits = prompt_logits(model, ids)
    seq, margins = list(ids), []
    for step in range(n_new):
        last = logits[-1] if step == 0 else prompt_logits(model, seq)[-1]
        margins.append(top2_margin(last))
        seq.append(int(np.argmax(last)))
    return logits, seq[len(ids) :], margins


def make_case(root: Path, name: str, dtype: str, manifest_entry: dict) -> dict:
    import numpy as np
    from fixtures.reference import load_model, prompt_logits

    hf = root / manifest_entry["dir"]
    f32_ref = json.loads((root / manifest_entry["reference"]["json"]).read_text())
    f32_logits = np.load(root / manifest_entry["reference"]["prompt_logits"])
    ids = f32_ref["prompt"]["ids"]
    n_new = f32_ref["greedy"]["max_new_tokens"]

    model = load_model(hf, manifest_entry["architecture"])
    has_attention = manifest_entry["architecture"] not in STATE_SPACE
    # The unmodified model must reproduce the committed f32 reference, or the fixture is stale;
    # up to last-bit rounding of another host (F32_REPRODUCTION_TOLERANCE), recorded when not 0.
    check = prompt_logits(model, ids)
    reproduction = float(np.abs(check - f32_logits).max())
    if reproduction > F32_REPRODUCTION_TOLERANCE * float(np.abs(f32_logits).max()):
        raise QuantRefError(
            f"{name}: f32 model no longer reproduces reference/prompt_logits.npy (max |Δ| {reproduction})"
        )
    if reproduction:
        print(f"make_quant_references:   f32 reproduction on this host: max |Δ| {reproduction:.3g}", flush=True)
    if has_attention:
        # The K/V-rounding hook with f32 storage must be eager attention exactly, mask included.
        model.config._attn_implementation = "forge_f32_kv"
        if not np.array_equal(prompt_logits(model, ids), check):
            raise QuantRefError(f"{name}: the K/V attention hook does not reproduce eager attention")
        model.config._attn_implementation = "eager"
    gguf = k_quant_gguf(root, name, dtype)
    weights = gguf_weights(model, root, gguf) if gguf else quantise_weights(model, dtype)
    logits, greedy, margins = run_model(model, ids, n_new, prompt_logits)

    kv_check = None
    if has_attention:
        model.config._attn_implementation = "forge_f16_kv"
        kv_logits, kv_greedy, _ = run_model(model, ids, n_new, prompt_logits)
        model.config._attn_implementation = "eager"
        if np.array_equal(kv_logits, logits):
            raise QuantRefError(f"{name}: rounding K/V to f16 changed nothing; the attention hook was not called")
        kv_check = {
            "what": "the same run with K (after RoPE) and V rounded to f16 before attention, as forge's f16 KV cache",
            "greedy_ids_equal": kv_greedy == greedy,
            "greedy_ids": kv_greedy,
            "prompt_logits_max_abs_diff": float(np.abs(kv_logits - logits).max()),
        }

    out = case_dir(root, name, dtype)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "prompt_logits.npy", logits.astype(np.float32))
    prompt_margins = [top2_margin(r) for r in logits]
    ref = {
        "fixture": name,
        "weights": {**weights, "checkpoint": manifest_entry["dir"], "checkpoint_sha256": checkpoint_digest(hf)},
        "prompt": {"text": f32_ref["prompt"]["text"], "add_special_tokens": True, "ids": ids},
        "prompt_logits": {
            "file": "prompt_logits.npy",
            "shape": list(logits.shape),
            "dtype": "float32",
            "sha256": hashlib.sha256(logits.astype(np.float32).tobytes()).hexdigest(),
            "argmax": [int(i) for i in logits.argmax(axis=-1)],
            "max_abs": float(np.abs(logits).max()),
            "top2_margin_min": min(prompt_margins),
            "max_abs_diff_vs_f32": float(np.abs(logits - f32_logits).max()),
            # Only when this host's f32 model did not reproduce the committed f32 logits exactly.
            **({"f32_reproduction_max_abs_diff": reproduction} if reproduction else {}),
        },
        "greedy": {
            "max_new_tokens": n_new,
            "stops_at_eos": False,
            "ids": greedy,
            "top2_margins": margins,
            "top2_margin_min": min(margins),
            # Tokens before the first step decided by less than SMALL_MARGIN; later ones may flip under float noise.
            "stable_tokens": next((i for i, m in enumerate(margins) if m < SMALL_MARGIN), n_new),
            "small_margin": SMALL_MARGIN,
            "same_as_f32": greedy == f32_ref["greedy"]["ids"],
        },
        # None for state-space models: they have no K/V cache.
        "f16_kv_check": kv_check,
    }
    (out / "reference.json").write_text(json.dumps(ref, indent=2, ensure_ascii=False) + "\n")
    return {
        "fixture": name,
        "dtype": dtype,
        "json": f"{name}/reference/{dtype}/reference.json",
        "prompt_logits": f"{name}/reference/{dtype}/prompt_logits.npy",
        "prompt_top2_margin_min": ref["prompt_logits"]["top2_margin_min"],
        "greedy_top2_margin_min": ref["greedy"]["top2_margin_min"],
        "greedy_stable_tokens": ref["greedy"]["stable_tokens"],
        "greedy_distinct_tokens": len(set(greedy)),
        "f16_kv_greedy_equal": kv_check["greedy_ids_equal"] if kv_check else None,
    }


def generate(root: Path, cases: list[tuple[str, str]]) -> int:
    from importlib.metadata import version

    import numpy as np
    import torch
    import transformers
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    for kv_name, kv_dtype in (("forge_f16_kv", torch.float16), ("forge_f32_kv", torch.float32)):
        transformers.AttentionInterface.register(kv_name, kv_attention(kv_dtype))
        # Without a mask function of its own a registered attention gets no causal mask at all.
        transformers.AttentionMaskInterface.register(kv_name, ALL_MASK_ATTENTION_FUNCTIONS["eager"])

    manifest = {e["name"]: e for e in json.loads((root / "manifest.json").read_text())["fixtures"]}
    index_path = root / INDEX
    old = json.loads(index_path.read_text())["cases"] if index_path.is_file() else []
    entries = {(e["fixture"], e["dtype"]): e for e in old if (e["fixture"], e["dtype"]) in CASES}
    for name, dtype in cases:
        print(f"make_quant_references: {name} {dtype}", flush=True)
        entries[(name, dtype)] = make_case(root, name, dtype, manifest[name])
        e = entries[(name, dtype)]
        flag = "  SMALL MARGIN" if e["greedy_top2_margin_min"] < SMALL_MARGIN else ""
        print(f"make_quant_references:   greedy top-2 margin min {e['greedy_top2_margin_min']:.4g}{flag}", flush=True)
    index = {
        "generated_by": "scripts/make_quant_references.py",
        "versions": {
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "numpy": np.__version__,
            "gguf_py": version("gguf"),
            "python": ".".join(map(str, sys.version_info[:3])),
        },
        "compute": "float32 activations on CPU, eager attention, use_cache=False, 1 thread; weights as in each reference.json",
        "greedy": "argmax of the last position's logits, recomputing the full sequence each step; eos does not stop",
        "small_margin": SMALL_MARGIN,
        "cases": [entries[c] for c in CASES if c in entries],
    }
    index_path.write_text(json.dumps(index, indent=2, ensure_ascii=False) + "\n")
    print(f"make_quant_references: wrote {index_path}")
    return 0


# ---------------------------------------------------------------- check (json + numpy)


def check_case(root: Path, entry: dict, manifest_entry: dict) -> str:
    import numpy as np

    dtype = entry["dtype"]
    ref = json.loads((root / entry["json"]).read_text())
    logits = np.load(root / entry["prompt_logits"])
    f32_ref = json.loads((root / manifest_entry["reference"]["json"]).read_text())
    f32_logits = np.load(root / manifest_entry["reference"]["prompt_logits"])
    vocab = json.loads((root / manifest_entry["dir"] / "config.json").read_text())["vocab_size"]
    ids = ref["prompt"]["ids"]
    if ids != f32_ref["prompt"]["ids"]:
        raise QuantRefError("prompt ids differ from the f32 reference's")
    if ref["weights"]["qtype"] != dtype:
        raise QuantRefError(f"weights are {ref['weights']['qtype']}, index says {dtype}")
    if ref["weights"]["checkpoint_sha256"] != checkpoint_digest(root / manifest_entry["dir"]):
        raise QuantRefError("checkpoint changed since these references were made; re-run the script")
    gguf = k_quant_gguf(root, entry["fixture"], dtype)
    if gguf and ref["weights"]["gguf"]["sha256"] != gguf["sha256"]:
        raise QuantRefError(f"{gguf['file']} changed since these references were made; re-run the script")
    if logits.dtype != np.float32 or logits.shape != (len(ids), vocab):
        raise QuantRefError(f"prompt_logits {logits.dtype} {logits.shape}, expected float32 ({len(ids)}, {vocab})")
    if not np.isfinite(logits).all():
        raise QuantRefError("prompt_logits has non-finite values")
    if hashlib.sha256(logits.tobytes()).hexdigest() != ref["prompt_logits"]["sha256"]:
        raise QuantRefError("prompt_logits.npy values differ from the sha256 in reference.json")
    if [int(i) for i in logits.argmax(axis=-1)] != ref["prompt_logits"]["argmax"]:
        raise QuantRefError("prompt_logits argmax differs from reference.json")
    greedy = ref["greedy"]["ids"]
    if len(greedy) != ref["greedy"]["max_new_tokens"] or len(ref["greedy"]["top2_margins"]) != len(greedy):
        raise QuantRefError(f"greedy continuation has {len(greedy)} tokens")
    if greedy[0] != int(np.argmax(logits[-1])):
        raise QuantRefError(f"first greedy token {greedy[0]} != argmax of last prompt row")
    if top2_margin(logits[-1]) != ref["greedy"]["top2_margins"][0]:
        raise QuantRefError("first greedy margin does not match prompt_logits")
    diff = float(np.abs(logits - f32_logits).max())
    if diff != ref["prompt_logits"]["max_abs_diff_vs_f32"]:
        raise QuantRefError(
            f"max |Δ| vs f32 is {diff}, reference.json says {ref['prompt_logits']['max_abs_diff_vs_f32']}"
        )
    return f"max |Δ| vs f32 {diff:.3g}, greedy margin min {ref['greedy']['top2_margin_min']:.3g}"


def check_all(root: Path) -> int:
    index = json.loads((root / INDEX).read_text())
    manifest = {e["name"]: e for e in json.loads((root / "manifest.json").read_text())["fixtures"]}
    listed = {(e["fixture"], e["dtype"]) for e in index["cases"]}
    missing = [c for c in CASES if c not in listed]
    failed = len(missing)
    for name, dtype in missing:
        print(f"FAIL {name} {dtype}: not in {INDEX}")
    for entry in index["cases"]:
        try:
            note = check_case(root, entry, manifest[entry["fixture"]])
            print(f"ok   {entry['fixture']} {entry['dtype']}: {note}")
        except (QuantRefError, OSError, ValueError, KeyError) as err:
            failed += 1
            print(f"FAIL {entry['fixture']} {entry['dtype']}: {err}")
    print(f"{len(index['cases']) + len(missing) - failed} passed, {failed} failed")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures")
    ap.add_argument("--only", nargs="*", help="cases NAME:DTYPE to (re)make; the index keeps the others")
    ap.add_argument("--check", action="store_true", help="only verify the committed outputs (json + numpy)")
    args = ap.parse_args()
    if args.check:
        if not (args.out / INDEX).is_file():
            print(f"make_quant_references: error: {args.out / INDEX}: missing", file=sys.stderr)
            return 2
        return check_all(args.out)
    cases = CASES
    if args.only:
        cases = [tuple(c.split(":", 1)) for c in args.only]
        unknown = [c for c in cases if c not in CASES]
        if unknown:
            known = ", ".join(f"{n}:{d}" for n, d in CASES)
            print(f"make_quant_references: error: unknown case {unknown[0]} (known: {known})", file=sys.stderr)
            return 2
    return generate(args.out, cases)


if __name__ == "__main__":
    sys.exit(main())
