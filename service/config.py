"""Service settings, read from `XMODAL_*` environment variables (see the README's table)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from encoders.threads import SPIN_US

DEMO_DIR = Path("var/demo")
MIN_KEY_CHARS = 16
PLACEHOLDER_KEYS = {"changeme", "change-me", "secret", "password", "admin", "xmodal", "test",
                    "changeme-changeme", "0123456789abcdef"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XMODAL_", extra="ignore")

    environment: Literal["development", "production"] = Field(
        "development", description="production refuses missing, short or placeholder admin keys")
    engine_dir: Path = Field(DEMO_DIR / "engine", description="engine bundle folder")
    index_dir: Path = Field(DEMO_DIR / "index", description="index root (with CURRENT) or version")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime intra-op threads")
    spin_us: int = Field(SPIN_US, ge=0, le=100_000, description="how long idle ONNX Runtime "
                         "threads spin for work before sleeping, in µs (0: never spin)")
    log_level: str = Field("info", description="root log level")
    redis_url: str | None = Field(None, description="Redis for the shared cache; unset: in-process")
    cache_entries: int = Field(10_000, ge=0, description="in-process cache size (0: no cache)")
    cache_max_bytes: int = Field(64 * 2**20, ge=0, description="in-process cache memory bound")
    cache_ttl_s: int = Field(3600, ge=1, description="lifetime of a cached entry in Redis")
    api_keys: list[str] = Field(default_factory=list,
                                description='admin API keys, JSON list: ["key1", "key2"]')
    cors_origins: list[str] = Field(
        default_factory=list, description='browser origins allowed cross-site, JSON list; none: closed')
    index_name: str = Field("xmodal", description="name under which clip-retrieval clients see the index")
    dedup_threshold: float = Field(
        0.94, ge=0.0, le=1.0, description="clip-retrieval's deduplicate: image vectors at least "
                                          "this similar (cosine) are near duplicates")
    max_body_bytes: int = Field(32 * 2**20, ge=1024, description="largest accepted request body")
    max_image_bytes: int = Field(10 * 2**20, ge=1024, description="largest accepted image upload")
    max_image_pixels: int = Field(40_000_000, ge=1, description="largest accepted width x height")
    max_request_pixels: int = Field(200_000_000, ge=1,
                                    description="largest total width x height of one request's images")
    batch_max_size: int = Field(32, ge=1, le=1024,
                                description="most queries (or rerank requests) in one batch")
    rerank_max_pairs: int = Field(
        256, ge=1, le=65536, description="most (text, image) pairs per reranker call; a batch "
                                         "of rerank requests with more is split")
    batch_max_wait_ms: float = Field(
        0.0, ge=0, le=1000, description="extra wait for queries to join a batch; 0: batch only "
                                        "what queued while the engine was busy")

    @model_validator(mode="after")
    def _safe_outside_development(self) -> Settings:
        if self.environment == "production":
            if not self.api_keys:
                raise ValueError("production needs XMODAL_API_KEYS: the admin API would be "
                                 "unusable (set keys, or XMODAL_ENVIRONMENT=development)")
            weak = [k for k in self.api_keys
                    if len(k) < MIN_KEY_CHARS or k.lower() in PLACEHOLDER_KEYS]
            if weak:
                raise ValueError(f"{len(weak)} admin key(s) are placeholders or shorter than "
                                 f"{MIN_KEY_CHARS} characters; production refuses them")
            if "*" in self.cors_origins:
                raise ValueError("production refuses XMODAL_CORS_ORIGINS='[\"*\"]'; list origins")
        return self
