"""One settings class for the whole service, read from the environment and `.env`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The repository root holds `prompts/` and `migrations/` next to `src/`.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEV_JWT_SECRET = "dev-only-secret-change-me-before-production"


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
    rag_max_context_tokens: int = 4000
    rag_candidates: int = 20  # per retriever, before fusion
    # Ranked chunks offered to the context packer, which keeps what fits the token budget.
    rag_context_chunks: int = 20
    # The offline answerer abstains below this sentence score (chosen by cross-validation
    # in `advocata-chat eval`; see docs/quality.md).
    offline_abstain_threshold: float = 0.25
    rag_rrf_k: int = 60
    rag_vector_weight: float = 2.0
    rag_text_weight: float = 1.0

    # History put into the prompt is bounded, so long chats don't grow the cost of a turn.
    history_max_messages: int = 40
    history_max_tokens: int = 3000

    # Auth
    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_public_key: str | None = None  # PEM; enables RS256 tokens issued by the platform
    jwt_audience: str | None = None
    jwt_dev_token_ttl_seconds: int = 7 * 24 * 3600

    # Limits
    max_request_bytes: int = 1_000_000
    max_upload_bytes: int = 20_000_000
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

    @model_validator(mode="after")
    def _refuse_placeholder_secret(self) -> Settings:
        # The placeholder is fine on a laptop and fatal in production.
        if self.advocata_env == "production" and (
            self.jwt_secret.get_secret_value() == DEV_JWT_SECRET and not self.jwt_public_key
        ):
            raise ValueError("JWT_SECRET must be set to a real secret when ADVOCATA_ENV=production")
        if self.rag_chunk_overlap >= self.rag_chunk_size:
            raise ValueError("RAG_CHUNK_OVERLAP must be smaller than RAG_CHUNK_SIZE")
        return self

    @property
    def uses_openai(self) -> bool:
        return bool(self.openai_api_key or self.openai_base_url)


@lru_cache
def get_settings() -> Settings:
    return Settings()
