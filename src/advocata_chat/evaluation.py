"""Quality harness: ingest an evaluation set's documents per user, ask its questions through
the API as those users, and score retrieval, citations, answers, abstention and leakage.

Set layout: `docs/<user>_<name>.<ext>` and `questions.jsonl` with id, user, question,
gold_doc / gold_snippet ("|" separates several), answer_keywords and kind (`no_answer`
questions have no gold).
"""

from __future__ import annotations

import json
import re
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from advocata_chat.auth import mint_token
from advocata_chat.config import Settings
from advocata_chat.prompts import PromptSet

ABSTAIN_MARKER = re.compile(r"нет ответа|не содерж\w* ответ|не нашл\w* ответ", re.IGNORECASE)


def _norm(text: str) -> str:
    return " ".join(text.lower().replace("ё", "е").split())


@dataclass
class QuestionResult:
    id: str
    kind: str
    doc_hit: bool | None
    snippet_hit: bool | None
    cited_docs: list[str]
    citation_precision: float | None
    keyword_recall: float | None
    abstained: bool
    leaked: int
    answer: str = field(repr=False, default="")


def summarize(results: list[QuestionResult]) -> dict[str, float | int]:
    def mean(values):
        values = [float(v) for v in values if v is not None]
        return round(sum(values) / len(values), 3) if values else float("nan")

    answerable = [r for r in results if r.kind != "no_answer"]
    unanswerable = [r for r in results if r.kind == "no_answer"]
    return {
        "questions": len(results),
        "doc_hit@k": mean(r.doc_hit for r in answerable),
        "snippet_hit@k": mean(r.snippet_hit for r in answerable),
        "citation_precision": mean(r.citation_precision for r in answerable),
        "keyword_recall": mean(r.keyword_recall for r in answerable),
        "abstention_no_answer": mean(r.abstained for r in unanswerable),
        "false_abstention": mean(r.abstained for r in answerable),
        "leakage": sum(r.leaked for r in results),
    }


@dataclass
class Corpus:
    """An evaluation set's documents, uploaded: who owns what, under which file stem."""

    settings: Settings
    users: dict[str, uuid.UUID] = field(default_factory=dict)
    doc_names: dict[str, str] = field(default_factory=dict)  # document id -> file stem
    owner: dict[str, str] = field(default_factory=dict)  # document id -> eval user

    def headers(self, user: str) -> dict[str, str]:
        uid = self.users.setdefault(user, uuid.uuid4())
        return {"Authorization": f"Bearer {mint_token(self.settings, user_id=uid)}"}


async def ingest(client: httpx.AsyncClient, settings: Settings, set_dir: Path) -> Corpus:
    corpus = Corpus(settings)
    for path in sorted((set_dir / "docs").iterdir()):
        user = path.name.split("_", 1)[0]
        r = await client.post(
            "/api/v1/documents",
            params={"wait": True},
            headers=corpus.headers(user),
            files={"file": (path.name, path.read_bytes())},
            data={"title": path.stem},
        )
        r.raise_for_status()
        body = r.json()
        if body["status"] != "ready":
            raise RuntimeError(f"{path.name}: indexing failed: {body['error']}")
        corpus.doc_names[body["id"]] = path.stem
        corpus.owner[body["id"]] = user
    return corpus


async def evaluate(
    client: httpx.AsyncClient, settings: Settings, set_dir: Path, *, k: int = 5
) -> list[QuestionResult]:
    return await ask(client, await ingest(client, settings, set_dir), set_dir, k=k)


async def ask(
    client: httpx.AsyncClient, corpus: Corpus, set_dir: Path, *, k: int = 5
) -> list[QuestionResult]:
    """Ask every question of the set, each in a new conversation, and score the answers."""
    doc_names, owner, headers = corpus.doc_names, corpus.owner, corpus.headers
    results = []
    for line in (set_dir / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        q = json.loads(line)
        h = headers(q["user"])
        gold_docs = [d for d in (q.get("gold_doc") or "").split("|") if d]
        snippets = [s for s in (q.get("gold_snippet") or "").split("|") if s]

        found = (
            await client.post(
                "/api/v1/search", json={"query": q["question"], "top_k": k}, headers=h
            )
        ).json()["results"]
        found_docs = {doc_names.get(f["document_id"]) for f in found}
        chunks = [_norm(f["content"]) for f in found]

        conv = (await client.post("/api/v1/chat/conversations", json={}, headers=h)).json()
        r = await client.post(
            f"/api/v1/chat/conversations/{conv['id']}/messages",
            json={"message_content": q["question"], "use_rag": True},
            headers=h,
        )
        r.raise_for_status()
        answer = r.json()["messages"][-1]
        cited = [c["document_id"] for c in answer.get("citations", [])]
        cited_names = [doc_names.get(d, "?") for d in cited]
        keywords = q.get("answer_keywords") or []
        text = _norm(answer["content"])
        results.append(
            QuestionResult(
                id=q["id"],
                kind=q.get("kind", ""),
                doc_hit=all(d in found_docs for d in gold_docs) if gold_docs else None,
                snippet_hit=(
                    all(any(_norm(s) in c for c in chunks) for s in snippets) if snippets else None
                ),
                cited_docs=cited_names,
                citation_precision=(
                    sum(n in gold_docs for n in cited_names) / len(cited_names)
                    if cited_names and gold_docs
                    else None
                ),
                keyword_recall=(
                    sum(_norm(kw) in text for kw in keywords) / len(keywords) if keywords else None
                ),
                abstained=bool(ABSTAIN_MARKER.search(answer["content"])),
                leaked=sum(1 for d in cited if owner.get(d) != q["user"]),
                answer=answer["content"],
            )
        )
    return results


async def run(
    set_dir: Path,
    settings: Settings,
    *,
    k: int = 5,
    verbose: bool = False,
    alternative: PromptSet | None = None,
) -> dict[str, dict[str, float | int]]:
    """Figures for the current prompts and, with `alternative`, for those prompts too:
    {"current": {...}, "alternative": {...}}. The documents are ingested once, so both
    answer the same questions over the same chunks.

    Runs on a throwaway embedded database unless DATABASE_URL is set.
    """
    from advocata_chat.app import create_app

    figures: dict[str, dict[str, float | int]] = {}
    with tempfile.TemporaryDirectory(prefix="advocata-eval-") as tmp:
        if not settings.database_url:
            settings = settings.model_copy(update={"advocata_data_dir": Path(tmp)})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://eval", timeout=300
            ) as client:
                corpus = await ingest(client, settings, set_dir)
                rt = app.state.runtime
                prompt_sets = {"current": rt.prompts}
                if alternative is not None:
                    prompt_sets["alternative"] = alternative
                for label, prompts in prompt_sets.items():
                    rt.prompts = prompts  # turns read rt.prompts[...] at every turn
                    results = await ask(client, corpus, set_dir, k=k)
                    if verbose:
                        _print_results(label, results)
                    figures[label] = summarize(results)
    return figures


def _print_results(label: str, results: list[QuestionResult]) -> None:
    for r in results:
        print(
            f"[{label}] {r.id} {r.kind:10} doc={r.doc_hit} snip={r.snippet_hit} "
            f"kw={r.keyword_recall} abst={r.abstained} cited={r.cited_docs}"
        )


def side_by_side(figures: dict[str, dict[str, float | int]]) -> str:
    """A plain-text table: one row per metric, one column per prompts folder; rows whose
    figures differ end with `*`."""
    columns = list(figures)
    names = ["metric", *figures[columns[0]]]
    rows = [columns, *([str(figures[c][n]) for c in columns] for n in names[1:])]
    width = max(len(n) for n in names)
    col = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = []
    for i, (name, row) in enumerate(zip(names, rows, strict=True)):
        cells = "  ".join(f"{v:>{w}}" for v, w in zip(row, col, strict=True))
        mark = "  *" if i and len(set(row)) > 1 else ""
        lines.append(f"{name:<{width}}  {cells}{mark}")
    return "\n".join(lines)
