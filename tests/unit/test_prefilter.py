"""Differential tests of the raw-text pre-filter and of the hash search by prefix.

The pre-filter may only skip records that yield no sighting, so every test
here parses the same records with and without it and compares the
sightings record by record. The IOC sets are drawn from the records' own
observables (values, parent domains, /24 blocks, URLs, accounts), so that
many records match, and in every way the index can match them.
"""

from __future__ import annotations

import base64
import ipaddress
import sys
from collections.abc import Iterable
from pathlib import Path

import ahocorasick
import orjson
import pytest

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.index import IocIndex, _octet_prefixes, _on_boundary, _url_key_host
from detectors.ioc import Ioc, ioc_from_record
from detectors.matcher import sightings_of
from detectors.observables import HASH_TYPES, ObservableType, parse_url
from detectors.observation import Observation, SourceKind
from detectors.prefilter import RecordFilter

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT.parent / "shared" / "real"
sys.path.insert(0, str(ROOT / "benchmarks"))

import corpus  # noqa: E402

NOW_MS = 1_700_000_000_000
RULES = IdentityRules(default_domain="corp.example", domain_map={"CORP": "corp.example", "THESHIRE": "theshire.local"})
Stream = list[tuple[RecordRef, bytes]]
# Rejections that the pre-filter turned into skips, as (stream, reason).
UNCHECKED: list[tuple[str, str]] = []


def _real_streams() -> dict[str, Stream]:
    """Every line-oriented event file of the real samples, one stream per file."""
    streams: dict[str, Stream] = {}
    for folder in ("edr", "proxy_network", "mail"):
        for path in sorted((REAL / folder).rglob("*")):
            if not path.is_file() or path.suffix in (".md", ".evtx", ".yaml", ".xlsx") or path.name == "labels.config":
                continue
            name = str(path.relative_to(REAL))
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
            streams[name] = [(RecordRef(name, 0, number), line) for number, line in enumerate(lines)]
    return streams


def _parse_stream(stream: Stream, record_filter: RecordFilter | None) -> list[tuple[int, list[tuple[Observation, RecordRef]] | str]]:
    """Parse one stream; return per record its observations, or the reason it was rejected."""
    parser = StreamParser("auto", RULES, prefilter=record_filter.may_match if record_filter else None)
    results: list[tuple[int, list[tuple[Observation, RecordRef]] | str]] = []
    for ref, raw in stream:
        try:
            results.append((ref.offset, parser.parse(raw, ref, NOW_MS)))
        except MalformedRecordError as error:
            results.append((ref.offset, error.reason))
    results.append((len(stream), parser.flush()))
    return results


def _sightings(stream: Stream, index: IocIndex, record_filter: RecordFilter | None) -> dict[int, list[bytes] | str]:
    """Return the sightings of every record of ``stream`` as sorted JSON, or its rejection reason."""
    found: dict[int, list[bytes] | str] = {}
    for position, parsed in _parse_stream(stream, record_filter):
        if isinstance(parsed, str):
            found[position] = parsed
            continue
        sightings = [
            orjson.dumps(sighting, option=orjson.OPT_SORT_KEYS)
            for observation, ref in parsed
            for sighting in sightings_of(observation, ref, index, NOW_MS)
        ]
        if sightings:
            found[position] = sorted(sightings)
    return found


def _compare(streams: dict[str, Stream], index: IocIndex) -> tuple[int, RecordFilter]:
    """Assert that the pre-filter changes no sighting; return the sightings compared and the filter."""
    record_filter = RecordFilter(index)
    compared = 0
    for name, stream in streams.items():
        plain = _sightings(stream, index, None)
        filtered = _sightings(stream, index, record_filter)
        for position in sorted(plain.keys() | filtered.keys()):
            want, got = plain.get(position), filtered.get(position)
            if isinstance(want, str):
                # Formats without a check do not check the fields of a skipped record.
                assert got in (want, None), f"{name} record {position}: rejected as {want}, filtered gives {got}"
                if got is None:
                    UNCHECKED.append((name, want))
                continue
            assert got == want, f"{name} record {position}: sightings differ with the pre-filter"
            compared += len(want or [])
    return compared, record_filter


def _derived_iocs(streams: Iterable[Stream], step: int) -> IocIndex:
    """Build an index from every ``step``-th distinct observable of the streams, in several IOC forms."""
    seen: dict[tuple[str, str], None] = {}
    users: dict[str, None] = {}
    for stream in streams:
        for _, parsed in _parse_stream(stream, None):
            if isinstance(parsed, str):
                continue
            for observation, _ in parsed:
                for observable in observation.observables:
                    if observable.type is not ObservableType.CVE:
                        seen.setdefault((observable.type.value, observable.value), None)
                users.update(dict.fromkeys(observation.users))
    records = []
    for number, (kind, value) in enumerate(seen):
        if number % step == 0:
            records.append({"type": kind, "value": value})
        if number % step == 1 and kind == ObservableType.IPV4.value:
            records.append({"type": kind, "value": str(ipaddress.ip_network(f"{value}/24", strict=False))})
        if number % step == 2 and kind == ObservableType.DOMAIN.value and value.count(".") >= 2:
            records.append({"type": kind, "value": value.split(".", 1)[1]})
    for number, user in enumerate(users):
        if number % step == 0:
            records.append({"type": "user-account", "value": user})
    index = IocIndex()
    for record in records:
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    return index


@pytest.fixture(scope="module")
def real_streams() -> dict[str, Stream]:
    if not REAL.is_dir():
        pytest.skip("../shared/real not present: real samples are read in place and not shipped")
    return _real_streams()


@pytest.mark.parametrize("step", [3, 40])
def test_prefilter_real_samples_same_sightings(real_streams: dict[str, Stream], step: int) -> None:
    index = _derived_iocs(real_streams.values(), step)
    compared, record_filter = _compare(real_streams, index)
    assert compared > 100
    assert record_filter.rejected > 0
    assert record_filter.passed > 0


def test_prefilter_sparse_iocs_skip_most(real_streams: dict[str, Stream]) -> None:
    index = _derived_iocs(real_streams.values(), 400)
    compared, record_filter = _compare(real_streams, index)
    assert compared > 0
    assert record_filter.rejected > record_filter.passed


def _corpus_streams(iocs: corpus.IocSet, count: int, seed: int) -> dict[str, Stream]:
    generated = corpus.generate_events(iocs, count, seed=seed, hit_rate=0.05, near_miss_rate=0.05)
    streams: dict[str, Stream] = {}
    for position, (kind, raw) in enumerate(generated.events):
        streams.setdefault(kind, []).append((RecordRef(kind, 0, position), raw))
    return streams


def test_prefilter_corpus_same_sightings() -> None:
    iocs = corpus.generate_iocs(3000, seed=21)
    index = IocIndex()
    for record in iocs.records():
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    compared, record_filter = _compare(_corpus_streams(iocs, 6000, seed=21), index)
    assert compared > 200
    assert record_filter.rejected > 4000


def test_prefilter_delta_iocs_count() -> None:
    index = IocIndex()
    index.apply(ioc_from_record({"type": "domain-name", "value": "old.example"}), now_ms=NOW_MS)
    index.rebuild()
    record_filter = RecordFilter(index)
    assert not record_filter.may_match("GET http://fresh.example/x")
    index.apply(ioc_from_record({"type": "url", "value": "http://fresh.example/dl"}), now_ms=NOW_MS)
    assert record_filter.may_match("GET http://FRESH.example:80/x")


def _filter(*records: dict[str, str]) -> RecordFilter:
    index = IocIndex()
    for record in records:
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    return RecordFilter(index)


HASH = "44d88612fea8a8f36de82e1278abb02f"


@pytest.mark.parametrize(
    ("record", "text", "expected"),
    [
        ({"type": "domain-name", "value": "evil.example"}, '{"q":"cdn.EVIL.example."}', True),
        ({"type": "domain-name", "value": "evil.example"}, '{"q":"good.example"}', False),
        ({"type": "domain-name", "value": "evil.example"}, "GET http://ev%69l.example/ -", True),
        ({"type": "domain-name", "value": "evil.example"}, "GET http://good.example/?q=%41 -", False),
        ({"type": "domain-name", "value": "xn--bcher-kva.example"}, '{"q":"bücher.example"}', True),
        ({"type": "domain-name", "value": "evil.example"}, '{"q":"evil\\u002eexample"}', True),
        ({"type": "domain-name", "value": "evil.example"}, '{"p":"C:\\\\Users\\\\x"}', False),
        ({"type": "domain-name", "value": "evil.example"}, '{"p":"evil\\\\u002eexample"}', False),
        ({"type": "domain-name", "value": "evil.example"}, "1\tevil\\x2eexample", True),
        ({"type": "url", "value": "http://evil.example/dl/a.exe"}, "GET http://EVIL.example:80/dl/a.exe", True),
        ({"type": "url", "value": "http://evil.example/dl/a.exe"}, "GET http://good.example/dl/a.exe", False),
        ({"type": "ipv4-addr", "value": "203.0.113.0/24"}, '{"DestinationIp":"203.0.113.77"}', True),
        ({"type": "ipv4-addr", "value": "203.0.113.0/24"}, '{"DestinationIp":"203.0.114.77"}', False),
        ({"type": "ipv4-addr", "value": "203.0.113.0/24"}, '{"a":"9.203.0.113.7"}', True),
        ({"type": "ipv4-addr", "value": "203.0.113.9"}, '{"a":"::FFFF:cb00:7109"}', True),
        ({"type": "ipv4-addr", "value": "203.0.113.9"}, '{"a":"::ffff:198.51.100.7"}', False),
        ({"type": "ipv4-addr", "value": "203.0.113.9"}, '{"a":"::ffff:203.0.113.9"}', True),
        ({"type": "ipv6-addr", "value": "2001:db8::1"}, '{"a":"2001:0db8:0:0:0:0:0:0001"}', True),
        ({"type": "ipv6-addr", "value": "2001:db8::1"}, '{"t":"12:34:56"}', False),
        ({"type": "user-account", "value": "alice@corp.example"}, '{"User":"CORP\\\\Alice"}', True),
        ({"type": "user-account", "value": "alice@corp.example"}, '{"User":"CORP\\\\bob"}', False),
        ({"type": "md5", "value": HASH}, f'{{"Hashes":"MD5={HASH.upper()},IMPHASH=00"}}', True),
        ({"type": "md5", "value": HASH}, f'{{"Hashes":"MD5={HASH[:-1]}0"}}', False),
        ({"type": "md5", "value": HASH}, '{"x":"nothing here"}', False),
        ({"type": "md5", "value": HASH}, '{"x":"CVE-2021-44228"}', True),
    ],
)
def test_prefilter_cases(record: dict[str, str], text: str, expected: bool) -> None:
    # A JSON record reaches the filter decoded, as the stream parser passes it.
    decoded = orjson.loads(text) if text.startswith("{") else text
    assert _filter(record).may_match(decoded) is expected


def _same_sightings(iocs: list[dict[str, str]], lines: list[bytes], fmt: str = "auto") -> int:
    """Assert that ``lines`` give the same sightings with and without the pre-filter; return how many."""
    index = IocIndex()
    for record in iocs:
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    stream = [(RecordRef("t", 0, number), line) for number, line in enumerate(lines)]
    plain = _sightings(stream, index, None)
    assert _sightings(stream, index, RecordFilter(index)) == plain
    return sum(len(found) for found in plain.values() if not isinstance(found, str))


ENCODED_CASES = [
    (
        {"type": "user-account", "value": "alice@corp.example"},
        b'{"Timestamp":"2024-01-01T00:00:00Z","ActionType":"MailItemsAccessed","Application":"Microsoft Exchange Online",'
        b'"DeviceName":"ws01","RawEventData":"{\\"UserId\\":\\"\\\\u0061lice@corp.example\\"}"}',
    ),
    (
        {"type": "md5", "value": HASH},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"file"},"host":{"name":"ws01"},'
        b'"file":{"hash":{"md5":"\\f' + HASH.upper().encode() + b'"}}}',
    ),
    (
        {"type": "md5", "value": HASH},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"process"},"host":{"name":"ws02"},'
        b'"process":{"command_line":"x \\b' + HASH.encode() + b'"}}',
    ),
    (
        {"type": "ipv6-addr", "value": "2001:db8::1"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"network"},"host":{"name":"ws01"},'
        b'"destination":{"ip":"2001:db8:0:0:0:0:0.0.0.1"}}',
    ),
    (
        {"type": "ipv6-addr", "value": "2001:db8::/32"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"network"},"host":{"name":"ws01"},'
        b'"destination":{"ip":"2001:db8:1:2:3:4:1.2.3.4"}}',
    ),
    (
        {"type": "email-addr", "value": "ops/billing@bad.example"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"email"},'
        b'"email":{"from":{"address":"ops\\/billing@bad.example"},"to":{"address":"bob@corp.example"}}}',
    ),
]


# Values that URL and e-mail parsing clean up: tabs dropped inside a URL, white space after "@".
ENCODED_CASES += [
    (
        {"type": "domain-name", "value": "evil.example"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"web"},"host":{"name":"ws01"},'
        b'"url":{"full":"http://ev\\til.example/x"}}',
    ),
    (
        {"type": "ipv4-addr", "value": "203.0.113.0/24"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"web"},"host":{"name":"ws02"},'
        b'"url":{"full":"http://203.0.\\n113.7/x"}}',
    ),
    (
        {"type": "email-addr", "value": "alice@phish.example"},
        b'{"@timestamp":"2024-01-01T00:00:00Z","event":{"category":"email"},'
        b'"email":{"from":{"address":"alice@ phish.example"},"to":{"address":"bob@corp.example"}}}',
    ),
]


# Accounts that identity rules join from a domain containing a backslash, or whose user part starts with "@".
ENCODED_CASES += [
    (
        {"type": "user-account", "value": "CORP\\svc\\backup"},
        b'{"EventID":{"#text":"4625"},"Channel":"Security","Computer":"ws01",'
        b'"EventData":{"TargetDomainName":"CORP\\\\svc","TargetUserName":"backup","IpAddress":"10.0.0.9"}}',
    ),
    (
        {"type": "user-account", "value": "@x@corp"},
        b'{"EventID":1,"Channel":"Microsoft-Windows-Sysmon/Operational","Hostname":"ws01",'
        b'"User":"CORP\\\\@x","Image":"C:\\\\a.exe"}',
    ),
]


@pytest.mark.parametrize(("ioc", "line"), ENCODED_CASES)
def test_prefilter_encoded_values_same_sightings(ioc: dict[str, str], line: bytes) -> None:
    assert _same_sightings([ioc], [line]) == 1


def test_prefilter_base64_url_always_parsed() -> None:
    index = IocIndex()
    index.apply(ioc_from_record({"type": "url", "value": "http://evil.example/dl"}), now_ms=NOW_MS)
    index.rebuild()
    encoded = base64.b64encode(b"http://evil.example/dl").decode()
    raw = orjson.dumps({"sourcetype": "zscalernss-web", "event": {"b64url": encoded, "cip": "10.1.1.1"}})
    parser = StreamParser("auto", RULES, prefilter=RecordFilter(index).may_match)
    observations = parser.parse(raw, RecordRef("t", 0, 0), NOW_MS)
    assert [hit["ioc"]["key"] for hit in sightings_of(observations[0][0], observations[0][1], index, NOW_MS)] == [
        "url:evil.example/dl"
    ]
    assert parser.skipped == 0


def test_prefilter_verify_every_parses_sample() -> None:
    record_filter = _filter({"type": "domain-name", "value": "evil.example"})
    parser = StreamParser("squid", RULES, prefilter=record_filter.may_match, verify_every=3)
    line = b"1286536309.450 10 10.0.0.1 TCP_MISS/200 512 GET http://good.example/ - DIRECT/192.0.2.1 text/html"
    results = []
    for offset in range(6):
        observations = parser.parse(line, RecordRef("t", 0, offset), NOW_MS)
        results.append((len(observations), parser.verifying))
    assert results == [(0, False), (0, False), (1, True), (0, False), (0, False), (1, True)]
    assert parser.skipped == 6


def test_prefilter_keeps_header_formats() -> None:
    record_filter = _filter({"type": "domain-name", "value": "evil.example"})
    parser = StreamParser("auto", RULES, prefilter=record_filter.may_match)
    header = b"#separator \\x09"
    path = b"#path\tdns"
    fields = b"#fields\tts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tquery"
    types = b"#types\ttime\tstring\taddr\tport\taddr\tport\tstring"
    for number, line in enumerate((header, path, fields, types)):
        assert parser.parse(line, RecordRef("t", 0, number), NOW_MS) == []
    line = b"1600000000.0\tC1\t10.0.0.1\t5353\t10.0.0.53\t53\tgood.example"
    assert len(parser.parse(line, RecordRef("t", 0, 4), NOW_MS)) == 1
    assert parser.skipped == 0


def _reference_hash_hits(index: IocIndex, text: str) -> set[str]:
    """Hash IOCs in ``text`` as found by an automaton of every hash value with ``_on_boundary``."""
    automaton = ahocorasick.Automaton()
    hashes = [ioc for ioc in index.values() if ioc.type in HASH_TYPES]
    for ioc in hashes:
        automaton.add_word(ioc.value, ioc.value)
    if not hashes:
        return set()
    automaton.make_automaton()
    lowered = text.lower()
    hits = set()
    for end, word in automaton.iter(lowered):
        start = end - len(word) + 1
        for ioc in hashes:
            if ioc.value == word and _on_boundary(lowered, start, end, ioc.type, True):
                hits.add(ioc.key)
    return hits


def test_hash_search_equals_automaton_edge_texts() -> None:
    sha1 = "a" * 39 + "b"
    index = IocIndex()
    for record in (
        {"type": "md5", "value": HASH},
        {"type": "imphash", "value": HASH},
        {"type": "sha1", "value": sha1},
        {"type": "domain-name", "value": "evil.example"},
    ):
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    texts = [
        f"run {HASH}",
        f"run {HASH.upper()}.exe",
        f"run {HASH}.",
        f"run {HASH}.exe",
        f"run x.{HASH}",
        f"run -{HASH}",
        f"run {HASH}_",
        f"run a{HASH}",
        f"run {HASH}{HASH}",
        f"run {HASH}={HASH}",
        f"sha1 {sha1} and {sha1}1 and 0{sha1}",
        f"{HASH}",
        f"evil.example/{HASH}?x",
        f"C:\\{HASH}\\{sha1}",
    ]
    for text in texts:
        found = {ioc.key for ioc in index.search_text(text, NOW_MS) if ioc.type in HASH_TYPES}
        assert found == _reference_hash_hits(index, text), text


def test_hash_search_equals_automaton_corpus() -> None:
    iocs = corpus.generate_iocs(2000, seed=8)
    index = IocIndex()
    for record in iocs.records():
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    texts = []
    for stream in _corpus_streams(iocs, 3000, seed=8).values():
        for _, parsed in _parse_stream(stream, None):
            if not isinstance(parsed, str):
                texts.extend(text for observation, _ in parsed for _, text in observation.free_text)
    # The corpus puts hashes in hash fields only; plant some in the command lines too.
    hashes = sorted(ioc.value for ioc in index.values() if ioc.type in HASH_TYPES)
    suffixes = ["", ".exe", ".", "x", "_1", ",", ".dll", "-"]
    for number in range(0, len(texts), 5):
        digest = hashes[number % len(hashes)]
        texts[number] = f"{texts[number]} {digest.upper() if number % 2 else digest}{suffixes[number % len(suffixes)]}"
    hits = 0
    for text in texts:
        found = {ioc.key for ioc in index.search_text(text, NOW_MS) if ioc.type in HASH_TYPES}
        reference = _reference_hash_hits(index, text)
        assert found == reference, text[:300]
        hits += len(found)
    assert len(texts) > 500
    assert hits > 0


def test_hash_ioc_removed_not_found() -> None:
    index = IocIndex()
    index.apply(ioc_from_record({"type": "md5", "value": HASH}), now_ms=NOW_MS)
    index.rebuild()
    assert [ioc.key for ioc in index.search_text(f"x {HASH} y", NOW_MS)] == [f"md5:{HASH}"]
    index.remove(f"md5:{HASH}")
    assert list(index.search_text(f"x {HASH} y", NOW_MS)) == []
    assert not RecordFilter(index).may_match(f"x {HASH} y")


def test_hash_prefix_in_automaton() -> None:
    index = IocIndex()
    index.apply(ioc_from_record({"type": "sha256", "value": "ab" * 32}), now_ms=NOW_MS)
    index.apply(ioc_from_record({"type": "domain-name", "value": "evil.example"}), now_ms=NOW_MS)
    index.rebuild()
    assert "ab" * 32 not in index._main
    assert "ab" * 4 in index._main
    assert "evil.example" in index._main


def test_prefilter_skips_generic_ecs() -> None:
    record_filter = _filter({"type": "domain-name", "value": "evil.example"})
    parser = StreamParser("auto", RULES, source=SourceKind.PROXY, prefilter=record_filter.may_match)
    document = orjson.dumps({"@timestamp": "2024-01-01T00:00:00Z", "url": {"domain": "good.example"}})
    assert parser.parse(document, RecordRef("t", 0, 0), NOW_MS) == []
    assert parser.skipped == 1


def test_prefilter_unsupported_zeek_log_still_rejected() -> None:
    record_filter = _filter({"type": "domain-name", "value": "evil.example"})
    parser = StreamParser("zeek", RULES, prefilter=record_filter.may_match)
    document = orjson.dumps({"_path": "ntp", "ts": 1600000000.0, "id.orig_h": "10.0.0.1"})
    with pytest.raises(MalformedRecordError) as raised:
        parser.parse(document, RecordRef("t", 0, 0), NOW_MS)
    assert raised.value.reason == "unsupported_log"


def test_octet_prefixes_of_networks() -> None:
    assert _octet_prefixes(ipaddress.IPv4Network("203.0.112.0/23")) == ("203.0.112.", "203.0.113.")
    assert _octet_prefixes(ipaddress.IPv4Network("10.0.0.0/8")) == ("10.",)
    assert _octet_prefixes(ipaddress.IPv4Network("192.0.2.7/32")) == ("192.0.2.7",)
    assert len(_octet_prefixes(ipaddress.IPv4Network("192.0.2.128/25"))) == 128
    assert _octet_prefixes(ipaddress.IPv4Network("172.16.0.0/12"))[-1] == "172.31."


def test_prefilter_checked_formats_still_rejected(real_streams: dict[str, Stream]) -> None:
    UNCHECKED.clear()
    _compare(real_streams, _derived_iocs(real_streams.values(), 400))
    assert UNCHECKED == []


@pytest.mark.parametrize(
    ("fmt", "raw", "reason"),
    [
        ("sysmon", b'{"EventID": 1, "Channel": "x", "Hostname": "ws1.example", "Hashes": 12345}', "field_type"),
        ("sysmon", b'{"EventID": "one", "Channel": "x", "Hostname": "ws1.example"}', "field_type"),
        ("sysmon", b'{"EventID": 1, "Channel": "x", "EventData": [1]}', "field_type"),
        ("sysmon", b'{"EventID": 1, "Channel": "x"}', "missing_field"),
        ("squid", b"1286536309.450 10 10.0.0.1 nothing-here 512 GET", "syntax"),
        ("zscaler", b'{"sourcetype": "zscalernss-fw", "event": {}}', "unsupported_log"),
        ("ecs", b'{"@timestamp": "2024-01-01T00:00:00Z", "url": {"domain": "good.example"}}', "missing_field"),
        ("proofpoint", b'{"messagesDelivered": [], "clicksPermitted": []}', "syntax"),
        ("ecs-vuln", b'{"@timestamp": "2024-01-01T00:00:00Z", "vulnerability": {"id": "NOCVE"}}', "missing_field"),
    ],
)
def test_prefilter_skipped_record_checked(fmt: str, raw: bytes, reason: str) -> None:
    parser = StreamParser(fmt, RULES, prefilter=_filter({"type": "domain-name", "value": "evil.example"}).may_match)
    with pytest.raises(MalformedRecordError) as raised:
        parser.parse(raw, RecordRef("t", 0, 0), NOW_MS)
    assert raised.value.reason == reason


def test_url_key_host_equals_parse_url() -> None:
    values = [
        "http://evil.example/dl",
        "https://EVIL.example:8443/a?b=c",
        "http://[2001:db8::1]:8080/x",
        "http://[2001:db8::1]/",
        "http://203.0.113.7:81/p",
        "ftp://files.example",
        *(value for kind, value in corpus.generate_iocs(3000, seed=4).items if kind == "url"),
    ]
    for value in values:
        key = ioc_from_record({"type": "url", "value": value}).value
        assert _url_key_host(key) == parse_url(key).host, key


def test_bulk_load_then_delta() -> None:
    index = IocIndex()
    index.begin_bulk_load()
    for record in ({"type": "domain-name", "value": "evil.example"}, {"type": "md5", "value": HASH}):
        index.apply(ioc_from_record(record), now_ms=NOW_MS)
    index.rebuild()
    assert {ioc.key for ioc in index.search_text(f"x evil.example {HASH}", NOW_MS)} == {
        "domain-name:evil.example",
        f"md5:{HASH}",
    }
    index.apply(ioc_from_record({"type": "domain-name", "value": "later.example"}), now_ms=NOW_MS)
    index.prepare()
    assert [ioc.key for ioc in index.search_text("x later.example", NOW_MS)] == ["domain-name:later.example"]
    assert RecordFilter(index).may_match("GET http://later.example/")


def test_account_without_probe_passes_every_record() -> None:
    index = IocIndex()
    index.apply(Ioc(type=ObservableType.USER, value="\\@corp"), now_ms=NOW_MS)
    index.rebuild()
    assert RecordFilter(index).may_match("nothing to see")
    index.remove("user-account:\\@corp")
    assert not RecordFilter(index).may_match("nothing to see")
