"""STIX 2.1 Sighting objects, so the intelligence platform that issued an IOC learns where it was seen.

Ids are UUIDv5 from the IOC key, so every update of one IOC's sighting has
the same id and a newer ``modified``, which is how STIX versions an object.
An IOC that did not come from a STIX feed gets a derived indicator id, and
its indicator object is included in the bundle so the reference resolves.
"""

from __future__ import annotations

import uuid
from typing import Any

from detectors.timestamps import format_timestamp

# Fixed namespace for yokoten's derived STIX ids (UUIDv5 needs one).
NAMESPACE = uuid.UUID("6b1d9f0e-2f4c-5a7b-9d3e-1c5a0e7f4b21")
_PATTERN_PATHS = {
    "ipv4-addr": "ipv4-addr:value",
    "ipv6-addr": "ipv6-addr:value",
    "domain-name": "domain-name:value",
    "url": "url:value",
    "email-addr": "email-addr:value",
    "user-account": "user-account:account_login",
    "file-name": "file:name",
    "md5": "file:hashes.MD5",
    "sha1": "file:hashes.'SHA-1'",
    "sha256": "file:hashes.'SHA-256'",
    "sha512": "file:hashes.'SHA-512'",
}


def _derived_id(kind: str, key: str) -> str:
    return f"{kind}--{uuid.uuid5(NAMESPACE, key)}"


def _pattern(ioc: dict[str, Any]) -> str | None:
    path = _PATTERN_PATHS.get(ioc["type"])
    if path is None:
        return None
    value = str(ioc["value"]).replace("\\", "\\\\").replace("'", "\\'")
    return f"[{path} = '{value}']"


def build_sighting_bundle(state: dict[str, Any], now_ms: int, identity_name: str = "yokoten") -> dict[str, Any]:
    """Return a STIX 2.1 bundle with the Sighting of one IOC and the objects it refers to."""
    ioc = state["ioc"]
    now = format_timestamp(now_ms)
    identity = {
        "type": "identity",
        "spec_version": "2.1",
        "id": _derived_id("identity", f"identity:{identity_name}"),
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": identity_name,
        "identity_class": "system",
    }
    objects: list[dict[str, Any]] = [identity]
    indicator_id = ioc.get("indicator_id")
    if indicator_id is None:
        indicator_id = _derived_id("indicator", ioc["key"])
        pattern = _pattern(ioc)
        if pattern is not None:
            objects.append(
                {
                    "type": "indicator",
                    "spec_version": "2.1",
                    "id": indicator_id,
                    "created": format_timestamp(state["first_seen"]),
                    "modified": format_timestamp(state["first_seen"]),
                    "pattern": pattern,
                    "pattern_type": "stix",
                    "valid_from": format_timestamp(state["first_seen"]),
                    "created_by_ref": identity["id"],
                }
            )
    sighting = {
        "type": "sighting",
        "spec_version": "2.1",
        "id": _derived_id("sighting", ioc["key"]),
        "created": format_timestamp(state["first_seen"]),
        "modified": now,
        "created_by_ref": identity["id"],
        "sighting_of_ref": indicator_id,
        "first_seen": format_timestamp(state["first_seen"]),
        "last_seen": format_timestamp(state["last_seen"]),
        "count": min(state["sightings"], 999_999_999),
        "where_sighted_refs": [identity["id"]],
        "x_yokoten_hosts": sorted(state["hosts"]),
        "x_yokoten_users": sorted(state["users"]),
    }
    objects.append(sighting)
    return {"type": "bundle", "id": f"bundle--{uuid.uuid4()}", "objects": objects}
