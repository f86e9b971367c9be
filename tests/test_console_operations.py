"""The console's operations pages in a real browser: models (promote and roll back with
the gate's evidence, recorded with the admin as actor), routing ("explain this prompt")
and metrics, against a running gateway; an ordinary user gets 403 on each.

Model versions are tiny GGUF files served by the fake local kind (``tests/support/
tiny_gguf.py``), imported with the real ``ownlight models import``."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import Page, expect

from ownlight.backends import KINDS
from tests.conftest import upstream_toml
from tests.support.browser import chromium, screenshot, serious_accessibility_violations, sign_in
from tests.support.fake_upstream import FakeUpstream
from tests.test_model_lifecycle import MANAGED, ask, audit_records, imported

PAGES = ("/console/admin/models", "/console/admin/routing", "/console/admin/metrics")


@pytest.fixture(autouse=True)
def fake_local_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.support.tiny_gguf import FAKE_CLASS, FAKE_KIND

    monkeypatch.setitem(KINDS, FAKE_KIND, FAKE_CLASS)


@pytest.fixture(scope="module")
def browser():
    with chromium() as browser:
        yield browser


def new_page(browser, bypass_csp: bool = False) -> Page:
    return browser.new_context(locale="en-US", bypass_csp=bypass_csp).new_page()


def test_admin_promotes_and_rolls_back_with_the_gates_evidence(
        browser, gateway_factory, tmp_path) -> None:
    gateway = gateway_factory(MANAGED)
    config = gateway.config.source
    imported(config, tmp_path, "one", answer="one")
    imported(config, tmp_path, "two", answer="two")
    user = gateway.create_key("alice")
    page = new_page(browser)
    sign_in(page, gateway.url, gateway.create_key("root", ("admin",)))
    page.goto(gateway.url + "/console/admin/models")
    expect(page.locator("table").nth(1)).to_contain_text("assistant@2")

    page.get_by_label("Version to promote").select_option("assistant@1")
    page.get_by_label("Require the eval gate").uncheck()
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_role("status")).to_contain_text("assistant@1 now serves.")
    assert ask(gateway, user) == ("assistant/assistant@1", "one")

    # the gate wants stored eval scores for both versions: refused, and one still serves
    page.get_by_label("Version to promote").select_option("assistant@2")
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_role("alert")).to_contain_text("no stored score")
    assert ask(gateway, user)[1] == "one"

    page.get_by_label("Require the eval gate").uncheck()
    page.get_by_role("button", name="Promote").click()
    expect(page.get_by_role("status")).to_contain_text("assistant@2 now serves.")
    expect(page.locator("details summary", has_text="Trial load").first).to_be_visible()
    screenshot(page, "admin-models")
    page.get_by_role("button", name="Roll assistant back").click()
    expect(page.get_by_role("status")).to_contain_text("assistant@1 serves again")

    gateway.runtime.pipeline.ledger.flush()
    acts = [(r["action"], r["subject"], r["principal"]) for r in audit_records(config, "admin")]
    assert ("model.promote", "assistant@1", "root") in acts
    assert ("model.promote_refused", "assistant@2", "root") in acts
    assert ("model.promote", "assistant@2", "root") in acts
    assert ("model.rollback", "assistant@1", "root") in acts


def test_routing_explain_metrics_and_403_for_ordinary_users(
        browser, gateway_factory, cloud: FakeUpstream) -> None:
    toml = upstream_toml("cloud", cloud.url, "fake-echo", inside_domain=False, retries=0)
    toml += upstream_toml("home", cloud.url, "fake-echo", inside_domain=True, retries=0)
    toml += '[routing.aliases.auto]\ntargets = ["cloud", "home"]\n'
    toml += '[[routing.rules]]\nname = "finance-stays-home"\nwhen = { groups = ["finance"] }\n'
    toml += 'action = "local"\n'
    gateway = gateway_factory(toml)
    gateway.create_key("fiona", ("finance",))
    for _ in range(3):
        gateway.client(gateway.create_key("carl")).chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "hello"}])
    gateway.runtime.pipeline.ledger.flush()

    page = new_page(browser, bypass_csp=True)
    sign_in(page, gateway.url, gateway.create_key("root", ("admin",)))
    page.goto(gateway.url + "/console/admin/routing")
    expect(page.locator("table")).to_contain_text("finance-stays-home")
    page.get_by_label("Prompt", exact=True).fill("Summarise the quarterly numbers")
    page.get_by_label("As the key of").select_option(label="fiona (default)")
    page.get_by_role("button", name="Explain (no model is called)").click()
    facts = page.locator("dl.facts")
    expect(facts).to_contain_text("finance-stays-home")
    expect(facts).to_contain_text("home")
    screenshot(page, "admin-routing")
    assert not cloud.received[3:]  # explaining calls no model

    page.goto(gateway.url + "/console/admin/metrics")
    totals = page.locator("dl.facts")
    expect(totals).to_contain_text("Requests")
    assert page.locator("svg.chart").count() == 4
    assert int(totals.locator("dd").first.inner_text()) >= 3
    screenshot(page, "admin-metrics")
    for path in PAGES:
        page.goto(gateway.url + path)
        assert serious_accessibility_violations(page) == [], path

    page.goto(gateway.url + "/console/admin/egress")  # the chain's status, and a new verdict
    expect(page.get_by_text("Not verified since this instance started.")).to_be_visible()
    page.get_by_role("button", name="Verify the chain now").click()
    for _ in range(50):
        if page.get_by_text("Verified:").count():
            break
        page.wait_for_timeout(100)
        page.reload()
    expect(page.get_by_text("Verified:")).to_contain_text("records, head")
    gateway.runtime.pipeline.ledger.flush()
    verdicts = gateway.runtime.pipeline.ledger.query("1=1", (), kind="admin")
    assert any(r["action"] == "audit.verify" and r["principal"] == "root" for r in verdicts)

    ordinary = new_page(browser)
    sign_in(ordinary, gateway.url, gateway.create_key("bob"))
    for path in PAGES:
        response = ordinary.goto(gateway.url + path)
        assert response is not None and response.status == 403, path
    refused = ordinary.request.post(gateway.url + "/console/admin/models/rollback",
                                    form={"name": "x"})
    assert refused.status == 403
    assert "admin.nav.models" not in json.dumps(ordinary.content())
