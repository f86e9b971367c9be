"""Person names in real prose (zh, ja, ru) and the failure classes issue 10 found.

Sentences are Ownlight's own, written for these tests (never taken from the evaluation
sets). The gateway tests drive a real server with the openai SDK, against a fake cloud
upstream that records what it receives, with a detector made to fail or overrun.
"""

from __future__ import annotations

import time

import openai
import pytest

from ownlight.privacy.detector import Detector
from ownlight.privacy.ner.recognizer import NerNameRecognizer
from tests.conftest import upstream_toml
from tests.support.fake_upstream import FakeUpstream


@pytest.fixture(scope="module")
def detector() -> Detector:
    return Detector.default()


def found(detector: Detector, text: str, type_: str = "PERSON") -> list[str]:
    return [text[s.start : s.end] for s in detector.scan(text) if s.type == type_]


@pytest.mark.parametrize(("text", "names"), [
    ("昨天王建国在发布会上介绍了新产品。", ["王建国"]),  # no title, no cue
    ("请把报告发给李秀英经理。", ["李秀英"]),  # a title after
    ("欧阳明和张伟一起去了上海。", ["欧阳明", "张伟"]),  # compound surname, two names
    ("特朗普昨天发表了讲话。", ["特朗普"]),  # a transliterated foreign name
])
def test_chinese_names_in_prose(detector: Detector, text: str, names: list[str]) -> None:
    assert found(detector, text) == names


@pytest.mark.parametrize("text", [
    "这两种方法的不同和区别在哪里？",  # 和 is not a name cue
    "请于周三解释这个问题。",  # 于周三, 解释这 are not names
    "中华人民共和国主席的职责是什么？",  # a title alone is no one
    "第 182 季度的报告已经上传。",  # not a street address either
])
def test_chinese_look_alikes_are_left_alone(detector: Detector, text: str) -> None:
    assert detector.scan(text) == []


@pytest.mark.parametrize(("text", "names"), [
    ("山田太郎さんに資料を送ってください。", ["山田太郎"]),
    ("担当は佐藤 花子です。", ["佐藤 花子"]),  # a space between surname and given name
    ("監督はジョン・スミスが務めた。", ["ジョン・スミス"]),  # a katakana foreign name
])
def test_japanese_names_in_prose(detector: Detector, text: str, names: list[str]) -> None:
    assert found(detector, text) == names


@pytest.mark.parametrize(("text", "names"), [
    ("Вчера Иванов подписал договор.", ["Иванов"]),  # a surname on its own
    ("Передайте отчёт Марии Сергеевне Кузнецовой.", ["Марии Сергеевне Кузнецовой"]),
    ("— Мы готовы к переговорам, — сказал Лукашенко.", ["Лукашенко"]),
])
def test_russian_names_in_prose(detector: Detector, text: str, names: list[str]) -> None:
    assert found(detector, text) == names


@pytest.mark.parametrize("text", ["Мы поедем к Украине на поезде.", "Погода в Москве хорошая."])
def test_russian_places_are_not_people(detector: Detector, text: str) -> None:
    assert found(detector, text) == []


@pytest.mark.parametrize("text", ["Weather in Paris?", "Any good hotels in Florence?",
                                  "We met at a café in Austin last year."])
def test_places_after_a_locative_word_are_not_people(detector: Detector, text: str) -> None:
    assert found(detector, text) == []


def test_a_person_named_like_a_city_is_still_a_person(detector: Detector) -> None:
    assert found(detector, "Please ask Paris Hilton to call back.") == ["Paris Hilton"]


@pytest.mark.parametrize(("text", "value"), [
    ("服务器104.202.222.20的端口是22", "104.202.222.20"),  # against CJK, no space
    ("サーバーIP:10.20.30.40に接続", "10.20.30.40"),
    ("地址是2001:db8::1的那台", "2001:db8::1"),  # compressed
    ("use 2001:db8:0:0:1:0:0:1 here", "2001:db8:0:0:1:0:0:1"),  # full
    ("link-local fe80::1ff:fe23:4567:890a%eth0 up", "fe80::1ff:fe23:4567:890a%eth0"),  # zone
    ("mapped ::ffff:192.0.2.128 ok", "::ffff:192.0.2.128"),  # IPv4-embedded
    ("loopback ::1 only", "::1"),
    ("prefix 2001:db8:: end", "2001:db8::"),
])
def test_ip_addresses_in_every_form(detector: Detector, text: str, value: str) -> None:
    assert found(detector, text, "IP_ADDRESS") == [value]


@pytest.mark.parametrize("text", ["会议在12:30:45开始", "ratio 3:2:1", "MAC 00:1A:2B:3C:4D:5E"])
def test_times_and_ratios_are_not_ip_addresses(detector: Detector, text: str) -> None:
    assert found(detector, text, "IP_ADDRESS") == []


@pytest.mark.parametrize(("text", "value"), [
    ("我的手机+86 141 2345 6789，请回电", "+86 141 2345 6789"),  # range unknown to phonenumbers
    ("call me on +44 20 6241 8822 tomorrow", "+44 20 6241 8822"),
    ("тел. +7 999 000-00-00", "+7 999 000-00-00"),
])
def test_phone_shaped_numbers_after_a_phone_word(detector: Detector, text: str,
                                                 value: str) -> None:
    assert found(detector, text, "PHONE_NUMBER") == [value]


def test_numbers_without_a_phone_word_need_a_valid_range(detector: Detector) -> None:
    assert found(detector, "the batch code is +44 20 6241 8822", "PHONE_NUMBER") == []


# -- fail closed, through a running gateway ------------------------------------------------


def gateway(gateway_factory, cloud: FakeUpstream, home: FakeUpstream | None = None,
            extra: str = ""):
    toml = upstream_toml("cloud", cloud.url, "fake-echo", inside_domain=False, retries=0)
    if home is not None:
        toml += upstream_toml("home", home.url, "fake-echo", inside_domain=True, retries=0)
    return gateway_factory(toml + extra)


def last_record(gw) -> dict:
    gw.runtime.pipeline.ledger.flush()
    return gw.runtime.pipeline.ledger.query("1 = 1")[-1]


def test_a_name_model_that_raises_sends_nothing_out(gateway_factory, cloud, monkeypatch) -> None:
    gw = gateway(gateway_factory, cloud)

    def broken(self: NerNameRecognizer, text: str):
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(NerNameRecognizer, "find", broken)
    with pytest.raises(openai.BadRequestError) as caught:
        gw.client().chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "请把合同发给王建国。"}])
    assert caught.value.status_code == 400
    # the red-line rule (unscanned data stays inside) or the egress check refuses it
    assert caught.value.body["code"] in (  # type: ignore[index]
        "policy_local_only", "privacy_check_failed")
    assert "RuntimeError" in caught.value.message
    assert cloud.received == []
    record = last_record(gw)
    assert record["status"] == 400 and record["sensitivity"] == "unscanned"


def test_a_name_model_that_overruns_its_budget_sends_nothing_out(
        gateway_factory, cloud, monkeypatch) -> None:
    gw = gateway(gateway_factory, cloud, extra="[privacy]\nscan_timeout = 0.2\n")

    def slow(self: NerNameRecognizer, text: str):
        time.sleep(0.5)
        return iter(())

    monkeypatch.setattr(NerNameRecognizer, "find", slow)
    with pytest.raises(openai.BadRequestError) as caught:
        gw.client().chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "Позвоните Иванову."}])
    assert "privacy.scan_timeout" in caught.value.message
    assert cloud.received == []
    assert last_record(gw)["sensitivity"] == "unscanned"


def test_a_long_request_whose_scan_overruns_is_refused_at_the_deadline(
        gateway_factory, cloud, monkeypatch) -> None:
    gw = gateway(gateway_factory, cloud, extra="[privacy]\nscan_timeout = 0.3\n")

    def slow(self: NerNameRecognizer, text: str):
        time.sleep(2)
        return iter(())

    monkeypatch.setattr(NerNameRecognizer, "find", slow)
    started = time.monotonic()
    with pytest.raises(openai.BadRequestError):
        gw.client().chat.completions.create(
            model="cloud", messages=[{"role": "user", "content": "王建国说：" + "你好。" * 3000}])
    assert time.monotonic() - started < 1.5  # refused at the deadline, not after the scan
    assert cloud.received == []


def test_inside_the_domain_a_failed_scan_is_recorded_and_served(
        gateway_factory, cloud, fake_upstream, monkeypatch) -> None:
    home = fake_upstream
    gw = gateway(gateway_factory, cloud, home)

    def broken(self: NerNameRecognizer, text: str):
        raise RuntimeError("model file unreadable")

    monkeypatch.setattr(NerNameRecognizer, "find", broken)
    reply = gw.client().chat.completions.create(
        model="home", messages=[{"role": "user", "content": "请把合同发给王建国。"}])
    assert reply.choices[0].message.content == "You said: 请把合同发给王建国。"
    assert home.received and cloud.received == []
    record = last_record(gw)
    assert record["status"] == 200 and record["sensitivity"] == "unscanned"
