"""STIX 2.1 indicators: a bundle, a TAXII envelope or one indicator object, as JSON text or parsed.

Patterns are parsed with the ``stix2-patterns`` package (its STIX 2.1
grammar), never with regular expressions, so quoting, escapes and
parentheses are read as the specification defines them.

Which parts of a pattern become IOCs
------------------------------------
The index matches one observable at a time, so an IOC is loaded only when a
match on that observable alone satisfies the whole pattern:

* Comparisons joined by ``OR`` (inside one observation or between
  observations) each become IOCs. ``IN ('a', 'b')`` is read as ``= 'a' OR = 'b'``,
  and ``ipv4-addr:value ISSUBSET '198.51.100.0/24'`` as a CIDR IOC.
* ``AND`` is not loaded. Loading both sides would alert on each half alone,
  which is broader than what the producer published: an IP ``AND`` a port
  would alert on every connection to a shared host. The ``AND`` part is
  reported as ``unsupported_pattern``, and the other ``OR`` branches of the
  same pattern still load.
* ``FOLLOWEDBY``, the qualifiers ``WITHIN``, ``REPEATS`` and ``START``/``STOP``,
  operators other than ``=``, ``IN`` and IP ``ISSUBSET``, negations, literals
  that are not strings and object paths outside ``OBJECT_PATHS`` are reported
  as ``unsupported_pattern`` too.

The result is one ``unsupported_pattern`` error per indicator, naming its id
and the parts that were not loaded. An indicator is never dropped silently.

Other rules
-----------
* ``pattern_type`` other than ``stix`` (sigma, yara, snort, ...) is one
  ``unsupported_pattern_type`` error. A missing ``pattern_type`` means
  ``stix``, as in STIX 2.0, which had no such property.
* Objects that are not indicators are skipped and counted in ``skipped``.
* ``revoked: true`` yields IOCs with ``revoked=True``, so ``IocIndex.apply``
  removes them. ``modified`` orders versions of the same indicator.
* ``FeedRecordError.line`` is the 1-based position of the object in the
  bundle's ``objects`` list, or the line of a JSON syntax error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from stix2patterns.exceptions import ParseException
from stix2patterns.v21.grammars.STIXPatternParser import STIXPatternParser as Grammar
from stix2patterns.v21.grammars.STIXPatternVisitor import STIXPatternVisitor
from stix2patterns.v21.pattern import Pattern

from detectors.exceptions import FeedError
from detectors.feeds import (
    MAX_VALUE_LENGTH,
    FeedRecordError,
    FeedResult,
    build_result,
    load_json,
    record_error,
    shorten,
)
from detectors.ioc import Ioc, ioc_from_record
from detectors.observables import ObservableType
from detectors.timestamps import parse_timestamp

# Object paths that name one observable, mapped to a type name of detectors.ioc.TYPE_ALIASES.
# ``network-traffic:dst_ref.value`` uses "ip", so a domain there is rejected as not an address.
OBJECT_PATHS: dict[tuple[str, ...], str] = {
    ("file", "name"): ObservableType.FILE_NAME.value,
    ("ipv4-addr", "value"): "ipv4",
    ("ipv6-addr", "value"): "ipv6",
    ("domain-name", "value"): ObservableType.DOMAIN.value,
    ("url", "value"): ObservableType.URL.value,
    ("email-addr", "value"): ObservableType.EMAIL.value,
    ("email-message", "from_ref", "value"): ObservableType.EMAIL.value,
    ("email-message", "sender_ref", "value"): ObservableType.EMAIL.value,
    ("user-account", "user_id"): ObservableType.USER.value,
    ("user-account", "account_login"): ObservableType.USER.value,
    ("network-traffic", "dst_ref", "value"): "ip",
}
# ``file:hashes.<key>`` keys, upper-cased and without hyphens: the specification
# writes 'SHA-256' and 'MD5', and producers also write sha256 and 'SHA1'.
HASH_KEYS: dict[str, str] = {
    "MD5": ObservableType.MD5.value,
    "SHA1": ObservableType.SHA1.value,
    "SHA256": ObservableType.SHA256.value,
    "SHA512": ObservableType.SHA512.value,
}
# Paths whose ISSUBSET comparison is a CIDR block.
SUBSET_PATHS = frozenset({("ipv4-addr", "value"), ("ipv6-addr", "value"), ("network-traffic", "dst_ref", "value")})

# The TLP marking definitions that STIX 2.1 predefines (TLP 1.0, from the python-stix2
# library's stix2/v21/common.py) and the OASIS TLP 2.0 extension (cti-stix-common-objects,
# extension-definition-specifications/tlp-2.0/marking-definition.json).
TLP_MARKINGS: dict[str, str] = {
    "marking-definition--613f2e26-407d-48c7-9eca-b8e91df99dc9": "white",
    "marking-definition--34098fce-860f-48ae-8e50-ebd3cc5e41da": "green",
    "marking-definition--f88d31f6-486f-44da-b317-01333bde0b82": "amber",
    "marking-definition--5e57c739-391a-4eb3-b6be-7d15ca92d5ed": "red",
    "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487": "clear",
    "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb": "green",
    "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421": "amber",
    "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003": "amber+strict",
    "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1": "red",
}
TLP_2_EXTENSION = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d"
# When an object carries several TLP markings, the most restrictive one applies.
TLP_RANK = {"clear": 0, "white": 0, "green": 1, "amber": 2, "amber+strict": 3, "red": 4}

# Indicators whose pattern names more unsupported parts than this list only the first ones.
MAX_LISTED_PARTS = 3


@dataclass(frozen=True, slots=True)
class Comparison:
    """One loadable comparison: an object path and the string values it equals."""

    path: tuple[str, ...]
    type_name: str
    values: tuple[str, ...]


@dataclass(slots=True)
class PatternTerms:
    """The comparisons of a pattern that match alone, and the parts that cannot be loaded."""

    comparisons: list[Comparison] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)


class _TreeVisitor(STIXPatternVisitor):
    """Return the root of the parse tree, so the walk below can be iterative."""

    def visitPattern(self, ctx: Grammar.PatternContext) -> Grammar.PatternContext:  # noqa: N802 (ANTLR name)
        return ctx


def pattern_terms(pattern: str) -> PatternTerms:
    """Split a STIX 2.1 pattern into loadable comparisons and unsupported parts.

    Raises FeedError (reason ``pattern_syntax``) when the text is not a
    valid pattern. The tree is walked with an explicit stack, because a
    pattern with thousands of ``OR`` terms nests thousands of levels deep
    and would exceed Python's recursion limit in a recursive walk.
    """
    try:
        tree = Pattern(pattern).visit(_TreeVisitor())
    except ParseException as error:
        raise FeedError(f"pattern {shorten(pattern)} is not valid STIX 2.1: {error}", reason="pattern_syntax") from None
    except RecursionError:
        raise FeedError(f"pattern {shorten(pattern)} is nested too deeply to parse", reason="pattern_syntax") from None
    terms = PatternTerms()
    stack: list[Any] = [tree.observationExpressions()]
    while stack:
        node = stack.pop()
        children, problem = _expand(node)
        if problem is not None:
            terms.unsupported.append(f"{_source_text(node, pattern)} ({problem})")
        elif isinstance(children, Comparison):
            terms.comparisons.append(children)
        else:
            stack.extend(reversed(children))
    return terms


def _expand(node: Any) -> tuple[list[Any] | Comparison, str | None]:
    """Return the children of a disjunction node, its comparison, or why it cannot be loaded."""
    if isinstance(node, Grammar.ObservationExpressionsContext):
        return ([], "FOLLOWEDBY") if node.FOLLOWEDBY() else ([node.observationExpressionOr()], None)
    if isinstance(node, Grammar.ObservationExpressionOrContext):
        return (node.observationExpressionOr(), None) if node.OR() else ([node.observationExpressionAnd()], None)
    if isinstance(node, (Grammar.ObservationExpressionAndContext, Grammar.ComparisonExpressionAndContext)):
        if node.AND():
            return [], "AND: both sides must match, and the index matches one observable"
        if isinstance(node, Grammar.ObservationExpressionAndContext):
            return [node.observationExpression()], None
        return [node.propTest()], None
    if isinstance(node, Grammar.ObservationExpressionSimpleContext):
        return [node.comparisonExpression()], None
    if isinstance(node, Grammar.ObservationExpressionCompoundContext):
        return [node.observationExpressions()], None
    if isinstance(node, Grammar.ObservationExpressionWithinContext):
        return [], "qualifier WITHIN"
    if isinstance(node, Grammar.ObservationExpressionRepeatedContext):
        return [], "qualifier REPEATS"
    if isinstance(node, Grammar.ObservationExpressionStartStopContext):
        return [], "qualifier START/STOP"
    if isinstance(node, Grammar.ComparisonExpressionContext):
        return (node.comparisonExpression(), None) if node.OR() else ([node.comparisonExpressionAnd()], None)
    if isinstance(node, Grammar.PropTestParenContext):
        return [node.comparisonExpression()], None
    return _comparison(node)


def _comparison(node: Any) -> tuple[list[Any] | Comparison, str | None]:
    """Map one property test to a Comparison, or return why it is not an equality on a known path."""
    if isinstance(node, Grammar.PropTestEqualContext):
        if node.NOT() or node.NEQ():
            return [], "negated comparison"
        literals = [node.primitiveLiteral()]
    elif isinstance(node, Grammar.PropTestSetContext):
        if node.NOT():
            return [], "NOT IN"
        literals = node.setLiteral().primitiveLiteral()
    elif isinstance(node, Grammar.PropTestIsSubsetContext):
        path = object_path(node.objectPath())
        if node.NOT() or path not in SUBSET_PATHS:
            return [], "ISSUBSET is loaded only as a CIDR block of an IP address path"
        return Comparison(path, OBJECT_PATHS[path], (_unquote(node.StringLiteral().getText()),)), None
    else:
        return [], f"operator {_operator_name(node)}"
    path = object_path(node.objectPath())
    type_name = observable_type_name(path)
    if type_name is None:
        return [], f"object path {format_path(path)} is not mapped to an IOC type"
    values = [_string_literal(literal) for literal in literals]
    if any(value is None for value in values):
        return [], "value is not a string literal"
    return Comparison(path, type_name, tuple(value for value in values if value is not None)), None


def _operator_name(node: Any) -> str:
    """Name the operator of a property test that is not loaded (MATCHES, LIKE, >, EXISTS, ...)."""
    for name in ("MATCHES", "LIKE", "EXISTS", "ISSUPERSET", "GT", "LT", "GE", "LE"):
        method = getattr(node, name, None)
        token = method() if method is not None else None
        if token is not None:
            return token.getText()
    return type(node).__name__.removeprefix("PropTest").removesuffix("Context")


def object_path(node: Any) -> tuple[str, ...]:
    """Return an object path as a tuple: type, first property, then keys and ``[index]`` steps."""
    first = node.firstPathComponent()
    literal = first.StringLiteral()
    steps: list[str] = [node.objectType().getText(), _unquote(literal.getText()) if literal else first.getText()]
    component = node.objectPathComponent()
    stack = [component] if component is not None else []
    while stack:
        step = stack.pop()
        if isinstance(step, Grammar.PathStepContext):
            stack.extend(reversed(step.objectPathComponent()))
        elif isinstance(step, Grammar.KeyPathStepContext):
            key = step.StringLiteral()
            steps.append(_unquote(key.getText()) if key else step.IdentifierWithoutHyphen().getText())
        else:
            steps.append(step.getText())
    return tuple(steps)


def observable_type_name(path: tuple[str, ...]) -> str | None:
    """Return the IOC type name for an object path, or None when the path is not mapped."""
    if len(path) == 3 and path[:2] == ("file", "hashes"):
        return HASH_KEYS.get(path[2].upper().replace("-", ""))
    return OBJECT_PATHS.get(path)


def format_path(path: tuple[str, ...]) -> str:
    """Write a path back as ``type:a.b`` for messages."""
    return f"{path[0]}:" + ".".join(path[1:]).replace(".[", "[")


def _string_literal(node: Any) -> str | None:
    orderable = node.orderableLiteral()
    token = orderable.StringLiteral() if orderable is not None else None
    return _unquote(token.getText()) if token is not None else None


def _unquote(literal: str) -> str:
    """Undo STIX string quoting: drop the quotes and the backslash of ``\\'`` and ``\\\\``."""
    body = literal[1:-1]
    if "\\" not in body:
        return body
    chars: list[str] = []
    escaped = False
    for char in body:
        if char == "\\" and not escaped:
            escaped = True
            continue
        chars.append(char)
        escaped = False
    return "".join(chars)


def _source_text(node: Any, pattern: str) -> str:
    """Return the part of the pattern text that ``node`` was parsed from, with its spacing."""
    start, stop = node.start, node.stop
    if start is None or stop is None:
        return node.getText()
    return pattern[start.start : stop.stop + 1]


# -- documents -------------------------------------------------------------


def looks_like_stix(document: object) -> bool:
    """Return True for a parsed JSON object that is a STIX bundle or indicator."""
    return isinstance(document, dict) and document.get("type") in ("bundle", "indicator")


def parse_stix(
    data: str | Mapping[str, Any] | list[Any], *, source: str | None = None, name: str = "<feed>"
) -> FeedResult:
    """Parse STIX 2.1 JSON text, or an already parsed bundle, envelope, indicator or object list.

    ``source`` names the feed on every IOC and defaults to ``name``. Errors
    are returned, not raised: a document that is not STIX is one error, and
    each indicator that is not loaded whole is one error naming its id.

    NOTE: the ANTLR-based pattern parser is slow, about 0.6 ms for a simple
    pattern in one measurement (5,000 indicators in 3 s), so a bundle of
    100,000 indicators takes on the order of a minute to load.
    """
    document, error = load_json(data, f"feed {name}")
    if error is not None:
        return FeedResult(errors=[error])
    objects, error = _objects(document, name)
    if error is not None:
        return FeedResult(errors=[error])
    markings = bundle_markings(objects)
    feed_source = str(source or name)
    iocs: list[Ioc] = []
    errors: list[FeedRecordError] = []
    skipped = 0
    for position, obj in enumerate(objects, start=1):
        if not isinstance(obj, dict):
            message = f"object {position} is {type(obj).__name__}, not a JSON object"
            errors.append(record_error(position, "input", message))
        elif obj.get("type") != "indicator":
            skipped += 1
        else:
            _read_indicator(obj, position, feed_source, markings, iocs, errors)
    return build_result(select_versions(iocs), errors, skipped)




def _objects(document: object, name: str) -> tuple[list[Any], FeedRecordError | None]:
    """Return the STIX objects of a bundle, a TAXII envelope, one object or a list of objects."""
    if isinstance(document, list):
        return document, None
    if isinstance(document, dict):
        kind = document.get("type")
        objects = document.get("objects")
        if kind == "bundle" or (kind is None and objects is not None):
            if isinstance(objects, list):
                return objects, None
            if objects is None:
                return [], None
            return [], record_error(0, "input", f"the 'objects' of {name} is {type(objects).__name__}, not a list")
        if isinstance(kind, str):
            return [document], None
    message = f"feed {name} is not a STIX bundle, envelope or object: expected a JSON object with a 'type'"
    return [], record_error(0, "input", message)


def bundle_markings(objects: Iterable[object]) -> dict[str, str]:
    """Return the TLP level of each predefined marking and of each TLP marking defined in the bundle."""
    markings = dict(TLP_MARKINGS)
    for obj in objects:
        if isinstance(obj, dict) and obj.get("type") == "marking-definition" and isinstance(obj.get("id"), str):
            level = _marking_level(obj)
            if level is not None:
                markings[obj["id"]] = level
    return markings


def _marking_level(obj: dict[str, Any]) -> str | None:
    definition = obj.get("definition")
    if obj.get("definition_type") == "tlp" and isinstance(definition, dict):
        level = definition.get("tlp")
    else:
        extensions = obj.get("extensions")
        extension = extensions.get(TLP_2_EXTENSION) if isinstance(extensions, dict) else None
        level = extension.get("tlp_2_0") if isinstance(extension, dict) else None
    level = level.lower() if isinstance(level, str) else None
    return level if level in TLP_RANK else None


def _read_indicator(
    obj: dict[str, Any],
    position: int,
    source: str,
    markings: Mapping[str, str],
    iocs: list[Ioc],
    errors: list[FeedRecordError],
) -> None:
    """Append the IOCs of one indicator and one error per problem, each naming the indicator id."""
    label = _indicator_label(obj)
    try:
        terms, record = _indicator_terms(obj, source, markings)
    except FeedError as error:
        errors.append(record_error(position, error.reason, f"{label}: {error}"))
        return
    except Exception as error:  # A parser or normaliser bug costs one indicator, and the message names it.
        message = f"{label} failed with {type(error).__name__}: {error}; report this as a bug"
        errors.append(record_error(position, "internal", message))
        return
    for comparison in terms.comparisons:
        for value in comparison.values:
            try:
                iocs.append(_ioc(record, comparison, value))
            except FeedError as error:
                errors.append(record_error(position, error.reason, f"{label}, {format_path(comparison.path)}: {error}"))
    if terms.unsupported:
        errors.append(record_error(position, "unsupported_pattern", _unsupported_message(label, terms)))


def _indicator_label(obj: dict[str, Any]) -> str:
    identifier = obj.get("id")
    return f"indicator {identifier}" if isinstance(identifier, str) else "indicator without an id"


def _indicator_terms(
    obj: dict[str, Any], source: str, markings: Mapping[str, str]
) -> tuple[PatternTerms, dict[str, Any]]:
    """Check the indicator's pattern and metadata, and raise FeedError naming the first bad field."""
    pattern_type = obj.get("pattern_type", "stix")
    if pattern_type != "stix":
        raise FeedError(
            f"pattern_type {shorten(str(pattern_type))} is not loaded; only STIX patterns name observables",
            reason="unsupported_pattern_type",
        )
    pattern = obj.get("pattern")
    if not isinstance(pattern, str) or not pattern.strip():
        raise FeedError("has no pattern; add a STIX pattern string", reason="missing_field")
    if len(pattern) > MAX_VALUE_LENGTH:
        raise FeedError(f"pattern of {len(pattern)} characters is longer than {MAX_VALUE_LENGTH}", reason="too_long")
    record = indicator_metadata(obj, source, markings)
    return pattern_terms(pattern), record


def indicator_metadata(obj: Mapping[str, Any], source: str, markings: Mapping[str, str]) -> dict[str, Any]:
    """Return the IOC record fields shared by every value of one indicator.

    Raises FeedError (reason ``field_type``) for a confidence or time of the
    wrong type, so one bad field is one error and not one per value.
    """
    context: dict[str, Any] = {}
    for key, name in (("id", "stix_id"), ("name", "stix_name"), ("created_by_ref", "stix_created_by_ref")):
        if isinstance(obj.get(key), str) and obj[key]:
            context[name] = obj[key]
    record: dict[str, Any] = {
        "source": source,
        "confidence": _confidence(obj.get("confidence")),
        "tags": _strings(obj.get("labels")) + _strings(obj.get("indicator_types")),
        "tlp": marking_tlp(obj.get("object_marking_refs"), markings),
        "revoked": obj.get("revoked") is True,
        "description": obj.get("description") if isinstance(obj.get("description"), str) else None,
        "context": context,
    }
    for name in ("valid_from", "valid_until", "modified"):
        record[name] = checked_time(obj.get(name), name)
    record["tags"] = list(dict.fromkeys(record["tags"]))
    return record


def _confidence(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
        raise FeedError(f"confidence {shorten(repr(value))} is not an integer from 0 to 100", reason="field_type")
    return value


def checked_time(value: object, name: str) -> str | None:
    """Return a time string that ``parse_timestamp`` accepts, or raise FeedError naming it."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise FeedError(f"{name} {shorten(repr(value))} is not a timestamp string", reason="field_type")
    parsed = parse_timestamp(value)
    if parsed is None:
        raise FeedError(f"{name} {shorten(value)} is not an ISO-8601 timestamp", reason="field_type")
    return value


def _strings(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item.strip() for item in value if isinstance(item, str) and item.strip()]


def marking_tlp(refs: object, markings: Mapping[str, str]) -> str | None:
    """Return the most restrictive TLP level among the marking references, or None."""
    if not isinstance(refs, list):
        return None
    levels = [markings[ref] for ref in refs if isinstance(ref, str) and ref in markings]
    return max(levels, key=TLP_RANK.__getitem__) if levels else None


def _ioc(record: dict[str, Any], comparison: Comparison, value: str) -> Ioc:
    if len(value) > MAX_VALUE_LENGTH:
        raise FeedError(f"value {shorten(value)} is longer than {MAX_VALUE_LENGTH} characters", reason="too_long")
    ioc = ioc_from_record({**record, "type": comparison.type_name, "value": value, "context": dict(record["context"])})
    if value != ioc.value:
        ioc.context["raw_value"] = value
    return ioc


def _unsupported_message(label: str, terms: PatternTerms) -> str:
    parts = "; ".join(terms.unsupported[:MAX_LISTED_PARTS])
    more = len(terms.unsupported) - MAX_LISTED_PARTS
    if more > 0:
        parts += f"; and {more} more"
    loaded = sum(len(comparison.values) for comparison in terms.comparisons)
    return f"{label}: pattern parts not loaded as IOCs: {parts}. {loaded} value(s) of the pattern were loaded"


def select_versions(iocs: Iterable[Ioc]) -> Iterator[Ioc]:
    """Yield one IOC per key: the newest version per indicator, and an active one over revoked ones.

    Two versions of one indicator (the same ``stix_id``) are ordered by
    ``modified``, and the later one in the bundle wins a tie. When several
    indicators name the same value, a revocation of one of them must not
    remove the value that another still publishes, so an active IOC wins.
    """
    latest: dict[tuple[str, str], Ioc] = {}
    for ioc in iocs:
        version = (ioc.key, str(ioc.context.get("stix_id", "")))
        current = latest.get(version)
        if current is None or _modified(ioc) >= _modified(current):
            latest[version] = ioc
    chosen: dict[str, Ioc] = {}
    for (key, _), ioc in latest.items():
        current = chosen.get(key)
        if current is None or current.revoked or not ioc.revoked:
            chosen[key] = ioc
    return iter(chosen.values())


def _modified(ioc: Ioc) -> int:
    return ioc.modified if ioc.modified is not None else -1
