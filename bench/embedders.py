"""Offline embedders side by side: passages per second, query latency, and how responsive
the event loop stays while a document is embedded.

    python -m bench.embedders [--passages 48] [--rounds 5]

Both embedders run in the same process, interleaved round by round, on the same Russian
passages (1000 characters, the chunk size) and questions, so machine noise hits both alike.
The loop-lag figure is the worst delay of a 10 ms asyncio ticker while `aembed_documents`
runs in its worker thread: the API keeps answering while an upload is embedded.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import numpy as np

from advocata_chat.offline import E5Embeddings, USEEmbeddings
from bench.common import median, table, texts, vocabulary


async def _loop_lag(embedder, passages: list[str]) -> float:
    """Worst ticker delay (ms) while the passages are embedded off the loop."""
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        while not done.is_set():
            t = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, (time.perf_counter() - t - 0.01) * 1000)

    tick = asyncio.create_task(ticker())
    await embedder.aembed_documents(passages)
    done.set()
    await tick
    return worst


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--passages", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(7)
    passages = [t[:1000] for t in texts(rng, args.passages, vocabulary(rng), mean_words=160)]
    questions = ["Какой срок гарантии на выполненные работы?"] * 20
    embedders = {"e5": E5Embeddings(), "use": USEEmbeddings()}
    for e in embedders.values():
        e.embed_documents(passages[:2])  # load the weights outside the timings
    rates: dict[str, list[float]] = {n: [] for n in embedders}
    query_ms: dict[str, list[float]] = {n: [] for n in embedders}
    lag: dict[str, list[float]] = {n: [] for n in embedders}
    for _ in range(args.rounds):
        for name, e in embedders.items():
            t = time.perf_counter()
            e.embed_documents(passages)
            rates[name].append(len(passages) / (time.perf_counter() - t))
            for q in questions:
                t = time.perf_counter()
                e.embed_query(q)
                query_ms[name].append((time.perf_counter() - t) * 1000)
            lag[name].append(asyncio.run(_loop_lag(e, passages)))
    rows = [
        [
            name,
            f"{median(rates[name]):.1f}",
            f"{median(query_ms[name]):.1f}",
            f"{median(lag[name]):.1f}",
        ]
        for name in embedders
    ]
    title = (
        f"Offline embedders: {args.passages} passages of 1000 characters, "
        f"medians of {args.rounds} rounds"
    )
    print(table(title, ["embedder", "passages/s", "query ms", "loop lag ms"], rows))
    ratio = median(rates["use"]) / median(rates["e5"])
    print(f"USE embeds passages {ratio:.1f}x faster than e5 (same run)")


if __name__ == "__main__":
    main()
