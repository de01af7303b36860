"""The service end to end on a real Kafka broker: matcher and correlator processes, real log files."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from tests.integration.conftest import (
    REAL,
    REPO,
    Stack,
    alerts_of,
    consume,
    final_alerts,
    produce,
    run,
)

pytestmark = pytest.mark.integration

ALERT_SCHEMA = json.loads((REPO / "schemas" / "alert.schema.json").read_text())
SIGHTING_SCHEMA = json.loads((REPO / "schemas" / "sighting.schema.json").read_text())

# IOC values taken from the real files below, defanged and in upper case as
# analysts paste them; each is commented with where it occurs.
REAL_FEED_TEXT = """\
# SHA-256 of a binary run on WORKSTATION5 and WORKSTATION6 (Mordor Empire and Covenant datasets)
BAF97B2A629723947539CFF84E896CD29565AB4BB68B0CEC515EB5C5D6637B69
# Address both workstations connect to
52[.]114[.]158[.]91
# The lab C2 listener: only WORKSTATION6 connects to it, so no spread
10.10.10.5
# Squid sample: one client (10.105.21.199, user01) only, so no spread
goonernews[.]com
login.yahoo.com
"""
REAL_FEED_CSV = """\
type,value,severity
user-account,THESHIRE\\pgustavo,high
sha256,17F746D82695FA9B35493B41859D39D786D32B23A9D2E00F4011DEC7A02402AE,medium
"""
EDR_FILES = [
    "edr/otrf_mordor/empire_psexec_dcerpc_tcp_svcctl_2020-09-20121608.filtered.json",
    "edr/otrf_mordor/empire_smbexec_dcerpc_smb_svcctl_2020-09-20025716.filtered.json",
    "edr/otrf_mordor/empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437.filtered.json",
    "edr/otrf_mordor/covenant_sharpwmi_create_dcerpc_wmi_2020-08-06035621.filtered.json",
    "edr/evtx_attack_samples/LM_sysmon_psexec_smb_meterpreter.jsonl",
]
PROXY_FILES = ["proxy_network/squid/elastic_squid-log-access.head40.log"]
WORKSTATIONS = ["workstation5.theshire.local", "workstation6.theshire.local"]
# Final scope per IOC that a reader of the files finds: (hosts, users).
EXPECTED_SPREAD = {
    "sha256:baf97b2a629723947539cff84e896cd29565ab4bb68b0cec515eb5c5d6637b69": (
        WORKSTATIONS,
        ["pgustavo@theshire.local"],
    ),
    "ipv4-addr:52.114.158.91": (WORKSTATIONS, []),
    "user-account:pgustavo@theshire": (WORKSTATIONS, []),
}
IDENTITY_ENV = {"YOKOTEN_DOMAIN_MAP": "THESHIRE=theshire.local"}


def _require_real() -> None:
    if not REAL.is_dir():
        pytest.skip("../shared/real not present: real samples are read in place and not shipped")


def _lines(relative: str) -> list[bytes]:
    return [line.rstrip(b"\r\n") for line in (REAL / relative).read_bytes().splitlines() if line.strip()]


def _scope(alert: dict[str, Any]) -> tuple[list[str], list[str]]:
    return alert["related"]["hosts"], alert["related"]["user"]


def _stages(alert: dict[str, Any]) -> dict[str, str]:
    scope = alert["yokoten"]["scope"]
    return {entity["name"]: entity["stage"] for entity in scope["hosts"] + scope["users"]}


def _write_feeds(tmp_path: Path) -> tuple[Path, Path]:
    text_feed = tmp_path / "real-iocs.txt"
    text_feed.write_text(REAL_FEED_TEXT)
    csv_feed = tmp_path / "real-iocs.csv"
    csv_feed.write_text(REAL_FEED_CSV)
    return text_feed, csv_feed


def _enough(expected: dict[str, tuple[list[str], list[str]]]):
    def check(records: list[Any]) -> bool:
        latest = final_alerts(alerts_of(records))
        return all(key in latest and _scope(latest[key]) == scope for key, scope in expected.items())

    return check


def test_real_files_raise_exact_alerts_and_match_replay(stack: Stack, tmp_path: Path) -> None:
    _require_real()
    text_feed, csv_feed = _write_feeds(tmp_path)
    stack.yokoten("ioc", "push", str(text_feed))
    stack.yokoten("ioc", "push", str(csv_feed))
    stack.start("correlator", IDENTITY_ENV)
    stack.start("matcher", IDENTITY_ENV)
    edr = [line for relative in EDR_FILES for line in _lines(relative)]
    proxy = [line for relative in PROXY_FILES for line in _lines(relative)]
    run(produce(stack.settings.bootstrap_servers, stack.topic("edr"), edr))
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), proxy))

    records = run(
        consume(stack.settings.bootstrap_servers, stack.topic("alerts"), _enough(EXPECTED_SPREAD), timeout=90)
    )
    # Later alerts would be wrong ones: give the workers time to publish them.
    time.sleep(3)
    records = run(consume(stack.settings.bootstrap_servers, stack.topic("alerts"), lambda r: False, timeout=3))
    alerts = alerts_of(records)
    assert alerts, stack.logs()
    for alert in alerts:
        jsonschema.validate(alert, ALERT_SCHEMA)
    service_final = {key: _scope(alert) for key, alert in final_alerts(alerts).items()}
    assert service_final == EXPECTED_SPREAD, stack.logs()
    # One alert at the second entity, then one per further new entity; how the
    # entities interleave depends on partition order, so only the bound is fixed.
    assert len(alerts) <= 5

    replay = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.cli",
            "replay",
            "--iocs",
            str(text_feed),
            "--iocs",
            str(csv_feed),
            "--domain-map",
            "THESHIRE=theshire.local",
            *[str(REAL / relative) for relative in EDR_FILES + PROXY_FILES],
        ],
        capture_output=True,
        check=True,
        cwd=REPO,
    )
    replay_alerts = [orjson.loads(line) for line in replay.stdout.splitlines()]
    replay_final = {key: _scope(alert) for key, alert in final_alerts(replay_alerts).items()}
    assert replay_final == service_final
    service_stages = {key: _stages(alert) for key, alert in final_alerts(alerts).items()}
    replay_stages = {key: _stages(alert) for key, alert in final_alerts(replay_alerts).items()}
    assert replay_stages == service_stages


def test_sightings_follow_schema_and_commit(stack: Stack, tmp_path: Path) -> None:
    _require_real()
    text_feed, _ = _write_feeds(tmp_path)
    stack.yokoten("ioc", "push", str(text_feed))
    stack.start("matcher")
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), _lines(PROXY_FILES[0])))
    # goonernews.com appears in 11 lines and login.yahoo.com (CONNECT) in 2 of the Squid sample.
    records = run(
        consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 13, timeout=60)
    )
    sightings = [orjson.loads(record.value) for record in records]
    for sighting in sightings:
        jsonschema.validate(sighting, SIGHTING_SCHEMA)
    keys = sorted(record.key.decode() for record in records)
    assert keys == ["domain-name:goonernews.com"] * 11 + ["domain-name:login.yahoo.com"] * 2
    assert {tuple(s["hosts"]) for s in sightings} == {("10.105.21.199",)}


def _metric(port: int, name: str, labels: str) -> float:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
    for line in body.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_malformed_records_dead_lettered_worker_continues(stack: Stack, tmp_path: Path) -> None:
    feed = tmp_path / "iocs.txt"
    feed.write_text("bad.example.net\n")
    stack.yokoten("ioc", "push", str(feed))
    port = _free_port()
    stack.start("matcher", {"YOKOTEN_METRICS_PORT": str(port)})
    bad = [
        b"not json",
        b'{"@timestamp": "2026-01-01T00:00:00Z", "url": {"full": "http://bad.exa',
        b"\xff\xfe{}",
        b"[]",
        b'{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "ws03.example.com", "Hashes": 12345}',
    ]
    good = (
        b'{"@timestamp": "2026-01-01T00:00:00Z", "event": {"category": ["web"]}, '
        b'"host": {"name": "ws22.example.com"}, "url": {"full": "http://bad.example.net/x"}}'
    )
    # One key puts every record on one partition, so offsets and order are known.
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [*bad, good], keys=[b"gateway-1"] * 6))
    dead = run(consume(stack.settings.bootstrap_servers, stack.topic("dead-letter"), lambda r: len(r) >= 5, timeout=60))
    sightings = run(
        consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 1, timeout=30)
    )

    assert [record.value for record in dead] == bad, stack.logs()
    headers = [dict(record.headers) for record in dead]
    assert [h["yokoten.reason"] for h in headers] == [
        b"unknown_format",
        b"truncated",
        b"encoding",
        b"field_type",
        b"field_type",
    ]
    assert {h["yokoten.source.topic"] for h in headers} == {stack.topic("proxy").encode()}
    assert sorted(int(h["yokoten.source.offset"]) for h in headers) == [0, 1, 2, 3, 4]
    assert all(h["yokoten.error"] for h in headers)
    assert len(sightings) == 1
    assert orjson.loads(sightings[0].value)["hosts"] == ["ws22.example.com"]
    assert _metric(port, "yokoten_records_rejected_total", 'reason="field_type",source="proxy"') == 2.0
    assert stack.processes[0][0].poll() is None, "the matcher exited"


def test_pushed_ioc_becomes_active_and_tombstone_removes_it(stack: Stack, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("# no IOCs yet\n")
    stack.yokoten("ioc", "push", str(empty))
    port = _free_port()
    stack.start("matcher", {"YOKOTEN_METRICS_PORT": str(port)})

    def event(host: str) -> bytes:
        return orjson.dumps(
            {
                "@timestamp": "2026-01-01T00:00:00Z",
                "event": {"category": ["web"]},
                "host": {"name": host},
                "url": {"full": "https://evil.example.org/p"},
            }
        )

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    feed = tmp_path / "push.txt"
    feed.write_text("evil[.]example[.]org\n")
    stack.yokoten("ioc", "push", str(feed))
    deadline = time.monotonic() + 30
    while _metric(port, "yokoten_iocs_loaded", 'type="domain-name"') < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [event("ws1.example.com")]))
    first = run(consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 1, timeout=30))
    assert len(first) == 1, stack.logs()

    run(produce(stack.settings.bootstrap_servers, stack.topic("iocs"), [None], keys=[b"domain-name:evil.example.org"]))
    deadline = time.monotonic() + 30
    while _metric(port, "yokoten_iocs_loaded", 'type="domain-name"') > 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [event("ws2.example.com")]))
    deadline = time.monotonic() + 30
    while _metric(port, "yokoten_events_consumed_total", 'source="proxy"') < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = run(consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: False, timeout=3))
    assert len(after) == 1


def test_demo_prints_every_sample_alert() -> None:
    result = subprocess.run([sys.executable, "-m", "service.demo"], capture_output=True, timeout=300, cwd=REPO)
    output = result.stdout.decode()
    final = output.split("Final scope per IOC:", 1)[-1].strip().splitlines()
    assert result.returncode == 0, result.stderr.decode()[-3000:]
    assert any(line.startswith("ALERT #1 ") for line in output.splitlines())
    assert sorted(line.strip() for line in final) == [
        "203.0.113.50: 2 hosts contacted it, 2 users contacted it (severity medium)",
        "a165653b28874d4a306e15164e6805f4c4184fb23655241a704e9ae02a7a0df2: "
        "1 user received it, 2 hosts executed it, 2 users executed it (severity medium)",
        "bad.example.net: 1 host contacted it, 1 user contacted it, 1 host executed it, 1 user executed it "
        "(severity medium)",
        "billing@bad.example.net: 3 users received it (severity medium)",
        "login-bad.example.net/auth: 2 hosts contacted it, 2 users contacted it (severity medium)",
    ]


def test_retro_hunt_finds_history_for_new_iocs(stack: Stack, tmp_path: Path) -> None:
    def event(host: str, offset_hint: int) -> bytes:
        return orjson.dumps(
            {
                "@timestamp": "2026-01-01T00:00:00Z",
                "event": {"category": ["web"]},
                "host": {"name": host},
                "url": {"full": f"https://late.example.org/p{offset_hint}"},
            }
        )

    run(
        produce(
            stack.settings.bootstrap_servers, stack.topic("proxy"), [event(f"ws{i}.example.com", i) for i in range(3)]
        )
    )
    port = _free_port()
    stack.start("correlator")
    stack.start("retro-hunt", {"YOKOTEN_METRICS_PORT": str(port), "YOKOTEN_RETRO_BATCH_SECONDS": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200:
                break
        except OSError:
            time.sleep(0.3)
    feed = tmp_path / "late.txt"
    feed.write_text("late[.]example[.]org\n")
    stack.yokoten("ioc", "push", str(feed))

    sightings = run(
        consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 3, timeout=60)
    )
    alerts = run(consume(stack.settings.bootstrap_servers, stack.topic("alerts"), lambda r: len(r) >= 2, timeout=60))
    assert len(sightings) == 3, stack.logs()
    assert all(orjson.loads(record.value)["retro"] for record in sightings)
    final = final_alerts(alerts_of(alerts))["domain-name:late.example.org"]
    assert final["related"]["hosts"] == ["ws0.example.com", "ws1.example.com", "ws2.example.com"]
    assert final["yokoten"]["retro"] is True

    # A metadata update of a known IOC starts no new pass.
    feed.write_text("type,value,severity\ndomain-name,late.example.org,critical\n")
    stack.yokoten("ioc", "push", str(feed))
    time.sleep(4)
    assert _metric(port, "yokoten_retro_hunt_passes_total", "") == 1.0
    again = run(consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: False, timeout=2))
    assert len(again) == 3


def test_oversized_rejected_record_truncated_in_dead_letter(stack: Stack) -> None:
    stack.start("matcher")
    value = b'{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "ws1", "Hashes": 12345, "Pad": "'
    value += b"x" * (1_040_000 - len(value) - 2) + b'"}'
    follow = b'{"EventID": 1, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "ws2", "Hashes": 7}'
    run(produce(stack.settings.bootstrap_servers, stack.topic("edr"), [value, follow], keys=[b"k", b"k"]))
    dead = run(consume(stack.settings.bootstrap_servers, stack.topic("dead-letter"), lambda r: len(r) >= 2, timeout=60))
    assert len(dead) == 2, stack.logs()
    headers = dict(dead[0].headers)
    assert headers["yokoten.truncated_from"] == b"1040000"
    assert len(dead[0].value) == 1024 * 1024 - 16 * 1024
    assert dead[1].value == follow


def test_expired_ioc_stops_matching_without_restart(stack: Stack, tmp_path: Path) -> None:
    from datetime import datetime, timedelta, timezone

    valid_until = (datetime.now(timezone.utc) + timedelta(seconds=6)).strftime("%Y-%m-%dT%H:%M:%SZ")
    feed = tmp_path / "short.csv"
    feed.write_text(f"type,value,valid_until\ndomain-name,short.example.org,{valid_until}\n")
    stack.yokoten("ioc", "push", str(feed))
    port = _free_port()
    stack.start("matcher", {"YOKOTEN_METRICS_PORT": str(port)})

    def event(host: str) -> bytes:
        return orjson.dumps(
            {
                "@timestamp": "2026-01-01T00:00:00Z",
                "event": {"category": ["web"]},
                "host": {"name": host},
                "url": {"full": "https://short.example.org/p"},
            }
        )

    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [event("ws1.example.com")]))
    first = run(consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 1, timeout=30))
    assert len(first) == 1, stack.logs()
    expiry = datetime.strptime(valid_until, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
    time.sleep(max(0.0, expiry - time.time()) + 1)
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), [event("ws2.example.com")]))
    deadline = time.monotonic() + 30
    while _metric(port, "yokoten_events_consumed_total", 'source="proxy"') < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    after = run(consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: False, timeout=3))
    alerts = run(consume(stack.settings.bootstrap_servers, stack.topic("alerts"), lambda r: False, timeout=1))
    assert len(after) == 1
    assert alerts == []


def test_allowlist_and_min_confidence_in_service(stack: Stack, tmp_path: Path) -> None:
    allowlist = tmp_path / "own.txt"
    allowlist.write_text("corp.example\n")
    feed = tmp_path / "mixed.csv"
    feed.write_text("type,value,confidence\ndomain-name,portal.corp.example,90\ndomain-name,weak.example.org,20\n")
    stack.yokoten("ioc", "push", str(feed))
    port = _free_port()
    env = {"YOKOTEN_METRICS_PORT": str(port), "YOKOTEN_ALLOWLIST_FILES": str(allowlist), "YOKOTEN_MIN_CONFIDENCE": "50"}
    stack.start("correlator")
    stack.start("matcher", env)

    def event(host: str, url: str) -> bytes:
        return orjson.dumps(
            {
                "@timestamp": "2026-01-01T00:00:00Z",
                "event": {"category": ["web"]},
                "host": {"name": host},
                "url": {"full": url},
            }
        )

    events = [
        event(f"ws{i}.example.com", url)
        for i in range(2)
        for url in ("https://portal.corp.example/", "https://weak.example.org/")
    ]
    run(produce(stack.settings.bootstrap_servers, stack.topic("proxy"), events))
    sightings = run(
        consume(stack.settings.bootstrap_servers, stack.topic("sightings"), lambda r: len(r) >= 2, timeout=60)
    )
    time.sleep(3)
    alerts = run(consume(stack.settings.bootstrap_servers, stack.topic("alerts"), lambda r: False, timeout=2))
    assert [orjson.loads(record.value)["suppressed_by"] for record in sightings] == ["own.txt", "own.txt"], stack.logs()
    assert alerts == []
    assert _metric(port, "yokoten_sightings_suppressed_total", 'allowlist="own.txt"') == 2.0
    assert _metric(port, "yokoten_iocs_loaded", 'type="domain-name"') == 1.0
