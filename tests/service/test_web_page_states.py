"""The search page's states against canned API answers (no server): an error replaces the old
results, an empty answer says so, a body that is not JSON is reported, not thrown, and keyword
and hybrid search are offered only for an index with a keyword index."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from importlib import resources

import pytest
from playwright.sync_api import Browser, Page, Route

ORIGIN = "http://xmodal.test"
PAGE = resources.files("service").joinpath("static/index.html").read_text(encoding="utf-8")
READY = {"status": "ready", "engine_id": "e", "index_version": "v", "count": 2, "rerank": False}
HIT = {"id": 1, "score": 0.9, "match_probability": None, "path": "a.png", "caption": "a red circle",
       "fields": {}, "thumbnail_url": "/v1/images/1"}


def _json(status: int, body: object) -> Callable[[Route], None]:
    return lambda route: route.fulfill(status=status, content_type="application/json",
                                       body=json.dumps(body))


def _one_hit_recording(sent: list[dict]) -> Callable[[Route], None]:
    """An answer with one hit that keeps the request's JSON body in `sent`."""
    def answer(route: Route) -> None:
        sent.append(route.request.post_data_json)
        _json(200, {"engine_id": "e", "index_version": "v", "results": [HIT]})(route)
    return answer


@pytest.fixture
def info() -> dict:
    """What `GET /v1/index` answers (its other fields the page does not read); a test
    parametrized on `info` answers otherwise."""
    return {"keywords": False}


@pytest.fixture
def page(browser: Browser,
         info: dict) -> Iterator[tuple[Page, list[Callable[[Route], None]], list[str]]]:
    """The page, the queue of answers its searches get, and the errors it threw."""
    answers: list[Callable[[Route], None]] = []
    thrown: list[str] = []

    def handle(route: Route) -> None:
        path = route.request.url.removeprefix(ORIGIN)
        if path == "/":
            route.fulfill(status=200, content_type="text/html", body=PAGE)
        elif path == "/readyz":
            _json(200, READY)(route)
        elif path == "/v1/index":
            _json(200, info)(route)
        elif path.startswith("/v1/search/"):
            answers.pop(0)(route)
        else:
            route.fulfill(status=204)

    page = browser.new_page()
    page.on("pageerror", lambda error: thrown.append(str(error)))
    page.route(f"{ORIGIN}/**", handle)
    page.goto(f"{ORIGIN}/")
    page.wait_for_selector("#status:has-text('2 images')")
    yield page, answers, thrown
    page.close()


def _search(page: Page, text: str = "a red circle") -> None:
    page.fill("#query", text)
    page.click("button[type=submit]")


def test_an_error_replaces_the_old_results(page) -> None:
    page, answers, thrown = page
    answers += [_json(200, {"engine_id": "e", "index_version": "v", "results": [HIT]}),
                _json(422, {"error": {"code": "invalid_request", "message": "text: too long"}})]
    _search(page)
    page.wait_for_selector("#results figure")
    _search(page, "x" * 5)
    page.wait_for_selector("#error:has-text('text: too long')")
    assert page.locator("#results figure").count() == 0
    assert not thrown


def test_no_results_says_so(page) -> None:
    page, answers, thrown = page
    answers.append(_json(200, {"engine_id": "e", "index_version": "v", "results": []}))
    _search(page)
    page.wait_for_selector("#results .empty:has-text('No results')")
    assert page.inner_text("#error") == "" and not thrown


@pytest.mark.parametrize(("answer", "shown"), [
    (lambda route: route.fulfill(status=502, content_type="text/html",
                                 body="<html><body>Bad Gateway</body></html>"), "502"),
    (lambda route: route.fulfill(status=200, content_type="text/plain", body="ok"), "not JSON"),
    (lambda route: route.abort("connectionreset"), "could not reach the service"),
])
def test_an_answer_that_is_not_json_is_reported(page, answer, shown: str) -> None:
    page, answers, thrown = page
    answers += [_json(200, {"engine_id": "e", "index_version": "v", "results": [HIT]}), answer]
    _search(page)
    page.wait_for_selector("#results figure")
    _search(page)
    page.wait_for_selector(f"#error:has-text('{shown}')")
    assert page.locator("#results figure").count() == 0
    assert not thrown


def test_keyword_and_hybrid_are_disabled_without_a_keyword_index(page) -> None:
    page, answers, thrown = page
    assert page.is_disabled("#mode option[value=keyword]")
    assert page.is_disabled("#mode option[value=hybrid]")
    assert page.input_value("#mode") == "vector"
    assert not page.is_disabled("#mode option[value=vector]")
    sent: list[dict] = []
    answers.append(_one_hit_recording(sent))
    _search(page)
    page.wait_for_selector("#results figure")
    assert sent[0]["mode"] == "vector" and not thrown


@pytest.mark.parametrize("info", [{"keywords": True}])
def test_the_chosen_mode_is_sent_when_the_index_has_keywords(page) -> None:
    page, answers, thrown = page
    page.select_option("#mode", "hybrid")
    sent: list[dict] = []
    answers.append(_one_hit_recording(sent))
    _search(page)
    page.wait_for_selector("#results figure")
    assert sent[0]["mode"] == "hybrid" and not thrown
