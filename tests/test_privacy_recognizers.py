import pytest

from ownlight.config.settings import PrivacySettings
from ownlight.privacy.detector import Detector
from ownlight.privacy.recognizers import checksums


@pytest.mark.parametrize(
    ("check", "valid", "invalid"),
    [
        (checksums.luhn, "4539289860169979", "4539289860169970"),
        (checksums.iban, "GB82WEST12345698765432", "GB82WEST12345698765433"),
        (checksums.cn_resident_id, "11010519491231002X", "110105194912310021"),
        (checksums.my_number, "123456789018", "123456789012"),
        (checksums.ru_inn, "7707083893", "7707083894"),
        (checksums.ru_inn, "500100732259", "500100732258"),
        (checksums.ru_snils, "112-233-445 95", "112-233-445 96"),
        (checksums.us_ssn, "555-05-5515", "000-05-5515"),
    ],
)
def test_checksums(check, valid, invalid):
    assert check(valid)
    assert not check(invalid)


@pytest.fixture(scope="module")
def detector():
    return Detector.from_settings(
        PrivacySettings(deny={"PROJECT": ["Nightingale"]}, allow=["Acme"]))


@pytest.mark.parametrize(
    ("text", "type_", "value"),
    [
        ("mail me at jane.doe@example.com", "EMAIL_ADDRESS", "jane.doe@example.com"),
        ("邮箱user@example.cn。", "EMAIL_ADDRESS", "user@example.cn"),
        ("card 4539 2898 6016 9979 ok", "CREDIT_CARD", "4539 2898 6016 9979"),
        ("IBAN GB82WEST12345698765432", "IBAN_CODE", "GB82WEST12345698765432"),
        ("host 10.218.6.131 down", "IP_ADDRESS", "10.218.6.131"),
        ("身份证号11010519491231002X。", "NATIONAL_ID", "11010519491231002X"),
        ("マイナンバーは123456789018です", "NATIONAL_ID", "123456789018"),
        ("ИНН 7707083893", "NATIONAL_ID", "7707083893"),
        ("СНИЛС 112-233-445 95", "NATIONAL_ID", "112-233-445 95"),
        ("my ssn is 555-05-5515", "US_SSN", "555-05-5515"),
        ("护照号码E12345678", "PASSPORT", "E12345678"),
        ("手机13812345678。", "PHONE_NUMBER", "13812345678"),
        ("call +1 415 555 2671 now", "PHONE_NUMBER", "+1 415 555 2671"),
        ("key sk-proj-abcdefghijklmnopqrstuvwx1234", "SECRET",
         "sk-proj-abcdefghijklmnopqrstuvwx1234"),
        ("пароль: Qwerty_2024", "SECRET", "Qwerty_2024"),
        ("Please ask Donald van der Voet today", "PERSON", "Donald van der Voet"),
        ("请联系张伟先生", "PERSON", "张伟"),
        ("田中太郎さんに連絡", "PERSON", "田中太郎"),
        ("Позвоните Ивану Петровичу Сидорову", "PERSON", "Ивану Петровичу Сидорову"),
        ("He lives at 29 Hornsey Road, London", "STREET_ADDRESS", "29 Hornsey Road, London"),
        ("the Nightingale launch", "PROJECT", "Nightingale"),
    ],
)
def test_detects(detector, text, type_, value):
    found = {(s.type, text[s.start : s.end]) for s in detector.scan(text)}
    assert (type_, value) in found


@pytest.mark.parametrize(
    "text",
    [
        "订单号 2023112512345，金额 ¥12,800，2024-03-15 14:30。",
        "注文番号 123456789012、合計 3,980円。",
        "Заказ № 7707083893 на сумму 1 200 ₽ от 15.03.2024.",
        "version 1.2.3.4 released, card 4539289860169970 invalid",
        "ИНН 7707083894",
        "Acme",
        "周末高兴地去黄金海岸",
    ],
)
def test_negatives(detector, text):
    assert detector.scan(text) == []


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("他的IP地址是１９２．１６８．０．１０５，昨天被封了。", "１９２．１６８．０．１０５"),
        ("【告警】主机10.66.8.21CPU使用率超过95%", "10.66.8.21"),
        ("ERROR conn refused 10.4.0.17:5432 (pg)", "10.4.0.17"),
        ("Build agent 10.20.30.40 went offline during the release job.", "10.20.30.40"),
        ("工单编号2231：用户反馈172.18.3.44无法访问内网。", "172.18.3.44"),
        ("注文番号5521の購入者IPは133.242.0.3です。", "133.242.0.3"),
        ("Счёт отправлен Ивану на 213.180.204.3.", "213.180.204.3"),
        ("請開啟http://10.1.1.8:9000/login", "10.1.1.8"),
        ("バージョンアップ後、DNSを8.8.8.8に変更しました。", "8.8.8.8"),
        ("IP10.2.3.4", "10.2.3.4"),
        # the address word after it (``ip_running_text_writers_dev``)
        ("8.8.8.8にpingは通るけど、名前解決ができない…", "8.8.8.8"),
        ("Пинг до 8.8.8.8 есть, а сайты не открываются.", "8.8.8.8"),
        # a build machine, not a build number
        ("构建机（10.6.7.8）磁盘满了，build #4521 失败。", "10.6.7.8"),
        # full stops an IME typed between the numbers; a sentence's full stop before one
        ("内网网关为192。168。1。1，请勿修改", "192。168。1。1"),
        ("サーバ１９２。１６８。０。１に接続できません", "１９２。１６８。０。１"),
        ("部署完成。10.0.0.5的服务挂了", "10.0.0.5"),
        # a resolver named before a single-digit quad
        ("域名解析改成1.1.1.1以后快多了", "1.1.1.1"),
        ("Switch the resolver to 9.9.9.9 and retry.", "9.9.9.9"),
        # a public resolver without a word for it (``ip_running_text_writers3_dev``)
        ("监控显示从9.9.9.9过来的流量突然变多了，正常吗？", "9.9.9.9"),
        ("Если интернет пропал, сначала пропингуй 8.8.8.8, а потом звони.", "8.8.8.8"),
        ("Our upstream forwarders are 8.8.4.4 and 10.1.1.53.", "8.8.4.4"),
        # a range's far end after an address, or after a version of another line: a host
        ("Разрешите диапазон 10.0.0.1-10.0.0.9 на межсетевом экране.", "10.0.0.9"),
        ("Deploy 1.4.2 to 10.0.0.5 tonight.", "10.0.0.5"),
        ("выкатили 2.4.10.3 на 10.0.0.5 в пятницу", "10.0.0.5"),
        ("部署1.4.2到10.20.30.40", "10.20.30.40"),
        # a private range after a firmware word; an address word between a move and the
        # quad; a hop's number before it (``ip_running_text_writers4_dev``)
        ("ファームウェア更新後、192.168.0.254にリダイレクトされるようになりました。",
         "192.168.0.254"),
        ("Upgraded the DNS server to 10.0.0.53 last night.", "10.0.0.53"),
        ("traceroute在第7跳（202.97.12.41）之后就全是星号了。", "202.97.12.41"),
        ("ファームウェアを3.10.2.18に上げたら、ゲートウェイが10.0.0.1に変わった。", "10.0.0.1"),
        ("Connections from 4.2.1.9 were dropped by the firewall.", "4.2.1.9"),
        # a second thing moved in one breath is an address when an address word names it;
        # hosts moved, not software (``ip_running_text_writers4_dev``, after its first fixes)
        ("Bumped openssl to 3.0.13 and the proxy to 10.0.0.5 before the cutover.", "10.0.0.5"),
        ("服务从10.0.0.1迁移到10.0.0.2，今晚切换。", "10.0.0.1"),
        ("Kernel logs were shipped to 10.20.30.40 all week.", "10.20.30.40"),
    ],
)
def test_ip_in_running_text(detector, text, value):
    found = {text[s.start : s.end] for s in detector.scan(text) if s.type == "IP_ADDRESS"}
    assert value in found


@pytest.mark.parametrize(
    "text",
    [
        "We shipped v2.10.0.1 and 4.3.2.1-rc yesterday.",
        "Section 2.3.1.4 describes the retry policy.",
        "第3.2.1.5节描述了重试策略。",
        "OID 2.5.4.3 はコモンネームを表します。",
        "Обновитесь до версии 1.2.3.4 до пятницы.",
        "Upgrade to version 2.10.0.1 before Friday.",
        "The OID 1.3.6.1.4.1.311.21.7 identifies the template.",
        "会议定于2024.05.12举行，价格12.5元。",
        # build numbers right after their word (``ip_running_text_writers_dev``)
        "内部构建号10.4.1.2已经提测，请QA同学回归一下。",
        "ビルド番号 10.4.1.2 のインストーラを配布します。",
        "Сборка 1.0.0.128 прошла все тесты и ушла в релиз.",
        "Build 1.0.0.128 has been submitted to the App Store.",
        "价格从3。5元涨到了4。2元。",
        # an outline's number that looks like a resolver; a firmware version
        "第一章 项目概述\n1.1.1 现状分析\n1.1.1.1 总体目标\n1.1.1.2 阶段目标",
        "Обновите прошивку 2.4.10.3 на всех точках доступа.",
        "ファームウェア 2.4.10.3 を配布しました。",
        # the far end of a version range (``ip_running_text_writers3_dev``)
        "ファームウェアを2.4.10.3から2.4.11.0に更新してください。",
        "Прошивку обновили с версии 3.0.1.4 на 3.0.2.0, точки перезагрузились.",
        "升级路径：版本 5.2.1 -> 5.2.7.3",
        # software moved to a number, a number's own word or ordinal nearer than an address
        # word, and the siblings of a version on its line (``ip_running_text_writers4_dev``)
        "手机系统更新到了HarmonyOS 4.2.0.137，耗电明显变快了。",
        "Pin setuptools to 69.5.1.0 in requirements.txt until the build backend is fixed.",
        "Прошивку роутера обновили до 3.10.2.18, проблема с Wi-Fi ушла.",
        "BIOSを1.15.0.2に更新後、ファンの回転数が安定しました。",
        "カーネルを5.15.0.105から5.15.0.107に上げたところ、起動時のエラーが消えました。",
        "固件版本3.10.2.18，管理界面在右上角。",
        "В версии 4.8.0.2 адрес по умолчанию изменён.",
        "契約書別紙の第3.1.2.1項に記載の固定アドレスをご利用ください。",
        "The outline in the contract jumps from 4.2.1.9 to 4.2.1.11 — clause 4.2.1.10 is missing.",
        "Appendix B, item 2.10.3.1, requires the vendor to retain audit logs for 180 days.",
        # the near end of a move, a resolver's quad included; a 1C configuration's release;
        # a version word further back in its clause; the second of two things bumped
        "客户端从1.0.0.1更新到1.0.0.2以后不再闪退。",
        "Платформа 8.3.24.1467, конфигурация ЗУП 3.1.28.55 — обновление по плану.",
        "Kernel panicked on 5.15.0.105 but booted fine after going to 5.15.0.107.",
        "Bumped openssl to 3.0.13 and the plugin to 2.4.10.3, tests still red.",
    ],
)
def test_ip_look_alikes(detector, text):
    assert not [s for s in detector.scan(text) if s.type == "IP_ADDRESS"]
