"""Generate eval/pii_multilingual_dev.jsonl: zh, ja, ru texts with names, phones, ids with
valid checksums and secrets, plus negatives full of order numbers, dates, versions, prices.

Deterministic (seeded). Rows: {"id", "lang", "text", "spans": [{start, end, type, value}]}.
Note: names come from the same kinds of lists the recognizers use, so this is a dev set
for rules, not a blind test. Run: python bench/make_multilingual_pii.py
"""

from __future__ import annotations

import json
import random
import string
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "eval" / "pii_multilingual_dev.jsonl"
DATA = ROOT / "src" / "ownlight" / "data" / "privacy"
rng = random.Random(4)


def lines(name: str) -> list[str]:
    return sorted((DATA / name).read_text(encoding="utf-8").split())


ZH_SUR = [s for s in lines("zh_surnames.txt") if len(s) == 1][:120]
ZH_GIVEN = list("伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华建国玉兰志红")
JA_SUR = lines("ja_surnames_faker.txt")
JA_GIVEN = ["太郎", "花子", "一郎", "美咲", "翔太", "陽子", "健", "直樹", "さくら", "ゆい"]
RU_FIRST_M = ["Иван", "Алексей", "Сергей", "Дмитрий", "Михаил", "Андрей", "Николай", "Павел"]
RU_FIRST_F = ["Анна", "Мария", "Елена", "Ольга", "Татьяна", "Наталья", "Ирина", "Светлана"]
RU_LAST = ["Иванов", "Смирнов", "Кузнецов", "Попов", "Васильев", "Соколов", "Морозов", "Волков"]
RU_PAT_M = ["Иванович", "Петрович", "Сергеевич", "Алексеевич", "Николаевич"]
RU_PAT_F = ["Ивановна", "Петровна", "Сергеевна", "Алексеевна", "Николаевна"]


def cn_id() -> str:
    body = f"{rng.choice(['110105', '310101', '440301', '510104'])}{rng.randint(1950, 2005)}" \
           f"{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}{rng.randint(0, 999):03d}"
    w = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
    return body + "10X98765432"[sum(int(c) * x for c, x in zip(body, w, strict=True)) % 11]


def my_number() -> str:
    body = [rng.randint(0, 9) for _ in range(11)]
    total = sum(body[11 - n] * (n + 1 if n <= 6 else n - 5) for n in range(1, 12))
    check = 0 if total % 11 <= 1 else 11 - total % 11
    return "".join(map(str, body)) + str(check)


def inn12() -> str:
    d = [rng.randint(0, 9) for _ in range(10)]
    d.append(sum(x * w for x, w in zip(d, (7, 2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True)) % 11 % 10)
    d.append(sum(x * w for x, w in zip(d, (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8), strict=True))
             % 11 % 10)
    return "".join(map(str, d))


def snils() -> str:
    d = [rng.randint(0, 9) for _ in range(9)]
    t = sum(x * (9 - i) for i, x in enumerate(d))
    while t > 101:
        t %= 101
    c = 0 if t in (100, 101) else t
    s = "".join(map(str, d))
    return f"{s[:3]}-{s[3:6]}-{s[6:]} {c:02d}"


def secret() -> str:
    alnum = string.ascii_letters + string.digits
    return rng.choice([
        "sk-proj-" + "".join(rng.choices(alnum, k=32)),
        "ghp_" + "".join(rng.choices(alnum, k=36)),
        "AKIA" + "".join(rng.choices(string.ascii_uppercase + string.digits, k=16)),
    ])


def zh_name() -> str:
    return rng.choice(ZH_SUR) + "".join(rng.choices(ZH_GIVEN, k=rng.choice([1, 2])))


def ja_name() -> str:
    return rng.choice(JA_SUR) + rng.choice(["", *JA_GIVEN])


def ru_name() -> str:
    if rng.random() < 0.5:
        return f"{rng.choice(RU_FIRST_M)} {rng.choice(RU_PAT_M)} {rng.choice(RU_LAST)}"
    return f"{rng.choice(RU_FIRST_F)} {rng.choice(RU_LAST)}а"


VALUES = {
    "zh_name": ("PERSON", zh_name), "ja_name": ("PERSON", ja_name),
    "ru_name": ("PERSON", ru_name),
    "cn_mobile": ("PHONE_NUMBER", lambda: f"1{rng.choice('3589')}{rng.randint(0, 9)}"
                  f"{rng.randint(10000000, 99999999)}"),
    "jp_phone": ("PHONE_NUMBER",
                 lambda: f"090-{rng.randint(1000, 9999)}-{rng.randint(1000, 9999)}"),
    "ru_phone": ("PHONE_NUMBER", lambda: f"+7 (9{rng.randint(10, 99)}) {rng.randint(100, 999)}-"
                 f"{rng.randint(10, 99)}-{rng.randint(10, 99)}"),
    "cn_id": ("NATIONAL_ID", cn_id), "my_number": ("NATIONAL_ID", my_number),
    "inn": ("NATIONAL_ID", inn12), "snils": ("NATIONAL_ID", snils), "secret": ("SECRET", secret),
    "email": ("EMAIL_ADDRESS",
              lambda: f"user{rng.randint(1, 999)}@example.{rng.choice(['cn', 'jp', 'ru'])}"),
    "cn_passport": ("PASSPORT", lambda: f"E{rng.randint(10000000, 99999999)}"),
}
TEMPLATES = {
    "zh": [
        "请联系{zh_name}先生，手机{cn_mobile}，邮箱{email}。",
        "客户{zh_name}的身份证号是{cn_id}，请核实。",
        "我叫{zh_name}，电话{cn_mobile}，身份证{cn_id}。",
        "{zh_name}女士的护照号码是{cn_passport}，下周出发。",
        "服务器的API密钥是{secret}，不要外传。",
        "联系人：{zh_name}，手机：{cn_mobile}",
    ],
    "ja": [
        "{ja_name}さんの電話番号は{jp_phone}です。",
        "{ja_name}様のマイナンバーは{my_number}です。",
        "担当：{ja_name}　メール：{email}",
        "APIキー {secret} を設定してください。{ja_name}さんより",
        "{ja_name}先生に{jp_phone}まで連絡してください。",
    ],
    "ru": [
        "Позвоните {ru_name} по телефону {ru_phone}.",
        "Клиент {ru_name}, ИНН {inn}, СНИЛС {snils}.",
        "Уважаемый {ru_name}, ваш токен {secret} истекает.",
        "Письмо от {ru_name}: пишите на {email}.",
        "ФИО: {ru_name}, тел. {ru_phone}",
    ],
}
NEGATIVES = {
    "zh": ["订单号 {n13}，金额 ¥{price}，下单时间 2024-03-15 14:30。",
           "版本 v{ver} 已发布，共修复 {k} 个问题，编号 {n10}。",
           "周末高兴地去黄金海岸，门票 ¥{price}，2023年11月25日。"],
    "ja": ["注文番号 {n12}、合計 {price}円、2024年3月15日発送予定です。",
           "バージョン {ver} をリリースしました。ロット {n10}。",
           "明日の会議は 10:30 から 3 階で行います。請求書 {n13}。"],
    "ru": ["Заказ № {n10} на сумму {price} ₽ от 15.03.2024 отгружен.",
           "Версия {ver} вышла; артикул {n12}, партия {k}.",
           "В Москве прошла встреча, итого {price} руб., счёт {n13}."],
}


def fill(template: str) -> tuple[str, list[dict]]:
    text, spans, pos = "", [], 0
    import re

    for m in re.finditer(r"\{(\w+)\}", template):
        text += template[pos : m.start()]
        key = m.group(1)
        if key in VALUES:
            type_, make = VALUES[key]
            value = make()
            spans.append({"start": len(text), "end": len(text) + len(value), "type": type_,
                          "value": value})
        else:
            value = {
                "n13": str(rng.randint(10**12, 10**13 - 1)),
                "n12": str(rng.randint(10**11, 10**12 - 1)),
                "n10": str(rng.randint(10**9, 10**10 - 1)),
                "price": f"{rng.randint(1, 99)},{rng.randint(100, 999)}",
                "ver": f"{rng.randint(1, 9)}.{rng.randint(0, 20)}.{rng.randint(0, 9)}",
                "k": str(rng.randint(2, 99)),
            }[key]
        text += value
        pos = m.end()
    return text + template[pos:], spans


def main() -> None:
    OUT.parent.mkdir(exist_ok=True)
    rows = []
    for lang in ("zh", "ja", "ru"):
        for i in range(120):
            text, spans = fill(rng.choice(TEMPLATES[lang]))
            rows.append({"id": f"ml-{lang}-{i:03d}", "lang": lang, "text": text, "spans": spans})
        for i in range(60):
            text, spans = fill(rng.choice(NEGATIVES[lang]))
            rows.append({"id": f"ml-{lang}-neg-{i:03d}", "lang": lang, "text": text, "spans": []})
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    print(OUT, len(rows))


if __name__ == "__main__":
    main()
