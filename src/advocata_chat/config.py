"""One settings class for the whole service, read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The repository root holds `prompts/` and `migrations/` next to `src/`.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_JWT_SECRET = "dev-only-secret-change-me-before-production"
JwtAlgorithm = Literal["HS256", "RS256"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    # Service
    advocata_env: Literal["development", "production"] = "development"
    advocata_data_dir: Path = Path(".advocata")
    prompts_dir: Path = PROJECT_ROOT / "prompts"
    auto_migrate: bool = True
    log_format: Literal["json", "text"] = "json"
    log_level: str = "info"

    # Database: empty means "start the embedded PostgreSQL in ADVOCATA_DATA_DIR".
    database_url: str | None = None
    db_pool_size: int = 10
    db_max_overflow: int = 20
    # How long a burst of turns waits for a free connection before the request fails with
    # database_unavailable. A database that is down fails at connect, not here, so a long
    # wait only queues work that a loaded event loop is slow to hand back.
    db_pool_timeout_seconds: float = 120.0

    # Model provider (the seed's variables plus the OpenAI-compatible base URL)
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    openai_model: str = "gpt-4o-mini"
    openai_max_tokens: int = 1500
    openai_temperature: float = 0.7
    openai_timeout_seconds: float = 60.0
    openai_max_retries: int = 2  # retried before the first token only (never mid-answer)
    openai_first_token_timeout_seconds: float = 30.0
    openai_total_timeout_seconds: float = 180.0
    openai_fallback_model: str | None = None  # used when the main model fails before answering

    # RAG (the seed's variables; sizes are in characters, context budget in tokens)
    rag_embedding_model: str = "text-embedding-3-small"
    rag_chunk_size: int = 1000
    rag_chunk_overlap: int = 200
    rag_embedding_dimensions: int | None = None  # None: known for OpenAI models, else probed
    rag_top_k: int = 5
    # The embedder used without OPENAI_API_KEY/OPENAI_BASE_URL: "e5" (multilingual-e5-small,
    # the better retriever on the dev sets) or "use" (Universal Sentence Encoder, ~10x faster).
    offline_embedder: Literal["e5", "use"] = "e5"
    # Cosine floor for a chunk found only by vector search. None: the embedder's calibrated
    # default (the seed's 0.7 discards nearly every relevant chunk with either embedder).
    rag_min_similarity: float | None = None
    # 10,000 with 30 ranked chunks: the gold passage reaches the context for 0.97 of the dev
    # questions (0.94 at 8,000 / 20, 0.88 at 4,000), offline answers within a question or two
    # (docs/quality.md, "The context budget"). A budget, not a fitted threshold; the two go up
    # together. With a provider the prompt and the quota reserved per turn grow with it.
    rag_max_context_tokens: int = 10000
    rag_candidates: int = 20  # per retriever, before fusion
    # Ranked chunks offered to the context packer, which keeps what fits the token budget.
    # More chunks in the same budget lose passages (touching ones merge into earlier sources).
    rag_context_chunks: int = 30
    # The offline answerer abstains when no sentence comes this close to the question
    # (chosen by cross-validation in `advocata-chat eval`; see docs/quality.md).
    offline_abstain_threshold: float = 0.265
    rag_rrf_k: int = 10  # with the 1.5:1 weights: what the cross-validation folds picked
    rag_vector_weight: float = 1.5
    rag_text_weight: float = 1.0
    # One top-k swap for another document's chunk scoring this share of the one it replaces
    # (0 always, 1 never; cross-validated).
    rag_diversify: float = 0.9
    # The offline answer also quotes another document's best sentence when it scores within
    # this margin of the best sentence (the ranker's units; negative: never; cross-validated).
    offline_other_document: float = 1.5

    # History put into the prompt is bounded, so long chats don't grow the cost of a turn.
    history_max_messages: int = 40
    history_max_tokens: int = 3000

    # Auth
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None  # PEM; enables RS256 tokens issued by the platform
    # Accepted token algorithms, e.g. "RS256" or "HS256,RS256". Unset: RS256 when
    # JWT_PUBLIC_KEY is set, and HS256 in development or with a JWT_SECRET that is set.
    jwt_algorithms: Annotated[list[JwtAlgorithm], NoDecode] = []
    jwt_audience: str | None = None
    jwt_dev_token_ttl_seconds: int = 7 * 24 * 3600

    # Limits
    max_request_bytes: int = 1_000_000
    max_upload_bytes: int = 20_000_000
    # What an accepted file may expand to (a few KB can inflate to gigabytes or hours of work).
    max_document_chars: int = 1_000_000  # extracted text per document
    max_document_chunks: int = 1500  # chunks per document (each one is embedded)
    max_pdf_pages: int = 2000
    max_pdf_stream_bytes: int = 30_000_000  # decompressed: any one stream, and all pages' content
    max_docx_uncompressed_bytes: int = 100_000_000  # all parts of a DOCX, uncompressed
    max_zip_ratio: float = 100.0  # uncompressed / compressed size of any DOCX part over 100 KB
    extract_timeout_seconds: float = 30.0  # extraction runs in a child process, killed after this
    extract_memory_bytes: int = 1_000_000_000  # that child's address-space limit (RLIMIT_AS)
    extract_concurrency: int = 2  # extraction child processes at a time, per server process
    # OCR of images and scanned PDF pages (Debian: tesseract-ocr, tesseract-ocr-rus).
    tesseract_cmd: str = "tesseract"  # the binary, a name on PATH or a path
    ocr_languages: str = "rus+eng"  # Tesseract's language codes, "+"-separated
    ocr_timeout_seconds: float = 120.0  # once OCR starts, the extraction's time left
    max_ocr_pages: int = 20  # scanned pages (or image frames) OCR-ed per document
    max_image_pixels: int = 40_000_000  # per image, and per PDF page's images together
    # Images and voice in the chat (issue 16): attachments.py, voice.py, speech.py.
    openai_vision: bool = False  # the chat model takes image content blocks
    max_attachments: int = 4  # documents (photos, scans) one message may carry
    # Speech to text over the OpenAI protocol (/v1/audio/transcriptions). Unset: the chat
    # provider's OPENAI_BASE_URL (or OpenAI itself with OPENAI_API_KEY); with neither, 503.
    stt_base_url: str | None = None
    stt_api_key: SecretStr | None = None  # default: OPENAI_API_KEY
    stt_model: str = "whisper-1"
    stt_language: str = "ru"
    max_audio_seconds: float = 120.0  # a voice message's length
    max_audio_bytes: int = 10_000_000
    # Recordings uploaded for the WebSocket's `voice` frame: kept this long unless used first,
    # and at most this many waiting per user (a storage bound; more: 429).
    voice_upload_ttl_seconds: float = 600.0
    max_voice_uploads: int = 5
    # Text to speech: TTS_BASE_URL's /v1/audio/speech when set, else offline eSpeak NG.
    tts_base_url: str | None = None
    tts_api_key: SecretStr | None = None  # default: OPENAI_API_KEY
    tts_model: str = "tts-1"
    tts_voice: str = "alloy"  # the provider's default voice; offline it is eSpeak NG's `ru`
    max_speech_chars: int = 4000  # of an answer read aloud (the rest is cut at a sentence)
    speech_cache_max_bytes: int = 200_000_000  # all users' spoken answers; least recently heard go
    # Ingestion queue (procrastinate, in the same database; ingest.py, jobs.py).
    ingest_worker_in_api: bool = True  # `serve` also runs a worker; off: `advocata-chat worker`
    ingest_concurrency: int = 1  # documents indexed at a time per worker process
    ingest_queue: str = "ingest"  # workers take jobs of this queue only
    ingest_max_attempts: int = 5  # tries of a job failing for a transient reason (429, 5xx, DB)
    ingest_retry_base_seconds: int = 2  # backoff: base**1, base**2, ... seconds
    ingest_job_timeout_seconds: float = 1800.0  # one document's whole job
    ingest_heartbeat_seconds: float = 5.0  # how often a worker says it is alive
    ingest_stalled_seconds: float = 30.0  # a worker silent this long is dead: jobs retried
    ingest_wait_seconds: float = 600.0  # how long an upload with ?wait=true waits
    max_message_chars: int = 8000
    max_title_chars: int = 200
    max_instructions_chars: int = 2000
    max_ws_frame_bytes: int = 64_000
    max_ws_frames_per_second: float = 10.0  # 0 disables
    max_sockets_per_user: int = 20  # per server process; 0 disables
    rate_messages_per_minute: int = 30  # 0 disables
    rate_uploads_per_hour: int = 60  # 0 disables
    token_quota: int = 2_000_000  # tokens per period per user; 0 disables
    token_quota_period_seconds: int = 24 * 3600
    turn_wait_seconds: float = 30.0  # how long a send waits for the previous turn to finish

    # Exports show times in the client's zone (an IANA name), not the server's UTC.
    export_timezone: str = "Europe/Moscow"

    @field_validator("export_timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            zone = f"unknown time zone {value!r}"
            raise ValueError(f"{zone}; use an IANA name such as Europe/Moscow") from None
        return value

    @field_validator("jwt_algorithms", mode="before")
    @classmethod
    def _split_algorithms(cls, value: object) -> object:
        if isinstance(value, str):
            return [a.strip().upper() for a in value.split(",") if a.strip()]
        return value

    @field_validator("jwt_public_key", mode="before")
    @classmethod
    def _pem_newlines(cls, value: object) -> object:
        # A PEM in one environment variable line often comes with literal "\\n"s.
        if isinstance(value, str):
            return value.replace("\\n", "\n").strip() or None
        return value

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        # The placeholder is fine on a laptop and fatal in production; so is a weak secret.
        from advocata_chat.auth import accepted_algorithms

        self.jwt_algorithms = accepted_algorithms(self)
        if self.rag_chunk_overlap >= self.rag_chunk_size:
            raise ValueError("RAG_CHUNK_OVERLAP must be smaller than RAG_CHUNK_SIZE")
        return self

    @property
    def export_zone(self) -> ZoneInfo:
        return ZoneInfo(self.export_timezone)

    @property
    def uses_openai(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
