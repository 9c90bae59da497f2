"""The OpenAPI schema FastAPI generates, made valid where hand-written request bodies
(`openapi_extra`) carry pydantic's `$defs`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI


def with_hoisted_defs(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """FastAPI's schema, with the `$defs` of request bodies given by hand (`openapi_extra`,
    for routes that read JSON or multipart themselves) moved into `components`, where their
    `$ref`s can resolve: `#/$defs/...` inside an operation points at the document's root."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI keeps it as app.openapi_schema
            _hoist_defs(schema["paths"], schema.setdefault("components", {})
                        .setdefault("schemas", {}))
        return app.openapi_schema

    return openapi


def _hoist_defs(node: Any, components: dict[str, Any]) -> None:
    if isinstance(node, list):
        for item in node:
            _hoist_defs(item, components)
    elif isinstance(node, dict):
        for name, definition in node.pop("$defs", {}).items():
            components.setdefault(name, definition)
            _hoist_defs(definition, components)
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            node["$ref"] = "#/components/schemas/" + ref.removeprefix("#/$defs/")
        for value in node.values():
            _hoist_defs(value, components)
