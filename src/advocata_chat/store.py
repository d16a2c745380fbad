"""The chunk store: langchain-postgres' PGVectorStore on the app's engine, plus Russian
full-text search over the same table.

Every search takes the asking user's id and filters on it inside the SQL query.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from langchain_core.embeddings import Embeddings
from langchain_postgres import Column, PGEngine, PGVectorStore
from langchain_postgres.v2.hybrid_search_config import HybridSearchConfig
from langchain_postgres.v2.indexes import HNSWIndex, HNSWQueryOptions
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

TABLE = "chunks"
TSV_LANG = "pg_catalog.russian"
METADATA_COLUMNS = [
    Column("user_id", "UUID", nullable=False),
    Column("document_id", "UUID", nullable=False),
    Column("chunk_index", "INTEGER", nullable=False),
    Column("start_char", "INTEGER", nullable=False),
    Column("end_char", "INTEGER", nullable=False),
    Column("page", "INTEGER"),
    Column("title", "TEXT", nullable=False),
]


class EmbedderMismatch(RuntimeError):
    pass


class FilteredHNSWOptions(HNSWQueryOptions):
    """HNSW search options that keep scanning until k rows pass the user filter.

    A plain filtered HNSW scan can return fewer than k rows (pgvector applies the filter
    after the index scan); pgvector 0.8's iterative scan fixes that.
    """

    def to_parameter(self) -> list[str]:
        return [*super().to_parameter(), "hnsw.iterative_scan = relaxed_order"]


def _hybrid_config() -> HybridSearchConfig:
    # Makes PGVectorStore maintain the `content_tsv` column with the Russian configuration.
    return HybridSearchConfig(tsv_column="content_tsv", tsv_lang=TSV_LANG)


async def _table_exists(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return bool(await conn.scalar(text("SELECT to_regclass(:t) IS NOT NULL"), {"t": TABLE}))


async def _create_table(engine: AsyncEngine, *, model: str, dims: int) -> None:
    pg = PGEngine.from_engine(engine)
    await pg.ainit_vectorstore_table(
        TABLE,
        vector_size=dims,
        id_column=Column("id", "UUID", nullable=False),
        content_column="content",
        embedding_column="embedding",
        metadata_columns=[Column(c.name, c.data_type, c.nullable) for c in METADATA_COLUMNS],
        hybrid_search_config=_hybrid_config(),
    )
    async with engine.begin() as conn:
        # Deleting a document deletes its chunks in the same statement.
        await conn.execute(
            text(
                f"ALTER TABLE {TABLE} ADD CONSTRAINT fk_chunks_document FOREIGN KEY "
                "(document_id) REFERENCES documents(id) ON DELETE CASCADE"
            )
        )
        # Every search is `WHERE user_id = ?`; deletes and counts go by document.
        await conn.execute(text(f"CREATE INDEX ix_chunks_user ON {TABLE} (user_id)"))
        await conn.execute(text(f"CREATE INDEX ix_chunks_document ON {TABLE} (document_id)"))
        # Full-text retrieval: `content_tsv @@ query`.
        await conn.execute(text(f"CREATE INDEX ix_chunks_tsv ON {TABLE} USING gin (content_tsv)"))
        await conn.execute(
            text(
                "INSERT INTO vector_index (table_name, embedding_model, dimensions, created_at) "
                "VALUES (:t, :m, :d, now())"
            ),
            {"t": TABLE, "m": model, "d": dims},
        )


async def open_store(
    engine: AsyncEngine, embeddings: Embeddings, *, model: str, dims: int
) -> PGVectorStore:
    """Create the chunk table on first use, refuse an index built by another embedder."""
    async with engine.connect() as conn:
        # Serialise creation when several processes start at once.
        await conn.execute(text("SELECT pg_advisory_lock(hashtext('advocata_chunks'))"))
        try:
            row = (
                await conn.execute(
                    text(
                        "SELECT embedding_model, dimensions FROM vector_index WHERE table_name=:t"
                    ),
                    {"t": TABLE},
                )
            ).first()
            await conn.commit()
            if row is None or not await _table_exists(engine):
                await _create_table(engine, model=model, dims=dims)
                store = await _store(engine, embeddings)
                await store.aapply_vector_index(HNSWIndex(name="ix_chunks_hnsw"))
                return store
            if (row.embedding_model, row.dimensions) != (model, dims):
                raise EmbedderMismatch(
                    f"The document index was built with '{row.embedding_model}' "
                    f"({row.dimensions} dimensions), but the configured embedder is '{model}' "
                    f"({dims} dimensions). Run `advocata-chat reindex` to rebuild the index "
                    "with the configured embedder, or restore the previous settings."
                )
        finally:
            await conn.execute(text("SELECT pg_advisory_unlock(hashtext('advocata_chunks'))"))
            await conn.commit()
    return await _store(engine, embeddings)


async def _store(engine: AsyncEngine, embeddings: Embeddings) -> PGVectorStore:
    return await PGVectorStore.create(
        engine=PGEngine.from_engine(engine),
        embedding_service=embeddings,
        table_name=TABLE,
        id_column="id",
        content_column="content",
        embedding_column="embedding",
        metadata_columns=[c.name for c in METADATA_COLUMNS],
        hybrid_search_config=_hybrid_config(),
        index_query_options=FilteredHNSWOptions(ef_search=100),
    )


# One statement per batch of chunks. PGVectorStore.aadd_embeddings inserts row by row with a
# commit each, which made database writes the largest share of ingestion (bench/ingest.py).
# Same columns as PGVectorStore.
_INSERT = f"""
INSERT INTO {TABLE} (id, content, embedding, content_tsv, langchain_metadata, user_id,
                     document_id, chunk_index, start_char, end_char, page, title)
SELECT t.id, t.content, CAST(t.embedding AS vector), to_tsvector('{TSV_LANG}', t.content),
       CAST('{{}}' AS json), :user_id, :document_id, t.chunk_index, t.start_char, t.end_char,
       t.page, :title
FROM unnest(CAST(:ids AS uuid[]), CAST(:contents AS text[]), CAST(:embeddings AS text[]),
            CAST(:chunk_indexes AS int[]), CAST(:starts AS int[]), CAST(:ends AS int[]),
            CAST(:pages AS int[]))
     AS t(id, content, embedding, chunk_index, start_char, end_char, page)
ON CONFLICT (id) DO UPDATE SET
    content = EXCLUDED.content, embedding = EXCLUDED.embedding,
    content_tsv = EXCLUDED.content_tsv, langchain_metadata = EXCLUDED.langchain_metadata,
    user_id = EXCLUDED.user_id, document_id = EXCLUDED.document_id,
    chunk_index = EXCLUDED.chunk_index, start_char = EXCLUDED.start_char,
    end_char = EXCLUDED.end_char, page = EXCLUDED.page, title = EXCLUDED.title
"""


@dataclass
class ChunkRow:
    id: uuid.UUID
    content: str
    embedding: list[float]
    chunk_index: int
    start: int
    end: int
    page: int | None


async def replace_chunks(
    conn: AsyncConnection,
    *,
    user_id: uuid.UUID,
    document_id: uuid.UUID,
    title: str,
    rows: list[ChunkRow],
    batch: int = 256,
) -> None:
    """Make `rows` a document's chunks, on the caller's transaction: a delete, then one
    insert statement per `batch` rows. Inside one transaction a retried or concurrent job
    can never leave duplicated or half-written chunks, only the old set or the new one."""
    await conn.execute(text(f"DELETE FROM {TABLE} WHERE document_id = :d"), {"d": document_id})
    for first in range(0, len(rows), batch):
        part = rows[first : first + batch]
        params = {
            "user_id": user_id,
            "document_id": document_id,
            "title": title,
            "ids": [r.id for r in part],
            "contents": [r.content for r in part],
            "embeddings": [str([float(x) for x in r.embedding]) for r in part],
            "chunk_indexes": [r.chunk_index for r in part],
            "starts": [r.start for r in part],
            "ends": [r.end for r in part],
            "pages": [r.page for r in part],
        }
        await conn.execute(text(_INSERT), params)


async def drop_store(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
        await conn.execute(text("DELETE FROM vector_index WHERE table_name=:t"), {"t": TABLE})


@dataclass
class Hit:
    chunk_id: str
    document_id: uuid.UUID
    title: str
    content: str
    start: int
    end: int
    page: int | None
    chunk_index: int
    similarity: float | None = None  # cosine similarity, when the vector search found it
    bm25: float | None = None  # full-text score, when the text search found it
    score: float = 0.0  # fused
    found_by: set[str] = field(default_factory=set)

    @property
    def reading_order(self) -> tuple[str, int, str]:
        """Breaks ties between equal scores the same way on every ingestion (chunk ids are
        new uuids per upload, and ties are common: BM25 gives equal scores to chunks with
        the same matched words, RRF to chunks found at the same ranks)."""
        return (self.title, self.chunk_index, self.chunk_id)


def _hit(row, **extra) -> Hit:
    return Hit(
        chunk_id=str(row["id"]),
        document_id=row["document_id"],
        title=row["title"],
        content=row["content"],
        start=row["start_char"],
        end=row["end_char"],
        page=row["page"],
        chunk_index=row["chunk_index"],
        **extra,
    )


async def vector_search(
    store: PGVectorStore, *, user_id: uuid.UUID, vector: list[float], k: int
) -> list[Hit]:
    # hybrid_search_config=None: this is the dense half only (the store's hybrid mode would
    # cap it at primary_top_k); full-text search is text_search below.
    results = await store.asimilarity_search_with_score_by_vector(
        vector, k=k, filter={"user_id": {"$eq": user_id}}, hybrid_search_config=None
    )
    hits = []
    for doc, distance in results:
        row = {**doc.metadata, "id": doc.id, "content": doc.page_content}
        hits.append(_hit(row, similarity=1.0 - float(distance), found_by={"vector"}))
    return sorted(hits, key=lambda h: (-round(h.similarity, 9), h.reading_order))


# BM25 over the user's chunks, with PostgreSQL's Russian stemmer and stop words. ts_rank has
# no notion of how rare a word is; BM25 does, which matters when every chunk of a contract
# says "договор". The query's lexemes are OR-ed, so a question need not match every word,
# and stems of 5+ letters match as prefixes ("установ" finds "установк"), because the
# stemmer does not always bring a verb and its noun to one stem.
# Speed (bench/retrieval.py): a lexeme can only match a term with the same first five
# letters (shorter terms match exactly, longer ones as prefixes), so lexemes join terms by
# hash on that key instead of testing every pair; df comes from the tf rows (a document
# has a term exactly when it has a tf row for it); float8 rather than numeric arithmetic.
_BM25 = f"""
WITH terms AS (
    SELECT DISTINCT lex, length(lex) >= 5 AS pre, left(lex, 5) AS key
    FROM unnest(tsvector_to_array(to_tsvector('{TSV_LANG}', :q))) AS lex
),
query AS (
    SELECT to_tsquery('simple', string_agg(
        quote_literal(lex) || CASE WHEN pre THEN ':*' ELSE '' END, ' | ')) AS tsq
    FROM terms
),
mine AS (
    SELECT id, content_tsv, length(content_tsv) AS dl FROM {TABLE} WHERE user_id = :user_id
),
stats AS (SELECT count(*)::float8 AS n, greatest(avg(dl), 1)::float8 AS avgdl FROM mine),
tf AS (
    SELECT m.id, m.dl::float8 AS dl, t.lex,
           sum(coalesce(array_length(u.positions, 1), 1))::float8 AS tf
    FROM mine m
    CROSS JOIN query q
    CROSS JOIN LATERAL unnest(m.content_tsv) AS u
    JOIN terms t ON t.key = left(u.lexeme, 5)
     AND CASE WHEN t.pre THEN starts_with(u.lexeme, t.lex) ELSE u.lexeme = t.lex END
    WHERE m.content_tsv @@ q.tsq
    GROUP BY m.id, m.dl, t.lex
),
df AS (SELECT lex, count(*)::float8 AS df FROM tf GROUP BY lex),
scored AS (
    SELECT tf.id, sum(
        ln(1 + (s.n - df.df + 0.5) / (df.df + 0.5))
        * tf.tf * (1.2 + 1) / (tf.tf + 1.2 * (1 - 0.75 + 0.75 * tf.dl / s.avgdl))
    ) AS bm25
    FROM tf JOIN df ON df.lex = tf.lex CROSS JOIN stats s
    GROUP BY tf.id
)
SELECT c.id, c.document_id, c.title, c.content, c.start_char, c.end_char, c.page,
       c.chunk_index, scored.bm25
FROM scored JOIN {TABLE} c ON c.id = scored.id
ORDER BY round(scored.bm25::numeric, 9) DESC, c.title, c.chunk_index, c.id
LIMIT :k
"""


async def text_search(
    engine: AsyncEngine, *, user_id: uuid.UUID, question: str, k: int
) -> list[Hit]:
    async with engine.connect() as conn:
        rows = await conn.execute(text(_BM25), {"q": question, "user_id": user_id, "k": k})
        return [_hit(r, bm25=float(r["bm25"]), found_by={"text"}) for r in rows.mappings().all()]
