"""The ECS alert document rendered from one IOC's spread state.

An analyst should be able to choose the response from the alert alone, so
it carries the whole current scope, the stage each entity reached, a one-line
summary, a severity raised with the number of hosts, and whether the spread
calls for an organisation-wide response.
"""

from __future__ import annotations

import hashlib
from typing import Any

from detectors.observables import HASH_TYPES, ObservableType
from detectors.timestamps import format_timestamp

RULE_NAME = "IOC seen on more than one host or user"
RULE_ID = "yokoten-spread"
EXPOSURE_RULE_NAME = "Hosts with a vulnerability under active use"
EXPOSURE_RULE_ID = "yokoten-exposure"
SEVERITIES = ("low", "medium", "high", "critical")
# ECS event.severity is numeric; these follow the usual 0-100 risk-score bands.
SEVERITY_SCORE = {"low": 21, "medium": 47, "high": 73, "critical": 99}
# Confidence below this lowers the IOC's severity by one level.
LOW_CONFIDENCE = 50
# Hosts at which the severity rises by one level.
ESCALATE_HOSTS = 3
_STAGE_VERB = {"delivered": "received", "contacted": "contacted", "executed": "executed"}


def alert_id(ioc_key: str) -> str:
    """Return the stable alert id of an IOC, so downstream systems keep the latest update."""
    return hashlib.sha256(ioc_key.encode("utf-8")).hexdigest()[:32]


def cvss_priority(score: float | None) -> str:
    """Map a CVSS v3 base score to the response priority: Critical and High now, the rest planned."""
    if score is None:
        return "unknown"
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "medium"
    return "low" if score > 0 else "none"


def alert_severity(ioc: dict[str, Any], hosts: int, org_wide_hosts: int) -> tuple[str, bool]:
    """Return (severity, org-wide flag) from the IOC's severity and confidence and the host count.

    Confidence below LOW_CONFIDENCE lowers the IOC's severity one level;
    ESCALATE_HOSTS hosts raise it one level; ``org_wide_hosts`` hosts make it
    critical and set the org-wide flag.
    """
    level = SEVERITIES.index(ioc.get("severity") if ioc.get("severity") in SEVERITIES else "medium")
    confidence = ioc.get("confidence")
    if isinstance(confidence, int) and confidence < LOW_CONFIDENCE:
        level = max(0, level - 1)
    if hosts >= ESCALATE_HOSTS:
        level = min(len(SEVERITIES) - 1, level + 1)
    org_wide = hosts >= org_wide_hosts
    if org_wide:
        level = len(SEVERITIES) - 1
    return SEVERITIES[level], org_wide


def _entities(table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    entities = []
    for name, entry in table.items():
        entity = {
            "name": name,
            "first_seen": format_timestamp(entry["first_seen"]),
            "last_seen": format_timestamp(entry["last_seen"]),
            "count": entry["count"],
            "sources": entry["sources"],
            "stage": entry["stage"],
        }
        if entry.get("attributes"):
            entity["attributes"] = entry["attributes"]
        entities.append(entity)
    return sorted(entities, key=lambda entity: entity["name"])


def _exposure_order(entities: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sort hosts by CVSS score, highest first, and mark each one's response priority."""
    for entity in entities:
        score = entity.get("attributes", {}).get("cvss")
        entity["priority"] = cvss_priority(score if isinstance(score, (int, float)) else None)
    return sorted(entities, key=lambda entity: (-(entity.get("attributes", {}).get("cvss") or 0), entity["name"]))


def summarize(state: dict[str, Any]) -> str:
    """Say in one line how far the IOC got: "bad.example.net: 3 users received it, 1 host executed it"."""
    parts = []
    for stage in ("delivered", "contacted", "executed"):
        for label, table in (("host", state["hosts"]), ("user", state["users"])):
            count = sum(1 for entry in table.values() if entry["stage"] == stage)
            if count:
                parts.append(f"{count} {label}{'s' if count > 1 else ''} {_STAGE_VERB[stage]} it")
    return f"{state['ioc']['value']}: {', '.join(parts) or 'no entities'}"


def build_alert(state: dict[str, Any], now_ms: int, org_wide_hosts: int = 5) -> dict[str, Any]:
    """Render the ECS alert document carrying the IOC's whole current scope.

    Call after ``apply_sighting`` returned True; increments the sequence.
    """
    from detectors.spread import spread_paths

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
    severity, org_wide = alert_severity(ioc, len(state["hosts"]), org_wide_hosts)
    hosts = _entities(state["hosts"])
    exposure = kind is ObservableType.CVE
    if exposure:
        hosts = _exposure_order(hosts)
        top = hosts[0].get("priority") if hosts else "unknown"
        severity = top if top in SEVERITIES else severity
    alert: dict[str, Any] = {
        "@timestamp": format_timestamp(now_ms),
        "message": summarize(state),
        "event": {
            "kind": "alert",
            "category": ["threat"] if not exposure else ["vulnerability"],
            "type": ["indicator"] if not exposure else ["info"],
            "severity": SEVERITY_SCORE[severity],
            "id": f"{identifier}-{state['seq']}",
        },
        "rule": {"id": EXPOSURE_RULE_ID, "name": EXPOSURE_RULE_NAME}
        if exposure
        else {"id": RULE_ID, "name": RULE_NAME},
        "threat": {"indicator": indicator},
        "related": {"hosts": sorted(state["hosts"]), "user": sorted(state["users"])},
        "tags": ioc.get("tags", []),
        "yokoten": {
            "alert_id": identifier,
            "sequence": state["seq"],
            "ioc_key": ioc["key"],
            "ioc_type": ioc["type"],
            "severity": severity,
            "ioc_severity": ioc["severity"],
            "org_wide_response": org_wide,
            "spread_paths": spread_paths(state),
            "retro": state.get("retro", False),
            "scope": {
                "hosts": hosts,
                "users": _entities(state["users"]),
                "links": [{"host": host, "users": sorted(users)} for host, users in sorted(state["links"].items())],
            },
            "sources": state["sources"],
            "entities_overflow": state["overflow"],
            "sightings": state["refs"],
        },
    }
    if exposure:
        alert["vulnerability"] = {"id": ioc["value"], "enumeration": "CVE"}
    if (kind is ObservableType.IPV4 or kind is ObservableType.IPV6) and "/" not in ioc["value"]:
        alert["related"]["ip"] = [ioc["value"]]
    if kind in HASH_TYPES:
        alert["related"]["hash"] = [ioc["value"]]
    return alert
