# SPDX-License-Identifier: Apache-2.0
"""Decode attention for the PyTorch reference (torch_reference.py), written the way a user who
wants speed writes it, with the fastest SDPA backend picked per call site by measuring.

Two call shapes, both with one query row per head (a decode step), q [B, H, 1, D]:
- grouped: k, v [B, KV, S, D] shared by the H / KV query heads of a group (GQA; dense layers and
  per-KV-head sparse lists). Two layouts: `gqa`, torch >= 2.5's
  scaled_dot_product_attention(..., enable_gqa=True), and `group`, the group's query heads as
  the query sequence ([B, KV, G, D] against [B, KV, S, D]); neither copies K / V per head
  (no repeat_interleave);
- mha: k, v [B, H, T, D], one list per query head (per-query-head sparse lists, Quest).

Backends: SDPA under torch.nn.attention.sdpa_kernel (torch >= 2.3): flash, efficient (memory
efficient), cudnn, then math; `default` (torch picks) where sdpa_kernel is missing; `matmul`
(matmul + softmax) where SDPA itself is (torch < 2.0). tune() runs every fast candidate on the
site's real shapes, checks it against a plain fp32 attention (on the first 4096 keys), times it
with CUDA events and keeps the fastest; math and matmul are tried only when no fast one works.
Every choice and every candidate's time goes into the results rows.
"""
import math
import warnings

import torch
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")
try:  # torch >= 2.3
    from torch.nn.attention import SDPBackend, sdpa_kernel
except ImportError:  # pragma: no cover - old torch
    SDPBackend, sdpa_kernel = None, None

FAST = ("flash", "efficient", "cudnn")
SLOW = ("math", "matmul")


def _backends():
    out = {}
    if SDPBackend is not None:
        for name, attr in (("flash", "FLASH_ATTENTION"), ("efficient", "EFFICIENT_ATTENTION"),
                           ("cudnn", "CUDNN_ATTENTION"), ("math", "MATH")):
            member = getattr(SDPBackend, attr, None)
            if member is not None:
                out[name] = member
    return out


BACKENDS = _backends()


def _probe_gqa():
    if not HAS_SDPA:
        return False
    q, k = torch.zeros(1, 4, 1, 8), torch.zeros(1, 2, 3, 8)
    try:
        F.scaled_dot_product_attention(q, k, k, enable_gqa=True)
        return True
    except (TypeError, RuntimeError):
        return False


HAS_GQA = _probe_gqa()


def naive(q, k, v):
    """fp32 softmax(q k^T / sqrt(D)) v. q [B, H, Lq, D]; k, v [B, KV, S, D], H a multiple of KV."""
    rep = q.shape[1] // k.shape[1]
    kf, vf = k.float(), v.float()
    if rep > 1:
        kf, vf = kf.repeat_interleave(rep, dim=1), vf.repeat_interleave(rep, dim=1)
    s = torch.matmul(q.float(), kf.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(torch.softmax(s, dim=-1), vf)


def _matmul_attention(q, k, v):
    s = torch.matmul(q, k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    return torch.matmul(torch.softmax(s.float(), dim=-1).to(q.dtype), v)


def _sdpa(backend, q, k, v, gqa):
    kw = {"enable_gqa": True} if gqa else {}
    if backend == "matmul":
        return _matmul_attention(q, k, v)
    if backend == "default":
        return F.scaled_dot_product_attention(q, k, v, **kw)
    with sdpa_kernel(BACKENDS[backend]):
        return F.scaled_dot_product_attention(q, k, v, **kw)


class Choice:
    """One way to run a call site: a backend and a layout (gqa / group for grouped, mha)."""

    def __init__(self, backend, layout):
        self.backend, self.layout = backend, layout

    def label(self):
        return self.backend + {"gqa": "+enable_gqa", "group": "+group-as-query", "mha": ""}[self.layout]

    def __call__(self, q, k, v):
        """q [B, H, 1, D]; k, v [B, KV, S, D] (grouped) or [B, H, S, D] (mha) -> [B, H, 1, D]."""
        if self.layout == "group":
            B, H, _, D = q.shape
            kvh = k.shape[1]
            out = _sdpa(self.backend, q.reshape(B, kvh, H // kvh, D), k, v, False)
            return out.reshape(B, H, 1, D)  # SDPA may return it transposed in memory
        return _sdpa(self.backend, q, k, v, self.layout == "gqa")


def candidates(kind, backend="auto", layout="auto"):
    """Every Choice for a call site of `kind` (grouped or mha), fast ones first, each list in the
    order preferred on a tie; --sdpa / --gqa-layout narrow it."""
    if not HAS_SDPA:
        names = ["matmul"]
    elif sdpa_kernel is None:
        names = ["default", "matmul"]
    else:
        names = [b for b in FAST + ("math",) if b in BACKENDS] + ["matmul"]
    if backend == "default" and HAS_SDPA:  # torch's own pick, no sdpa_kernel
        names = ["default"]
    elif backend != "auto":
        names = [b for b in names if b == backend]
    if kind == "mha":
        layouts = ["mha"]
    else:
        layouts = (["gqa"] if HAS_GQA else []) + ["group"]
        if layout != "auto":
            layouts = [x for x in layouts if x == layout]
    # matmul has no enable_gqa: it runs the group layout only
    return [Choice(b, lay) for b in names for lay in layouts if not (b == "matmul" and lay == "gqa")]


def tolerance(dtype):
    return 1e-4 if dtype == torch.float32 else 3e-2


def rel_error(out, ref):
    return float((out.float() - ref).abs().max()) / max(float(ref.abs().max()), 1e-6)


def _time_ms(fn, reps=10):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    stop.record()
    stop.synchronize()
    return start.elapsed_time(stop) / reps


def _try(choice, q, k, v):
    """(output, None) or (None, why) when the backend refuses these shapes."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return choice(q, k, v), None
    except (RuntimeError, NotImplementedError, ValueError, TypeError) as e:
        if "out of memory" in str(e).lower():
            raise
        return None, str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__


def tune(kind, q, k, v, backend="auto", layout="auto", exclude=(), check_keys=4096):
    """The fastest correct Choice for q, k, v (the site's real shapes) and what every candidate
    did: {label: ms | "ok" | "unsupported: ..." | "mismatch ..."}; backends in `exclude` are
    left out. On the CPU the first correct candidate wins (no timing). Raises RuntimeError when
    none works."""
    cuda = q.device.type == "cuda"
    m = min(k.shape[2], check_keys)
    ks, vs = k[:, :, :m], v[:, :, :m]
    ref = naive(q, ks, vs)
    tol = tolerance(q.dtype)
    report, best, best_ms = {}, None, float("inf")
    cands = [c for c in candidates(kind, backend, layout) if c.backend not in exclude]
    if not cands:
        raise RuntimeError("no attention backend to try: --sdpa %s --gqa-layout %s, torch %s has "
                           "SDPA backends %s (enable_gqa: %s), excluded %s" %
                           (backend, layout, torch.__version__, sorted(BACKENDS) or "none",
                            HAS_GQA, sorted(exclude) or "none"))
    for slow_pass in (False, True):
        for c in cands:
            if (c.backend in SLOW) != slow_pass:
                continue
            out, why = _try(c, q, ks, vs)
            if out is None:
                report[c.label()] = "unsupported: " + why
                continue
            err = rel_error(out, ref)
            if not err <= tol:
                report[c.label()] = "mismatch (relative error %.3g)" % err
                continue
            if not cuda:
                report[c.label()] = "ok"
                return c, report
            _, why = _try(c, q, k, v)  # the real shapes
            if why is not None:
                report[c.label()] = "unsupported: " + why
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ms = _time_ms(lambda: c(q, k, v))
            report[c.label()] = round(ms, 5)
            if ms < best_ms:
                best, best_ms = c, ms
        if best is not None:
            return best, report
    raise RuntimeError("no attention backend works for %s q %s k %s: %s" %
                       (kind, tuple(q.shape), tuple(k.shape), report))


def self_test(device, dtype, log=print):
    """Every candidate on small random shapes against naive fp32 attention; returns the number of
    failures (a mismatch, or a shape no candidate runs)."""
    failures = 0
    g = torch.Generator(device="cpu").manual_seed(5)

    def rnd(*shape):
        return torch.randn(*shape, generator=g).to(device=device, dtype=dtype)

    shapes = [("grouped", 2, 32, 8, 300, 128), ("grouped", 1, 32, 8, 4097, 128),
              ("grouped", 1, 8, 2, 1, 32), ("grouped", 2, 32, 32, 129, 128),
              ("mha", 2, 32, 32, 2048, 128), ("mha", 1, 8, 8, 77, 32)]
    for kind, B, H, kvh, S, D in shapes:
        q = rnd(B, H, 1, D)
        k, v = rnd(B, kvh, S, D), rnd(B, kvh, S, D)
        if kind == "grouped":  # a strided cache slice, as the decode step passes
            big_k, big_v = rnd(B, kvh, S + 5, D), rnd(B, kvh, S + 5, D)
            big_k[:, :, :S], big_v[:, :, :S] = k, v
            k, v = big_k[:, :, :S], big_v[:, :, :S]
        ref = naive(q, k, v)
        worked = []
        for c in candidates(kind):
            out, why = _try(c, q, k, v)
            name = "%s B%d H%d KV%d S%d D%d %s" % (kind, B, H, kvh, S, D, c.label())
            if out is None:
                log("  skip  %s (%s)" % (name, why))
                continue
            err = rel_error(out, ref)
            ok = err <= tolerance(dtype) and tuple(out.shape) == (B, H, 1, D)
            log("  %s %s (relative error %.2g)" % ("ok   " if ok else "FAIL ", name, err))
            failures += 0 if ok else 1
            if ok:
                worked.append(c.label())
        try:
            best, _ = tune(kind, q, k, v)
            log("  tune  %s B%d H%d KV%d S%d -> %s" % (kind, B, H, kvh, S, best.label()))
        except RuntimeError as e:
            log("  FAIL  %s" % e)
            failures += 1
        if not worked:
            failures += 1
    return failures
