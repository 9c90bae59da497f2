"""The search page in headless Chromium: type a query, see the expected image first."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
from playwright.sync_api import Browser

from tests.service.live_server import live_server
from xmodal.demo import DemoPaths


def _uniquely_captioned_hit(url: str, demo: DemoPaths) -> tuple[str, str]:
    """A caption that names one gallery image only and that the model ranks first.

    The model's recall is measured elsewhere; here the page must show what the API ranks first.
    """
    lines = (demo.gallery / "captions.jsonl").read_text().splitlines()
    captions = [json.loads(line) for line in lines]
    counts = Counter(row["caption"] for row in captions)
    for row in captions:
        if counts[row["caption"]] == 1:
            top = httpx.post(f"{url}/v1/search/text", json={"text": row["caption"], "k": 1})
            if top.json()["results"][0]["path"] == row["file"]:
                return row["caption"], row["file"]
    raise AssertionError("no uniquely captioned image is ranked first by the demo model")


def test_typing_a_query_shows_the_matching_image_first(
    demo: DemoPaths, browser: Browser, tmp_path: Path
) -> None:
    with live_server(demo.engine, demo.index) as url:
        query, expected = _uniquely_captioned_hit(url, demo)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#status:has-text('images')")
        page.fill("#query", query)
        page.click("button[type=submit]")
        page.wait_for_selector("#results figure")
        paths = page.eval_on_selector_all("#results figure", "els => els.map(e => e.dataset.path)")
        page.wait_for_function("document.querySelector('#results figure img').complete")
        first_image_loaded = page.eval_on_selector(
            "#results figure img", "img => img.naturalWidth > 0")
        page.screenshot(path=str(tmp_path / "search.png"), full_page=True)
    assert len(paths) == 12
    assert paths[0] == expected
    assert first_image_loaded


def test_a_bad_query_shows_the_error_message(demo: DemoPaths, browser: Browser) -> None:
    with live_server(demo.engine, demo.index) as url:
        page = browser.new_page()
        page.goto(url)
        page.fill("#query", "   ")
        page.click("button[type=submit]")
        page.wait_for_selector("#error:has-text('white space')")


def test_rerank_toggle_shows_both_scores(rerank_setup, browser: Browser) -> None:
    with live_server(rerank_setup.engine, rerank_setup.index) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#rerank:not([disabled])")
        page.fill("#query", "a red circle")
        page.check("#rerank")
        page.click("button[type=submit]")
        page.wait_for_selector("#results figure")
        first = page.inner_text("#results figure .score")
    assert "score" in first and "match" in first


def test_rerank_toggle_is_disabled_without_a_reranker(demo: DemoPaths, browser: Browser) -> None:
    with live_server(demo.engine, demo.index) as url:
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#status:has-text('images')")
        assert page.is_disabled("#rerank")


def test_the_api_docs_render_from_this_server_alone(demo: DemoPaths, browser: Browser) -> None:
    """Swagger UI loads its scripts from the service, so it works offline."""
    with live_server(demo.engine, demo.index) as url:
        page = browser.new_page()
        requested: list[str] = []
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{url}/docs")
        page.wait_for_selector(".opblock-summary-path:has-text('/v1/search/text')")
        page.wait_for_selector(".opblock-summary-path:has-text('/knn-service')")
    elsewhere = [u for u in requested if not u.startswith(f"{url}/")]
    assert requested and not elsewhere, elsewhere
