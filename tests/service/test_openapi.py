"""The OpenAPI schema is valid and describes the API as it answers: every `$ref` resolves,
errors have the service's error body, and the admin key is a security scheme."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis

from service.config import Settings
from service.main import create_app
from service.schemas import ImageQuery

ERROR_BODY = {"$ref": "#/components/schemas/ErrorResponse"}


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    return create_app(Settings()).openapi()  # the schema needs no engine or index


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield f"{method.upper()} {path}", operation


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("$ref"), str):
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolve(schema: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = schema
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    return node


def test_schema_is_valid_openapi(schema: dict[str, Any]) -> None:
    schemathesis.openapi.from_dict(schema).validate()


def test_every_ref_resolves(schema: dict[str, Any]) -> None:
    unresolved = []
    for ref in set(_refs(schema)):
        try:
            _resolve(schema, ref)
        except (KeyError, AssertionError):
            unresolved.append(ref)
    assert not unresolved


def test_every_error_response_has_the_error_body(schema: dict[str, Any]) -> None:
    for name, operation in _operations(schema):
        errors = {s: r for s, r in operation["responses"].items() if s[0] in "45"}
        assert {"413", "500"} <= set(errors), name  # the body cap and the catch-all
        for status, response in errors.items():
            assert response["content"]["application/json"]["schema"] == ERROR_BODY, (name, status)
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # FastAPI's 422 body


@pytest.mark.parametrize(("operation", "statuses"), [
    ("POST /v1/search/text", {"422", "503"}),
    ("POST /v1/search/image", {"422", "503"}),
    ("POST /v1/rerank", {"422", "503"}),
    ("GET /v1/images/{image_id}", {"404", "422", "503"}),
    ("GET /readyz", {"503"}),
    ("GET /v1/index", {"503"}),
    ("POST /v1/admin/index/reload", {"401", "403", "409", "422", "503"}),
    ("POST /knn-service", {"404", "422", "503"}),
])
def test_the_statuses_each_route_answers_are_documented(
    schema: dict[str, Any], operation: str, statuses: set[str]
) -> None:
    assert statuses <= set(dict(_operations(schema))[operation]["responses"])


def test_admin_key_is_a_security_scheme(schema: dict[str, Any]) -> None:
    assert schema["components"]["securitySchemes"]["AdminKey"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key",
        "description": "one of the keys in XMODAL_API_KEYS"}
    for name, operation in _operations(schema):
        admin = name.split()[1].startswith("/v1/admin/")
        assert (operation.get("security") == [{"AdminKey": []}]) == admin, name
        assert "x-api-key" not in {p["name"].lower() for p in operation.get("parameters", [])}


def test_image_search_form_has_every_query_option(schema: dict[str, Any]) -> None:
    body = dict(_operations(schema))["POST /v1/search/image"]["requestBody"]["content"]
    form = body["multipart/form-data"]["schema"]["properties"]
    assert set(form) == {"file", *ImageQuery.model_fields}
    assert form["filter"]["type"] == "string" and form["rerank"]["type"] == "boolean"
    assert form["min_match_probability"]["type"] == "number"  # a form field is never null
    assert body["application/json"]["schema"]["properties"]["target"]["$ref"] == \
        "#/components/schemas/Target"


def test_image_ids_are_documented_as_canonical_integers(schema: dict[str, Any]) -> None:
    operation = dict(_operations(schema))["GET /v1/images/{image_id}"]
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["image_id"]["schema"]["pattern"] == "^(0|[1-9][0-9]{0,18})$"
    assert params["size"]["in"] == "query" and not params["size"]["required"]


def test_text_search_documents_its_modes_and_image_search_has_none(schema: dict[str, Any]) -> None:
    components = schema["components"]["schemas"]
    assert components["SearchMode"]["enum"] == ["vector", "keyword", "hybrid"]
    mode = components["TextSearchRequest"]["properties"]["mode"]
    assert mode["default"] == "vector" and "reciprocal rank fusion" in mode["description"]
    body = dict(_operations(schema))["POST /v1/search/image"]["requestBody"]["content"]
    assert "mode" not in body["application/json"]["schema"]["properties"]
    assert "mode" not in body["multipart/form-data"]["schema"]["properties"]


def test_index_info_says_whether_keyword_search_answers(schema: dict[str, Any]) -> None:
    info = schema["components"]["schemas"]["IndexInfo"]
    assert info["properties"]["keywords"]["type"] == "boolean" and "keywords" in info["required"]
    assert "hybrid" in info["properties"]["keywords"]["description"]
