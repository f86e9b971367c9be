"""The console's admin pages in a real browser (Debian's Chromium through Playwright)
against a running gateway whose cloud is a recording fake upstream.

An admin creates a key (shown once), the key works, the admin revokes it and its next call
fails; an admin sees the egress of a request that went to the cloud with the type and count
pseudonymized, never the value; an ordinary user gets 403 on every admin page; each admin
page renders in English, Chinese, Japanese and Russian with no serious axe-core violation.
"""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import upstream_toml
from tests.support.browser import chromium, screenshot, serious_accessibility_violations, sign_in
from tests.support.fake_upstream import FakeUpstream

EMAIL = "carla.rossi@example.com"
PAGES = ("/console/admin/egress", "/console/admin/ledger", "/console/admin/keys")
CATALOGUES = Path(__file__).resolve().parents[1] / "src/ownlight/console/catalogues"


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def new_page(browser, locale: str = "en-US", bypass_csp: bool = False) -> Page:
    """``bypass_csp`` only to inject axe-core, which the console's CSP rightly refuses."""
    return browser.new_context(locale=locale, bypass_csp=bypass_csp).new_page()


def start(gateway_factory, cloud: FakeUpstream):
    return gateway_factory(
        upstream_toml("cloud", cloud.url, "fake-echo", inside_domain=False, retries=0)
    )


def test_admin_creates_and_revokes_a_key_and_sees_egress(browser, gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    gateway.client(gateway.create_key("alice")).chat.completions.create(
        model="cloud", messages=[{"role": "user", "content": f"Mail {EMAIL} the report"}]
    )
    assert EMAIL not in json.dumps(cloud.received)
    gateway.runtime.pipeline.ledger.flush()
    page = new_page(browser)
    sign_in(page, gateway.url, gateway.create_key("root", ("admin",)))

    page.goto(gateway.url + "/console/admin/egress")
    row = page.locator("table.egress tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("alice")
    expect(row).to_contain_text("EMAIL_ADDRESS × 1")
    assert EMAIL not in page.content()
    expect(page.locator("svg.chart rect")).not_to_have_count(0)
    screenshot(page, "admin-egress")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export as CSV").click()
    exported = Path(download.value.path()).read_text(encoding="utf-8")
    assert "alice" in exported and "EMAIL_ADDRESS" in exported and EMAIL not in exported

    page.goto(gateway.url + "/console/admin/keys")
    page.get_by_label("Name").fill("carol")
    page.get_by_label("Groups").fill("finance")
    page.get_by_role("button", name="Create", exact=True).click()
    key = page.locator("code.new-key").inner_text()
    assert key.startswith("ol-") or len(key) > 20
    screenshot(page, "admin-keys-created")
    assert (
        gateway.client(key)
        .chat.completions.create(model="cloud", messages=[{"role": "user", "content": "hi"}])
        .choices
    )
    page.goto(gateway.url + "/console/admin/keys")  # the key is never shown again
    expect(page.locator("code.new-key")).to_have_count(0)
    carol = page.locator("table.keys tbody tr", has_text="carol")
    carol.get_by_role("button", name="Revoke").click()
    expect(page.locator("table.keys tbody tr", has_text="carol")).to_contain_text("Revoked")
    with pytest.raises(openai.AuthenticationError):
        gateway.client(key).chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hi"}]
        )

    gateway.runtime.pipeline.ledger.flush()
    page.goto(gateway.url + "/console/admin/ledger?kind=admin")
    rows = page.locator("table.ledger tbody tr")
    expect(rows.filter(has_text="key.create")).not_to_have_count(0)
    expect(rows.filter(has_text="key.revoke")).to_have_count(1)
    rows.filter(has_text="key.revoke").get_by_role("link").click()
    expect(page.locator("pre.record")).to_contain_text('"principal": "root"')
    expect(page.get_by_label("Kind")).to_have_value("admin")  # the filter is kept
    expect(rows.filter(has_text="request")).to_have_count(0)
    assert key not in page.content()
    screenshot(page, "admin-ledger")


def test_an_ordinary_user_gets_403_on_every_admin_page(browser, gateway_factory, cloud) -> None:
    gateway = start(gateway_factory, cloud)
    page = new_page(browser)
    sign_in(page, gateway.url, gateway.create_key("bob"))
    for path in (*PAGES, "/console/admin/egress/export"):
        answer = page.goto(gateway.url + path)
        assert answer is not None and answer.status == 403, path
    assert page.locator("nav a[href^='/console/admin']").count() == 0
    screenshot(page, "admin-forbidden")
    before = len(gateway.runtime.keys.list())
    answer = page.request.post(gateway.url + "/console/admin/keys/create", form={"name": "mallory"})
    assert answer.status == 403 and len(gateway.runtime.keys.list()) == before


@pytest.mark.parametrize("locale", ["en-US", "zh-CN", "ja-JP", "ru-RU"])
def test_each_admin_page_renders_in_each_language(
    browser, gateway_factory, cloud, locale: str
) -> None:
    lang = locale[:2]
    texts = json.loads((CATALOGUES / lang / "admin.json").read_text(encoding="utf-8"))
    gateway = start(gateway_factory, cloud)
    page = new_page(browser, locale, bypass_csp=True)
    sign_in(page, gateway.url, gateway.create_key("root", ("admin",)))
    for path, key in zip(
        PAGES, ("admin.egress.title", "admin.ledger.title", "admin.keys.title"), strict=True
    ):
        page.goto(gateway.url + path)
        expect(page.locator("h1")).to_have_text(texts[key])
        assert page.locator("html").get_attribute("lang") == lang
        assert serious_accessibility_violations(page) == [], (path, lang)
        screenshot(page, f"admin-{path.rsplit('/', 1)[1]}-{lang}")


def test_every_admin_string_is_translated() -> None:
    english = json.loads((CATALOGUES / "en" / "admin.json").read_text(encoding="utf-8"))
    for lang in ("zh", "ja", "ru"):
        other = json.loads((CATALOGUES / lang / "admin.json").read_text(encoding="utf-8"))
        assert set(other) == set(english), lang
        assert all(other[k].strip() for k in english), lang
        same = [k for k in english if other[k] == english[k] and k != "admin.col.id"]
        assert same == [], (lang, same)
