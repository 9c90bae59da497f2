"""FastAPI dependencies, as `Annotated` aliases the routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.errors import NotReady
from service.runtime import Runtime


def get_runtime(request: Request) -> Runtime:
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is None:
        raise NotReady("the engine and index are not loaded yet")
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
