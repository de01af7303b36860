"""The correlator dead-letters malformed sightings instead of crashing its agent."""

from __future__ import annotations

import orjson
import pytest

from service.correlator import validate_sighting

GOOD = {
    "ioc": {
        "key": "domain-name:bad.example.net",
        "type": "domain-name",
        "stix_type": "domain-name",
        "value": "bad.example.net",
        "source": "feed",
        "severity": "high",
    },
    "event": {
        "topic": "t",
        "partition": 0,
        "offset": 1,
        "source": "proxy",
        "stage": "contacted",
        "field": "url.full",
        "timestamp_ms": 1_700_000_000_000,
    },
    "hosts": ["ws1.example.com"],
    "users": [],
    "retro": False,
}


def test_valid_sighting_passes() -> None:
    assert validate_sighting(orjson.dumps(GOOD)) == GOOD


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ioc": "x"}, "ioc is str"),
        ({"event": 5}, "event is int"),
        ({"ioc": {**GOOD["ioc"], "key": 5}}, "ioc.key"),
        ({"ioc": {**GOOD["ioc"], "type": "nope"}}, "known IOC type"),
        ({"event": {**GOOD["event"], "offset": -1}}, "event.offset"),
        ({"event": {**GOOD["event"], "partition": True}}, "event.partition"),
        ({"event": {**GOOD["event"], "stage": "bogus"}}, "stage 'bogus'"),
        ({"event": {**GOOD["event"], "timestamp_ms": 10**18}}, "timestamp_ms"),
        ({"hosts": 5}, "hosts is not a list"),
        ({"users": [1]}, "users is not a list"),
    ],
)
def test_invalid_sighting_rejected(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_sighting(orjson.dumps({**GOOD, **change}))


@pytest.mark.parametrize("raw", [b"[1, 2]", b'"text"', b"5"])
def test_non_object_sighting_rejected(raw: bytes) -> None:
    with pytest.raises(ValueError, match="expected an object"):
        validate_sighting(raw)
