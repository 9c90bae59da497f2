"""Start-up refuses an index built by another engine; probes; import without torch."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from encoders.bundle import read_manifest
from encoders.errors import BundleError
from index.errors import EngineMismatchError
from service.config import Settings
from service.main import create_app
from service.metrics import Metrics
from service.query import QueryService
from tests.service.live_server import live_server
from xmodal.demo import DemoPaths

REPO = Path(__file__).resolve().parents[2]


def test_index_from_another_engine_is_refused_naming_both_ids(
    demo: DemoPaths, other_engine: Path
) -> None:
    index_engine = read_manifest(demo.engine).engine_id
    running_engine = read_manifest(other_engine).engine_id
    assert index_engine != running_engine
    app = create_app(Settings(engine_dir=other_engine, index_dir=demo.index))
    with pytest.raises(EngineMismatchError) as caught, TestClient(app):
        pass
    assert index_engine in str(caught.value) and running_engine in str(caught.value)


@pytest.mark.parametrize(("env", "allowed", "duration"), [({}, "1", "300"),
                                                          ({"XMODAL_SPIN_US": "0"}, "0", "0")])
def test_engine_threads_spin_as_configured(
    demo: DemoPaths, monkeypatch: pytest.MonkeyPatch, env: dict[str, str], allowed: str,
    duration: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    query = QueryService.load(Settings(engine_dir=demo.engine, index_dir=demo.index), Metrics())
    try:
        options = [s.get_session_options() for s in query.engine._sessions.values()]
        assert options
        for option in options:
            assert option.get_session_config_entry("session.intra_op.allow_spinning") == allowed
            assert option.get_session_config_entry("session.intra_op.spin_duration_us") == duration
    finally:
        asyncio.run(query.close())


def test_negative_spin_is_refused() -> None:
    with pytest.raises(ValueError, match="spin_us"):
        Settings(spin_us=-1)


def test_serving_path_works_with_torch_unimportable(demo: DemoPaths) -> None:
    """Load engine and index and answer a query in a process where `import torch` fails."""
    script = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # any import of torch now raises ImportError
        from fastapi.testclient import TestClient
        from service.config import Settings
        from service.main import create_app
        settings = Settings(engine_dir={str(demo.engine)!r}, index_dir={str(demo.index)!r})
        with TestClient(create_app(settings)) as client:
            r = client.post("/v1/search/text", json={{"text": "a blue square", "k": 3}})
            assert r.status_code == 200, r.text
            assert len(r.json()["results"]) == 3
        assert sys.modules["torch"] is None
        assert not any(m.startswith(("torch.", "transformers")) for m in sys.modules)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def test_health_and_validation_errors_are_json(demo: DemoPaths) -> None:
    with TestClient(create_app(Settings(engine_dir=demo.engine, index_dir=demo.index))) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        for body in ({"text": "", "k": 3}, {"text": "   "}, {"text": "x", "k": 0},
                     {"text": "x", "k": 1000}, {"k": 3}, {"text": "x" * 5000}):
            response = client.post("/v1/search/text", json=body)
            assert response.status_code == 422
            assert response.json()["error"]["code"] == "invalid_request"
        bad_json = client.post("/v1/search/text", content=b"{not json",
                               headers={"content-type": "application/json"})
        assert bad_json.status_code == 422
        assert client.post("/v1/search/text", json={"text": "a red circle"}).status_code == 200


def test_readyz_is_503_before_the_engine_and_index_are_loaded(demo: DemoPaths) -> None:
    app = create_app(Settings(engine_dir=demo.engine, index_dir=demo.index))
    client = TestClient(app)  # not entered: the lifespan has not run
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "not_ready"


def test_xmodal_serve_answers_over_http(demo: DemoPaths) -> None:
    """The real server process, configured through XMODAL_* variables."""
    with live_server(demo.engine, demo.index) as url:
        hits = httpx.post(f"{url}/v1/search/text",
                          json={"text": "a green triangle", "k": 2}).json()["results"]
    assert len(hits) == 2


@pytest.mark.parametrize("name", ["image_encoder.onnx", "tokenizer.json"])
def test_start_up_refuses_a_corrupt_engine_file_naming_it(
    demo: DemoPaths, tmp_path: Path, name: str
) -> None:
    engine = tmp_path / "engine"
    shutil.copytree(demo.engine, engine)
    data = (engine / name).read_bytes()
    (engine / name).write_bytes(data[:-100])
    app = create_app(Settings(engine_dir=engine, index_dir=demo.index))
    with pytest.raises(BundleError, match=name), TestClient(app):
        pass
