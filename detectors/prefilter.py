"""A test on a record's text that decides when parsing it cannot yield a sighting.

Most events match no IOC, and parsing them costs far more than searching
their text. ``RecordFilter`` rejects a record only when its text contains
no candidate: no IOC value, URL host, account name, hash, CIDR octet prefix or
CVE id (``IocIndex.has_candidate``). That is sound because adapters only
copy, split, strip, join and lower-case the values they read, so a value
that matches appears in the record's text, in any case. The text of a text
record is its line. The text of a JSON record is its string and number
values as decoded, so JSON escapes cannot hide a value. The exceptions are
decodings that adapters apply themselves, and a record that has one always
passes:

- non-ASCII text, which IDNA and Unicode case mapping may change;
- Zeek ``\\xHH`` escapes;
- percent-escapes, which URL hosts are decoded from, and tabs and line
  breaks, which URL parsing drops: the text is searched again without them;
- JSON or base64 inside a string value, such as Defender's
  ``RawEventData`` or Zscaler's ``b64url`` (``RecordFormat.encoded``).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote

from detectors.index import IocIndex

_HEX_ESCAPE = re.compile(r"\\x[0-9a-f]{2}")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-f]{2}")
_URL_DROPPED = str.maketrans("", "", "\t\r\n")
# Separates the values of a JSON document: no parser drops or decodes it.
_VALUE_SEPARATOR = "\x00"


class RecordFilter:
    """Pre-filter of decoded records against one IOC index, with counts of what it decided."""

    def __init__(self, index: IocIndex) -> None:
        self.index = index
        self.passed = 0
        self.rejected = 0

    def may_match(self, record: str | dict[str, Any], urls: bool = True) -> bool:
        """Return False only when no observable of ``record`` (a text line or a decoded JSON object) can match an IOC.

        ``urls`` is False for formats that parse no URL out of a value that
        may contain tabs or line breaks, which spares their text a second search.
        """
        text = record if isinstance(record, str) else document_text(record)
        if self._may_match(text, urls):
            self.passed += 1
            return True
        self.rejected += 1
        return False

    def _may_match(self, text: str, urls: bool) -> bool:
        if not text.isascii():
            return True
        lowered = text.lower()
        if "\\x" in lowered and _HEX_ESCAPE.search(lowered):
            return True
        self.index.prepare()
        if self.index.has_candidate(lowered):
            return True
        if urls and ("\t" in lowered or "\r" in lowered or "\n" in lowered):
            # urlsplit drops these anywhere in a URL, so a host may be split by them in the text.
            lowered = lowered.translate(_URL_DROPPED)
            if self.index.has_candidate(lowered):
                return True
        if "%" in lowered and _PERCENT_ESCAPE.search(lowered):
            decoded = unquote(lowered)
            return not decoded.isascii() or self.index.has_candidate(decoded.lower())
        return False


def document_text(document: dict[str, Any]) -> str:
    """Return the string and number values of a decoded JSON document at any depth, separated by NUL."""
    parts: list[str] = []
    pending: list[dict[str, Any] | list[Any]] = [document]
    while pending:
        node = pending.pop()
        for value in node.values() if isinstance(node, dict) else node:
            if isinstance(value, str):
                parts.append(value)
            elif isinstance(value, (dict, list)):
                pending.append(value)
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                parts.append(str(value))
    return _VALUE_SEPARATOR.join(parts)
