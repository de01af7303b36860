"""Tests of the Microsoft Defender (``mde``) and vulnerability scanner (``nessus``, ``openvas``, ``ecs-vuln``) adapters.

The Defender golden tests read real third-party samples in place from a
``shared/real`` folder beside the work tree and are skipped without it. No
real Nessus or Greenbone export is available, so the scanner tests use small
CSV fixtures written here. Their layouts follow the vendors' documented CSV
columns: the thirteen default columns of the Nessus CSV export, and the
columns of Greenbone's "CSV Results" report format. Host names, addresses,
plugin ids and NVT OIDs are made up; CVE ids and CVSS scores are the
published NVD values.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.adapters import mde, parse_record, vuln
from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType as T
from detectors.observation import Observation, SourceKind, Stage

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
needs_real = pytest.mark.skipif(
    not REAL.is_dir(), reason="../shared/real not present: real samples are read in place and not shipped"
)
DEFENDER = REAL / "edr" / "mde_simuland" / "Microsoft365DefenderEvents.json"
SENTINEL_WINDOWS = REAL / "edr" / "mde_simuland" / "WindowsEvents.json"
MAIL = REAL / "mail"

PLAIN = IdentityRules()
EXAMPLE = IdentityRules(default_domain="example.com", domain_map={"EXAMPLE": "example.com"})


def _observables(observation: Observation) -> list[tuple[T, str, str]]:
    return [(observable.type, observable.value, observable.field) for observable in observation.observables]


def _json(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record)


def _line(path: Path, number: int) -> bytes:
    return path.read_bytes().splitlines()[number - 1]


# -- Defender XDR, real SimuLand export -------------------------------------------------


@needs_real
@pytest.mark.parametrize("fmt", ["mde", "auto"])
def test_defender_export_all_rows_read(fmt: str) -> None:
    observations = [parse_record(raw, fmt, PLAIN) for raw in DEFENDER.read_bytes().splitlines()]
    assert len(observations) == 9
    assert {observation.format for observation in observations} == {"mde"}
    assert {observation.source for observation in observations} == {SourceKind.EDR}
    tables = Counter(observation.attributes["table"] for observation in observations)
    assert tables == {"DeviceEvents": 5, "IdentityDirectoryEvents": 2, "CloudAppEvents": 2}


@needs_real
def test_defender_device_event_ldap_search() -> None:
    observation = parse_record(_line(DEFENDER, 1), "auto", PLAIN)
    assert observation.hosts == ["adfs01.simulandlabs.com"]
    assert observation.users == ["wardog@simulandlabs.com"]  # from InitiatingProcessAccountUpn
    assert observation.stage is Stage.EXECUTED  # no remote address or URL in the row
    assert observation.event_code == "LdapSearch"
    assert observation.timestamp_ms == 1627909899772  # 2021-08-02T13:11:39.7724491Z
    assert _observables(observation) == [
        (T.SHA1, "6cbce4a295c163791b60fc23d285e6d84f28ee4c", "process.hash.sha1"),
        (T.SHA256, "de96a6e69944335375dc1ac238336066889d9ffc7d73628ef4fe1b1b160ab32c", "process.hash.sha256"),
        (T.MD5, "7353f60b1739074eb17c5f4dddefe239", "process.hash.md5"),
        (T.FILE_NAME, "powershell.exe", "process.name"),
        (T.FILE_NAME, "powershell.exe", "process.pe.original_file_name"),
        (T.USER, "wardog@simulandlabs.com", "process.user.name"),
        (T.USER, "wardog@simulandlabs", "process.user.name"),  # simulandlabs\wardog, unmapped
    ]
    assert observation.free_text == [("process.command_line", '"powershell.exe" ')]


@needs_real
def test_defender_mapped_account_one_user() -> None:
    rules = IdentityRules(domain_map={"simulandlabs": "simulandlabs.com"})
    observation = parse_record(_line(DEFENDER, 1), "mde", rules)
    assert observation.users == ["wardog@simulandlabs.com"]
    assert [value for kind, value, _ in _observables(observation) if kind is T.USER] == [
        "wardog@simulandlabs.com",
        "wardog@simulandlabs",
    ]


@needs_real
def test_defender_identity_directory_replication() -> None:
    observation = parse_record(_line(DEFENDER, 6), "auto", PLAIN)
    assert observation.attributes == {"table": "IdentityDirectoryEvents"}
    assert observation.hosts == ["adfs01.simulandlabs.com"]  # the source device, not the domain controller
    assert observation.users == ["pgustavo@simulandlabs.com"]
    assert observation.stage is Stage.CONTACTED
    assert observation.event_code == "Directory Services replication"
    assert observation.timestamp_ms == 1627909982057
    assert _observables(observation) == [
        (T.IPV4, "192.168.2.5", "source.ip"),
        (T.IPV4, "192.168.2.4", "destination.ip"),
        (T.DOMAIN, "dc01.simulandlabs.com", "destination.domain"),
        (T.USER, "pgustavo@simulandlabs.com", "user.name"),
    ]


@needs_real
def test_defender_cloud_app_mail_items_accessed() -> None:
    # The actor is an OAuth app, so the mailbox owner in RawEventData is the user entity.
    observation = parse_record(_line(DEFENDER, 8), "auto", PLAIN)
    assert observation.attributes == {"table": "CloudAppEvents"}
    assert observation.hosts == []  # IPAddress is the cloud client, never a host entity
    assert observation.users == ["pgustavo@simulandlabs.com"]
    assert observation.stage is Stage.CONTACTED
    assert observation.event_code == "MailItemsAccessed"
    assert observation.timestamp_ms == 1627911127000
    assert _observables(observation) == [
        (T.IPV4, "1.2.3.4", "source.ip"),
        (T.USER, "pgustavo@simulandlabs.com", "user.name"),
    ]


@needs_real
def test_defender_cloud_app_permission_grant() -> None:
    observation = parse_record(_line(DEFENDER, 9), "auto", PLAIN)
    assert observation.event_code == "Add delegated permission grant."
    assert observation.hosts == []
    assert observation.users == ["pgustavo@simulandlabs.com"]
    assert _observables(observation) == [(T.USER, "pgustavo@simulandlabs.com", "user.name")]


@needs_real
def test_sentinel_rows_not_defender() -> None:
    records = [json.loads(raw) for raw in SENTINEL_WINDOWS.read_bytes().splitlines()]
    assert len(records) == 38
    assert not any(mde.is_mde_record(record) for record in records)


@needs_real
@pytest.mark.parametrize(
    ("line", "observables"),
    [
        (13, []),  # Sentinel Event table: SQL Server audit 33205 from the Application log
        (16, [(T.FILE_NAME, "powershell.exe", "process.executable")]),  # Sysmon 18 through the Event table
        (17, [(T.IPV6, "fe80::a405:857d:204:efa5", "source.ip")]),  # inbound 5156 without Type or Channel
    ],
)
def test_sentinel_windows_rows_without_channel(line: int, observables: list[tuple[T, str, str]]) -> None:
    observation = parse_record(_line(SENTINEL_WINDOWS, line), "auto", PLAIN)
    assert observation.format == "sysmon"
    assert observation.hosts == ["adfs01.simulandlabs.com"]
    assert [item for item in _observables(observation) if item[0] is not T.USER] == observables


@needs_real
def test_defender_skips_mail_records() -> None:
    paths = [
        MAIL / "elastic_m365_defender_test-email.log",
        MAIL / "otrf_simuland_OfficeActivity_MailItemsAccessed.json",
    ]
    records = [json.loads(raw) for path in paths for raw in path.read_bytes().splitlines() if raw.strip()]
    assert len(records) == 6
    assert not any(mde.is_mde_record(record) for record in records)


# -- Defender XDR, rows of the documented table schemas ---------------------------------------


def _process_row() -> dict[str, Any]:
    return {
        "Table": "DeviceProcessEvents",
        "Timestamp": "2024-05-06T07:08:09.1234567Z",
        "DeviceId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
        "DeviceName": "ws01.example.com",
        "ActionType": "ProcessCreated",
        "FileName": "rundll32.exe",
        "FolderPath": "C:\\Windows\\System32\\rundll32.exe",
        "SHA1": "A" * 40,
        "SHA256": "b" * 64,
        "MD5": "c" * 32,
        "ProcessCommandLine": "rundll32.exe payload.dll,Start",
        "AccountDomain": "EXAMPLE",
        "AccountName": "alice",
        "AccountUpn": "alice@example.com",
        "InitiatingProcessFileName": "WINWORD.EXE",
        "InitiatingProcessSHA256": "d" * 64,
        "InitiatingProcessCommandLine": "WINWORD.EXE /n invoice.docm",
        "InitiatingProcessAccountDomain": "nt authority",
        "InitiatingProcessAccountName": "system",
    }


def test_defender_process_row_roles() -> None:
    observation = parse_record(_json(_process_row()), "auto", EXAMPLE)
    assert observation.format == "mde"
    assert observation.attributes == {"table": "DeviceProcessEvents"}
    assert observation.hosts == ["ws01.example.com"]
    assert observation.users == ["alice@example.com"]  # NT AUTHORITY\SYSTEM is no person
    assert observation.stage is Stage.EXECUTED
    assert observation.timestamp_ms == 1714979289123
    assert _observables(observation) == [
        (T.SHA1, "a" * 40, "process.hash.sha1"),
        (T.SHA256, "b" * 64, "process.hash.sha256"),
        (T.MD5, "c" * 32, "process.hash.md5"),
        (T.SHA256, "d" * 64, "process.parent.hash.sha256"),
        (T.FILE_NAME, "rundll32.exe", "process.name"),
        (T.FILE_NAME, "winword.exe", "process.parent.name"),
        (T.USER, "alice@example.com", "user.name"),
        (T.USER, "alice@example", "user.name"),
    ]
    assert observation.free_text == [
        ("process.command_line", "rundll32.exe payload.dll,Start"),
        ("process.parent.command_line", "WINWORD.EXE /n invoice.docm"),
    ]


def test_defender_streaming_network_row() -> None:
    envelope = {
        "time": "2024-05-06T07:08:11Z",
        "category": "AdvancedHunting-DeviceNetworkEvents",
        "operationName": "Publish",
        "properties": {
            "Timestamp": "2024-05-06T07:08:10.5Z",
            "DeviceId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
            "DeviceName": "WS02",
            "ActionType": "ConnectionSuccess",
            "RemoteIP": "203.0.113.10",
            "RemotePort": 443,
            "RemoteUrl": "https://evil.example.net/beacon",
            "LocalIP": "192.0.2.20",
            "InitiatingProcessFileName": "rundll32.exe",
            "InitiatingProcessAccountDomain": "example",
            "InitiatingProcessAccountName": "bob",
        },
    }
    observation = parse_record(_json(envelope), "auto", EXAMPLE)
    assert observation.attributes == {"table": "DeviceNetworkEvents", "remote_port": 443}
    assert observation.hosts == ["ws02.example.com"]
    assert observation.users == ["bob@example.com"]
    assert observation.stage is Stage.CONTACTED
    assert observation.timestamp_ms == 1714979290500
    assert _observables(observation) == [
        (T.FILE_NAME, "rundll32.exe", "process.name"),
        (T.IPV4, "203.0.113.10", "destination.ip"),  # LocalIP is the device itself
        (T.URL, "evil.example.net/beacon", "url.original"),
        (T.USER, "bob@example.com", "process.user.name"),
        (T.USER, "bob@example", "process.user.name"),
    ]


def test_defender_sentinel_type_file_row() -> None:
    row = {
        "Type": "DeviceFileEvents",
        "TimeGenerated": "2024-05-06T07:09:00Z",
        "Timestamp": "2024-05-06T07:08:59Z",
        "DeviceName": "ws01.example.com",
        "ActionType": "FileCreated",
        "FileName": "invoice.iso",
        "SHA256": "e" * 64,
        "FileOriginUrl": "http://files.example.net/invoice.iso",
        "FileOriginIP": "198.51.100.7",
        "InitiatingProcessFileName": "msedge.exe",
    }
    observation = parse_record(_json(row), "auto", EXAMPLE)
    assert observation.stage is Stage.EXECUTED
    assert _observables(observation) == [
        (T.SHA256, "e" * 64, "file.hash.sha256"),
        (T.FILE_NAME, "invoice.iso", "file.name"),
        (T.FILE_NAME, "msedge.exe", "process.name"),
        (T.URL, "files.example.net/invoice.iso", "file.origin_url"),
        (T.IPV4, "198.51.100.7", "source.ip"),
    ]


@pytest.mark.parametrize(
    ("remote_ip", "hosts", "observables"),
    [
        ("192.0.2.7", ["ws01.example.com", "192.0.2.7"], [(T.IPV4, "192.0.2.7", "source.ip")]),
        ("127.0.0.1", ["ws01.example.com"], [(T.IPV4, "127.0.0.1", "source.ip")]),
    ],
)
def test_defender_logon_row_by_columns(
    remote_ip: str, hosts: list[str], observables: list[tuple[T, str, str]]
) -> None:
    row = {
        "Timestamp": "2024-05-06T07:10:00Z",
        "DeviceId": "0f1e2d3c4b5a69788796a5b4c3d2e1f0a9b8c7d6",
        "DeviceName": "ws01",
        "ActionType": "LogonSuccess",
        "LogonType": "Network",
        "AccountDomain": "example",
        "AccountName": "carol",
        "RemoteIP": remote_ip,
        "RemoteDeviceName": "ws09",
    }
    observation = parse_record(_json(row), "auto", EXAMPLE)
    assert observation.attributes == {"table": "DeviceLogonEvents", "logon_type": "Network"}
    assert observation.hosts == hosts  # RemoteIP names the remote device, so ws09 is not added too
    assert observation.users == ["carol@example.com"]
    assert observation.stage is Stage.CONTACTED
    assert [item for item in _observables(observation) if item[0] is not T.USER] == observables


@pytest.mark.parametrize(
    "record",
    [
        {"Timestamp": "2024-05-06T07:10:00Z", "ActionType": "ClickAllowed", "NetworkMessageId": "m1", "Url": "x"},
        {"category": "AdvancedHunting-EmailEvents", "properties": {"Timestamp": "2024-05-06T07:10:00Z"}},
        {"Type": "SecurityEvent", "Timestamp": "2024-05-06T07:10:00Z", "DeviceId": "d", "ActionType": "x"},
        {"Timestamp": "2024-05-06T07:10:00Z", "ActionType": "LogonSuccess"},
    ],
    ids=["email-row", "email-envelope", "other-sentinel-table", "no-device-or-application"],
)
def test_defender_detection_rejects_other_rows(record: dict[str, Any]) -> None:
    assert not mde.is_mde_record(record)
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(_json(record), "mde", EXAMPLE)
    assert caught.value.reason == "unknown_format"


def test_defender_row_without_device_rejected() -> None:
    row = {**_process_row(), "DeviceName": ""}
    with pytest.raises(MalformedRecordError, match="DeviceName") as caught:
        parse_record(_json(row), "mde", EXAMPLE)
    assert caught.value.reason == "missing_field"


# -- Nessus CSV -----------------------------------------------------------------------------

NESSUS_HEADER = (
    '"Plugin ID","CVE","CVSS v2.0 Base Score","Risk","Host","Protocol","Port","Name","Synopsis",'
    '"Description","Solution","See Also","Plugin Output"'
)
# The same default columns with optional ones added from the export's column picker.
NESSUS_EXTENDED_HEADER = NESSUS_HEADER + ',"CVSS v3.0 Base Score","Exploitability Ease","Metasploit"'


def _csv_line(*cells: str, quote_all: bool = True) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, quoting=csv.QUOTE_ALL if quote_all else csv.QUOTE_MINIMAL, lineterminator="").writerow(cells)
    return buffer.getvalue()


def _nessus_row(
    plugin: str, cves: str, cvss2: str, risk: str, host: str, port: str, name: str, *extra: str
) -> str:
    fixed = (plugin, cves, cvss2, risk, host, "tcp", port, name, "synopsis", "description", "solution", "", "")
    return _csv_line(*fixed, *extra)


LOG4SHELL_NESSUS = _nessus_row(
    "156014", "CVE-2021-44228", "9.3", "Critical", "192.0.2.10", "8080", "Apache Log4Shell RCE (Direct Check HTTP)"
)
ETERNALBLUE_NESSUS = _nessus_row(
    "97833",
    "CVE-2017-0143, CVE-2017-0144 CVE-2017-0145;CVE-2017-0144",
    "9.3",
    "High",
    "fs01.example.com",
    "445",
    "MS17-010: Security Update for Microsoft Windows SMB Server (ETERNALBLUE)",
    "8.1",
    "Exploits are available",
    "MS17-010 EternalBlue SMB Remote Windows Kernel Pool Corruption",
)
CERTIFICATE_NESSUS = _nessus_row("10863", "", "", "None", "192.0.2.10", "443", "SSL Certificate Information")


def _stream(fmt: str, *lines: str, rules: IdentityRules = EXAMPLE) -> list[Observation]:
    """Feed lines to one StreamParser as a replay does and return the observations."""
    parser = StreamParser(fmt, rules)
    found: list[Observation] = []
    for offset, line in enumerate(lines):
        found.extend(observation for observation, _ in parser.parse(line.encode(), RecordRef("scan", 0, offset), 0))
    return found


def _rejection(fmt: str, *lines: str) -> MalformedRecordError:
    """Return the error raised by the last of ``lines``. The lines before it must parse."""
    parser = StreamParser(fmt, EXAMPLE)
    for offset, line in enumerate(lines[:-1]):
        parser.parse(line.encode(), RecordRef("scan", 0, offset), 0)
    with pytest.raises(MalformedRecordError) as caught:
        parser.parse(lines[-1].encode(), RecordRef("scan", 0, len(lines) - 1), 0)
    return caught.value


@pytest.mark.parametrize("fmt", ["nessus", "auto"])
def test_nessus_header_row_stored(fmt: str) -> None:
    parser = StreamParser(fmt, EXAMPLE)
    assert parser.parse(("\ufeff" + NESSUS_HEADER).encode(), RecordRef("scan", 0, 0), 0) == []
    header = parser.context[vuln.HEADER_KEY]
    assert header.format == "nessus"
    assert header.columns[:3] == ("Plugin ID", "CVE", "CVSS v2.0 Base Score")


@pytest.mark.parametrize("fmt", ["nessus", "auto"])
def test_nessus_single_cve_row(fmt: str) -> None:
    [observation] = _stream(fmt, NESSUS_HEADER, LOG4SHELL_NESSUS)
    assert observation.source is SourceKind.VULN
    assert observation.format == "nessus"
    assert observation.hosts == ["192.0.2.10"]
    assert observation.users == []
    assert observation.stage is Stage.CONTACTED
    assert observation.event_code == "156014"
    assert observation.timestamp_ms is None  # the Nessus CSV export has no time column
    assert _observables(observation) == [(T.CVE, "CVE-2021-44228", "vulnerability.id")]
    assert observation.attributes == {
        "scanner": "nessus",
        "cvss": 9.3,
        "cvss_version": "2.0",
        "port": 8080,
        "protocol": "tcp",
        "check_id": "156014",
        "title": "Apache Log4Shell RCE (Direct Check HTTP)",
        "severity": "Critical",
    }


def test_nessus_multi_cve_exploit_row() -> None:
    [observation] = _stream("nessus", NESSUS_EXTENDED_HEADER, ETERNALBLUE_NESSUS)
    assert observation.hosts == ["fs01.example.com"]
    assert _observables(observation) == [
        (T.CVE, "CVE-2017-0143", "vulnerability.id"),
        (T.CVE, "CVE-2017-0144", "vulnerability.id"),  # listed twice in the cell, one observable
        (T.CVE, "CVE-2017-0145", "vulnerability.id"),
    ]
    assert observation.attributes["cvss"] == 8.1  # the v3 score wins over the v2 score 9.3
    assert observation.attributes["cvss_version"] == "3.0"
    assert observation.attributes["severity"] == "High"  # the scanner's Risk column
    assert observation.attributes["exploit_available"] is True
    assert observation.attributes["exploit_ease"] == "Exploits are available"


def test_nessus_row_without_cve() -> None:
    [observation] = _stream("nessus", NESSUS_HEADER, CERTIFICATE_NESSUS)
    assert observation.observables == []
    assert observation.hosts == ["192.0.2.10"]
    assert observation.attributes["severity"] == "None"
    assert "cvss" not in observation.attributes


def test_nessus_no_known_exploit() -> None:
    extra = ("10.0", "No known exploits are available", "")
    row = _nessus_row("1", "CVE-2021-44228", "9.3", "Critical", "192.0.2.10", "0", "n", *extra)
    [observation] = _stream("nessus", NESSUS_EXTENDED_HEADER, row)
    assert observation.attributes["exploit_available"] is False
    assert "port" not in observation.attributes  # Nessus writes port 0 for host-level findings


def test_nessus_row_before_header_rejected() -> None:
    error = _rejection("nessus", LOG4SHELL_NESSUS)
    assert error.reason == "missing_header"
    assert "header row" in str(error)


def test_nessus_headerless_auto_unrecognised() -> None:
    # Without a header a CSV row cannot be told apart from other text, so auto-detection finds no format.
    assert _rejection("auto", LOG4SHELL_NESSUS).reason == "unknown_format"


def test_nessus_wrong_column_count() -> None:
    error = _rejection("nessus", NESSUS_HEADER, LOG4SHELL_NESSUS + ',"extra"')
    assert error.reason == "field_count"
    assert "14 cells" in str(error)
    assert "13 columns" in str(error)


def test_nessus_split_row_rejected() -> None:
    first, second = LOG4SHELL_NESSUS.replace('"description"', '"first paragraph\nsecond paragraph"').split("\n")
    assert _rejection("nessus", NESSUS_HEADER, first).reason == "field_count"
    assert _rejection("nessus", NESSUS_HEADER, second).reason == "field_count"


def test_nessus_row_without_host_rejected() -> None:
    row = _nessus_row("156014", "CVE-2021-44228", "9.3", "Critical", "", "8080", "n")
    assert _rejection("nessus", NESSUS_HEADER, row).reason == "missing_field"


def test_nessus_hosts_separate_entities() -> None:
    second_host = LOG4SHELL_NESSUS.replace("192.0.2.10", "web02")
    observations = _stream("nessus", NESSUS_HEADER, LOG4SHELL_NESSUS, second_host)
    assert [observation.hosts for observation in observations] == [["192.0.2.10"], ["web02.example.com"]]


# -- Greenbone (OpenVAS) CSV -------------------------------------------------------------------

OPENVAS_HEADER = (
    "IP,Hostname,Port,Port Protocol,CVSS,Severity,QoD,Solution Type,NVT Name,Summary,Specific Result,"
    "NVT OID,CVEs,Task ID,Task Name,Timestamp,Result ID,Impact,Solution,Affected Software/OS,"
    "Vulnerability Insight,Vulnerability Detection Method,Product Detection Result,BIDs,CERTs,Other References"
)
# The layout before the QoD column was added.
OPENVAS_HEADER_WITHOUT_QOD = OPENVAS_HEADER.replace("Severity,QoD,", "Severity,")


def _openvas_row(
    ip: str, hostname: str, port: str, cvss: str, severity: str, name: str, cves: str, *, qod: bool = True
) -> str:
    cells = [ip, hostname, port, "tcp" if port else "", cvss, severity, "80", "VendorFix", name, "summary",
             "result", "1.3.6.1.4.1.25623.1.0.900001", cves, "4f1d5a9e-0000-4000-8000-000000000001",
             "Weekly scan", "2024-05-06T02:00:13Z", "7c2b9e41-0000-4000-8000-000000000002", "impact",
             "solution", "affected", "insight", "detection method", "", "", "", ""]
    if not qod:
        del cells[6]
    return _csv_line(*cells, quote_all=False)


LOG4SHELL_OPENVAS = _openvas_row(
    "192.0.2.21", "app01.example.com", "8443", "10.0", "High", "Apache Log4j RCE (Log4Shell)",
    "CVE-2021-44228,CVE-2021-45046",
)
SSH_BANNER_OPENVAS = _openvas_row("192.0.2.21", "", "", "0.0", "Log", "SSH Server type and version", "NOCVE")


@pytest.mark.parametrize("fmt", ["openvas", "auto"])
def test_openvas_multi_cve_row(fmt: str) -> None:
    [observation] = _stream(fmt, OPENVAS_HEADER, LOG4SHELL_OPENVAS)
    assert observation.format == "openvas"
    assert observation.source is SourceKind.VULN
    assert observation.hosts == ["192.0.2.21"]  # the IP column, not the reverse-DNS name
    assert observation.event_code == "1.3.6.1.4.1.25623.1.0.900001"
    assert observation.timestamp_ms == 1714960813000
    assert _observables(observation) == [
        (T.CVE, "CVE-2021-44228", "vulnerability.id"),
        (T.CVE, "CVE-2021-45046", "vulnerability.id"),
    ]
    assert observation.attributes == {
        "scanner": "openvas",
        "cvss": 10.0,
        "port": 8443,
        "protocol": "tcp",
        "check_id": "1.3.6.1.4.1.25623.1.0.900001",
        "title": "Apache Log4j RCE (Log4Shell)",
        "hostname": "app01.example.com",
        "severity": "High",  # Greenbone's label is kept even where the v3 bands say Critical
    }


def test_openvas_layout_without_qod() -> None:
    row = _openvas_row("192.0.2.22", "", "445", "8.1", "High", "SMBv1 RCE", "CVE-2017-0144", qod=False)
    [observation] = _stream("openvas", OPENVAS_HEADER_WITHOUT_QOD, row)
    assert _observables(observation) == [(T.CVE, "CVE-2017-0144", "vulnerability.id")]
    assert observation.attributes["cvss"] == 8.1
    assert "hostname" not in observation.attributes


def test_openvas_log_result_without_cve() -> None:
    [observation] = _stream("openvas", OPENVAS_HEADER, SSH_BANNER_OPENVAS)
    assert observation.observables == []
    assert observation.attributes["severity"] == "None"  # Greenbone's "Log" class
    assert "port" not in observation.attributes
    assert "protocol" not in observation.attributes


def test_openvas_row_before_header_rejected() -> None:
    assert _rejection("openvas", LOG4SHELL_OPENVAS).reason == "missing_header"


def test_openvas_stream_nessus_header_rejected() -> None:
    # A fixed openvas stream never reads a Nessus header, so the Nessus header line is itself a row.
    assert _rejection("openvas", NESSUS_HEADER).reason == "missing_header"


def test_later_header_replaces_earlier() -> None:
    observations = _stream("auto", NESSUS_HEADER, LOG4SHELL_NESSUS, OPENVAS_HEADER, LOG4SHELL_OPENVAS)
    assert [observation.format for observation in observations] == ["nessus", "openvas"]


def test_openvas_wrong_column_count() -> None:
    assert _rejection("openvas", OPENVAS_HEADER, "192.0.2.21,app01.example.com,443").reason == "field_count"


def test_openvas_split_row_rejected() -> None:
    multi_line = LOG4SHELL_OPENVAS.replace("result", '"Installed version: 2.14.1\nFixed version: 2.15.0"')
    first, second = multi_line.split("\n")
    assert _rejection("openvas", OPENVAS_HEADER, first).reason == "field_count"
    assert _rejection("openvas", OPENVAS_HEADER, second).reason == "field_count"


# -- severity ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("score", "severity"),
    [(0.0, "None"), (0.1, "Low"), (3.9, "Low"), (4.0, "Medium"), (6.9, "Medium"), (7.0, "High"), (8.9, "High"),
     (9.0, "Critical"), (10.0, "Critical")],
)
def test_severity_from_cvss_v3_bands(score: float, severity: str) -> None:
    assert vuln.severity_of_score(score) == severity


@pytest.mark.parametrize(
    ("cvss2", "extra", "severity"),
    [
        ("9.3", ("8.1", "", ""), "High"),  # CVE-2017-0144: the v3 score 8.1 decides
        ("9.3", ("", "", ""), "Critical"),  # only the v2 score: banded with the v3 thresholds
        ("5.1", ("9.0", "", ""), "Critical"),  # CVE-2021-45046
        ("", ("", "", ""), None),  # no score and no label: no severity
    ],
)
def test_nessus_severity_derived_without_risk(cvss2: str, extra: tuple[str, str, str], severity: str | None) -> None:
    row = _nessus_row("1", "CVE-2017-0144", cvss2, "", "192.0.2.10", "445", "n", *extra)
    [observation] = _stream("nessus", NESSUS_EXTENDED_HEADER, row)
    assert observation.attributes.get("severity") == severity


def test_unknown_label_uses_score() -> None:
    row = _openvas_row("192.0.2.21", "", "80", "5.0", "False Positive", "n", "CVE-2021-44228")
    [observation] = _stream("openvas", OPENVAS_HEADER, row)
    assert observation.attributes["severity"] == "Medium"


# -- ECS vulnerability documents -----------------------------------------------------------


def _ecs_document() -> dict[str, Any]:
    return {
        "@timestamp": "2024-05-06T03:00:00Z",
        "event": {"kind": "state", "category": ["vulnerability"]},
        "host": {"name": "DB01.example.com", "ip": ["192.0.2.30"]},
        "vulnerability": {
            "id": "CVE-2021-44228",
            "score": {"base": 10.0, "version": "3.1"},
            "scanner": {"vendor": "Tenable"},
        },
        "service": {"name": "http"},
        "destination": {"port": 8080},
        "network": {"transport": "tcp"},
    }


def test_ecs_vulnerability_nested() -> None:
    observation = parse_record(_json(_ecs_document()), "auto", EXAMPLE)
    assert observation.format == "ecs-vuln"
    assert observation.source is SourceKind.VULN
    assert observation.hosts == ["db01.example.com"]  # host.name before host.ip
    assert observation.timestamp_ms == 1714964400000
    assert _observables(observation) == [(T.CVE, "CVE-2021-44228", "vulnerability.id")]
    assert observation.attributes == {
        "scanner": "Tenable",
        "cvss": 10.0,
        "cvss_version": "3.1",
        "port": 8080,
        "protocol": "tcp",
        "service": "http",
        "severity": "Critical",
    }


def test_ecs_vulnerability_dotted_id_list() -> None:
    document = {
        "@timestamp": "2024-05-06T03:00:00Z",
        "host.ip": "192.0.2.31",
        "vulnerability.id": ["CVE-2017-0143", "cve-2017-0144"],
        "vulnerability.severity": "HIGH",
        "vulnerability.score.base": "8.1",
    }
    observation = parse_record(_json(document), "auto", EXAMPLE)
    assert observation.format == "ecs-vuln"
    assert observation.hosts == ["192.0.2.31"]
    assert [value for _, value, _ in _observables(observation)] == ["CVE-2017-0143", "CVE-2017-0144"]
    assert observation.attributes == {"cvss": 8.1, "severity": "High"}


def test_ecs_vulnerability_numeric_id_rejected() -> None:
    document = {**_ecs_document(), "vulnerability": {"id": 44228}}
    with pytest.raises(MalformedRecordError, match="vulnerability.id") as caught:
        parse_record(_json(document), "ecs-vuln", EXAMPLE)
    assert caught.value.reason == "field_type"


def test_ecs_vulnerability_without_host_rejected() -> None:
    document = {"@timestamp": "2024-05-06T03:00:00Z", "vulnerability": {"id": "CVE-2021-44228"}}
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(_json(document), "ecs-vuln", EXAMPLE)
    assert caught.value.reason == "missing_field"


def test_ecs_without_id_stays_generic() -> None:
    document = {"@timestamp": "2024-05-06T03:00:00Z", "event": {"category": "vulnerability"}, "host": {"name": "db01"}}
    assert parse_record(_json(document), "auto", EXAMPLE).format == "ecs"


# -- robustness -----------------------------------------------------------------------------

_DEFENDER_FIELDS = (
    "Table", "$table", "Type", "category", "properties", "time", "Timestamp", "TimeGenerated", "ActionType",
    "DeviceId", "DeviceName", "FileName", "FolderPath", "SHA1", "SHA256", "MD5", "ProcessCommandLine",
    "ProcessVersionInfoOriginalFileName", "AccountDomain", "AccountName", "AccountUpn", "AccountId", "UserId",
    "InitiatingProcessFileName", "InitiatingProcessFolderPath", "InitiatingProcessSHA1", "InitiatingProcessSHA256",
    "InitiatingProcessMD5", "InitiatingProcessCommandLine", "InitiatingProcessAccountDomain",
    "InitiatingProcessAccountName", "InitiatingProcessAccountUpn", "InitiatingProcessVersionInfoOriginalFileName",
    "RemoteIP", "RemotePort", "RemoteUrl", "RemoteDeviceName", "LocalIP", "LogonType", "FileOriginUrl",
    "FileOriginReferrerUrl", "FileOriginIP", "RequestSourceIP", "RequestAccountDomain", "RequestAccountName",
    "Application", "ApplicationId", "ActivityType", "ActivityObjects", "RawEventData", "MailboxOwnerUPN",
    "IPAddress", "DestinationIPAddress", "DestinationDeviceName", "TargetAccountUpn", "QueryType", "QueryTarget",
    "NetworkMessageId",
)
_ECS_VULNERABILITY_FIELDS = (
    "@timestamp", "event", "event.code", "event.created", "code", "host", "host.name", "host.hostname", "host.ip",
    "name", "ip", "vulnerability", "vulnerability.id", "id", "vulnerability.score.base", "vulnerability.score.version",
    "score", "base", "version", "vulnerability.severity", "severity", "vulnerability.scanner.vendor", "scanner",
    "vendor", "service.name", "destination.port", "port", "network.transport",
)
_FIELD_NAMES = st.sampled_from(_DEFENDER_FIELDS + _ECS_VULNERABILITY_FIELDS)
_SAMPLE_VALUES = st.sampled_from(
    [
        "DeviceProcessEvents", "DeviceNetworkEvents", "DeviceLogonEvents", "CloudAppEvents",
        "AdvancedHunting-DeviceFileEvents", "AdvancedHunting-EmailEvents", "ProcessCreated", "LogonSuccess",
        "2021-08-02T13:11:39.7724491Z", "9" * 400, "CVE-2021-44228", "CVE-2017-0143 cve-2017-0144", "10.0", "nan",
        "192.0.2.1", "::1", "127.0.0.1", "ws01.example.com", "EXAMPLE\\alice", "alice@example.com", "-", "",
        "NT AUTHORITY", "SYSTEM", "{\"UserId\": \"bob@example.com\"}", "{", "High", "None",
    ]
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | _SAMPLE_VALUES
)
_JSON_VALUES = st.recursive(
    _SCALARS,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_FIELD_NAMES, children, max_size=4),
    max_leaves=12,
)
_OVERRIDES = st.dictionaries(_FIELD_NAMES, _JSON_VALUES, max_size=6)
_TEMPLATES = st.sampled_from(
    [_process_row(), _ecs_document(), {"Timestamp": "2021-08-02T13:13:02Z", "ActionType": "x", "Application": "y"}]
)
# Valid rows with some fields replaced reach the adapters far more often than random objects do.
_DOCUMENTS = (
    st.dictionaries(_FIELD_NAMES, _JSON_VALUES, max_size=12)
    | st.builds(lambda template, changes: {**template, **changes}, _TEMPLATES, _OVERRIDES)
    | st.builds(
        lambda template, changes: {
            "category": "AdvancedHunting-DeviceNetworkEvents",
            "properties": {**template, **changes},
        },
        _TEMPLATES,
        _OVERRIDES,
    )
)


@settings(max_examples=300, deadline=None)
@given(document=_DOCUMENTS, fmt=st.sampled_from(["mde", "ecs-vuln", "auto"]))
def test_json_records_only_malformed_errors(document: dict[str, Any], fmt: str) -> None:
    try:
        observation = parse_record(orjson.dumps(document), fmt, EXAMPLE)
    except MalformedRecordError:
        return
    assert isinstance(observation, Observation)


_CELL = st.text(max_size=12) | st.sampled_from(
    ["CVE-2021-44228", "CVE-2017-0144,CVE-2017-0145", "192.0.2.1", "9.3", "Critical", "Log", "445", "tcp", "Yes", "",
     '"', "\n", "\ufeff"]
)
_CELLS = st.lists(_CELL, max_size=30)
# Rows with exactly the header's number of cells reach the adapters; the others test the column check.
_FULL_ROWS = st.sampled_from([16, 26]).flatmap(lambda count: st.lists(_CELL, min_size=count, max_size=count))
_LINES = (
    st.text(max_size=200)
    | _CELLS.map(lambda cells: _csv_line(*cells))
    | _CELLS.map(",".join)
    | _FULL_ROWS.map(lambda cells: _csv_line(*cells))
    | _FULL_ROWS.map(",".join)
)


@settings(max_examples=300, deadline=None)
@given(
    header=st.sampled_from([NESSUS_EXTENDED_HEADER, OPENVAS_HEADER, ""]),
    lines=st.lists(_LINES, min_size=1, max_size=4),
    fmt=st.sampled_from(["nessus", "openvas", "auto"]),
)
def test_text_lines_only_malformed_errors(header: str, lines: list[str], fmt: str) -> None:
    parser = StreamParser(fmt, EXAMPLE)
    for offset, line in enumerate([header, *lines]):
        try:
            parser.parse(line.encode(), RecordRef("scan", 0, offset), 0)
        except MalformedRecordError:
            continue
