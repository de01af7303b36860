"""Matching one observation against the IOC index, and the sightings it yields."""

from __future__ import annotations

from typing import Any

from detectors.adapters import parse_record
from detectors.allowlist import Allowlist
from detectors.adapters.stream import RecordRef
from detectors.identity import IdentityRules
from detectors.index import IocIndex, Match
from detectors.ioc import Ioc
from detectors.observables import ObservableType
from detectors.observation import Observation, SourceKind
from detectors.spread import IMPLICIT_SOURCE

# A sighting's event reference; the same type as the stream parser's record ref.
EventRef = RecordRef


def match(observation: Observation, index: IocIndex, now_ms: int) -> list[Match]:
    """Return one Match per distinct IOC found in ``observation``.

    Structured observables are looked up first, then free text; an IOC found
    in several fields is reported once, with the first field.
    """
    found: dict[str, Match] = {}
    for observable in observation.observables:
        for ioc in index.lookup(observable.type, observable.value, now_ms):
            if ioc.key not in found:
                found[ioc.key] = Match(ioc, observable.field)
        if observable.type is ObservableType.CVE:
            key = f"cve:{observable.value}"
            if key not in found:
                found[key] = Match(implicit_cve(observable.value), observable.field)
    for field, text in observation.free_text:
        for ioc in index.search_text(text, now_ms):
            if ioc.key not in found:
                found[ioc.key] = Match(ioc, field)
    return list(found.values())


def implicit_cve(cve: str) -> Ioc:
    """Return the IOC that every CVE observable matches even when no feed listed it.

    Scanner findings feed each CVE's exposure state through it, so that when
    a detection event names the CVE, the alert already lists every host where
    it is open. Such an IOC alerts only once a non-scanner source saw it.
    """
    return Ioc(type=ObservableType.CVE, value=cve, source=IMPLICIT_SOURCE, severity="medium", tags=["implicit"])


def _same_account(identity: str, ioc_value: str) -> bool:
    """Return True when a user entity is the IOC's own account.

    ``pgustavo@theshire.local`` (mapped through the NetBIOS map) is the same
    account as the IOC ``pgustavo@theshire`` (``THESHIRE\\pgustavo`` unmapped).
    """
    if identity == ioc_value:
        return True
    user, _, domain = identity.partition("@")
    ioc_user, _, ioc_domain = ioc_value.partition("@")
    return user == ioc_user and bool(ioc_domain) and "." not in ioc_domain and domain.split(".", 1)[0] == ioc_domain


def _indicator_id(ioc: Ioc) -> str | None:
    """Return the STIX indicator id the IOC came from, if its feed gave one."""
    for name in ("indicator_id", "stix_id", "id"):
        value = ioc.context.get(name)
        if isinstance(value, str) and value.startswith("indicator--"):
            return value
    return None


def build_sighting(
    observation: Observation, hit: Match, ref: EventRef, *, retro: bool = False, suppressed_by: str | None = None
) -> dict[str, Any]:
    """Return the sighting record published to the sightings topic, keyed by IOC.

    The IOC's own value is never an entity: a host entity equal to an IP IOC
    or a user equal to an account IOC is left out.
    """
    ioc = hit.ioc
    hosts = [host for host in observation.hosts if host != ioc.value]
    users = [user for user in observation.users if not _same_account(user, ioc.value)]
    return {
        "ioc": {
            "key": ioc.key,
            "type": ioc.type.value,
            "stix_type": ioc.stix_type,
            "value": ioc.value,
            "source": ioc.source,
            "severity": ioc.severity,
            "confidence": ioc.confidence,
            "tags": ioc.tags,
            **({"indicator_id": indicator_id} if (indicator_id := _indicator_id(ioc)) else {}),
        },
        "event": {
            "source": observation.source.value,
            "format": observation.format,
            "code": observation.event_code,
            "timestamp_ms": observation.timestamp_ms,
            "field": hit.field,
            "stage": observation.stage.value,
            **ref.to_dict(),
            **({"attributes": observation.attributes} if observation.attributes else {}),
        },
        "hosts": hosts,
        "users": users,
        "retro": retro,
        **({"suppressed_by": suppressed_by} if suppressed_by else {}),
    }


def match_record(
    raw: bytes,
    fmt: str,
    source: SourceKind | None,
    ref: EventRef,
    index: IocIndex,
    rules: IdentityRules,
    now_ms: int,
) -> list[dict[str, Any]]:
    """Parse, normalise and match one raw record; return its sightings.

    Raises MalformedRecordError when the record cannot be parsed, so the
    caller can send it to the dead letter.
    """
    observation = parse_record(raw, fmt, rules, source)
    return sightings_of(observation, ref, index, now_ms)


def sightings_of(
    observation: Observation, ref: RecordRef, index: IocIndex, now_ms: int, allowlist: Allowlist | None = None
) -> list[dict[str, Any]]:
    """Match one observation and return its sightings, marking those an allowlist suppresses."""
    sightings = []
    for hit in match(observation, index, now_ms):
        suppressed_by = allowlist.suppressing_list(hit.ioc) if allowlist else None
        sightings.append(build_sighting(observation, hit, ref, suppressed_by=suppressed_by))
    return sightings
