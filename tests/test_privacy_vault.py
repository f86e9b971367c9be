import json
import threading

import pytest
from click.testing import CliRunner

from ownlight.config.settings import PrivacySettings
from ownlight.privacy.detector import Detector
from ownlight.privacy.levels import LevelPolicy
from ownlight.privacy.privacy_cli import privacy_group
from ownlight.privacy.spans import Span
from ownlight.privacy.vault import Blocked, StreamRestorer, Vault

TEXT = (
    "Call Donald van der Voet at +1 415 555 2671 or mail jane.doe@example.com; "
    "Donald van der Voet agrees."
)


@pytest.fixture(scope="module")
def detector():
    return Detector.default()


def test_levels():
    policy = LevelPolicy.from_settings(PrivacySettings(
        level_rules=[{"level": "restricted", "types": ["PERSON"], "min_count": 3}]))
    span = lambda t: Span(0, 1, t, 1.0, "test")  # noqa: E731
    assert policy.level([]) == "public"
    assert policy.level([span("IP_ADDRESS")]) == "internal"
    assert policy.level([span("PERSON")]) == "confidential"
    assert policy.level([span("PERSON")] * 3) == "restricted"
    assert policy.level([span("SECRET")]) == "restricted"
    assert policy.level([span("CUSTOMER")]) == "confidential"
    with pytest.raises(ValueError):
        LevelPolicy.from_settings(PrivacySettings(levels={"secret": ["X"]}))


def test_round_trip_plain(detector):
    vault = Vault(detector)
    masked = vault.pseudonymize(TEXT)
    assert "Donald" not in masked and "jane.doe" not in masked and "555" not in masked
    assert masked.count("<PERSON_1>") == 2
    answer = f"Sure. {masked}"
    assert vault.restore(answer) == f"Sure. {TEXT}"
    assert "Donald" not in repr(vault)


def test_round_trip_stream_every_split(detector):
    vault = Vault(detector)
    masked = vault.pseudonymize(TEXT)
    for i in range(len(masked) + 1):
        for j in range(i, len(masked) + 1):
            r = StreamRestorer(vault)
            parts = [r.feed(masked[:i]), r.feed(masked[i:j]), r.feed(masked[j:]), r.flush()]
            assert "".join(parts) == TEXT
            for p in parts:
                assert "<PERSON" not in p and "<PHONE" not in p


def test_stream_holds_back_only_placeholder_prefixes(detector):
    vault = Vault(detector)
    vault.pseudonymize("Call Donald van der Voet")
    r = StreamRestorer(vault)
    assert r.feed("a < b and <PER") == "a < b and "
    assert r.feed("SON_1> ok <x") == "Donald van der Voet ok <x"
    assert r.flush() == ""


def test_mask_and_block(detector):
    vault = Vault(detector, actions={"EMAIL_ADDRESS": "mask", "SECRET": "block"})
    masked = vault.pseudonymize("mail jane.doe@example.com")
    assert masked == "mail <EMAIL_ADDRESS>"
    assert vault.restore(masked) == masked
    with pytest.raises(Blocked) as exc:
        vault.pseudonymize("key sk-proj-abcdefghijklmnopqrstuvwx1234")
    assert exc.value.status == 400 and "sk-proj" not in exc.value.message


def test_concurrent_vaults_never_mix(detector):
    errors = []

    def worker(n: int) -> None:
        vault = Vault(detector)
        text = f"mail user{n}@example.com and user{n}x@example.com"
        for _ in range(50):
            masked = vault.pseudonymize(text)
            if masked != "mail <EMAIL_ADDRESS_1> and <EMAIL_ADDRESS_2>" or \
                    vault.restore(masked) != text:
                errors.append(n)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_cli_scan_and_redact():
    runner = CliRunner()
    rows = [{"id": "a", "text": "ssn 555-05-5515"}, {"id": "b", "text": "hello"}]
    result = runner.invoke(privacy_group, ["scan"], input="\n".join(json.dumps(r) for r in rows))
    assert result.exit_code == 0, result.output
    out = [json.loads(line) for line in result.output.splitlines()]
    assert out[0]["id"] == "a" and out[0]["level"] == "restricted"
    assert out[0]["spans"] == [{"start": 4, "end": 15, "type": "US_SSN", "score": 0.9}]
    assert out[1] == {"id": "b", "spans": [], "level": "public"}
    result = runner.invoke(privacy_group, ["redact", "mail jane.doe@example.com"])
    assert result.output.strip() == "mail <EMAIL_ADDRESS_1>"
    bad = runner.invoke(privacy_group, ["scan"], input="not json\n")
    assert bad.exit_code != 0 and "line 1" in bad.output
