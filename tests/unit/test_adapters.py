"""Golden tests of the source adapters on real third-party logs, read in place.

The samples live outside the repository (their licences vary) in a folder
``shared/real`` beside the work tree; the module is skipped without it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from detectors.adapters import parse_record
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType as T
from detectors.observation import Observation, SourceKind, Stage

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/real not present: real samples are read in place and not shipped", allow_module_level=True)

MORDOR = REAL / "edr" / "otrf_mordor"
EVTX = REAL / "edr" / "evtx_attack_samples"
SQUID = REAL / "proxy_network" / "squid"
PSEXEC = MORDOR / "empire_psexec_dcerpc_tcp_svcctl_2020-09-20121608.filtered.json"

SHIRE = IdentityRules(default_domain="theshire.local", domain_map={"THESHIRE": "theshire.local"})
PLAIN = IdentityRules()


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def _record(path: Path, line: int, fmt: str, rules: IdentityRules = PLAIN) -> Observation:
    return parse_record(_lines(path)[line - 1], fmt, rules)


def _observables(observation: Observation) -> list[tuple[T, str, str]]:
    return [(observable.type, observable.value, observable.field) for observable in observation.observables]


def _non_user_observables(observation: Observation) -> list[tuple[T, str, str]]:
    return [item for item in _observables(observation) if item[0] is not T.USER]


def _parse_file(path: Path, fmt: str, rules: IdentityRules) -> tuple[list[Observation], dict[str, int]]:
    """Parse every record as the replay does: blank lines and ``#`` comments of text logs are not records."""
    parsed: list[Observation] = []
    rejected: dict[str, int] = {}
    for raw in _lines(path):
        stripped = raw.strip()
        if not stripped or (fmt == "squid" and stripped.startswith(b"#")):
            continue
        try:
            parsed.append(parse_record(raw, fmt, rules))
        except MalformedRecordError as error:
            rejected[error.reason] = rejected.get(error.reason, 0) + 1
    return parsed, rejected


# -- whole files ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "fmt", "records"),
    [
        (MORDOR / "empire_psexec_dcerpc_tcp_svcctl_2020-09-20121608.filtered.json", "sysmon", 162),
        (MORDOR / "empire_smbexec_dcerpc_smb_svcctl_2020-09-20025716.filtered.json", "sysmon", 115),
        (MORDOR / "empire_wmi_dcerpc_wmi_IWbemServices_ExecMethod_2020-09-21001437.filtered.json", "sysmon", 211),
        (MORDOR / "covenant_sharpwmi_create_dcerpc_wmi_2020-08-06035621.filtered.json", "sysmon", 230),
        (EVTX / "LM_4624_mimikatz_sekurlsa_pth_source_machine.jsonl", "sysmon", 6),
        (EVTX / "LM_REMCOM_5145_TargetHost.jsonl", "sysmon", 30),
        (EVTX / "LM_Remote_Service02_7045.jsonl", "sysmon", 3),
        (EVTX / "LM_impacket_docmexec_mmc_sysmon_01.jsonl", "sysmon", 9),
        (EVTX / "LM_sysmon_psexec_smb_meterpreter.jsonl", "sysmon", 10),
        (EVTX / "LM_wmiexec_impacket_sysmon_whoami.jsonl", "sysmon", 7),
        (EVTX / "powercat_revShell_sysmon_1_3.jsonl", "sysmon", 9),
        (EVTX / "smbmap_upload_exec_sysmon.jsonl", "sysmon", 27),
        (SQUID / "elastic_squid-log-access.head40.log", "squid", 40),
        (SQUID / "elastic_test-access-extensive.log", "squid", 11),
        (SQUID / "fail2ban_squid_access.log", "squid", 4),
    ],
    ids=lambda value: value.name if isinstance(value, Path) else str(value),
)
def test_adapter_file_counts(path: Path, fmt: str, records: int) -> None:
    parsed, rejected = _parse_file(path, fmt, SHIRE)
    assert len(parsed) == records
    assert rejected == {}


def test_adapter_auto_format_same_count() -> None:
    parsed, rejected = _parse_file(PSEXEC, "auto", SHIRE)
    assert (len(parsed), rejected) == (162, {})


def test_mordor_collector_never_a_host() -> None:
    hosts: set[str] = set()
    for path in MORDOR.glob("*.json"):
        for observation in _parse_file(path, "sysmon", SHIRE)[0]:
            hosts.update(observation.hosts)
    assert "wec.internal.cloudapp.net" not in hosts


def test_mordor_endpoints_short_name_folded() -> None:
    parsed, _ = _parse_file(PSEXEC, "sysmon", SHIRE)
    endpoints = {observation.hosts[0] for observation in parsed}
    assert endpoints == {"mordordc.theshire.local", "workstation5.theshire.local", "workstation6.theshire.local"}


def test_mordor_all_edr_source() -> None:
    parsed, _ = _parse_file(PSEXEC, "sysmon", SHIRE)
    assert {observation.source for observation in parsed} == {SourceKind.EDR}


# -- OTRF Mordor, NXLog shape ------------------------------------------------------


def test_mordor_process_create() -> None:
    observation = _record(PSEXEC, 16, "sysmon", SHIRE)
    assert observation.hosts == ["workstation6.theshire.local"]
    assert observation.users == []  # NT AUTHORITY\SYSTEM
    assert observation.stage is Stage.EXECUTED
    assert observation.event_code == "1"
    assert observation.timestamp_ms == 1600618597523  # UtcTime 2020-09-20 16:16:37.523
    assert _observables(observation) == [
        (T.SHA1, "5009839791aad710921715d5b51e7a9a963b09f5", "file.hash.sha1"),
        (T.MD5, "91c04c34e7145edf11b0a9e96698763e", "file.hash.md5"),
        (T.SHA256, "010b0651370be1e96b9616cc1b24396242b35b8fa67fdb8dbfc4a4b79a4ced28", "file.hash.sha256"),
        (T.IMPHASH, "de31d6a28f9c02a2c0eebbe6e4b686a2", "file.hash.imphash"),
        (T.FILE_NAME, "officec2rclient.exe", "process.executable"),
        (T.FILE_NAME, "officec2rclient.exe", "process.pe.original_file_name"),
    ]
    assert [field for field, _ in observation.free_text] == ["process.command_line", "process.parent.command_line"]


def test_mordor_c2_connection() -> None:
    observation = _record(PSEXEC, 103, "sysmon", SHIRE)
    assert observation.hosts == ["workstation6.theshire.local"]
    assert observation.stage is Stage.CONTACTED
    assert observation.timestamp_ms == 1600618621152
    assert _observables(observation) == [
        (T.FILE_NAME, "powershell.exe", "process.executable"),
        (T.IPV4, "10.10.10.5", "destination.ip"),
    ]


def test_mordor_connection_user_mapped() -> None:
    observation = _record(PSEXEC, 77, "sysmon", SHIRE)
    assert observation.hosts == ["workstation5.theshire.local"]
    assert observation.users == ["pgustavo@theshire.local"]
    assert (T.USER, "pgustavo@theshire.local", "user.name") in _observables(observation)
    assert _non_user_observables(observation) == [
        (T.FILE_NAME, "powershell.exe", "process.executable"),
        (T.IPV4, "172.18.39.6", "destination.ip"),
    ]


def test_mordor_dns_query() -> None:
    observation = _record(PSEXEC, 75, "sysmon", SHIRE)
    assert observation.hosts == ["workstation5.theshire.local"]
    assert observation.stage is Stage.CONTACTED
    assert _observables(observation) == [
        (T.FILE_NAME, "powershell.exe", "process.executable"),
        (T.DOMAIN, "workstation6.theshire.local", "dns.question.name"),
        (T.IPV4, "172.18.39.6", "dns.resolved_ip"),  # written ::ffff:172.18.39.6
    ]


def test_mordor_kerberos_upn_not_doubled() -> None:
    observation = _record(PSEXEC, 68, "sysmon", SHIRE)
    assert observation.hosts == ["mordordc.theshire.local"]
    assert observation.users == ["pgustavo@theshire.local"]


def test_mordor_machine_logon_no_user() -> None:
    observation = _record(PSEXEC, 14, "sysmon", SHIRE)  # 4624 of MORDORDC$ from ::1
    assert observation.hosts == ["mordordc.theshire.local"]
    assert observation.users == []


# -- EVTX-ATTACK-SAMPLES, EVTX shape -----------------------------------------------


def test_evtx_process_create() -> None:
    observation = _record(EVTX / "LM_wmiexec_impacket_sysmon_whoami.jsonl", 5, "sysmon")
    assert observation.hosts == ["iewin7"]
    assert observation.users == ["ieuser@iewin7"]
    assert observation.stage is Stage.EXECUTED
    assert observation.timestamp_ms == 1556656371356
    assert _observables(observation) == [
        (T.SHA1, "dc058f52ad8acbd316827b6dcac2434ab3cc515c", "file.hash.sha1"),
        (T.MD5, "0ebf71e33ef09ca65d9683afa999c473", "file.hash.md5"),
        (T.SHA256, "599efd455aeeefe2044a9b597061f271595033f5d0df2c99dfdbca8394bbcec3", "file.hash.sha256"),
        (T.IMPHASH, "c5352b949915ab8cd5e1844790d19274", "file.hash.imphash"),
        (T.FILE_NAME, "whoami.exe", "process.executable"),
        (T.USER, "ieuser@iewin7", "user.name"),
    ]
    assert observation.free_text[0] == ("process.command_line", "whoami  /all ")


def test_evtx_inbound_smb_attacker_address() -> None:
    # Initiated=False with the local end in Source*: the attacker 10.0.2.19 is in Destination*.
    observation = _record(EVTX / "LM_wmiexec_impacket_sysmon_whoami.jsonl", 1, "sysmon")
    assert observation.hosts == ["iewin7"]
    assert observation.users == []
    assert observation.timestamp_ms == 1556656369659
    assert _observables(observation) == [
        (T.FILE_NAME, "system", "process.executable"),
        (T.IPV4, "10.0.2.18", "source.ip"),
        (T.IPV4, "10.0.2.19", "destination.ip"),
    ]


def test_evtx_reverse_shell_attacker_address() -> None:
    observation = _record(EVTX / "powercat_revShell_sysmon_1_3.jsonl", 7, "sysmon")
    assert observation.hosts == ["iewin7"]
    assert observation.users == ["ieuser@iewin7"]
    assert (T.IPV4, "10.0.2.18", "destination.ip") in _observables(observation)


def test_evtx_share_access_both_ends() -> None:
    observation = _record(EVTX / "LM_REMCOM_5145_TargetHost.jsonl", 2, "sysmon")
    assert observation.hosts == ["pc01.example.corp", "10.0.2.16"]
    assert observation.users == ["ieuser@pc01"]
    assert observation.stage is Stage.CONTACTED
    assert _observables(observation) == [
        (T.FILE_NAME, "remcomsvc.exe", "file.path"),
        (T.IPV4, "10.0.2.16", "source.ip"),
        (T.USER, "ieuser@pc01", "user.name"),
    ]


def test_evtx_share_access_loopback_not_a_host() -> None:
    observation = _record(EVTX / "LM_REMCOM_5145_TargetHost.jsonl", 13, "sysmon")
    assert observation.hosts == ["pc01.example.corp"]


def test_evtx_service_install_localsystem_not_user() -> None:
    observation = _record(EVTX / "LM_Remote_Service02_7045.jsonl", 1, "sysmon")
    assert observation.hosts == ["win-77ltaphiq1r.example.corp"]
    assert observation.users == []
    assert observation.free_text == [("service.executable", "cmd.exe")]
    assert observation.timestamp_ms == 1551604828621  # TimeCreated 2019-03-03 09:20:28.621489+00:00


def test_evtx_logon_user_mapped() -> None:
    rules = IdentityRules(domain_map={"EXAMPLE": "example.corp"})
    observation = _record(EVTX / "LM_4624_mimikatz_sekurlsa_pth_source_machine.jsonl", 2, "sysmon", rules)
    assert observation.hosts == ["pc01.example.corp"]
    assert observation.users == ["user01@example.corp"]


# -- Squid access.log ------------------------------------------------------------


def test_squid_native_connect() -> None:
    observation = _record(SQUID / "elastic_squid-log-access.head40.log", 1, "squid")
    assert observation.source is SourceKind.PROXY
    assert observation.hosts == ["10.105.21.199"]
    assert observation.users == ["user01"]
    assert observation.stage is Stage.CONTACTED
    assert observation.event_code == "TCP_MISS/200"
    assert observation.timestamp_ms == 1157689312049
    assert _observables(observation) == [
        (T.URL, "login.yahoo.com:443/", "url.original"),
        (T.IPV4, "175.16.199.115", "destination.ip"),
    ]


def test_squid_native_empty_query_dropped() -> None:
    observation = _record(SQUID / "elastic_squid-log-access.head40.log", 7, "squid")
    assert _observables(observation) == [
        (T.URL, "www.google-analytics.com/__utm.gif", "url.original"),
        (T.IPV4, "175.16.199.147", "destination.ip"),
    ]


def test_squid_native_denied_no_user_no_peer() -> None:
    observation = _record(SQUID / "elastic_squid-log-access.head40.log", 22, "squid")
    assert observation.hosts == ["10.105.47.218"]
    assert observation.users == []
    assert _observables(observation) == [(T.URL, "hi5.com/", "url.original")]


def test_squid_extended_connect() -> None:
    observation = _record(SQUID / "elastic_test-access-extensive.log", 2, "squid")
    assert observation.hosts == ["10.105.21.199"]
    assert observation.users == ["badeyek"]
    assert observation.event_code == "TCP_TUNNEL/200"
    assert observation.timestamp_ms == 1773416922568
    assert _observables(observation) == [
        (T.URL, "www.google.com:443/", "url.original"),
        (T.IPV4, "198.51.100.20", "destination.ip"),
    ]


def test_squid_extended_get_no_user() -> None:
    observation = _record(SQUID / "elastic_test-access-extensive.log", 3, "squid")
    assert observation.users == []
    assert _observables(observation) == [
        (T.URL, "httpbin.org/get", "url.original"),
        (T.IPV4, "192.0.2.30", "destination.ip"),
    ]


def test_squid_connect_error_target_no_observable() -> None:
    observation = _record(SQUID / "fail2ban_squid_access.log", 7, "squid")
    assert observation.hosts == ["175.44.0.184"]
    assert observation.event_code == "NONE/405"
    assert observation.observables == []
