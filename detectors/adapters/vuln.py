"""Vulnerability scanner findings: Nessus and Greenbone (OpenVAS) CSV exports, and ECS ``vulnerability.*`` JSON.

One finding becomes one observation of source kind ``vuln``. The scanned host
is the host entity and each CVE id of the finding is a ``cve`` observable, so
a CVE IOC alerts when a second host has it. A finding without a CVE id has no
observables; it is not an error.

Scanner details describe the finding rather than an observable, so they go
into ``Observation.attributes``, each key only when the input has it:

==================  ======================================================
key                 value
==================  ======================================================
scanner             ``nessus``, ``openvas`` or ``vulnerability.scanner.vendor``
severity            ``Critical``, ``High``, ``Medium``, ``Low`` or ``None``
cvss                the CVSS base score (float), v3 when the input has both
cvss_version        ``3.0``, ``2.0`` ... when the input gives the version
port                port number, 1 to 65535
protocol            ``tcp``, ``udp`` ...
service             ECS ``service.name``
exploit_available   bool, from Nessus ``Exploit?``, ``Exploitability Ease``,
                    ``Metasploit``, ``Core Impact`` or ``CANVAS``
exploit_ease        Nessus ``Exploitability Ease`` text
check_id            Nessus ``Plugin ID`` or Greenbone ``NVT OID``
title               Nessus ``Name`` or Greenbone ``NVT Name``
hostname            Greenbone ``Hostname`` when the host entity is the IP
==================  ======================================================

The severity is the scanner's own label when it gives one. Otherwise it is
derived from the score with the CVSS v3 qualitative bands: Critical from
9.0, High from 7.0, Medium from 4.0, Low from 0.1, else None.

CSV exports are read one line per record. The header row is stored in the
stream context by the ``header`` hook, and every later line is a row of that
export. A row whose quoted cell contains a line break is split over several
lines, and each of those lines is rejected with reason ``field_count``.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass, field
from typing import Any

from detectors.adapters.ecs import MAX_DEPTH
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, normalize_cve
from detectors.observation import Observable, Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

NESSUS_FORMAT = "nessus"
OPENVAS_FORMAT = "openvas"
ECS_FORMAT = "ecs-vuln"
HEADER_KEY = "vuln.csv_header"
CVE_FIELD = "vulnerability.id"

# Columns that identify a header row, in lower case. Both Nessus layouts (the
# Nessus 6 "CVSS" column and the later "CVSS v2.0 Base Score") have these, and
# so do both Greenbone "CSV Results" layouts (with and without "QoD").
_NESSUS_HEADER_COLUMNS = ("plugin id", "host")
_OPENVAS_HEADER_COLUMNS = ("ip", "nvt name")
_NESSUS_V3_COLUMNS = (("cvss v3.0 base score", "3.0"), ("cvss v3.1 base score", "3.1"))
_NESSUS_V2_COLUMNS = (("cvss v2.0 base score", "2.0"), ("cvss", "2.0"))
_NESSUS_SEVERITY_COLUMNS = ("risk", "risk factor")
_EXPLOIT_FRAMEWORK_COLUMNS = ("metasploit", "core impact", "canvas")
# Nessus exploitability_ease values that mean an attacker needs no new exploit.
_EASE_AVAILABLE = frozenset({"exploits are available", "no exploit is required"})
_CVE_SEPARATORS = re.compile(r"[\s,;]+")
_SEVERITY_LABELS = {
    "critical": "Critical",
    "high": "High",
    "medium": "Medium",
    "moderate": "Medium",
    "low": "Low",
    "none": "None",
    "info": "None",
    "informational": "None",
    "log": "None",  # Greenbone's class for results with severity 0.0
}


@dataclass(frozen=True)
class CsvHeader:
    """The header row of a CSV export: which format it is and where each column sits."""

    format: str
    columns: tuple[str, ...]
    positions: dict[str, int]  # lower-case column name to position, and the first of duplicate names wins


@dataclass
class Finding:
    """One scanner finding, whatever the input format."""

    format: str
    host: str | None
    cve_values: list[str]
    timestamp_ms: int | None = None
    event_code: str | None = None
    scanner_severity: object = None  # the scanner's label, as written
    attributes: dict[str, Any] = field(default_factory=dict)


# -- shared ---------------------------------------------------------------------


def split_cves(value: str) -> list[str]:
    """Return the CVE ids of a cell such as ``CVE-2021-44228,CVE-2021-45046``, in order, without duplicates.

    Commas, semicolons and white space separate ids. Tokens that are not CVE
    ids, such as the ``NOCVE`` of older OpenVAS reports, are skipped.
    """
    found: list[str] = []
    for token in _CVE_SEPARATORS.split(value):
        cve = normalize_cve(token)
        if cve is not None and cve not in found:
            found.append(cve)
    return found


def severity_of_score(score: float) -> str:
    """Return the CVSS v3 qualitative rating of a base score."""
    if score >= 9.0:
        return "Critical"
    if score >= 7.0:
        return "High"
    if score >= 4.0:
        return "Medium"
    if score >= 0.1:
        return "Low"
    return "None"


def severity_label(value: object) -> str | None:
    """Return the standard spelling of a scanner's severity label, or None for an unknown label."""
    return _SEVERITY_LABELS.get(value.strip().lower()) if isinstance(value, str) else None


def parse_score(value: object) -> float | None:
    """Return a CVSS base score between 0.0 and 10.0, or None.

    A score that is missing or not a number is left out rather than
    rejected, because the CVE sighting is still valid without it.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        score = float(value)
    except ValueError:
        return None
    return score if math.isfinite(score) and 0.0 <= score <= 10.0 else None


def _port(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        return None
    text = str(value).strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port < 65536 else None


def _set_score(finding: Finding, score: float | None, version: str | None) -> None:
    if score is None:
        return
    finding.attributes["cvss"] = score
    if version is not None:
        finding.attributes["cvss_version"] = version


def _set_service(finding: Finding, *, port: int | None, protocol: str | None, service: str | None = None) -> None:
    for key, value in (("port", port), ("protocol", protocol.lower() if protocol else None), ("service", service)):
        if value is not None:
            finding.attributes[key] = value


def _set_check(finding: Finding, *, check_id: str | None, title: str | None) -> None:
    for key, value in (("check_id", check_id), ("title", title)):
        if value is not None:
            finding.attributes[key] = value


def _scanned_host(fmt: str, value: str | None, rules: IdentityRules) -> str:
    host = rules.host(value)
    if host is None:
        raise MalformedRecordError(
            f"{fmt} finding names no scanned host (got {value!r}); "
            "a finding without a host cannot be counted against an entity",
            reason="missing_field",
        )
    return host


def _observation(finding: Finding, rules: IdentityRules) -> Observation:
    """Build the observation of a finding, or raise MalformedRecordError when it names no host."""
    host = _scanned_host(finding.format, finding.host, rules)
    attributes = dict(finding.attributes)
    severity = severity_label(finding.scanner_severity)
    if severity is None and "cvss" in attributes:
        severity = severity_of_score(attributes["cvss"])
    if severity is not None:
        attributes["severity"] = severity
    observation = Observation(
        source=SourceKind.VULN,
        timestamp_ms=finding.timestamp_ms,
        hosts=[host],
        # NOTE: a finding is no kill-chain stage, so CONTACTED is used until correlation handles vuln sightings.
        stage=Stage.CONTACTED,
        event_code=finding.event_code,
        format=finding.format,
        attributes=attributes,
    )
    for value in finding.cve_values:
        for cve in split_cves(value):
            observable = Observable(ObservableType.CVE, cve, CVE_FIELD)
            if observable not in observation.observables:
                observation.observables.append(observable)
    return observation


# -- CSV exports ----------------------------------------------------------------


def _split_csv(line: str) -> list[str]:
    """Split one CSV line into cells.

    An odd number of double quotes means that a quoted cell goes on past the
    end of the line, because escaped quotes inside a cell come in pairs.
    """
    if line.count('"') % 2:
        # NOTE: real exports write line breaks in cells (Greenbone in "Vulnerability Detection Method", Nessus in
        # "Description"), so most of their rows are rejected here unless the export is split quote-aware upstream.
        raise MalformedRecordError(
            f"CSV line ends inside a quoted cell: {line[:120]!r}. The row has a line break in a cell and "
            "continues on other lines, but CSV exports are read one line per row; "
            "remove line breaks inside cells before sending the export",
            reason="field_count",
        )
    try:
        rows = list(csv.reader([line], strict=True))
    except csv.Error as error:
        raise MalformedRecordError(f"CSV line is not valid ({error}): {line[:120]!r}", reason="syntax") from None
    return rows[0] if rows else []


def _read_header(line: str, context: dict[str, Any], fmt: str, required: tuple[str, ...]) -> bool:
    """Store ``line`` in the context and return True when it is a header row of ``fmt``."""
    text = line.lstrip("\ufeff")  # Excel writes a byte-order mark before a UTF-8 CSV file
    lowered = text.lower()
    if not all(column in lowered for column in required):
        return False  # every text line of every stream passes here, so skip the CSV parse when possible
    try:
        cells = _split_csv(text)
    except MalformedRecordError:
        return False
    columns = tuple(cell.strip() for cell in cells)
    positions: dict[str, int] = {}
    for position, column in enumerate(columns):
        positions.setdefault(column.lower(), position)
    if not all(column in positions for column in required):
        return False
    context[HEADER_KEY] = CsvHeader(fmt, columns, positions)
    return True


def read_nessus_header(line: str, context: dict[str, Any]) -> bool:
    """Header hook of the ``nessus`` format: store a Nessus CSV header row in the stream context."""
    return _read_header(line, context, NESSUS_FORMAT, _NESSUS_HEADER_COLUMNS)


def read_openvas_header(line: str, context: dict[str, Any]) -> bool:
    """Header hook of the ``openvas`` format: store a Greenbone CSV header row in the stream context."""
    return _read_header(line, context, OPENVAS_FORMAT, _OPENVAS_HEADER_COLUMNS)


def _header_format(context: dict[str, Any]) -> str | None:
    header = context.get(HEADER_KEY)
    return header.format if isinstance(header, CsvHeader) else None


def is_nessus_row(_line: str, context: dict[str, Any]) -> bool:
    """Return True when the last CSV header row of the stream was a Nessus header."""
    return _header_format(context) == NESSUS_FORMAT


def is_openvas_row(_line: str, context: dict[str, Any]) -> bool:
    """Return True when the last CSV header row of the stream was a Greenbone header."""
    return _header_format(context) == OPENVAS_FORMAT


def _row(line: str, context: dict[str, Any], fmt: str) -> dict[str, str]:
    """Return the cells of one CSV row by lower-case column name."""
    header = context.get(HEADER_KEY)
    if not isinstance(header, CsvHeader) or header.format != fmt:
        raise MalformedRecordError(
            f"{fmt} CSV row arrived before a {fmt} header row: {line[:120]!r}; "
            "send the export from its first line so that the header row is read first",
            reason="missing_header",
        )
    cells = _split_csv(line)
    if len(cells) != len(header.columns):
        raise MalformedRecordError(
            f"{fmt} CSV row has {len(cells)} cells but the header row has {len(header.columns)} columns: "
            f"{line[:120]!r}; a cell with a line break splits a row over several lines",
            reason="field_count",
        )
    return {column: cells[position] for column, position in header.positions.items()}


def _cell(row: dict[str, str], *columns: str) -> str | None:
    """Return the first non-empty, non-placeholder cell of ``columns``."""
    for column in columns:
        value = row.get(column)
        if value is not None and not is_placeholder(value):
            return value.strip()
    return None


def _raw_cell(row: dict[str, str], *columns: str) -> str | None:
    """Return the first non-empty cell of ``columns``, keeping ``None``, which Nessus writes as a severity label."""
    for column in columns:
        value = row.get(column)
        if value is not None and value.strip():
            return value.strip()
    return None


def _nessus_score(row: dict[str, str]) -> tuple[float | None, str | None]:
    """Return the v3 base score when the export has one, else the v2 score, with its version."""
    for column, version in (*_NESSUS_V3_COLUMNS, *_NESSUS_V2_COLUMNS):
        score = parse_score(_cell(row, column))
        if score is not None:
            return score, version
    return None, None


def _nessus_exploit(row: dict[str, str], finding: Finding) -> None:
    """Set ``exploit_available`` from whichever exploit columns the export has.

    Any column that reports an exploit makes it True; columns that only
    report none make it False.
    """
    answers: list[bool] = []
    exploit = _cell(row, "exploit?")
    if exploit is not None:
        answers.append(exploit.lower() in ("yes", "true"))
    ease = _cell(row, "exploitability ease")
    if ease is not None:
        finding.attributes["exploit_ease"] = ease
        answers.append(ease.lower() in _EASE_AVAILABLE)
    for column in _EXPLOIT_FRAMEWORK_COLUMNS:
        framework = _cell(row, column)
        if framework is not None:
            answers.append(framework.lower() not in ("false", "no"))
    if answers:
        finding.attributes["exploit_available"] = any(answers)


def adapt_nessus(line: str, rules: IdentityRules, context: dict[str, Any]) -> Observation:
    """Turn one row of a Nessus CSV export into an observation with the ``Host`` column as the entity."""
    row = _row(line, context, NESSUS_FORMAT)
    finding = Finding(
        format=NESSUS_FORMAT,
        host=_cell(row, "host"),
        cve_values=[row.get("cve", "")],
        event_code=_cell(row, "plugin id"),
        scanner_severity=_raw_cell(row, *_NESSUS_SEVERITY_COLUMNS),
        attributes={"scanner": NESSUS_FORMAT},
    )
    _set_score(finding, *_nessus_score(row))
    _set_service(finding, port=_port(_cell(row, "port")), protocol=_cell(row, "protocol"))
    _set_check(finding, check_id=finding.event_code, title=_cell(row, "name"))
    _nessus_exploit(row, finding)
    return _observation(finding, rules)


def adapt_openvas(line: str, rules: IdentityRules, context: dict[str, Any]) -> Observation:
    """Turn one row of a Greenbone "CSV Results" export into an observation.

    The ``IP`` column is the entity, because every result has it while
    ``Hostname`` is empty when reverse DNS gave no name. Using one column
    keeps a host from being counted once by address and once by name.
    """
    row = _row(line, context, OPENVAS_FORMAT)
    address = _cell(row, "ip")
    hostname = _cell(row, "hostname")
    finding = Finding(
        format=OPENVAS_FORMAT,
        host=address or hostname,
        cve_values=[row.get("cves", "")],
        timestamp_ms=parse_timestamp(_cell(row, "timestamp")),
        event_code=_cell(row, "nvt oid"),
        scanner_severity=_raw_cell(row, "severity"),
        attributes={"scanner": OPENVAS_FORMAT},
    )
    _set_score(finding, parse_score(_cell(row, "cvss")), None)
    _set_service(finding, port=_port(_cell(row, "port")), protocol=_cell(row, "port protocol"))
    _set_check(finding, check_id=finding.event_code, title=_cell(row, "nvt name"))
    if address is not None and hostname is not None:
        finding.attributes["hostname"] = hostname
    return _observation(finding, rules)


# -- ECS JSON -------------------------------------------------------------------


def is_ecs_vulnerability(document: dict[str, Any]) -> bool:
    """Return True for a JSON document with ``vulnerability.id``, nested or as a dotted key."""
    if "vulnerability.id" in document:
        return True
    vulnerability = document.get("vulnerability")
    return isinstance(vulnerability, dict) and "id" in vulnerability


def field_values(document: dict[str, Any], name: str) -> list[Any]:
    """Return the leaf values of the dotted ECS field ``name`` in document order.

    The field may be nested (``{"host": {"ip": ...}}``), dotted
    (``{"host.ip": ...}``) or both; lists contribute one value per element.
    Nesting deeper than the ECS adapter's MAX_DEPTH raises MalformedRecordError.
    """
    parts = name.split(".")
    found: list[Any] = []
    stack: list[tuple[Any, int, int]] = [(document, 0, 0)]  # node, parts matched, depth
    while stack:
        node, matched, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedRecordError(
                f"document nested deeper than {MAX_DEPTH} levels under {name!r}", reason="too_deep"
            )
        if isinstance(node, list):
            stack.extend((child, matched, depth + 1) for child in reversed(node))
        elif matched == len(parts):
            if not isinstance(node, dict):
                found.append(node)
        elif isinstance(node, dict):
            keys = (".".join(parts[matched:end]) for end in range(matched + 1, len(parts) + 1))
            children = [(node[key], matched + key.count(".") + 1, depth + 1) for key in keys if key in node]
            stack.extend(reversed(children))
    return found


def _first(document: dict[str, Any], *names: str) -> Any:
    """Return the first non-null value of the first field in ``names`` that has one."""
    for name in names:
        for value in field_values(document, name):
            if value is not None:
                return value
    return None


def _first_text(document: dict[str, Any], *names: str) -> str | None:
    for name in names:
        for value in field_values(document, name):
            if isinstance(value, str) and not is_placeholder(value):
                return value.strip()
    return None


def _ecs_cve_values(document: dict[str, Any]) -> list[str]:
    values = []
    for value in field_values(document, "vulnerability.id"):
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedRecordError(
                f"vulnerability.id is {type(value).__name__} {value!r}, expected a string such as 'CVE-2021-44228'",
                reason="field_type",
            )
        values.append(value)
    return values


def _ecs_host(document: dict[str, Any], rules: IdentityRules) -> str | None:
    """Return the first of ``host.name``, ``host.hostname`` and ``host.ip`` that is a valid host."""
    for name in ("host.name", "host.hostname", "host.ip"):
        for value in field_values(document, name):
            if isinstance(value, str) and rules.host(value) is not None:
                return value
    return None


def check_ecs(document: dict[str, Any], rules: IdentityRules) -> None:
    """Raise for a document that ``adapt_ecs`` would reject because it names no scanned host."""
    _scanned_host(ECS_FORMAT, _ecs_host(document, rules), rules)


def adapt_ecs(document: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one ECS vulnerability document into an observation with ``host.name`` (else ``host.ip``) as the entity."""
    version = _first(document, "vulnerability.score.version")
    finding = Finding(
        format=ECS_FORMAT,
        host=_ecs_host(document, rules),
        cve_values=_ecs_cve_values(document),
        timestamp_ms=parse_timestamp(_first(document, "@timestamp", "event.created")),
        event_code=_first_text(document, "event.code"),
        scanner_severity=_first(document, "vulnerability.severity"),
    )
    vendor = _first_text(document, "vulnerability.scanner.vendor")
    if vendor is not None:
        finding.attributes["scanner"] = vendor
    _set_score(
        finding,
        parse_score(_first(document, "vulnerability.score.base")),
        str(version) if isinstance(version, (str, int, float)) and not isinstance(version, bool) else None,
    )
    _set_service(
        finding,
        port=_port(_first(document, "destination.port")),
        protocol=_first_text(document, "network.transport"),
        service=_first_text(document, "service.name"),
    )
    return _observation(finding, rules)
