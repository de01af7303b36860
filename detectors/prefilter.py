"""A test on a record's raw text that tells when parsing it cannot yield a sighting.

Most events match no IOC, and parsing them costs far more than searching
their raw text. ``RecordFilter`` rejects a record only when its text holds
no candidate: no IOC value, URL host, account name, hash, address inside a
CIDR IOC or CVE id (``IocIndex.has_candidate``). That is sound because
adapters only copy, split, strip and lower-case raw values, so a value that
matches appears in the raw text, in any case. The exceptions are decodings,
and a record that has one always passes:

- non-ASCII text, which IDNA and Unicode case mapping may change;
- JSON ``\\uXXXX`` escapes and Zeek ``\\xHH`` escapes;
- percent-escapes, which URL hosts are decoded from: the text is searched
  again after decoding them;
- base64 values such as Zscaler's ``b64url`` (``RecordFormat.encoded``).

Other JSON escapes (``\\\\``, ``\\"``, ``\\/``, ``\\n``) stand for characters
that no searched word contains, so they cannot split a match.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

from detectors.index import IocIndex

_HEX_DIGITS = frozenset("0123456789abcdef")
_HEX_ESCAPE = re.compile(r"\\x[0-9a-f]{2}")
_PERCENT_ESCAPE = re.compile(r"%[0-9a-f]{2}")


class RecordFilter:
    """Pre-filter of raw records against one IOC index, with counts of what it decided."""

    def __init__(self, index: IocIndex) -> None:
        self.index = index
        self.passed = 0
        self.rejected = 0

    def may_match(self, text: str) -> bool:
        """Return False only when no observable of a record with raw text ``text`` can match an IOC."""
        if self._may_match(text):
            self.passed += 1
            return True
        self.rejected += 1
        return False

    def _may_match(self, text: str) -> bool:
        if not text.isascii():
            return True
        lowered = text.lower()
        if "\\u" in lowered and _has_unicode_escape(lowered):
            return True
        if "\\x" in lowered and _HEX_ESCAPE.search(lowered):
            return True
        self.index.prepare()
        if self.index.has_candidate(lowered):
            return True
        if "%" in lowered and _PERCENT_ESCAPE.search(lowered):
            decoded = unquote(lowered)
            return not decoded.isascii() or self.index.has_candidate(decoded.lower())
        return False


def _has_unicode_escape(text: str) -> bool:
    """Return True when ``text`` has a JSON ``\\uXXXX`` escape: ``\\u`` after an even run of backslashes."""
    position = text.find("\\u")
    while position >= 0:
        backslashes = 0
        while position - backslashes - 1 >= 0 and text[position - backslashes - 1] == "\\":
            backslashes += 1
        digits = text[position + 2 : position + 6]
        if backslashes % 2 == 0 and len(digits) == 4 and all(digit in _HEX_DIGITS for digit in digits):
            return True
        position = text.find("\\u", position + 2)
    return False
