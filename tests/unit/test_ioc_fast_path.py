"""The shortcut of ``resolve_type`` for canonical records, checked against the general path.

``resolve_any_type`` always refangs and normalises, and ``resolve_type``
skips that work for canonical values. Every input here must give both the same
result or the same FeedError. ``reference_ioc_from_record`` is the plain
field-by-field reading of a record that ``ioc_from_record`` must equal. The
inputs come from the real feeds in ``shared/real`` beside the work tree
(read in place, skipped without it), the benchmark corpus IOC set, edge cases
written here and generated text.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.exceptions import FeedError
from detectors.feeds import parse_feed
from detectors.index import merge_metadata
from detectors.ioc import SEVERITIES, Ioc, _confidence, _time, ioc_from_record, resolve_any_type, resolve_type
from detectors.observables import ObservableType, is_canonical, is_refanged, refang

ROOT = Path(__file__).resolve().parents[2]
REAL_IOC = ROOT.parent / "shared" / "real" / "ioc"
sys.path.insert(0, str(ROOT / "benchmarks"))

import corpus  # noqa: E402

OWN_TYPE_NAMES = [kind.value for kind in ObservableType]
OTHER_TYPE_NAMES: list[Any] = [None, "", "ip", "hash", "MD5", " md5 ", "Domain-Name", "sha-256", "cidr", "bogus", 5, ["md5"]]
FEED_SUFFIXES = {".json", ".ioc", ".csv", ".ndjson", ".sha1", ".sha256"}

EDGE_VALUES = [
    # Hashes: case, whitespace, wrong length, non-hex, non-ASCII digits.
    "d41d8cd98f00b204e9800998ecf8427e",
    "D41D8CD98F00B204E9800998ECF8427E",
    " d41d8cd98f00b204e9800998ecf8427e ",
    "\u00a0d41d8cd98f00b204e9800998ecf8427e",
    "d41d8cd98f00b204e9800998ecf8427e\n",
    "d41d8cd98f00b204e9800998ecf8427",
    "g41d8cd98f00b204e9800998ecf8427e",
    "\uff10" * 32,
    "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce"
    "47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e",
    # IPv4: leading zeros, ports, CIDR with host bits, too broad, out of range.
    "192.0.2.1",
    "192.0.2.01",
    "010.0.2.1",
    "0.0.0.0",
    "00.0.0.0",
    "255.255.255.255",
    "256.1.1.1",
    "1.2.3",
    "1.2.3.4.5",
    "192.0.2.1:8080",
    "192.0.2.1:99999",
    "192[.]0[.]2[.]1",
    "192.0.2.1/24",
    "192.0.2.0/24",
    "192.0.2.0/024",
    "10.0.0.0/7",
    "10.0.0.0/8",
    "192.0.2.0/255.255.255.0",
    "\uff11\uff19\uff12.0.2.1",
    " 192.0.2.1",
    # IPv6: mapped, upper case, brackets, zone, uncompressed, CIDR.
    "::ffff:192.0.2.1",
    "::ffff:c000:201",
    "2001:DB8::1",
    "2001:db8::1",
    "2001:db8:0:0:0:0:0:1",
    "[2001:db8::1]",
    "[2001:db8::1]:443",
    "fe80::1%eth0",
    "2001:db8::/32",
    "2001:db8::1/32",
    "::ffff:192.0.2.0/120",
    "2001::/8",
    # Domains: case, trailing dot, defanged, IDNA, bad labels, numeric TLD.
    "bad.example.net",
    "Bad.Example.NET",
    "bad.example.net.",
    "bad.example.net..",
    "bad[.]example[.]net",
    "bad(.)example{.}net",
    "bad[dot]example[DOT]net",
    "b\u00fccher.example",
    "B\u00dcCHER.example",
    "xn--bcher-kva.example",
    "fa\u00df.de",
    "-bad.example",
    "bad-.example",
    "a..b",
    "bad.example.123",
    "localhost",
    "under_score.example",
    "a" * 64 + ".example",
    ("a" * 63 + ".") * 4 + "example",
    "bad.example.net:8080",
    "hxxp.example",
    # URLs: schemes, defanged, default port, escapes, fragments, queries.
    "bad.example.net/",
    "bad.example.net/path",
    "bad.example.net",
    "http://bad.example.net/path",
    "HTTP://Bad.Example.net:80/a%7Eb",
    "https://bad.example.net:443/",
    "bad.example.net:8080/x?y=1",
    "bad.example.net/?",
    "bad.example.net/a#frag",
    "hxxp://bad.example.net/x",
    "hXXps[:]//bad[.]example[.]net/x",
    "h**p://bad.example.net/x",
    "tcp://bad[.]example[.]net:8989/c2",
    "bad.example.net/a%2fb%7e",
    "bad.example.net/a b",
    "192.0.2.1/bin.sh",
    "[2001:db8::1]/x",
    "//bad.example.net/x",
    # E-mail, accounts, file names, CVE ids.
    "user@bad.example.net",
    "User@Bad.Example.NET",
    "user[@]bad[.]example[.]net",
    "user(at)bad.example.net",
    '"Billing" <billing@bad.example.net>',
    "mailto:user@bad.example.net",
    "user@bad.example.net.",
    "a@b@bad.example.net",
    "CORP\\alice",
    "alice",
    "C:\\Windows\\evil.EXE",
    "evil.exe",
    "evil[.]exe",
    '"evil.exe"',
    "cve-2021-44228",
    "CVE-2021-44228",
    # Blank and placeholder values.
    "",
    " ",
    "\t",
    "-",
    "n/a",
]


def outcome(function: Any, *args: Any) -> tuple[Any, ...]:
    """Return ("ok", result, repr) or ("error", reason, message) of one call."""
    try:
        result = function(*args)
    except FeedError as error:
        return ("error", error.reason, str(error))
    return ("ok", result, repr(result))


def reference_ioc_from_record(record: dict[str, Any]) -> Ioc:
    """Read a record field by field with the general path: the behaviour ``ioc_from_record`` must keep."""
    if not isinstance(record, dict):
        raise FeedError(f"IOC record is a JSON {type(record).__name__}, expected an object", reason="field_type")
    raw_value = record.get("value")
    if not isinstance(raw_value, str) or not raw_value.strip():
        raise FeedError(f"IOC record has no string value: {str(record)[:200]}", reason="missing_field")
    kind, value = resolve_any_type(record.get("type"), raw_value)

    severity = str(record.get("severity") or "medium").lower()
    if severity not in SEVERITIES:
        raise FeedError(f"severity {record.get('severity')!r} is not one of {', '.join(SEVERITIES)}", reason="field_type")
    tags = record.get("tags") or []
    if isinstance(tags, str):
        tags = [tag.strip() for tag in tags.split(",") if tag.strip()]
    if not isinstance(tags, list):
        raise FeedError(f"tags {tags!r} must be a list of strings", reason="field_type")
    context = record.get("context") or {}

    return Ioc(
        type=kind,
        value=value,
        source=str(record.get("source") or "unknown"),
        confidence=_confidence(record.get("confidence")),
        severity=severity,
        tags=[str(tag) for tag in tags],
        tlp=str(record["tlp"]).lower() if record.get("tlp") else None,
        valid_from=_time(record, "valid_from"),
        valid_until=_time(record, "valid_until"),
        modified=_time(record, "modified"),
        revoked=record.get("revoked") is True or str(record.get("revoked")).lower() in ("true", "1"),
        description=record.get("description") if isinstance(record.get("description"), str) else None,
        context=context if isinstance(context, dict) else {},
    )


def variants(value: str) -> list[str]:
    """Return ``value`` and forms of it that are not canonical: case, whitespace, trailing dot, defanged."""
    return [
        value,
        value.upper(),
        f" {value} ",
        f"{value}\n",
        value + ".",
        value.replace(".", "[.]"),
        value[:-1],
        "0" + value,
    ]


def resolve_differences(type_names: list[Any], values: list[str]) -> list[str]:
    """Return one line per (type name, value) where resolve_type and resolve_any_type differ."""
    differences = []
    for value in values:
        for type_name in type_names:
            fast = outcome(resolve_type, type_name, value)
            general = outcome(resolve_any_type, type_name, value)
            if fast != general:
                differences.append(f"{type_name!r} {value!r}: {fast} != {general}")
    return differences


def record_differences(records: list[dict[str, Any]]) -> list[str]:
    """Return one line per record where ioc_from_record and reference_ioc_from_record differ."""
    differences = []
    for record in records:
        fast = outcome(ioc_from_record, record)
        general = outcome(reference_ioc_from_record, record)
        if fast != general:
            differences.append(f"{record!r}: {fast} != {general}")
    return differences


def real_feed_iocs() -> list[Ioc]:
    iocs: list[Ioc] = []
    for path in sorted(REAL_IOC.rglob("*")):
        if path.is_file() and path.suffix.lower() in FEED_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
            iocs.extend(parse_feed(text, "auto", source=path.stem, name=path.name).iocs)
    return iocs


def real_feed_strings() -> list[str]:
    """Return every short string in the JSON feeds, so values the parsers reject are compared too."""
    strings: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, str) and len(node) <= 300:
            strings.add(node)
        elif isinstance(node, list):
            for item in node:
                walk(item)
        elif isinstance(node, dict):
            for item in node.values():
                walk(item)

    for path in sorted(REAL_IOC.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".json", ".ndjson"):
            for line in path.read_bytes().splitlines() if path.suffix.lower() == ".ndjson" else [path.read_bytes()]:
                walk(orjson.loads(line))
    return sorted(strings)


@pytest.fixture(scope="module")
def corpus_iocs() -> corpus.IocSet:
    return corpus.generate_iocs(20_000, seed=7)


@pytest.mark.skipif(not REAL_IOC.is_dir(), reason="../shared/real not present: real feeds are read in place and not shipped")
def test_fast_path_real_feeds() -> None:
    iocs = real_feed_iocs()
    assert len(iocs) > 200
    values = sorted({ioc.value for ioc in iocs})
    raw_values = sorted({ioc.context["raw_value"] for ioc in iocs if isinstance(ioc.context.get("raw_value"), str)})
    assert raw_values
    written = [variant for value in values for variant in variants(value)]
    assert resolve_differences(OWN_TYPE_NAMES + OTHER_TYPE_NAMES, values + raw_values) == []
    assert resolve_differences(OWN_TYPE_NAMES, written) == []
    records = [orjson.loads(orjson.dumps(ioc.to_record())) for ioc in iocs]
    assert record_differences(records) == []


@pytest.mark.skipif(not REAL_IOC.is_dir(), reason="../shared/real not present: real feeds are read in place and not shipped")
def test_fast_path_real_json_strings() -> None:
    strings = real_feed_strings()
    assert len(strings) > 1000
    assert resolve_differences(OWN_TYPE_NAMES, strings) == []


def test_fast_path_corpus_iocs(corpus_iocs: corpus.IocSet) -> None:
    records = list(corpus_iocs.records())
    assert record_differences(records) == []
    written = [{**record, "value": variant} for record in records for variant in variants(str(record["value"]))[1:]]
    assert record_differences(written) == []


def test_fast_path_corpus_cross_types(corpus_iocs: corpus.IocSet) -> None:
    sample = [value for _, value in corpus_iocs.items[::40]]
    assert resolve_differences(OWN_TYPE_NAMES, sample) == []


def test_fast_path_corpus_takes_shortcut(corpus_iocs: corpus.IocSet) -> None:
    shortcut = [
        record
        for record in corpus_iocs.records()
        if is_canonical(ObservableType(record["type"]), str(record["value"])) or is_refanged(str(record["value"]))
    ]
    assert len(shortcut) == len(corpus_iocs)


def test_fast_path_edge_values() -> None:
    assert resolve_differences(OWN_TYPE_NAMES + OTHER_TYPE_NAMES, EDGE_VALUES) == []


def test_fast_path_edge_records() -> None:
    records = [{"type": type_name, "value": value} for value in EDGE_VALUES for type_name in OWN_TYPE_NAMES]
    assert record_differences(records) == []


METADATA_CASES: list[dict[str, Any]] = [
    {},
    {"source": "Feed-A", "severity": "HIGH", "tags": ["a", "B"], "tlp": "AMBER"},
    {"severity": "Critical", "tags": "x, y,,z", "confidence": 100},
    {"severity": "severe"},
    {"severity": 5},
    {"severity": ["high"]},
    {"tags": {"a": 1}},
    {"tags": [1, None, "x"]},
    {"tags": []},
    {"tags": ""},
    {"confidence": 0},
    {"confidence": True},
    {"confidence": 101},
    {"confidence": -1},
    {"confidence": "75"},
    {"confidence": 75.9},
    {"confidence": "high"},
    {"revoked": True},
    {"revoked": "TRUE"},
    {"revoked": 1},
    {"revoked": "false"},
    {"revoked": None},
    {"context": {}},
    {"context": {"case": "7"}},
    {"context": ["x"]},
    {"context": "x"},
    {"description": 5},
    {"description": "text"},
    {"valid_from": "2026-01-05T08:00:00Z", "valid_until": 1767600000, "modified": "yesterday"},
    {"tlp": ""},
    {"source": 7},
]


def test_fast_path_record_fields() -> None:
    base = {"type": "domain-name", "value": "bad.example.net"}
    records = [{**base, **fields} for fields in METADATA_CASES]
    assert record_differences(records) == []


@settings(max_examples=400, deadline=None)
@given(
    type_name=st.sampled_from(OWN_TYPE_NAMES),
    value=st.text(alphabet="0123456789abcdefABCDEFhpstx.:/[]()@%- _\u00fc", max_size=40),
)
def test_fast_path_generated_text(type_name: str, value: str) -> None:
    assert outcome(resolve_type, type_name, value) == outcome(resolve_any_type, type_name, value)


@settings(max_examples=400, deadline=None)
@given(value=st.text(alphabet="hHxXpPsS*[](){}.:/@ atdoATDO\t\u00a0", max_size=24))
def test_is_refanged_implies_unchanged(value: str) -> None:
    if is_refanged(value):
        assert refang(value) == value


def test_is_refanged_rejects_defanged() -> None:
    for value in ("bad[.]example", "hxxp://bad.example", "HXXPS://x", "x(dot)y", "a{.}b", " x", "x\n", "h**p://x"):
        assert not is_refanged(value), value


def test_missing_tags_shared_read_only() -> None:
    first = ioc_from_record({"value": "bad.example.net"})
    second = ioc_from_record({"value": "other.example.net"})
    assert first.tags == []
    assert first.context == {}
    assert first.tags is second.tags
    assert first.context is second.context
    with pytest.raises(TypeError, match="read-only"):
        first.tags.append("x")
    with pytest.raises(TypeError, match="read-only"):
        first.context["x"] = 1
    assert second.tags == []
    assert second.context == {}


def test_missing_tags_output_unchanged() -> None:
    ioc = ioc_from_record({"value": "bad.example.net"})
    assert orjson.dumps(ioc.to_record()) == b'{"type":"domain-name","value":"bad.example.net","source":"unknown","severity":"medium"}'
    assert orjson.dumps({"tags": ioc.tags, "context": ioc.context}) == b'{"tags":[],"context":{}}'
    assert repr(ioc) == repr(reference_ioc_from_record({"value": "bad.example.net"}))


def test_missing_tags_merge_metadata() -> None:
    current = ioc_from_record({"value": "bad.example.net"})
    merged = merge_metadata(current, ioc_from_record({"value": "bad.example.net", "tags": ["c2"], "context": {"a": 1}}))
    assert merged.tags == ["c2"]
    assert merged.context == {"a": 1}
    merged.tags.append("x")
    merged.context["b"] = 2
    assert current.tags == []
    assert current.context == {}


def test_given_empty_context_mutable() -> None:
    context: dict[str, Any] = {}
    ioc = ioc_from_record({"value": "bad.example.net", "context": context})
    ioc.context["raw_value"] = "bad[.]example[.]net"
    assert ioc.context == {"raw_value": "bad[.]example[.]net"}
    assert ioc_from_record({"value": "other.example.net"}).context == {}


def test_repeated_strings_shared() -> None:
    first = ioc_from_record(orjson.loads(b'{"value":"a.example","source":"feed-x","severity":"HIGH","tags":["c2"],"tlp":"Red"}'))
    second = ioc_from_record(orjson.loads(b'{"value":"b.example","source":"feed-x","severity":"high","tags":["c2"],"tlp":"red"}'))
    assert first.source is second.source
    assert first.severity is second.severity
    assert first.tags[0] is second.tags[0]
    assert first.tlp is second.tlp
