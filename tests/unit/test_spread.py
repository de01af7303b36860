"""Spread state per IOC and the "seen elsewhere" alert."""

from __future__ import annotations

import hashlib
from typing import Any

from detectors.alert import RULE_ID
from detectors.spread import alert_id, apply_sighting, build_alert, new_state

NOW = 1_714_694_400_000  # 2024-05-03T00:00:00Z
H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
IOC_KEY = f"sha256:{H256}"


def _sighting(
    offset: int,
    hosts: list[str],
    users: list[str] | None = None,
    *,
    stage: str = "executed",
    source: str = "edr",
    timestamp_ms: int | None = NOW,
) -> dict[str, Any]:
    return {
        "ioc": {
            "key": IOC_KEY,
            "type": "sha256",
            "stix_type": "file",
            "value": H256,
            "source": "unit-feed",
            "severity": "high",
            "confidence": 80,
            "tags": ["loader"],
        },
        "event": {
            "source": source,
            "format": "sysmon",
            "code": "1",
            "timestamp_ms": timestamp_ms,
            "field": "file.hash.sha256",
            "stage": stage,
            "topic": "edr",
            "partition": 0,
            "offset": offset,
        },
        "hosts": hosts,
        "users": users or [],
        "retro": False,
    }


def _apply_all(state: dict[str, Any], *sightings: dict[str, Any], max_entities: int = 1000) -> list[bool]:
    return [apply_sighting(state, sighting, NOW, max_entities) for sighting in sightings]


def test_spread_first_host_no_alert() -> None:
    assert _apply_all(new_state(), _sighting(1, ["ws01.example.com"])) == [False]


def test_spread_second_host_alerts() -> None:
    state = new_state()
    results = _apply_all(state, _sighting(1, ["ws01.example.com"]), _sighting(2, ["ws02.example.com"]))
    assert results == [False, True]


def test_spread_second_user_alerts() -> None:
    state = new_state()
    results = _apply_all(
        state,
        _sighting(1, ["ws01.example.com"], ["alice@example.com"]),
        _sighting(2, ["ws01.example.com"], ["bob@example.com"]),
    )
    assert results == [False, True]


def test_spread_two_hosts_in_one_event_alert() -> None:
    assert _apply_all(new_state(), _sighting(1, ["ws01.example.com", "ws02.example.com"])) == [True]


def test_spread_repeats_no_alert() -> None:
    state = new_state()
    results = _apply_all(
        state,
        _sighting(1, ["ws01.example.com"]),
        _sighting(2, ["ws01.example.com"]),
        _sighting(3, ["ws02.example.com"]),
        _sighting(4, ["ws01.example.com"]),
        _sighting(5, ["ws02.example.com"]),
    )
    assert results == [False, False, True, False, False]


def test_spread_each_new_entity_updates() -> None:
    state = new_state()
    results = _apply_all(
        state,
        _sighting(1, ["ws01.example.com"]),
        _sighting(2, ["ws02.example.com"]),
        _sighting(3, ["ws03.example.com"]),
        _sighting(4, ["ws03.example.com"], ["carol@example.com"]),
    )
    assert results == [False, True, True, True]


def test_spread_duplicate_event_ignored() -> None:
    state = new_state()
    _apply_all(state, _sighting(1, ["ws01.example.com"], ["alice@example.com"]))
    assert _apply_all(state, _sighting(1, ["ws01.example.com"], ["alice@example.com"])) == [False]
    assert state["sightings"] == 1


def test_spread_same_record_other_recipient_counts() -> None:
    state = new_state()
    _apply_all(state, _sighting(1, [], ["alice@example.com"], stage="delivered", source="mail"))
    assert _apply_all(state, _sighting(1, [], ["bob@example.com"], stage="delivered", source="mail")) == [True]
    assert state["sightings"] == 2


def test_spread_max_entities_overflow() -> None:
    state = new_state()
    results = _apply_all(state, *(_sighting(i, [f"ws{i:02d}.example.com"]) for i in range(4)), max_entities=2)
    assert results == [False, True, False, False]
    assert sorted(state["hosts"]) == ["ws00.example.com", "ws01.example.com"]
    assert state["overflow"] == 2


def test_spread_stage_escalates() -> None:
    state = new_state()
    _apply_all(state, _sighting(1, ["ws01.example.com"], stage="delivered"))
    _apply_all(state, _sighting(2, ["ws01.example.com"], stage="contacted"))
    assert state["hosts"]["ws01.example.com"]["stage"] == "contacted"
    _apply_all(state, _sighting(3, ["ws01.example.com"], stage="executed"))
    assert state["hosts"]["ws01.example.com"]["stage"] == "executed"


def test_spread_stage_never_lowers() -> None:
    state = new_state()
    _apply_all(state, _sighting(1, ["ws01.example.com"], stage="executed"))
    _apply_all(state, _sighting(2, ["ws01.example.com"], stage="delivered"))
    assert state["hosts"]["ws01.example.com"]["stage"] == "executed"


def test_spread_first_last_seen_from_events() -> None:
    state = new_state()
    _apply_all(
        state,
        _sighting(1, ["ws01.example.com"], timestamp_ms=NOW + 5000),
        _sighting(2, ["ws01.example.com"], timestamp_ms=NOW + 1000),
    )
    assert (state["first_seen"], state["last_seen"]) == (NOW + 1000, NOW + 5000)


def _alert_after_two_hosts() -> tuple[dict[str, Any], dict[str, Any]]:
    state = new_state()
    _apply_all(
        state,
        _sighting(1, ["ws02.example.com"], ["bob@example.com"]),
        _sighting(2, ["ws01.example.com"], ["alice@example.com"]),
    )
    return state, build_alert(state, NOW + 60_000)


def test_alert_event_kind() -> None:
    _, alert = _alert_after_two_hosts()
    assert alert["event"]["kind"] == "alert"
    assert alert["rule"]["id"] == RULE_ID


def test_alert_indicator_stix_type_and_value() -> None:
    _, alert = _alert_after_two_hosts()
    assert alert["threat"]["indicator"]["type"] == "file"
    assert alert["threat"]["indicator"]["value"] == H256
    assert alert["threat"]["indicator"]["file"] == {"hash": {"sha256": H256}}


def test_alert_related_sorted() -> None:
    _, alert = _alert_after_two_hosts()
    assert alert["related"]["hosts"] == ["ws01.example.com", "ws02.example.com"]
    assert alert["related"]["user"] == ["alice@example.com", "bob@example.com"]
    assert alert["related"]["hash"] == [H256]


def test_alert_times_iso() -> None:
    _, alert = _alert_after_two_hosts()
    assert alert["@timestamp"] == "2024-05-03T00:01:00.000Z"
    assert alert["threat"]["indicator"]["first_seen"] == "2024-05-03T00:00:00.000Z"


def test_alert_sequence_increments() -> None:
    state, first = _alert_after_two_hosts()
    _apply_all(state, _sighting(3, ["ws03.example.com"]))
    second = build_alert(state, NOW + 120_000)
    assert first["yokoten"]["sequence"] == 1
    assert second["yokoten"]["sequence"] == 2
    assert second["event"]["id"] == f"{alert_id(IOC_KEY)}-2"


def test_alert_id_stable_per_ioc() -> None:
    state, first = _alert_after_two_hosts()
    _apply_all(state, _sighting(3, ["ws03.example.com"]))
    second = build_alert(state, NOW + 120_000)
    assert first["yokoten"]["alert_id"] == second["yokoten"]["alert_id"]
    assert first["yokoten"]["alert_id"] == hashlib.sha256(IOC_KEY.encode()).hexdigest()[:32]


def test_alert_id_differs_per_ioc() -> None:
    assert alert_id(IOC_KEY) != alert_id("domain-name:bad.example.net")


def test_alert_scope_counts() -> None:
    state, _ = _alert_after_two_hosts()
    _apply_all(state, _sighting(3, ["ws01.example.com"], stage="contacted", source="proxy"))
    alert = build_alert(state, NOW)
    ws01 = alert["yokoten"]["scope"]["hosts"][0]
    assert ws01["name"] == "ws01.example.com"
    assert ws01["count"] == 2
    assert ws01["sources"] == {"edr": 1, "proxy": 1}
    assert ws01["stage"] == "executed"
    assert alert["yokoten"]["sources"] == {"edr": 2, "proxy": 1}
    assert alert["threat"]["indicator"]["sightings"] == 3


def test_alert_overflow_reported() -> None:
    state = new_state()
    _apply_all(state, *(_sighting(i, [f"ws{i:02d}.example.com"]) for i in range(3)), max_entities=2)
    assert build_alert(state, NOW)["yokoten"]["entities_overflow"] == 1


def test_spread_stage_escalation_alerts() -> None:
    state = new_state()
    decisions = _apply_all(
        state,
        _sighting(1, ["ws01.example.com"], stage="contacted", source="proxy"),
        _sighting(2, ["ws02.example.com"], stage="contacted", source="proxy"),
        _sighting(3, ["ws01.example.com"], stage="executed"),
        _sighting(4, ["ws01.example.com"], stage="executed"),
        _sighting(5, ["ws01.example.com"], stage="contacted", source="proxy"),
    )
    assert decisions == [False, True, True, False, False]
    assert state["hosts"]["ws01.example.com"]["stage"] == "executed"


def test_spread_escalation_before_spread_silent() -> None:
    decisions = _apply_all(
        new_state(),
        _sighting(1, ["ws01.example.com"], stage="contacted", source="proxy"),
        _sighting(2, ["ws01.example.com"], stage="executed"),
    )
    assert decisions == [False, False]
