"""CSV IOC feeds with a header row, including the abuse.ch exports.

Columns are read by header name (case-insensitive), so an added or reordered
column changes nothing. The header is the last ``#`` comment line before the
first data row when it names an IOC value column, as in the URLhaus and
ThreatFox exports (``# id,dateadded,url,...``). Otherwise it is the first
non-comment line, as in the Feodo Tracker export and in hand-made files.

A line starting with ``#`` between rows is a comment (the abuse.ch footer
``# END 28 entries``). A ``#`` anywhere else is data, because URLs contain
``#``, and a line inside a quoted multi-line field is never a comment.

Rows whose status column is ``offline`` (URLhaus ``url_status``, Feodo
``c2_status``) still load. A sweep looks for past contact too, so a C2 that
went offline yesterday is still worth matching. The status is kept in the IOC
context, where analysts and later filters can see it.

Unmapped columns go into the IOC context under their header names. An
``ip:port`` value (ThreatFox) or a ``dst_port`` column (Feodo) becomes an IP
IOC with ``context["port"]``, because the matcher looks up addresses, not
sockets.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

from detectors.exceptions import FeedError
from detectors.feeds import (
    MAX_VALUE_LENGTH,
    FeedRecordError,
    FeedResult,
    build_result,
    record_error,
    shorten,
    split_lines,
)
from detectors.ioc import Ioc, ioc_from_record
from detectors.observables import ObservableType, is_placeholder, normalize_ip, refang
from detectors.timestamps import parse_timestamp

# Candidate IOC value columns in order of preference. The first one present in the header is used.
VALUE_COLUMNS = (
    "value",
    "ioc",
    "indicator",
    "url",
    "ioc_value",
    "dst_ip",
    "ip",
    "sha256_hash",
    "md5_hash",
    "sha1_hash",
    "domain",
)
TYPE_COLUMNS = ("type", "ioc_type", "indicator_type")
# The type a value column implies when the row names none (MalwareBazaar has no type column).
COLUMN_TYPES = {
    "url": "url",
    "domain": "domain",
    "sha256_hash": "sha256",
    "md5_hash": "md5",
    "sha1_hash": "sha1",
    "dst_ip": "ip",
    "ip": "ip",
}
# abuse.ch type names that detectors.ioc.TYPE_ALIASES does not know.
FEED_TYPE_NAMES = {"ip:port": "ip", "sha256_hash": "sha256", "md5_hash": "md5", "sha1_hash": "sha1"}
# Type names whose values must be addresses, because TYPE_ALIASES lets "ip" fall back to type detection.
IP_TYPE_NAMES = frozenset({"ip", "ip:port", "ip-dst", "ip-src", "cidr"})

CONFIDENCE_COLUMNS = ("confidence", "confidence_level")
SEVERITY_COLUMNS = ("severity",)
TLP_COLUMNS = ("tlp",)
TAG_COLUMNS = ("tags",)
THREAT_COLUMNS = ("threat", "malware", "malware_printable")
VALID_FROM_COLUMNS = ("first_seen", "dateadded", "first_seen_utc")
VALID_UNTIL_COLUMNS = ("valid_until", "expiry")
SOURCE_COLUMNS = ("source",)
PORT_COLUMNS = ("port", "dst_port")
_METADATA_COLUMNS = frozenset(
    CONFIDENCE_COLUMNS
    + SEVERITY_COLUMNS
    + TLP_COLUMNS
    + TAG_COLUMNS
    + THREAT_COLUMNS
    + VALID_FROM_COLUMNS
    + VALID_UNTIL_COLUMNS
    + SOURCE_COLUMNS
    + PORT_COLUMNS
)

DELIMITERS = (",", "\t", ";", "|")
# A quoted field may span lines, but one that is still open after this many
# lines is taken as a stray quote, so the rows after it still load.
MAX_RECORD_LINES = 100


@dataclass(frozen=True, slots=True)
class CsvHeader:
    """The header of a CSV feed: normalised column names and the columns chosen for value and type."""

    line: int
    columns: tuple[str, ...]
    delimiter: str
    value_column: str
    type_column: str | None


class _Leading(NamedTuple):
    """The last comment line before the first data line, and that data line (0-based indexes)."""

    comment_index: int | None
    comment_text: str | None
    data_index: int | None
    data_text: str | None


def _is_blank(line: str) -> bool:
    return not line.strip()


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _parse_line(text: str, delimiter: str) -> list[str] | None:
    """Return the fields of one CSV line, or None when it is not valid CSV."""
    reader = csv.reader([text], delimiter=delimiter, skipinitialspace=True, strict=True)
    try:
        return next(reader, [])
    except csv.Error:
        return None


def _column_name(field: str) -> str:
    return field.strip().lstrip("\ufeff").strip().lower()


def header_from(text: str, line: int, min_columns: int) -> CsvHeader | None:
    """Return the header in ``text`` when some delimiter splits it into columns naming an IOC value column."""
    for delimiter in DELIMITERS:
        row = _parse_line(text.strip(), delimiter)
        if row is None or len(row) < min_columns:
            continue
        columns = tuple(_column_name(field) for field in row)
        value_column = next((name for name in VALUE_COLUMNS if name in columns), None)
        if value_column is None:
            continue
        type_column = next((name for name in TYPE_COLUMNS if name in columns), None)
        return CsvHeader(line, columns, delimiter, value_column, type_column)
    return None


def _leading(lines: Iterable[str], limit: int) -> _Leading:
    """Find the first data line and the last comment line before it, reading at most ``limit`` lines."""
    comment_index: int | None = None
    comment_text: str | None = None
    for index, line in enumerate(lines):
        if index >= limit:
            break
        if _is_blank(line):
            continue
        if _is_comment(line):
            comment_index, comment_text = index, line.lstrip().lstrip("#")
            continue
        return _Leading(comment_index, comment_text, index, line)
    return _Leading(comment_index, comment_text, None, None)


def looks_like_csv(lines: Iterable[str], limit: int) -> bool:
    """Return True when the head of ``lines`` has a CSV header or a quoted CSV first row.

    A commented header needs two columns at least, so that a prose comment
    such as ``# url list`` never makes a plain list CSV. An uncommented header
    may be a single column name (``url``), which is never a valid indicator.
    """
    leading = _leading(lines, limit)
    if leading.comment_text is not None and header_from(leading.comment_text, 0, min_columns=2):
        return True
    if leading.data_text is None:
        return False
    if header_from(leading.data_text, 0, min_columns=1):
        return True
    row = _parse_line(leading.data_text.strip(), ",")
    return leading.data_text.lstrip().startswith('"') and row is not None and len(row) >= 2


def _missing_value_column(text: str, line: int) -> FeedRecordError:
    """Build the error for a header without a value column, naming the columns it has."""
    rows = [row for row in (_parse_line(text.strip(), delimiter) for delimiter in DELIMITERS) if row]
    if not rows:
        message = (
            f"line {line} is not a CSV header: {shorten(text)}; put a header row naming the IOC value column first"
        )
        return record_error(line, "header", message)
    columns = [_column_name(field) for field in max(rows, key=len)]
    message = (
        f"the CSV header on line {line} has no IOC value column, so no row was loaded; "
        f"columns found: {', '.join(columns)}; name the indicator column one of: {', '.join(VALUE_COLUMNS)}"
    )
    return record_error(line, "header", message)


def locate_header(lines: list[str]) -> tuple[CsvHeader | None, int, FeedRecordError | None]:
    """Return the header, the index of the first line after it and an error when no header is usable.

    Text with no data line and no commented header has no header and no
    error, because an empty feed is valid.
    """
    leading = _leading(lines, len(lines))
    if leading.comment_index is not None and leading.comment_text is not None:
        header = header_from(leading.comment_text, leading.comment_index + 1, min_columns=2)
        if header is not None:
            start = leading.data_index if leading.data_index is not None else len(lines)
            return header, start, None
    if leading.data_index is None or leading.data_text is None:
        return None, len(lines), None
    header = header_from(leading.data_text, leading.data_index + 1, min_columns=1)
    if header is not None:
        return header, leading.data_index + 1, None
    return None, len(lines), _missing_value_column(leading.data_text, leading.data_index + 1)


def iter_records(
    lines: list[str], start: int, delimiter: str
) -> Iterator[tuple[int, list[str] | FeedRecordError | None]]:
    """Yield ``(line number, fields)`` per CSV record from ``lines[start:]``.

    Comment and blank lines between records yield None. A record that is not
    valid CSV yields a FeedRecordError, and reading resumes on the next line.
    """
    index = start
    while index < len(lines):
        number = index + 1
        if _is_blank(lines[index]) or _is_comment(lines[index]):
            yield number, None
            index += 1
            continue
        end = min(len(lines), index + MAX_RECORD_LINES)
        chunk = (lines[position] + "\n" for position in range(index, end))
        reader = csv.reader(chunk, delimiter=delimiter, skipinitialspace=True, strict=True)
        try:
            row = next(reader)
        except csv.Error as error:
            message = (
                f"line {number} is not valid CSV ({error}): {shorten(lines[index])}; check the quoting of this row"
            )
            yield number, record_error(number, "csv", message)
            index += 1
            continue
        index += max(reader.line_num, 1)
        yield number, row


def _first(fields: dict[str, str], names: tuple[str, ...]) -> str | None:
    """Return the first value of ``names`` that is present and not a placeholder."""
    for name in names:
        value = fields.get(name)
        if value is not None and not is_placeholder(value):
            return value.strip()
    return None


def _port_number(text: str) -> int | None:
    text = text.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 5:
        return None
    port = int(text)
    return port if 0 < port <= 65535 else None


def split_host_port(value: str) -> tuple[str, int | None]:
    """Split an ``ip:port`` value at the last colon, since ThreatFox writes IPv6 sockets without brackets.

    An example from ThreatFox is ``2a02:cf40:1::5:40669``.

    The value is returned whole, with no port, when the part before the last
    colon is not an IP address, so a bare IPv6 address is not cut in two.
    """
    text = refang(value)
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = _port_number(rest.removeprefix(":"))
    else:
        host, separator, port_text = text.rpartition(":")
        port = _port_number(port_text) if separator else None
    if port is None or normalize_ip(host) is None:
        return text, None
    return host, port


def _tags(fields: dict[str, str]) -> list[str]:
    """Return the tags of a row: the comma-separated ``tags`` field, then the threat and malware names."""
    tags: list[str] = []
    for name in TAG_COLUMNS:
        tags.extend(tag.strip() for tag in fields.get(name, "").split(","))
    tags.extend(fields.get(name, "").strip() for name in THREAT_COLUMNS)
    return list(dict.fromkeys(tag for tag in tags if not is_placeholder(tag)))


def _time(fields: dict[str, str], names: tuple[str, ...]) -> str | None:
    """Return the first time of ``names`` as ISO-8601 text, or raise FeedError naming an invalid one.

    ThreatFox writes ``2022-08-05 11:40:15 UTC``, and its suffix becomes ``+00:00``.
    """
    for name in names:
        raw = fields.get(name)
        if raw is None or is_placeholder(raw):
            continue
        text = raw.strip()
        if text.upper().endswith(" UTC"):
            text = text[:-4].rstrip() + "+00:00"
        if parse_timestamp(text) is None:
            raise FeedError(f"column {name!r} value {shorten(raw)} is not an ISO-8601 time", reason="field_type")
        return text
    return None


def _row_fields(header: CsvHeader, row: list[str]) -> dict[str, str]:
    """Map header names to the row's fields. Of two columns with one name, the first wins."""
    fields: dict[str, str] = {}
    for name, value in zip(header.columns, row, strict=False):
        if name and name not in fields:
            fields[name] = value
    return fields


def _type_name(fields: dict[str, str], header: CsvHeader) -> str | None:
    """Return the row's type name as written (lower case), or the one its value column implies."""
    written = fields.get(header.type_column, "") if header.type_column else ""
    if not is_placeholder(written):
        return written.strip().lower()
    return COLUMN_TYPES.get(header.value_column)


def _context(fields: dict[str, str], header: CsvHeader) -> dict[str, Any]:
    """Return the row's unmapped columns, for analysts: ids, status, links, reporter."""
    used = _METADATA_COLUMNS | {header.value_column, header.type_column}
    return {name: value.strip() for name, value in fields.items() if name not in used and not is_placeholder(value)}


def _empty_value_error(fields: dict[str, str], header: CsvHeader, row: list[str]) -> FeedError:
    message = f"the {header.value_column!r} column is empty; fill it or remove the row"
    if len(row) < len(header.columns):
        message += f" (the row has {len(row)} fields, the header on line {header.line} has {len(header.columns)})"
    return FeedError(message, reason="missing_value")


def ioc_from_row(row: list[str], header: CsvHeader, default_source: str) -> Ioc:
    """Build an Ioc from one CSV row, or raise FeedError naming the invalid value or column."""
    fields = _row_fields(header, row)
    raw_value = fields.get(header.value_column, "").strip()
    if is_placeholder(raw_value):
        raise _empty_value_error(fields, header, row)
    if len(raw_value) > MAX_VALUE_LENGTH:
        raise FeedError(f"value {shorten(raw_value)} is longer than {MAX_VALUE_LENGTH} characters", reason="too_long")

    type_name = _type_name(fields, header)
    value, port = split_host_port(raw_value) if type_name == "ip:port" else (raw_value, None)

    context = _context(fields, header)
    port_text = _first(fields, PORT_COLUMNS)
    if port is None and port_text is not None:
        context["port"] = _port_number(port_text) or port_text
    if port is not None:
        context["port"] = port

    record = {
        "type": FEED_TYPE_NAMES.get(type_name, type_name) if type_name else None,
        "value": value,
        "source": _first(fields, SOURCE_COLUMNS) or default_source,
        "confidence": _first(fields, CONFIDENCE_COLUMNS),
        "severity": _first(fields, SEVERITY_COLUMNS),
        "tags": _tags(fields),
        "tlp": _first(fields, TLP_COLUMNS),
        "valid_from": _time(fields, VALID_FROM_COLUMNS),
        "valid_until": _time(fields, VALID_UNTIL_COLUMNS),
        "context": context,
    }
    ioc = ioc_from_record(record)

    if type_name in IP_TYPE_NAMES and ioc.type not in (ObservableType.IPV4, ObservableType.IPV6):
        raise FeedError(f"value {shorten(raw_value)} of type {type_name!r} is not an IP address", reason="value")
    if raw_value != ioc.value:
        ioc.context["raw_value"] = raw_value
    return ioc


def parse_csv(lines: str | Iterable[str], *, source: str | None = None, name: str = "<feed>") -> FeedResult:
    """Parse a CSV feed given as text or as an iterable of lines.

    ``source`` names the feed on rows without a ``source`` column and defaults
    to ``name``. Errors are returned, not raised. A header without a value
    column is one error on the header line, and each bad row is one error on
    its line.
    """
    physical, errors = split_lines(lines)
    header, start, header_error = locate_header(physical)
    if header_error is not None:
        errors.append(header_error)
    skipped = sum(1 for line in physical[:start] if _is_blank(line) or _is_comment(line))
    if header is not None and _is_comment(physical[header.line - 1]):
        skipped -= 1  # A commented header is the header, not a skipped comment.
    iocs: list[Ioc] = []
    if header is not None:
        skipped += _read_rows(physical, start, header, str(source or name), iocs, errors)
    errors.sort(key=lambda error: error.line)
    return build_result(iocs, errors, skipped)


def _read_rows(
    lines: list[str], start: int, header: CsvHeader, default_source: str, iocs: list[Ioc], errors: list[FeedRecordError]
) -> int:
    """Append the IOCs and errors of the rows after the header; return the number of skipped lines."""
    skipped = 0
    for number, record in iter_records(lines, start, header.delimiter):
        if record is None:
            skipped += 1
        elif isinstance(record, FeedRecordError):
            errors.append(record)
        elif _is_header_row(record, header):
            skipped += 1  # The header repeated, as when a commented header was also left uncommented.
        else:
            _append_row(number, record, header, default_source, iocs, errors)
    return skipped


def _is_header_row(row: list[str], header: CsvHeader) -> bool:
    if len(row) != len(header.columns) or _column_name(row[0]) != header.columns[0]:
        return False
    return tuple(_column_name(field) for field in row) == header.columns


def _append_row(
    number: int, row: list[str], header: CsvHeader, default_source: str, iocs: list[Ioc], errors: list[FeedRecordError]
) -> None:
    try:
        iocs.append(ioc_from_row(row, header, default_source))
    except FeedError as error:
        errors.append(record_error(number, error.reason, str(error)))
    except Exception as error:  # A normaliser bug costs one row, not the feed, and the message names the exception.
        message = f"row {shorten(','.join(row))} failed with {type(error).__name__}: {error}; report this as a bug"
        errors.append(record_error(number, "internal", message))
