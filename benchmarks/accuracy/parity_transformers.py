#!/usr/bin/env python3
"""Parity of Tidal with Hugging Face transformers' LlamaForCausalLM (issue 12, deliverable 4).

For each model and prompt, Tidal (``benchmarks/logits_dump``: prefill, then greedy decode steps, the
logits behind every token) is compared with transformers on the same tokens:

* Tidal bf16 on the GPU against transformers bf16 and fp32 (the bf16 weights upcast, TF32 off), and
  Tidal f32 on the GPU against transformers fp32;
* transformers bf16 against transformers fp32, the noise floor bf16 itself brings;
* per comparison: the largest absolute logit error, the largest relative one (per position, the
  largest absolute error over the largest |reference logit|), the mean absolute error,
  teacher-forced argmax agreement (transformers fed Tidal's tokens; does its argmax equal Tidal's
  token at each step) and free-running greedy agreement (transformers' own greedy continuation:
  the tokens equal to Tidal's before the first difference, and the share equal).

Models: the embedded model (model/tidal-tiny-16k; its eval.json prompt and a long needle-free text
prompt), and random Llama-3-shaped models built and saved by transformers itself (GQA, llama3 RoPE
scaling, head_dim 128, untied and tied embeddings), with seeded random prompts.

One command on the GPU machine (PyTorch 2.11, transformers 5.x, no network), from the repository root:

    python3 benchmarks/accuracy/parity_transformers.py --build build --out benchmarks/results

writes <out>/parity_transformers_<gpu>.json and .txt (about 1-2 minutes on an H200). ``--quick``
runs one short prompt per model. ``--device cpu`` runs everything on the CPU (Tidal f32 only).
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# Random Llama-3-shaped models, each saved by transformers and loaded by both.
RANDOM_MODELS = [
    dict(name="llama3-gqa-h128-scaled", hidden_size=1024, intermediate_size=2816,
         num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2, head_dim=128,
         vocab_size=32000, max_position_embeddings=131072, rms_norm_eps=1e-5,
         tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
         rope=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0, low_freq_factor=1.0,
                   high_freq_factor=4.0, original_max_position_embeddings=8192)),
    dict(name="llama3-gqa-h128-tied-deep", hidden_size=512, intermediate_size=1536,
         num_hidden_layers=8, num_attention_heads=4, num_key_value_heads=1, head_dim=128,
         vocab_size=8192, max_position_embeddings=16384, rms_norm_eps=1e-5,
         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2,
         rope=dict(rope_type="default", rope_theta=500000.0)),
]


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


def llama_config(spec):
    """A LlamaConfig in whichever RoPE layout this transformers takes (v5: rope_parameters)."""
    kw = {k: v for k, v in spec.items() if k not in ("name", "rope")}
    rope = spec["rope"]
    if hasattr(LlamaConfig(), "rope_parameters"):  # transformers 5
        return LlamaConfig(**kw, rope_parameters=dict(rope))
    scaling = None if rope["rope_type"] == "default" else {
        k: v for k, v in rope.items() if k != "rope_theta"}
    return LlamaConfig(**kw, rope_theta=rope["rope_theta"], rope_scaling=scaling)


def load_hf(path, dtype, device):
    try:
        m = LlamaForCausalLM.from_pretrained(path, dtype=dtype)
    except TypeError:  # transformers 4: torch_dtype
        m = LlamaForCausalLM.from_pretrained(path, torch_dtype=dtype)
    return m.to(device).eval()


def save_random_model(spec, out_dir, seed):
    torch.manual_seed(seed)
    model = LlamaForCausalLM(llama_config(spec)).to(torch.bfloat16)
    model.save_pretrained(out_dir, safe_serialization=True)
    cfg = json.load(open(os.path.join(out_dir, "config.json")))
    rope_text = json.dumps({k: cfg.get(k) for k in ("rope_parameters", "rope_scaling", "rope_theta")})
    if spec["rope"]["rope_type"] == "llama3":
        assert "llama3" in rope_text, "config.json lost the llama3 RoPE scaling: " + rope_text
    return rope_text


@torch.no_grad()
def hf_teacher_forced(model, prompt, tokens, device):
    """Logits at the positions whose next tokens are `tokens` (prompt fed, then tokens[:-1])."""
    ids = torch.tensor([list(prompt) + list(tokens[:-1])], device=device)
    hidden = model.model(input_ids=ids).last_hidden_state[:, len(prompt) - 1:]
    return model.lm_head(hidden)[0].float().cpu().numpy()


@torch.no_grad()
def hf_greedy(model, prompt, steps, device):
    ids = torch.tensor([list(prompt)], device=device)
    out = model.model(input_ids=ids, use_cache=True)
    past, tokens = out.past_key_values, []
    for i in range(steps):
        nxt = int(model.lm_head(out.last_hidden_state[:, -1:])[0, -1].float().argmax())
        tokens.append(nxt)
        if i + 1 == steps:
            break
        out = model.model(input_ids=torch.tensor([[nxt]], device=device), past_key_values=past,
                          use_cache=True)
        past = out.past_key_values
    return tokens


def tidal_dump(build, model_dir, prompt, steps, device, dtype, work):
    ids = os.path.join(work, "prompt_ids.txt")
    with open(ids, "w") as f:
        f.write(" ".join(str(t) for t in prompt))
    out = os.path.join(work, "tidal_%s_%s" % (device, dtype))
    cmd = [os.path.join(build, "benchmarks", "logits_dump"), "--model", model_dir,
           "--prompt-ids-file", ids, "--steps", str(steps), "--device", device, "--dtype", dtype,
           "--out", out]
    subprocess.run(cmd, check=True)
    meta = json.load(open(out + ".json"))
    return np.load(out + ".npy"), meta["tokens"]


def compare(got, want, got_tokens, want_greedy):
    """Errors of logits `got` against `want` ([steps, vocab]) and token agreement."""
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    scale = np.maximum(np.abs(want).max(axis=1), 1e-30)
    margins = np.sort(want, axis=1)[:, -2:]
    tf_agree = float(np.mean(want.argmax(axis=1) == np.asarray(got_tokens)))
    prefix = 0
    for a, b in zip(got_tokens, want_greedy):
        if a != b:
            break
        prefix += 1
    same = float(np.mean(np.asarray(got_tokens) == np.asarray(want_greedy)))
    return dict(max_abs=float(err.max()), max_rel=float((err.max(axis=1) / scale).max()),
                mean_abs=float(err.mean()), tf_argmax_agree=tf_agree,
                greedy_prefix=prefix, greedy_equal=same, steps=len(got_tokens),
                min_top2_margin=float((margins[:, 1] - margins[:, 0]).min()))


def text_prompt(model_dir, length, text_path, seed):
    """`length` tokens of held-out text (BOS first), or seeded random ids without a text."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    rng = np.random.default_rng(seed)
    if text_path and os.path.exists(text_path):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
        ids = tok.encode(open(text_path, encoding="utf-8").read()[200000:400000]).ids
        return [cfg["bos_token_id"]] + ids[:length - 1], "text"
    return [cfg["bos_token_id"]] + rng.integers(10, cfg["vocab_size"] - 2, length - 1).tolist(), "random"


def run_case(args, name, model_dir, prompt, prompt_kind, steps, work, rows):
    device = args.device
    log("%s: %d-token %s prompt, %d steps" % (name, len(prompt), prompt_kind, steps))
    runs = {}
    tidal_kinds = [("bf16", "cuda"), ("f32", "cuda")] if device == "cuda" else [("f32", "cpu")]
    for dtype, dev in tidal_kinds:
        runs["tidal_" + dtype] = tidal_dump(args.build, model_dir, prompt, steps, dev, dtype, work)
    hf = {}
    for label, dtype in (("hf_bf16", torch.bfloat16), ("hf_fp32", torch.float32)):
        if device == "cpu" and label == "hf_bf16":
            continue
        model = load_hf(model_dir, dtype, device)
        hf[label] = model
    # Each Tidal run against each transformers precision, teacher-forced on Tidal's own tokens.
    pairs = [("tidal_bf16", "hf_bf16"), ("tidal_bf16", "hf_fp32"), ("tidal_f32", "hf_fp32")]
    for t, h in pairs:
        if t not in runs or h not in hf:
            continue
        logits, tokens = runs[t]
        want = hf_teacher_forced(hf[h], prompt, tokens, device)
        greedy = hf_greedy(hf[h], prompt, steps, device)
        r = compare(logits, want, tokens, greedy)
        r.update(model=name, prompt=prompt_kind, prompt_tokens=len(prompt), got=t, reference=h)
        rows.append(r)
    if "hf_bf16" in hf and "hf_fp32" in hf:  # the floor: transformers bf16 against its fp32
        greedy16 = hf_greedy(hf["hf_bf16"], prompt, steps, device)
        l16 = hf_teacher_forced(hf["hf_bf16"], prompt, greedy16, device)
        l32 = hf_teacher_forced(hf["hf_fp32"], prompt, greedy16, device)
        r = compare(l16, l32, greedy16, hf_greedy(hf["hf_fp32"], prompt, steps, device))
        r.update(model=name, prompt=prompt_kind, prompt_tokens=len(prompt), got="hf_bf16",
                 reference="hf_fp32")
        rows.append(r)
    for m in hf.values():
        del m
    if device == "cuda":
        torch.cuda.empty_cache()


def table(rows):
    head = ("%-26s %-6s %6s %-10s %-8s %9s %9s %9s %8s %9s %7s" %
            ("model", "prompt", "tokens", "tidal/hf", "vs", "max_abs", "max_rel", "mean_abs",
             "tf_agree", "greedy", "equal%"))
    lines = [head]
    for r in rows:
        lines.append("%-26s %-6s %6d %-10s %-8s %9.3g %9.3g %9.3g %8.3f %6d/%-2d %7.1f" % (
            r["model"], r["prompt"], r["prompt_tokens"], r["got"], r["reference"], r["max_abs"],
            r["max_rel"], r["mean_abs"], r["tf_argmax_agree"], r["greedy_prefix"], r["steps"],
            100 * r["greedy_equal"]))
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build", help="Tidal build directory (benchmarks/logits_dump)")
    ap.add_argument("--out", default=os.path.join(REPO, "benchmarks", "results"))
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--steps", type=int, default=32, help="greedy tokens per prompt")
    ap.add_argument("--text", default=os.path.join(REPO, "..", "shared", "text", "austen", "persuasion.txt"),
                    help="held-out text for the embedded model's long prompt (random ids if absent)")
    ap.add_argument("--quick", action="store_true", help="one short prompt per model")
    ap.add_argument("--seed", type=int, default=12)
    args = ap.parse_args()
    if args.device == "cuda":
        assert torch.cuda.is_available(), "no CUDA device visible (use --device cpu)"
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    os.makedirs(args.out, exist_ok=True)
    rows = []
    t0 = time.time()
    with tempfile.TemporaryDirectory() as work:
        tiny = os.path.join(REPO, "model", "tidal-tiny-16k")
        ref = json.load(open(os.path.join(tiny, "eval.json")))["reference_greedy_64"]
        run_case(args, "tidal-tiny-16k", tiny, ref["prompt_ids"], "eval", args.steps, work, rows)
        if not args.quick:
            prompt, kind = text_prompt(tiny, 4096, args.text, args.seed)
            run_case(args, "tidal-tiny-16k", tiny, prompt, kind, args.steps, work, rows)
        rope = {}
        for i, spec in enumerate(RANDOM_MODELS):
            d = os.path.join(work, spec["name"])
            rope[spec["name"]] = save_random_model(spec, d, args.seed + i)
            rng = np.random.default_rng(args.seed + 100 + i)
            for length in ([256] if args.quick else [256, 4096]):
                prompt = [1] + rng.integers(10, spec["vocab_size"] - 2, length - 1).tolist()
                run_case(args, spec["name"], d, prompt, "random", args.steps, work, rows)
    gpu = torch.cuda.get_device_name(0) if args.device == "cuda" else platform.processor() or "cpu"
    slug = "".join(c if c.isalnum() else "_" for c in gpu.lower()).strip("_")
    result = dict(device=gpu, torch=torch.__version__, transformers=transformers.__version__,
                  python=platform.python_version(), seconds=round(time.time() - t0, 1),
                  steps=args.steps, random_models=RANDOM_MODELS, saved_rope=rope, rows=rows)
    base = os.path.join(args.out, "parity_transformers_%s" % slug)
    with open(base + ".json", "w") as f:
        json.dump(result, f, indent=1)
    text = ("# Tidal vs transformers LlamaForCausalLM on %s (torch %s, transformers %s), %d greedy "
            "steps per prompt\n# max_rel: per position, the largest |error| over the largest "
            "|reference logit|; tf_agree: transformers' argmax equals Tidal's token, fed Tidal's "
            "tokens;\n# greedy: transformers' own greedy tokens equal to Tidal's before the first "
            "difference; equal%%: positions equal. hf_bf16 vs hf_fp32: bf16's own noise floor.\n"
            % (gpu, torch.__version__, transformers.__version__, args.steps)) + table(rows) + "\n"
    with open(base + ".txt", "w") as f:
        f.write(text)
    print(text)
    log("wrote %s.{json,txt} in %.0f s" % (base, time.time() - t0))


if __name__ == "__main__":
    sys.exit(main())
