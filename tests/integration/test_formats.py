"""A record of each input format, produced to its own topic on the real broker, reaches an alert.

For each format the test reads a real sample in place, finds the first
observation that names an entity and an IOC-able value, pushes that value as
an IOC, and produces the sample's lines up to that record to a topic bound to
the format. A companion ECS event names the same value on another host, so
the alert must list the format's entity beside the companion. Vulnerability
formats need no companion: a pushed CVE alerts for its first exposed host.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.identity import IdentityRules
from detectors.observables import HASH_TYPES, ObservableType
from detectors.observation import Observation
from detectors.timestamps import format_timestamp
from tests.integration.conftest import REAL, REPO, Stack, alerts_of, consume, final_alerts, produce, run

pytestmark = pytest.mark.integration

# format -> (source kind, sample path relative to ../shared/real, or "samples/..." in the repository)
SAMPLES = {
    "sysmon": ("edr", "edr/evtx_attack_samples/LM_sysmon_psexec_smb_meterpreter.jsonl"),
    "mde": ("edr", "edr/mde_simuland/Microsoft365DefenderEvents.json"),
    "squid": ("proxy", "proxy_network/squid/elastic_squid-log-access.head40.log"),
    "zeek": ("proxy", "proxy_network/zeek_otrf_apt29_day1/SCRANTON_http.log"),
    "zeek-tsv": ("proxy", "proxy_network/zeek_otrf_lsass_campaign_05/http.log"),
    "zscaler": ("proxy", "proxy_network/elastic_zscaler_zia_test-web.log"),
    "postfix": ("mail", "mail/lograptor_postfix.log"),
    "m365": ("mail", "mail/elastic_m365_defender_test-email.log"),
    "proofpoint": ("mail", "mail/elastic_proofpoint_tap_message-delivered.excerpt.log"),
    "ecs": ("mail", "samples/mail.jsonl"),
}
USABLE = (ObservableType.DOMAIN, ObservableType.IPV4, ObservableType.URL, ObservableType.EMAIL, *HASH_TYPES)
NESSUS = (
    '"Plugin ID","CVE","CVSS v2.0 Base Score","Risk","Host","Protocol","Port","Name"\n'
    '"97833","CVE-2017-0144","9.3","Critical","192.0.2.15","tcp","445","MS17-010: Security Update for Microsoft Windows SMB Server"\n'
)


def _path(relative: str) -> Path:
    return REPO / relative if relative.startswith("samples/") else REAL / relative


def _first_usable(fmt: str, lines: list[bytes]) -> tuple[int, Observation, tuple[ObservableType, str]] | None:
    """Return (line index, observation, observable) of the first emitted observation with an entity."""
    parser = StreamParser(fmt, IdentityRules())
    for index, line in enumerate(lines):
        try:
            emitted = parser.parse(line, RecordRef("sample", 0, index), 1_700_000_000_000)
        except Exception:  # noqa: BLE001 - rejected sample lines are skipped here
            continue
        for observation, _ in emitted:
            if not (observation.hosts or observation.users):
                continue
            for observable in observation.observables:
                if observable.type in USABLE and observable.value not in observation.hosts + observation.users:
                    return index, observation, (observable.type, observable.value)
    # A joined message whose parts never all arrive is matched when its join window passes.
    for observation, _ in parser.flush():
        for observable in observation.observables:
            entities = observation.hosts + observation.users
            if entities and observable.type in USABLE and observable.value not in entities:
                return len(lines) - 1, observation, (observable.type, observable.value)
    return None


def _companion(kind: ObservableType, value: str, host: str, timestamp_ms: int | None) -> bytes:
    """Return an ECS event naming ``value`` on ``host`` at the sample's own time.

    The spread window ages entities by event time, so a companion years
    after the sample would age the sample's entity out.
    """
    document: dict[str, Any] = {
        "@timestamp": format_timestamp(timestamp_ms or 1_700_000_000_000),
        "host": {"name": host},
    }
    if kind is ObservableType.EMAIL:
        document["event"] = {"category": ["email"]}
        document["email"] = {"from": {"address": [value]}, "to": {"address": [f"analyst@{host}"]}}
        return orjson.dumps(document)
    document["event"] = {"category": ["web"]}
    if kind is ObservableType.DOMAIN:
        document["url"] = {"full": f"http://{value}/companion"}
    elif kind is ObservableType.URL:
        document["url"] = {"full": f"http://{value}"}
    elif kind is ObservableType.IPV4:
        document["destination"] = {"ip": value}
    else:
        document["file"] = {"hash": {kind.value: value}}
    return orjson.dumps(document)


def _feed_line(kind: ObservableType, value: str) -> str:
    return f"{kind.value},{value}"


def test_each_format_reaches_an_alert(stack: Stack, tmp_path: Path) -> None:
    if not REAL.is_dir():
        pytest.skip("../shared/real not present: real samples are read in place and not shipped")
    inputs = [f"t{stack.run}.in-{fmt}:{kind}:{fmt}" for fmt, (kind, _) in SAMPLES.items()]
    inputs += [f"t{stack.run}.in-nessus:vuln:nessus", f"t{stack.run}.companion:proxy:ecs"]
    env = {"YOKOTEN_INPUTS": ",".join(inputs), "YOKOTEN_JOIN_WINDOW_SECONDS": "1"}
    stack.yokoten("topics", "create", extra_env=env)

    plan: dict[str, tuple[list[bytes], str, str | None]] = {}
    times: dict[str, int | None] = {}
    feed = ["type,value", "cve,CVE-2017-0144"]
    for fmt, (_, relative) in SAMPLES.items():
        lines = [line for line in _path(relative).read_bytes().splitlines() if line.strip()]
        found = _first_usable(fmt, lines)
        assert found is not None, f"no usable observation in {relative} read as {fmt}"
        index, observation, (kind, value) = found
        feed.append(_feed_line(kind, value))
        entity = (observation.hosts or observation.users)[0]
        plan[fmt] = (lines[: index + 1], f"{kind.value}:{value}", entity)
        times[fmt] = observation.timestamp_ms
    (tmp_path / "formats.csv").write_text("\n".join(dict.fromkeys(feed)) + "\n")
    stack.yokoten("ioc", "push", str(tmp_path / "formats.csv"), extra_env=env)
    stack.start("correlator", env)
    stack.start("matcher", env)

    bootstrap = stack.settings.bootstrap_servers
    for fmt, (lines, _, _) in plan.items():
        run(produce(bootstrap, f"t{stack.run}.in-{fmt}", list(lines), keys=[b"one-partition"] * len(lines)))
    run(produce(bootstrap, f"t{stack.run}.in-nessus", [line.encode() for line in NESSUS.splitlines()], keys=[b"k"] * 2))
    time.sleep(2)
    companions = [
        _companion(
            ObservableType(key.split(":", 1)[0]), key.split(":", 1)[1], f"companion-{fmt}.example.com", times[fmt]
        )
        for fmt, (_, key, _) in plan.items()
    ]
    run(produce(bootstrap, f"t{stack.run}.companion", companions))

    expected = {key: entity for _, key, entity in plan.values()}
    expected["cve:CVE-2017-0144"] = "192.0.2.15"

    def done(records: list[Any]) -> bool:
        latest = final_alerts(alerts_of(records))
        return all(key in latest for key in expected)

    records = run(consume(bootstrap, stack.topic("alerts"), done, timeout=90))
    latest = final_alerts(alerts_of(records))
    missing = sorted(key for key in expected if key not in latest)
    sightings = run(consume(bootstrap, stack.topic("sightings"), lambda r: False, timeout=3))
    seen = sorted(
        (
            record.key.decode()[:40],
            orjson.loads(record.value)["event"]["topic"],
            tuple(orjson.loads(record.value)["hosts"]),
        )
        for record in sightings
    )
    assert missing == [], f"missing {missing}; sightings for {seen}; alerts for {sorted(latest)}\n{stack.logs()}"
    for key, entity in expected.items():
        alert = latest[key]
        assert entity in alert["related"]["hosts"] + alert["related"]["user"], (key, alert["related"])
