"""Debian's Chromium driven by Playwright, for the console's tests.

The browser is the machine's own (``apt-get install chromium``), never one Playwright
downloads; background networking is off, since this machine's network is closed and
Chromium would otherwise try Google's hosts at every start. Screenshots go to
``.artefacts/console/`` for a person to look at.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM = os.environ.get("OWNLIGHT_CHROMIUM", "/usr/bin/chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / ".artefacts" / "console"
AXE = Path(__file__).resolve().parents[2] / ".agents" / "node_modules" / "axe-core" / "axe.min.js"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage"]


@contextmanager
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def sign_in(page: Page, base_url: str, key: str) -> None:
    page.goto(base_url + "/console/")
    page.get_by_label(re.compile("API key|API 密钥|API キー|API-ключ")).fill(key)
    page.locator("form[action='/console/sign-in'] button[type=submit]").click()
    page.wait_for_url(base_url + "/console/")


def screenshot(page: Page, name: str) -> Path:
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def serious_accessibility_violations(page: Page) -> list[dict[str, object]]:
    """axe-core (pinned, installed by ``make agents``) run in the page: the violations
    whose impact is serious or critical."""
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    result = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length,"
        " help: v.help, target: v.nodes[0] && v.nodes[0].target}))"
    )
    return [v for v in result if v["impact"] in ("serious", "critical")]
