"""OpenIOC 1.0 and 1.1 documents (Mandiant / FireEye ``.ioc`` XML), given as text.

The XML is parsed by ``defusedxml`` with ``forbid_dtd=True``. An IOC file
never needs a DTD, and rejecting every ``DOCTYPE`` also rejects entity
expansion ("billion laughs") and external entities. A rejected document is
one ``xml`` error.

Which items become IOCs
-----------------------
An ``IndicatorItem`` becomes an IOC when a match on it alone satisfies the
document, as in detectors.feeds.stix:

* every ``Indicator`` on its path from the top is ``OR`` (an ``AND`` with a
  single child counts as that child);
* its condition is ``is`` and it is not negated (1.1 ``negate="true"``);
* its ``Context/@search`` is in ``SEARCH_TYPES``.

Any other item is an ``unsupported_item`` error naming the item id and the
reason. ``contains`` is such a reason by default. The index only matches
whole values, which is narrower than a substring search. Pass
``contains_as_is=True`` to load ``contains`` items as whole values anyway:
every alert is then one the ``contains`` item also raises, but substrings
and longer values are missed. Note that FireEye's published domain IOCs use
``contains`` throughout.

The document's ``description`` (else ``short_description``) is the IOC
description. Its ``id``, its ``short_description`` and the item ``id`` go
into the context. ``last-modified`` is ``modified``, and ``threatcategory`` /
``threatgroup`` links become tags.

``FeedRecordError.line`` is the 1-based position of the ``IndicatorItem``
in document order, or the line of an XML syntax error.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeElementTree

from detectors.exceptions import FeedError
from detectors.feeds import (
    MAX_VALUE_LENGTH,
    FeedRecordError,
    FeedResult,
    build_result,
    record_error,
    shorten,
)
from detectors.ioc import Ioc, ioc_from_record
from detectors.observables import ObservableType
from detectors.timestamps import parse_timestamp

NAMESPACE_1_0 = "http://schemas.mandiant.com/2010/ioc"
NAMESPACE_1_1 = "http://openioc.org/schemas/OpenIOC_1.1"
ROOT_NAMES = frozenset({"ioc", "OpenIOC"})

# Context/@search values that name one observable, mapped to detectors.ioc.TYPE_ALIASES names.
# The 1.0 names are Mandiant's MIR terms, the 1.1 ones FireEye HX event terms.
SEARCH_TYPES: dict[str, str] = {
    "FileItem/Md5sum": ObservableType.MD5.value,
    "FileItem/Sha1sum": ObservableType.SHA1.value,
    "FileItem/Sha256sum": ObservableType.SHA256.value,
    "FileItem/FileName": ObservableType.FILE_NAME.value,
    "PortItem/remoteIP": "ip",
    "RouteEntryItem/Destination": "ip",
    "Network/DNS": ObservableType.DOMAIN.value,
    "DnsEntryItem/Host": ObservableType.DOMAIN.value,
    "DnsEntryItem/RecordName": ObservableType.DOMAIN.value,
    # Network/URI is the request URI of HTTP traffic. Only a value with a host is a URL IOC,
    # and a bare path is rejected by the URL normaliser as a value error.
    "Network/URI": ObservableType.URL.value,
    "UrlHistoryItem/URL": ObservableType.URL.value,
    "Email/From": ObservableType.EMAIL.value,
    "fileWriteEvent/md5": ObservableType.MD5.value,
    "dnsLookupEvent/hostname": ObservableType.DOMAIN.value,
    "urlMonitorEvent/hostname": ObservableType.DOMAIN.value,
}
TAG_LINK_RELS = frozenset({"threatcategory", "threatgroup"})

# detect_feed_format reads no further than this many characters for the root element.
MAX_DETECT_CHARS = 65536
_ROOT_TAG = re.compile(r"<(?:[\w.-]+:)?(ioc|OpenIOC)[\s/>]")
_PROLOG_ITEM = re.compile(r"\s*(?:<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^\[>]*(?:\[.*?\])?\s*>)", re.DOTALL)


@dataclass(frozen=True, slots=True)
class _Document:
    """The metadata of one OpenIOC document that every IOC of it carries."""

    record: dict[str, Any]
    label: str


def looks_like_openioc(text: str) -> bool:
    """Return True when the first element of ``text`` is an OpenIOC root (``ioc`` or ``OpenIOC``).

    Only the prolog is skipped (XML declaration, comments, processing
    instructions and a DOCTYPE, which parse_openioc then rejects), so the
    check costs no parse of the document.
    """
    if not isinstance(text, str):
        return False
    head = text[:MAX_DETECT_CHARS].removeprefix("\ufeff")
    position = 0
    while True:
        item = _PROLOG_ITEM.match(head, position)
        if item is None:
            break
        position = item.end()
    return _ROOT_TAG.match(head[position:].lstrip()) is not None


def parse_openioc(
    text: str, *, source: str | None = None, name: str = "<feed>", contains_as_is: bool = False
) -> FeedResult:
    """Parse one OpenIOC 1.0 or 1.1 document.

    ``source`` names the feed on every IOC and defaults to ``name``. Errors
    are returned, not raised: a document that is not OpenIOC is one error,
    and each item that is not loaded is one error naming its id.
    """
    root, error = _parse_xml(text, name)
    if root is None:
        return FeedResult(errors=[error] if error is not None else [])
    if _local_name(root.tag) not in ROOT_NAMES:
        root_name = shorten(_local_name(root.tag))
        message = f"feed {name} is not OpenIOC: the root element is {root_name}, not ioc or OpenIOC"
        return FeedResult(errors=[record_error(0, "input", message)])
    try:
        document = _document(root, str(source or name))
    except FeedError as failure:
        return FeedResult(errors=[record_error(0, failure.reason, f"feed {name}: {failure}")])
    iocs: list[Ioc] = []
    errors: list[FeedRecordError] = []
    positions = {id(item): number for number, item in enumerate(_elements(root, "IndicatorItem"), start=1)}
    for item, under_and in loadable_items(root):
        _read_item(item, positions[id(item)], under_and, document, contains_as_is, iocs, errors)
    errors.sort(key=lambda entry: entry.line)
    return build_result(iocs, errors, 0)


def _parse_xml(text: object, name: str) -> tuple[ElementTree.Element | None, FeedRecordError | None]:
    """Parse ``text`` with DTDs forbidden, and return the root or an error naming the line."""
    if not isinstance(text, str):
        message = f"feed {name} is {type(text).__name__}, not str; decode the file before parsing"
        return None, record_error(0, "input", message)
    try:
        return SafeElementTree.fromstring(text.removeprefix("\ufeff"), forbid_dtd=True), None
    except ElementTree.ParseError as error:
        line = error.position[0] if isinstance(getattr(error, "position", None), tuple) else 0
        return None, record_error(line, "xml", f"feed {name} is not well-formed XML: {error}")
    except defusedxml.DefusedXmlException as error:
        message = f"feed {name} has a DOCTYPE or entity declaration ({error!r}); OpenIOC files need none"
        return None, record_error(0, "xml", message)
    except (ValueError, LookupError) as error:  # An encoding declaration that expat cannot apply to text.
        return None, record_error(0, "xml", f"feed {name} cannot be parsed as XML: {type(error).__name__}: {error}")


def _local_name(tag: object) -> str:
    text = tag if isinstance(tag, str) else ""
    return text.rsplit("}", 1)[-1]


def _elements(parent: ElementTree.Element, local_name: str) -> Iterator[ElementTree.Element]:
    """Yield the descendants of ``parent`` with this local name, in any namespace, in document order."""
    return (element for element in parent.iter() if _local_name(element.tag) == local_name)


def _child(parent: ElementTree.Element | None, local_name: str) -> ElementTree.Element | None:
    if parent is None:
        return None
    return next((element for element in parent if _local_name(element.tag) == local_name), None)


def _text(parent: ElementTree.Element | None, local_name: str) -> str | None:
    element = _child(parent, local_name)
    text = element.text.strip() if element is not None and element.text else ""
    return text or None


def _document(root: ElementTree.Element, source: str) -> _Document:
    """Return the document metadata, which 1.0 keeps on the root and 1.1 under ``metadata``."""
    metadata = _child(root, "metadata") if _child(root, "metadata") is not None else root
    short = _text(metadata, "short_description")
    identifier = root.get("id")
    context = {key: value for key, value in (("openioc_id", identifier), ("openioc_name", short)) if value}
    links = _child(metadata, "links")
    tags = [
        link.text.strip()
        for link in (links if links is not None else [])
        if _local_name(link.tag) == "link" and link.get("rel") in TAG_LINK_RELS and link.text and link.text.strip()
    ]
    record = {
        "source": source,
        "tags": list(dict.fromkeys(tags)),
        "modified": _modified(root.get("last-modified")),
        "description": _text(metadata, "description") or short,
        "context": context,
    }
    return _Document(record=record, label=f"OpenIOC {identifier or '<no id>'}")


def _modified(value: str | None) -> str | None:
    if not value:
        return None
    parsed = parse_timestamp(value)
    if parsed is None:
        raise FeedError(f"last-modified {shorten(value)} is not an ISO-8601 time", reason="field_type")
    return value


def loadable_items(root: ElementTree.Element) -> Iterator[tuple[ElementTree.Element, bool]]:
    """Yield each IndicatorItem with True when an ``AND`` (or unknown operator) is on its path.

    The walk uses an explicit stack, so deeply nested Indicators cannot
    exceed Python's recursion limit.
    """
    top = _child(root, "definition") if _child(root, "definition") is not None else _child(root, "criteria")
    stack: list[tuple[ElementTree.Element, bool]] = [(element, False) for element in reversed(list(top or []))]
    while stack:
        element, under_and = stack.pop()
        kind = _local_name(element.tag)
        if kind == "IndicatorItem":
            yield element, under_and
        elif kind == "Indicator":
            children = [child for child in element if _local_name(child.tag) in ("Indicator", "IndicatorItem")]
            operator = (element.get("operator") or "OR").strip().upper()
            narrows = operator != "OR" and len(children) > 1
            stack.extend((child, under_and or narrows) for child in reversed(children))


def _read_item(
    item: ElementTree.Element,
    position: int,
    under_and: bool,
    document: _Document,
    contains_as_is: bool,
    iocs: list[Ioc],
    errors: list[FeedRecordError],
) -> None:
    label = f"{document.label} item {item.get('id') or position}"
    try:
        iocs.append(item_ioc(item, under_and, document, contains_as_is))
    except FeedError as error:
        errors.append(record_error(position, error.reason, f"{label}: {error}"))
    except Exception as error:  # A normaliser bug costs one item, and the message names it.
        message = f"{label} failed with {type(error).__name__}: {error}; report this as a bug"
        errors.append(record_error(position, "internal", message))


def item_ioc(item: ElementTree.Element, under_and: bool, document: _Document, contains_as_is: bool) -> Ioc:
    """Build the IOC of one IndicatorItem, or raise FeedError saying why it is not loaded."""
    context_element = _child(item, "Context")
    search = (context_element.get("search") or "") if context_element is not None else ""
    condition = (item.get("condition") or "").strip().lower()
    content = _text(item, "Content")
    problems = _item_problems(item, search, condition, under_and, contains_as_is)
    if problems:
        detail = f"{condition or 'no condition'} {shorten(search or '<no search>')} {shorten(content or '')}"
        raise FeedError(f"{detail} is not loaded: {'; '.join(problems)}", reason="unsupported_item")
    if content is None:
        raise FeedError(f"{search} item has no Content value", reason="missing_value")
    if len(content) > MAX_VALUE_LENGTH:
        raise FeedError(f"value {shorten(content)} is longer than {MAX_VALUE_LENGTH} characters", reason="too_long")
    context = {**document.record["context"], "openioc_search": search}
    if item.get("id"):
        context["openioc_item_id"] = item.get("id")
    if condition != "is":
        context["openioc_condition"] = condition
    record = {**document.record, "type": SEARCH_TYPES[search], "value": content, "context": context}
    ioc = ioc_from_record(record)
    if content != ioc.value:
        ioc.context["raw_value"] = content
    return ioc


def _item_problems(
    item: ElementTree.Element, search: str, condition: str, under_and: bool, contains_as_is: bool
) -> list[str]:
    """Return the reasons why an item cannot be loaded alone, or an empty list when it can."""
    problems: list[str] = []
    if under_and:
        problems.append("it is inside an AND indicator, so it does not match alone")
    if (item.get("negate") or "").strip().lower() == "true":
        problems.append("it is negated")
    if condition != "is" and not (condition == "contains" and contains_as_is):
        problems.append(f"condition {condition or '<none>'!r} is not an equality")
    if search not in SEARCH_TYPES:
        problems.append(f"search {search or '<none>'!r} is not mapped to an IOC type")
    return problems
