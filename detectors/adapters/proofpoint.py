"""Proofpoint TAP SIEM API events: one message or one click per record.

The SIEM API returns four arrays (``messagesDelivered``, ``messagesBlocked``,
``clicksPermitted``, ``clicksBlocked``); each record here is one element.
The element does not say which array it came from, so:

- A message is blocked when ``quarantineFolder`` or ``quarantineRule`` is
  set; TAP fills them only for ``messagesBlocked``. Its recipients are then
  not entities, because nothing reached them.
- A click is always stage ``contacted``, because a blocked click has the
  same fields as a permitted one.

Message entities are the envelope ``recipient`` list. The header
``toAddresses`` and ``ccAddresses`` are used only when the envelope list is
absent or empty. A header may name external people or a list address that
this gateway never delivered to, and counting them would make one delivery
look like two entities. Observables: senders (``sender`` is the envelope
sender, ``fromAddress`` and ``headerFrom`` the header From), ``senderIP``,
part hashes and file names, and the URL or hash of each ``threatsInfoMap``
entry. ``threatUrl`` links to Proofpoint's own portal and is not an
observable. ``event_code`` is the TAP ``GUID`` of the message.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from detectors.adapters.fields import emit_unique
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder, normalize_hash, split_addresses
from detectors.observation import Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "proofpoint"

API_ARRAYS = ("messagesDelivered", "messagesBlocked", "clicksPermitted", "clicksBlocked")
_MESSAGE_KEYS = frozenset({"messageParts", "threatsInfoMap", "messageTime", "quarantineFolder"})
_CLICK_KEYS = frozenset({"clickTime", "clickIP"})


def is_api_response(record: dict[str, Any]) -> bool:
    """Return True for a whole SIEM API response, which contains many events and must be split first."""
    return any(isinstance(record.get(name), list) for name in API_ARRAYS)


def is_click(record: dict[str, Any]) -> bool:
    return bool(record.keys() & _CLICK_KEYS)


def is_proofpoint_event(record: dict[str, Any]) -> bool:
    """Return True for a TAP message or click event (or an unsplit API response, which is then rejected)."""
    if is_api_response(record):
        return True
    return "GUID" in record and bool(record.keys() & (_MESSAGE_KEYS | _CLICK_KEYS))


def _strings(value: object) -> Iterator[str]:
    """Yield the strings of a field that TAP writes as a string or as a list of strings."""
    items = value if isinstance(value, list) else [value]
    for item in items:
        if isinstance(item, str) and not is_placeholder(item):
            yield item


def _addresses(value: object) -> Iterator[str]:
    """Yield each address of a string or list field, splitting ``a@x;"Smith, Bob" <b@x>`` lists."""
    for text in _strings(value):
        yield from split_addresses(text)


def _objects(record: dict[str, Any], key: str) -> Iterator[dict[str, Any]]:
    value = record.get(key)
    if value is None:
        return
    if not isinstance(value, list):
        raise MalformedRecordError(
            f"Proofpoint field {key} is {type(value).__name__}, expected a list", reason="field_type"
        )
    for item in value:
        if isinstance(item, dict):
            yield item


def _add_mailboxes(observation: Observation, addresses: Iterator[str], rules: IdentityRules) -> None:
    for address in addresses:
        mailbox = rules.mailbox(address)
        if mailbox is not None and mailbox not in observation.users:
            observation.users.append(mailbox)




def _add_hash(observation: Observation, value: object) -> None:
    """Add a hex digest of any supported length, typed by its length."""
    digest = normalize_hash(value) if isinstance(value, str) else None
    if digest is not None:
        kind, text = digest
        emit_unique(observation, kind, text, f"email.attachments.file.hash.{kind.value}")


def _add_senders(observation: Observation, record: dict[str, Any]) -> None:
    for address in _addresses(record.get("sender")):
        emit_unique(observation, ObservableType.EMAIL, address, "email.sender.address")
    for key in ("fromAddress", "headerFrom"):
        for address in _addresses(record.get(key)):
            emit_unique(observation, ObservableType.EMAIL, address, "email.from.address")
    for key in ("replyToAddress", "headerReplyTo"):
        for address in _addresses(record.get(key)):
            emit_unique(observation, ObservableType.EMAIL, address, "email.reply_to.address")
    emit_unique(observation, None, record.get("senderIP"), "source.ip", ip_only=True)


def _add_parts(observation: Observation, record: dict[str, Any]) -> None:
    for part in _objects(record, "messageParts"):
        _add_hash(observation, part.get("sha256"))
        _add_hash(observation, part.get("md5"))
        emit_unique(observation, ObservableType.FILE_NAME, part.get("filename"), "email.attachments.file.name")


def _add_threats(observation: Observation, record: dict[str, Any]) -> None:
    """Add each threat TAP found in the message: a URL, or the hash of an attachment."""
    for threat in _objects(record, "threatsInfoMap"):
        kind = threat.get("threatType")
        value = threat.get("threat")
        if not isinstance(kind, str):
            continue
        if kind.lower() == "url":
            emit_unique(observation, ObservableType.URL, value, "url.full")
        elif kind.lower() == "attachment":
            _add_hash(observation, value)


def was_blocked(record: dict[str, Any]) -> bool:
    """Return True for a message TAP quarantined (an element of ``messagesBlocked``)."""
    return any(next(_strings(record.get(key)), None) is not None for key in ("quarantineFolder", "quarantineRule"))


def _message(record: dict[str, Any], rules: IdentityRules) -> Observation:
    observation = Observation(
        source=SourceKind.MAIL,
        timestamp_ms=parse_timestamp(record.get("messageTime")),
        stage=Stage.DELIVERED,
        event_code=next(_strings(record.get("GUID")), None),
        format=FORMAT,
    )
    if not was_blocked(record):
        _add_mailboxes(observation, _addresses(record.get("recipient")), rules)
        if not observation.users:
            _add_mailboxes(observation, _addresses(record.get("toAddresses")), rules)
            _add_mailboxes(observation, _addresses(record.get("ccAddresses")), rules)
    _add_senders(observation, record)
    _add_parts(observation, record)
    _add_threats(observation, record)
    return observation


def _click(record: dict[str, Any], rules: IdentityRules) -> Observation:
    observation = Observation(
        source=SourceKind.MAIL,
        timestamp_ms=parse_timestamp(record.get("clickTime")),
        stage=Stage.CONTACTED,
        event_code=next(_strings(record.get("GUID")), None),
        format=FORMAT,
    )
    _add_mailboxes(observation, _addresses(record.get("recipient")), rules)
    emit_unique(observation, ObservableType.URL, record.get("url"), "url.full")
    # The clicking device's address: an observable, not a host entity, because it is often a shared NAT address.
    emit_unique(observation, None, record.get("clickIP"), "client.ip", ip_only=True)
    _add_senders(observation, record)
    return observation


def check(record: dict[str, Any]) -> None:
    """Raise for a whole SIEM API response, which ``adapt`` rejects: one event per record is read."""
    if is_api_response(record):
        arrays = ", ".join(name for name in API_ARRAYS if isinstance(record.get(name), list))
        raise MalformedRecordError(
            f"record is a whole Proofpoint SIEM API response ({arrays}); send one element of those arrays per record",
            reason="syntax",
        )


def adapt(record: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one TAP message or click event into an observation."""
    check(record)
    if is_click(record):
        return _click(record, rules)
    return _message(record, rules)
