"""Safe defaults: production refuses weak admin keys; CORS is closed unless configured."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.config import Settings
from service.main import create_app
from xmodal.demo import DemoPaths

STRONG = "k3y-0f-at-least-sixteen-chars"


@pytest.mark.parametrize(("keys", "problem"), [
    ([], "XMODAL_API_KEYS"), (["changeme"], "placeholders"), (["short"], "placeholders"),
    ([STRONG, "secret"], "1 admin key"),
])
def test_production_refuses_missing_or_weak_keys(keys: list[str], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        Settings(environment="production", api_keys=keys)


def test_production_accepts_strong_keys_and_env_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XMODAL_ENVIRONMENT", "production")
    monkeypatch.setenv("XMODAL_API_KEYS", f'["{STRONG}"]')
    assert Settings().api_keys == [STRONG]
    monkeypatch.setenv("XMODAL_CORS_ORIGINS", '["*"]')
    with pytest.raises(ValidationError, match="CORS"):
        Settings()


def test_cors_is_closed_by_default_and_open_only_to_listed_origins(demo: DemoPaths) -> None:
    preflight = {"Origin": "https://elsewhere.example", "Access-Control-Request-Method": "POST"}
    closed = Settings(engine_dir=demo.engine, index_dir=demo.index)
    with TestClient(create_app(closed)) as client:
        response = client.options("/v1/search/text", headers=preflight)
        assert "access-control-allow-origin" not in response.headers
        get = client.get("/healthz", headers={"Origin": "https://elsewhere.example"})
        assert "access-control-allow-origin" not in get.headers
    opened = closed.model_copy(update={"cors_origins": ["https://app.example"]})
    with TestClient(create_app(opened)) as client:
        allowed = client.options("/v1/search/text", headers={**preflight, "Origin": "https://app.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = client.options("/v1/search/text", headers=preflight)
        assert other.headers.get("access-control-allow-origin") != "https://elsewhere.example"
