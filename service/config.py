"""Service settings, read from `XMODAL_*` environment variables (see the README's table)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEMO_DIR = Path("var/demo")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="XMODAL_", extra="ignore")

    engine_dir: Path = Field(DEMO_DIR / "engine", description="engine bundle folder")
    index_dir: Path = Field(DEMO_DIR / "index", description="index root (with CURRENT) or version")
    host: str = Field("127.0.0.1", description="address to listen on")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    threads: int | None = Field(None, ge=1, description="ONNX Runtime intra-op threads")
    log_level: str = Field("info", description="root log level")
