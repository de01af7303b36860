"""Windows event log records as JSON: Sysmon, Security and System channels.

Two shapes are read:

- NXLog/Logstash: event fields at the top level, ``EventID`` a number,
  the machine in ``Hostname`` (``host`` is the collector, not the endpoint).
- EVTX converted to JSON: ``EventID`` as ``{"#text": "1"}``, the machine in
  ``Computer``, the fields inside ``EventData``, the time in
  ``TimeCreated.SystemTime``.
"""

from __future__ import annotations

from typing import Any

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, normalize_account, normalize_hash
from detectors.observation import Observable, Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "sysmon"

# Sysmon event ids whose network fields are the point of the event.
_NETWORK_EVENTS = frozenset({"3", "22", "5156", "4624", "4625", "4648", "5140", "5145"})
_TEXT_FIELDS = ("CommandLine", "ParentCommandLine", "ImagePath", "ScriptBlockText", "ServiceFileName")
_FILE_FIELDS = ("Image", "OriginalFileName", "TargetFilename", "ImageLoaded", "NewProcessName", "RelativeTargetName")
_ECS_FILE_FIELD = {
    "Image": "process.executable",
    "OriginalFileName": "process.pe.original_file_name",
    "TargetFilename": "file.path",
    "ImageLoaded": "dll.path",
    "NewProcessName": "process.executable",
    "RelativeTargetName": "file.path",
}
_ECS_TEXT_FIELD = {
    "CommandLine": "process.command_line",
    "ParentCommandLine": "process.parent.command_line",
    "ImagePath": "service.executable",
    "ScriptBlockText": "powershell.file.script_block_text",
    "ServiceFileName": "service.executable",
}
_HASH_NAMES = {
    "md5": ObservableType.MD5,
    "sha1": ObservableType.SHA1,
    "sha256": ObservableType.SHA256,
    "sha512": ObservableType.SHA512,
    "imphash": ObservableType.IMPHASH,
}
_ECS_HASH_FIELD = {kind: f"file.hash.{kind.value}" for kind in _HASH_NAMES.values()}
_FILE_FIELD_PAIRS = tuple((name, _ECS_FILE_FIELD[name]) for name in _FILE_FIELDS)
_TEXT_FIELD_PAIRS = tuple((name, _ECS_TEXT_FIELD[name]) for name in _TEXT_FIELDS)
# Security events whose IpAddress is the other end of a logon or share access.
_PEER_ADDRESS_EVENTS = frozenset({"4624", "4625", "4648", "5140", "5145"})


def is_windows_event(record: dict[str, Any]) -> bool:
    """Return True when ``record`` has the shape of a Windows event log record."""
    return "EventID" in record and any(name in record for name in ("Channel", "EventData", "Hostname", "Computer", "EventLog"))


def _event_id(record: dict[str, Any]) -> str:
    value = record.get("EventID")
    if isinstance(value, dict):
        value = value.get("#text")
    text = str(value).strip() if isinstance(value, (int, str)) and not isinstance(value, bool) else ""
    if not (text.isascii() and text.isdecimal() and len(text) <= 10):
        raise MalformedRecordError(
            f"EventID {value!r} is not a number; expected an integer or {{'#text': '<id>'}}",
            reason="field_type",
        )
    return str(int(text))


# Fields read as text; any other JSON type in them rejects the record.
_STRING_FIELDS = (
    "Hostname",
    "Computer",
    "User",
    "TargetUserName",
    "TargetDomainName",
    "SubjectUserName",
    "SubjectDomainName",
    "AccountName",
    "Domain",
    "Hashes",
    "Hash",
    "SourceIp",
    "DestinationIp",
    "SourceHostname",
    "DestinationHostname",
    "QueryName",
    "QueryResults",
    "IpAddress",
    "SourceAddress",
    "DestAddress",
)


_CHECKED_FIELDS = (*_STRING_FIELDS, *_FILE_FIELDS, *_TEXT_FIELDS)
_CHECKED_FIELD_SET = frozenset(_CHECKED_FIELDS)


def _check_types(fields: dict[str, Any]) -> None:
    # Only the fields the record has are checked. The first wrong one in
    # _CHECKED_FIELDS order is reported, whatever the record's key order.
    for name in fields.keys() & _CHECKED_FIELD_SET:
        value = fields[name]
        if value is not None and not isinstance(value, str):
            _raise_first_wrong_type(fields)


def _raise_first_wrong_type(fields: dict[str, Any]) -> None:
    for name in _CHECKED_FIELDS:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise MalformedRecordError(
                f"{name} is a JSON {type(value).__name__} ({str(value)[:60]!r}), expected a string", reason="field_type"
            )


def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    data = record.get("EventData")
    if data is None:
        return record
    if not isinstance(data, dict):
        raise MalformedRecordError(f"EventData is {type(data).__name__}, expected an object", reason="field_type")
    merged = {key: value for key, value in record.items() if key != "EventData"}
    merged.update(data)
    return merged


def _timestamp(fields: dict[str, Any]) -> int | None:
    created = fields.get("TimeCreated")
    if isinstance(created, dict):
        created = created.get("SystemTime")
    for candidate in (fields.get("UtcTime"), created, fields.get("@timestamp"), fields.get("TimeGenerated")):
        parsed = parse_timestamp(candidate)
        if parsed is not None:
            return parsed
    return None


def parse_hashes(value: object) -> list[tuple[ObservableType, str]]:
    """Split Sysmon's ``ALGO=hex,ALGO=hex`` field in any order, case or spacing.

    ``-`` or an empty value gives no hashes. Unknown algorithm names and
    digests that are not hex of the algorithm's length are skipped. A
    non-string value raises MalformedRecordError.
    """
    if value is None:
        return []
    if not isinstance(value, str):
        raise MalformedRecordError(f"Hashes is {type(value).__name__}, expected 'ALGO=hex,...' text", reason="field_type")
    found = []
    for part in value.split(","):
        name, sep, digest = part.partition("=")
        kind = _HASH_NAMES.get(name.strip().lower().replace("-", "")) if sep else None
        if kind is None:
            continue
        checked = normalize_hash(digest, kind)
        if checked is not None:
            found.append(checked)
    return found


def _remote_fields(event_id: str, fields: dict[str, Any]) -> tuple[tuple[str, str, ObservableType | None], ...]:
    """Return (event field, ECS field, kind) of each side of a network event that may be the remote end.

    An outbound Sysmon 3 has the remote end in Destination*. For an inbound
    one (``Initiated`` false) Sysmon versions disagree: some write the remote
    end in Source*, others keep the local end there, so both sides are read.
    """
    if event_id == "3":
        if str(fields.get("Initiated", "true")).lower() != "false":
            return _SYSMON_DESTINATION
        return _SYSMON_BOTH_SIDES
    if event_id == "5156":
        inbound = str(fields.get("Direction", "")) in ("%%14592", "Inbound")
        return _WFP_SOURCE if inbound else _WFP_DESTINATION
    return ()


_SYSMON_DESTINATION = (
    ("DestinationIp", "destination.ip", None),
    ("DestinationHostname", "destination.domain", ObservableType.DOMAIN),
)
_SYSMON_BOTH_SIDES = (
    ("SourceIp", "source.ip", None),
    ("SourceHostname", "source.domain", ObservableType.DOMAIN),
    *_SYSMON_DESTINATION,
)
_WFP_SOURCE = (("SourceAddress", "source.ip", None),)
_WFP_DESTINATION = (("DestAddress", "destination.ip", None),)
# (user field, domain field, ECS field) of the accounts that Security events name.
_ACCOUNT_FIELDS = (
    ("TargetUserName", "TargetDomainName", "user.target.name"),
    ("SubjectUserName", "SubjectDomainName", "user.name"),
)


def _add_users(fields: dict[str, Any], rules: IdentityRules, observation: Observation) -> None:
    accounts = []
    user = fields.get("User")
    if isinstance(user, str):
        accounts.append(("user.name", user))
    for name_field, domain_field, ecs_field in _ACCOUNT_FIELDS:
        name = fields.get(name_field)
        if isinstance(name, str) and not is_placeholder(name):
            domain = fields.get(domain_field)
            # Kerberos events (4768, 4769) write a UPN such as "alice@EXAMPLE.COM", already qualified.
            qualified = "@" in name or "\\" in name
            if isinstance(domain, str) and not is_placeholder(domain) and not qualified:
                name = f"{domain}\\{name}"
            accounts.append((ecs_field, name))
    if not accounts and fields.get("Channel") == "System" and isinstance(fields.get("AccountName"), str):
        domain = fields.get("Domain")
        account = fields["AccountName"]
        accounts.append(("user.name", f"{domain}\\{account}" if isinstance(domain, str) else account))
    for field_name, account in accounts:
        identity = rules.user(account)
        if identity is None:
            continue
        if identity not in observation.users:
            observation.users.append(identity)
        observation.observables.append(Observable(ObservableType.USER, identity, field_name))
        # A feed normalises DOMAIN\user without the NetBIOS-to-DNS map, so the
        # unmapped form is looked up too.
        unmapped = normalize_account(account)
        if unmapped is not None and unmapped != identity:
            observation.observables.append(Observable(ObservableType.USER, unmapped, field_name))


# Every field that adapt reads an observable, free text or account from;
# candidate_text must see all of them. Hostname and Computer name the
# entity, which is never matched.
_OBSERVABLE_FIELDS = (
    "Hashes",
    "Hash",
    *_FILE_FIELDS,
    *_TEXT_FIELDS,
    *(name for name, _ecs, _kind in (*_SYSMON_BOTH_SIDES, *_WFP_SOURCE, *_WFP_DESTINATION)),
    "QueryName",
    "QueryResults",
    "IpAddress",
    "User",
    *(name for user, domain, _ecs in _ACCOUNT_FIELDS for name in (user, domain)),
    "AccountName",
    "Domain",
)


def candidate_text(record: dict[str, Any]) -> str | None:
    """Return the values of the fields that observables come from, for the pre-filter to search.

    Returns None when ``EventData`` is not an object, so the caller searches the whole record.
    """
    data = record.get("EventData")
    if data is not None and not isinstance(data, dict):
        return None
    values = []
    for name in _OBSERVABLE_FIELDS:
        value = data.get(name) if data is not None and name in data else record.get(name)
        if isinstance(value, str):
            values.append(value)
    return "\x00".join(values)


def check(record: dict[str, Any], rules: IdentityRules) -> None:
    """Raise for a record that ``adapt`` would reject: a bad EventID or EventData, a wrong field type, no endpoint."""
    _validated(record, rules)


def _validated(record: dict[str, Any], rules: IdentityRules) -> tuple[str, dict[str, Any], str]:
    """Return the event id, the flattened fields and the endpoint host, or raise MalformedRecordError."""
    event_id = _event_id(record)
    fields = _flatten(record)
    _check_types(fields)
    host = rules.host(fields.get("Hostname") or fields.get("Computer"))
    if host is None:
        raise MalformedRecordError("Windows event has no Hostname or Computer field naming the endpoint", reason="missing_field")
    return event_id, fields, host


def adapt(record: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one Windows event record into an observation.

    The endpoint (``Hostname`` or ``Computer``) and its person accounts are
    the entities. Hashes, file names, remote addresses and queried names are
    observables; command lines and script blocks are free text.
    """
    event_id, fields, host = _validated(record, rules)
    network = event_id in _NETWORK_EVENTS
    observation = Observation(
        source=SourceKind.EDR,
        timestamp_ms=_timestamp(fields),
        hosts=[host],
        stage=Stage.CONTACTED if network else Stage.EXECUTED,
        event_code=event_id,
        format=FORMAT,
    )
    for hash_field in ("Hashes", "Hash"):
        hashes = fields.get(hash_field)
        if hashes is not None:
            for kind, digest in parse_hashes(hashes):
                observation.observables.append(Observable(kind, digest, _ECS_HASH_FIELD[kind]))
    for name, ecs_field in _FILE_FIELD_PAIRS:
        value = fields.get(name)
        if value is not None:
            emit(observation, ObservableType.FILE_NAME, value, ecs_field)
    for name, ecs_field in _TEXT_FIELD_PAIRS:
        text = fields.get(name)
        if isinstance(text, str) and not is_placeholder(text):
            observation.free_text.append((ecs_field, text))
    for name, ecs_field, kind in _remote_fields(event_id, fields):
        emit(observation, kind, fields.get(name), ecs_field, ip_only=kind is None)
    if event_id == "22":
        emit(observation, ObservableType.DOMAIN, fields.get("QueryName"), "dns.question.name")
        results = fields.get("QueryResults")
        if isinstance(results, str):
            for answer in results.split(";"):
                emit(observation, None, answer.rsplit(" ", 1)[-1].removeprefix("::ffff:"), "dns.resolved_ip", ip_only=True)
    if event_id in _PEER_ADDRESS_EVENTS:
        peer = fields.get("IpAddress")
        peer_host = rules.host(peer)
        if peer_host is not None and peer_host not in ("127.0.0.1", "::1"):
            observation.hosts.append(peer_host)
            emit(observation, None, peer, "source.ip", ip_only=True)
    _add_users(fields, rules, observation)
    return observation
