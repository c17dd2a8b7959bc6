"""PII stage: precision/recall per kind on planted values, decoys, false positives on code, speed.

Planted set: ``--docs`` real prose documents of the demo corpus (web-docs, any language)
each get a few generated values inserted between sentences: e-mail addresses, phone
numbers valid for their region (international and national formats), public IPv4/IPv6
addresses, Luhn-valid card numbers (grouped or not), IBANs with correct check digits
(spaced or compact) and API keys in the formats of AWS, GitHub, Slack, Stripe and PEM
private keys. Decoys that must *not* be found go in too: Luhn-invalid card numbers,
IBANs with wrong check digits, private IPs, version pins. Spans the detector already
finds in the unplanted document are set aside, so the figures are about the planted values.

* recall per kind: planted values whose span the detector reports with that kind;
* precision per kind: reported spans that are a planted value of that kind (decoys and
  other new spans count against it);
* code: every span found in the corpus' code documents (Python, Go), per kind and per MB,
  with examples: mostly real author e-mails and test IPs, which the stage does redact.

    .venv/bin/python benchmarks/pii_bench.py [--docs 300] [--seed 0]
"""

from __future__ import annotations

import argparse
import random
import string
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from curation_bench import emit, load_corpus  # noqa: E402


def luhn_digit(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d = d * 2 - 9 if d * 2 > 9 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def card(rng: random.Random, valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("37", 15)])
    body = prefix + "".join(rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    check = luhn_digit(body)
    number = body + (check if valid else str((int(check) + rng.randint(1, 9)) % 10))
    sep = rng.choice([" ", "-", ""])
    return sep.join(number[i:i + 4] for i in range(0, len(number), 4))


def iban(rng: random.Random, valid: bool = True) -> str:
    country, n = rng.choice([("DE", 18), ("FR", 23), ("GB", 18), ("ES", 20), ("NL", 14)])
    if country == "GB":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(14))
    elif country == "NL":
        bban = "".join(rng.choice(string.ascii_uppercase) for _ in range(4)) + "".join(
            rng.choice(string.digits) for _ in range(10))
    else:
        bban = "".join(rng.choice(string.digits) for _ in range(n))
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    check = 98 - int(numeric) % 97
    if not valid:
        check = (check + rng.randint(1, 50)) % 97 + 2
    value = f"{country}{check:02d}{bban}"
    return " ".join(value[i:i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.6 else value


def phone(rng: random.Random) -> str:
    import phonenumbers

    region = rng.choice(["US", "GB", "DE", "FR"])
    while True:
        ex = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
        nat = str(ex.national_number)
        cand = nat[:2] + "".join(rng.choice(string.digits) for _ in range(len(nat) - 2))
        num = phonenumbers.parse(cand, region)
        if phonenumbers.is_valid_number(num):
            fmt = rng.choice([phonenumbers.PhoneNumberFormat.INTERNATIONAL, phonenumbers.PhoneNumberFormat.NATIONAL])
            if region not in ("US", "GB", "DE", "FR", "CA", "IN", "BR", "IL"):
                fmt = phonenumbers.PhoneNumberFormat.INTERNATIONAL
            return phonenumbers.format_number(num, fmt)


def ip(rng: random.Random) -> str:
    import ipaddress

    while True:
        if rng.random() < 0.8:
            a = ipaddress.IPv4Address(rng.getrandbits(32))
        else:
            a = ipaddress.IPv6Address((0x2001 << 112) | (0x4860 << 96) | rng.getrandbits(96))
        if a.is_global:
            return str(a)


def email(rng: random.Random) -> str:
    user = rng.choice(["anna", "j.smith", "mueller", "li.wei", "o'brien", "x_99", "marie-claire"]).replace("'", "")
    return f"{user}{rng.randint(1, 999)}@{rng.choice(['gmail.com', 'example.de', 'uni-bonn.de', 'mail.co.uk', 'yandex.ru', 'corp.io'])}"


def secret(rng: random.Random) -> str:
    an = string.ascii_letters + string.digits
    kind = rng.choice(["aws", "github", "slack", "stripe", "pem"])
    if kind == "aws":
        return "AKIA" + "".join(rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))
    if kind == "github":
        return "ghp_" + "".join(rng.choice(an) for _ in range(36))
    if kind == "slack":
        return f"xoxb-{rng.randint(10**10, 10**11)}-{rng.randint(10**10, 10**11)}-" + "".join(
            rng.choice(an) for _ in range(24))
    if kind == "stripe":
        return "sk_live_" + "".join(rng.choice(an) for _ in range(24))
    body = "\n".join("".join(rng.choice(an + "+/") for _ in range(64)) for _ in range(4))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


GEN = {"email": email, "phone": phone, "ip": ip, "credit_card": card, "iban": iban, "secret": secret}
DECOYS = {"credit_card": lambda r: card(r, valid=False), "iban": lambda r: iban(r, valid=False),
          "ip": lambda r: r.choice(["192.168.1.20", "10.0.0.7", "127.0.0.1", "172.16.4.2"]),
          "version": lambda r: f"requests=={r.randint(1, 3)}.{r.randint(0, 40)}.{r.randint(0, 9)}.{r.randint(0, 9)}"}


def plant(text: str, rng: random.Random, k: int) -> tuple[str, list[tuple[int, int, str]]]:
    """Insert ``k`` values (and one decoy) at sentence boundaries; return text and planted spans (decoys: kind 'decoy')."""
    cuts = [i + 2 for i in range(len(text) - 2) if text[i] in ".!?。" and text[i + 1] in " \n"] or [len(text)]
    picks = sorted(rng.sample(cuts, min(len(cuts), k + 1)))
    out, spans, pos = [], [], 0
    for j, cut in enumerate(picks):
        out.append(text[pos:cut])
        length = sum(len(x) for x in out)
        if j == 0:
            value, kind = DECOYS[rng.choice(list(DECOYS))](rng), "decoy"
        else:
            kind = rng.choice(list(GEN))
            value = GEN[kind](rng)
        lead = rng.choice(["Contact: ", "", "see ", "(", "Key "])
        out.append(lead + value + (")" if lead == "(" else "") + " ")
        spans.append((length + len(lead), length + len(lead) + len(value), kind))
        pos = cut
    out.append(text[pos:])
    return "".join(out), spans


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--corpus", default=str(REPO.parent / "shared" / "corpus" / "demo.jsonl.zst"))
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--per-doc", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from pipeline.stages.pii import KINDS, Pii

    print("# " + subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(), flush=True)
    rng = random.Random(args.seed)
    rows = load_corpus(Path(args.corpus), None)
    prose = [r for r in rows if r["source"] == "web-docs"][: args.docs]
    code = [r for r in rows if r["source"].startswith("code-")]
    det = Pii().detector
    det.spans("warm up 8.8.8.8 a@b.com +1 202-555-0143")
    planted_n: Counter[str] = Counter()
    found_ok: Counter[str] = Counter()
    reported: Counter[str] = Counter()
    decoys = decoy_hits = 0
    t_cpu, mb = 0.0, 0.0
    for r in prose:
        text, spans = plant(r["text"], rng, args.per_doc)
        before = {(r["text"][a:b], k) for a, b, k in det.spans(r["text"])}
        t0 = time.process_time()
        got = det.spans(text)
        t_cpu += time.process_time() - t0
        mb += len(text.encode()) / 1e6
        got = [g for g in got if (text[g[0]:g[1]], g[2]) not in before]
        for a, b, kind in spans:
            if kind == "decoy":
                decoys += 1
                decoy_hits += any(ga < b and gb > a for ga, gb, _ in got)
                continue
            planted_n[kind] += 1
            found_ok[kind] += any(gk == kind and ga < b and gb > a for ga, gb, gk in got)
        for ga, gb, gk in got:
            reported[gk] += 1
            reported[gk + ":ok"] += any(k == gk and ga < b and gb > a for a, b, k in spans)
    for kind in KINDS:
        emit(name=f"pii/planted/{kind}", planted=planted_n[kind], found=found_ok[kind],
             recall=round(found_ok[kind] / planted_n[kind], 4) if planted_n[kind] else None,
             reported=reported[kind],
             precision=round(reported[kind + ":ok"] / reported[kind], 4) if reported[kind] else None)
    emit(name="pii/planted/decoys", decoys=decoys, flagged=decoy_hits, docs=len(prose),
         mb=round(mb, 2), mb_s=round(mb / max(t_cpu, 1e-9), 3))
    by_kind: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    code_mb = 0.0
    t0 = time.process_time()
    for r in code:
        t = r["text"]
        code_mb += len(t.encode()) / 1e6
        for a, b, k in det.spans(t):
            by_kind[k] += 1
            if len(examples[k]) < 4:
                examples[k].append(t[max(0, a - 20):b + 5].replace("\n", " "))
    t_code = time.process_time() - t0
    emit(name="pii/code", docs=len(code), mb=round(code_mb, 2), spans=dict(by_kind),
         spans_per_mb=round(sum(by_kind.values()) / code_mb, 2), mb_s=round(code_mb / max(t_code, 1e-9), 3),
         examples=dict(examples))


if __name__ == "__main__":
    main()
