"""Golden tests of the Zeek and Zscaler adapters on real third-party logs, read in place.

Each file is read as the offline replay reads it: one StreamParser per file, so
the header of a Zeek TSV file is seen before its data lines. The samples live
outside the repository in a folder ``shared/real`` beside the work tree; the
module is skipped without it.
"""

from __future__ import annotations

import io
import json
import time
from functools import cache
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.adapters import parse_record, zeek
from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.index import IocIndex
from detectors.observables import ObservableType as T
from detectors.observation import Observation, SourceKind, Stage
from service.replay import Replay, load_feeds

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/real not present: real samples are read in place and not shipped", allow_module_level=True)

NETWORK = REAL / "proxy_network"
DAY1 = NETWORK / "zeek_otrf_apt29_day1"
DAY2 = NETWORK / "zeek_otrf_apt29_day2"
LSASS = NETWORK / "zeek_otrf_lsass_campaign_05"
KOVTER = NETWORK / "zeek_stratosphere_ctu219-2_kovter"
SIMDA = NETWORK / "zeek_stratosphere_ctu355-1_simda"
SMTP = REAL / "mail" / "wrccdc2018_zeek_smtp.log.sample"
ZSCALER = NETWORK / "elastic_zscaler_zia_test-web.log"

PLAIN = IdentityRules()
NOW_MS = 1_700_000_000_000
PLACEHOLDER_VALUES = {"", "-", "(empty)", "none", "None"}


def _records(path: Path) -> list[tuple[int, bytes]]:
    """Return (line number, line) pairs as the replay reads them, blank lines left out."""
    with path.open("rb") as handle:
        lines = [(number, line.rstrip(b"\r\n")) for number, line in enumerate(handle, start=1)]
    return [(number, line) for number, line in lines if line.strip()]


def _parse_lines(path: Path, fmt: str) -> dict[int, Observation | MalformedRecordError | None]:
    """Parse a whole file through one StreamParser; map each line number to its observation, error or None (header)."""
    parser = StreamParser(fmt, PLAIN)
    results: dict[int, Observation | MalformedRecordError | None] = {}
    for number, raw in _records(path):
        try:
            parsed = parser.parse(raw, RecordRef(str(path), 0, number), NOW_MS)
        except MalformedRecordError as error:
            results[number] = error
            continue
        assert len(parsed) <= 1
        results[number] = parsed[0][0] if parsed else None
    return results


@cache
def _parse_file(path: Path, fmt: str) -> tuple[list[Observation], dict[str, int]]:
    observations: list[Observation] = []
    rejected: dict[str, int] = {}
    for result in _parse_lines(path, fmt).values():
        if isinstance(result, MalformedRecordError):
            rejected[result.reason] = rejected.get(result.reason, 0) + 1
        elif result is not None:
            observations.append(result)
    return observations, rejected


def _line(path: Path, number: int, fmt: str = "auto") -> Observation:
    result = _parse_lines(path, fmt)[number]
    assert isinstance(result, Observation), result
    return result


def _observables(observation: Observation) -> list[tuple[T, str, str]]:
    return [(observable.type, observable.value, observable.field) for observable in observation.observables]


def _header(path: Path) -> list[bytes]:
    return [raw for _, raw in _records(path) if raw.startswith(b"#") and not raw.startswith(b"#close")]


def _parse_after_header(header_file: Path, line: str | bytes) -> Observation:
    """Parse one data line in a stream that first received the header of ``header_file``."""
    parser = StreamParser("auto", PLAIN)
    for number, raw in enumerate(_header(header_file), start=1):
        assert parser.parse(raw, RecordRef("test", 0, number), NOW_MS) == []
    raw = line.encode("utf-8") if isinstance(line, str) else line
    parsed = parser.parse(raw, RecordRef("test", 0, 100), NOW_MS)
    assert len(parsed) == 1
    return parsed[0][0]


def _zeek_json(**fields: Any) -> Observation:
    return parse_record(orjson.dumps(fields), "auto", PLAIN)


# -- whole files ---------------------------------------------------------------

# (file, fixed format, observations, rejected by reason). Every data line of a
# supported log is one observation: the APT29 files hold no header lines, the
# TSV files 8 or 9 (with #close).
WHOLE_FILES = [
    (DAY1 / "NASHUA_conn.log", "zeek", 479, {}),
    (DAY1 / "NASHUA_dce_rpc.log", "zeek", 0, {"unsupported_log": 57}),
    (DAY1 / "NASHUA_dns.log", "zeek", 21, {}),
    (DAY1 / "NASHUA_files.log", "zeek", 379, {}),
    (DAY1 / "NASHUA_notice.log", "zeek", 1, {}),
    (DAY1 / "NASHUA_smb_mapping.log", "zeek", 0, {"unsupported_log": 5}),
    (DAY1 / "NASHUA_ssl.log", "zeek", 376, {}),
    (DAY1 / "SCRANTON_conn.log", "zeek", 134, {}),
    (DAY1 / "SCRANTON_dce_rpc.log", "zeek", 0, {"unsupported_log": 66}),
    (DAY1 / "SCRANTON_dns.log", "zeek", 32, {}),
    (DAY1 / "SCRANTON_files.log", "zeek", 69, {}),
    (DAY1 / "SCRANTON_http.log", "zeek", 62, {}),
    (DAY1 / "SCRANTON_notice.log", "zeek", 1, {}),
    (DAY1 / "SCRANTON_pe.log", "zeek", 0, {"unsupported_log": 1}),
    (DAY1 / "SCRANTON_smb_mapping.log", "zeek", 0, {"unsupported_log": 6}),
    (DAY1 / "SCRANTON_ssl.log", "zeek", 2, {}),
    (DAY2 / "NEWYORK_smb_files.log", "zeek", 0, {"unsupported_log": 9}),
    (DAY2 / "NEWYORK_smb_mapping.log", "zeek", 0, {"unsupported_log": 16}),
    (DAY2 / "SCRANTON_conn.log", "zeek", 53, {}),
    (DAY2 / "SCRANTON_dce_rpc.log", "zeek", 0, {"unsupported_log": 35}),
    (DAY2 / "UTICA-A_conn.log", "zeek", 353, {}),
    (DAY2 / "UTICA-A_dce_rpc.log", "zeek", 0, {"unsupported_log": 59}),
    (DAY2 / "UTICA-A_dns.log", "zeek", 58, {}),
    (DAY2 / "UTICA-A_files.log", "zeek", 3, {}),
    (DAY2 / "UTICA-A_http.log", "zeek", 1, {}),
    (DAY2 / "UTICA-A_notice.log", "zeek", 1, {}),
    (DAY2 / "UTICA-A_pe.log", "zeek", 0, {"unsupported_log": 1}),
    (DAY2 / "UTICA-C_conn.log", "zeek", 31, {}),
    (DAY2 / "UTICA-D_conn.log", "zeek", 357, {}),
    (DAY2 / "UTICA-D_dns.log", "zeek", 13, {}),
    (LSASS / "conn.log", "zeek-tsv", 895, {}),
    (LSASS / "dns.head1500.log", "zeek-tsv", 1500, {}),
    (LSASS / "files.log", "zeek-tsv", 3, {}),
    (LSASS / "http.log", "zeek-tsv", 3, {}),
    (LSASS / "kerberos.log", "zeek-tsv", 5, {}),
    (LSASS / "pe.log", "zeek-tsv", 0, {"unsupported_log": 1}),
    (LSASS / "smb_mapping.log", "zeek-tsv", 0, {"unsupported_log": 1}),
    (LSASS / "ssl.log", "zeek-tsv", 2, {}),
    (LSASS / "x509.log", "zeek-tsv", 0, {"unsupported_log": 1}),
    (KOVTER / "dns.log.labeled.head1200", "zeek-tsv", 1200, {}),
    (KOVTER / "files.log.labeled.head700", "zeek-tsv", 700, {}),
    (KOVTER / "http.log.labeled.head700", "zeek-tsv", 700, {}),
    (KOVTER / "ssl.log.labeled.head300", "zeek-tsv", 300, {}),
    (SIMDA / "dns.log", "zeek-tsv", 992, {}),
    (SIMDA / "http.log.head500", "zeek-tsv", 500, {}),
    (SMTP, "zeek-tsv", 362, {}),
    (ZSCALER, "zscaler", 6, {}),
]
_IDS = [f"{path.parent.name}/{path.name}" for path, *_ in WHOLE_FILES]


@pytest.mark.parametrize(("path", "fmt", "observations", "rejected"), WHOLE_FILES, ids=_IDS)
def test_whole_file_counts(path: Path, fmt: str, observations: int, rejected: dict[str, int]) -> None:
    parsed, reasons = _parse_file(path, fmt)
    assert len(parsed) == observations
    assert reasons == rejected


@pytest.mark.parametrize(("path", "fmt", "observations", "rejected"), WHOLE_FILES, ids=_IDS)
def test_whole_file_auto_format_counts(path: Path, fmt: str, observations: int, rejected: dict[str, int]) -> None:
    parsed, reasons = _parse_file(path, "auto")
    assert len(parsed) == observations
    assert reasons == rejected
    assert {observation.format for observation in parsed} <= {fmt}


def test_every_sample_file_listed() -> None:
    listed = {path for path, *_ in WHOLE_FILES}
    for folder in (DAY1, DAY2, LSASS, KOVTER, SIMDA):
        logs = {path for path in folder.iterdir() if path.suffix not in (".md", ".yaml", ".config")}
        assert logs <= listed


def test_placeholders_never_values() -> None:
    for path, fmt, *_ in WHOLE_FILES:
        for observation in _parse_file(path, fmt)[0]:
            values = [*observation.hosts, *observation.users, *(item.value for item in observation.observables)]
            assert not PLACEHOLDER_VALUES & set(values), (path, observation)


def test_source_kind_and_stage() -> None:
    for path, fmt, *_ in WHOLE_FILES:
        kinds = {(observation.source, observation.stage) for observation in _parse_file(path, fmt)[0]}
        expected = (SourceKind.MAIL, Stage.DELIVERED) if path == SMTP else (SourceKind.PROXY, Stage.CONTACTED)
        assert kinds <= {expected}, path


# -- DNS: the client is the entity, the resolver is infrastructure ---------------


def _dns_ends(path: Path) -> dict[int, tuple[str, str]]:
    """Read (id.orig_h, id.resp_h) of every data line straight from the file."""
    ends: dict[int, tuple[str, str]] = {}
    fields: list[str] = []
    for number, raw in _records(path):
        text = raw.decode("utf-8")
        if text.startswith("{"):
            record = json.loads(text)
            ends[number] = (record["id_orig_h"], record["id_resp_h"])
        elif text.startswith("#fields"):
            fields = text.split("\t")[1:]
        elif not text.startswith("#"):
            values = dict(zip(fields, text.split("\t"), strict=True))
            ends[number] = (values["id.orig_h"], values["id.resp_h"])
    return ends


DNS_FILES = [
    DAY1 / "NASHUA_dns.log",
    DAY1 / "SCRANTON_dns.log",
    DAY2 / "UTICA-A_dns.log",
    DAY2 / "UTICA-D_dns.log",
    LSASS / "dns.head1500.log",
    KOVTER / "dns.log.labeled.head1200",
    SIMDA / "dns.log",
]


@pytest.mark.parametrize("path", DNS_FILES, ids=lambda path: f"{path.parent.name}/{path.name}")
def test_dns_resolver_never_entity(path: Path) -> None:
    results = _parse_lines(path, "auto")
    ends = _dns_ends(path)
    assert ends
    for number, (client, resolver) in ends.items():
        observation = results[number]
        assert isinstance(observation, Observation)
        assert observation.hosts == [client]
        assert resolver not in observation.hosts
        # The resolver may still be an answer (the DC resolving its own name), never a connection end.
        assert not [item for item in observation.observables if item.field in ("source.ip", "destination.ip")]


def test_dns_sample_resolvers() -> None:
    resolvers = {resolver for path in DNS_FILES for _, resolver in _dns_ends(path).values()}
    assert {"10.0.0.4", "192.168.56.1", "8.8.8.8"} <= resolvers


def test_dns_apt29_query_and_answer() -> None:
    observation = _line(DAY2 / "UTICA-A_dns.log", 1)
    assert observation.hosts == ["10.0.1.5"]
    assert observation.users == []
    assert observation.event_code == "dns"
    assert observation.timestamp_ms == 1588316544441  # ts 1588316544.441272
    assert _observables(observation) == [
        (T.DOMAIN, "array607.prod.do.dsp.mp.microsoft.com", "dns.question.name"),
        (T.IPV4, "40.69.216.251", "dns.resolved_ip"),
    ]


def test_dns_tsv_cname_chain_and_addresses() -> None:
    observation = _line(KOVTER / "dns.log.labeled.head1200", 9)
    assert observation.hosts == ["192.168.1.113"]
    assert observation.timestamp_ms == 19380  # relative seconds from capture start, as written
    assert _observables(observation) == [
        (T.DOMAIN, "www.msftncsi.com", "dns.question.name"),
        (T.DOMAIN, "www.msftncsi.com.edgesuite.net", "dns.answers.data"),
        (T.DOMAIN, "a1961.g2.akamai.net", "dns.answers.data"),
        (T.IPV4, "195.113.232.73", "dns.resolved_ip"),
        (T.IPV4, "195.113.232.89", "dns.resolved_ip"),
    ]


def test_dns_refused_query_with_unset_fields() -> None:
    observation = _line(LSASS / "dns.head1500.log", 9)  # query, qtype and answers are all "-"
    assert observation.hosts == ["192.168.56.30"]
    assert observation.observables == []


def test_dns_ipv6_unique_local_client() -> None:
    observation = _line(SIMDA / "dns.log", 997)  # AAAA query, answers unset
    assert observation.hosts == ["fd77:48a1:c0bb:0:b96c:506d:6c7f:e8be"]
    assert _observables(observation) == [(T.DOMAIN, "puzybep.com", "dns.question.name")]


# -- http, ssl, conn, notice ------------------------------------------------------


def test_http_webdav_request_to_c2() -> None:
    observation = _line(DAY1 / "SCRANTON_http.log", 59)
    assert observation.hosts == ["10.0.1.4"]
    assert observation.timestamp_ms == 1588206925615
    assert _observables(observation) == [
        (T.IPV4, "192.168.0.4", "destination.ip"),
        (T.URL, "192.168.0.4/webdav/python.exe", "url.original"),
    ]


def test_http_url_adds_connection_port() -> None:
    observation = _line(DAY2 / "UTICA-A_http.log", 1)  # GET /m on 192.168.0.4:8080, Host: 192.168.0.4
    assert observation.hosts == ["10.0.1.5"]
    assert _observables(observation) == [
        (T.IPV4, "192.168.0.4", "destination.ip"),
        (T.URL, "192.168.0.4:8080/m", "url.original"),
    ]


def test_http_tsv_domain_and_url() -> None:
    observation = _line(KOVTER / "http.log.labeled.head700", 9)
    assert observation.hosts == ["192.168.1.113"]
    assert observation.timestamp_ms == 19504
    assert _observables(observation) == [
        (T.IPV4, "195.113.232.73", "destination.ip"),
        (T.URL, "www.msftncsi.com/ncsi.txt", "url.original"),
        (T.DOMAIN, "www.msftncsi.com", "url.domain"),
    ]


def test_http_tsv_without_host_or_uri() -> None:
    observation = _line(LSASS / "http.log", 11)  # the payload download: host and uri are "-"
    assert observation.hosts == ["192.168.56.30"]
    assert observation.timestamp_ms == 1693975958854
    assert _observables(observation) == [(T.IPV4, "10.0.5.14", "destination.ip")]


def test_ssl_server_name_and_subject() -> None:
    observation = _line(KOVTER / "ssl.log.labeled.head300", 9)
    assert observation.hosts == ["192.168.1.113"]
    assert _observables(observation) == [
        (T.IPV4, "23.4.249.223", "destination.ip"),
        (T.DOMAIN, "www.microsoft.com", "tls.client.server_name"),
    ]
    assert observation.free_text == [
        (
            "tls.server.x509.subject.distinguished_name",
            "CN=www.microsoft.com,OU=One Microsoft Way,O=Microsoft Corporation,L=Redmond,ST=Washington,C=US",
        )
    ]


def test_ssl_address_server_name_once() -> None:
    observation = _line(DAY1 / "NASHUA_ssl.log", 1)
    assert observation.hosts == ["10.0.1.6"]
    assert _observables(observation) == [(T.IPV4, "192.168.0.4", "destination.ip")]


def test_conn_internal_client_to_c2() -> None:
    observation = _line(DAY2 / "UTICA-C_conn.log", 1)
    assert observation.hosts == ["10.0.1.5"]
    assert observation.event_code == "conn"
    assert _observables(observation) == [(T.IPV4, "192.168.0.4", "destination.ip")]


def test_conn_tsv_link_local_ipv6() -> None:
    hosts = {host for observation in _parse_file(LSASS / "conn.log", "zeek-tsv")[0] for host in observation.hosts}
    assert hosts == {"192.168.56.30", "192.168.56.4", "fe80::1527:12fb:f098:f42d"}


def test_notice_source_and_free_text() -> None:
    observation = _line(DAY1 / "NASHUA_notice.log", 1)
    assert observation.hosts == ["10.0.1.6"]
    assert observation.event_code == "SSL::Invalid_Server_Cert"
    assert _observables(observation) == [(T.IPV4, "192.168.0.4", "destination.ip")]
    assert [field for field, _ in observation.free_text] == ["zeek.notice.msg", "zeek.notice.sub"]


@pytest.mark.parametrize(
    ("originator", "responder", "hosts", "observables"),
    [
        ("10.0.1.4", "198.51.100.7", ["10.0.1.4"], [(T.IPV4, "198.51.100.7", "destination.ip")]),
        ("10.0.1.4", "10.0.0.4", ["10.0.1.4"], [(T.IPV4, "10.0.0.4", "destination.ip")]),
        ("203.0.113.9", "172.16.5.5", ["172.16.5.5"], [(T.IPV4, "203.0.113.9", "source.ip")]),
        ("203.0.113.9", "198.51.100.7", ["203.0.113.9"], [(T.IPV4, "198.51.100.7", "destination.ip")]),
        ("2001:db8::1", "fd00::5", ["fd00::5"], [(T.IPV6, "2001:db8::1", "source.ip")]),
        ("127.0.0.1", "169.254.1.1", ["127.0.0.1"], [(T.IPV4, "169.254.1.1", "destination.ip")]),
    ],
    ids=["outbound", "both-internal", "inbound", "both-external", "inbound-ipv6-ula", "loopback-to-link-local"],
)
def test_conn_internal_side_is_the_entity(
    originator: str, responder: str, hosts: list[str], observables: list[tuple[T, str, str]]
) -> None:
    observation = _zeek_json(
        _path="conn", ts=1588205199.82437, conn_state="SF", **{"id.orig_h": originator, "id.resp_h": responder}
    )
    assert observation.hosts == hosts
    assert _observables(observation) == observables


def test_json_nested_id_and_iso_time() -> None:
    observation = _zeek_json(
        ts="2020-04-30T00:08:02.5Z",
        uid="C1",
        id={"orig_h": "10.0.1.4", "resp_h": "192.168.0.5", "resp_p": 1234},
        conn_state="S0",
    )
    assert observation.hosts == ["10.0.1.4"]
    assert observation.timestamp_ms == 1588205282500
    assert _observables(observation) == [(T.IPV4, "192.168.0.5", "destination.ip")]


# -- files: both ends of a transfer ----------------------------------------------


def test_files_both_internal_ends_are_entities() -> None:
    observation = _line(DAY1 / "NASHUA_files.log", 1)  # a GPO file from the DC NEWYORK to NASHUA over SMB
    assert observation.hosts == ["10.0.0.4", "10.0.1.6"]
    assert _observables(observation) == [
        (T.MD5, "cc85d7649546d3c0b1607f761b73fec2", "file.hash.md5"),
        (T.SHA1, "1a1a10b819f321b91b47d7dd73668406a15992db", "file.hash.sha1"),
        (T.FILE_NAME, "gpt.ini", "file.name"),
    ]


def test_files_upload_to_c2_both_ends() -> None:
    # OfficeSupplies.7z put on the WebDAV share of 192.168.0.4, a private address, so an internal end too.
    observation = _line(DAY1 / "SCRANTON_files.log", 46)
    assert observation.hosts == ["10.0.1.4", "192.168.0.4"]
    assert _observables(observation) == [
        (T.MD5, "dd5ea7248edbdc4b158e3c81c154857b", "file.hash.md5"),
        (T.SHA1, "96b696018a7ac4e898380421272ac37cc09fe157", "file.hash.sha1"),
    ]


def test_files_certificate_receiver_only() -> None:
    observation = _line(DAY1 / "NASHUA_files.log", 4)  # the Metasploit certificate of 192.168.0.4:8443
    assert observation.hosts == ["10.0.1.6"]
    assert _observables(observation) == [
        (T.IPV4, "192.168.0.4", "server.ip"),
        (T.MD5, "5258d4eeb5f309de3be1374834e17a60", "file.hash.md5"),
        (T.SHA1, "d9105746ea023ecdc6a47e7b4d026d5308525b8c", "file.hash.sha1"),
    ]


def test_files_download_from_external_server() -> None:
    observation = _line(KOVTER / "files.log.labeled.head700", 10)
    assert observation.hosts == ["192.168.1.113"]
    assert _observables(observation) == [
        (T.IPV4, "23.100.122.175", "server.ip"),
        (T.MD5, "e43f474ff8528cc08d71fdd071a1cf15", "file.hash.md5"),
        (T.SHA1, "e047b5661f4317f73b952701d8379b63fb060a73", "file.hash.sha1"),
    ]


def test_files_zeek5_connection_ends() -> None:
    # Zeek 5 writes id.orig_h/id.resp_h instead of tx_hosts/rx_hosts; the hashing analyzers were off.
    observation = _line(LSASS / "files.log", 11)
    assert observation.hosts == ["10.0.5.14", "192.168.56.30"]
    assert observation.observables == []


# -- smtp: recipients are mailboxes, servers are not entities ----------------------


def test_smtp_sender_helo_and_no_entity() -> None:
    observation = _line(SMTP, 367)
    assert observation.source is SourceKind.MAIL
    assert observation.stage is Stage.DELIVERED
    assert observation.hosts == []
    assert observation.users == []
    assert _observables(observation) == [
        (T.EMAIL, "nessus1865506255@invalid295404690.org", "email.sender.address"),
        (T.IPV4, "10.164.94.120", "source.ip"),
        (T.DOMAIN, "hotmail.com", "smtp.helo"),
    ]


def test_smtp_empty_recipients_no_user() -> None:
    observation = _line(SMTP, 369)  # rcptto is "(empty)"
    assert observation.users == []
    assert (T.EMAIL, "nessus1665256405@hotmail.com", "email.sender.address") in _observables(observation)


def test_smtp_servers_never_entities() -> None:
    observations, _ = _parse_file(SMTP, "zeek-tsv")
    assert {host for observation in observations for host in observation.hosts} == set()


def test_smtp_tsv_recipients_are_mailboxes() -> None:
    fields = ["1521912428.010921", "C1", "203.0.113.5", "34913", "10.47.1.208", "25", "1", "mx.example.net"]
    fields += ["<Evil@Bad.example.net>", "Alice@Corp.example,bob+invoices@corp.example", "-"]
    fields += ["Billing <billing@bad.example.net>", "Carol <carol@corp.example>", "-", "-"]
    fields += ["-"] * 9 + ["F", "(empty)", "F"]
    observation = _parse_after_header(SMTP, "\t".join(fields))
    assert observation.users == ["alice@corp.example", "bob@corp.example", "carol@corp.example"]
    assert observation.hosts == []
    assert _observables(observation) == [
        (T.EMAIL, "evil@bad.example.net", "email.sender.address"),
        (T.EMAIL, "billing@bad.example.net", "email.from.address"),
        (T.IPV4, "203.0.113.5", "source.ip"),
        (T.DOMAIN, "mx.example.net", "smtp.helo"),
    ]


def test_smtp_json_recipients_list() -> None:
    observation = _zeek_json(
        ts=1521912428.0, mailfrom="a@bad.example.net", rcptto=["Dave@Corp.example", "-"], to="Eve <eve@corp.example>"
    )
    assert observation.source is SourceKind.MAIL
    assert observation.users == ["dave@corp.example", "eve@corp.example"]


# -- kerberos, unsupported logs -------------------------------------------------------


def test_kerberos_client_account_is_a_user() -> None:
    observation = _line(LSASS / "kerberos.log", 10)
    assert observation.hosts == ["192.168.56.30"]  # the KDC 192.168.56.4 is infrastructure
    assert observation.users == ["pedro.gustavo@pandalab.com"]
    assert _observables(observation) == [
        (T.USER, "pedro.gustavo@pandalab.com", "user.name"),
        (T.USER, "pedro.gustavo@pandalab", "user.name"),
    ]


def test_kerberos_failed_request_without_client() -> None:
    observation = _line(LSASS / "kerberos.log", 9)
    assert observation.hosts == ["192.168.56.30"]
    assert observation.users == []
    assert observation.observables == []


def test_kerberos_service_principal_ignored() -> None:
    observation = _zeek_json(
        _path="kerberos", ts=1.0, client="host/ws01.example.com/EXAMPLE.COM", **{"id.orig_h": "10.0.0.9"}
    )
    assert observation.hosts == ["10.0.0.9"]
    assert observation.users == []


@pytest.mark.parametrize(
    ("path", "line", "named"),
    [
        (LSASS / "x509.log", 9, "x509.log names certificates but not the hosts"),
        (LSASS / "pe.log", 9, "its hashes are in files.log"),
        (DAY1 / "SCRANTON_dce_rpc.log", 1, "Zeek dce_rpc.log is not read"),
        (DAY2 / "NEWYORK_smb_files.log", 1, "Zeek smb_files.log is not read"),
    ],
    ids=["x509", "pe", "dce_rpc", "smb_files"],
)
def test_unsupported_logs_name_the_path(path: Path, line: int, named: str) -> None:
    error = _parse_lines(path, "auto")[line]
    assert isinstance(error, MalformedRecordError)
    assert error.reason == "unsupported_log"
    assert named in str(error)


# -- TSV header handling ---------------------------------------------------------------


def test_tsv_line_without_header_fixed_format() -> None:
    data = next(raw for _, raw in _records(LSASS / "conn.log") if not raw.startswith(b"#"))
    parser = StreamParser("zeek-tsv", PLAIN)
    with pytest.raises(MalformedRecordError) as caught:
        parser.parse(data, RecordRef("test", 0, 1), NOW_MS)
    assert caught.value.reason == "missing_header"
    assert "Send the '#separator', '#fields' and '#types' lines first" in str(caught.value)


def test_tsv_line_without_header_auto_format() -> None:
    data = next(raw for _, raw in _records(KOVTER / "http.log.labeled.head700") if not raw.startswith(b"#"))
    with pytest.raises(MalformedRecordError) as caught:
        StreamParser("auto", PLAIN).parse(data, RecordRef("test", 0, 1), NOW_MS)
    assert caught.value.reason == "missing_header"


def test_tsv_wrong_column_count() -> None:
    data = next(raw for _, raw in _records(LSASS / "conn.log") if not raw.startswith(b"#"))
    for broken in (data.rsplit(b"\t", 1)[0], data + b"\textra"):
        with pytest.raises(MalformedRecordError) as caught:
            _parse_after_header(LSASS / "conn.log", broken)
        assert caught.value.reason == "field_count"
        assert "#fields header names 21" in str(caught.value)


def test_tsv_header_is_per_stream() -> None:
    http = StreamParser("auto", PLAIN)
    dns = StreamParser("auto", PLAIN)
    for number, raw in enumerate(_header(KOVTER / "http.log.labeled.head700")):
        http.parse(raw, RecordRef("http", 0, number), NOW_MS)
    for number, raw in enumerate(_header(KOVTER / "dns.log.labeled.head1200")):
        dns.parse(raw, RecordRef("dns", 0, number), NOW_MS)
    line = _records(KOVTER / "dns.log.labeled.head1200")[8][1]
    assert dns.parse(line, RecordRef("dns", 0, 9), NOW_MS)[0][0].event_code == "dns"
    with pytest.raises(MalformedRecordError) as caught:
        http.parse(line, RecordRef("http", 0, 9), NOW_MS)
    assert caught.value.reason == "field_count"


def test_tsv_custom_separator_and_markers() -> None:
    parser = StreamParser("auto", PLAIN)
    header = [
        "#separator \\x7c",
        "#set_separator|;",
        "#empty_field|EMPTY",
        "#unset_field|UNSET",
        "#path|dns",
        "#fields|ts|id.orig_h|id.resp_h|query|answers",
        "#types|time|addr|addr|string|vector[string]",
    ]
    for number, line in enumerate(header):
        assert parser.parse(line.encode(), RecordRef("test", 0, number), NOW_MS) == []
    observation = parser.parse(
        b"1.5|10.1.1.1|10.1.1.53|bad.example.net|198.51.100.1;cdn.example.org", RecordRef("test", 0, 9), NOW_MS
    )[0][0]
    assert observation.hosts == ["10.1.1.1"]
    assert _observables(observation) == [
        (T.DOMAIN, "bad.example.net", "dns.question.name"),
        (T.IPV4, "198.51.100.1", "dns.resolved_ip"),
        (T.DOMAIN, "cdn.example.org", "dns.answers.data"),
    ]
    assert observation.timestamp_ms == 1500
    unset = parser.parse(b"2.0|10.1.1.2|10.1.1.53|UNSET|EMPTY", RecordRef("test", 0, 10), NOW_MS)[0][0]
    assert unset.hosts == ["10.1.1.2"]
    assert unset.observables == []


def test_tsv_escaped_value_is_decoded() -> None:
    context: dict[str, Any] = {}
    for raw in _header(KOVTER / "http.log.labeled.head700"):
        assert zeek.read_header_line(raw.decode("utf-8"), context)
    fields = ["1.0", "C1", "10.0.0.8", "1", "198.51.100.2", "80", "1", "GET", "bad.example.net", "/a\\x09b\\xc3\\xa9"]
    path, record = zeek.parse_tsv_line("\t".join([*fields, *["-"] * 19]), context)
    assert path == "http"
    assert record["uri"] == "/a\tb\u00e9"
    assert record["referrer"] is None
    assert record["tags"] is None


def test_squid_comments_not_zeek_headers() -> None:
    squid = NETWORK / "squid" / "fail2ban_squid_access.log"
    results = _parse_lines(squid, "auto")
    observations = [result for result in results.values() if isinstance(result, Observation)]
    assert [observation.format for observation in observations] == ["squid"] * 4
    assert not [result for result in results.values() if isinstance(result, MalformedRecordError)]


def test_other_json_formats_are_not_zeek() -> None:
    ecs = {"@timestamp": "2024-01-01T00:00:00Z", "event": {"category": "network"}, "source": {"ip": "10.0.0.1"}}
    assert parse_record(orjson.dumps(ecs), "auto", PLAIN).format == "ecs"
    windows = {"EventID": 3, "Channel": "Microsoft-Windows-Sysmon/Operational", "Hostname": "ws01"}
    assert parse_record(orjson.dumps(windows), "auto", PLAIN).format == "sysmon"
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(orjson.dumps({"query": "x.example", "qtype_name": "A"}), "auto", PLAIN)  # no ts
    assert caught.value.reason in ("unknown_format", "missing_field")


# -- Zscaler ---------------------------------------------------------------------------------


def test_zscaler_blocked_connect() -> None:
    observation = _line(ZSCALER, 1)
    assert observation.source is SourceKind.PROXY
    assert observation.stage is Stage.CONTACTED
    assert observation.format == "zscaler"
    assert observation.event_code == "Blocked"
    assert observation.hosts == ["81.2.69.193"]  # cip; devicehostname TestMachine35 is not a second host
    assert observation.users == ["test@example.com"]
    assert observation.timestamp_ms == 1640934427000  # Fri Dec 31 07:07:07 2021, read as UTC
    assert _observables(observation) == [
        (T.USER, "test@example.com", "user.name"),
        (T.URL, "www.example.com/", "url.original"),
        (T.IPV4, "81.2.69.145", "destination.ip"),
    ]


def test_zscaler_query_and_wrong_weekday() -> None:
    assert (
        T.URL,
        "www.example.com.com/params?version=10.0.19041.1266&user=65792&Id=1",
        "url.original",
    ) in _observables(_line(ZSCALER, 5))
    observation = _line(ZSCALER, 6)  # "Thu Aug 29 09:20:35 2022": 2022-08-29 was a Monday; the date wins
    assert observation.timestamp_ms == 1661764835000
    assert observation.event_code == "Allowed"
    assert (T.URL, "www.example.com:443/", "url.original") in _observables(observation)


def test_zscaler_v11_fields() -> None:
    event = {
        "epochtime": "1697496948",
        "time": "Mon Oct 16 22:55:48 2023",
        "login": "jdoe@safemarch.com",
        "cltip": "81.2.69.142",
        "cltintip": "10.20.30.40",
        "cltpubip": "81.2.69.142",
        "devicehostname": "THINKPADSMITH",
        "b64url": "d3d3LnRyeXRoaXNlbmNvZGV1cmwuY29tL2luZGV4",
        "host": "www.trythisencodeurl.com",
        "serverip": "175.16.199.1",
        "bamd5": "196a3d797bfee07fe4596b69f4ce1141",
        "sha256": "81ec78bc8298568bb5ea66d3c2972b670d0f7459b6cdbbcaacce90ab417ab15c",
        "filename": "nssfeed.txt",
        "threatname": "None",
        "action": "Allowed",
    }
    observation = parse_record(
        orjson.dumps({"version": "v11", "sourcetype": "zscalernss-web", "event": event}), "auto", PLAIN
    )
    assert observation.hosts == ["10.20.30.40"]
    assert observation.users == ["jdoe@safemarch.com"]
    assert observation.timestamp_ms == 1697496948000
    assert _observables(observation) == [
        (T.USER, "jdoe@safemarch.com", "user.name"),
        (T.URL, "www.trythisencodeurl.com/index", "url.original"),
        (T.DOMAIN, "www.trythisencodeurl.com", "url.domain"),
        (T.IPV4, "175.16.199.1", "destination.ip"),
        (T.MD5, "196a3d797bfee07fe4596b69f4ce1141", "file.hash.md5"),
        (T.SHA256, "81ec78bc8298568bb5ea66d3c2972b670d0f7459b6cdbbcaacce90ab417ab15c", "file.hash.sha256"),
        (T.FILE_NAME, "nssfeed.txt", "file.name"),
    ]


def test_zscaler_device_name_fallback() -> None:
    record = {
        "sourcetype": "zscalernss-web",
        "event": {"devicehostname": "WS01", "login": "None", "eurl": "bad.example.net/x"},
    }
    observation = parse_record(orjson.dumps(record), "zscaler", IdentityRules(default_domain="corp.example"))
    assert observation.hosts == ["ws01.corp.example"]
    assert observation.users == []


def test_zscaler_other_log_types_rejected() -> None:
    record = {"sourcetype": "zscalernss-dns", "event": {"dns_req": "bad.example.net"}}
    with pytest.raises(MalformedRecordError) as caught:
        parse_record(orjson.dumps(record), "auto", PLAIN)
    assert caught.value.reason == "unsupported_log"
    assert "zscalernss-dns" in str(caught.value)


# -- replay: the alerts a person finds by reading the files ------------------------------------

REPLAY_FILES = [
    *sorted(DAY1.glob("*.log")),
    *sorted(DAY2.glob("*.log")),
    *sorted(LSASS.glob("*.log")),
    KOVTER / "dns.log.labeled.head1200",
    SIMDA / "dns.log",
]


def _replay(tmp_path: Path, iocs: list[str]) -> tuple[dict[str, dict[str, Any]], Replay]:
    feed = tmp_path / "iocs.txt"
    feed.write_text("\n".join(iocs) + "\n", encoding="utf-8")
    index = IocIndex()
    replay = Replay(index, PLAIN)
    load_feeds([feed], index, replay.summary, int(time.time() * 1000))
    alerts = io.BytesIO()
    for path in REPLAY_FILES:
        replay.run_file(path, "auto", None, alerts, None)
    latest: dict[str, dict[str, Any]] = {}
    for line in alerts.getvalue().splitlines():
        alert = orjson.loads(line)
        latest[alert["yokoten"]["ioc_key"]] = alert
    return latest, replay


def test_replay_alerts_exact_scope(tmp_path: Path) -> None:
    iocs = [
        "192.168.0.4",  # the APT29 C2: SCRANTON (day 1 WebDAV), NASHUA (8443 beacons), UTICA (day 2)
        "newyork.dmevals.local",  # the DC's name, looked up by all three workstations
        "192.168.0.5",  # only SCRANTON connects to it (1234 and 443)
        "10.0.5.14",  # the lsass payload server: only 192.168.56.30
        "8.8.8.8",  # the resolver of the Stratosphere captures: never an observable
        # OfficeSupplies.7z, put by SCRANTON on the WebDAV share of 192.168.0.4. The C2 has a
        # private address, so the receiving end of the transfer counts as a second host.
        "dd5ea7248edbdc4b158e3c81c154857b",
    ]
    latest, replay = _replay(tmp_path, iocs)
    scopes = {key: (alert["related"]["hosts"], alert["related"]["user"]) for key, alert in latest.items()}
    assert scopes == {
        "ipv4-addr:192.168.0.4": (["10.0.1.4", "10.0.1.5", "10.0.1.6"], []),
        "domain-name:newyork.dmevals.local": (["10.0.1.4", "10.0.1.5", "10.0.1.6"], []),
        "md5:dd5ea7248edbdc4b158e3c81c154857b": (["10.0.1.4", "192.168.0.4"], []),
    }
    assert replay.summary.iocs == 6
    assert replay.summary.rejected_by_reason == {"unsupported_log": 258}


def test_replay_single_client_no_alert(tmp_path: Path) -> None:
    latest, replay = _replay(tmp_path, ["192.168.0.5", "10.0.5.14"])
    assert latest == {}
    assert set(replay.states["ipv4-addr:192.168.0.5"]["hosts"]) == {"10.0.1.4"}
    assert set(replay.states["ipv4-addr:10.0.5.14"]["hosts"]) == {"192.168.56.30"}
    latest, replay = _replay(tmp_path, ["8.8.8.8"])
    assert latest == {}
    assert replay.summary.sightings == 0


# -- hostile input ---------------------------------------------------------------------------------

ZEEK_FIELDS = [
    "ts", "_path", "@stream", "uid", "fuid", "id.orig_h", "id_orig_h", "id.resp_h", "id_resp_h", "id.resp_p",
    "id", "method", "host", "uri", "query", "qtype_name", "answers", "conn_state", "tx_hosts", "rx_hosts",
    "is_orig", "source", "mime_type", "md5", "sha1", "sha256", "filename", "server_name", "version", "cipher",
    "subject", "mailfrom", "rcptto", "from", "to", "cc", "reply_to", "helo", "x_originating_ip", "note", "msg",
    "sub", "src", "dst", "request_type", "client",
]  # fmt: skip
ZSCALER_FIELDS = [
    "epochtime", "time", "login", "cltintip", "cltip", "cip", "devicehostname", "eurl", "url", "b64url", "host",
    "ehost", "hostname", "serverip", "sip", "bamd5", "filemd5", "dlpmd5", "sha256", "filename", "efilename",
    "upload_filename", "action",
]  # fmt: skip
_LOG_PATHS = st.sampled_from(["conn", "dns", "http", "files", "ssl", "smtp", "notice", "kerberos", "x509", "weird"])
_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=40),
    st.sampled_from(["-", "(empty)", "10.0.0.1", "198.51.100.1", "bad.example.net", "a@b.example", "T", "1e999"]),
)
_JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _parse_or_reject(raw: bytes, fmt: str) -> None:
    try:
        parse_record(raw, fmt, PLAIN)
    except MalformedRecordError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    fields=st.dictionaries(st.sampled_from(ZEEK_FIELDS), _JSON_VALUES, max_size=12),
    path=_LOG_PATHS,
    path_key=st.sampled_from(["_path", "@stream", None]),
)
def test_zeek_json_any_types(fields: dict[str, Any], path: str, path_key: str | None) -> None:
    document = {"ts": 1588205199.82437, **({path_key: path} if path_key else {}), **fields}
    raw = orjson.dumps(document)
    for fmt in ("zeek", "auto"):
        _parse_or_reject(raw, fmt)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(ZSCALER_FIELDS), _JSON_VALUES, max_size=12), sourcetype=_JSON_LEAVES)
def test_zscaler_json_any_types(fields: dict[str, Any], sourcetype: Any) -> None:
    for document in ({"sourcetype": "zscalernss-web", "event": fields}, {"sourcetype": sourcetype, "event": fields}):
        raw = orjson.dumps(document)
        for fmt in ("zscaler", "auto"):
            _parse_or_reject(raw, fmt)


@settings(max_examples=200, deadline=None)
@given(
    columns=st.lists(
        st.one_of(st.text(max_size=20), st.sampled_from(["-", "(empty)", "\\x09", "a,b", "1.0"])), max_size=32
    )
)
def test_zeek_tsv_any_line(columns: list[str]) -> None:
    line = "\t".join(columns).encode("utf-8")
    for header_file in (LSASS / "conn.log", SMTP, KOVTER / "files.log.labeled.head700"):
        parser = StreamParser("auto", PLAIN)
        for number, raw in enumerate(_header(header_file)):
            parser.parse(raw, RecordRef("test", 0, number), NOW_MS)
        try:
            parser.parse(line, RecordRef("test", 0, 99), NOW_MS)
        except MalformedRecordError:
            pass


def test_zeek_json_wrong_types() -> None:
    cases = [
        {"_path": "conn", "ts": True},
        {"_path": "conn", "ts": 1e300},
        {"_path": "conn", "ts": "9" * 400},
        {"_path": "dns", "ts": 1.0, "query": 42},
        {"_path": "dns", "ts": 1.0, "answers": [1, 2]},
        {"_path": "files", "ts": 1.0, "tx_hosts": {"a": 1}},
        {"_path": "http", "ts": 1.0, "host": "x.example", "id.resp_p": 80.5},
        {"_path": ["conn"], "ts": 1.0},
    ]
    for document in cases:
        with pytest.raises(MalformedRecordError) as caught:
            parse_record(orjson.dumps(document), "zeek", PLAIN)
        assert caught.value.reason == "field_type", document
