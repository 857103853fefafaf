# SPDX-License-Identifier: Apache-2.0
"""Preset shapes and byte counts shared by run_suite.py and torch_reference.py (standard library
only). Keep in step with model/config.cc (model_config_preset) and launch/presets.cc (tiny)."""
import math

PRESETS = {
    "llama2-7b": dict(vocab=32000, hidden=4096, inter=11008, layers=32, heads=32, kv_heads=32,
                      head_dim=128, theta=10000.0, eps=1e-5, tied=False),
    "llama3-8b": dict(vocab=128256, hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8,
                      head_dim=128, theta=500000.0, eps=1e-5, tied=False),
    "llama3.1-8b": dict(vocab=128256, hidden=4096, inter=14336, layers=32, heads=32, kv_heads=8,
                        head_dim=128, theta=500000.0, eps=1e-5, tied=False),
    "llama-64l": dict(vocab=128256, hidden=4096, inter=14336, layers=64, heads=32, kv_heads=8,
                      head_dim=128, theta=500000.0, eps=1e-5, tied=False),
    "tiny": dict(vocab=4096, hidden=256, inter=768, layers=4, heads=8, kv_heads=2, head_dim=32,
                 theta=500000.0, eps=1e-5, tied=False),
}
QUEST_PAGE = 16
QUEST_DENSE_LAYERS = 2
# torch_reference.py's step; run_suite.py measures torch rows of an older version again
# (1: the query group as SDPA's query sequence, one backend; 2: enable_gqa, the fastest backend).
TORCH_REFERENCE_VERSION = 2


def kv_dtype_key(value):
    """A suite's kv_dtype: "fp8", or "" for the activations' dtype ("bf16" on the GPU; also
    "auto" / "default")."""
    v = str(value or "").strip().lower()
    if v in ("", "bf16", "auto", "default"):
        return ""
    if v == "fp8":
        return "fp8"
    raise ValueError("kv_dtype must be bf16 (the activations' dtype) or fp8, not %r" % value)


def kv_row_bytes(s, elem, kv=""):
    """Bytes of one K or V row of one head: head_dim elements, or FP8's byte each + a 4-byte
    scale (as tidal bench's kv_bytes_read)."""
    return s["head_dim"] + 4 if kv == "fp8" else s["head_dim"] * elem


def parse_count(text):
    """'10K' -> 10000, '1M' -> 1000000 (K = 1000, as tidal bench); ints pass through."""
    if isinstance(text, int):
        return text
    t = str(text).strip().upper()
    mult = 1
    if t.endswith("K"):
        mult, t = 1000, t[:-1]
    elif t.endswith("M"):
        mult, t = 1000000, t[:-1]
    return int(round(float(t) * mult))


def policy_variants(policies, budgets, granularities):
    """(policy, granularity, budget) of each run: full once, quest per budget, tidal per budget
    and granularity. ValueError names a policy that is none of full, quest, tidal."""
    out = []
    for p in policies:
        if p == "full":
            out.append(("full", "-", 0))
        elif p == "quest":
            out.extend(("quest", "-", k) for k in budgets)
        elif p == "tidal":
            out.extend(("tidal", g, k) for k in budgets for g in granularities)
        else:
            raise ValueError(p)
    return out


def context_label(n):
    """10000 -> '10K', 512000 -> '512K', 1000000 -> '1M', 300 -> '300'."""
    if n >= 1000000 and n % 1000000 == 0:
        return "%dM" % (n // 1000000)
    if n >= 1000 and n % 1000 == 0:
        return "%dK" % (n // 1000)
    return str(n)


def default_reselect(layers, sparse_start):
    """Tidal's default re-selection layers: round(13 L / 32), when above sparse_start."""
    r = int(math.floor(13.0 * layers / 32.0 + 0.5))
    return [r] if sparse_start < r < layers else []


def weight_bytes(s, elem):
    h, d = s["hidden"], s["head_dim"]
    per_layer = h * s["heads"] * d * 2 + h * s["kv_heads"] * d * 2 + 3 * h * s["inter"] + 2 * h
    return (s["layers"] * per_layer + h + s["vocab"] * h * (1 if s["tied"] else 2)) * elem


def stream_bytes(s, elem):
    """Weights a decode step streams: all but the embedding table (a lookup reads one row)."""
    w = weight_bytes(s, elem)
    return w if s["tied"] else w - s["vocab"] * s["hidden"] * elem


def kv_bytes_per_token(s, elem, kv=""):
    return 2 * s["layers"] * s["kv_heads"] * kv_row_bytes(s, elem, kv)


def layer_roles(s, policy, sparse_start=2, reselect=None):
    """Per layer: dense, select, sparse or quest (as model::layer_role)."""
    if reselect is None:
        reselect = default_reselect(s["layers"], sparse_start)
    roles = []
    for layer in range(s["layers"]):
        if policy == "full":
            roles.append("dense")
        elif policy == "quest":
            roles.append("dense" if layer < QUEST_DENSE_LAYERS else "quest")
        elif layer < sparse_start:
            roles.append("dense")
        elif layer == sparse_start or layer in reselect:
            roles.append("select")
        else:
            roles.append("sparse")
    return roles


def quest_rows(s, n, budget):
    """Per Quest layer and sequence: (page-bound rows, KV rows), as the engine counts them
    (Engine::count_decode_stats): the bounds (min and max) of every page but the current one, per
    KV head (the current page is not scored); per query head, K/16 - 1 chosen pages and the
    current page's n - 1 - (its start) + 1 written positions, never the empty slots after them."""
    pages = (n - 1) // QUEST_PAGE + 1
    chosen = min(pages, budget // QUEST_PAGE)
    bounds = 2 * (pages - 1) * s["kv_heads"]
    rows = s["heads"] * ((chosen - 1) * QUEST_PAGE + (n - 1) % QUEST_PAGE + 1)
    return bounds, rows


def kv_rows_read(s, roles, n, budget, granularity, batch):
    """KV rows (head_dim elements each; K and V counted separately) one step reads, with Quest's
    page bounds counted as rows of the activations' dtype: (KV rows, page-bound rows)."""
    kvh, h = s["kv_heads"], s["heads"]
    rows = bounds = 0.0
    for r in roles:
        if r in ("dense", "select"):
            rows += 2 * n * kvh
        elif r == "sparse":
            lists = h if granularity == "per-query-head" else kvh
            rows += 2 * min(budget, n) * lists
        else:  # quest
            b, q = quest_rows(s, n, budget)
            bounds += b
            rows += 2 * q
    return rows * batch, bounds * batch


def kv_read_bytes(s, roles, n, budget, granularity, batch, elem, kv=""):
    """Bytes of the KV rows one step reads: K / V rows at the cache's row width (FP8: a byte per
    element + a 4-byte scale), Quest's page bounds in the activations' dtype (as tidal bench's
    kv_bytes_read)."""
    rows, bounds = kv_rows_read(s, roles, n, budget, granularity, batch)
    return rows * kv_row_bytes(s, elem, kv) + bounds * s["head_dim"] * elem


def step_bytes(preset, policy, context, batch, budget=0, granularity="-", elem=2, kv=""):
    """Bytes one decode step must move (DESIGN.md §7): weights once + the KV rows it reads, the
    count tidal bench's GB column makes (tests/benchmarks/floor_bytes_test.py checks)."""
    s = PRESETS[preset]
    roles = layer_roles(s, policy)
    return stream_bytes(s, elem) + kv_read_bytes(s, roles, context, budget or 0, granularity,
                                                 batch, elem, kv)
