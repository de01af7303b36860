"""Tests of the STIX 2.1, MISP and OpenIOC feed parsers, on known failure cases and on real published feeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.adapters import parse_record
from detectors.feeds import FeedResult, detect_feed_format, parse_feed
from detectors.feeds.misp import parse_misp, parse_misp_feed
from detectors.feeds.openioc import parse_openioc
from detectors.feeds.plain import parse_plain
from detectors.feeds.stix import parse_stix
from detectors.identity import IdentityRules
from detectors.index import Change, IocIndex
from detectors.matcher import match
from detectors.observables import ObservableType, refang

REAL_IOC = Path(__file__).resolve().parents[2].parent / "shared" / "real" / "ioc"
SKIP_REAL = "../shared/real not present: real feed samples are read in place and not shipped"

H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
H256_UC = H256.upper()
MD5_T = "098f6bcd4621d373cade4e832627b4f6"
SHA1_T = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
NOW = 1_714_730_400_000  # 2024-05-03T10:00:00Z
TLP1_AMBER = "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82"
TLP1_GREEN = "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da"
TLP2_RED = "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1"


def indicator(number: int, pattern: str, **fields: Any) -> dict[str, Any]:
    """Return a STIX 2.1 indicator whose id ends in ``number``."""
    return {
        "type": "indicator",
        "spec_version": "2.1",
        "id": f"indicator--00000000-0000-4000-8000-{number:012d}",
        "created": "2024-05-01T00:00:00Z",
        "modified": "2024-05-01T00:00:00Z",
        "pattern": pattern,
        "pattern_type": "stix",
        "valid_from": "2024-05-01T00:00:00Z",
        **fields,
    }


def bundle(*objects: dict[str, Any]) -> str:
    identifier = "bundle--00000000-0000-4000-8000-000000000000"
    return json.dumps({"type": "bundle", "id": identifier, "objects": list(objects)})


def keys(result: FeedResult) -> list[str]:
    return [ioc.key for ioc in result.iocs]


def reasons(result: FeedResult) -> list[tuple[int, str]]:
    return [(error.line, error.reason) for error in result.errors]


def read_real(relative: str) -> str:
    path = REAL_IOC / relative
    if not path.exists():
        pytest.skip(SKIP_REAL)
    return path.read_text(encoding="utf-8")


# -- STIX: hash path spellings and OR patterns --------------------------------------

HASH_SPELLING_PATTERNS = [
    f"[file:hashes.'SHA-256' = '{H256_UC}']",
    f"[file:hashes.sha256 = '{H256}']",
    f"[file:hashes.MD5 = '{MD5_T}']",
    f"[file:hashes.'SHA1' = '{SHA1_T}']",
    "[ipv4-addr:value = '203.0.113.9' OR domain-name:value = 'bad.example.net']",
]


@pytest.fixture(scope="module")
def spelling_result() -> FeedResult:
    return parse_stix(bundle(*(indicator(number, pattern) for number, pattern in enumerate(HASH_SPELLING_PATTERNS, start=1))))


def test_stix_hash_spellings_keys(spelling_result: FeedResult) -> None:
    assert keys(spelling_result) == [
        f"sha256:{H256}",
        f"md5:{MD5_T}",
        f"sha1:{SHA1_T}",
        "ipv4-addr:203.0.113.9",
        "domain-name:bad.example.net",
    ]


def test_stix_hash_spellings_no_errors(spelling_result: FeedResult) -> None:
    assert spelling_result.errors == []


def test_stix_upper_case_hash_raw_value() -> None:
    result = parse_stix(indicator(1, HASH_SPELLING_PATTERNS[0]))
    assert result.iocs[0].context["raw_value"] == H256_UC


def test_stix_and_unsupported() -> None:
    pattern = "[ipv4-addr:value = '203.0.113.9' AND domain-name:value = 'bad.example.net']"
    result = parse_stix(bundle(indicator(7, pattern)))
    assert result.iocs == []
    assert reasons(result) == [(1, "unsupported_pattern")]
    assert "indicator--00000000-0000-4000-8000-000000000007" in result.errors[0].message


def test_stix_followedby_unsupported() -> None:
    pattern = "[domain-name:value = 'bad.example.net'] FOLLOWEDBY [ipv4-addr:value = '203.0.113.9']"
    result = parse_stix(bundle(indicator(8, pattern)))
    assert result.iocs == []
    assert reasons(result) == [(1, "unsupported_pattern")]
    assert "indicator--00000000-0000-4000-8000-000000000008" in result.errors[0].message


def test_stix_or_branch_loads_beside_and() -> None:
    pattern = (
        "[domain-name:value = 'bad.example.net'] "
        "OR [ipv4-addr:value = '203.0.113.9' AND network-traffic:dst_port = 443]"
    )
    result = parse_stix(bundle(indicator(1, pattern)))
    assert keys(result) == ["domain-name:bad.example.net"]
    assert reasons(result) == [(1, "unsupported_pattern")]
    assert "ipv4-addr:value = '203.0.113.9' AND network-traffic:dst_port = 443" in result.errors[0].message


@pytest.mark.parametrize(
    "pattern",
    [
        "[domain-name:value = 'bad.example.net'] WITHIN 300 SECONDS",
        "[domain-name:value = 'bad.example.net'] REPEATS 5 TIMES",
        "[domain-name:value = 'bad.example.net'] START t'2024-01-01T00:00:00Z' STOP t'2024-02-01T00:00:00Z'",
        "[domain-name:value MATCHES '^bad']",
        "[domain-name:value LIKE 'bad%']",
        "[domain-name:value != 'bad.example.net']",
        "[domain-name:value NOT IN ('bad.example.net')]",
        "[file:size > 1000]",
        "[x509-certificate:issuer = 'CN=bad']",
        "[file:hashes.'SHA3-256' = 'aa']",
        "[file:name = 5]",
        "[domain-name:value ISSUBSET 'example.net']",
    ],
)
def test_stix_unsupported_part_reported(pattern: str) -> None:
    result = parse_stix(indicator(3, pattern))
    assert result.iocs == []
    assert reasons(result) == [(1, "unsupported_pattern")]


def test_stix_in_set_each_value() -> None:
    result = parse_stix(indicator(1, "[domain-name:value IN ('a.example.net', 'b.example.net')]"))
    assert keys(result) == ["domain-name:a.example.net", "domain-name:b.example.net"]


@pytest.mark.parametrize(
    ("pattern", "key"),
    [
        (f"[file:hashes.'SHA-1' = '{SHA1_T}']", f"sha1:{SHA1_T}"),
        (f"[file:hashes.'SHA-512' = '{'ab' * 64}']", f"sha512:{'ab' * 64}"),
        (f"[file:hashes.md5 = '{MD5_T.upper()}']", f"md5:{MD5_T}"),
        ("[file:name = 'Invoice.EXE']", "file-name:invoice.exe"),
        ("[ipv4-addr:value = '198.51.100.0/24']", "ipv4-addr:198.51.100.0/24"),
        ("[ipv4-addr:value ISSUBSET '198.51.100.0/24']", "ipv4-addr:198.51.100.0/24"),
        ("[ipv6-addr:value = '2001:DB8::1']", "ipv6-addr:2001:db8::1"),
        ("[ipv6-addr:value = '2001:db8::/32']", "ipv6-addr:2001:db8::/32"),
        ("[domain-name:value = 'Bad.Example.NET']", "domain-name:bad.example.net"),
        ("[url:value = 'https://bad.example.net/gate.php']", "url:bad.example.net/gate.php"),
        ("[email-addr:value = 'Billing@Bad.Example.NET']", "email-addr:billing@bad.example.net"),
        ("[email-message:from_ref.value = 'ceo@bad.example.net']", "email-addr:ceo@bad.example.net"),
        ("[email-message:sender_ref.value = 'ops@bad.example.net']", "email-addr:ops@bad.example.net"),
        ("[user-account:user_id = 'svc_backup']", "user-account:svc_backup"),
        ("[user-account:account_login = 'CORP\\\\jdoe']", "user-account:jdoe@corp"),
        ("[network-traffic:dst_ref.value = '203.0.113.5']", "ipv4-addr:203.0.113.5"),
        ("[(domain-name:value = 'bad.example.net')]", "domain-name:bad.example.net"),
    ],
)
def test_stix_object_path(pattern: str, key: str) -> None:
    result = parse_stix(indicator(1, pattern))
    assert (keys(result), result.errors) == ([key], [])


def test_stix_escaped_quote_in_value() -> None:
    result = parse_stix(indicator(1, "[file:name = 'it\\'s.exe']"))
    assert keys(result) == ["file-name:it's.exe"]


def test_stix_wrong_hash_length_names_value() -> None:
    result = parse_stix(indicator(4, f"[file:hashes.MD5 = '{H256}']"))
    assert reasons(result) == [(1, "value")]
    assert H256 in result.errors[0].message


def test_stix_network_traffic_domain_rejected() -> None:
    result = parse_stix(indicator(1, "[network-traffic:dst_ref.value = 'bad.example.net']"))
    assert reasons(result) == [(1, "value")]


@pytest.mark.parametrize("pattern_type", ["sigma", "yara", "snort"])
def test_stix_other_pattern_type(pattern_type: str) -> None:
    result = parse_stix(indicator(2, "title: x", pattern_type=pattern_type))
    assert reasons(result) == [(1, "unsupported_pattern_type")]
    assert "indicator--00000000-0000-4000-8000-000000000002" in result.errors[0].message


def test_stix_pattern_type_missing_means_stix() -> None:
    obj = indicator(1, "[domain-name:value = 'bad.example.net']")
    del obj["pattern_type"]
    assert keys(parse_stix(obj)) == ["domain-name:bad.example.net"]


def test_stix_syntax_error() -> None:
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net'"))
    assert reasons(result) == [(1, "pattern_syntax")]


def test_stix_missing_pattern() -> None:
    obj = indicator(1, "")
    assert reasons(parse_stix(obj)) == [(1, "missing_field")]


def test_stix_long_or_chain_loads() -> None:
    terms = " OR ".join(f"ipv4-addr:value = '10.1.{n // 256}.{n % 256}'" for n in range(1500))
    result = parse_stix(indicator(1, f"[{terms}]"))
    assert (len(result.iocs), result.errors) == (1500, [])


def test_stix_deep_nesting_is_syntax_error() -> None:
    result = parse_stix(indicator(1, "[" + "(" * 3000 + "file:name = 'a'" + ")" * 3000 + "]"))
    assert reasons(result) == [(1, "pattern_syntax")]


# -- STIX: metadata ------------------------------------------------------------------


@pytest.fixture(scope="module")
def stix_metadata_ioc() -> Any:
    obj = indicator(
        9,
        "[domain-name:value = 'bad.example.net']",
        name="Phishing host",
        description="Login page clone",
        confidence=85,
        labels=["phishing"],
        indicator_types=["malicious-activity", "phishing"],
        valid_until="2024-06-01T00:00:00Z",
        modified="2024-05-02T00:00:00Z",
        object_marking_refs=[TLP1_AMBER],
    )
    return parse_stix(bundle(obj), source="partner-taxii").iocs[0]


def test_stix_metadata_confidence(stix_metadata_ioc: Any) -> None:
    assert stix_metadata_ioc.confidence == 85


def test_stix_metadata_tags(stix_metadata_ioc: Any) -> None:
    assert stix_metadata_ioc.tags == ["phishing", "malicious-activity"]


def test_stix_metadata_times(stix_metadata_ioc: Any) -> None:
    times = (stix_metadata_ioc.valid_from, stix_metadata_ioc.valid_until, stix_metadata_ioc.modified)
    assert times == (1_714_521_600_000, 1_717_200_000_000, 1_714_608_000_000)


def test_stix_metadata_tlp(stix_metadata_ioc: Any) -> None:
    assert stix_metadata_ioc.tlp == "amber"


def test_stix_metadata_context(stix_metadata_ioc: Any) -> None:
    assert stix_metadata_ioc.context == {
        "stix_id": "indicator--00000000-0000-4000-8000-000000000009",
        "stix_name": "Phishing host",
    }


def test_stix_metadata_description_and_source(stix_metadata_ioc: Any) -> None:
    assert (stix_metadata_ioc.description, stix_metadata_ioc.source) == ("Login page clone", "partner-taxii")


def test_stix_tlp2_red() -> None:
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net']", object_marking_refs=[TLP2_RED]))
    assert result.iocs[0].tlp == "red"


def test_stix_most_restrictive_tlp() -> None:
    refs = [TLP1_GREEN, TLP1_AMBER]
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net']", object_marking_refs=refs))
    assert result.iocs[0].tlp == "amber"


def test_stix_tlp_defined_in_bundle() -> None:
    marking = {
        "type": "marking-definition",
        "id": "marking-definition--11111111-1111-4111-8111-111111111111",
        "definition_type": "tlp",
        "definition": {"tlp": "green"},
    }
    obj = indicator(1, "[domain-name:value = 'bad.example.net']", object_marking_refs=[marking["id"]])
    assert parse_stix(bundle(marking, obj)).iocs[0].tlp == "green"


def test_stix_unknown_marking_no_tlp() -> None:
    refs = ["marking-definition--22222222-2222-4222-8222-222222222222"]
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net']", object_marking_refs=refs))
    assert result.iocs[0].tlp is None


@pytest.mark.parametrize("confidence", [101, -1, "high", True, 50.5])
def test_stix_bad_confidence_one_error(confidence: object) -> None:
    pattern = "[domain-name:value = 'a.example.net' OR domain-name:value = 'b.example.net']"
    result = parse_stix(indicator(1, pattern, confidence=confidence))
    assert (result.iocs, reasons(result)) == ([], [(1, "field_type")])


@pytest.mark.parametrize("valid_until", ["next week", 1717200000, "9" * 400])
def test_stix_bad_time_one_error(valid_until: object) -> None:
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net']", valid_until=valid_until))
    assert reasons(result) == [(1, "field_type")]


def test_stix_non_indicators_skipped() -> None:
    malware = {"type": "malware", "id": "malware--00000000-0000-4000-8000-000000000001", "name": "x"}
    relationship = {"type": "relationship", "id": "relationship--00000000-0000-4000-8000-000000000001"}
    result = parse_stix(bundle(malware, indicator(1, "[domain-name:value = 'bad.example.net']"), relationship))
    assert (keys(result), result.skipped) == (["domain-name:bad.example.net"], 2)


def test_stix_error_line_is_object_position() -> None:
    malware = {"type": "malware", "id": "malware--00000000-0000-4000-8000-000000000001"}
    result = parse_stix(bundle(malware, malware, indicator(1, "[file:size > 5]")))
    assert reasons(result) == [(3, "unsupported_pattern")]


def test_stix_parsed_dict_input() -> None:
    result = parse_stix(json.loads(bundle(indicator(1, "[domain-name:value = 'bad.example.net']"))))
    assert keys(result) == ["domain-name:bad.example.net"]


def test_stix_taxii_envelope() -> None:
    envelope = {"more": False, "objects": [indicator(1, "[domain-name:value = 'bad.example.net']")]}
    assert keys(parse_stix(envelope)) == ["domain-name:bad.example.net"]


def test_stix_invalid_json_line() -> None:
    result = parse_stix('{"type": "bundle",\n "objects": [}')
    assert reasons(result) == [(2, "json")]


def test_stix_not_stix() -> None:
    assert reasons(parse_stix('{"hello": 1}')) == [(0, "input")]


def test_stix_non_object_entry() -> None:
    result = parse_stix(json.dumps({"type": "bundle", "objects": [3]}))
    assert reasons(result) == [(1, "input")]


# -- STIX: revocation, expiry and ordering -------------------------------------------


def lifecycle_versions() -> list[str]:
    """Return V1, V2 (revoked), V3 (expired) and V1 again, as delivered on the IOC topic."""
    v1 = indicator(1, "[domain-name:value = 'bad.example.net']")
    v2 = {**v1, "modified": "2024-05-02T00:00:00Z", "revoked": True}
    v3 = indicator(2, "[domain-name:value = 'old.example.net']", valid_until="2024-01-01T00:00:00Z")
    return [json.dumps(version) for version in (v1, v2, v3, v1)]


@pytest.fixture(scope="module")
def lifecycle_index() -> tuple[IocIndex, list[Change]]:
    index = IocIndex()
    changes = [index.apply(ioc, NOW) for text in lifecycle_versions() for ioc in parse_stix(text).iocs]
    return index, changes


def test_stix_lifecycle_changes(lifecycle_index: tuple[IocIndex, list[Change]]) -> None:
    assert lifecycle_index[1] == [Change.ADDED, Change.REMOVED, Change.IGNORED, Change.IGNORED]


def test_stix_revoked_not_in_index(lifecycle_index: tuple[IocIndex, list[Change]]) -> None:
    assert lifecycle_index[0].get("domain-name:bad.example.net") is None


def test_stix_expired_not_active(lifecycle_index: tuple[IocIndex, list[Change]]) -> None:
    assert list(lifecycle_index[0].lookup(ObservableType.DOMAIN, "old.example.net", NOW)) == []


def test_stix_revoked_flag_set() -> None:
    assert parse_stix(lifecycle_versions()[1]).iocs[0].revoked is True


def test_stix_newest_version_wins_in_bundle() -> None:
    v1 = indicator(1, "[domain-name:value = 'bad.example.net']")
    v2 = {**v1, "modified": "2024-05-02T00:00:00Z", "revoked": True}
    result = parse_stix(bundle(v2, v1))
    assert [(ioc.key, ioc.revoked) for ioc in result.iocs] == [("domain-name:bad.example.net", True)]


def test_stix_revocation_keeps_value_of_other_indicator() -> None:
    active = indicator(1, "[domain-name:value = 'bad.example.net']")
    revoked = indicator(2, "[domain-name:value = 'bad.example.net']", revoked=True, modified="2024-05-09T00:00:00Z")
    result = parse_stix(bundle(active, revoked))
    assert [(ioc.revoked, ioc.context["stix_id"]) for ioc in result.iocs] == [(False, active["id"])]


def test_stix_revoked_string_is_not_revoked() -> None:
    result = parse_stix(indicator(1, "[domain-name:value = 'bad.example.net']", revoked="false"))
    assert result.iocs[0].revoked is False


# -- MISP: composite types and to_ids --------------------------------------------------

COMPOSITE_EVENT = {
    "Event": {
        "uuid": "5bf300da-6438-4372-a069-0b7b0a016219",
        "info": "Composite campaign",
        "threat_level_id": "1",
        "Tag": [{"name": "tlp:amber"}, {"name": "apt-x"}],
        "Attribute": [
            {"type": "ip-dst|port", "value": "203.0.113.10|8443", "to_ids": True, "uuid": "a-1",
             "timestamp": "1714521600"},
            {"type": "domain|ip", "value": "bad.example.net|203.0.113.11", "to_ids": True, "uuid": "a-2"},
            {"type": "filename|sha256", "value": f"inv.exe|{H256}", "to_ids": True, "uuid": "a-3",
             "comment": "dropper"},
            {"type": "domain", "value": "www.example.com", "to_ids": False, "uuid": "a-4"},
        ],
    }
}


@pytest.fixture(scope="module")
def composite_result() -> FeedResult:
    return parse_misp(json.dumps(COMPOSITE_EVENT), source="misp-partner")


def test_misp_composite_keys(composite_result: FeedResult) -> None:
    assert keys(composite_result) == [
        "ipv4-addr:203.0.113.10",
        "domain-name:bad.example.net",
        "ipv4-addr:203.0.113.11",
        f"sha256:{H256}",
    ]


def test_misp_no_pipe_in_values(composite_result: FeedResult) -> None:
    assert [ioc.value for ioc in composite_result.iocs if "|" in ioc.value] == []


def test_misp_port_in_context(composite_result: FeedResult) -> None:
    assert composite_result.iocs[0].context["port"] == 8443


def test_misp_filename_in_context(composite_result: FeedResult) -> None:
    assert composite_result.iocs[3].context["filename"] == "inv.exe"


def test_misp_domain_ip_cross_context(composite_result: FeedResult) -> None:
    pair = (composite_result.iocs[1].context["ip"], composite_result.iocs[2].context["domain"])
    assert pair == ("203.0.113.11", "bad.example.net")


def test_misp_non_ids_skipped(composite_result: FeedResult) -> None:
    assert (composite_result.skipped, composite_result.errors) == (1, [])


def test_misp_include_non_ids() -> None:
    result = parse_misp(json.dumps(COMPOSITE_EVENT), include_non_ids=True)
    assert (keys(result)[-1], result.skipped) == ("domain-name:www.example.com", 0)


def test_misp_edr_event_matches(composite_result: FeedResult) -> None:
    index = IocIndex()
    for ioc in composite_result.iocs:
        index.apply(ioc, NOW)
    index.rebuild()
    # An EDR network connection to the ip-dst|port IOC, in the Sysmon JSON shape that detectors.adapters reads.
    raw = orjson.dumps(
        {
            "EventID": 3,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "Hostname": "ws08.example.com",
            "UtcTime": "2024-05-03 10:00:00.000",
            "DestinationIp": "203.0.113.10",
            "DestinationPort": 8443,
        }
    )
    hits = match(parse_record(raw, "auto", IdentityRules()), index, NOW)
    assert [hit.ioc.key for hit in hits] == ["ipv4-addr:203.0.113.10"]


def test_misp_metadata_severity(composite_result: FeedResult) -> None:
    assert composite_result.iocs[0].severity == "high"


def test_misp_metadata_tags_and_tlp(composite_result: FeedResult) -> None:
    ioc = composite_result.iocs[0]
    assert (ioc.tags, ioc.tlp) == (["tlp:amber", "apt-x"], "amber")


def test_misp_metadata_description_and_uuid(composite_result: FeedResult) -> None:
    ioc = composite_result.iocs[0]
    expected = ("Composite campaign", "5bf300da-6438-4372-a069-0b7b0a016219")
    assert (ioc.description, ioc.context["misp_event_uuid"]) == expected


def test_misp_metadata_modified(composite_result: FeedResult) -> None:
    assert composite_result.iocs[0].modified == 1_714_521_600_000


def test_misp_metadata_comment(composite_result: FeedResult) -> None:
    assert composite_result.iocs[3].context["comment"] == "dropper"


def test_misp_metadata_source(composite_result: FeedResult) -> None:
    assert {ioc.source for ioc in composite_result.iocs} == {"misp-partner"}


def misp_event(*attributes: dict[str, Any], **fields: Any) -> str:
    return json.dumps({"Event": {"uuid": "e-1", "info": "test", "Attribute": list(attributes), **fields}})


@pytest.mark.parametrize(
    ("level", "severity"), [("1", "high"), ("2", "medium"), ("3", "low"), ("4", "medium"), (3, "low")]
)
def test_misp_threat_level(level: object, severity: str) -> None:
    result = parse_misp(misp_event({"type": "md5", "value": MD5_T, "to_ids": True}, threat_level_id=level))
    assert result.iocs[0].severity == severity


def test_misp_attribute_tlp_wins() -> None:
    attribute = {"type": "md5", "value": MD5_T, "to_ids": True, "Tag": [{"name": "tlp:red"}]}
    result = parse_misp(misp_event(attribute, Tag=[{"name": "tlp:green"}]))
    assert (result.iocs[0].tlp, result.iocs[0].tags) == ("red", ["tlp:green", "tlp:red"])


@pytest.mark.parametrize(
    ("kind", "value", "key"),
    [
        ("sha512", "AB" * 64, f"sha512:{'ab' * 64}"),
        ("imphash", MD5_T, f"imphash:{MD5_T}"),
        ("ip-src", "198.51.100.7", "ipv4-addr:198.51.100.7"),
        ("hostname", "c2.bad.example.net", "domain-name:c2.bad.example.net"),
        ("url", "hxxps://bad[.]example[.]net/a", "url:bad.example.net/a"),
        ("email-src", "x@bad.example.net", "email-addr:x@bad.example.net"),
        ("email-dst", "y@bad.example.net", "email-addr:y@bad.example.net"),
        ("email", "z@bad.example.net", "email-addr:z@bad.example.net"),
        ("filename", "Invoice.exe", "file-name:invoice.exe"),
        ("ip-src|port", "198.51.100.8|443", "ipv4-addr:198.51.100.8"),
        ("hostname|port", "c2.bad.example.net|8080", "domain-name:c2.bad.example.net"),
        ("filename|md5", f"a.exe|{MD5_T}", f"md5:{MD5_T}"),
        ("filename|sha1", f"a.exe|{SHA1_T}", f"sha1:{SHA1_T}"),
    ],
)
def test_misp_attribute_type(kind: str, value: str, key: str) -> None:
    result = parse_misp(misp_event({"type": kind, "value": value, "to_ids": True}))
    assert (keys(result), result.errors) == ([key], [])


def test_misp_to_ids_string_flag() -> None:
    result = parse_misp(misp_event({"type": "md5", "value": MD5_T, "to_ids": "1"}))
    assert keys(result) == [f"md5:{MD5_T}"]


def test_misp_deleted_skipped() -> None:
    result = parse_misp(misp_event({"type": "md5", "value": MD5_T, "to_ids": True, "deleted": True}))
    assert (result.iocs, result.skipped) == ([], 1)


def test_misp_uri_skipped() -> None:
    result = parse_misp(misp_event({"type": "uri", "value": "/gate.php", "to_ids": True}))
    assert (result.iocs, result.errors, result.skipped) == ([], [], 1)


def test_misp_unsupported_type_with_ids() -> None:
    attribute = {"type": "regkey", "value": "HKLM\\Software\\x", "to_ids": True, "uuid": "a-9"}
    result = parse_misp(misp_event(attribute))
    assert reasons(result) == [(1, "unsupported_type")]
    assert "a-9" in result.errors[0].message


def test_misp_unsupported_type_without_ids_skipped() -> None:
    attribute = {"type": "link", "value": "https://blog.example.com/x", "to_ids": False}
    result = parse_misp(misp_event(attribute), include_non_ids=True)
    assert (result.errors, result.skipped) == ([], 1)


@pytest.mark.parametrize("value", ["203.0.113.10|8443|1", "203.0.113.10|", "203.0.113.10|port"])
def test_misp_bad_composite(value: str) -> None:
    result = parse_misp(misp_event({"type": "ip-dst|port", "value": value, "to_ids": True}))
    assert (result.iocs, reasons(result)) == ([], [(1, "value")])


def test_misp_ip_type_with_domain_value() -> None:
    result = parse_misp(misp_event({"type": "ip-dst", "value": "bad.example.net", "to_ids": True}))
    assert reasons(result) == [(1, "value")]


def test_misp_object_attributes_load() -> None:
    obj = {"name": "file", "Attribute": [{"type": "sha1", "value": SHA1_T, "to_ids": True}]}
    result = parse_misp(misp_event({"type": "md5", "value": MD5_T, "to_ids": True}, Object=[obj]))
    assert (keys(result), result.iocs[1].context["misp_object"]) == ([f"md5:{MD5_T}", f"sha1:{SHA1_T}"], "file")


def test_misp_deleted_object_skipped() -> None:
    obj = {"name": "file", "deleted": True, "Attribute": [{"type": "sha1", "value": SHA1_T, "to_ids": True}]}
    result = parse_misp(misp_event(Object=[obj]))
    assert (result.iocs, result.skipped) == ([], 1)


def test_misp_error_line_counts_object_attributes() -> None:
    obj = {"name": "file", "Attribute": [{"type": "md5", "value": "xyz", "to_ids": True}]}
    result = parse_misp(misp_event({"type": "md5", "value": MD5_T, "to_ids": True}, Object=[obj]))
    assert reasons(result) == [(2, "value")]


def test_misp_search_response() -> None:
    response = {"response": [json.loads(misp_event({"type": "md5", "value": MD5_T, "to_ids": True}))]}
    assert keys(parse_misp(response)) == [f"md5:{MD5_T}"]


def test_misp_not_an_event() -> None:
    assert reasons(parse_misp('{"hello": 1}')) == [(0, "input")]


MANIFEST = json.dumps(
    {
        "11111111-1111-4111-8111-111111111111": {"info": "first", "timestamp": "1714521600"},
        "22222222-2222-4222-8222-222222222222": {"info": "second", "timestamp": "1714521600"},
    }
)


def test_misp_feed_reads_manifest_events() -> None:
    events = {"11111111-1111-4111-8111-111111111111": misp_event({"type": "md5", "value": MD5_T, "to_ids": True})}
    result = parse_misp_feed(MANIFEST, events)
    assert keys(result) == [f"md5:{MD5_T}"]


def test_misp_feed_missing_event() -> None:
    result = parse_misp_feed(MANIFEST, {})
    assert reasons(result) == [(0, "missing_event"), (0, "missing_event")]
    assert "11111111-1111-4111-8111-111111111111" in result.errors[0].message


def test_misp_manifest_alone_is_input_error() -> None:
    result = parse_misp(MANIFEST)
    assert reasons(result) == [(0, "input")]
    assert "parse_misp_feed" in result.errors[0].message


# -- OpenIOC -------------------------------------------------------------------------------

OPENIOC_1_0 = """<?xml version="1.0" encoding="UTF-8"?>
<!-- test document -->
<ioc xmlns="http://schemas.mandiant.com/2010/ioc" id="ioc-1" last-modified="2024-05-01T00:00:00Z">
  <short_description>TEST SET</short_description>
  <description>Indicators for a test.</description>
  <links><link rel="threatgroup">APT-X</link><link rel="license">Apache 2.0</link></links>
  <definition>
    <Indicator id="top" operator="OR">
      <IndicatorItem id="item-md5" condition="is">
        <Context document="FileItem" search="FileItem/Md5sum" type="mir"/>
        <Content type="md5">{md5}</Content>
      </IndicatorItem>
      <IndicatorItem id="item-dns" condition="contains">
        <Context document="DnsEntryItem" search="DnsEntryItem/Host" type="mir"/>
        <Content type="string">bad.example.net</Content>
      </IndicatorItem>
      <IndicatorItem id="item-path" condition="is">
        <Context document="FileItem" search="FileItem/FullPath" type="mir"/>
        <Content type="string">C:\\Users\\Public\\doc.exe</Content>
      </IndicatorItem>
      <Indicator id="single" operator="AND">
        <IndicatorItem id="item-ip" condition="is">
          <Context document="PortItem" search="PortItem/remoteIP" type="mir"/>
          <Content type="IP">203.0.113.9</Content>
        </IndicatorItem>
      </Indicator>
      <Indicator id="pair" operator="AND">
        <IndicatorItem id="item-name" condition="is">
          <Context document="FileItem" search="FileItem/FileName" type="mir"/>
          <Content type="string">a.exe</Content>
        </IndicatorItem>
        <IndicatorItem id="item-sha1" condition="is">
          <Context document="FileItem" search="FileItem/Sha1sum" type="mir"/>
          <Content type="string">{sha1}</Content>
        </IndicatorItem>
      </Indicator>
    </Indicator>
  </definition>
</ioc>
""".format(md5=MD5_T.upper(), sha1=SHA1_T)

OPENIOC_1_1 = """\ufeff<?xml version="1.0" encoding="utf-8"?>
<OpenIOC xmlns="http://openioc.org/schemas/OpenIOC_1.1" id="ioc-2" last-modified="2024-05-01T00:00:00Z">
  <metadata><short_description>HX SET</short_description></metadata>
  <criteria>
    <Indicator operator="OR" id="top">
      <IndicatorItem id="item-1" condition="is" preserve-case="false" negate="false">
        <Context document="fileWriteEvent" search="fileWriteEvent/md5" type="event" />
        <Content type="md5">{md5}</Content>
      </IndicatorItem>
      <IndicatorItem id="item-2" condition="is" preserve-case="false" negate="true">
        <Context document="dnsLookupEvent" search="dnsLookupEvent/hostname" type="event" />
        <Content type="string">good.example.net</Content>
      </IndicatorItem>
    </Indicator>
  </criteria>
</OpenIOC>
""".format(md5=MD5_T)


@pytest.fixture(scope="module")
def openioc_result() -> FeedResult:
    return parse_openioc(OPENIOC_1_0, source="fireeye")


def test_openioc_keys(openioc_result: FeedResult) -> None:
    assert keys(openioc_result) == [f"md5:{MD5_T}", "ipv4-addr:203.0.113.9"]


def test_openioc_unsupported_items(openioc_result: FeedResult) -> None:
    assert reasons(openioc_result) == [(line, "unsupported_item") for line in (2, 3, 5, 6)]


def test_openioc_contains_error_names_item(openioc_result: FeedResult) -> None:
    assert "item item-dns" in openioc_result.errors[0].message


def test_openioc_and_error_names_item(openioc_result: FeedResult) -> None:
    assert "item item-name" in openioc_result.errors[2].message
    assert "AND" in openioc_result.errors[2].message


def test_openioc_metadata(openioc_result: FeedResult) -> None:
    ioc = openioc_result.iocs[0]
    expected = ("Indicators for a test.", ["APT-X"], 1_714_521_600_000, "fireeye")
    assert (ioc.description, ioc.tags, ioc.modified, ioc.source) == expected


def test_openioc_context(openioc_result: FeedResult) -> None:
    assert openioc_result.iocs[0].context == {
        "openioc_id": "ioc-1",
        "openioc_name": "TEST SET",
        "openioc_search": "FileItem/Md5sum",
        "openioc_item_id": "item-md5",
        "raw_value": MD5_T.upper(),
    }


def test_openioc_contains_as_is() -> None:
    result = parse_openioc(OPENIOC_1_0, contains_as_is=True)
    assert "domain-name:bad.example.net" in keys(result)
    assert result.iocs[1].context["openioc_condition"] == "contains"


def test_openioc_1_1_negated_item() -> None:
    result = parse_openioc(OPENIOC_1_1)
    assert (keys(result), reasons(result)) == ([f"md5:{MD5_T}"], [(2, "unsupported_item")])


def test_openioc_1_1_short_description_as_description() -> None:
    assert parse_openioc(OPENIOC_1_1).iocs[0].description == "HX SET"


def test_openioc_doctype_rejected() -> None:
    text = '<?xml version="1.0"?><!DOCTYPE ioc [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><ioc>&b;</ioc>'
    result = parse_openioc(text)
    assert (result.iocs, reasons(result)) == ([], [(0, "xml")])


def test_openioc_not_well_formed() -> None:
    result = parse_openioc('<ioc xmlns="http://schemas.mandiant.com/2010/ioc">\n<definition>\n</ioc>')
    assert reasons(result) == [(3, "xml")]


def test_openioc_wrong_root() -> None:
    assert reasons(parse_openioc("<html><body/></html>")) == [(0, "input")]


# -- Format detection ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (bundle(), "stix"),
        (json.dumps(indicator(1, "[file:name = 'a']")), "stix"),
        (misp_event(), "misp"),
        (MANIFEST, "misp"),
        (json.dumps({"response": [json.loads(misp_event())]}), "misp"),
        (OPENIOC_1_0, "openioc"),
        (OPENIOC_1_1, "openioc"),
        ('{"ioc": "bad.example.net", "ioc_type": "domain"}\n{"ioc": "x.example.net"}\n', "plain"),
        ('{"hello": "world"}', "plain"),
        ("<html></html>", "plain"),
    ],
)
def test_detect_structured_format(text: str, expected: str) -> None:
    assert detect_feed_format(text) == expected


def test_parse_feed_auto_stix() -> None:
    text = bundle(indicator(1, "[domain-name:value = 'bad.example.net']"))
    assert keys(parse_feed(text)) == ["domain-name:bad.example.net"]


def test_parse_feed_explicit_openioc_name_as_source() -> None:
    result = parse_feed(OPENIOC_1_0, "openioc", name="test.ioc")
    assert result.iocs[0].source == "test.ioc"


# -- Refanging keeps the scheme (plain feeds) --------------------------------------------


def test_plain_refang_keeps_scheme() -> None:
    lines = [
        "hxxps://login-bad[.]example[.]net/auth",
        "HXXPS://login-bad[.]example[.]net/auth2",
        "tcp://bad[.]example[.]net:8989/c2",
    ]
    result = parse_plain(lines)
    assert [refang(ioc.context["raw_value"]) for ioc in result.iocs] == [
        "https://login-bad.example.net/auth",
        "https://login-bad.example.net/auth2",
        "tcp://bad.example.net:8989/c2",
    ]


# -- Never raises --------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,
)
PATTERN_FRAGMENTS = [
    "[", "]", "(", ")", " OR ", " AND ", " FOLLOWEDBY ", "file:hashes.'SHA-256'", "domain-name:value",
    " = ", " IN ", "'a.example.net'", "'", "\\", " WITHIN 5 SECONDS", ",", "x509:y", "1",
]
XML_FRAGMENTS = [
    "<ioc>", "</ioc>", "<Indicator operator='AND'>", "<Indicator>", "</Indicator>", "<IndicatorItem condition='is'>",
    "</IndicatorItem>", "<Context search='FileItem/Md5sum'/>", "<Content>", "</Content>", "<definition>",
    "</definition>", MD5_T, "&amp;", "<!DOCTYPE x>", "<",
]
INDICATORS = st.fixed_dictionaries(
    {
        "type": st.just("indicator"),
        "id": st.text(max_size=5),
        "pattern": st.lists(st.sampled_from(PATTERN_FRAGMENTS)).map("".join),
    },
    optional={
        "confidence": JSON_VALUES,
        "valid_until": JSON_VALUES,
        "revoked": JSON_VALUES,
        "object_marking_refs": JSON_VALUES,
    },
)
ATTRIBUTES = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["md5", "ip-dst|port", "domain|ip", "filename|sha256", "text", "url"]),
        "value": st.text(max_size=30),
    },
    optional={"to_ids": JSON_VALUES, "timestamp": JSON_VALUES, "Tag": JSON_VALUES, "deleted": JSON_VALUES},
)


@settings(max_examples=200, deadline=None)
@given(text=st.text())
def test_parsers_never_raise_on_text(text: str) -> None:
    results = [parse_stix(text), parse_misp(text), parse_openioc(text), parse_feed(text)]
    assert all(isinstance(result, FeedResult) for result in results)


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES)
def test_parsers_never_raise_on_json(value: Any) -> None:
    results = [parse_stix(json.dumps(value)), parse_misp(json.dumps(value)), parse_stix(value), parse_misp(value)]
    assert all(isinstance(result, FeedResult) for result in results)


@settings(max_examples=200, deadline=None)
@given(objects=st.lists(INDICATORS, max_size=4))
def test_stix_never_raises_on_indicators(objects: list[dict[str, Any]]) -> None:
    result = parse_stix({"type": "bundle", "objects": objects})
    assert [error for error in result.errors if error.reason == "internal"] == []


@settings(max_examples=200, deadline=None)
@given(attributes=st.lists(ATTRIBUTES, max_size=4), threat_level=JSON_VALUES, tags=JSON_VALUES)
def test_misp_never_raises_on_attributes(attributes: list[dict[str, Any]], threat_level: Any, tags: Any) -> None:
    event = {"Event": {"Attribute": attributes, "threat_level_id": threat_level, "Tag": tags}}
    result = parse_misp(event, include_non_ids=True)
    assert [error for error in result.errors if error.reason == "internal"] == []


@settings(max_examples=200, deadline=None)
@given(text=st.lists(st.sampled_from(XML_FRAGMENTS)).map("".join))
def test_openioc_never_raises_on_xml(text: str) -> None:
    result = parse_openioc(text)
    assert [error for error in result.errors if error.reason == "internal"] == []


# -- Real feeds, read in place -----------------------------------------------------------

# (IOCs, errors by reason, skipped), counted by hand from the files as published.
REAL_COUNTS: dict[str, tuple[int, dict[str, int], int]] = {
    "stix21/oasis_apt1.json": (10, {"unsupported_pattern": 2}, 64),
    "stix21/oasis_indicator-for-c2-ip-address.json": (1, {}, 0),
    "stix21/oasis_indicators-for-C2-with-COA.json": (2, {}, 6),
    "stix21/oasis_malicious-email-indicator-with-attachment.json": (0, {"unsupported_pattern": 2}, 4),
    "stix21/oasis_poisonivy.json": (44, {"value": 1}, 130),
    "misp/circl_osint_feed_event_57c4445b-c548-4654-af0b-4be3950d210f.json": (4, {"unsupported_type": 1}, 4),
    "misp/eset_cloudmensis.misp.json": (9, {"unsupported_type": 2}, 11),
    "misp/eset_misp.event_2021-06-10_backdoordiplomacy.json": (66, {}, 1),
    "misp/eset_oceanlotus-wateringhole-2018.misp.event.json": (0, {}, 75),
    "openioc/fireeye_APT28_0ff58bf9-1c07-42f6-b135-b18c139f631a.ioc": (0, {"unsupported_item": 14}, 0),
    "openioc/fireeye_APT3_db0b6ac6-874a-498e-892b-ac7c2020e061.ioc": (5, {"unsupported_item": 25}, 0),
    "openioc/fireeye_BlogPosts_4fdb0f45-8151-4941-a9e1-a31e21000659.ioc": (8, {"unsupported_item": 30}, 0),
    "openioc/fireeye_FIN4_fb0699e2-23a6-40f9-bf96-4514d629eec3.ioc": (0, {"unsupported_item": 12}, 0),
    "openioc/mandiant_SUNBURST_COMPROMISE_INDICATORS.ioc": (5, {"unsupported_item": 12}, 0),
}
REAL_FORMATS = {"stix21": "stix", "misp": "misp", "openioc": "openioc"}


def real_feed_files() -> list[str]:
    found = [
        f"{folder}/{path.name}"
        for folder in REAL_FORMATS
        for path in sorted((REAL_IOC / folder).glob("*"))
        if path.suffix in (".json", ".ioc")
    ]
    return found or sorted(REAL_COUNTS)


def error_counts(result: FeedResult) -> dict[str, int]:
    counts: dict[str, int] = {}
    for error in result.errors:
        counts[error.reason] = counts.get(error.reason, 0) + 1
    return counts


@pytest.mark.parametrize("relative", real_feed_files())
def test_real_counts(relative: str) -> None:
    result = parse_feed(read_real(relative), name=relative)
    assert (len(result.iocs), error_counts(result), result.skipped) == REAL_COUNTS[relative]


@pytest.mark.parametrize("relative", real_feed_files())
def test_real_format_detected(relative: str) -> None:
    assert detect_feed_format(read_real(relative)) == REAL_FORMATS[relative.split("/")[0]]


def test_real_apt1_values() -> None:
    found = keys(parse_stix(read_real("stix21/oasis_apt1.json")))
    assert found[0] == "ipv4-addr:223.166.0.0/15"
    assert "md5:001dd76872d80801692ff942308c64e6" in found


def test_real_apt1_x509_and_reported() -> None:
    result = parse_stix(read_real("stix21/oasis_apt1.json"))
    assert "indicator--b3b6b540-d838-41e2-853b-005056c00008" in result.errors[0].message


def test_real_coa_sha256() -> None:
    found = keys(parse_stix(read_real("stix21/oasis_indicators-for-C2-with-COA.json")))
    assert found == ["ipv4-addr:10.0.0.0", "sha256:ef537f25c895bfa782526529a9b63d97aa631564d5d789c2b765448c8635fb6c"]


def test_real_poisonivy_bad_domain_names_indicator() -> None:
    result = parse_stix(read_real("stix21/oasis_poisonivy.json"))
    message = result.errors[0].message
    assert "indicator--4e4c4ad7-4909-456a-b6fa-e24a6f682a40" in message and "domain autuo.xicp.net" in message


def test_real_poisonivy_first_ioc() -> None:
    ioc = parse_stix(read_real("stix21/oasis_poisonivy.json")).iocs[0]
    assert (ioc.key, ioc.tags) == ("ipv4-addr:219.76.208.163", ["malicious-activity", "attribution"])


def test_real_circl_values() -> None:
    result = parse_misp(read_real("misp/circl_osint_feed_event_57c4445b-c548-4654-af0b-4be3950d210f.json"))
    assert keys(result) == [
        "file-name:3z4wng9603it23y.exe",
        "md5:0749bae92ca336a02c83d126e04ec628",
        "sha1:77b0c41b7d340b8a3d903f21347bbf06aa766b5b",
        "sha256:b3c4ae251f8094fa15b510051835c657eaef2a6cea46075d3aec964b14a99f68",
    ]


def test_real_circl_metadata() -> None:
    ioc = parse_misp(read_real("misp/circl_osint_feed_event_57c4445b-c548-4654-af0b-4be3950d210f.json")).iocs[1]
    expected = ("white", "low", "Ransomware - Xorist", 1_472_480_395_000)
    assert (ioc.tlp, ioc.severity, ioc.description, ioc.modified) == expected


def test_real_cloudmensis_object_hashes() -> None:
    result = parse_misp(read_real("misp/eset_cloudmensis.misp.json"))
    assert keys(result)[:3] == [
        "md5:01c0b7c5bf605ed267b2be3d024eb90f",
        "sha1:d7bf702f56ca53140f4f03b590e9afcbc83809db",
        "sha256:273633eee4776aef40904124ed1722a0793e6567f3009cdb037ed0a9d79c1b0b",
    ]


def test_real_oceanlotus_include_non_ids() -> None:
    result = parse_misp(read_real("misp/eset_oceanlotus-wateringhole-2018.misp.event.json"), include_non_ids=True)
    assert (len(result.iocs), result.errors, result.skipped) == (120, [], 2)


def test_real_oceanlotus_domain_ip_pair() -> None:
    result = parse_misp(read_real("misp/eset_oceanlotus-wateringhole-2018.misp.event.json"), include_non_ids=True)
    by_key = {ioc.key: ioc for ioc in result.iocs}
    assert by_key["ipv4-addr:178.128.103.24"].context["domain"] == "arabica.podzone.net"


def test_real_misp_feed_from_event_file() -> None:
    uuid = "57c4445b-c548-4654-af0b-4be3950d210f"
    manifest = json.dumps({uuid: {"info": "Ransomware - Xorist"}})
    result = parse_misp_feed(manifest, {uuid: read_real(f"misp/circl_osint_feed_event_{uuid}.json")})
    assert len(result.iocs) == 4


def test_real_apt3_md5s() -> None:
    result = parse_openioc(read_real("openioc/fireeye_APT3_db0b6ac6-874a-498e-892b-ac7c2020e061.ioc"))
    assert keys(result) == [
        "md5:5a0c4e1925c76a959ab0588f683ab437",
        "md5:492a839a3bf9c61b7065589a18c5aa8d",
        "md5:744a17a3bc6dbd535f568ef1e87d8b9a",
        "md5:5c08957f05377004376e6a622406f9aa",
        "md5:8849538ef1c3471640230605c2623c67",
    ]


def test_real_apt3_tags() -> None:
    ioc = parse_openioc(read_real("openioc/fireeye_APT3_db0b6ac6-874a-498e-892b-ac7c2020e061.ioc")).iocs[0]
    assert ioc.tags == ["APT3", "APT"]


def test_real_blogposts_ip_and_file_name() -> None:
    found = keys(parse_openioc(read_real("openioc/fireeye_BlogPosts_4fdb0f45-8151-4941-a9e1-a31e21000659.ioc")))
    assert (found[0], found[-1]) == ("ipv4-addr:184.174.122.30", "file-name:ee2un066aepv4.php")


def test_real_sunburst_1_1_md5() -> None:
    ioc = parse_openioc(read_real("openioc/mandiant_SUNBURST_COMPROMISE_INDICATORS.ioc")).iocs[0]
    expected = ("md5:b91ce2fa41029f6955bff20079468448", "SUNBURST COMPROMISE INDICATORS")
    assert (ioc.key, ioc.context["openioc_name"]) == expected


@pytest.mark.parametrize(
    ("relative", "count", "example"),
    [
        ("openioc/fireeye_APT28_0ff58bf9-1c07-42f6-b135-b18c139f631a.ioc", 14, "domain-name:kavkazcentr.info"),
        ("openioc/mandiant_SUNBURST_COMPROMISE_INDICATORS.ioc", 11, "domain-name:avsvmcloud.com"),
    ],
)
def test_real_contains_as_is(relative: str, count: int, example: str) -> None:
    result = parse_openioc(read_real(relative), contains_as_is=True)
    assert (len(result.iocs), example in keys(result)) == (count, True)
