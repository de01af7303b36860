"""Microsoft Defender XDR advanced-hunting rows as JSON.

The Defender for Endpoint device tables are read, together with the Defender
for Identity (``Identity*Events``) and Defender for Cloud Apps
(``CloudAppEvents``) tables that the same hunting queries and exports return.
Three shapes name the table:

- ``Table``, ``$table`` or ``Type`` contains the table name (Microsoft
  Sentinel writes ``Type``);
- the streaming API envelope (Event Hubs or a storage account) has
  ``category`` ``AdvancedHunting-<table>`` and the row in ``properties``;
- a bare row, as the advanced-hunting API and portal exports return it: the
  table is recognised from its non-empty columns and its ``ActionType``. A
  ``union`` over several tables exports every column of every table, mostly
  empty, so empty values never count.

E-mail tables (rows with a ``NetworkMessageId``) are left to the mail adapter.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

import orjson

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, normalize_account, normalize_ip
from detectors.observation import Observable, Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "mde"

PROCESS_EVENTS = "DeviceProcessEvents"
NETWORK_EVENTS = "DeviceNetworkEvents"
FILE_EVENTS = "DeviceFileEvents"
LOGON_EVENTS = "DeviceLogonEvents"
IMAGE_LOAD_EVENTS = "DeviceImageLoadEvents"
REGISTRY_EVENTS = "DeviceRegistryEvents"
DEVICE_EVENTS = "DeviceEvents"
CLOUD_APP_EVENTS = "CloudAppEvents"

DEVICE_TABLES = frozenset(
    {PROCESS_EVENTS, NETWORK_EVENTS, FILE_EVENTS, LOGON_EVENTS, IMAGE_LOAD_EVENTS, REGISTRY_EVENTS, DEVICE_EVENTS}
)
IDENTITY_TABLES = frozenset({"IdentityDirectoryEvents", "IdentityLogonEvents", "IdentityQueryEvents"})
TABLES = DEVICE_TABLES | IDENTITY_TABLES | {CLOUD_APP_EVENTS}

_TABLE_KEYS = ("Table", "$table", "Type")
_STREAM_PREFIX = "AdvancedHunting-"
# Tables whose rows mean that a file was run, loaded or written on the device.
_EXECUTED_TABLES = frozenset({PROCESS_EVENTS, FILE_EVENTS, IMAGE_LOAD_EVENTS, REGISTRY_EVENTS})
_TABLE_BY_ACTION = {
    "ProcessCreated": PROCESS_EVENTS,
    "FileCreated": FILE_EVENTS,
    "FileModified": FILE_EVENTS,
    "FileRenamed": FILE_EVENTS,
    "FileDeleted": FILE_EVENTS,
    "LogonSuccess": LOGON_EVENTS,
    "LogonFailed": LOGON_EVENTS,
    "LogonAttempted": LOGON_EVENTS,
    "ImageLoaded": IMAGE_LOAD_EVENTS,
    "RegistryKeyCreated": REGISTRY_EVENTS,
    "RegistryKeyDeleted": REGISTRY_EVENTS,
    "RegistryKeyRenamed": REGISTRY_EVENTS,
    "RegistryValueDeleted": REGISTRY_EVENTS,
    "RegistryValueSet": REGISTRY_EVENTS,
}
# ConnectionSuccess, InboundConnectionAccepted, HttpConnectionInspected and the other DeviceNetworkEvents actions.
_NETWORK_ACTION = re.compile(
    r"(?:Inbound|Listening)?Connection[A-Za-z]+|[A-Za-z]+ConnectionInspected|NetworkSignatureInspected"
)
# Columns of CloudAppEvents that the Defender for Identity tables lack.
_CLOUD_APP_COLUMNS = ("ActivityType", "ActivityObjects", "ApplicationId", "RawEventData")
_HASH_COLUMNS = (("SHA1", ObservableType.SHA1), ("SHA256", ObservableType.SHA256), ("MD5", ObservableType.MD5))
# CloudAppEvents name the actor by object id, so the user is read from these columns, which contain a UPN.
_CLOUD_USER_COLUMNS = ("AccountUpn", "AccountId", "UserId")
_RAW_EVENT_USER_KEYS = ("UserId", "MailboxOwnerUPN")


@dataclass(frozen=True)
class _Roles:
    """ECS field sets of a device row's columns.

    In DeviceProcessEvents the ``File*``, ``SHA*`` and ``Process*`` columns
    describe the new process and ``InitiatingProcess*`` its parent. In the
    other device tables ``File*`` is the file acted on and
    ``InitiatingProcess*`` the process that acted.
    """

    primary: str
    initiating: str


_PROCESS_ROLES = _Roles(primary="process", initiating="process.parent")
_OTHER_ROLES = _Roles(primary="file", initiating="process")


def _present(value: object) -> bool:
    return value is not None and value != "" and value != [] and value != {}


def _text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return value if isinstance(value, str) and not is_placeholder(value) else None


def _unwrap(record: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """Return the table named by the record, if any, and the row itself."""
    category = record.get("category")
    properties = record.get("properties")
    if isinstance(category, str) and category.startswith(_STREAM_PREFIX) and isinstance(properties, dict):
        return category.removeprefix(_STREAM_PREFIX), properties
    for key in _TABLE_KEYS:
        name = record.get(key)
        if isinstance(name, str) and name:
            return name, record
    return None, record


def _device_table(action: str) -> str:
    table = _TABLE_BY_ACTION.get(action)
    if table is not None:
        return table
    return NETWORK_EVENTS if _NETWORK_ACTION.fullmatch(action) else DEVICE_EVENTS


def _table_from_columns(row: dict[str, Any]) -> str | None:
    """Recognise the table of a row that does not name it, or return None."""
    action = row.get("ActionType")
    if not _present(row.get("Timestamp")) or not isinstance(action, str) or not action:
        return None
    if _present(row.get("NetworkMessageId")):
        return None
    device = _present(row.get("DeviceName")) and _present(row.get("InitiatingProcessFileName"))
    if _present(row.get("DeviceId")) or device:
        return _device_table(action)
    if not _present(row.get("Application")):
        return None
    if any(_present(row.get(column)) for column in _CLOUD_APP_COLUMNS):
        return CLOUD_APP_EVENTS
    if _present(row.get("QueryType")) or _present(row.get("QueryTarget")):
        return "IdentityQueryEvents"
    if action.startswith("Logon") or _present(row.get("LogonType")):
        return "IdentityLogonEvents"
    return "IdentityDirectoryEvents"


def table_of(record: dict[str, Any]) -> str | None:
    """Return the advanced-hunting table of ``record``, or None when it is not a row of a table read here."""
    named, row = _unwrap(record)
    if named is not None:
        return named if named in TABLES else None
    return _table_from_columns(row)


def is_mde_record(record: dict[str, Any]) -> bool:
    """Return True when ``record`` is a row of a Defender table that this adapter reads."""
    return table_of(record) is not None


def _timestamp(*values: object) -> int | None:
    for value in values:
        parsed = parse_timestamp(value)
        if parsed is not None:
            return parsed
    return None


def _add_user_observable(observation: Observation, account: str, field: str) -> None:
    observable = Observable(ObservableType.USER, account, field)
    if observable not in observation.observables:
        observation.observables.append(observable)


def _add_account(
    observation: Observation,
    rules: IdentityRules,
    field: str,
    *,
    upn: str | None = None,
    domain: str | None = None,
    name: str | None = None,
) -> None:
    """Add one account as a user entity and as user observables.

    The UPN is preferred as the identity because it is the form that mail and
    cloud logs use for the same person. ``DOMAIN\\name`` is also added as an
    observable, mapped and unmapped, so an IOC written in either form matches.
    Built-in principals and machine accounts are dropped by ``rules.user``.
    """
    qualified = None
    if name is not None:
        bare = "\\" not in name and "@" not in name
        qualified = f"{domain}\\{name}" if domain is not None and bare else name
    if upn is not None and "@" in upn:
        identity = rules.user(upn)
    elif qualified is not None:
        identity = rules.user(qualified)
    else:
        return
    if identity is None:
        return
    if identity not in observation.users:
        observation.users.append(identity)
    _add_user_observable(observation, identity, field)
    if qualified is None or rules.user(qualified) is None:
        return
    for form in (rules.user(qualified), normalize_account(qualified)):
        if form is not None:
            _add_user_observable(observation, form, field)


def _add_hashes(observation: Observation, row: dict[str, Any], prefix: str, field_set: str) -> None:
    for column, kind in _HASH_COLUMNS:
        emit(observation, kind, row.get(f"{prefix}{column}"), f"{field_set}.hash.{kind.value}")


def _add_file_names(observation: Observation, row: dict[str, Any], roles: _Roles) -> None:
    if _text(row, "FileName") is not None:
        emit(observation, ObservableType.FILE_NAME, row.get("FileName"), f"{roles.primary}.name")
    else:
        path_field = "executable" if roles.primary == "process" else "path"
        emit(observation, ObservableType.FILE_NAME, row.get("FolderPath"), f"{roles.primary}.{path_field}")
    emit(
        observation,
        ObservableType.FILE_NAME,
        row.get("ProcessVersionInfoOriginalFileName"),
        f"{roles.primary}.pe.original_file_name",
    )
    if _text(row, "InitiatingProcessFileName") is not None:
        emit(observation, ObservableType.FILE_NAME, row.get("InitiatingProcessFileName"), f"{roles.initiating}.name")
    else:
        emit(
            observation,
            ObservableType.FILE_NAME,
            row.get("InitiatingProcessFolderPath"),
            f"{roles.initiating}.executable",
        )
    emit(
        observation,
        ObservableType.FILE_NAME,
        row.get("InitiatingProcessVersionInfoOriginalFileName"),
        f"{roles.initiating}.pe.original_file_name",
    )


def _is_local_address(value: str) -> bool:
    """Return True for loopback and unspecified addresses, which name no other machine."""
    address = ipaddress.ip_address(value)
    return address.is_loopback or address.is_unspecified


def _remote_end(row: dict[str, Any], rules: IdentityRules) -> str | None:
    """Return the machine a logon came from: ``RemoteIP``, else ``RemoteDeviceName``.

    Only one of the two is used, so that one machine is not counted as two
    hosts of the same event.
    """
    address = normalize_ip(row.get("RemoteIP"))
    if address is not None:
        return None if _is_local_address(address[1]) else address[1]
    return rules.host(row.get("RemoteDeviceName"))


def _device_stage(table: str, row: dict[str, Any]) -> Stage:
    if table in _EXECUTED_TABLES:
        return Stage.EXECUTED
    if table == DEVICE_EVENTS:
        # DeviceEvents mixes many actions: a remote address or URL makes the row a contact, not an execution.
        remote = _text(row, "RemoteIP") or _text(row, "RemoteUrl")
        return Stage.CONTACTED if remote is not None else Stage.EXECUTED
    return Stage.CONTACTED


def _add_device_network(observation: Observation, table: str, row: dict[str, Any]) -> None:
    inbound = table == LOGON_EVENTS or row.get("ActionType") == "InboundConnectionAccepted"
    emit(observation, None, row.get("RemoteIP"), "source.ip" if inbound else "destination.ip", ip_only=True)
    emit(observation, ObservableType.URL, row.get("RemoteUrl"), "url.original")
    emit(observation, ObservableType.URL, row.get("FileOriginUrl"), "file.origin_url")
    emit(observation, ObservableType.URL, row.get("FileOriginReferrerUrl"), "file.origin_referrer_url")
    emit(observation, None, row.get("FileOriginIP"), "source.ip", ip_only=True)
    emit(observation, None, row.get("RequestSourceIP"), "source.ip", ip_only=True)


def _add_device_users(observation: Observation, table: str, row: dict[str, Any], rules: IdentityRules) -> None:
    roles = _PROCESS_ROLES if table == PROCESS_EVENTS else _OTHER_ROLES
    _add_account(
        observation,
        rules,
        "user.name",
        upn=_text(row, "AccountUpn"),
        domain=_text(row, "AccountDomain"),
        name=_text(row, "AccountName"),
    )
    _add_account(
        observation,
        rules,
        f"{roles.initiating}.user.name",
        upn=_text(row, "InitiatingProcessAccountUpn"),
        domain=_text(row, "InitiatingProcessAccountDomain"),
        name=_text(row, "InitiatingProcessAccountName"),
    )
    # DeviceFileEvents: the account of a remote SMB client that wrote the file.
    _add_account(
        observation,
        rules,
        "user.name",
        domain=_text(row, "RequestAccountDomain"),
        name=_text(row, "RequestAccountName"),
    )


def _device_attributes(table: str, row: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {"table": table}
    port = row.get("RemotePort")
    if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
        attributes["remote_port"] = port
    logon_type = _text(row, "LogonType")
    if logon_type is not None:
        attributes["logon_type"] = logon_type
    return attributes


def _device_host(table: str, row: dict[str, Any], rules: IdentityRules) -> str:
    """Return the host entity of a device row, or raise missing_field when it names no device."""
    host = rules.host(row.get("DeviceName"))
    if host is None:
        raise MalformedRecordError(
            f"{table} row has no DeviceName naming the device (got {row.get('DeviceName')!r})",
            reason="missing_field",
        )
    return host


def _adapt_device(table: str, row: dict[str, Any], timestamp_ms: int | None, rules: IdentityRules) -> Observation:
    """Read a Defender for Endpoint row: the device is the host entity, its accounts the users."""
    host = _device_host(table, row, rules)
    observation = Observation(
        source=SourceKind.EDR,
        timestamp_ms=timestamp_ms,
        hosts=[host],
        stage=_device_stage(table, row),
        event_code=_text(row, "ActionType"),
        format=FORMAT,
        attributes=_device_attributes(table, row),
    )

    if table == LOGON_EVENTS:
        remote = _remote_end(row, rules)
        if remote is not None and remote not in observation.hosts:
            observation.hosts.append(remote)

    roles = _PROCESS_ROLES if table == PROCESS_EVENTS else _OTHER_ROLES
    _add_hashes(observation, row, "", roles.primary)
    _add_hashes(observation, row, "InitiatingProcess", roles.initiating)
    _add_file_names(observation, row, roles)
    _add_device_network(observation, table, row)
    _add_device_users(observation, table, row, rules)

    for column, field in (
        ("ProcessCommandLine", "process.command_line"),
        ("InitiatingProcessCommandLine", f"{roles.initiating}.command_line"),
    ):
        text = _text(row, column)
        if text is not None:
            observation.free_text.append((field, text))
    return observation


def _adapt_identity(table: str, row: dict[str, Any], timestamp_ms: int | None, rules: IdentityRules) -> Observation:
    """Read a Defender for Identity row: the source device is the host, the actor and target accounts the users.

    ``DeviceName`` is the device the activity came from. Without it,
    ``IPAddress`` names that device. The destination (often a domain
    controller) is an observable, not an entity.
    """
    host = rules.host(row.get("DeviceName")) or rules.host(row.get("IPAddress"))
    observation = Observation(
        source=SourceKind.EDR,
        timestamp_ms=timestamp_ms,
        hosts=[host] if host is not None else [],
        stage=Stage.CONTACTED,
        event_code=_text(row, "ActionType"),
        format=FORMAT,
        attributes={"table": table},
    )
    emit(observation, None, row.get("IPAddress"), "source.ip", ip_only=True)
    emit(observation, None, row.get("DestinationIPAddress"), "destination.ip", ip_only=True)
    emit(observation, ObservableType.DOMAIN, row.get("DestinationDeviceName"), "destination.domain")
    _add_account(
        observation,
        rules,
        "user.name",
        upn=_text(row, "AccountUpn"),
        domain=_text(row, "AccountDomain"),
        name=_text(row, "AccountName"),
    )
    _add_account(observation, rules, "user.target.name", upn=_text(row, "TargetAccountUpn"))
    return observation


def _raw_event(row: dict[str, Any]) -> dict[str, Any]:
    """Return ``RawEventData`` as a dict, because some exports write it as a JSON string."""
    raw = row.get("RawEventData")
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
    return raw if isinstance(raw, dict) else {}


def _adapt_cloud_app(row: dict[str, Any], timestamp_ms: int | None, rules: IdentityRules) -> Observation:
    """Read a CloudAppEvents row: the users are the UPNs of the actor and the mailbox owner.

    ``IPAddress`` is the client of the cloud service, often outside the
    organisation, so it is an observable and never a host entity.
    """
    host = rules.host(row.get("DeviceName"))
    observation = Observation(
        source=SourceKind.EDR,
        timestamp_ms=timestamp_ms,
        hosts=[host] if host is not None else [],
        stage=Stage.CONTACTED,
        event_code=_text(row, "ActionType"),
        format=FORMAT,
        attributes={"table": CLOUD_APP_EVENTS},
    )
    emit(observation, None, row.get("IPAddress"), "source.ip", ip_only=True)
    raw_event = _raw_event(row)
    candidates = [_text(row, column) for column in _CLOUD_USER_COLUMNS]
    candidates += [_text(raw_event, key) for key in _RAW_EVENT_USER_KEYS]
    for upn in candidates:
        _add_account(observation, rules, "user.name", upn=upn)
    return observation


def _row_and_table(record: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return the row and its table, or raise unknown_format for a table not read here."""
    named, row = _unwrap(record)
    table = table_of(record)
    if table is None:
        found = f"table {named!r}" if named is not None else "no table name and no known column signature"
        raise MalformedRecordError(
            f"record is not a Defender advanced-hunting row of a table read here ({found}); "
            f"expected one of {', '.join(sorted(TABLES))}",
            reason="unknown_format",
        )
    return row, table


def check(record: dict[str, Any], rules: IdentityRules) -> None:
    """Raise for a record that ``adapt`` would reject as a whole: a table not read, a device row without a device."""
    row, table = _row_and_table(record)
    if table in DEVICE_TABLES:
        _device_host(table, row, rules)


def has_encoded_event(record: dict[str, Any]) -> bool:
    """Return True when the row carries ``RawEventData`` as a JSON string, which ``adapt`` decodes again."""
    return isinstance(_unwrap(record)[1].get("RawEventData"), str)


def adapt(record: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one advanced-hunting row into an observation of source kind ``edr``.

    Stage: ``executed`` for process, file, image-load and registry rows,
    ``contacted`` for network, logon, identity and cloud-app rows. A
    DeviceEvents row is ``contacted`` when it has a remote address or URL and
    ``executed`` otherwise.
    """
    row, table = _row_and_table(record)
    timestamp_ms = _timestamp(row.get("Timestamp"), row.get("TimeGenerated"), record.get("time"))
    if table in DEVICE_TABLES:
        return _adapt_device(table, row, timestamp_ms, rules)
    if table in IDENTITY_TABLES:
        return _adapt_identity(table, row, timestamp_ms, rules)
    return _adapt_cloud_app(row, timestamp_ms, rules)
