"""Known failure classes of IOC matching, written in the formats yokoten reads.

Each test feeds IOC records through the same loader as the feeds, parses
ECS JSON, Sysmon JSON or Squid lines with ``parse_record`` and matches them
against the index, so a fix on one side only still fails here.
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from detectors.adapters import parse_record
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.index import IocIndex
from detectors.ioc import ioc_from_record
from detectors.matcher import EventRef, build_sighting, match
from detectors.observation import Observation, SourceKind
from detectors.spread import apply_sighting, build_alert, new_state

NOW = 1_714_730_400_000  # 2024-05-03T10:00:00Z
H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5_T = "098f6bcd4621d373cade4e832627b4f6"
SHA1_T = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
IMPHASH_DIGITS = "0123456789abcdef0123456789abcdef"
SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
RULES = IdentityRules(default_domain="example.com", domain_map={"EXAMPLE": "example.com"})


def _index(*records: dict[str, Any]) -> IocIndex:
    index = IocIndex()
    for record in records:
        index.apply(ioc_from_record(record), now_ms=NOW)
    index.rebuild()
    return index


def _sysmon(event_id: int, host: str, **fields: Any) -> bytes:
    record = {"EventID": event_id, "Channel": SYSMON_CHANNEL, "Hostname": host, "UtcTime": "2024-05-03 10:00:00.000"}
    return orjson.dumps({**record, **fields})


def _ecs(category: str, **fields: Any) -> bytes:
    return orjson.dumps({"@timestamp": "2024-05-03T10:00:00Z", "event": {"category": [category]}, **fields})


def _parse(raw: bytes | str, fmt: str = "auto") -> Observation:
    return parse_record(raw.encode() if isinstance(raw, str) else raw, fmt, RULES)


def _keys(raw: bytes | str, index: IocIndex, fmt: str = "auto") -> list[str]:
    return sorted(hit.ioc.key for hit in match(_parse(raw, fmt), index, NOW))


def _squid(client: str, method: str, url: str, peer: str) -> str:
    return f"1714730400.000     12 {client} TCP_TUNNEL/200 3456 {method} {url} - HIER_DIRECT/{peer} -"


# -- hex digests in any case ----------------------------------------------------


def test_match_hash_case_folded_both_sides() -> None:
    index = _index({"type": "sha256", "value": H256}, {"type": "md5", "value": MD5_T.upper()})
    raw = _sysmon(1, "ws01.example.com", Hashes=f"MD5={MD5_T},SHA256={H256.upper()}")
    assert _keys(raw, index) == [f"md5:{MD5_T}", f"sha256:{H256}"]


def test_match_hash_alert_value_lower_case() -> None:
    index = _index({"type": "sha256", "value": f"  {H256.upper()} "})
    observation = _parse(_sysmon(1, "ws01.example.com", Hashes=f"SHA256={H256.upper()}"))
    hits = match(observation, index, NOW)
    state = new_state()
    apply_sighting(state, build_sighting(observation, hits[0], EventRef("edr", 0, 1)), NOW)
    assert build_alert(state, NOW)["threat"]["indicator"]["value"] == H256


# -- URL with and without scheme ---------------------------------------------------

URL_IOC = {"type": "url", "value": "http://bad.example.net/dl/payload.bin"}
URL_KEY = "url:bad.example.net/dl/payload.bin"


def test_match_url_domain_and_path_fields() -> None:
    raw = _ecs("web", host={"name": "ws21.example.com"}, url={"domain": "bad.example.net", "path": "/dl/payload.bin"})
    assert URL_KEY in _keys(raw, _index(URL_IOC))


def test_match_url_without_scheme() -> None:
    raw = _ecs("web", host={"name": "ws21.example.com"}, url={"original": "bad.example.net/dl/payload.bin"})
    assert _keys(raw, _index(URL_IOC)) == [URL_KEY]


def test_match_url_other_scheme() -> None:
    raw = _ecs("web", host={"name": "ws21.example.com"}, url={"full": "HTTPS://BAD.example.net:443/dl/payload.bin"})
    assert _keys(raw, _index(URL_IOC)) == [URL_KEY]


def test_match_url_squid_line() -> None:
    line = (
        "1714730400.000     12 192.0.2.21 TCP_MISS/200 3456 GET http://bad.example.net/dl/payload.bin"
        " - DIRECT/203.0.113.5 -"
    )
    assert _keys(line, _index(URL_IOC)) == [URL_KEY]


# -- trailing root dot -------------------------------------------------------------

DOMAIN_IOC = {"type": "domain", "value": "bad.example.net"}


def test_match_dns_query_root_dot() -> None:
    observation = _parse(_sysmon(22, "ws05.example.com", QueryName="BAD.example.NET."))
    hits = match(observation, _index(DOMAIN_IOC), NOW)
    assert [(hit.ioc.value, hit.field) for hit in hits] == [("bad.example.net", "dns.question.name")]


def test_match_url_host_root_dot() -> None:
    raw = _ecs("web", host={"name": "ws05.example.com"}, url={"full": "http://bad.example.net./gate.php"})
    assert _keys(raw, _index(DOMAIN_IOC)) == ["domain-name:bad.example.net"]


@pytest.mark.parametrize("name", [".", "", "-"])
def test_match_dns_query_empty_name_discarded(name: str) -> None:
    observation = _parse(_sysmon(22, "ws05.example.com", QueryName=name))
    assert observation.observables == []


# -- internationalised names -------------------------------------------------------


@pytest.mark.parametrize(
    ("ioc_value", "wire_name"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("warrıors.example", "xn--warrors-ufb.example"),
        ("straße.example", "xn--strae-oqa.example"),
    ],
)
def test_match_idn_ioc_punycode_event(ioc_value: str, wire_name: str) -> None:
    raw = _ecs("network", host={"name": "ws06.example.com"}, dns={"question": {"name": wire_name}})
    assert len(_keys(raw, _index({"type": "domain", "value": ioc_value}))) == 1


def test_match_idn_no_ascii_folding() -> None:
    raw = _ecs("network", host={"name": "ws06.example.com"}, dns={"question": {"name": "warriors.example"}})
    assert _keys(raw, _index({"type": "domain", "value": "warrıors.example"})) == []


# -- label boundaries ---------------------------------------------------------------


def test_match_domain_inside_label_no_match() -> None:
    raw = _ecs("web", host={"name": "ws07.example.com"}, url={"full": "https://www.example.com/index.html"})
    assert _keys(raw, _index({"type": "domain", "value": "ample.com"})) == []


def test_match_domain_subdomain_match() -> None:
    raw = _ecs("web", host={"name": "ws07.example.com"}, url={"full": "https://cdn.ample.com/x.js"})
    assert _keys(raw, _index({"type": "domain", "value": "ample.com"})) == ["domain-name:ample.com"]


def test_match_url_ioc_other_host_no_match() -> None:
    raw = _ecs("web", host={"name": "ws07.example.com"}, url={"full": "http://notbad.example.net/dl/a"})
    assert _keys(raw, _index({"type": "url", "value": "bad.example.net/dl"})) == []


def test_match_url_ioc_in_command_line_other_host() -> None:
    raw = _sysmon(1, "ws07.example.com", CommandLine="curl -o a http://notbad.example.net/dl/a")
    assert _keys(raw, _index({"type": "url", "value": "bad.example.net/dl"})) == []


# -- one person and one machine, however spelled ------------------------------------


def _spread_run(records: list[bytes]) -> tuple[dict[str, Any], list[bool]]:
    index = _index({"type": "sha256", "value": H256})
    state = new_state()
    alerts = []
    for offset, raw in enumerate(records):
        observation = _parse(raw)
        for hit in match(observation, index, NOW):
            sighting = build_sighting(observation, hit, EventRef("events", 0, offset))
            alerts.append(apply_sighting(state, sighting, NOW))
    return state, alerts


_E1 = _sysmon(1, "ws01.example.com", User="EXAMPLE\\Alice", Hashes=f"SHA256={H256.upper()}")
_E2 = _ecs(
    "email",
    email={
        "from": {"address": "billing@bad.example.net"},
        "to": {"address": "Alice+invoices@Example.com"},
        "attachments": [{"file": {"name": "inv.exe", "hash": {"sha256": H256}}}],
    },
)
_E3 = _sysmon(1, "WS01", User="example\\alice", Hashes=f"SHA256={H256}")
_E4 = _sysmon(1, "ws02.example.com", User="EXAMPLE\\bob", Hashes=f"SHA256={H256}")


def test_spread_one_person_one_host() -> None:
    state, alerts = _spread_run([_E1, _E2, _E3])
    assert sorted(state["hosts"]) == ["ws01.example.com"]
    assert sorted(state["users"]) == ["alice@example.com"]
    assert alerts == [False, False, False]


def test_spread_second_host_one_alert() -> None:
    state, alerts = _spread_run([_E1, _E2, _E3, _E4])
    assert alerts == [False, False, False, True]
    alert = build_alert(state, NOW)
    assert alert["related"]["hosts"] == ["ws01.example.com", "ws02.example.com"]
    assert alert["related"]["user"] == ["alice@example.com", "bob@example.com"]


# -- the composite Sysmon Hashes field ----------------------------------------------

HASH_IOCS = ({"type": "md5", "value": MD5_T}, {"type": "md5", "value": IMPHASH_DIGITS})


@pytest.mark.parametrize(
    "hashes",
    [
        f"SHA1={SHA1_T.upper()},MD5={MD5_T.upper()},SHA256={H256.upper()},IMPHASH={IMPHASH_DIGITS.upper()}",
        f"IMPHASH={IMPHASH_DIGITS.upper()},MD5={MD5_T.upper()}",
        f"SHA1={SHA1_T.upper()}, MD5={MD5_T.upper()}",
        f"md5 = {MD5_T}",
    ],
)
def test_match_sysmon_hashes_any_order(hashes: str) -> None:
    raw = _sysmon(1, "ws09.example.com", Hashes=hashes)
    assert _keys(raw, _index(*HASH_IOCS)) == [f"md5:{MD5_T}"]


def test_match_sysmon_imphash_only_imphash_ioc() -> None:
    raw = _sysmon(1, "ws09.example.com", Hashes=f"IMPHASH={IMPHASH_DIGITS.upper()}")
    index = _index(*HASH_IOCS, {"type": "imphash", "value": IMPHASH_DIGITS})
    assert _keys(raw, index) == [f"imphash:{IMPHASH_DIGITS}"]


def test_match_sysmon_hashes_placeholder() -> None:
    assert _parse(_sysmon(1, "ws09.example.com", Hashes="-")).observables == []


def test_match_sysmon_hash_wrong_length_for_algorithm() -> None:
    observation = _parse(_sysmon(1, "ws09.example.com", Hashes=f"MD5={H256},SHA1={MD5_T}"))
    assert observation.observables == []


def test_match_sysmon_hash_not_hex() -> None:
    observation = _parse(_sysmon(1, "ws09.example.com", Hashes="MD5=" + "z" * 32))
    assert observation.observables == []


# -- Squid CONNECT targets ---------------------------------------------------------

CONNECT_IOCS = ({"type": "domain", "value": "bad.example.net"}, {"type": "ipv4", "value": "198.51.100.7"})


def test_match_connect_domain_port() -> None:
    line = _squid("192.0.2.30", "CONNECT", "bad.example.net:443", "203.0.113.50")
    observation = _parse(line)
    hits = match(observation, _index(*CONNECT_IOCS), NOW)
    assert [(hit.ioc.key, hit.field) for hit in hits] == [("domain-name:bad.example.net", "url.original")]
    assert observation.hosts == ["192.0.2.30"]


def test_match_connect_ip_port() -> None:
    line = _squid("192.0.2.31", "CONNECT", "198.51.100.7:8443", "198.51.100.7")
    assert _keys(line, _index(*CONNECT_IOCS)) == ["ipv4-addr:198.51.100.7"]


# -- mail address lists and display names ------------------------------------------

_MAIL = _ecs(
    "email",
    email={
        "from": {"address": '"Billing Dept" <Billing@Bad.Example.NET>'},
        "to": {"address": 'alice@example.com;"Smith, Bob" <bob@example.com>'},
        "cc": {"address": "carol@example.com"},
        "attachments": [],
    },
)


def test_match_sender_display_name() -> None:
    assert _keys(_MAIL, _index({"type": "email", "value": "billing@bad.example.net"})) == [
        "email-addr:billing@bad.example.net"
    ]


def test_mail_recipients_split() -> None:
    assert _parse(_MAIL).users == ["alice@example.com", "bob@example.com", "carol@example.com"]


def test_mail_state_three_users() -> None:
    index = _index({"type": "email", "value": "billing@bad.example.net"})
    observation = _parse(_MAIL)
    state = new_state()
    sighting = build_sighting(observation, match(observation, index, NOW)[0], EventRef("mail", 0, 1))
    alert_due = apply_sighting(state, sighting, NOW)
    assert sorted(state["users"]) == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert alert_due is True


def test_mail_sender_list_split() -> None:
    raw = _ecs("email", email={"from": {"address": "a@bad.example.net, b@bad.example.net"}})
    assert [observable.value for observable in _parse(raw).observables] == ["a@bad.example.net", "b@bad.example.net"]


# -- refanged feed values ----------------------------------------------------------


def test_match_refanged_https_url() -> None:
    index = _index(
        {"type": "url", "value": "hxxps://login-bad[.]example[.]net/auth"},
        {"type": "url", "value": "HXXPS://login-bad[.]example[.]net/auth2"},
        {"type": "url", "value": "tcp://bad[.]example[.]net:8989/c2"},
    )
    raw = _ecs("web", host={"name": "ws10.example.com"}, url={"full": "https://login-bad.example.net/auth"})
    assert _keys(raw, index) == ["url:login-bad.example.net/auth"]


def test_refang_keeps_scheme_attribute() -> None:
    index = _index({"type": "url", "value": "tcp://bad[.]example[.]net:8989/c2"})
    assert [ioc.key for ioc in index.values()] == ["url:bad.example.net:8989/c2"]


# -- records that cannot be parsed --------------------------------------------------


def test_parse_hashes_wrong_type() -> None:
    with pytest.raises(MalformedRecordError, match="Hashes is a JSON int") as caught:
        _parse(_sysmon(1, "ws03.example.com", Hashes=12345), "sysmon")
    assert caught.value.reason == "field_type"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "json"),
        (b'{"source":"proxy","url":"http://bad.exa', "truncated"),
        (bytes.fromhex("FFFE7B7D"), "encoding"),
        (b"[]", "field_type"),
    ],
)
def test_parse_bad_json_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(raw, "ecs", RULES, SourceKind.PROXY)
    assert caught.value.reason == reason


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json", "unknown_format"),
        (b'{"source":"proxy","url":"http://bad.exa', "truncated"),
        (bytes.fromhex("FFFE7B7D"), "encoding"),
        (b"[]", "field_type"),
    ],
)
def test_parse_bad_record_auto_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(raw, "auto", RULES, SourceKind.PROXY)
    assert caught.value.reason == reason
