"""Spread state per IOC: who saw it, when, and how far it got on each.

The state is a plain JSON-compatible dict so the correlator can keep it in a
Kafka-changelog-backed table and the offline replay in a dict.

An IOC is spread, and alerts, once its entities form more than one spread
path: two distinct hosts, two distinct users, or a host and a user that no
event links (a mailbox that received the file and an unrelated host that
ran it). Every further new host or user raises an updated alert, and so
does a known one that gets further (a recipient who clicks, a host that runs
what it downloaded). Other repeated sightings by known entities only update
counts. A CVE pushed as an IOC is
different: every host a scanner reports it open on is news, so each new
host alerts, the first one included.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any

from detectors.alert import alert_id, build_alert
from detectors.observation import STAGE_ORDER, Stage

IMPLICIT_SOURCE = "yokoten-implicit"

MAX_EVENT_REFS = 50
RECENT_REFS = 500
MAX_LINKS_PER_HOST = 20
DAY_MS = 24 * 60 * 60 * 1000

__all__ = ["SpreadPolicy", "alert_id", "apply_sighting", "build_alert", "is_spread", "new_state", "spread_paths"]


@dataclass(frozen=True)
class SpreadPolicy:
    """Limits and thresholds of the spread state.

    ``max_entities``: hosts and users tracked per IOC; beyond it only
    ``overflow`` grows, so one noisy IOC cannot exhaust memory.
    ``window_ms``: an entity not seen for this long before the IOC's newest
    sighting ages out (None keeps every entity). ``org_wide_hosts``: hosts
    at which the alert requests an organisation-wide response.
    """

    max_entities: int = 1000
    window_ms: int | None = 30 * DAY_MS
    org_wide_hosts: int = 5


def new_state() -> dict[str, Any]:
    return {
        "ioc": {},
        "hosts": {},
        "users": {},
        "links": {},
        "sources": {},
        "sightings": 0,
        "seq": 0,
        "refs": [],
        "recent": [],
        "overflow": 0,
    }


def _ref_id(sighting: dict[str, Any]) -> str:
    """Identify the event a sighting came from, so a redelivered sighting is recognised.

    A joined format may emit several observations for one record (one per
    mail recipient), so the entities are part of the identity.
    """
    event = sighting["event"]
    entities = zlib.crc32("\x00".join([*sighting["hosts"], "\x01", *sighting["users"]]).encode("utf-8"))
    return f"{event['topic']}/{event['partition']}/{event['offset']}/{entities:08x}"


def _touch_entity(
    table: dict[str, dict[str, Any]], name: str, event: dict[str, Any], seen_ms: int, max_entities: int
) -> bool | None:
    """Record one sighting by entity ``name``; True when it is new, None when capped."""
    entry = table.get(name)
    stage = event["stage"]
    attributes = event.get("attributes") or {}
    if entry is None:
        if len(table) >= max_entities:
            return None
        table[name] = {
            "first_seen": seen_ms,
            "last_seen": seen_ms,
            "count": 1,
            "sources": {event["source"]: 1},
            "stage": stage,
        }
        if attributes:
            table[name]["attributes"] = attributes
        return True
    entry["first_seen"] = min(entry["first_seen"], seen_ms)
    entry["last_seen"] = max(entry["last_seen"], seen_ms)
    entry["count"] += 1
    entry["sources"][event["source"]] = entry["sources"].get(event["source"], 0) + 1
    if STAGE_ORDER[Stage(stage)] > STAGE_ORDER[Stage(entry["stage"])]:
        entry["stage"] = stage
    if attributes:
        entry["attributes"] = attributes
    return False


def _age_out(state: dict[str, Any], window_ms: int | None) -> None:
    """Drop entities not seen within ``window_ms`` before the IOC's newest sighting.

    The reference is event time, not the wall clock, so a retro-hunt over old
    events ages entities exactly as live processing did.
    """
    if window_ms is None or "last_seen" not in state:
        return
    cutoff = state["last_seen"] - window_ms
    for table in (state["hosts"], state["users"]):
        for name in [name for name, entry in table.items() if entry["last_seen"] < cutoff]:
            del table[name]
            state["links"].pop(name, None)
    for host, users in list(state["links"].items()):
        kept = [user for user in users if user in state["users"]]
        if kept:
            state["links"][host] = kept
        else:
            del state["links"][host]


def _link(state: dict[str, Any], hosts: list[str], users: list[str]) -> None:
    """Remember that an event named these hosts and users together."""
    users = [user for user in users if user in state["users"]]
    for host in hosts:
        if host not in state["hosts"] or not users:
            continue
        linked = state["links"].setdefault(host, [])
        for user in users:
            if user not in linked and len(linked) < MAX_LINKS_PER_HOST:
                linked.append(user)


def _escalates(table: dict[str, dict[str, Any]], names: list[str], stage: str) -> bool:
    """Return True when ``stage`` goes further than the recorded stage of a known entity among ``names``."""
    rank = STAGE_ORDER[Stage(stage)]
    for name in names:
        entry = table.get(name)
        if entry is not None and rank > STAGE_ORDER[Stage(entry["stage"])]:
            return True
    return False


def apply_sighting(
    state: dict[str, Any],
    sighting: dict[str, Any],
    now_ms: int,
    max_entities: int = 1000,
    *,
    policy: SpreadPolicy | None = None,
) -> bool:
    """Fold one sighting into ``state``; return True when an alert is due.

    A sighting whose event reference was already applied (a redelivery after
    a crash) changes nothing, and an allowlisted one (``suppressed_by``) is
    only counted. ``policy`` overrides ``max_entities``.
    """
    policy = policy or SpreadPolicy(max_entities=max_entities, window_ms=None)
    event = sighting["event"]
    ref = _ref_id(sighting)
    if ref in state["recent"]:
        return False
    state["recent"].append(ref)
    del state["recent"][:-RECENT_REFS]
    if sighting.get("suppressed_by"):
        state["suppressed"] = state.get("suppressed", 0) + 1
        return False
    state["ioc"] = sighting["ioc"]
    # An event without a readable time counts at the IOC's newest time, so it
    # can never age the other entities out by jumping to the wall clock.
    seen_ms = event.get("timestamp_ms") or state.get("last_seen") or now_ms
    state["first_seen"] = min(state.get("first_seen", seen_ms), seen_ms)
    state["last_seen"] = max(state.get("last_seen", seen_ms), seen_ms)
    _age_out(state, policy.window_ms)
    state["sightings"] += 1
    state["sources"][event["source"]] = state["sources"].get(event["source"], 0) + 1
    state["retro"] = bool(sighting.get("retro")) and state.get("retro", True)
    escalated = _escalates(state["hosts"], sighting["hosts"], event["stage"]) or _escalates(
        state["users"], sighting["users"], event["stage"]
    )
    new_host = new_user = False
    for name in sighting["hosts"]:
        added = _touch_entity(state["hosts"], name, event, seen_ms, policy.max_entities)
        state["overflow"] += added is None
        new_host = new_host or bool(added)
    for name in sighting["users"]:
        added = _touch_entity(state["users"], name, event, seen_ms, policy.max_entities)
        state["overflow"] += added is None
        new_user = new_user or bool(added)
    _link(state, sighting["hosts"], sighting["users"])
    state["refs"].append(
        {
            **{name: event[name] for name in ("topic", "partition", "offset", "source", "field")},
            "hosts": sighting["hosts"],
            "users": sighting["users"],
        }
    )
    del state["refs"][:-MAX_EVENT_REFS]
    if state["ioc"].get("type") == "cve":
        return _exposure_due(state, event["source"], new_host)
    return (new_host or new_user or escalated) and is_spread(state)


def _exposure_due(state: dict[str, Any], source: str, new_host: bool) -> bool:
    """Decide whether a CVE sighting raises an exposure alert.

    A pushed CVE IOC alerts for each new host. A CVE known only from scanner
    findings stays silent until a detection source (EDR, proxy, network,
    mail) names it, then alerts with every exposed host, and again for each
    new host.
    """
    if state["ioc"].get("source") != IMPLICIT_SOURCE:
        return new_host
    first_detection = source != "vuln" and not state.get("detected", False)
    if first_detection:
        state["detected"] = True
    return bool(state.get("detected")) and (new_host or first_detection)


def spread_paths(state: dict[str, Any]) -> int:
    """Count the connected groups of hosts and users, where an event naming both links them."""
    parent: dict[str, str] = {}

    def find(node: str) -> str:
        while parent.setdefault(node, node) != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for host in state["hosts"]:
        find(f"h:{host}")
    for user in state["users"]:
        find(f"u:{user}")
    for host, users in state["links"].items():
        for user in users:
            parent[find(f"h:{host}")] = find(f"u:{user}")
    return len({find(node) for node in parent})


def is_spread(state: dict[str, Any]) -> bool:
    """Return True when the IOC reached two hosts, two users, or a host and an unlinked user."""
    if len(state["hosts"]) >= 2 or len(state["users"]) >= 2:
        return True
    return spread_paths(state) >= 2
