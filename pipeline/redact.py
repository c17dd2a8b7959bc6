"""Keep credentials out of logs, error messages, job files and manifests.

Three places a secret hides in this project's text: the userinfo of a URL
(``http://user:SECRET@host/v1``, ``s3://KEY:SECRET@bucket``), an HTTP ``Authorization``
header or ``Bearer`` token echoed in an error, and a ``name=value`` pair whose name says
it is a credential (``--set input.storage_options.secret=...``, ``?api_key=...``).
:func:`redact_text` masks all three in any string; :func:`redact_url` cleans one URL;
:func:`redact_config` masks a nested config (credential-like keys and storage options,
see :func:`pipeline.provenance.redact`, and every string through :func:`redact_text`);
:class:`RedactingFilter` applies :func:`redact_text` to every log record a handler emits.

Trade-off: patterns, not data flow. A secret pasted into a free-text field under an
innocent name is not found; what is found is replaced by ``***`` even when it was not
secret (``sort_key=length`` reads ``sort_key=***``): over-masking a figure is cheap,
leaking a key is not.

>>> redact_text("POST http://bob:hunter2@127.0.0.1:8000/v1 failed; Authorization: Bearer sk-abc")
'POST http://***@127.0.0.1:8000/v1 failed; Authorization: Bearer ***'
>>> redact_url("https://api.example/v1?api_key=sk-1&model=m")
'https://api.example/v1?api_key=***&model=m'
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["REDACTED", "RedactingFilter", "redact_config", "redact_text", "redact_url", "split_userinfo"]

REDACTED = "***"

# scheme://userinfo@  (userinfo: anything up to @ without a slash or whitespace)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"]+@")
# Authorization: Bearer xyz | "Authorization": "Basic xyz" | authorization=xyz
_AUTH_HEADER = re.compile(r"(?i)(\b(?:proxy-)?authorization['\"]?\s*[:=]\s*['\"]?)(?:(bearer|basic|token|digest)\s+)?"
                          r"[^\s'\",;}]+")
_BEARER = re.compile(r"(?i)\b(bearer)\s+(?!\*\*\*)[A-Za-z0-9._~+/=\-]{4,}")
# name=value / name: value where the name's last word is a credential word.
_SECRET_NAME = (r"(?:secrets?|passwords?|passwd|pwd|credentials?|api[_-]?key|apikey|access[_-]?key(?:[_-]?id)?|"
                r"secret[_-]?key|private[_-]?key|session[_-]?token|auth[_-]?token|token|key)")
# The credential word ends the name and starts it or follows a separator: ``monkey=1`` stays.
_NAME = r"(?:[\w.\-]*[._\-])?" + _SECRET_NAME
_SECRET_PAIR = re.compile(r"(?i)((?<![\w.\-])" + _NAME + r"['\"]?\s*(?:=|:\s)\s*['\"]?)(?!\*\*\*)([^\s&,;'\"}\])]+)")


def redact_text(text: str) -> str:
    """``text`` with URL userinfo, Authorization/Bearer values and ``secret=value`` pairs masked."""
    if not text:
        return text
    text = _URL_USERINFO.sub(lambda m: m.group(1) + REDACTED + "@", text)
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + (m.group(2) + " " if m.group(2) else "") + REDACTED, text)
    text = _BEARER.sub(lambda m: m.group(1) + " " + REDACTED, text)
    return _SECRET_PAIR.sub(lambda m: m.group(1) + REDACTED, text)


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """``(url without userinfo, (user, password) or None)``: pass the pair as HTTP auth instead.

    >>> split_userinfo("http://bob:pw@host:8000/v1")
    ('http://host:8000/v1', ('bob', 'pw'))
    """
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    from urllib.parse import unquote

    creds = (unquote(parts.username or ""), unquote(parts.password or ""))
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)), creds


def redact_url(url: str) -> str:
    """``url`` with its userinfo and credential-like query parameters masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_text(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = REDACTED + "@" + netloc.rsplit("@", 1)[1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(re.fullmatch(_NAME, k, re.IGNORECASE) for k, _ in pairs):
            query = urlencode([(k, REDACTED if re.fullmatch(_NAME, k, re.IGNORECASE) else v) for k, v in pairs],
                              safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _jsonable(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _jsonable(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        return [_jsonable(v) for v in node]
    return node


def redact_config(node: Any) -> Any:
    """A JSON-able copy of ``node`` safe to persist: secret keys, storage options and strings masked.

    >>> redact_config({"input": {"storage_options": {"secret": "s"}}, "base_url": "http://u:p@h/v1"})
    {'input': {'storage_options': {'secret': '***'}}, 'base_url': 'http://***@h/v1'}
    """
    from .provenance import redact  # keys and storage options there; it masks strings through redact_text

    return redact(_jsonable(node))


class RedactingFilter(logging.Filter):
    """A handler filter that masks secrets in the formatted message and traceback of each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a bad format string: leave it for logging to report
            return True
        record.msg, record.args = redact_text(msg), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True
