"""Spread paths, ageing, escalation, the vulnerability exposure sweep and STIX sightings."""

from __future__ import annotations

from typing import Any

from detectors.alert import alert_severity, cvss_priority, summarize
from detectors.spread import DAY_MS, SpreadPolicy, apply_sighting, build_alert, new_state, spread_paths
from detectors.stix_sighting import build_sighting_bundle

NOW = 1_714_694_400_000  # 2024-05-03T00:00:00Z
H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
POLICY = SpreadPolicy(max_entities=100, window_ms=None, org_wide_hosts=5)


def _ioc(
    kind: str = "sha256", value: str = H256, severity: str = "high", confidence: int | None = 80
) -> dict[str, Any]:
    stix = {"sha256": "file", "cve": "vulnerability", "domain-name": "domain-name"}[kind]
    return {
        "key": f"{kind}:{value}",
        "type": kind,
        "stix_type": stix,
        "value": value,
        "source": "unit",
        "severity": severity,
        "confidence": confidence,
        "tags": [],
    }


def _sighting(
    offset: int,
    hosts: list[str],
    users: list[str],
    *,
    stage: str = "executed",
    source: str = "edr",
    ts: int = NOW,
    ioc: dict[str, Any] | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    event = {
        "source": source,
        "format": "test",
        "code": None,
        "timestamp_ms": ts,
        "field": "f",
        "stage": stage,
        "topic": "t",
        "partition": 0,
        "offset": offset,
    }
    if attributes:
        event["attributes"] = attributes
    return {"ioc": ioc or _ioc(), "event": event, "hosts": hosts, "users": users, "retro": False}


def test_mailbox_and_linked_host_are_one_path() -> None:
    state = new_state()
    due = [
        apply_sighting(
            state, _sighting(1, [], ["alice@example.com"], stage="delivered", source="mail"), NOW, policy=POLICY
        ),
        apply_sighting(state, _sighting(2, ["ws01.example.com"], ["alice@example.com"]), NOW, policy=POLICY),
    ]
    assert due == [False, False]
    assert spread_paths(state) == 1


def test_mailbox_and_unrelated_host_alert() -> None:
    state = new_state()
    apply_sighting(state, _sighting(1, [], ["alice@example.com"], stage="delivered", source="mail"), NOW, policy=POLICY)
    due = apply_sighting(state, _sighting(2, ["ws09.example.com"], []), NOW, policy=POLICY)
    assert due is True
    assert spread_paths(state) == 2


def test_alert_shows_links() -> None:
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], ["alice@example.com"]), NOW, policy=POLICY)
    apply_sighting(state, _sighting(2, ["ws02.example.com"], ["bob@example.com"]), NOW, policy=POLICY)
    links = build_alert(state, NOW)["yokoten"]["scope"]["links"]
    assert links == [
        {"host": "ws01.example.com", "users": ["alice@example.com"]},
        {"host": "ws02.example.com", "users": ["bob@example.com"]},
    ]


def test_entities_age_out_of_window() -> None:
    policy = SpreadPolicy(max_entities=100, window_ms=7 * DAY_MS)
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], [], ts=NOW - 30 * DAY_MS), NOW, policy=policy)
    due = apply_sighting(state, _sighting(2, ["ws02.example.com"], [], ts=NOW), NOW, policy=policy)
    assert due is False
    assert sorted(state["hosts"]) == ["ws02.example.com"]


def test_entities_within_window_kept() -> None:
    policy = SpreadPolicy(max_entities=100, window_ms=7 * DAY_MS)
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], [], ts=NOW - 6 * DAY_MS), NOW, policy=policy)
    assert apply_sighting(state, _sighting(2, ["ws02.example.com"], [], ts=NOW), NOW, policy=policy) is True


def test_severity_low_confidence_lowers() -> None:
    assert alert_severity({"severity": "high", "confidence": 30}, 2, 5) == ("medium", False)


def test_severity_three_hosts_raise() -> None:
    assert alert_severity({"severity": "high", "confidence": 90}, 3, 5) == ("critical", False)


def test_severity_org_wide_threshold() -> None:
    assert alert_severity({"severity": "low", "confidence": None}, 5, 5) == ("critical", True)


def test_org_wide_flag_in_alert() -> None:
    state = new_state()
    for offset in range(5):
        apply_sighting(state, _sighting(offset, [f"ws{offset}.example.com"], []), NOW, policy=POLICY)
    alert = build_alert(state, NOW, org_wide_hosts=5)
    assert alert["yokoten"]["org_wide_response"] is True
    assert alert["event"]["severity"] == 99


def test_summary_counts_stages() -> None:
    state = new_state()
    for offset, user in enumerate(["a@example.com", "b@example.com", "c@example.com", "d@example.com"]):
        apply_sighting(state, _sighting(offset, [], [user], stage="delivered", source="mail"), NOW, policy=POLICY)
    apply_sighting(state, _sighting(9, ["ws01.example.com"], []), NOW, policy=POLICY)
    assert summarize(state) == f"{H256}: 4 users received it, 1 host executed it"


def test_cvss_priority_bands() -> None:
    assert [cvss_priority(score) for score in (10.0, 9.0, 8.9, 7.0, 6.9, 4.0, 3.9, 0.0, None)] == [
        "critical",
        "critical",
        "high",
        "high",
        "medium",
        "medium",
        "low",
        "none",
        "unknown",
    ]


def test_cve_first_host_alerts_ordered_by_cvss() -> None:
    cve = _ioc("cve", "CVE-2021-44228", severity="medium", confidence=None)
    state = new_state()
    first = apply_sighting(
        state,
        _sighting(
            1,
            ["app1.example.com"],
            [],
            source="vuln",
            stage="contacted",
            ioc=cve,
            attributes={"cvss": 6.5, "exploit_available": False},
        ),
        NOW,
        policy=POLICY,
    )
    second = apply_sighting(
        state,
        _sighting(
            2,
            ["app2.example.com"],
            [],
            source="vuln",
            stage="contacted",
            ioc=cve,
            attributes={"cvss": 10.0, "exploit_available": True},
        ),
        NOW,
        policy=POLICY,
    )
    alert = build_alert(state, NOW)
    hosts = alert["yokoten"]["scope"]["hosts"]
    assert (first, second) == (True, True)
    assert [host["name"] for host in hosts] == ["app2.example.com", "app1.example.com"]
    assert [host["priority"] for host in hosts] == ["critical", "medium"]
    assert alert["yokoten"]["severity"] == "critical"
    assert alert["vulnerability"] == {"id": "CVE-2021-44228", "enumeration": "CVE"}


def test_stix_sighting_bundle_refers_to_indicator() -> None:
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], []), NOW, policy=POLICY)
    apply_sighting(state, _sighting(2, ["ws02.example.com"], []), NOW, policy=POLICY)
    bundle = build_sighting_bundle(state, NOW)
    by_type = {obj["type"]: obj for obj in bundle["objects"]}
    assert by_type["sighting"]["sighting_of_ref"] == by_type["indicator"]["id"]
    assert by_type["indicator"]["pattern"] == f"[file:hashes.'SHA-256' = '{H256}']"
    assert by_type["sighting"]["count"] == 2
    assert by_type["sighting"]["x_yokoten_hosts"] == ["ws01.example.com", "ws02.example.com"]


def test_stix_sighting_id_stable_per_ioc() -> None:
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], []), NOW, policy=POLICY)
    first = build_sighting_bundle(state, NOW)["objects"][-1]["id"]
    apply_sighting(state, _sighting(2, ["ws02.example.com"], []), NOW, policy=POLICY)
    assert build_sighting_bundle(state, NOW + 1000)["objects"][-1]["id"] == first


def test_stix_sighting_uses_feed_indicator_id() -> None:
    ioc = {**_ioc(), "indicator_id": "indicator--00000000-0000-4000-8000-000000000001"}
    state = new_state()
    apply_sighting(state, _sighting(1, ["ws01.example.com"], [], ioc=ioc), NOW, policy=POLICY)
    bundle = build_sighting_bundle(state, NOW)
    assert [obj["type"] for obj in bundle["objects"]] == ["identity", "sighting"]
    assert bundle["objects"][-1]["sighting_of_ref"] == ioc["indicator_id"]


def test_scanner_only_cve_stays_silent_until_detected() -> None:
    cve = {**_ioc("cve", "CVE-2017-0144", severity="medium", confidence=None), "source": "yokoten-implicit"}
    state = new_state()
    scans = [
        apply_sighting(
            state,
            _sighting(
                offset,
                [f"srv{offset}.example.com"],
                [],
                source="vuln",
                stage="contacted",
                ioc=cve,
                attributes={"cvss": 8.1},
            ),
            NOW,
            policy=POLICY,
        )
        for offset in range(3)
    ]
    detection = apply_sighting(state, _sighting(9, ["srv0.example.com"], [], source="edr", ioc=cve), NOW, policy=POLICY)
    later_scan = apply_sighting(
        state,
        _sighting(10, ["srv7.example.com"], [], source="vuln", stage="contacted", ioc=cve, attributes={"cvss": 8.1}),
        NOW,
        policy=POLICY,
    )
    assert scans == [False, False, False]
    assert detection is True
    assert later_scan is True
    assert len(build_alert(state, NOW)["yokoten"]["scope"]["hosts"]) == 4


def test_cve_observable_matches_without_feed() -> None:
    from detectors.index import IocIndex
    from detectors.matcher import match
    from detectors.observables import ObservableType
    from detectors.observation import Observable, Observation, SourceKind

    observation = Observation(
        source=SourceKind.VULN,
        timestamp_ms=NOW,
        hosts=["srv1.example.com"],
        observables=[Observable(ObservableType.CVE, "CVE-2021-44228", "vulnerability.id")],
    )
    hits = match(observation, IocIndex(), NOW)
    assert [(hit.ioc.key, hit.ioc.source) for hit in hits] == [("cve:CVE-2021-44228", "yokoten-implicit")]


def test_missing_event_time_does_not_age_out_entities() -> None:
    policy = SpreadPolicy(max_entities=100, window_ms=7 * DAY_MS)
    state = new_state()
    old = NOW - 400 * DAY_MS
    apply_sighting(state, _sighting(1, ["ws40.example.com"], [], ts=old), NOW, policy=policy)
    apply_sighting(state, _sighting(2, ["ws41.example.com"], [], ts=old), NOW, policy=policy)
    untimed = _sighting(3, ["ws42.example.com"], [])
    untimed["event"]["timestamp_ms"] = None
    apply_sighting(state, untimed, NOW, policy=policy)
    assert sorted(state["hosts"]) == ["ws40.example.com", "ws41.example.com", "ws42.example.com"]
