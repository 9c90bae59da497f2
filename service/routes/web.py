"""The search page at `/`."""

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["web"])

PAGE = resources.files("service").joinpath("static/index.html")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))
