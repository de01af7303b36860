"""Zeek logs in JSON and in the default tab-separated (TSV) layout.

Two formats read the same logs:

- ``zeek``: JSON, one object per line. Field names are Zeek's own (``id.orig_h``),
  the Logstash/RockNSM spelling with underscores (``id_orig_h``) or nested
  (``{"id": {"orig_h": ...}}``). The log path comes from ``_path`` or ``@stream``,
  else from the field set (``query`` and ``qtype_name`` make a dns record).
- ``zeek-tsv``: the ASCII writer's TSV. The ``header`` hook stores the ``#separator``,
  ``#set_separator``, ``#empty_field``, ``#unset_field``, ``#path``, ``#fields`` and
  ``#types`` lines in the stream context, so each data line is read against the
  header of its own file. Extra columns, such as the ``label`` columns of the
  Stratosphere data sets, are read and ignored.

Entities follow docs/entities.md. The internal side of a connection is the
entity and the other side is an IP observable. An address is internal when it is
RFC 1918, loopback, link-local or an IPv6 unique local address (fc00::/7). For
conn, http, ssl and notice records:

- the originator is internal: the originator is the entity, the responder an observable;
- only the responder is internal (inbound): the responder is the entity, the originator an observable;
- both are external: the originator is the entity, the responder an observable.

Zeek's ``local_orig``/``local_resp`` flags are not used, so networks that use
public addresses inside see their own hosts as external.

Per log:

- http: ``host`` and ``uri`` make the URL, and the host is a domain or IP observable.
  ``user_agent`` and ``referrer`` are ignored.
- dns: the client (``id.orig_h``) is the entity. The ``query`` and the ``answers``
  are observables. The resolver (``id.resp_h``) is infrastructure and is neither.
- files: md5, sha1, sha256 and the file name are observables. Both ends of the
  transfer (``tx_hosts`` and ``rx_hosts``, or ``id.orig_h`` and ``id.resp_h``
  since Zeek 5.1) are entities when internal, and IP observables when external.
  When no end is internal, the receiver is the entity. A certificate from a TLS
  handshake (``source`` SSL) is the server's, so only its receiver is an entity.
- ssl: ``server_name`` is a domain observable, the certificate subject free text.
- smtp: source kind mail, stage delivered. Recipients (``rcptto``, ``to``, ``cc``)
  are mailbox entities. The sending server ``id.orig_h`` is an IP observable and
  the receiving server is infrastructure. Senders and ``helo`` are observables.
- notice: ``src`` and ``dst`` (else the connection) are read as for conn, and
  ``msg`` and ``sub`` are free text.
- kerberos: the client host and the client account (``alice/EXAMPLE.COM``) are
  entities, and the account is also a user-account observable. The KDC is infrastructure.

Every other log (x509, pe, dce_rpc, smb_mapping, smb_files, ...) is rejected
with reason ``unsupported_log``: it names no observable together with an entity.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Any

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, normalize_account, normalize_ip
from detectors.observation import Observable, Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "zeek"
TSV_FORMAT = "zeek-tsv"
# Key of the parsed TSV header in a stream's context dict.
HEADER_KEY = "zeek_header"

SUPPORTED_LOGS = ("conn", "dns", "files", "http", "kerberos", "notice", "smtp", "ssl")
_UNSUPPORTED_REASONS = {
    "x509": "x509.log names certificates but not the hosts that used them, "
    "and certificate server names reach yokoten through ssl.log",
    "pe": "pe.log describes an executable by file id only, and its hashes are in files.log",
}
_EMPTY_MARKER = "(empty)"
_HEADER_DIRECTIVES = frozenset(
    {"separator", "set_separator", "empty_field", "unset_field", "path", "open", "close", "fields", "types"}
)
# Container fields read when a TSV header has no #types line.
_CONTAINER_FIELDS = frozenset(
    {"answers", "TTLs", "tx_hosts", "rx_hosts", "conn_uids", "analyzers", "rcptto", "to", "cc"}
)
_ESCAPE = re.compile(rb"\\x([0-9a-fA-F]{2})")
_EPOCH_SECONDS = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
# A Zeek TSV data line: epoch seconds with six decimals, then tab-separated columns.
_TSV_LINE = re.compile(r"^\d{1,11}\.\d{6}\t[^\t]*\t[^\t]*\t")
# Timestamps after this are not epoch seconds (year 5138).
_MAX_EPOCH_SECONDS = 1e11
_INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(network)
    for network in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fe80::/10",
        "fc00::/7",
    )
)
_HASH_FIELDS = (("md5", ObservableType.MD5), ("sha1", ObservableType.SHA1), ("sha256", ObservableType.SHA256))


@dataclass
class TsvHeader:
    """The header lines of one Zeek TSV file, as the ASCII writer writes them."""

    separator: str = "\t"
    set_separator: str = ","
    empty_field: str = _EMPTY_MARKER
    unset_field: str = "-"
    path: str | None = None
    fields: tuple[str, ...] = ()
    types: tuple[str, ...] = ()


# -- TSV header and data lines ---------------------------------------------------


def _unescape(text: str) -> str:
    """Decode the ``\\xHH`` escapes Zeek writes for separators and non-printable bytes."""
    if "\\x" not in text:
        return text
    decoded = _ESCAPE.sub(lambda match: bytes([int(match.group(1), 16)]), text.encode("utf-8"))
    return decoded.decode("utf-8", errors="replace")


def read_header_line(line: str, context: dict[str, Any]) -> bool:
    """Store a Zeek TSV header line in ``context`` and return True, or return False for any other line.

    ``#separator`` starts a new header, so a stream that concatenates several
    files is read with the header of each. ``#open`` and ``#close`` are header
    lines that carry nothing needed here.
    """
    if not line.startswith("#"):
        return False
    body = line[1:]
    current = context.get(HEADER_KEY)
    separator = current.separator if isinstance(current, TsvHeader) else "\t"
    name = re.split(f"[ \t]|{re.escape(separator)}", body, maxsplit=1)[0]
    if name not in _HEADER_DIRECTIVES:
        return False
    if name == "separator":
        separator = _unescape(body[len(name) :].strip(" \t"))
        if not separator:
            raise MalformedRecordError(
                f"Zeek header {line[:60]!r} names no separator; expected '#separator \\x09'", reason="header"
            )
        context[HEADER_KEY] = TsvHeader(separator=separator)
        return True
    header = current if isinstance(current, TsvHeader) else context.setdefault(HEADER_KEY, TsvHeader())
    value = body[len(name) :]
    for lead in (header.separator, " "):
        if value.startswith(lead):
            value = value[len(lead) :]
            break
    if name == "fields":
        header.fields = tuple(value.split(header.separator))
    elif name == "types":
        header.types = tuple(value.split(header.separator))
    elif name == "set_separator":
        header.set_separator = _unescape(value) or header.set_separator
    elif name == "empty_field":
        header.empty_field = _unescape(value)
    elif name == "unset_field":
        header.unset_field = _unescape(value)
    elif name == "path":
        header.path = value
    return True


def has_header(context: dict[str, Any]) -> bool:
    """Return True when the stream has sent a Zeek ``#fields`` line."""
    header = context.get(HEADER_KEY)
    return isinstance(header, TsvHeader) and bool(header.fields)


def looks_like_tsv_line(line: str) -> bool:
    """Return True for a line shaped like Zeek TSV data (epoch with six decimals, tabs)."""
    return bool(_TSV_LINE.match(line))


def _is_container(header: TsvHeader, index: int, name: str) -> bool:
    if len(header.types) == len(header.fields):
        return header.types[index].startswith(("set[", "vector[", "table["))
    return name in _CONTAINER_FIELDS


def _tsv_value(raw: str, container: bool, header: TsvHeader) -> str | list[str] | None:
    """Read one column: None when unset, a list for sets and vectors, else the unescaped text."""
    if raw == header.unset_field:
        return None
    if raw == header.empty_field:
        return [] if container else None
    if container:
        return [_unescape(item) for item in raw.split(header.set_separator)]
    return _unescape(raw)


def parse_tsv_line(line: str, context: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Return the ``#path`` and the field dict of one TSV data line, read against the stream's header."""
    header = context.get(HEADER_KEY)
    if not isinstance(header, TsvHeader) or not header.fields:
        raise MalformedRecordError(
            f"Zeek TSV line arrived before the header of its file: {line[:80]!r}. "
            "Send the '#separator', '#fields' and '#types' lines first in the same stream, or use Zeek JSON",
            reason="missing_header",
        )
    values = line.split(header.separator)
    if len(values) != len(header.fields):
        raise MalformedRecordError(
            f"Zeek {header.path or 'TSV'} line has {len(values)} columns but its #fields header names "
            f"{len(header.fields)}: {line[:80]!r}",
            reason="field_count",
        )
    record = {
        name: _tsv_value(raw, _is_container(header, index, name), header)
        for index, (name, raw) in enumerate(zip(header.fields, values, strict=True))
    }
    return header.path, record


# -- JSON ----------------------------------------------------------------------


def _signature_path(document: dict[str, Any]) -> str | None:
    """Return the log path implied by the field set of a JSON record without ``_path``."""
    keys = document.keys()
    if "query" in keys and "qtype_name" in keys:
        return "dns"
    if "method" in keys and "uri" in keys:
        return "http"
    if "conn_state" in keys:
        return "conn"
    if "fuid" in keys and ("mime_type" in keys or "tx_hosts" in keys):
        return "files"
    if "server_name" in keys and ("version" in keys or "cipher" in keys):
        return "ssl"
    if "mailfrom" in keys or "rcptto" in keys:
        return "smtp"
    if "note" in keys and ("msg" in keys or "src" in keys):
        return "notice"
    if "request_type" in keys and "client" in keys:
        return "kerberos"
    return None


def _named_path(document: dict[str, Any]) -> object:
    for key in ("_path", "@stream"):
        if key in document:
            return document[key]
    return None


def is_zeek_document(document: dict[str, Any]) -> bool:
    """Return True for a Zeek JSON record: a ``ts`` and a log path, named or implied by its fields."""
    if "ts" not in document:
        return False
    return isinstance(_named_path(document), str) or _signature_path(document) is not None


def _json_path(document: dict[str, Any]) -> str:
    named = _named_path(document)
    if named is not None:
        if not isinstance(named, str):
            raise MalformedRecordError(
                f"Zeek _path is {type(named).__name__}, expected the log name as text", reason="field_type"
            )
        return named
    path = _signature_path(document)
    if path is None:
        raise MalformedRecordError(
            "Zeek JSON record has no _path or @stream field and its fields match no supported log; "
            f"add the log name as _path (one of {', '.join(SUPPORTED_LOGS)})",
            reason="missing_field",
        )
    return path


# -- field access ----------------------------------------------------------------


def _lookup(record: dict[str, Any], name: str) -> object:
    """Return field ``name`` written dotted, with underscores or nested; None when absent."""
    if name in record:
        return record[name]
    if "." not in name:
        return None
    underscored = name.replace(".", "_")
    if underscored in record:
        return record[underscored]
    head, _, tail = name.partition(".")
    parent = record.get(head)
    return _lookup(parent, tail) if isinstance(parent, dict) else None


def _is_missing(value: str) -> bool:
    return is_placeholder(value) or value.strip() == _EMPTY_MARKER


def _text(record: dict[str, Any], name: str) -> str | None:
    """Return a text field, or None when it is absent or a placeholder. Another type raises field_type."""
    value = _lookup(record, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedRecordError(f"Zeek field {name} is {type(value).__name__}, expected text", reason="field_type")
    return None if _is_missing(value) else value


def _texts(record: dict[str, Any], name: str) -> list[str]:
    """Return the elements of a set or vector field. A single text value counts as one element."""
    value = _lookup(record, name)
    if value is None:
        return []
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise MalformedRecordError(
            f"Zeek field {name} must be text or a list of text values, not {str(value)[:60]!r}", reason="field_type"
        )
    return [item for item in items if not _is_missing(item)]


def _address(record: dict[str, Any], name: str) -> str | None:
    """Return the canonical IP address of an address field, or None for a value that is not an address."""
    value = _text(record, name)
    address = normalize_ip(value) if value is not None else None
    return address[1] if address else None


def _port(record: dict[str, Any], name: str) -> int | None:
    value = _lookup(record, name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise MalformedRecordError(
            f"Zeek field {name} is {type(value).__name__}, expected a port number", reason="field_type"
        )
    text = str(value).strip()
    if not text.isdecimal() or int(text) > 65535:
        return None
    return int(text)


def _iso_timestamp(text: str) -> int | None:
    """Parse ISO-8601 text; text that is no time at all (such as ``²``) is a field_type error."""
    parsed = parse_timestamp(text)
    if parsed is None:
        raise MalformedRecordError(f"Zeek ts {text[:40]!r} is neither epoch seconds nor ISO-8601 text", reason="field_type")
    return parsed


def _timestamp(record: dict[str, Any]) -> int | None:
    """Return ``ts`` in epoch milliseconds. Zeek writes epoch seconds, and JSON exports may write ISO text."""
    value = record.get("ts")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise MalformedRecordError(
            f"Zeek ts is {type(value).__name__}, expected epoch seconds or ISO-8601 text", reason="field_type"
        )
    if isinstance(value, str):
        text = value.strip()
        if not _EPOCH_SECONDS.match(text):
            return _iso_timestamp(text)
        value = float(text)
    if not math.isfinite(value) or not 0 <= value < _MAX_EPOCH_SECONDS:
        raise MalformedRecordError(f"Zeek ts {value!r} is not an epoch time in seconds", reason="field_type")
    return round(value * 1000)


# -- entities ------------------------------------------------------------------


def is_internal(address: str) -> bool:
    """Return True for RFC 1918, loopback, link-local and IPv6 unique local addresses."""
    parsed = ipaddress.ip_address(address)
    return any(parsed in network for network in _INTERNAL_NETWORKS)


def _add_host(observation: Observation, rules: IdentityRules, address: str | None) -> None:
    host = rules.host(address)
    if host is not None and host not in observation.hosts:
        observation.hosts.append(host)


def _add_connection(
    observation: Observation, rules: IdentityRules, originator: str | None, responder: str | None
) -> None:
    """Add the internal side of a connection as the entity and the other side as an IP observable."""
    inbound = (
        originator is not None and responder is not None and not is_internal(originator) and is_internal(responder)
    )
    if inbound:
        _add_host(observation, rules, responder)
        emit(observation, None, originator, "source.ip", ip_only=True)
    else:
        _add_host(observation, rules, originator)
        emit(observation, None, responder, "destination.ip", ip_only=True)


def _connection(record: dict[str, Any]) -> tuple[str | None, str | None]:
    return _address(record, "id.orig_h"), _address(record, "id.resp_h")


# -- one mapping per log -----------------------------------------------------------


def _http_url(record: dict[str, Any]) -> str | None:
    """Build the requested URL from the Host header and the URI, adding a non-default port from the connection."""
    uri = _text(record, "uri")
    method = _text(record, "method")
    if uri is not None and ("://" in uri[:16] or (method or "").upper() == "CONNECT"):
        return uri
    host = _text(record, "host")
    if host is None:
        return None
    port = _port(record, "id.resp_p")
    has_port = host.rsplit("]", 1)[-1].count(":") == 1
    netloc = f"{host}:{port}" if port not in (None, 80) and not has_port else host
    return netloc + (uri if uri is not None and uri.startswith("/") else "/")


def _map_http(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    _add_connection(observation, rules, *_connection(record))
    emit(observation, ObservableType.URL, _http_url(record), "url.original")
    emit(observation, ObservableType.DOMAIN, _text(record, "host"), "url.domain")


def _map_dns(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    _add_host(observation, rules, _address(record, "id.orig_h"))
    emit(observation, ObservableType.DOMAIN, _text(record, "query"), "dns.question.name")
    for answer in _texts(record, "answers"):
        if normalize_ip(answer) is not None:
            emit(observation, None, answer, "dns.resolved_ip", ip_only=True)
        else:
            emit(observation, ObservableType.DOMAIN, answer, "dns.answers.data")


def _map_conn(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    _add_connection(observation, rules, *_connection(record))


def _transfer_ends(record: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Return the (senders, receivers) of a file transfer.

    Zeek before 5.1 writes ``tx_hosts`` and ``rx_hosts``. Later versions write
    the connection and ``is_orig``, which is true when the originator sent the file.
    """
    senders = [address for value in _texts(record, "tx_hosts") if (address := _canonical(value))]
    receivers = [address for value in _texts(record, "rx_hosts") if (address := _canonical(value))]
    if senders or receivers:
        return senders, receivers
    originator, responder = _connection(record)
    is_orig = _lookup(record, "is_orig")
    if is_orig is not None and not isinstance(is_orig, (bool, str)):
        raise MalformedRecordError(
            f"Zeek field is_orig is {type(is_orig).__name__}, expected a boolean", reason="field_type"
        )
    sent_by_originator = is_orig is True or is_orig == "T"
    sender, receiver = (originator, responder) if sent_by_originator else (responder, originator)
    return [sender] if sender else [], [receiver] if receiver else []


def _canonical(value: str) -> str | None:
    address = normalize_ip(value)
    return address[1] if address else None


def _map_files(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    senders, receivers = _transfer_ends(record)
    ends = list(dict.fromkeys(senders + receivers))
    source = _text(record, "source")
    if source is not None and source.upper() == "SSL":
        # A certificate sent in a TLS handshake belongs to the server, not to a host that stores it.
        entities = receivers
    else:
        entities = [address for address in ends if is_internal(address)] or receivers
    for address in ends:
        if address in entities:
            _add_host(observation, rules, address)
        else:
            # The external end of a transfer is the remote server, whichever way the file went.
            emit(observation, None, address, "server.ip", ip_only=True)
    for name, kind in _HASH_FIELDS:
        emit(observation, kind, _text(record, name), f"file.hash.{name}")
    emit(observation, ObservableType.FILE_NAME, _text(record, "filename"), "file.name")


def _map_ssl(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    _add_connection(observation, rules, *_connection(record))
    emit(observation, ObservableType.DOMAIN, _text(record, "server_name"), "tls.client.server_name")
    subject = _text(record, "subject")
    if subject is not None:
        observation.free_text.append(("tls.server.x509.subject.distinguished_name", subject))


def _map_smtp(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    for name in ("rcptto", "to", "cc"):
        for address in _texts(record, name):
            mailbox = rules.mailbox(address)
            if mailbox is not None and mailbox not in observation.users:
                observation.users.append(mailbox)
    emit(observation, ObservableType.EMAIL, _text(record, "mailfrom"), "email.sender.address")
    emit(observation, ObservableType.EMAIL, _text(record, "from"), "email.from.address")
    emit(observation, ObservableType.EMAIL, _text(record, "reply_to"), "email.reply_to.address")
    emit(observation, None, _address(record, "id.orig_h"), "source.ip", ip_only=True)
    emit(observation, None, _text(record, "x_originating_ip"), "email.x_originating_ip", ip_only=True)
    emit(observation, ObservableType.DOMAIN, _text(record, "helo"), "smtp.helo")


def _map_notice(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    source, destination = _address(record, "src"), _address(record, "dst")
    if source is None and destination is None:
        source, destination = _connection(record)
    _add_connection(observation, rules, source, destination)
    observation.event_code = _text(record, "note") or observation.event_code
    for name in ("msg", "sub"):
        text = _text(record, name)
        if text is not None:
            observation.free_text.append((f"zeek.notice.{name}", text))


def _kerberos_account(client: str) -> str | None:
    """Turn Zeek's ``alice/EXAMPLE.COM`` (principal/realm) into ``alice@EXAMPLE.COM``.

    Service principals (``host/ws01.example.com/EXAMPLE.COM``) are not persons and give None.
    """
    principal, separator, realm = client.rpartition("/")
    if not separator:
        return client
    if not principal or "/" in principal:
        return None
    return f"{principal}@{realm}"


def _map_kerberos(record: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    _add_host(observation, rules, _address(record, "id.orig_h"))
    client = _text(record, "client")
    if client is None:
        return
    account = _kerberos_account(client)
    identity = rules.user(account)
    if identity is None:
        return
    observation.users.append(identity)
    observation.observables.append(Observable(ObservableType.USER, identity, "user.name"))
    # A feed normalises DOMAIN\alice without the NetBIOS-to-DNS map. The first realm
    # label is the usual NetBIOS name, so that spelling is looked up too.
    user, _, realm = identity.partition("@")
    unmapped = normalize_account(f"{realm.split('.', 1)[0]}\\{user}") if realm else None
    if unmapped is not None and unmapped != identity:
        observation.observables.append(Observable(ObservableType.USER, unmapped, "user.name"))


_MAPPERS = {
    "conn": _map_conn,
    "dns": _map_dns,
    "files": _map_files,
    "http": _map_http,
    "kerberos": _map_kerberos,
    "notice": _map_notice,
    "smtp": _map_smtp,
    "ssl": _map_ssl,
}


def _drop_repeated_observables(observation: Observation) -> None:
    """Keep the first of observables with the same type and value (``server_name`` often repeats ``id.resp_h``)."""
    seen: set[tuple[ObservableType, str]] = set()
    kept = []
    for observable in observation.observables:
        if (observable.type, observable.value) not in seen:
            seen.add((observable.type, observable.value))
            kept.append(observable)
    observation.observables = kept


def _mapper(path: str | None) -> Any:
    """Return the reader of Zeek log ``path``, or raise missing_header or unsupported_log."""
    if path is None:
        raise MalformedRecordError(
            "Zeek TSV header has no #path line, so the log type is unknown; send the whole header",
            reason="missing_header",
        )
    mapper = _MAPPERS.get(path)
    if mapper is None:
        detail = _UNSUPPORTED_REASONS.get(path, "it names no observable together with the host or person that saw it")
        raise MalformedRecordError(
            f"Zeek {path}.log is not read: {detail}. Logs read: {', '.join(SUPPORTED_LOGS)}", reason="unsupported_log"
        )
    return mapper


def check_json(document: dict[str, Any]) -> None:
    """Raise unsupported_log for a Zeek JSON record of a log that is not read, as ``adapt_json`` would."""
    _mapper(_json_path(document))


def adapt_log(path: str | None, record: dict[str, Any], rules: IdentityRules, fmt: str) -> Observation:
    """Turn one record of Zeek log ``path`` into an observation, or raise unsupported_log for logs not read."""
    mapper = _mapper(path)
    mail = path == "smtp"
    observation = Observation(
        source=SourceKind.MAIL if mail else SourceKind.PROXY,
        timestamp_ms=_timestamp(record),
        stage=Stage.DELIVERED if mail else Stage.CONTACTED,
        event_code=path,
        format=fmt,
    )
    mapper(record, rules, observation)
    _drop_repeated_observables(observation)
    return observation


def adapt_json(document: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one Zeek JSON record into an observation."""
    return adapt_log(_json_path(document), document, rules, FORMAT)


def adapt_tsv(line: str, rules: IdentityRules, context: dict[str, Any]) -> Observation:
    """Turn one Zeek TSV data line into an observation, read against the header in ``context``."""
    path, record = parse_tsv_line(line, context)
    return adapt_log(path, record, rules, TSV_FORMAT)
