"""Elastic Common Schema documents (nested objects or dotted keys) for every source kind."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, split_addresses
from detectors.observation import Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "ecs"
MAX_DEPTH = 16
# Key of flatten()'s list of paths that hold objects; no ECS field has this name.
OBJECT_PATHS = "\x00objects"

_HASH_FIELDS = {
    f"{prefix}.hash.{algo}": ObservableType(algo)
    for prefix in ("file", "process", "process.parent", "dll", "email.attachments.file")
    for algo in ("md5", "sha1", "sha256", "sha512")
}
_FILE_NAME_FIELDS = ("file.name", "file.path", "process.executable", "process.name", "email.attachments.file.name", "dll.name")
_IP_FIELDS = ("destination.ip", "server.ip", "dns.resolved_ip")
_DOMAIN_FIELDS = ("destination.domain", "server.domain", "dns.question.name", "url.domain")
_URL_FIELDS = ("url.full", "url.original")
_TEXT_FIELDS = ("process.command_line", "process.parent.command_line", "powershell.file.script_block_text")
_EMAIL_SENDER_FIELDS = ("email.from.address", "email.sender.address", "email.reply_to.address")
_RECIPIENT_FIELDS = ("email.to.address", "email.cc.address", "email.bcc.address")
_URL_PART_FIELDS = ("url.port", "url.path", "url.query")
_ENTITY_FIELDS = ("host.name", "host.hostname", "source.ip", "client.ip", "user.domain", "user.name")
_HEADER_FIELDS = ("@timestamp", "event.created", "event.category", "event.code", "event.action")
# Every field adapt() reads. _read_fields() keeps only these, and the
# paths below them, so no list is built for a leaf that nothing reads.
_READ_FIELDS = frozenset(
    (
        *_HEADER_FIELDS,
        *_ENTITY_FIELDS,
        *_RECIPIENT_FIELDS,
        *_HASH_FIELDS,
        *_FILE_NAME_FIELDS,
        *_IP_FIELDS,
        *_DOMAIN_FIELDS,
        *_URL_FIELDS,
        *_URL_PART_FIELDS,
        *_EMAIL_SENDER_FIELDS,
        *_TEXT_FIELDS,
    )
)
_READ_PREFIXES = frozenset(
    ".".join(parts[:end]) for parts in (name.split(".") for name in _READ_FIELDS) for end in range(1, len(parts))
)
_CATEGORY_SOURCE = {
    "email": SourceKind.MAIL,
    "web": SourceKind.PROXY,
    "network": SourceKind.PROXY,
    "process": SourceKind.EDR,
    "file": SourceKind.EDR,
    "malware": SourceKind.EDR,
    "vulnerability": SourceKind.VULN,
}


def flatten(document: dict[str, Any]) -> dict[str, list[Any]]:
    """Map each dotted ECS path to the list of leaf values found under it.

    Lists of objects (``email.attachments``) contribute one value per element.
    The paths that hold objects are listed under OBJECT_PATHS, so a reader
    can reject an object where it expects text. Nesting deeper than
    MAX_DEPTH raises MalformedRecordError.
    """
    flat: dict[str, list[Any]] = {}
    stack: list[tuple[str, Any, int]] = [("", document, 0)]
    while stack:
        prefix, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise MalformedRecordError(f"ECS document nested deeper than {MAX_DEPTH} levels at {prefix!r}", reason="too_deep")
        if isinstance(value, dict):
            if prefix:
                flat.setdefault(OBJECT_PATHS, []).append(prefix)
            for key, child in value.items():
                stack.append((f"{prefix}.{key}" if prefix else str(key), child, depth + 1))
        elif isinstance(value, list):
            for child in value:
                stack.append((prefix, child, depth + 1))
        else:
            flat.setdefault(prefix, []).append(value)
    return flat


def _read_fields(document: dict[str, Any]) -> dict[str, list[Any]]:
    """Return what flatten() returns, restricted to the fields in _READ_FIELDS.

    Subtrees that hold no read field are only checked for depth. A document
    nested deeper than MAX_DEPTH anywhere goes through flatten(), so the
    error names the same path as before.
    """
    flat: dict[str, list[Any]] = {}
    stack: list[tuple[str, Any, int]] = [("", document, 0)]
    while stack:
        prefix, value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return flatten(document)
        if isinstance(value, dict):
            if prefix in _READ_FIELDS:
                flat.setdefault(OBJECT_PATHS, []).append(prefix)
            for key, child in value.items():
                path = f"{prefix}.{key}" if prefix else str(key)
                if path in _READ_FIELDS or path in _READ_PREFIXES:
                    stack.append((path, child, depth + 1))
                elif isinstance(child, (dict, list)):
                    if _deeper_than_limit(child, depth + 1):
                        return flatten(document)
                elif depth >= MAX_DEPTH:
                    return flatten(document)
        elif isinstance(value, list):
            for child in value:
                stack.append((prefix, child, depth + 1))
        else:
            flat.setdefault(prefix, []).append(value)
    return flat


def _deeper_than_limit(value: Any, depth: int) -> bool:
    """Return True when ``value``, found at ``depth``, contains anything nested deeper than MAX_DEPTH."""
    stack = [(value, depth)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(value, dict):
            stack.extend((child, depth + 1) for child in value.values())
        elif isinstance(value, list):
            stack.extend((child, depth + 1) for child in value)
    return False


def _present(flat: dict[str, list[Any]], fields: dict[str, int]) -> list[str]:
    """Return the names in ``fields`` that ``flat`` has as values or as objects, ordered by their rank in ``fields``."""
    found = flat.keys() & fields.keys()
    objects = flat.get(OBJECT_PATHS)
    if objects:
        found.update(name for name in objects if name in fields)
    if len(found) > 1:
        return sorted(found, key=fields.__getitem__)
    return list(found)


def _ranks(fields: Iterable[str]) -> dict[str, int]:
    return {name: rank for rank, name in enumerate(fields)}


def is_ecs_document(record: dict[str, Any]) -> bool:
    """Return True for documents that use ECS field sets (``event``, ``host``, ``url`` ...)."""
    keys = {key.split(".", 1)[0] for key in record}
    return "@timestamp" in keys and bool(keys & {"event", "host", "url", "email", "process", "file", "source", "dns"})


def source_kind_of(flat: dict[str, list[Any]]) -> SourceKind | None:
    """Return the source kind named by ``event.category``, if any."""
    for category in _strings(flat, "event.category"):
        kind = _CATEGORY_SOURCE.get(category.lower())
        if kind is not None:
            return kind
    return None


def _strings(flat: dict[str, list[Any]], name: str) -> list[str]:
    """Return the non-placeholder text values of field ``name``; other JSON types reject the record."""
    if name in flat.get(OBJECT_PATHS, ()):
        raise MalformedRecordError(f"ECS field {name} is a JSON object, expected a string", reason="field_type")
    values = []
    for value in flat.get(name, []):
        if value is None:
            continue
        if not isinstance(value, str):
            raise MalformedRecordError(
                f"ECS field {name} is a JSON {type(value).__name__} ({str(value)[:60]!r}), expected a string",
                reason="field_type",
            )
        if not is_placeholder(value):
            values.append(value)
    return values


def _addresses(flat: dict[str, list[Any]], name: str) -> list[str]:
    """Return the addresses of an e-mail field, splitting values such as ``a@x.example;b@x.example``."""
    return [address for value in _strings(flat, name) for address in split_addresses(value)]


def _accounts(flat: dict[str, list[Any]], rules: IdentityRules) -> list[str]:
    """Return the person identities of ``user.name``, qualified by ``user.domain`` when it is given."""
    domains = _strings(flat, "user.domain")
    users = []
    for name in _strings(flat, "user.name"):
        account = f"{domains[0]}\\{name}" if domains and "\\" not in name and "@" not in name else name
        user = rules.user(account)
        if user is not None and user not in users:
            users.append(user)
    return users


def _url_from_parts(flat: dict[str, list[Any]]) -> str | None:
    """Assemble ``domain[:port]/path[?query]`` from ``url.domain`` and its sibling fields."""
    domains = _strings(flat, "url.domain")
    if not domains:
        return None
    ports = [value for value in flat.get("url.port", []) if isinstance(value, (int, str)) and str(value).isdigit()]
    paths = _strings(flat, "url.path")
    queries = _strings(flat, "url.query")
    bare = domains[0].strip("[]")
    host = f"[{bare}]" if ":" in bare else bare
    netloc = f"{host}:{ports[0]}" if ports else host
    path = "/" + paths[0].lstrip("/") if paths else "/"
    query = f"?{queries[0]}" if queries else ""
    return netloc + path + query


def _add_entities(
    flat: dict[str, list[Any]], source: SourceKind, rules: IdentityRules, observation: Observation
) -> list[str]:
    """Add the hosts and persons of the document; return the person identities of ``user.name``."""
    hosts = _strings(flat, "host.name") or _strings(flat, "host.hostname")
    if source is SourceKind.PROXY and not hosts:
        hosts = _strings(flat, "source.ip") or _strings(flat, "client.ip")
    for host in hosts:
        canonical = rules.host(host)
        if canonical is not None and canonical not in observation.hosts:
            observation.hosts.append(canonical)
    accounts = _accounts(flat, rules)
    for user in accounts:
        if user not in observation.users:
            observation.users.append(user)
    if source is SourceKind.MAIL:
        for field in _present(flat, _RECIPIENT_RANKS):
            for address in _addresses(flat, field):
                mailbox = rules.mailbox(address)
                if mailbox is not None and mailbox not in observation.users:
                    observation.users.append(mailbox)
    return accounts


# Each table below lists its fields in the order adapt() emits them. Only
# the fields a document has are visited (see _present).
_RECIPIENT_RANKS = _ranks(_RECIPIENT_FIELDS)
_HASH_RANKS = _ranks(_HASH_FIELDS)
_FILE_NAME_RANKS = _ranks(_FILE_NAME_FIELDS)
_IP_RANKS = _ranks(_IP_FIELDS)
_DOMAIN_RANKS = _ranks(_DOMAIN_FIELDS)
_URL_RANKS = _ranks(_URL_FIELDS)
_EMAIL_SENDER_RANKS = _ranks(_EMAIL_SENDER_FIELDS)
_TEXT_RANKS = _ranks(_TEXT_FIELDS)


def _source_of(flat: dict[str, list[Any]], default_source: SourceKind | None) -> SourceKind:
    source = source_kind_of(flat) or default_source
    if source is None:
        raise MalformedRecordError(
            "ECS document has no event.category and the input has no source kind; "
            "set event.category or bind the topic or file to a source kind",
            reason="missing_field",
        )
    return source


def check(document: dict[str, Any], default_source: SourceKind | None = None) -> None:
    """Raise for a document that ``adapt`` would reject as a whole: nested too deep, or no source kind.

    With a ``default_source`` the source kind is known, and the fields are
    not read, because that costs most of a parse.
    """
    # NOTE: so a document nested too deep is not rejected when its input has a source kind.
    if default_source is None:
        _source_of(_read_fields(document), default_source)


def adapt(document: dict[str, Any], rules: IdentityRules, default_source: SourceKind | None = None) -> Observation:
    """Turn one ECS document into an observation.

    The source kind comes from ``event.category`` and falls back to
    ``default_source`` (the topic binding). With neither, the record is
    rejected because its entities cannot be chosen.
    """
    flat = _read_fields(document)
    source = _source_of(flat, default_source)
    timestamps = flat.get("@timestamp") or flat.get("event.created") or [None]
    stage = {SourceKind.MAIL: Stage.DELIVERED, SourceKind.EDR: Stage.EXECUTED}.get(source, Stage.CONTACTED)
    observation = Observation(source=source, timestamp_ms=parse_timestamp(timestamps[0]), stage=stage, format=FORMAT)
    codes = _strings(flat, "event.code") or _strings(flat, "event.action")
    observation.event_code = codes[0] if codes else None
    accounts = _add_entities(flat, source, rules, observation)
    for field in _present(flat, _HASH_RANKS):
        kind = _HASH_FIELDS[field]
        for value in _strings(flat, field):
            emit(observation, kind, value, field)
    for field in _present(flat, _FILE_NAME_RANKS):
        for value in _strings(flat, field):
            emit(observation, ObservableType.FILE_NAME, value, field)
    for field in _present(flat, _IP_RANKS):
        for value in _strings(flat, field):
            emit(observation, None, value, field, ip_only=True)
    for field in _present(flat, _DOMAIN_RANKS):
        for value in _strings(flat, field):
            emit(observation, ObservableType.DOMAIN, value, field)
    has_url = False
    for field in _present(flat, _URL_RANKS):
        for value in _strings(flat, field):
            has_url = True
            emit(observation, ObservableType.URL, value, field)
    if not has_url:
        # Proxies that log the host and the path apart still match URL IOCs on the same key.
        emit(observation, ObservableType.URL, _url_from_parts(flat), "url.full")
    for field in _present(flat, _EMAIL_SENDER_RANKS):
        for value in _addresses(flat, field):
            emit(observation, ObservableType.EMAIL, value, field)
    if source is not SourceKind.MAIL:
        for user in accounts:
            emit(observation, ObservableType.USER, user, "user.name")
    for field in _present(flat, _TEXT_RANKS):
        for value in _strings(flat, field):
            observation.free_text.append((field, value))
    return observation
