"""Every benchmark in one run on one database server: `python -m bench.all [--out FILE]`.

Prints each benchmark's tables as it finishes and, with --out, writes them all as Markdown.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

from bench import fanout, history, ingest, retrieval, turns
from bench.common import machine, run


async def main(url: str, out: str | None) -> None:
    sections: list[str] = []
    for name, bench in (
        ("turns", turns),
        ("fanout", fanout),
        ("retrieval", retrieval),
        ("ingest", ingest),
        ("history", history),
    ):
        print(f"\n== bench.{name} ==", flush=True)
        started = time.monotonic()
        sections += await bench.main(url)
        sections.append(f"\n(bench.{name}: {time.monotonic() - started:.0f} s)")
        if out:
            body = f"machine: {machine()}\n" + "\n".join(sections) + "\n"
            await asyncio.to_thread(Path(out).write_text, body)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", help="write the tables to this Markdown file")
    args = parser.parse_args()
    run(lambda url: main(url, args.out))
