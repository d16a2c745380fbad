"""Benchmark 3: retrieval at scale, 10k / 30k / 100k chunks over 200 users.

    python -m bench.retrieval [--sizes 10000,30000,100000] [--queries 100]

Chunks are synthetic Russian-like text (real legal words plus pseudo-words with Russian
endings, Zipf-distributed) with synthetic 512-dim unit vectors clustered around 500 topics
(not USE embeddings: embedding 100k chunks would take most of the time budget; a query's
USE embedding costs ~2 ms, see bench.turns). They go straight into the app's `chunks`
table (created by `advocata_chat.store.open_store`) with COPY, then the HNSW index is
rebuilt and timed at each size. Queries run through the app's own `vector_search` and
`hybrid_search`, always filtered by user.
"""

from __future__ import annotations

import argparse
import math
import time
import uuid

import numpy as np
import psycopg
from langchain_core.embeddings import Embeddings
from sqlalchemy import text

from advocata_chat import db
from advocata_chat.offline import USEEmbeddings
from advocata_chat.retrieval import SearchParams, hybrid_search
from advocata_chat.store import open_store, vector_search
from bench.common import (
    DIMS,
    EMBED_MODEL,
    _settings,
    clustered_vectors,
    copy_chunks,
    ensure_chunks_table,
    fresh_database,
    median,
    pct,
    run,
    seed_documents,
    table,
    texts,
    unit,
    vocabulary,
)

USERS = 200
K = 10
EXACT = (
    "SELECT id FROM chunks WHERE user_id = :u ORDER BY embedding <=> CAST(:v AS vector) LIMIT :k"
)


class Fixed(Embeddings):
    """Returns the benchmark's query vector: the data's vectors are synthetic."""

    vector: list[float] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.vector for _ in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.vector


async def timed(coro) -> tuple[float, object]:
    t = time.perf_counter()
    result = await coro
    return time.perf_counter() - t, result


async def forced_hnsw(engine, user, vec: str, iterative: bool) -> list:
    """The filtered query on the HNSW index (the planner is kept off the user index)."""
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL enable_bitmapscan = off"))
        await conn.execute(text("SET LOCAL enable_sort = off"))
        await conn.execute(text("SET LOCAL hnsw.ef_search = 100"))
        mode = "relaxed_order" if iterative else "off"
        await conn.execute(text(f"SET LOCAL hnsw.iterative_scan = {mode}"))
        return [r[0] for r in await conn.execute(text(EXACT), {"u": user, "v": vec, "k": K})]


async def exact(engine, user, vec: str) -> list:
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL enable_indexscan = off"))  # no HNSW: exact order
        return [r[0] for r in await conn.execute(text(EXACT), {"u": user, "v": vec, "k": K})]


async def plan(engine, user, vec: str) -> str:
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
        rows = await conn.execute(text("EXPLAIN " + EXACT), {"u": user, "v": vec, "k": K})
        lines = [r[0] for r in rows]
    return "HNSW" if any("ix_chunks_hnsw" in x for x in lines) else "user index + exact sort"


async def measure(url: str, engine, store, users, vectors, owners, words, rng, n_queries: int):
    emb = Fixed()
    params = SearchParams(top_k=K, candidates=20, min_similarity=0.0)
    lat = {"vector": [], "hybrid": [], "hnsw": [], "exact": []}
    recall_store, recall_hnsw, short_off, short_on = [], [], 0, 0
    picks = rng.integers(0, len(owners), size=n_queries)
    questions = [" ".join(rng.choice(words[:400], size=7)) + "?" for _ in range(n_queries)]
    for i, j in enumerate(picks):
        user = owners[j]
        qv = unit(vectors[j] + 0.5 * unit(rng.standard_normal(DIMS)))
        vec = qv.tolist()
        s = str(vec)
        emb.vector = vec
        t, truth = await timed(exact(engine, user, s))
        lat["exact"].append(t)
        t, hits = await timed(vector_search(store, user_id=user, vector=vec, k=K))
        lat["vector"].append(t)
        recall_store.append(len({uuid.UUID(h.chunk_id) for h in hits} & set(truth)) / K)
        t, _ = await timed(
            hybrid_search(
                engine=engine,
                store=store,
                embeddings=emb,
                user_id=user,
                question=questions[i],
                params=params,
            )
        )
        lat["hybrid"].append(t)
        t, hnsw = await timed(forced_hnsw(engine, user, s, iterative=True))
        lat["hnsw"].append(t)
        recall_hnsw.append(len(set(hnsw) & set(truth)) / K)
        short_on += len(hnsw) < K
        if i < 20:
            short_off += len(await forced_hnsw(engine, user, s, iterative=False)) < K
    return {
        "lat": {k: (median(v) * 1000, pct(v, 95) * 1000) for k, v in lat.items()},
        "recall_store": float(np.mean(recall_store)),
        "recall_hnsw": float(np.mean(recall_hnsw)),
        "short_on": short_on,
        "short_off": short_off,
        "n_queries": n_queries,
        "plan": await plan(engine, owners[0], str(unit(vectors[0]).tolist())),
    }


async def main(url: str, sizes=(10_000, 30_000, 100_000), n_queries: int = 100) -> list[str]:
    url = fresh_database(url, "retrieval")
    await ensure_chunks_table(url)
    conninfo = db.psycopg_conninfo(url)
    rng = np.random.default_rng(7)
    words = vocabulary(rng)
    users = [uuid.uuid4() for _ in range(USERS)]
    engine = db.make_engine(url, _settings(url))
    store = await open_store(engine, USEEmbeddings(), model=EMBED_MODEL, dims=DIMS)
    all_vectors = clustered_vectors(rng, max(sizes))
    owners: list[uuid.UUID] = []
    rows, growth = [], []
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        docs = await seed_documents(conn, users)
        index_sql = (
            await (
                await conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE indexname='ix_chunks_hnsw'"
                )
            ).fetchone()
        )[0]
        await conn.commit()
        loaded = 0
        for size in sizes:
            await conn.execute("DROP INDEX IF EXISTS ix_chunks_hnsw")
            t = time.perf_counter()
            batch = size - loaded
            pairs = await copy_chunks(
                conn, docs, texts(rng, batch, words), all_vectors[loaded:size], offset=loaded
            )
            owners += [u for _, u in pairs]
            load_s = time.perf_counter() - t
            loaded = size
            await conn.execute("SET maintenance_work_mem = '2GB'")
            t = time.perf_counter()
            await conn.execute(index_sql)
            await conn.commit()
            build_s = time.perf_counter() - t
            await conn.execute("ANALYZE chunks")
            await conn.commit()
            sizes_mb = await (
                await conn.execute(
                    "SELECT pg_relation_size('ix_chunks_hnsw'), pg_total_relation_size('chunks')"
                )
            ).fetchone()
            print(
                f"{size} chunks: loaded {batch} in {load_s:.1f} s, HNSW build {build_s:.1f} s, "
                f"index {sizes_mb[0] / 2**20:.0f} MiB, table total {sizes_mb[1] / 2**20:.0f} MiB",
                flush=True,
            )
            m = await measure(url, engine, store, users, all_vectors, owners, words, rng, n_queries)
            lat = m["lat"]
            rows.append(
                [
                    size,
                    size // USERS,
                    lat["vector"][0],
                    lat["vector"][1],
                    lat["hybrid"][0],
                    lat["hybrid"][1],
                    m["recall_store"],
                    m["plan"],
                    lat["hnsw"][0],
                    lat["hnsw"][1],
                    m["recall_hnsw"],
                    f"{m['n_queries'] - m['short_on']}/{m['n_queries']}",
                    f"{20 - m['short_off']}/20",
                    lat["exact"][0],
                ]
            )
            growth.append((size, build_s, sizes_mb[0] / 2**20, sizes_mb[1] / 2**20, lat))
            print(rows[-1], flush=True)
    await engine.dispose()
    header = [
        "chunks",
        "per user",
        "vector p50 ms",
        "vector p95 ms",
        "hybrid p50 ms",
        "hybrid p95 ms",
        "recall@10 (app query)",
        "plan chosen",
        "forced HNSW p50 ms",
        "forced HNSW p95 ms",
        "HNSW recall@10",
        "k rows, iterative",
        "k rows, no iterative",
        "exact p50 ms",
    ]
    out = [table("Retrieval with the user filter (k=10)", header, rows)]
    out.append(extrapolate(growth))
    return out


def _slope(xs, ys) -> float:
    return math.log(ys[-1] / ys[0]) / math.log(xs[-1] / xs[0])


def extrapolate(growth) -> str:
    xs = [g[0] for g in growth]
    rows = []
    names = [("HNSW build s", 1), ("HNSW index MiB", 2), ("table + indexes MiB", 3)]
    for name, i in names:
        ys = [g[i] for g in growth]
        b = _slope(xs, ys)
        rows.append([name, *ys, f"n^{b:.2f}", ys[-1] * (1_000_000 / xs[-1]) ** b])
    for key, label in (("vector", "vector p50 ms"), ("hybrid", "hybrid p50 ms")):
        ys = [g[4][key][0] for g in growth]
        b = _slope(xs, ys)
        rows.append([label, *ys, f"n^{b:.2f}", ys[-1] * (1_000_000 / xs[-1]) ** b])
    header = ["figure", *[f"{x:,}" for x in xs], "growth fit", "1M (extrapolated)"]
    return table(
        "Growth and extrapolation to 1M chunks (power law through the series)", header, rows
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,30000,100000")
    parser.add_argument("--queries", type=int, default=100)
    args = parser.parse_args()
    sizes = tuple(int(x) for x in args.sizes.split(","))
    run(lambda url: main(url, sizes=sizes, n_queries=args.queries))
