"""`xmodal bench screenshot`: the search page of a running service, with a query typed in and its
results shown, as a PNG (headless Debian Chromium through Playwright)."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main(url: str, query: str, out: Path, rerank: bool = False) -> int:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        raise SystemExit("chromium is not installed (Debian's chromium package)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        page.goto(url)
        page.wait_for_selector("#status:has-text('images')")
        page.fill("#query", query)
        if rerank:
            page.check("#rerank")
        page.click("button[type=submit]")
        page.wait_for_selector("#results figure")
        page.wait_for_function("[...document.querySelectorAll('#results figure img')].every(i => i.complete)")
        captions = page.eval_on_selector_all("#results figure", "els => els.map(e => e.innerText)")
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()
    print("\n".join(f"{i + 1}. {c.replace(chr(10), ' | ')}" for i, c in enumerate(captions[:5])))
    print(f"written to {out}")
    return 0
