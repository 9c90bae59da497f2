"""The search page at `/`, and an empty answer for browsers' `/favicon.ico`."""

from importlib import resources

from fastapi import APIRouter, Response
from fastapi.responses import HTMLResponse

router = APIRouter(tags=["web"])

PAGE = resources.files("service").joinpath("static/index.html")


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
def index_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/favicon.ico", include_in_schema=False)
async def favicon() -> Response:
    """No icon: a 204 (cached for a day) instead of a 404 in every browser's console and in
    the error metrics. The page itself names an inline icon."""
    return Response(status_code=204, headers={"Cache-Control": "public, max-age=86400"})
