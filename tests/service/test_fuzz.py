"""Property-based fuzzing from the OpenAPI schema against the running app: zero 5xx.

A bounded run here (30 examples per operation); `make fuzz` runs 500 per operation.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.service.live_server import live_server
from xmodal.demo import DemoPaths

EXAMPLES = int(os.environ.get("XMODAL_FUZZ_EXAMPLES", "30"))
KEY = "fuzz-admin-key-0123456789"


@pytest.fixture(scope="module")
def api_schema(demo: DemoPaths, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[schemathesis.Schema]:
    # its own copy of the index: fuzzed admin calls add, delete and compact for real, and the
    # session's demo index is shared by every other test
    index = tmp_path_factory.mktemp("fuzz") / "index"
    shutil.copytree(demo.index, index)
    with live_server(demo.engine, index, api_keys=f'["{KEY}"]') as url:
        yield schemathesis.openapi.from_url(f"{url}/openapi.json")


def _fuzz(operation: schemathesis.APIOperation) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    def run(case: schemathesis.Case) -> None:
        if case.path.startswith("/v1/admin"):
            case.headers = {**(case.headers or {}), "X-API-Key": KEY}
            if isinstance(case.body, dict):  # never point the live server at a fuzzed folder
                case.body.pop("index_dir", None)
        case.call_and_validate(checks=[not_a_server_error])

    run()


def test_no_input_from_the_schema_causes_a_server_error(api_schema: schemathesis.Schema) -> None:
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 10  # every route is in the schema
    for operation in operations:
        _fuzz(operation)
