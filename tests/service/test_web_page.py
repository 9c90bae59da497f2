"""The search page in headless Chromium: type a query, see the expected image first; in
keyword mode, a literal tag finds the images it is on."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
from playwright.sync_api import Browser

from encoders.engine import OnnxEngine
from index.build import build_index
from tests.colour_gallery import TAGGED, write_colour_gallery
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


def test_keyword_mode_finds_a_literal_tag(
    demo: DemoPaths, browser: Browser, tmp_path: Path
) -> None:
    """The colour gallery tags a few squares "zanzibar", a word no image shows."""
    build_index(OnnxEngine(demo.engine), write_colour_gallery(tmp_path / "gallery"),
                tmp_path / "index")
    tagged = sorted(f for f, tag in TAGGED.items() if tag == "zanzibar")
    with live_server(demo.engine, tmp_path / "index") as url:
        by_vector = httpx.post(f"{url}/v1/search/text", json={"text": "zanzibar", "k": len(tagged)})
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector("#mode option[value=keyword]:not([disabled])", state="attached")
        page.select_option("#mode", "keyword")
        page.fill("#query", "zanzibar")
        page.click("button[type=submit]")
        page.wait_for_selector("#results figure")
        paths = page.eval_on_selector_all("#results figure", "els => els.map(e => e.dataset.path)")
    assert sorted(paths) == tagged
    # the dual encoder does not: the word names nothing an image shows
    assert sorted(r["path"] for r in by_vector.json()["results"]) != tagged


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
