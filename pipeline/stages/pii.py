"""Personal data and secrets: find e-mail addresses, phone numbers, IPs, card numbers, IBANs and API keys; redact or reject.

Detection comes from maintained libraries, not our own regexes:

* ``email``, ``credit_card``, ``iban``, ``ip``, ``phone``: Microsoft Presidio's pattern
  recognizers (``presidio-analyzer``; no spaCy model is loaded). Card numbers must pass
  the Luhn check and IBANs their ISO 7064 mod-97 check digits (Presidio validates both);
  phone numbers are parsed and validated by Google's libphonenumber (``phonenumbers``)
  for ``phone_regions``. E-mail domains are checked against the public-suffix list
  bundled with ``tldextract`` (offline: the bundled snapshot, never a download).
* ``secret``: the key-format plugins of Yelp's ``detect-secrets`` (AWS, GitHub, GitLab,
  Slack, Stripe, OpenAI, private keys, JWTs, ... everything but its entropy and keyword
  heuristics, which fire on any hex hash in code). A PEM private key is redacted from
  its BEGIN line to its END line.

Code is full of strings that look like PII (``1.2.3.4`` version numbers, hex digests,
``0x`` constants), so by default an IP counts only when it is a public address
(``ipaddress.is_global``, as FineWeb 2's PII step does) and is not a version number
(preceded by ``v``, ``version`` or a pin such as ``==``), a section number (every part 20 or
less: ``Section 12.2.2.2``; public resolvers such as ``8.8.8.8`` go with them, being no
one's personal address) or a heading number at a line's start. ``benchmarks/pii_bench.py`` measures
precision/recall on a planted set and false positives on the demo corpus' code.

``action: redact`` (default) replaces every found span with its kind's token
(``<EMAIL>``, ``<PHONE>``, ``<IP>``, ``<CREDIT_CARD>``, ``<IBAN>``, ``<SECRET>``; see
``replacements``) and keeps the document; ``reject`` rejects documents with any PII
(reason ``pii:<kind>``, the first kind in ``kinds`` order that was found). Either way the
counts per kind are written as ``pii_<kind>`` columns and summed per stage in the
manifest (``counts``).
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field, model_validator

from pipeline.errors import ConfigError
from pipeline.stages.base import Filter, FilterConfig, FilterOutput, register_stage

Kind = Literal["secret", "email", "iban", "credit_card", "ip", "phone"]
KINDS: tuple[str, ...] = ("secret", "email", "iban", "credit_card", "ip", "phone")  # also the overlap priority
DEFAULT_REPLACEMENTS = {k: f"<{k.upper()}>" for k in KINDS}

# detect-secrets plugins left out: IPPublicDetector (the ``ip`` kind covers it)
_SKIP_SECRET_PLUGINS = {"IPPublicDetector"}
_PEM = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END[A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
                  re.DOTALL)
_PHONE_CANDIDATE = re.compile(r"[+(]?\d[\d \t().\-/]{5,}\d")
#: an IPv4 whose four parts are all this small reads as a section or version number; a random
#: public address has that shape with probability (21/256)^4, about 5e-5
_SMALL_OCTET = 20
_DECIMAL = re.compile(r"^\d+\.\d+$")
_DATE = re.compile(r"(?:19|20)\d\d-[01]\d-[0-3]\d|\b[0-3]?\d[./-][01]?\d[./-](?:19|20)\d\d\b")
_DOTTED_QUAD = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_VERSIONISH = re.compile(r"(?:\bv|version\w*[\s=:\"'(]*|[=<>~!]=\s*|\bpython\s*)$", re.IGNORECASE)


class PiiConfig(FilterConfig):
    """Options of the ``pii`` stage."""

    kinds: list[Kind] = Field(default_factory=lambda: list(KINDS), min_length=1)
    action: Literal["redact", "reject"] = "redact"
    replacements: dict[Kind, str] = Field(default_factory=dict, description="kind -> token (default <KIND>)")
    public_ips_only: bool = Field(True, description="private, loopback and reserved IPs are not personal data")
    phone_regions: list[str] = Field(default_factory=lambda: ["US", "UK", "DE", "FR", "IN", "CA", "BR", "IL"],
                                     description="libphonenumber regions national-format numbers are parsed for")
    min_phone_digits: int = Field(9, ge=5, description="shorter numbers are not reported as phones")

    @model_validator(mode="after")
    def _check(self) -> "PiiConfig":
        if len(set(self.kinds)) != len(self.kinds):
            raise ValueError(f"kinds: listed twice in {self.kinds}")
        import phonenumbers

        bad = [r for r in self.phone_regions if r != "UK" and r not in phonenumbers.SUPPORTED_REGIONS]
        if bad:
            raise ValueError(f"phone_regions: unknown region codes {bad}")
        return self

    def token(self, kind: str) -> str:
        return self.replacements.get(kind, DEFAULT_REPLACEMENTS[kind])  # type: ignore[arg-type]


@lru_cache(1)
def _offline_tld():
    import tldextract

    return tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)  # bundled snapshot, no network


def _presidio(kind: str, regions: tuple[str, ...]):
    try:
        from presidio_analyzer.predefined_recognizers import (
            CreditCardRecognizer,
            EmailRecognizer,
            IbanRecognizer,
            IpRecognizer,
            PhoneRecognizer,
        )
    except ImportError:
        raise ConfigError("pii: needs presidio-analyzer (pip install presidio-analyzer, or the 'pii' extra)") from None
    if kind == "email":
        class OfflineEmail(EmailRecognizer):
            def validate_result(self, pattern_text: str) -> bool:
                return bool(_offline_tld()(pattern_text.rsplit("@", 1)[-1]).fqdn)
        return OfflineEmail()
    if kind == "phone":
        return PhoneRecognizer(supported_regions=list(regions))
    return {"credit_card": CreditCardRecognizer, "iban": IbanRecognizer, "ip": IpRecognizer}[kind]()


@lru_cache(1)
def _secret_patterns() -> tuple[re.Pattern[str], ...]:
    try:
        import importlib
        import inspect
        import pkgutil

        import detect_secrets.plugins as plugins
        from detect_secrets.plugins.base import RegexBasedDetector
    except ImportError:
        raise ConfigError("pii: the secret kind needs detect-secrets (pip install detect-secrets)") from None
    out: list[re.Pattern[str]] = []
    for m in sorted(pkgutil.iter_modules(plugins.__path__), key=lambda m: m.name):
        mod = importlib.import_module(f"detect_secrets.plugins.{m.name}")
        for name, cls in sorted(inspect.getmembers(mod, inspect.isclass)):
            if (issubclass(cls, RegexBasedDetector) and cls is not RegexBasedDetector
                    and cls.__module__ == mod.__name__ and name not in _SKIP_SECRET_PLUGINS):
                out += list(cls().denylist)
    return tuple(out)


def _required_literals(items: Any) -> list[set[str]]:
    """Sets of strings, one of each set appearing in every match of a parsed regex sequence.

    Runs of literal characters, the alternatives of a branch whose every alternative has
    such a run, and the content of groups and of repeats taken at least once are required;
    anything else (classes, optional parts, look-arounds) is skipped, which only weakens the
    test, never makes it wrong.
    """
    from re import _constants as C  # the parser's opcodes (sre_constants)

    out: list[set[str]] = []
    run: list[str] = []

    def flush() -> None:
        if run:
            out.append({"".join(run)})
            run.clear()

    for op, av in items:
        if op is C.LITERAL:
            run.append(chr(av))
            continue
        flush()
        if op is C.SUBPATTERN:
            out += _required_literals(av[3])
        elif op is C.ATOMIC_GROUP:
            out += _required_literals(av)
        elif op in (C.MAX_REPEAT, C.MIN_REPEAT, C.POSSESSIVE_REPEAT) and av[0] >= 1:
            out += _required_literals(av[2])
        elif op is C.BRANCH:
            alts = [_required_literals(b) for b in av[1]]
            if all(alts):
                out.append(set().union(*(max(a, key=lambda x: min(map(len, x))) for a in alts)))
    flush()
    return out


def _prefilter(rx: re.Pattern[str]):
    """A cheap test that is False only for texts ``rx`` cannot match (its required literals
    are missing): most detect-secrets patterns need a keyword that most documents lack, and
    checking for it costs far less than scanning the text with the pattern."""
    from re import _parser  # sre_parse

    sets = [x for x in _required_literals(_parser.parse(rx.pattern, rx.flags)) if min(map(len, x)) >= 2]
    if not sets:
        return None
    if rx.flags & re.IGNORECASE:  # the same case folding as the pattern's own
        flags = rx.flags & (re.IGNORECASE | re.UNICODE | re.ASCII)
        searches = [re.compile("|".join(map(re.escape, sorted(x))), flags).search for x in sets]
        return lambda text: all(search(text) for search in searches)
    literals = [tuple(sorted(x)) for x in sets]
    return lambda text: all(any(lit in text for lit in alts) for alts in literals)


@lru_cache(1)
def _prefiltered_secret_patterns() -> tuple[tuple[re.Pattern[str], Any], ...]:
    return tuple((rx, _prefilter(rx)) for rx in _secret_patterns())


def _secret_spans(text: str) -> list[tuple[int, int]]:
    spans = [(m.start(), m.end()) for m in _PEM.finditer(text)]
    for rx, may_match in _prefiltered_secret_patterns():
        if may_match is not None and not may_match(text):
            continue
        for m in rx.finditer(text):
            groups = [m.span(i) for i in range(1, (m.re.groups or 0) + 1) if m.group(i)]
            best = max(groups, key=lambda s: s[1] - s[0], default=None)
            # A long group is the secret inside keyword context (aws ... "KEY"): redact only it.
            # A short one is a prefix alternative (ghp|gho|...): the whole match is the secret.
            spans.append(best if best and best[1] - best[0] >= 16 else m.span())
    return [s for s in spans if s[1] > s[0]]


class Detector:
    """Finds PII spans per kind in a text (built lazily in each worker; picklable by config)."""

    def __init__(self, config: PiiConfig):
        self.config = config
        self._recognizers: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        return {"config": self.config, "_recognizers": {}}

    def _rec(self, kind: str):
        r = self._recognizers.get(kind)
        if r is None:
            r = self._recognizers[kind] = _presidio(kind, tuple(self.config.phone_regions))
        return r

    def _keep_ip(self, text: str, start: int, end: int) -> bool:
        value = text[start:end]
        try:
            ip = ipaddress.ip_address(value)
        except ValueError:
            return False
        if self.config.public_ips_only and not ip.is_global:
            return False
        if ip.version == 4:
            before, after = text[max(0, start - 24):start], text[end:end + 2]
            if _VERSIONISH.search(before) or re.match(r"\.\d|\d", after) or before.endswith("."):
                return False
            if all(int(x) <= _SMALL_OCTET for x in value.split(".")):
                return False  # "Section 12.2.2.2", "1.3.3.1": outline numbers (and 8.8.8.8, no one's address)
            line_start = text.rfind("\n", 0, start) + 1
            if not text[line_start:start].strip() and re.match(r"\.\s", text[end:end + 2] + " "):
                return False  # "11.1.3.1. Virtual domains": a section number heading a line
        return True

    def _keep_phone(self, text: str, start: int, end: int) -> bool:
        """libphonenumber finds valid numbers inside identifiers and long constants in code
        (``aix-6107-1415-32``, ``2863311531``, ``2.8333333333``); a phone stands alone and is
        written with a ``+`` or separators."""
        value = text[start:end]
        if sum(ch.isdigit() for ch in value) < self.config.min_phone_digits:
            return False
        before = text[start - 1] if start else " "
        after = text[end:end + 2]
        if before.isalnum() or before in "._-/\\" or (after[:1].isalnum() or after[:1] in "_-"):
            return False
        if after[:1] == "." and after[1:2].isdigit():
            return False
        if _DECIMAL.match(value) or _DOTTED_QUAD.search(value) or _DATE.search(value):  # constants, IPs/CIDRs, dates
            return False
        return value.startswith("+") or any(ch in value for ch in " -.()/")

    def _analyze(self, rec: Any, kind: str, text: str) -> list[tuple[int, int]]:
        if kind != "phone":
            return [(r.start, r.end) for r in rec.analyze(text, rec.supported_entities, None)]
        # libphonenumber's matcher scans the whole text once per region (the slowest detector by
        # far); a phone number is a digit run with separators, so only such runs are handed to it.
        out: list[tuple[int, int]] = []
        for m in _PHONE_CANDIDATE.finditer(text):
            lo = max(0, m.start() - 2)
            window = text[lo:m.end() + 2]
            out += [(lo + r.start, lo + r.end) for r in rec.analyze(window, rec.supported_entities, None)]
        return out

    def spans(self, text: str) -> list[tuple[int, int, str]]:
        """Non-overlapping (start, end, kind) spans, higher-priority kinds winning overlaps."""
        found: list[tuple[int, int, str]] = []
        for kind in self.config.kinds:
            if kind == "secret":
                found += [(a, b, kind) for a, b in _secret_spans(text)]
                continue
            rec = self._rec(kind)
            for a, b in self._analyze(rec, kind, text):
                if kind == "ip" and not self._keep_ip(text, a, b):
                    continue
                if kind == "phone" and not self._keep_phone(text, a, b):
                    continue
                found.append((a, b, kind))
        prio = {k: i for i, k in enumerate(KINDS)}
        found.sort(key=lambda s: (prio[s[2]], s[0], -(s[1] - s[0])))
        taken: list[tuple[int, int, str]] = []
        for s in found:
            if all(s[1] <= t[0] or s[0] >= t[1] for t in taken):
                taken.append(s)
        return sorted(taken)


def redact(text: str, spans: list[tuple[int, int, str]], config: PiiConfig) -> str:
    """``text`` with each span replaced by its kind's token."""
    out, pos = [], 0
    for a, b, kind in spans:
        out += [text[pos:a], config.token(kind)]
        pos = b
    out.append(text[pos:])
    return "".join(out)


@register_stage
class Pii(Filter):
    """Redact (or reject documents with) e-mails, phones, IPs, card numbers, IBANs and API keys."""

    name = "pii"
    Config = PiiConfig

    def __init__(self, config: PiiConfig | None = None):
        super().__init__(config)
        c: PiiConfig = self.config  # type: ignore[assignment]
        self.detector = Detector(c)
        for kind in c.kinds:  # a missing library fails when the stage is built
            if kind == "secret":
                _secret_patterns()
            else:
                _presidio(kind, tuple(c.phone_regions))
        self.signal_types = {f"pii_{k}": pa.int32() for k in c.kinds}
        self.count_columns = tuple(self.signal_types)

    def keep_batch(self, table: pa.Table) -> FilterOutput:
        c: PiiConfig = self.config  # type: ignore[assignment]
        texts = table.column("text").to_pylist()
        reasons: list[str | None] = []
        cols: dict[str, list[int]] = {f"pii_{k}": [] for k in c.kinds}
        out: list[str] = []
        edited = False
        for t in texts:
            t = t or ""
            spans = self.detector.spans(t)
            counts = {k: 0 for k in c.kinds}
            for _, _, kind in spans:
                counts[kind] += 1
            for k in c.kinds:
                cols[f"pii_{k}"].append(counts[k])
            if c.action == "reject":
                first = next((k for k in c.kinds if counts[k]), None)
                reasons.append(f"pii:{first}" if first else None)
                out.append(t)
            else:
                reasons.append(None)
                new = redact(t, spans, c) if spans else t
                edited = edited or new != t
                out.append(new)
        return FilterOutput(reasons, cols, text=out if edited else None)
