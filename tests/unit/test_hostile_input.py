"""Hostile and malformed values that must be rejected cleanly, never crash a worker."""

from __future__ import annotations

import orjson
import pytest

from detectors.adapters import parse_record
from detectors.exceptions import FeedError, MalformedRecordError
from detectors.identity import IdentityRules
from detectors.ioc import ioc_from_record
from detectors.observables import detect_type
from detectors.observation import SourceKind
from detectors.timestamps import format_timestamp, parse_timestamp

RULES = IdentityRules("corp.example", {"CORP": "corp.example"}, {"10.20.0.11": "ws01"})


def _sysmon(**fields: object) -> bytes:
    record = {"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "WS09.corp.example"}
    record.update(fields)
    return orjson.dumps(record)


@pytest.mark.parametrize("value", [1e308, -1e20, 1764493924000000, float("inf"), "9" * 400, "²", "NaN"])
def test_timestamp_out_of_range_is_none(value: object) -> None:
    assert parse_timestamp(value) is None


def test_timestamp_year_9999_formats() -> None:
    assert format_timestamp(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"


def test_sysmon_huge_utctime_ignored() -> None:
    observation = parse_record(_sysmon(UtcTime=1e308), "sysmon", RULES)
    assert observation.timestamp_ms is None


@pytest.mark.parametrize("event_id", ["²", {"#text": "²"}, "9" * 5000, {"a": "b"}, True, None, 1.5])
def test_sysmon_bad_event_id_rejected(event_id: object) -> None:
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(_sysmon(EventID=event_id), "sysmon", RULES)
    assert caught.value.reason == "field_type"


@pytest.mark.parametrize("field", ["Hostname", "User", "CommandLine", "Image", "QueryName", "DestinationIp"])
@pytest.mark.parametrize("value", [12345, ["a"], {"a": 1}, True])
def test_sysmon_wrong_type_names_field(field: str, value: object) -> None:
    with pytest.raises(MalformedRecordError, match=f"{field} is a JSON") as caught:
        parse_record(_sysmon(**{field: value}), "sysmon", RULES)
    assert caught.value.reason == "field_type"


@pytest.mark.parametrize(
    "document",
    [
        {"email": {"to": {"address": 5}}},
        {"email": {"to": {"address": {"a": 1}}}},
        {"url": {"full": 5}},
        {"event": {"category": 7}},
    ],
)
def test_ecs_wrong_type_rejected(document: dict[str, object]) -> None:
    base = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"category": ["email"]}}
    base.update(document)
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(orjson.dumps(base), "ecs", RULES, SourceKind.MAIL)
    assert caught.value.reason == "field_type"


def test_ecs_null_recipient_is_missing() -> None:
    document = {"@timestamp": "2026-01-01T00:00:00Z", "event": {"category": ["email"]}, "email": {"to": {"address": None}}}
    assert parse_record(orjson.dumps(document), "ecs", RULES).users == []


def test_host_with_nul_not_entity() -> None:
    assert RULES.host("ws01\x00") is None


def test_host_alias_maps_address() -> None:
    assert RULES.host("10.20.0.11") == "ws01.corp.example"


def test_host_alias_invalid_address_raises() -> None:
    with pytest.raises(ValueError, match="not an IP address"):
        IdentityRules(host_aliases={"ws01": "ws01.corp.example"})


@pytest.mark.parametrize("value", ["1.2.3.4/33", "example.com:99999", "10.0.0.1/999"])
def test_feed_typo_not_typed(value: str) -> None:
    assert detect_type(value) is None


@pytest.mark.parametrize(
    "record",
    [
        {"value": "198.51.100.80", "confidence": "1e999"},
        {"value": "198.51.100.80", "confidence": "inf"},
        {"value": "198.51.100.80", "valid_until": "9" * 20},
        {"value": "198.51.100.80", "tags": 5},
    ],
)
def test_ioc_record_bad_field_is_feed_error(record: dict[str, object]) -> None:
    with pytest.raises(FeedError):
        ioc_from_record(record)


def test_ioc_record_list_is_feed_error() -> None:
    with pytest.raises(FeedError, match="JSON list"):
        ioc_from_record([1, 2])  # type: ignore[arg-type]


def test_ioc_revoked_string_false() -> None:
    assert ioc_from_record({"value": "198.51.100.80", "revoked": "false"}).revoked is False
