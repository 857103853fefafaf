#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""benchmarks.torch_reference: the PyTorch reference step (benchmarks/suite/torch_reference.py)
computes what it claims, checked on the CPU at the tiny preset in f32 against plain float64
recomputations: TidalDecode's lists are the top (K - 1) earlier positions by q.k per query head
(per KV head: by softmax probabilities summed over the group) plus the current one; a sparse
layer's gather + attention equals softmax attention restricted to its list; Quest's page bounds
are the pages' element-wise min / max, its pages the top by q+ . max + q- . min plus the current
page, and its attention equals attention restricted to those pages' positions up to n; a budget
of at least n + 1 gives full attention's logits; a timed step runs and reports a positive time;
`torch_reference.py --self-test` (every attention backend this torch has, and the step's fast
paths, against fp32 attention) passes on the CPU. Exit 77 (a skip) without torch."""
import math
import os
import subprocess
import sys
import unittest

try:
    import torch
except ImportError:
    print("SKIP: torch is not installed for %s" % sys.executable)
    sys.exit(77)

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(SRC, "benchmarks", "suite"))
import torch_reference as T  # noqa: E402

S = T.PRESETS["tiny"]
CPU = torch.device("cpu")


def make_step(policy, n, budget, gran="per-query-head", seed=3, batch=1):
    torch.manual_seed(seed)
    model = T.Model(S, torch.float32, CPU, 1)
    torch.manual_seed(seed + 1)
    return T.DecodeStep(model, batch, n, policy, budget, gran, 2, [], torch.float32, CPU)


def random_q(step, seed=7):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(step.B, S["kv_heads"], step.G, S["head_dim"], generator=g) * 2.0


def restricted_attention(q, keys, values, positions):
    """float64 softmax(q.k / sqrt(d)) v over the listed positions of one head."""
    q, k, v = q.double(), keys[positions].double(), values[positions].double()
    w = torch.softmax(k @ q / math.sqrt(q.shape[0]), dim=0)
    return w @ v


class TorchReferenceTest(unittest.TestCase):
    def test_per_query_head_lists_and_gather(self):
        n, K = 200, 24
        step = make_step("tidal", n, K)
        q4 = random_q(step)
        step.select(q4, 2)
        idx = step.idx  # [B, H, K]
        kc = step.kc[2][0]  # [KV, S, D]
        for h in range(S["heads"]):
            kvh, g = divmod(h, step.G)
            scores = (kc[kvh, :n].double() @ q4[0, kvh, g].double())
            want = set(torch.topk(scores, K - 1).indices.tolist())
            got = idx[0, h].tolist()
            self.assertEqual(got[-1], n, "the current position ends every list")
            self.assertEqual(set(got[:-1]), want, "head %d: the top K-1 earlier positions" % h)
        out = step.sparse(q4, 3)
        for h in range(S["heads"]):
            kvh, g = divmod(h, step.G)
            want = restricted_attention(q4[0, kvh, g], step.kc[3][0, kvh], step.vc[3][0, kvh],
                                        idx[0, h])
            torch.testing.assert_close(out[0, kvh, g].double(), want, rtol=1e-4, atol=1e-5)

    def test_per_kv_head_lists_and_gather(self):
        n, K = 150, 16
        step = make_step("tidal", n, K, gran="per-kv-head")
        q4 = random_q(step, 11)
        step.select(q4, 2)
        kc = step.kc[2][0]
        d = S["head_dim"]
        for kvh in range(S["kv_heads"]):
            probs = sum(torch.softmax(kc[kvh, :n].double() @ q4[0, kvh, g].double() / math.sqrt(d), 0)
                        for g in range(step.G))
            want = set(torch.topk(probs, K - 1).indices.tolist())
            got = step.idx[0, kvh].tolist()
            self.assertEqual(got[-1], n)
            self.assertEqual(set(got[:-1]), want)
        out = step.sparse(q4, 3)
        for kvh in range(S["kv_heads"]):
            for g in range(step.G):
                want = restricted_attention(q4[0, kvh, g], step.kc[3][0, kvh], step.vc[3][0, kvh],
                                            step.idx[0, kvh])
                torch.testing.assert_close(out[0, kvh, g].double(), want, rtol=1e-4, atol=1e-5)

    def test_quest_bounds_pages_and_attention(self):
        # 13 pages; the current page holds positions 192..203 (12 of 16), or only 192 (a new page)
        for n in (203, 192):
            with self.subTest(n=n):
                self.check_quest(n, 64)

    def check_quest(self, n, K):
        step = make_step("quest", n, K)
        q4 = random_q(step, 5)
        layer = 2
        k_new = torch.randn(1, S["kv_heads"], S["head_dim"])
        step.kc[layer][:, :, n] = k_new  # what the step writes before attending
        pos = step.quest_positions(q4, k_new, layer)
        kc = step.kc[layer][0]
        P = T.QUEST_PAGE
        for kvh in range(S["kv_heads"]):
            for p in range(step.pages):
                rows = kc[kvh, p * P:min((p + 1) * P, n + 1)]
                torch.testing.assert_close(step.kmax[layer][0, kvh, p], rows.amax(0))
                torch.testing.assert_close(step.kmin[layer][0, kvh, p], rows.amin(0))
        for kvh in range(S["kv_heads"]):
            for g in range(step.G):
                q = q4[0, kvh, g].double()
                bounds = [float((torch.maximum(q * step.kmax[layer][0, kvh, p].double(),
                                               q * step.kmin[layer][0, kvh, p].double())).sum())
                          for p in range(step.pages - 1)]
                want_pages = set(sorted(range(step.pages - 1), key=lambda p: -bounds[p])[:step.kp - 1])
                got = pos[0, kvh, g].view(-1, P)[:, 0] // P
                self.assertEqual(int(got[-1]), step.pages - 1, "the current page comes last")
                self.assertEqual(set(got[:-1].tolist()), want_pages)
        step2 = make_step("quest", n, K)  # the same cache, bounds not yet updated
        step2.kc[layer][:, :, n] = k_new
        out = step2.quest(q4, k_new, layer)
        for kvh in range(S["kv_heads"]):
            for g in range(step.G):
                positions = sorted(set(p for p in pos[0, kvh, g].tolist() if p <= n))
                want = restricted_attention(q4[0, kvh, g], step2.kc[layer][0, kvh],
                                            step2.vc[layer][0, kvh], torch.tensor(positions))
                torch.testing.assert_close(out[0, kvh, g].double(), want, rtol=1e-4, atol=1e-5)

    def test_budget_over_context_is_full(self):
        n = 100
        full, tidal = make_step("full", n, 0), make_step("tidal", n, n + 50)
        full()
        tidal()
        torch.testing.assert_close(tidal.logits, full.logits)
        sparse = make_step("tidal", n, 8)
        sparse()
        self.assertFalse(torch.allclose(sparse.logits, full.logits), "K = 8 must differ from full")

    def test_quest_reads_only_written_positions(self):
        # n = 203: the current page (192..207) holds 192..203; its 4 empty slots are not read.
        step = make_step("quest", 203, 64)
        self.assertEqual(step.quest_rows, (step.kp - 1) * T.QUEST_PAGE + 12)
        self.assertEqual(set(step.attn), {"dense", "quest"})

    def test_self_test_passes(self):
        p = subprocess.run([sys.executable, os.path.join(SRC, "benchmarks", "suite",
                                                         "torch_reference.py"),
                            "--self-test", "--device", "cpu"], capture_output=True, text=True,
                           timeout=100)
        self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-2000:])
        self.assertIn("self-test: passed", p.stdout)
        self.assertNotIn("FAIL", p.stdout)

    def test_timed_step(self):
        step = make_step("tidal", 300, 32, batch=2)
        med, p90 = T.time_step(step, CPU, False, 1, 3)
        self.assertTrue(0 < med <= p90)
        self.assertTrue(bool(torch.isfinite(step.logits).all()))
        self.assertEqual(tuple(step.tokens.shape), (2,))


if __name__ == "__main__":
    unittest.main()
