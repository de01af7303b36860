"""Source adapters: raw record bytes in, one normalised observation out.

``parse_record`` is the single entry point used by the Kafka matcher and by
the offline replay, so both read a record the same way. Formats:

========  ==========================================  ===========
name      records                                     source kind
========  ==========================================  ===========
ecs       ECS JSON documents                          from event.category or the binding
sysmon    Windows event JSON (Sysmon, Security, ...)  edr
squid     Squid access.log lines                      proxy
zeek      Zeek JSON logs (http, dns, conn, files,     proxy; smtp: mail
          ssl, smtp, notice, kerberos)
zeek-tsv  Zeek TSV logs, read after the header        as zeek
          lines of their stream
zscaler   Zscaler NSS web logs as JSON                proxy
mde       Defender XDR advanced-hunting rows of the   edr
          device, identity and cloud-app tables
nessus    Nessus CSV export rows, read after the      vuln
          header row of their stream
openvas   Greenbone CSV Results rows, read after      vuln
          the header row of their stream
ecs-vuln  ECS documents with vulnerability.id         vuln
postfix   Postfix maillog lines, joined per message   mail
m365      Defender for Office 365 e-mail rows,        mail
          joined per message and recipient
proofpoint
          Proofpoint TAP message and click events     mail
auto      any of the above, recognised per record     as above
========  ==========================================  ===========
"""

from __future__ import annotations

from typing import Any

import orjson

from detectors.adapters import ecs, m365, mde, postfix, proofpoint, squid, vuln, windows, zeek, zscaler
from detectors.adapters.stream import RecordFormat
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observation import Observation, SourceKind

MAX_RECORD_BYTES = 4 * 1024 * 1024


def _decode_json(raw: bytes) -> dict[str, Any]:
    """Decode one JSON object.

    The error reason is ``encoding`` for bytes that are not UTF-8, ``truncated``
    for a record that ends inside the document and ``json`` for other syntax errors.
    """
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as decode_error:
            raise MalformedRecordError(f"record is not UTF-8 text: {decode_error}", reason="encoding") from None
        if error.pos >= len(raw.rstrip()):
            raise MalformedRecordError(
                f"JSON record of {len(raw)} bytes ends before the document is complete: {error}", reason="truncated"
            ) from None
        raise MalformedRecordError(f"invalid JSON: {error}", reason="json") from None
    if not isinstance(document, dict):
        raise MalformedRecordError(f"JSON value is {type(document).__name__}, expected an object", reason="field_type")
    return document


def _decode_text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError as error:
        raise MalformedRecordError(f"record is not UTF-8 text: {error}", reason="encoding") from None


def decode_record(raw: bytes | None, fmt: str = "auto") -> tuple[Any, str]:
    """Decode raw record bytes into a JSON object (kind ``json``) or a text line (kind ``text``).

    With ``fmt`` ``auto`` the first byte decides; a fixed format decides by its own kind,
    so a JSON format reports invalid JSON rather than an unknown format.
    """
    if raw is None:
        raise MalformedRecordError("record has no value (null)", reason="empty")
    if len(raw) > MAX_RECORD_BYTES:
        raise MalformedRecordError(
            f"record of {len(raw)} bytes exceeds the limit of {MAX_RECORD_BYTES} bytes", reason="too_large"
        )
    stripped = raw.lstrip()
    if not stripped:
        raise MalformedRecordError("record is empty", reason="empty")
    fixed = next((spec.kind for spec in (*REGISTRY, GENERIC_JSON) if spec.name == fmt), None)
    if fixed == "json" or (fixed is None and stripped.startswith((b"{", b"["))):
        try:
            return _decode_json(raw), "json"
        except RecursionError:
            raise MalformedRecordError("JSON nested too deeply", reason="too_deep") from None
    return _decode_text(raw), "text"


REGISTRY: list[RecordFormat] = [
    RecordFormat(
        windows.FORMAT,
        "json",
        lambda document, _context: windows.is_windows_event(document),
        adapt=lambda document, rules, _source, _context: windows.adapt(document, rules),
        check=lambda document, rules, _source: windows.check(document, rules),
        urls=False,
        candidate_text=windows.candidate_text,
    ),
    RecordFormat(
        squid.FORMAT,
        "text",
        lambda line, _context: squid.is_squid_line(line),
        adapt=lambda line, rules, _source, _context: squid.adapt(line, rules),
        check=lambda line, rules, _source: squid.check(line, rules),
        urls=False,
    ),
    RecordFormat(
        zeek.FORMAT,
        "json",
        lambda document, _context: zeek.is_zeek_document(document),
        adapt=lambda document, rules, _source, _context: zeek.adapt_json(document, rules),
        check=lambda document, _rules, _source: zeek.check_json(document),
    ),
    # A TSV line is Zeek once its stream sent a Zeek header; a headerless line that
    # looks like Zeek data is taken too, so it is rejected as missing_header.
    RecordFormat(
        zeek.TSV_FORMAT,
        "text",
        lambda line, context: zeek.has_header(context) or zeek.looks_like_tsv_line(line),
        adapt=lambda line, rules, _source, context: zeek.adapt_tsv(line, rules, context),
        header=zeek.read_header_line,
    ),
    RecordFormat(
        zscaler.FORMAT,
        "json",
        lambda document, _context: zscaler.is_zscaler_document(document),
        adapt=lambda document, rules, _source, _context: zscaler.adapt(document, rules),
        encoded=zscaler.has_encoded_url,
        check=lambda document, _rules, _source: zscaler.check_record(document),
    ),
    RecordFormat(
        mde.FORMAT,
        "json",
        lambda document, _context: mde.is_mde_record(document),
        adapt=lambda document, rules, _source, _context: mde.adapt(document, rules),
        encoded=mde.has_encoded_event,
        check=lambda document, rules, _source: mde.check(document, rules),
    ),
    # Nessus and Greenbone CSV rows are recognised only after their stream sent the export's header row.
    RecordFormat(
        vuln.NESSUS_FORMAT,
        "text",
        vuln.is_nessus_row,
        adapt=lambda line, rules, _source, context: vuln.adapt_nessus(line, rules, context),
        header=vuln.read_nessus_header,
    ),
    RecordFormat(
        vuln.OPENVAS_FORMAT,
        "text",
        vuln.is_openvas_row,
        adapt=lambda line, rules, _source, context: vuln.adapt_openvas(line, rules, context),
        header=vuln.read_openvas_header,
    ),
    # Before the generic ECS adapter, which would read a vulnerability document without its CVE ids.
    RecordFormat(
        vuln.ECS_FORMAT,
        "json",
        lambda document, _context: vuln.is_ecs_vulnerability(document),
        adapt=lambda document, rules, _source, _context: vuln.adapt_ecs(document, rules),
        check=lambda document, rules, _source: vuln.check_ecs(document, rules),
    ),
    # Mail formats; the joined ones buffer the records of a message (see StreamParser).
    RecordFormat(
        postfix.FORMAT,
        "text",
        lambda line, _context: postfix.is_postfix_line(line),
        joiner=postfix.PostfixJoiner,
    ),
    # After mde, which leaves rows with a NetworkMessageId to this adapter.
    RecordFormat(
        m365.FORMAT,
        "json",
        lambda document, _context: m365.is_m365_record(document),
        joiner=m365.M365Joiner,
    ),
    RecordFormat(
        proofpoint.FORMAT,
        "json",
        lambda document, _context: proofpoint.is_proofpoint_event(document),
        adapt=lambda document, rules, _source, _context: proofpoint.adapt(document, rules),
        check=lambda document, _rules, _source: proofpoint.check(document),
    ),
]
# The generic ECS adapter accepts most JSON, so it is tried last.
GENERIC_JSON = RecordFormat(
    ecs.FORMAT,
    "json",
    lambda document, _context: ecs.is_ecs_document(document),
    adapt=lambda document, rules, source, _context: ecs.adapt(document, rules, source),
    check=lambda document, _rules, source: ecs.check(document, source),
)


def register(spec: RecordFormat) -> None:
    """Add a format; auto-detection tries formats in registration order, ECS last."""
    if any(existing.name == spec.name for existing in REGISTRY):
        raise ValueError(f"format {spec.name!r} is already registered")
    REGISTRY.append(spec)


def formats() -> tuple[str, ...]:
    """Names accepted as a topic or file format, ``auto`` first."""
    return ("auto", *(spec.name for spec in REGISTRY), GENERIC_JSON.name)


def find_format(fmt: str, kind: str, record: Any, context: dict[str, Any]) -> RecordFormat:
    """Return the format to read ``record`` with: the fixed one, or the first that recognises it."""
    candidates = [*REGISTRY, GENERIC_JSON]
    if fmt != "auto":
        spec = next((candidate for candidate in candidates if candidate.name == fmt), None)
        if spec is None:
            raise MalformedRecordError(
                f"unknown format {fmt!r}; use one of {', '.join(formats())}", reason="unknown_format"
            )
        if spec.kind != kind:
            raise MalformedRecordError(
                f"record is {kind} but format {fmt!r} reads {spec.kind} records", reason="unknown_format"
            )
        return spec
    tried = [candidate.name for candidate in candidates if candidate.kind == kind]
    for candidate in candidates:
        if candidate.kind == kind and candidate.detect(record, context):
            return candidate
    preview = record[:120] if isinstance(record, str) else ""
    raise MalformedRecordError(
        f"{kind} record matches no known format (tried {', '.join(tried)}){f': {preview!r}' if preview else ''}; "
        "set the format of the topic or file explicitly",
        reason="unknown_format",
    )


def parse_record(raw: bytes | None, fmt: str, rules: IdentityRules, source: SourceKind | None = None) -> Observation:
    """Parse one record of a format that needs no stream context; raise MalformedRecordError naming why it failed.

    ``source`` is the source kind bound to the topic or file; adapters whose
    format fixes the kind ignore it. Formats that join several records need
    a ``StreamParser``.
    """
    record, kind = decode_record(raw, fmt)
    spec = find_format(fmt, kind, record, {})
    if spec.adapt is None:
        raise MalformedRecordError(
            f"format {spec.name!r} joins several records; read it with a StreamParser", reason="unknown_format"
        )
    return spec.adapt(record, rules, source, {})


FORMATS = formats()
