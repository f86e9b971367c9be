"""Street-address grammar and Latin-name rules added to raise English recall."""

import pytest

from ownlight.privacy.detector import Detector
from ownlight.privacy.recognizers.addresses import AddressRecognizer
from ownlight.privacy.recognizers.names_latin import LatinNameRecognizer


@pytest.fixture(scope="module")
def detector():
    return Detector.default()


def _found(detector, text):
    return {(s.type, text[s.start : s.end]) for s in detector.scan(text)}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("send it to USNS Vestergaard\nFPO AA 08331 please", "USNS Vestergaard\nFPO AA 08331"),
        ("PSC 1083, Box 3672\nAPO AP 10176", "PSC 1083, Box 3672\nAPO AP 10176"),
        ("Unit 3906 Box 2810\nDPO AE 08750", "Unit 3906 Box 2810\nDPO AE 08750"),
        ("Pedestrians must enter on Gesäusestrasse 6 first", "Gesäusestrasse 6"),
        ("I'd like a taxi to Via Scala 50. Thanks", "Via Scala 50"),
        ("update it to 96 ul. Posejdona 90", "96 ul. Posejdona 90"),
    ],
)
def test_address_forms(detector, text, value):
    assert ("STREET_ADDRESS", value) in _found(detector, text)


def test_address_block_stops_before_phone_line():
    text = "48 Main Street\n Apt. 932\n Springfield\n Antigua and Barbuda 33716\n25 833387-Office"
    spans = list(AddressRecognizer().find(text))
    assert spans and text[spans[0].start : spans[0].end].endswith("Antigua and Barbuda 33716")


def test_address_block_beats_name_inside_it(detector):
    text = "75 14 Rue Aghlab\n Suite 601\n Cite Bain Maure Ben Azouz\n Panama 392"
    kinds = {s.type for s in detector.scan(text)}
    assert kinds == {"STREET_ADDRESS"}


@pytest.mark.parametrize("name", ["Thomas Popović", "James Brandt", "Ross Rutkowski"])
def test_names_ending_in_s(name):
    text = f"{name} will be talking in the conference"
    spans, _ = LatinNameRecognizer().analyze(text)
    assert [text[s.start : s.end] for s in spans] == [name]


def test_possessive_ends_a_name():
    text = "they sang verses from Kevin Lamovec's Cautionary Tales."
    spans, _ = LatinNameRecognizer().analyze(text)
    assert [text[s.start : s.end] for s in spans] == ["Kevin Lamovec's"]


def test_known_surname_mid_sentence():
    text = "Our 3 founders: Novosel, Robinson and Holmes."
    spans, _ = LatinNameRecognizer().analyze(text)
    assert {text[s.start : s.end] for s in spans} >= {"Novosel", "Holmes"}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("office 001-748-088-2851x818 fax", "001-748-088-2851x818"),
        ("call +1-743-438-6774x62406", "+1-743-438-6774x62406"),
    ],
)
def test_north_american_layout(detector, text, value):
    assert ("PHONE_NUMBER", value) in _found(detector, text)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("amex 3782 822463 10005 ok", "3782 822463 10005"),
        ("diners 3056 930902 5904 ok", "3056 930902 5904"),
        ("visa 4111-1111-1111-1111 ok", "4111-1111-1111-1111"),
    ],
)
def test_card_groupings(detector, text, value):
    assert ("CREDIT_CARD", value) in _found(detector, text)


def test_card_failing_luhn_is_not_a_card(detector):
    assert not any(s.type == "CREDIT_CARD" for s in detector.scan("amex 3782 822463 10006"))


def test_street_then_number_not_split(detector):
    text = "Pedestrians must enter on Corellistraat 178 St. the first months"
    assert ("STREET_ADDRESS", "Corellistraat 178") in _found(detector, text)
