"""Structured identifiers, validated by checksum or range where one exists."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ownlight.privacy.recognizers import checksums
from ownlight.privacy.recognizers.context import NOT_PERSONAL, before, words_pattern
from ownlight.privacy.spans import Span

# ASCII-only boundaries: CJK letters count as \w in Python, so \b fails next to them.
_L = r"(?<![A-Za-z0-9])"
_R = r"(?![A-Za-z0-9])"
_ND = r"(?<!\d)(?<!\d[ -])"  # not preceded by a digit group
_NDR = r"(?![ -]?\d)"


@dataclass(frozen=True)
class _Rule:
    type: str
    pattern: re.Pattern[str]
    validate: Callable[[str], bool]
    score: float
    context: re.Pattern[str] | None = None  # required unless ``score_without`` is set
    score_without: float | None = None  # score when no context word is present


_EMAIL = re.compile(
    r"(?<![A-Za-z0-9_.+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
    r"\.[A-Za-z]{2,24}(?![A-Za-z])"
)

_ID_CN = words_pattern(["身份证", "身份證", "证件号", "id card", "resident id", "公民身份号码"])
_ID_JP = words_pattern(["マイナンバー", "個人番号", "my number", "mynumber"])
_ID_INN = words_pattern(["инн", "inn", "налогоплательщик", "taxpayer"])
_ID_SNILS = words_pattern(["снилс", "snils", "страхов"])
_ID_SSN = words_pattern(["ssn", "social security", "social sec"])
_ID_PASSPORT = words_pattern(["passport", "паспорт", "护照", "護照", "旅券", "パスポート"])
_ID_DL = words_pattern(["driver's license", "drivers license", "driver license", "driving licence",
                        "driver's licence", "license number", "licence number", "dl#", "dl no"])


def _always(_: str) -> bool:
    return True


# Addresses with ASCII-only edges, so one written straight against CJK text
# (服务器104.202.222.20的) is found; a preceding ":" is allowed for "IP:10.0.0.5", and "IP"
# glued in front ("IP10.0.0.5"). Letters after it are allowed here (主机10.66.8.21CPU) and
# judged in ``_ipv4_span``. The text is searched with full-width digits and dots folded
# to ASCII (``_FOLD``, one character for one, so offsets hold): １９２．１６８．０．１; an
# ideographic full stop an IME typed between two digits is a dot too (192。168。1。1), one
# that ends a sentence before a number is not ("完成。10.0.0.5").
_IPV4 = re.compile(r"(?:(?<![A-Za-z0-9_.])|(?<=[Ii][Pp]))(?:\d{1,3}\.){3}\d{1,3}(?!\d|_|\.\d)")
_FOLD = str.maketrans({**{chr(0xFF10 + i): str(i) for i in range(10)}, "\uff0e": "."})
_IME_DOT = re.compile(r"(?<=\d)[\u3002\uff61](?=\d)")
# Words that make a dotted quad an address whatever its shape (checked 32 characters back).
_IP_WORDS = words_pattern([
    "ip", "host", "server", "address", "addr", "gateway", "dns", "router", "proxy", "subnet",
    "ping", "ssh", "nat", "vpn", "firewall", "traceroute",
    "resolver", "nameserver", "name server", "forwarder",
    "地址", "服务器", "伺服器", "主机", "网关", "路由", "代理", "内网", "外网", "解析",
    "サーバ", "アドレス", "ホスト", "ゲートウェイ", "ルーター", "プロキシ",
    "リゾルバ", "ネームサーバ",
    "сервер", "адрес", "хост", "шлюз", "прокси", "днс", "пинг", "пропинг",
    "резолвер",
])
# Words that name a connection rather than a machine ("from", "доступ"): an address unless
# the quad reads as a version by its own words or by a version beside it on its line
# ("the outline jumps from 4.2.1.9 to 4.2.1.11 — clause 4.2.1.10 is missing").
_WEAK_IP_WORDS = words_pattern([
    "from", "client", "peer", "remote", "connect", "来自", "访问", "接続", "アクセス",
    "подключ", "доступ",
])
#: how far after a dotted quad an address word still names it ("8.8.8.8にpingは通る")
_IP_WORD_AFTER = 12
# Words that make one a version, section or OID (checked 16 characters back).
_NUMBERING_WORDS = words_pattern([
    "version", "ver.", "release", "section", "sec.", "chapter", "clause", "oid", "§",
    "firmware", "kernel", "bios", "uefi", "sdk", "item", "appendix", "annex", "paragraph",
    "版本", "章节", "条款", "固件", "内核", "バージョン", "版", "ファームウェア", "カーネル",
    "верси", "пункт", "раздел", "глава", "п.", "прошивк", "ядр", "подпункт", "релиз",
    "редакци", "конфигурац",
])
#: how far back a number's word still names it, within its clause ("Kernel panicked on 5.15...")
_NUMBERING_WORD_BEFORE = 24
# A number's own ordinal or unit glued to it: 第8.1.4.3条, 第3.2.1.5节, 4.2.1.3項, п. 4.2.1.3.
_ORDINAL_BEFORE = re.compile(r"(?:第|§|пп?\.)\s*$")
_ORDINAL_AFTER = re.compile(r"\s*(?:条|款|项|項|節|节|章)")
# Moving software to a number: "upgraded to", "bumped the plugin to", "pin setuptools to",
# "更新到了HarmonyOS", "обновили до", "перевели с", a second thing moved in the same breath
# ("bumped openssl to 3.0.13 and the plugin to"); and in Japanese after it: "2.4.10.3へ更新".
# Words between the verb and the number may name the thing, not a machine: an address word
# among them ("upgraded the server to 10.0.0.5") makes the quad an address.
_MOVED_TO = re.compile(
    r"(?:(?<![A-Za-z])(?:up(?:grad|dat)\w*|bump\w*|pin(?:ned|s)?|downgrad\w*|roll(?:ed)?\s*back)"
    r"(?:\s+[\w.-]+){0,2}\s+(?:to|from)(?:\s+[\w.-]+,?\s+and(?:\s+[\w.-]+){0,2}\s+to)?"
    r"|(?:升级|更新|降级|回滚|回退|刷)(?:到|至|为|成)了?(?:\s*[A-Za-z][\w -]{0,20})?"
    r"|(?<![А-Яа-яЁё])(?:обнов\w*|апгрейд\w*|откат\w*|перевел\w*|перешл\w*|перешёл|закрепил\w*)"
    r"(?:\s+[\w.-]+){0,2}\s+(?:до|на|с))\s*$", re.I)
_MOVED_AFTER = re.compile(r"\s*(?:に|へ)(?:更新|アップデート|アップグレード|上げ|バージョンアップ|"
                          r"ダウングレード|下げ)")
# The rest of a number's word and what may stand between it and the number ("версии 4.8").
_WORD_TAIL = re.compile(r"\w*[\s:：-]*")
# Private ranges a version never starts with: an address whatever words stand near.
_PRIVATE = re.compile(r"(?:192\.168|172\.(?:1[6-9]|2\d|3[01])|169\.254)\.")
# Where an address word after the quad stops naming it: the end of its clause.
_CLAUSE_END = re.compile(r"[,，、;；。!?！？]")
# Dotted numbers beside a quad on its line: a version among them makes a sibling a version.
_DOTTED = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,4}){2,3}(?![\d]|\.\d)")
# Public resolvers people name without a word for them ("пропингуй 8.8.8.8", "从9.9.9.9过来的
#流量"): a quad of single digits that is one of these is an address, not a version.
_WELL_KNOWN = frozenset({"1.1.1.1", "1.0.0.1", "8.8.8.8", "8.8.4.4", "9.9.9.9"})
# ...but one that starts a line is an outline's number ("1.1.1.1 总体目标").
_LINE_START = re.compile(r"(?:^|\n)[ \t]*$")
# A build number right after its word ("Build 1.0.0.128", "构建号10.4.1.2", "Сборка 1.0.0.128");
# a build machine is an address ("Build agent 10.20.30.40", "构建机（10.6.7.8）").
_BUILD_NUMBER = re.compile(r"(?<![A-Za-z])(?:build(?:\s*(?:no\.?|number|#))?|构建号|编译号|"
                           r"ビルド(?:番号)?|сборк[аиуео]?)[\s:：#№]*$", re.I)
_SUFFIX = re.compile(r"-?(?:rc|alpha|beta|dev|post|final)|[A-Za-z]", re.I)
# The far end of a range whose near end is a dotted number ("2.4.10.3から2.4.11.0に",
# "from 4.18.0.2 to 4.19.2.1", "с 3.0.1.4 на 3.0.2.0"): the two are read alike, so the far
# end of a version range is a version even when the version word is out of sight; an address
# range ("10.0.0.1-10.0.0.9") stays one, its near end being an address.
_RANGE_FROM = re.compile(r"(?<![\d.])(\d{1,3}(?:\.\d{1,4}){2,3})[ \t]*"
                         r"(?:から|より|到|至|->|=>|→|[-–~～〜]|to|до|на)[ \t]*$", re.I)


def _fold_digits(text: str) -> str:
    """Full-width digits and dots, and IME full stops between digits, as ASCII; same length."""
    return _IME_DOT.sub(".", text.translate(_FOLD))


def _ipv4_span(text: str, m: re.Match[str], siblings: bool = True) -> Span | None:
    """A dotted quad that ``ipaddress`` accepts, judged by its shape and the words near it.

    An address word before it (IP, server, 地址, サーバ, адрес...), or right after it in the
    same clause, makes it an address, unless a verb moving software to a number stands
    nearer ("прошивку роутера обновили до 3.10.2.18"). A private range (192.168/16,
    172.16/12, 169.254/16) is an address whatever words stand near. A version, section or
    firmware word before it, an ordinal glued to it (第8.1.4.3条), a build number's word,
    letters glued after it (4.3.2.1-rc) or a move of software to it make it a version. A
    public resolver's quad (8.8.8.8) is an address; a connection word ("from", "доступ")
    makes one too, unless a version beside it on its line shares its first two numbers
    (4.2.1.9 beside clause 4.2.1.10); so does any other quad but one of single digits
    (1.2.3.4, more often a version or a section number). 0.0.0.0 ("every interface") is
    refused by ``_ip``: it names no one. ``siblings=False`` judges the quad by itself alone
    (as a range's near end is judged).
    """
    start, end = m.span()
    address = Span(start, end, "IP_ADDRESS", 0.9, "identifiers")
    moved = _MOVED_TO.search(text, max(0, start - 64), start)
    word = _IP_WORDS.search(text, moved.start() if moved else max(0, start - 32), start)
    if not _numbered_here(text, m) and (word is not None or _address_word_after(text, end)):
        return address
    if _PRIVATE.match(m.group()):
        return address
    if moved is not None or _reads_as_version(text, m):
        return None
    numbered = _numbering_word_before(text, start)
    if m.group() in _WELL_KNOWN and not numbered and not _LINE_START.search(text, 0, start):
        return address
    beside_a_version = siblings and _beside_a_version(text, m)
    if before(text, start, _WEAK_IP_WORDS, 32):
        return None if beside_a_version else address
    if all(len(part) == 1 for part in m.group().split(".")) or beside_a_version:
        return None
    return address


def _numbered_here(text: str, m: re.Match[str]) -> bool:
    """A number's own word or ordinal glued to it, nearer than any address word can be:
    "В версии 4.8.0.2 адрес...", "版本3.10.2.18", "第3.1.2.1項に記載の固定アドレス"."""
    start, end = m.span()
    words = list(_NUMBERING_WORDS.finditer(text, max(0, start - 12), start))
    return bool((words and _WORD_TAIL.fullmatch(text, words[-1].end(), start))
                or _ORDINAL_BEFORE.search(text, max(0, start - 4), start)
                or _ORDINAL_AFTER.match(text, end))


def _address_word_after(text: str, end: int) -> bool:
    """An address word within ``_IP_WORD_AFTER`` characters after, in the same clause
    ("8.8.8.8にpingは通る"; not "固件版本3.10.2.18，管理IP：...")."""
    after = text[end:end + _IP_WORD_AFTER]
    stop = _CLAUSE_END.search(after)
    return _IP_WORDS.search(after[: stop.start()] if stop else after) is not None


def _reads_as_version(text: str, m: re.Match[str]) -> bool:
    """Words that number software or text stand by the quad (not counting an address word
    or a public resolver's quad, which ``_ipv4_span`` weighs first)."""
    start, end = m.span()
    return bool(_numbering_word_before(text, start)
                or _ORDINAL_BEFORE.search(text, max(0, start - 4), start)
                or _ORDINAL_AFTER.match(text, end) or _MOVED_AFTER.match(text, end)
                or _MOVED_TO.search(text, max(0, start - 64), start)
                or _SUFFIX.match(text, end)
                or _BUILD_NUMBER.search(text, max(0, start - 20), start)
                or _after_a_version(text, start) or _before_a_move(text, m))


def _numbering_word_before(text: str, start: int) -> bool:
    """A version, section or firmware word in the quad's clause, ``_NUMBERING_WORD_BEFORE``
    characters back at most ("Kernel panicked on 5.15.0.105")."""
    behind = text[max(0, start - _NUMBERING_WORD_BEFORE):start]
    stops = list(_CLAUSE_END.finditer(behind))
    return _NUMBERING_WORDS.search(behind[stops[-1].end() if stops else 0:]) is not None


def _before_a_move(text: str, m: re.Match[str]) -> bool:
    """The near end of a move of software: "从1.0.0.1更新到1.0.0.2", "с 3.0.1.4 обновили до
    3.0.2.0" (the far end, after its verb, shares the quad's first two numbers)."""
    far = _DOTTED.search(text, m.end(), min(len(text), m.end() + 24))
    return bool(far is not None and far.group().split(".")[:2] == m.group().split(".")[:2]
                and _MOVED_TO.search(text, m.end(), far.start()))


def _beside_a_version(text: str, m: re.Match[str]) -> bool:
    """Another dotted number on the quad's line with the same first two numbers that reads
    as a version: by its words, by a part no address has (8.3.23.1865), or by being a quad
    of single digits with no address word before it."""
    line_start = text.rfind("\n", 0, m.start()) + 1
    line_end = text.find("\n", m.end())
    line_end = len(text) if line_end < 0 else line_end
    head = m.group().split(".")[:2]
    for other in _DOTTED.finditer(text, line_start, line_end):
        parts = other.group().split(".")
        if other.start() == m.start() or parts[:2] != head:
            continue
        if (any(int(p) > 255 for p in parts) or len(parts) == 3
                or _reads_as_version(text, other)):
            return True
        if all(len(p) == 1 for p in parts) and not before(text, other.start(), _IP_WORDS, 32):
            return True
    return False


def _after_a_version(text: str, start: int) -> bool:
    """Whether the quad at ``start`` ends a range whose near end is a version of the same
    line: a quad judged no address with the same first number, or a dotted number of three
    parts (two are as often a decimal) with the same first two. "Deploy 1.4.2 to
    10.0.0.5" and "выкатили 2.4.10.3 на 10.0.0.5" name a host: their numbers differ."""
    near = _RANGE_FROM.search(text, max(0, start - 24), start)
    if near is None:
        return False
    far, version = text[start:].split(".", 2), near.group(1).split(".")
    if len(version) == 3:
        return version[:2] == far[:2]
    quad = _IPV4.match(text, near.start(1))
    return (version[0] == far[0] and quad is not None and quad.end() == near.end(1)
            and _ipv4_span(text, quad, siblings=False) is None)


# Every RFC 5952 / RFC 4291 form: full, "::"-compressed, IPv4-embedded (::ffff:192.0.2.1)
# and with a zone (fe80::1%eth0). The pattern only finds candidates; ``ipaddress`` decides.
_IPV6 = re.compile(
    r"(?<![A-Za-z0-9_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}"
    r"(?:(?:\d{1,3}\.){3}\d{1,3}|[0-9A-Fa-f]{1,4})?(?:%[A-Za-z0-9_.\-]+)?"
    r"(?![A-Za-z0-9_:]|\.\d)")


def _ipv6(value: str) -> bool:
    return any(c in "0123456789abcdefABCDEF" for c in value.split("%")[0]) and _ip(value)


def _ip(value: str) -> bool:
    try:
        ip = ipaddress.ip_address(value)
    except ValueError:
        return False
    return ip.version == 6 or not value.startswith("0")


RULES: tuple[_Rule, ...] = (
    _Rule("EMAIL_ADDRESS", _EMAIL, _always, 0.95, score_without=0.95),
    # 12-19 digits in groups of 3-6 (Amex 4-6-5, Diners 4-6-4, 4x4, 4x4+3): an issuer's
    # prefix and length, and Luhn. Digits in one run need a card word too (``_card``).
    _Rule("CREDIT_CARD", re.compile(_ND + r"[1-9]\d{3}(?:[ -]?\d{3,6}){2,4}" + _NDR),
          checksums.payment_card, 0.95, score_without=0.95),
    _Rule("IBAN_CODE", re.compile(_L + r"[A-Za-z]{2}\d{2}(?:[A-Za-z0-9]{10,30}|(?: [A-Za-z0-9]{4})"
                                  r"{2,7}(?: [A-Za-z0-9]{1,3})?)" + _R), checksums.iban,
          0.95, score_without=0.95),
    _Rule("IP_ADDRESS", _IPV4, _ip, 0.9, score_without=0.9),
    _Rule("IP_ADDRESS", _IPV6, _ipv6, 0.9, score_without=0.9),
    _Rule("NATIONAL_ID", re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx]" + _R),
          checksums.cn_resident_id, 0.98, _ID_CN, 0.95),
    _Rule("NATIONAL_ID", re.compile(_ND + r"\d{4}[ -]?\d{4}[ -]?\d{4}" + _NDR),
          lambda v: checksums.my_number(checksums.digits(v)), 0.95, _ID_JP),
    _Rule("NATIONAL_ID", re.compile(_ND + r"\d{12}" + _NDR), checksums.ru_inn, 0.95, _ID_INN, 0.6),
    _Rule("NATIONAL_ID", re.compile(_ND + r"\d{10}" + _NDR), checksums.ru_inn, 0.95, _ID_INN),
    _Rule("NATIONAL_ID", re.compile(_ND + r"\d{3}-\d{3}-\d{3}[ -]\d{2}" + _NDR), checksums.ru_snils,
          0.95, _ID_SNILS, 0.9),
    _Rule("NATIONAL_ID", re.compile(_ND + r"\d{11}" + _NDR), checksums.ru_snils, 0.95, _ID_SNILS),
    _Rule("US_SSN", re.compile(_ND + r"\d{3}([- ])\d{2}\1\d{4}" + _NDR), checksums.us_ssn,
          0.9, _ID_SSN, 0.85),
    _Rule("US_SSN", re.compile(_ND + r"\d{9}" + _NDR), checksums.us_ssn, 0.85, _ID_SSN),
    _Rule("PASSPORT", re.compile(_L + r"(?:[A-Za-z]{1,2}\d{6,9}|\d{2} ?\d{2} ?\d{6}|\d{9})" + _R),
          _always, 0.85, _ID_PASSPORT),
    _Rule("US_DRIVER_LICENSE", re.compile(_L + r"[A-Za-z]{0,2}\d{5,14}[A-Za-z]?" + _R),
          _always, 0.85, _ID_DL),
)


_GUARDED = frozenset({"NATIONAL_ID", "IP_ADDRESS"})

# Words that make a run of digits a card number. In a key too: {"card_number": ...}.
CARD_WORDS = words_pattern([
    "card", "credit", "debit", "visa", "mastercard", "master card", "amex",
    "american express", "discover", "jcb", "diners", "maestro", "unionpay", "union pay",
    "cc", "cc#", "ccn", "pan", "payment", "信用卡", "银行卡", "借记卡", "卡号", "クレジット",
    "カード", "карт",
])
# A run of digits written straight after ``"key":``, ``key=``, ``_`` or a quote, or
# followed by a quote, is a value in JSON or code: an id, a timestamp, a count.
_CODE_BEFORE = re.compile(r"(?:[\"'=_#]|[\w\"]:\s?)$")
_CODE_AFTER = re.compile(r"[\"'_]")
# Mailboxes that answer no one: an address, but no person's.
_NO_PERSON = re.compile(r"(?:no[-_.]?reply|do[-_.]?not[-_.]?reply|mailer-daemon|postmaster)@",
                        re.I)


class IdentifierRecognizer:
    """E-mail, cards, IBAN, IP, national ids, passports and driver licences."""

    name = "identifiers"

    def find(self, text: str) -> Iterator[Span]:
        has_digit = any(c.isdigit() for c in text)
        for rule in RULES:
            if not has_digit and rule.type != "EMAIL_ADDRESS":
                continue
            if rule.type == "EMAIL_ADDRESS" and "@" not in text:
                continue
            folded = _fold_digits(text) if rule.pattern is _IPV4 else text
            for m in rule.pattern.finditer(folded):
                value = m.group()
                if not rule.validate(value):
                    continue
                if rule.type == "CREDIT_CARD":
                    card = _card(text, m)
                    if card is not None:
                        yield card
                    continue
                if rule.type == "EMAIL_ADDRESS" and _NO_PERSON.match(value):
                    continue
                score = rule.score
                if rule.pattern is _IPV4:
                    ip = _ipv4_span(folded, m)
                    if ip is not None:
                        yield ip
                    continue
                if rule.type == "IP_ADDRESS" and before(text, m.start(), NOT_PERSONAL, 24):
                    continue
                if rule.context is not None and not before(text, m.start(), rule.context, 48):
                    if rule.score_without is None:
                        continue
                    score = rule.score_without
                    if rule.type in _GUARDED and before(text, m.start(), NOT_PERSONAL, 24):
                        continue
                yield Span(m.start(), m.end(), rule.type, score, self.name)


def _card(text: str, m: re.Match[str]) -> Span | None:
    """A number that passed the issuer, length and Luhn checks, judged by how it is written.

    Grouped (4539 2898 6016 9979) it is a card. In one run of digits, a card word near it
    makes it one; a run written as a value in JSON or code (``"turn_started_at_unix_ms":
    1796367140802``) without one is not; a run in prose is a weak guess, which the
    detector keeps in what people write and drops in the client's own text.
    """
    start, end = m.span()
    if not m.group().isdigit() or before(text, start, CARD_WORDS, 48) or (
            CARD_WORDS.search(text, end, min(len(text), end + 24))):
        return Span(start, end, "CREDIT_CARD", 0.95, "identifiers")
    if _CODE_BEFORE.search(text, max(0, start - 3), start) or _CODE_AFTER.match(text, end):
        return None
    if before(text, start, NOT_PERSONAL, 24):  # "артикул 574852706476", "order 4539..."
        return None
    return Span(start, end, "CREDIT_CARD", 0.9, "identifiers", weak=True)
