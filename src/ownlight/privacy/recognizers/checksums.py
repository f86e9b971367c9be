"""Check-digit validators: a pattern alone flags order numbers; a checksum does not."""

from __future__ import annotations

import re

_DIGITS = re.compile(r"\d")


def digits(value: str) -> str:
    return "".join(_DIGITS.findall(value))


def luhn(number: str) -> bool:
    """Payment cards (ISO/IEC 7812)."""
    if not number.isdigit() or len(number) < 12:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def iban(value: str) -> bool:
    """IBAN mod 97 (ISO 13616)."""
    s = value.replace(" ", "").upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", s):
        return False
    moved = s[4:] + s[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def cn_resident_id(value: str) -> bool:
    """Chinese resident identity card (GB 11643-1999, ISO 7064 MOD 11-2)."""
    s = value.upper()
    if not re.fullmatch(r"\d{17}[\dX]", s):
        return False
    weights = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    total = sum(int(c) * w for c, w in zip(s[:17], weights, strict=True))
    if "10X98765432"[total % 11] != s[17]:
        return False
    month, day = int(s[10:12]), int(s[12:14])
    return 1 <= month <= 12 and 1 <= day <= 31


def my_number(value: str) -> bool:
    """Japanese individual number (12 digits, check digit per the MIC ordinance)."""
    if not re.fullmatch(r"\d{12}", value):
        return False
    body = [int(c) for c in value[:11]]
    total = 0
    for n in range(1, 12):
        q = n + 1 if n <= 6 else n - 5
        total += body[11 - n] * q
    rem = total % 11
    check = 0 if rem <= 1 else 11 - rem
    return check == int(value[11])


def ru_inn(value: str) -> bool:
    """Russian taxpayer number: 10 digits (organisation) or 12 digits (person)."""
    if not value.isdigit():
        return False
    d = [int(c) for c in value]

    def check(weights: tuple[int, ...]) -> int:
        return sum(x * w for x, w in zip(d, weights, strict=False)) % 11 % 10

    if len(d) == 10:
        return check((2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[9]
    if len(d) == 12:
        return (
            check((7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[10]
            and check((3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)) == d[11]
        )
    return False


def ru_snils(value: str) -> bool:
    """Russian insurance number (СНИЛС): 11 digits, last two a checksum."""
    s = digits(value)
    if len(s) != 11:
        return False
    total = sum(int(c) * (9 - i) for i, c in enumerate(s[:9]))
    while total > 101:
        total %= 101
    check = 0 if total in (100, 101) else total
    return check == int(s[9:])


def us_ssn(value: str) -> bool:
    """US SSN: no checksum, but area/group/serial ranges rule out many numbers."""
    s = digits(value)
    if len(s) != 9:
        return False
    area, group, serial = s[:3], s[3:5], s[5:]
    if area in ("000", "666") or area.startswith("9") or group == "00" or serial == "0000":
        return False
    return len(set(s)) > 1 and s not in ("123456789", "078051120")


# Payment card issuers: (first prefix, last prefix, lengths, network), from the networks'
# published IIN ranges (ISO/IEC 7812; the table Wikipedia keeps under "Payment card
# number"). No maintained library ships this table (python-stdnum has Luhn, not issuers).
# A number a card can have starts with one of these prefixes AND has one of its lengths.
CARD_ISSUERS: tuple[tuple[str, str, tuple[int, ...], str], ...] = (
    ("4", "4", (13, 16, 19), "Visa"),
    ("51", "55", (16,), "Mastercard"),
    ("2221", "2720", (16,), "Mastercard"),
    ("34", "34", (15,), "American Express"),
    ("37", "37", (15,), "American Express"),
    ("6011", "6011", (16, 17, 18, 19), "Discover"),
    ("644", "649", (16, 17, 18, 19), "Discover"),
    ("65", "65", (16, 17, 18, 19), "Discover"),
    ("622126", "622925", (16, 17, 18, 19), "Discover"),
    ("3528", "3589", (16, 17, 18, 19), "JCB"),
    ("1800", "1800", (15,), "JCB"),
    ("2131", "2131", (15,), "JCB"),
    ("300", "305", (14, 15, 16, 17, 18, 19), "Diners Club"),
    ("309", "309", (14, 15, 16, 17, 18, 19), "Diners Club"),
    ("36", "36", (14, 15, 16, 17, 18, 19), "Diners Club"),
    ("38", "39", (14, 15, 16, 17, 18, 19), "Diners Club"),
    ("62", "62", (16, 17, 18, 19), "UnionPay"),
    ("81", "81", (16, 17, 18, 19), "UnionPay"),
    ("2200", "2204", (16, 17, 18, 19), "Mir"),
    ("5018", "5018", tuple(range(12, 20)), "Maestro"),
    ("5020", "5020", tuple(range(12, 20)), "Maestro"),
    ("5038", "5038", tuple(range(12, 20)), "Maestro"),
    ("5893", "5893", tuple(range(12, 20)), "Maestro"),
    ("56", "58", tuple(range(12, 20)), "Maestro"),
    ("6304", "6304", tuple(range(12, 20)), "Maestro"),
    ("639", "639", tuple(range(12, 20)), "Maestro"),
    ("67", "67", tuple(range(12, 20)), "Maestro"),
    ("5019", "5019", (16,), "Dankort"),
    ("60", "60", (16, 19), "RuPay"),
    ("508", "508", (16,), "RuPay"),
    ("636", "636", (16, 17, 18, 19), "InterPayment"),
    ("637", "638", (16,), "InstaPayment"),
    ("1", "1", (15,), "UATP"),
    ("9792", "9792", (16,), "Troy"),
    ("8600", "8600", (16,), "UzCard"),
    ("9860", "9860", (16,), "Humo"),
    ("9704", "9704", (16, 19), "Napas"),
)


def card_issuer(number: str) -> str | None:
    """The network whose IIN range and length fit ``number`` (digits only), or None."""
    for low, high, lengths, network in CARD_ISSUERS:
        if len(number) in lengths and low <= number[: len(low)] <= high:
            return network
    return None


def payment_card(value: str) -> bool:
    """A card number: an issuer's prefix, that issuer's length, and Luhn."""
    number = digits(value)
    return card_issuer(number) is not None and luhn(number)
