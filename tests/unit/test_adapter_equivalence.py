"""Differential tests: the tuned ECS, Windows and Squid adapters against straightforward references.

The references in tests/unit/reference_adapters read every field by name.
Both run on the seeded benchmark corpus and on seeded random mutations of
it: wrong JSON types, objects where text belongs, dotted keys next to
nested ones, deep nesting and placeholders. They also run on the real
third-party samples in a ``shared/real`` folder beside the work tree,
which are read in place and skipped without it. Every observation must be
equal field by field, and every rejected record must fail with the same
reason and message.
"""

from __future__ import annotations

import copy
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.adapters import ecs, squid, windows
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observation import Observation, SourceKind
from tests.unit.reference_adapters import ecs as reference_ecs
from tests.unit.reference_adapters import squid as reference_squid
from tests.unit.reference_adapters import windows as reference_windows
from tests.unit.reference_adapters.identity import UncachedRules

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import corpus  # noqa: E402

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason="../shared/real not present: real samples are read in place and not shipped"
)
SEED = 20261204
RULES_CASES = {
    "plain": IdentityRules(),
    "corp": IdentityRules(
        default_domain="corp.example",
        domain_map={"CORP": "corp.example", "THESHIRE": "theshire.local"},
        host_aliases={"10.20.5.108": "ws0108.corp.example"},
    ),
}
ECS_SOURCES = (None, SourceKind.MAIL, SourceKind.PROXY, SourceKind.EDR)
# Values that a mutation writes over a field: wrong JSON types, objects, lists, placeholders and edge text.
REPLACEMENTS: tuple[Any, ...] = (
    5,
    3.5,
    True,
    None,
    {"nested": "value"},
    ["first.example", "second.example"],
    [{"name": "x"}],
    [],
    "-",
    "",
    "unknown",
    "  EVIL.Example.COM  ",
    "198.51.100.7",
    "::ffff:203.0.113.9",
    "http://bad.example/path?q=1",
    "Alice <alice+tag@corp.example>; bob@corp.example",
    "CORP\\alice",
    "NT AUTHORITY\\SYSTEM",
    "SHA1=80AB5417875EBFB22BBDCF1595023C084FA8A447,MD5=zz",
)
# ECS fields that a mutation adds, as dotted keys or nested objects, so that every reader is reached.
ECS_FIELDS = (
    "host.name",
    "host.hostname",
    "source.ip",
    "client.ip",
    "user.name",
    "user.domain",
    "event.code",
    "event.action",
    "event.category",
    "event.created",
    "email.to.address",
    "email.cc.address",
    "email.from.address",
    "email.reply_to.address",
    "file.hash.sha256",
    "process.hash.md5",
    "dll.name",
    "destination.ip",
    "dns.resolved_ip",
    "dns.question.name",
    "url.domain",
    "url.port",
    "url.path",
    "url.query",
    "url.full",
    "url.original",
    "process.command_line",
    "powershell.file.script_block_text",
)
WINDOWS_FIELDS = (
    "Hostname",
    "Computer",
    "User",
    "TargetUserName",
    "TargetDomainName",
    "SubjectUserName",
    "AccountName",
    "Domain",
    "Channel",
    "Hashes",
    "Image",
    "CommandLine",
    "DestinationIp",
    "DestinationHostname",
    "SourceIp",
    "Initiated",
    "Direction",
    "QueryName",
    "QueryResults",
    "IpAddress",
    "DestAddress",
    "SourceAddress",
    "UtcTime",
    "EventID",
)


def _outcome(adapt: Callable[[], Observation]) -> tuple[Any, ...]:
    """Run an adapter; return ("ok", observation) or ("rejected", reason, message)."""
    try:
        return ("ok", adapt())
    except MalformedRecordError as error:
        return ("rejected", error.reason, str(error))


def _assert_same(expected: tuple[Any, ...], actual: tuple[Any, ...], label: str) -> None:
    assert expected[0] == actual[0], f"{label}: reference {expected[1:]!r}, tuned {actual[1:]!r}"
    if expected[0] == "rejected":
        assert actual[1] == expected[1], f"{label}: rejection reason differs"
        assert actual[2] == expected[2], f"{label}: rejection message differs"
        return
    want, got = expected[1], actual[1]
    assert got.observables == want.observables, f"{label}: observables, their fields or their order differ"
    assert got.hosts == want.hosts, f"{label}: hosts differ"
    assert got.users == want.users, f"{label}: users differ"
    assert got.timestamp_ms == want.timestamp_ms, f"{label}: timestamp differs"
    assert got.stage == want.stage, f"{label}: stage differs"
    assert got.free_text == want.free_text, f"{label}: free text differs"
    assert got.source == want.source, f"{label}: source kind differs"
    assert got.event_code == want.event_code, f"{label}: event code differs"
    assert got.format == want.format, f"{label}: format differs"
    assert got == want, f"{label}: observation differs"


def _check_json(document: dict[str, Any], rules: IdentityRules, label: str) -> None:
    """Compare both JSON adapters on one document, each on its own deep copy."""
    reference_rules = UncachedRules(rules)
    _assert_same(
        _outcome(lambda: reference_windows.adapt(copy.deepcopy(document), reference_rules)),  # type: ignore[arg-type]
        _outcome(lambda: windows.adapt(copy.deepcopy(document), rules)),
        f"{label} (sysmon)",
    )
    for source in ECS_SOURCES:
        _assert_same(
            _outcome(lambda: reference_ecs.adapt(copy.deepcopy(document), reference_rules, source)),  # type: ignore[arg-type]
            _outcome(lambda: ecs.adapt(copy.deepcopy(document), rules, source)),
            f"{label} (ecs, default source {source})",
        )


def _check_line(line: str, rules: IdentityRules, label: str) -> None:
    _assert_same(
        _outcome(lambda: reference_squid.adapt(line, UncachedRules(rules))),  # type: ignore[arg-type]
        _outcome(lambda: squid.adapt(line, rules)),
        f"{label} (squid)",
    )


def _corpus_events(count: int) -> list[tuple[str, bytes]]:
    iocs = corpus.generate_iocs(3000, SEED)
    return corpus.generate_events(iocs, count, SEED, hit_rate=0.05, near_miss_rate=0.05, plant_from=1000).events


def _nest(value: Any, depth: int) -> Any:
    for _ in range(depth):
        value = {"level": value}
    return value


def _set_dotted(document: dict[str, Any], name: str, value: Any, rng: random.Random) -> None:
    """Write ``value`` at ``name``, as one dotted key, as nested objects, or split between the two."""
    parts = name.split(".")
    split = rng.randint(0, len(parts) - 1)
    node = document
    for part in parts[:split]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[".".join(parts[split:])] = value


def _mutate_json(document: dict[str, Any], fields: tuple[str, ...], rng: random.Random) -> dict[str, Any]:
    mutated = copy.deepcopy(document)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        if choice < 0.45:
            _set_dotted(mutated, rng.choice(fields), rng.choice(REPLACEMENTS), rng)
        elif choice < 0.6:
            _set_dotted(mutated, rng.choice(fields), [rng.choice(REPLACEMENTS), rng.choice(REPLACEMENTS)], rng)
        elif choice < 0.75:
            leaf = rng.choice(("unread", *fields))
            _set_dotted(mutated, leaf, _nest("deep", rng.randint(12, 20)), rng)
        elif choice < 0.9 and mutated:
            key = rng.choice(sorted(mutated))
            mutated[key] = rng.choice(REPLACEMENTS)
        elif mutated:
            del mutated[rng.choice(sorted(mutated))]
    return mutated


def _mutate_line(line: str, rng: random.Random) -> str:
    tokens = line.split(" ")
    for _ in range(rng.randint(1, 3)):
        position = rng.randrange(len(tokens) + 1)
        choice = rng.random()
        if choice < 0.3 and tokens:
            del tokens[min(position, len(tokens) - 1)]
        elif choice < 0.6:
            tokens.insert(position, rng.choice(("-", "GET", "TCP_MISS/200", "HTTP/1.1", "x", "10.1.2.3", "1767600000")))
        elif tokens:
            tokens[min(position, len(tokens) - 1)] = rng.choice(("-", "HIER_NONE/-", "DIRECT/::1", "user01", "42"))
    return " ".join(tokens)


def _real_lines(patterns: tuple[str, ...]) -> Iterator[tuple[str, bytes]]:
    for pattern in patterns:
        for path in sorted(REAL.glob(pattern)):
            for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
                yield f"{path.relative_to(REAL)}:{number}", raw


@pytest.mark.parametrize("rules_name", sorted(RULES_CASES))
def test_corpus_events_equal_reference(rules_name: str) -> None:
    rules = RULES_CASES[rules_name]
    kinds: dict[str, int] = {}
    for position, (kind, raw) in enumerate(_corpus_events(4000)):
        kinds[kind] = kinds.get(kind, 0) + 1
        if kind == "proxy":
            _check_line(raw.decode("utf-8").strip(), rules, f"corpus event {position}")
        else:
            _check_json(orjson.loads(raw), rules, f"corpus event {position}")
    assert kinds.keys() == {"edr", "proxy", "mail"}


def test_mutated_documents_equal_reference() -> None:
    rng = random.Random(SEED)
    rules = RULES_CASES["corp"]
    documents = [orjson.loads(raw) for kind, raw in _corpus_events(1500) if kind != "proxy"]
    rejected = 0
    for round_number in range(3000):
        original = rng.choice(documents)
        fields = ECS_FIELDS if "@timestamp" in original and "EventID" not in original else WINDOWS_FIELDS
        fields = fields if rng.random() < 0.8 else ECS_FIELDS + WINDOWS_FIELDS
        mutated = _mutate_json(original, fields, rng)
        _check_json(mutated, rules, f"mutation round {round_number}: {orjson.dumps(mutated)[:300]!r}")
        try:
            ecs.adapt(copy.deepcopy(mutated), rules, SourceKind.MAIL)
        except MalformedRecordError:
            rejected += 1
    # The mutations must reach the rejection paths as well as the accepted ones.
    assert 100 < rejected < 2900


def test_mutated_squid_lines_equal_reference() -> None:
    rng = random.Random(SEED)
    rules = RULES_CASES["corp"]
    lines = [raw.decode("utf-8").strip() for kind, raw in _corpus_events(1500) if kind == "proxy"]
    for round_number in range(3000):
        line = _mutate_line(rng.choice(lines), rng)
        _check_line(line, rules, f"mutation round {round_number}: {line!r}")


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"@timestamp": "2026-01-05T08:00:00Z", "url": {"full": {"x": 1}}, "url.full": "a"}, id="object"),
        pytest.param({"@timestamp": 1, "url.full": "http://a.example/", "url": {"full": "http://b.example/"}}, id="dotted"),
        pytest.param({"@timestamp": 1, "email": {"to": {"address": 7}, "from": {"address": [1]}}}, id="two-wrong"),
        pytest.param({"@timestamp": 1, "observer": _nest("x", 17), "url": _nest("y", 17)}, id="two-deep"),
        pytest.param({"@timestamp": 1, "observer": _nest("x", 16)}, id="deep-unread"),
        pytest.param({"@timestamp": 1, "observer": [[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]}, id="deep-list"),
        pytest.param({"@timestamp": 1, "url": {"domain": "a.example", "port": 8080, "path": 5}}, id="url-parts"),
        pytest.param(
            {"@timestamp": 1, "event": {"category": "web"}, "source": {"ip": "10.20.5.108"}, "client.ip": 5},
            id="proxy-client",
        ),
        pytest.param(
            {"@timestamp": 1, "event.category": ["process"], "user": {"name": ["CORP\\bob", "alice"], "domain": "CORP"}},
            id="edr-users",
        ),
        pytest.param({"@timestamp": 1, "event": {"code": [], "action": {"a": 1}}}, id="action-object"),
        pytest.param({"@timestamp": 1, "event": {"code": "-", "action": 5}}, id="action-number"),
    ],
)
def test_edge_documents_equal_reference(document: dict[str, Any]) -> None:
    for name, rules in RULES_CASES.items():
        _check_json(document, rules, f"edge document with {name} rules")


@pytest.mark.parametrize(
    "record",
    [
        pytest.param({"EventID": 1, "Hostname": "ws1", "Image": 5, "User": 7}, id="two-wrong"),
        pytest.param({"EventID": 1, "Hostname": "ws1", "CommandLine": ["a"], "Hash": 1}, id="text-list"),
        pytest.param(
            {"EventID": {"#text": "3"}, "Computer": "ws1", "EventData": {"SourceIp": "10.0.0.1", "Initiated": "false"}},
            id="evtx-inbound",
        ),
        pytest.param({"EventID": 4624, "Hostname": "dc1", "IpAddress": "::1", "TargetUserName": "a@X.EXAMPLE"}, id="logon"),
        pytest.param({"EventID": 7045, "Channel": "System", "Hostname": "h", "AccountName": "svc", "Domain": "CORP"}, id="system"),
    ],
)
def test_edge_windows_records_equal_reference(record: dict[str, Any]) -> None:
    for name, rules in RULES_CASES.items():
        _check_json(record, rules, f"edge record with {name} rules")


@needs_real
def test_real_json_records_equal_reference() -> None:
    rules = RULES_CASES["corp"]
    checked = 0
    for label, raw in _real_lines(("edr/**/*.json", "edr/**/*.jsonl", "mail/*.json", "mail/*.log", "proxy_network/**/*.log")):
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(document, dict):
            _check_json(document, rules, label)
            checked += 1
    assert checked > 1000


@needs_real
def test_real_text_lines_equal_reference() -> None:
    rules = RULES_CASES["corp"]
    checked = 0
    for label, raw in _real_lines(("proxy_network/squid/*.log", "proxy_network/**/*.log", "mail/*.log")):
        line = raw.decode("utf-8", errors="replace").strip()
        if line and not line.startswith("#"):
            _check_line(line, rules, label)
            checked += 1
    assert checked > 1000
