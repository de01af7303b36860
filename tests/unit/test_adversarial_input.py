"""Long adversarial strings cannot drive parsing into quadratic time or catastrophic backtracking.

Each case runs under a per-test timeout far above the linear cost, so a
regression to super-linear parsing fails the test instead of hanging the suite.
"""

from __future__ import annotations

import pytest

from detectors.adapters import formats
from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.feeds import FEED_FORMATS, parse_feed
from detectors.identity import IdentityRules
from detectors.observables import detect_type, normalize_email, parse_url, refang, split_addresses

SIZE = 200_000
NOW = 1_714_694_400_000
PATTERNS = {
    "letters": "a" * SIZE,
    "dots": "." * SIZE,
    "digit-dots": "1." * (SIZE // 2),
    "postfix-from": "Dec  1 10:00:00 mx postfix/qmgr[1]: 4F2A81C0: " + "from=<" * (SIZE // 6),
    "postfix-client": "Dec  1 10:00:00 mx postfix/smtpd[1]: NOQUEUE: reject: " + "from a[" * (SIZE // 7),
    "xml-comments": "<!--" * (SIZE // 4),
    "tabs": "1700000000.000000\t" + "\t" * SIZE,
    "quotes": '"' * SIZE,
    "brackets": "[.]" * (SIZE // 3),
    "json-like": '{"a":' * (SIZE // 5),
    "at-signs": "a@" * (SIZE // 2),
    "percent": "http://x.example/" + "%2" * (SIZE // 2),
    "squid-like": "1157689312.049 5006 10.0.0.1 " + "TCP_MISS/200 " * (SIZE // 13),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("fmt", formats())
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_adapters_linear_on_adversarial_line(fmt: str, name: str) -> None:
    parser = StreamParser(fmt, IdentityRules())
    try:
        parser.parse(PATTERNS[name].encode(), RecordRef("t", 0, 1), NOW)
    except MalformedRecordError:
        pass
    parser.flush()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("fmt", FEED_FORMATS)
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_feeds_linear_on_adversarial_text(fmt: str, name: str) -> None:
    result = parse_feed(PATTERNS[name], fmt)
    assert result is not None


@pytest.mark.timeout(20)
@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_normalisers_linear_on_adversarial_text(name: str) -> None:
    text = PATTERNS[name]
    refang(text)
    detect_type(text)
    parse_url(text)
    normalize_email(text)
    split_addresses(text)
