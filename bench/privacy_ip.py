"""IP addresses in running text: recall per language, and false alarms on look-alikes.

    python bench/privacy_ip.py                          # eval/ip_running_text_dev.jsonl
    python bench/privacy_ip.py eval/ip_running_text_test.jsonl
    python bench/privacy_ip.py eval/ip_running_text_writers_test.jsonl   # by a new writer

Rows: ``{"lang", "text", "ips": [...]}``, each IP as written in the text (full-width digits
and dots included); rows with no IP are look-alikes (versions, dates, decimals, OIDs,
section numbers) where any IP_ADDRESS span is a false alarm. The detector is the shipped
one with default settings; an IP counts as found when a span of type IP_ADDRESS covers
exactly its characters. Writers disagree on two edges, and either counts: an IPv6
address's zone (``fe80::1%eth0``) and the ``::ffff:`` of an IPv4-mapped one; Ownlight
masks both with the address.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from ownlight.config.settings import PrivacySettings  # noqa: E402
from ownlight.privacy.detector import Detector  # noqa: E402


def _bare(ip: str) -> str:
    """The address without its zone or IPv4-mapped prefix."""
    ip = ip.split("%")[0]
    return ip[7:] if ip.lower().startswith("::ffff:") and "." in ip else ip


def main(path: Path) -> None:
    detector = Detector.from_settings(PrivacySettings())
    found: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # lang -> [hit, total]
    alarms: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # lang -> [flagged, rows]
    misses: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        text = row["text"]
        spans = {text[s.start:s.end] for s in detector.scan(text) if s.type == "IP_ADDRESS"}
        spans |= {_bare(value) for value in spans}
        for ip in row["ips"]:
            found[row["lang"]][1] += 1
            if ip in spans:
                found[row["lang"]][0] += 1
            else:
                misses.append(f"  miss {ip!r} in {text!r}")
        bases = {_bare(ip) for ip in row["ips"]}
        extra = {v for v in spans - set(row["ips"]) if _bare(v) not in bases}
        if not row["ips"]:
            alarms[row["lang"]][1] += 1
            alarms[row["lang"]][0] += bool(extra)
        for value in extra:
            misses.append(f"  false {value!r} in {text!r}")
    hit = sum(h for h, _ in found.values())
    total = sum(t for _, t in found.values())
    print(f"{path.name}: IP recall {hit}/{total} = {hit / max(total, 1):.3f}")
    for lang in sorted(found):
        h, t = found[lang]
        f, n = alarms[lang]
        print(f"  {lang}: recall {h}/{t} = {h / max(t, 1):.3f}; look-alikes flagged {f}/{n}")
    print("\n".join(misses))


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "eval" / "ip_running_text_dev.jsonl")
