"""FastAPI dependencies, as `Annotated` aliases the routes take."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.config import Settings
from service.errors import NotReady
from service.metrics import Metrics
from service.pipeline import QueryPipeline


def get_pipeline(request: Request) -> QueryPipeline:
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is None:
        raise NotReady("the engine and index are not loaded yet")
    return pipeline


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_metrics(request: Request) -> Metrics:
    return request.app.state.metrics


PipelineDep = Annotated[QueryPipeline, Depends(get_pipeline)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
