"""IOC lifecycle: metadata merge, minimum confidence, allowlists and the ioc parse command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from detectors.allowlist import Allowlist, parse_allowlist
from detectors.exceptions import FeedError
from detectors.index import Change, IocIndex
from detectors.ioc import ioc_from_record
from detectors.spread import apply_sighting, new_state

NOW = 1_714_694_400_000
REPO = Path(__file__).resolve().parents[2]


def test_update_merges_tags_and_context() -> None:
    index = IocIndex()
    index.apply(ioc_from_record({"value": "bad.example.net", "tags": ["phishing"], "context": {"case": "7"}}), NOW)
    change = index.apply(ioc_from_record({"value": "bad.example.net", "tags": ["c2"], "severity": "high"}), NOW)
    merged = index.get("domain-name:bad.example.net")
    assert change is Change.UPDATED
    assert merged is not None
    assert merged.tags == ["phishing", "c2"]
    assert merged.context == {"case": "7"}
    assert merged.severity == "high"


def test_min_confidence_skips_low() -> None:
    index = IocIndex(min_confidence=60)
    assert index.apply(ioc_from_record({"value": "bad.example.net", "confidence": 40}), NOW) is Change.IGNORED
    assert len(index) == 0


def test_min_confidence_keeps_unscored() -> None:
    index = IocIndex(min_confidence=60)
    assert index.apply(ioc_from_record({"value": "bad.example.net"}), NOW) is Change.ADDED


def test_min_confidence_update_below_removes() -> None:
    index = IocIndex(min_confidence=60)
    index.apply(ioc_from_record({"value": "bad.example.net", "confidence": 90}), NOW)
    assert index.apply(ioc_from_record({"value": "bad.example.net", "confidence": 10}), NOW) is Change.REMOVED


def _allowlist(text: str, name: str = "own") -> Allowlist:
    entries, problems = parse_allowlist(text, name)
    assert problems == []
    return Allowlist([entries])


@pytest.mark.parametrize(
    "record",
    [
        {"value": "corp.example"},
        {"value": "mail.corp.example"},
        {"value": "https://portal.corp.example/login"},
        {"value": "it@corp.example"},
        {"value": "203.0.113.77"},
    ],
)
def test_allowlist_covers(record: dict[str, str]) -> None:
    assert _allowlist("corp.example\n203.0.113.0/24\n").suppressing_list(ioc_from_record(record)) == "own"


@pytest.mark.parametrize(
    "record", [{"value": "notcorp.example"}, {"value": "198.51.100.1"}, {"value": "corp.example.net"}]
)
def test_allowlist_does_not_cover(record: dict[str, str]) -> None:
    assert _allowlist("corp.example\n203.0.113.0/24\n").suppressing_list(ioc_from_record(record)) is None


def test_misp_warninglist_hostname() -> None:
    text = orjson.dumps(
        {"name": "List of known CDN domains", "type": "hostname", "list": ["cdn.example.net", ".static.example"]}
    ).decode()
    allowlist = _allowlist(text, "file.json")
    assert allowlist.suppressing_list(ioc_from_record({"value": "a.cdn.example.net"})) == "List of known CDN domains"
    assert allowlist.suppressing_list(ioc_from_record({"value": "x.static.example"})) == "List of known CDN domains"


def test_misp_warninglist_cidr() -> None:
    text = orjson.dumps({"name": "resolvers", "type": "cidr", "list": ["192.0.2.0/24", "2001:db8::/32"]}).decode()
    allowlist = _allowlist(text)
    assert allowlist.suppressing_list(ioc_from_record({"value": "2001:db8::53"})) == "resolvers"


def test_misp_warninglist_regex_rejected() -> None:
    with pytest.raises(FeedError, match="regex"):
        parse_allowlist('{"name": "r", "type": "regex", "list": ["^a"]}', "r.json")


def test_allowlist_bad_value_reported() -> None:
    _, problems = parse_allowlist("corp.example\nnot a value\n", "own.txt")
    assert problems == ["own.txt:2: 'not a value' is not a domain, address, range, URL, e-mail or hash"]


def test_suppressed_sighting_adds_no_entity() -> None:
    state = new_state()
    sighting = {
        "ioc": {
            "key": "domain-name:corp.example",
            "type": "domain-name",
            "stix_type": "domain-name",
            "value": "corp.example",
            "source": "x",
            "severity": "low",
            "confidence": None,
            "tags": [],
        },
        "event": {
            "source": "proxy",
            "format": "squid",
            "timestamp_ms": NOW,
            "field": "url.original",
            "stage": "contacted",
            "topic": "p",
            "partition": 0,
            "offset": 1,
        },
        "hosts": ["ws01.corp.example"],
        "users": [],
        "retro": False,
        "suppressed_by": "own",
    }
    assert apply_sighting(state, sighting, NOW) is False
    assert state["hosts"] == {}
    assert state["suppressed"] == 1


def test_ioc_parse_prints_records_and_summary(tmp_path: Path) -> None:
    feed = tmp_path / "feed.txt"
    feed.write_text("# comment\nhxxp://bad[.]example[.]net/x\nBAD[.]EXAMPLE[.]NET\nnot an indicator\n")
    result = subprocess.run(
        [sys.executable, "-m", "service.cli", "ioc", "parse", str(feed)], capture_output=True, cwd=REPO
    )
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert result.returncode == 0
    assert [(record["type"], record["value"]) for record in records] == [
        ("url", "bad.example.net/x"),
        ("domain-name", "bad.example.net"),
    ]
    assert result.stderr.decode().strip().splitlines()[-1] == "2 accepted, 1 skipped, 1 rejected"
