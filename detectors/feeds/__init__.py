"""IOC feed parsers: feed text in, deduplicated ``Ioc`` records and per-line errors out.

=======  ===========================================================
name     input
=======  ===========================================================
plain    one indicator per line, ``#`` and ``//`` comment lines
csv      a header row (plain or as the last ``#`` comment line), then rows
stix     a STIX 2.1 bundle or indicator (JSON), see detectors.feeds.stix
misp     a MISP event or search response (JSON), see detectors.feeds.misp
openioc  an OpenIOC 1.0 or 1.1 document (XML), see detectors.feeds.openioc
auto     stix, misp or openioc when the content is one, else csv when a
         header names a value column or the rows are quoted, else plain
=======  ===========================================================

The parsers take text or an iterable of lines and never open files, so the
Kafka feed producer and the offline replay read a feed the same way. They
collect a ``FeedRecordError`` per bad line instead of raising: one bad
indicator must not stop a feed of thousands from loading.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from detectors.ioc import Ioc

FEED_FORMATS = ("auto", "plain", "csv", "stix", "misp", "openioc")

# Maximum value length that any normaliser in detectors.observables accepts (the limit of parse_url).
MAX_VALUE_LENGTH = 65536
# Error messages quote the bad value, so they are cut to keep a 1 MB junk line out of the logs.
MAX_MESSAGE_LENGTH = 400
# detect_feed_format gives up looking for the header after this many comment or blank lines.
MAX_DETECT_LINES = 1000
# detect_structured looks for the first character of JSON or XML within this many characters.
MAX_DETECT_CHARS = 65536


@dataclass(frozen=True, slots=True)
class FeedRecordError:
    """One rejected feed line.

    ``line`` is the 1-based physical line number where the record starts, or
    0 when the error concerns the whole input (wrong type, unknown format).
    In stix, misp and openioc feeds it is the 1-based position of the STIX
    object, MISP attribute or OpenIOC item, because a JSON or XML record has
    no line of its own. A syntax error there is on its line.
    ``reason`` is a short, stable class for metrics, and ``message`` names the value.
    """

    line: int
    reason: str
    message: str


@dataclass(slots=True)
class FeedResult:
    """The IOCs of one feed, its rejected lines and the number of comment and blank lines."""

    iocs: list[Ioc] = field(default_factory=list)
    errors: list[FeedRecordError] = field(default_factory=list)
    skipped: int = 0


def load_json(data: object, name: str) -> tuple[object, FeedRecordError | None]:
    """Return a parsed JSON feed document, or an error on the line of the JSON syntax error.

    ``data`` may already be parsed (a dict or list); ``name`` opens every message.
    """
    if isinstance(data, (dict, list)):
        return data, None
    if not isinstance(data, str):
        return None, record_error(0, "input", f"{name} is {type(data).__name__}; pass JSON text or parsed JSON")
    try:
        return json.loads(data.removeprefix("\ufeff")), None
    except json.JSONDecodeError as error:
        message = f"{name} is not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        return None, record_error(error.lineno, "json", message)
    except (RecursionError, ValueError) as error:  # Nesting deeper than the parser's limit, or a huge number.
        return None, record_error(0, "json", f"{name} cannot be read as JSON: {type(error).__name__}: {error}")


def record_error(line: int, reason: str, message: str) -> FeedRecordError:
    """Build a FeedRecordError with the message cut to MAX_MESSAGE_LENGTH characters."""
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    return FeedRecordError(line=line, reason=reason, message=message)


def shorten(value: str, limit: int = 80) -> str:
    """Return ``repr(value)``, cut to about ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def build_result(iocs: Iterable[Ioc], errors: list[FeedRecordError], skipped: int) -> FeedResult:
    """Deduplicate IOCs by topic key. The last record of a key wins, at the position of the first.

    The topic is compacted by the same key, so publishing the duplicates would
    only let the earlier metadata flicker through before the last one wins.
    """
    by_key: dict[str, Ioc] = {}
    for ioc in iocs:
        by_key[ioc.key] = ioc
    return FeedResult(iocs=list(by_key.values()), errors=errors, skipped=skipped)


def iter_lines(text: str) -> Iterator[str]:
    """Yield the lines of ``text`` without line endings, dropping a leading byte-order mark.

    Only ``\\n`` ends a line (a ``\\r`` before it is removed), unlike
    ``str.splitlines``, which also splits at form feeds and Unicode separators
    and would shift line numbers away from what ``wc -l`` and editors show.
    """
    start = 1 if text.startswith("\ufeff") else 0
    while start < len(text):
        end = text.find("\n", start)
        if end < 0:
            yield text[start:].removesuffix("\r")
            return
        yield text[start:end].removesuffix("\r")
        start = end + 1


def split_lines(lines: str | Iterable[str]) -> tuple[list[str], list[FeedRecordError]]:
    """Return the physical lines of a feed given as text or as an iterable of lines.

    An item of an iterable that is not a ``str`` is reported as an error and
    read as an empty line, so the numbers of the following lines stay right.
    """
    if isinstance(lines, str):
        return list(iter_lines(lines)), []
    if isinstance(lines, (bytes, bytearray)) or not isinstance(lines, Iterable):
        message = (
            f"feed input is {type(lines).__name__}; pass str text or an iterable of str lines "
            "(decode files as UTF-8 first)"
        )
        return [], [record_error(0, "input", message)]
    result: list[str] = []
    errors: list[FeedRecordError] = []
    try:
        for number, item in enumerate(lines, start=1):
            if not isinstance(item, str):
                message = f"line {number} is {type(item).__name__}, not str; decode it first"
                errors.append(record_error(number, "input", message))
                item = ""
            if number == 1:
                item = item.removeprefix("\ufeff")
            result.append(item.removesuffix("\n").removesuffix("\r"))
    except Exception as error:  # A failing caller iterator (a decode error, say) ends the input, not the parse.
        message = f"reading feed lines failed after line {len(result)}: {type(error).__name__}: {error}"
        errors.append(record_error(len(result) + 1, "input", message))
    return result, errors


def parse_feed(text: str, fmt: str = "auto", *, source: str | None = None, name: str = "<feed>") -> FeedResult:
    """Parse feed text in ``fmt`` (one of FEED_FORMATS); ``auto`` calls detect_feed_format.

    ``source`` names the feed on every IOC, and a CSV ``source`` column
    overrides it per row. ``name`` is the file name, used when ``source`` is
    not given. A wrong input type or format is returned as an error on line 0
    instead of raised, and so is every bad line (on its own line number).
    """
    if not isinstance(text, str):
        message = f"feed {name} is {type(text).__name__}, not str; decode the file as UTF-8 before parsing"
        return FeedResult(errors=[record_error(0, "input", message)])
    if fmt not in FEED_FORMATS:
        message = f"unknown feed format {fmt!r} for feed {name}; use one of {', '.join(FEED_FORMATS)}"
        return FeedResult(errors=[record_error(0, "format", message)])
    document: Any = text
    if fmt == "auto":
        structured = detect_structured(text)
        chosen, document = structured if structured is not None else (_line_format(text), text)
    else:
        chosen = fmt
    if chosen == "stix":
        return parse_stix(document, source=source, name=name)
    if chosen == "misp":
        return parse_misp(document, source=source, name=name)
    if chosen == "openioc":
        return parse_openioc(text, source=source, name=name)
    if chosen == "csv":
        return parse_csv(text, source=source, name=name)
    return parse_plain(text, source=source, name=name)


def detect_feed_format(text: str) -> str:
    """Return ``"stix"``, ``"misp"``, ``"openioc"``, ``"csv"`` or ``"plain"`` for feed text.

    A JSON STIX bundle or indicator is stix, a JSON MISP event, search
    response or feed manifest is misp, and XML whose root is ``ioc`` or
    ``OpenIOC`` is openioc. Otherwise it is CSV when the first non-comment
    line, or the last ``#`` comment line before it, is a delimiter-separated
    header naming an IOC value column (``url``, ``ioc``, ``indicator``, ...),
    or when that first line is a quoted CSV row. Everything else is read as
    a plain list.
    """
    if not isinstance(text, str):
        return "plain"
    structured = detect_structured(text)
    return structured[0] if structured is not None else _line_format(text)


def _line_format(text: str) -> str:
    return "csv" if looks_like_csv(iter_lines(text), MAX_DETECT_LINES) else "plain"


def detect_structured(text: str) -> tuple[str, Any] | None:
    """Return ``(format, parsed document)`` for STIX, MISP or OpenIOC text, else None.

    JSON is parsed once here and the document handed to the parser. Only
    text that starts with ``{`` or ``[`` is tried as JSON, so a plain or CSV
    feed costs no JSON parse. XML is recognised by its root element only.
    """
    head = text[:MAX_DETECT_CHARS].lstrip("\ufeff \t\r\n")
    if head.startswith("<"):
        return ("openioc", text) if looks_like_openioc(head) else None
    if not head.startswith(("{", "[")):
        return None
    try:
        document = json.loads(text.removeprefix("\ufeff"))
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError; NDJSON lands here too.
        return None
    if looks_like_stix(document):
        return "stix", document
    if looks_like_misp(document):
        return "misp", document
    return None


# The format modules import FeedResult and the helpers above from this package,
# so they are imported once those names exist.
from detectors.feeds.csv import looks_like_csv, parse_csv  # noqa: E402
from detectors.feeds.misp import looks_like_misp, parse_misp, parse_misp_feed  # noqa: E402
from detectors.feeds.openioc import looks_like_openioc, parse_openioc  # noqa: E402
from detectors.feeds.plain import parse_plain  # noqa: E402
from detectors.feeds.stix import looks_like_stix, parse_stix  # noqa: E402

__all__ = [
    "FEED_FORMATS",
    "FeedRecordError",
    "FeedResult",
    "detect_feed_format",
    "parse_csv",
    "parse_feed",
    "parse_misp",
    "parse_misp_feed",
    "parse_openioc",
    "parse_plain",
    "parse_stix",
]
