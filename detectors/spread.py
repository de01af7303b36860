"""Spread state per IOC and the "same IOC seen elsewhere" alert.

The state is a plain JSON-compatible dict so the correlator can keep it in a
Kafka-changelog-backed table and the offline replay in a dict. An IOC alerts
once it has been seen by two distinct hosts or two distinct users, and again
for every further new host or user; repeated sightings by known entities
only update counts and never emit an alert.
"""

from __future__ import annotations

import hashlib
from typing import Any

from detectors.observation import STAGE_ORDER, Stage
from detectors.observables import HASH_TYPES, ObservableType
from detectors.timestamps import format_timestamp

RULE_NAME = "IOC seen on more than one host or user"
RULE_ID = "yokoten-spread"
# ECS event.severity is numeric; these follow the usual 0-100 risk-score bands.
SEVERITY_SCORE = {"low": 21, "medium": 47, "high": 73, "critical": 99}
MAX_EVENT_REFS = 50
RECENT_REFS = 500


def new_state() -> dict[str, Any]:
    return {"ioc": {}, "hosts": {}, "users": {}, "sources": {}, "sightings": 0, "seq": 0, "refs": [], "recent": [], "overflow": 0}


def _ref_id(event: dict[str, Any]) -> str:
    return f"{event['topic']}/{event['partition']}/{event['offset']}"


def _touch_entity(
    table: dict[str, dict[str, Any]], name: str, event: dict[str, Any], seen_ms: int, max_entities: int
) -> bool | None:
    """Record one sighting by entity ``name``; True when it is new, None when capped."""
    entry = table.get(name)
    stage = event["stage"]
    if entry is None:
        if len(table) >= max_entities:
            return None
        table[name] = {"first_seen": seen_ms, "last_seen": seen_ms, "count": 1, "sources": {event["source"]: 1}, "stage": stage}
        return True
    entry["first_seen"] = min(entry["first_seen"], seen_ms)
    entry["last_seen"] = max(entry["last_seen"], seen_ms)
    entry["count"] += 1
    entry["sources"][event["source"]] = entry["sources"].get(event["source"], 0) + 1
    if STAGE_ORDER[Stage(stage)] > STAGE_ORDER[Stage(entry["stage"])]:
        entry["stage"] = stage
    return False


def apply_sighting(state: dict[str, Any], sighting: dict[str, Any], now_ms: int, max_entities: int = 1000) -> bool:
    """Fold one sighting into ``state``; return True when an alert is due.

    A sighting whose event reference was already applied (a redelivery after
    a crash) changes nothing. ``max_entities`` caps hosts and users tracked
    per IOC; beyond it only ``overflow`` grows.
    """
    event = sighting["event"]
    ref = _ref_id(event)
    if ref in state["recent"]:
        return False
    state["recent"].append(ref)
    del state["recent"][:-RECENT_REFS]
    state["ioc"] = sighting["ioc"]
    seen_ms = event.get("timestamp_ms") or now_ms
    state["first_seen"] = min(state.get("first_seen", seen_ms), seen_ms)
    state["last_seen"] = max(state.get("last_seen", seen_ms), seen_ms)
    state["sightings"] += 1
    state["sources"][event["source"]] = state["sources"].get(event["source"], 0) + 1
    state["retro"] = bool(sighting.get("retro")) and state.get("retro", True)
    new_entity = False
    for table, names in ((state["hosts"], sighting["hosts"]), (state["users"], sighting["users"])):
        for name in names:
            added = _touch_entity(table, name, event, seen_ms, max_entities)
            if added is None:
                state["overflow"] += 1
            new_entity = new_entity or bool(added)
    state["refs"].append(
        {**{k: event[k] for k in ("topic", "partition", "offset", "source", "field")}, "hosts": sighting["hosts"], "users": sighting["users"]}
    )
    del state["refs"][:-MAX_EVENT_REFS]
    return new_entity and is_spread(state)


def is_spread(state: dict[str, Any]) -> bool:
    """Return True when the IOC was seen by more than one host or more than one user."""
    return len(state["hosts"]) >= 2 or len(state["users"]) >= 2


def alert_id(ioc_key: str) -> str:
    """Return the stable alert id of an IOC, so downstream systems keep the latest update."""
    return hashlib.sha256(ioc_key.encode("utf-8")).hexdigest()[:32]


def _entities(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "first_seen": format_timestamp(entry["first_seen"]),
            "last_seen": format_timestamp(entry["last_seen"]),
            "count": entry["count"],
            "sources": entry["sources"],
            "stage": entry["stage"],
        }
        for name, entry in sorted(table.items())
    ]


def build_alert(state: dict[str, Any], now_ms: int) -> dict[str, Any]:
    """Render the ECS alert document carrying the IOC's whole current scope.

    Call after ``apply_sighting`` returned True; increments the sequence.
    """
    state["seq"] += 1
    ioc = state["ioc"]
    kind = ObservableType(ioc["type"])
    indicator: dict[str, Any] = {
        "type": ioc["stix_type"],
        "value": ioc["value"],
        "provider": ioc["source"],
        "first_seen": format_timestamp(state["first_seen"]),
        "last_seen": format_timestamp(state["last_seen"]),
        "sightings": state["sightings"],
    }
    if ioc.get("confidence") is not None:
        indicator["confidence"] = str(ioc["confidence"])
    if kind in HASH_TYPES:
        indicator["file"] = {"hash": {kind.value: ioc["value"]}}
    identifier = alert_id(ioc["key"])
    hosts = sorted(state["hosts"])
    users = sorted(state["users"])
    alert = {
        "@timestamp": format_timestamp(now_ms),
        "event": {
            "kind": "alert",
            "category": ["threat"],
            "type": ["indicator"],
            "severity": SEVERITY_SCORE.get(ioc["severity"], SEVERITY_SCORE["medium"]),
            "id": f"{identifier}-{state['seq']}",
        },
        "rule": {"id": RULE_ID, "name": RULE_NAME},
        "threat": {"indicator": indicator},
        "related": {"hosts": hosts, "user": users},
        "tags": ioc.get("tags", []),
        "yokoten": {
            "alert_id": identifier,
            "sequence": state["seq"],
            "ioc_key": ioc["key"],
            "ioc_type": ioc["type"],
            "severity": ioc["severity"],
            "retro": state.get("retro", False),
            "scope": {"hosts": _entities(state["hosts"]), "users": _entities(state["users"])},
            "sources": state["sources"],
            "entities_overflow": state["overflow"],
            "sightings": state["refs"],
        },
    }
    if (kind is ObservableType.IPV4 or kind is ObservableType.IPV6) and "/" not in ioc["value"]:
        alert["related"]["ip"] = [ioc["value"]]
    if kind in HASH_TYPES:
        alert["related"]["hash"] = [ioc["value"]]
    return alert
