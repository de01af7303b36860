"""Microsoft Defender for Office 365 advanced-hunting e-mail rows, joined per message and recipient.

Two record shapes are read:

- The streaming API (Event Hub) envelope: ``category`` is
  ``AdvancedHunting-<Table>`` and the row sits in ``properties``.
- A plain advanced-hunting row, with the table named by ``Table``,
  ``$table`` or ``Type`` (Sentinel), or recognised by its columns.

Tables:

- ``EmailEvents``: one row per message and recipient, with the sender,
  sending IP, delivery action and the announced ``AttachmentCount`` and
  ``UrlCount``.
- ``EmailAttachmentInfo``: one row per attachment and recipient (``SHA256``, ``FileName``).
- ``EmailUrlInfo``: one row per URL of a message; it names no recipient.
- ``UrlClickEvents``: a Safe Links click, emitted at once for ``AccountUpn``
  with stage ``contacted``. A blocked click that was not clicked through is
  stage ``delivered``, because the user never reached the URL.
- ``EmailPostDeliveryEvents`` rows are recognised and yield nothing: they
  move a message that already reached its recipient and name no new IOC.

``M365Joiner`` emits a recipient's observation once its ``EmailEvents`` row,
its announced attachments and the message's announced URLs have arrived,
or partial on expiry or eviction. The recipient is a user entity unless the
message was blocked (``DeliveryAction`` ``Blocked`` or ``DeliveryLocation``
``Quarantine``, ``Dropped`` or ``Failed``). ``event_code`` is the
``NetworkMessageId``, the id Defender searches messages by.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from detectors.adapters.fields import emit_unique
from detectors.adapters.stream import RecordRef
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder
from detectors.observation import Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "m365"

EMAIL_EVENTS = "EmailEvents"
ATTACHMENT_INFO = "EmailAttachmentInfo"
URL_INFO = "EmailUrlInfo"
URL_CLICKS = "UrlClickEvents"
POST_DELIVERY = "EmailPostDeliveryEvents"
TABLES = frozenset({EMAIL_EVENTS, ATTACHMENT_INFO, URL_INFO, URL_CLICKS, POST_DELIVERY})
_CATEGORY_PREFIX = "AdvancedHunting-"
_TABLE_KEYS = ("Table", "$table", "Type")
_BLOCKED_LOCATIONS = frozenset({"quarantine", "dropped", "failed"})
_BLOCKED_CLICKS = ("ClickBlocked", "UrlErrorPage", "UrlScanInProgress")


def _explicit_table(record: dict[str, Any]) -> str | None:
    """Return the table named by the record itself, with any ``AdvancedHunting-`` prefix removed."""
    category = record.get("category")
    if isinstance(category, str) and category.startswith(_CATEGORY_PREFIX):
        return category[len(_CATEGORY_PREFIX) :]
    for key in _TABLE_KEYS:
        value = record.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _present(row: dict[str, Any], column: str) -> bool:
    value = row.get(column)
    return value is not None and value != "" and value != [] and value != {}


def _table_from_columns(row: dict[str, Any]) -> str | None:
    """Recognise an e-mail table from its non-empty columns when no table is named.

    Empty columns never count, because a ``union`` query exports every
    column of every table it covers, mostly empty.
    """
    if _present(row, "Url") and _present(row, "ActionType") and "AccountUpn" in row:
        return URL_CLICKS
    if not _present(row, "NetworkMessageId"):
        return None
    if _present(row, "SHA256"):
        return ATTACHMENT_INFO
    if _present(row, "Url"):
        return URL_INFO
    if _present(row, "ActionTrigger") or _present(row, "ActionResult"):
        return POST_DELIVERY
    if _present(row, "RecipientEmailAddress") and any(
        _present(row, column) for column in ("DeliveryAction", "AttachmentCount", "UrlCount", "EmailDirection")
    ):
        return EMAIL_EVENTS
    return None


def table_of(record: dict[str, Any]) -> str | None:
    """Return the e-mail table of a record, or None when it is another table or no advanced-hunting row."""
    table = _explicit_table(record)
    if table is None:
        table = _table_from_columns(record)
    return table if table in TABLES else None


def is_event_hub_batch(record: dict[str, Any]) -> bool:
    """Return True for an Event Hub message that still wraps its rows in ``records``."""
    rows = record.get("records")
    return isinstance(rows, list) and any(isinstance(row, dict) and table_of(row) is not None for row in rows)


def is_m365_record(record: dict[str, Any]) -> bool:
    """Return True for a Defender for Office 365 e-mail row (or a batch of them, which is then rejected)."""
    return table_of(record) is not None or is_event_hub_batch(record)


def row_of(record: dict[str, Any]) -> dict[str, Any]:
    """Return the row's columns: ``properties`` of a streaming envelope, else the record itself."""
    category = record.get("category")
    if not (isinstance(category, str) and category.startswith(_CATEGORY_PREFIX)):
        return record
    properties = record.get("properties")
    if not isinstance(properties, dict):
        raise MalformedRecordError(
            f"Defender streaming record has properties of type {type(properties).__name__}, expected an object",
            reason="field_type",
        )
    return properties


def _text(row: dict[str, Any], column: str) -> str | None:
    value = row.get(column)
    return value.strip() if isinstance(value, str) and not is_placeholder(value) else None


def _required(row: dict[str, Any], column: str, table: str) -> str:
    value = _text(row, column)
    if value is None:
        raise MalformedRecordError(
            f"{table} row has no {column} (got {row.get(column)!r}); the rows of a message are joined on it",
            reason="missing_field",
        )
    return value


def _count(row: dict[str, Any], column: str) -> int:
    """Return an announced count; a missing or invalid count is 0, so the join never waits for it."""
    value = row.get(column)
    if isinstance(value, bool):
        return 0
    if isinstance(value, str):
        text = value.strip()
        # isdigit() alone accepts "²", which int() rejects, and int() rejects more than 4300 digits.
        return int(text) if text.isascii() and text.isdigit() and len(text) <= 18 else 0
    return value if isinstance(value, int) and value > 0 else 0




def _add_sender(observation: Observation, row: dict[str, Any]) -> None:
    emit_unique(observation, ObservableType.EMAIL, row.get("SenderFromAddress"), "email.from.address")
    emit_unique(observation, ObservableType.EMAIL, row.get("SenderMailFromAddress"), "email.sender.address")
    for column in ("SenderIPv4", "SenderIPv6"):
        emit_unique(observation, None, row.get(column), "source.ip", ip_only=True)


def _add_attachment(observation: Observation, row: dict[str, Any]) -> None:
    emit_unique(observation, ObservableType.SHA256, row.get("SHA256"), "email.attachments.file.hash.sha256")
    emit_unique(observation, ObservableType.FILE_NAME, row.get("FileName"), "email.attachments.file.name")


def _add_url(observation: Observation, row: dict[str, Any]) -> None:
    emit_unique(observation, ObservableType.URL, row.get("Url"), "url.full")
    emit_unique(observation, ObservableType.DOMAIN, row.get("UrlDomain"), "url.domain")


def was_blocked(event: dict[str, Any]) -> bool:
    """Return True when an ``EmailEvents`` row reports that the message never reached the mailbox."""
    action = _text(event, "DeliveryAction")
    location = _text(event, "DeliveryLocation")
    return (action or "").lower() == "blocked" or (location or "").lower() in _BLOCKED_LOCATIONS


def click_observation(row: dict[str, Any], rules: IdentityRules) -> Observation:
    """Turn one ``UrlClickEvents`` row into an observation of the clicking account."""
    action = _text(row, "ActionType") or ""
    blocked = action.startswith(_BLOCKED_CLICKS) and row.get("IsClickedThrough") is not True
    observation = Observation(
        source=SourceKind.MAIL,
        timestamp_ms=parse_timestamp(row.get("Timestamp")),
        stage=Stage.DELIVERED if blocked else Stage.CONTACTED,
        event_code=_text(row, "NetworkMessageId"),
        format=FORMAT,
    )
    user = rules.user(row.get("AccountUpn"))
    if user is not None:
        observation.users.append(user)
    emit_unique(observation, ObservableType.URL, row.get("Url"), "url.full")
    # The clicking device's address: an observable, not a host entity, because it is often a shared NAT address.
    emit_unique(observation, None, row.get("IPAddress"), "client.ip", ip_only=True)
    return observation


@dataclass(slots=True)
class _Recipient:
    """The rows of one recipient of a message; ``last_ref`` is its latest own row."""

    address: str
    last_ref: RecordRef
    event: dict[str, Any] | None = None
    attachments: dict[tuple[str | None, str | None], dict[str, Any]] = field(default_factory=dict)


@dataclass(slots=True)
class _Message:
    """The rows of one ``NetworkMessageId`` not yet emitted."""

    network_message_id: str
    created_ms: int
    first_offset: int
    urls: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_url_ref: RecordRef | None = None
    recipients: dict[str, _Recipient] = field(default_factory=dict)

    def recipient(self, address: str, ref: RecordRef) -> _Recipient:
        key = address.lower()
        entry = self.recipients.get(key)
        if entry is None:
            entry = self.recipients[key] = _Recipient(address, ref)
        entry.last_ref = ref
        return entry

    def is_complete(self, entry: _Recipient) -> bool:
        if entry.event is None:
            return False
        return len(entry.attachments) >= _count(entry.event, "AttachmentCount") and len(self.urls) >= _count(
            entry.event, "UrlCount"
        )


class M365Joiner:
    """Joins the e-mail rows of one stream by ``NetworkMessageId`` and recipient.

    Each recipient's observation carries the ref of that recipient's latest
    own row (its ``EmailEvents`` or ``EmailAttachmentInfo`` row), never of a
    shared URL row. So two recipients completed by one URL row still get
    distinct refs, and the spread state does not drop the second as a
    redelivery. At most ``max_pending`` messages are buffered: a new message
    evicts the oldest, whose recipients are emitted as partial.
    """

    def __init__(self, rules: IdentityRules, join_window_ms: int, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.rules = rules
        self.join_window_ms = join_window_ms
        self.max_pending = max_pending
        self._pending: dict[str, _Message] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, record: dict[str, Any], ref: RecordRef, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Add one row; return the click it is, or the recipients it completes and any it evicts."""
        if is_event_hub_batch(record):
            count = len(record["records"])
            raise MalformedRecordError(
                f"Event Hub message wraps {count} rows in 'records'; "
                "split it into one record per row before this input",
                reason="syntax",
            )
        table = table_of(record)
        if table is None:
            raise MalformedRecordError(
                "record is not a Defender for Office 365 e-mail row: expected category AdvancedHunting-<Table>, "
                f"a Table/$table/Type column or the columns of one of {', '.join(sorted(TABLES))}",
                reason="syntax",
            )
        row = row_of(record)
        if table == URL_CLICKS:
            return [(click_observation(row, self.rules), ref)]
        if table == POST_DELIVERY:
            return []
        return self._join(table, row, ref, now_ms)

    def _join(
        self, table: str, row: dict[str, Any], ref: RecordRef, now_ms: int
    ) -> list[tuple[Observation, RecordRef]]:
        """Buffer one message row; return the recipients it completes and any it evicts."""
        network_message_id = _required(row, "NetworkMessageId", table)
        # The join column of the row is checked before any state changes, so a rejected row evicts nothing.
        join_value = _required(row, "Url" if table == URL_INFO else "RecipientEmailAddress", table)

        emitted: list[tuple[Observation, RecordRef]] = []
        message = self._pending.get(network_message_id)
        if message is None:
            emitted.extend(self._make_room())
            message = self._pending[network_message_id] = _Message(network_message_id, now_ms, ref.offset)

        if table == URL_INFO:
            message.urls.setdefault(join_value, row)
            message.last_url_ref = ref
            candidates = list(message.recipients.values())
        else:
            candidates = [self._add_recipient_row(message, join_value, table, row, ref)]
        emitted.extend(self._emit_complete(message, candidates))
        return emitted

    def expire(self, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Emit, as partial, every message first seen more than the join window ago."""
        expired = [key for key, message in self._pending.items() if now_ms - message.created_ms > self.join_window_ms]
        emitted: list[tuple[Observation, RecordRef]] = []
        for key in expired:
            emitted.extend(self._emit_all(self._pending.pop(key)))
        return emitted

    def oldest_offset(self) -> int | None:
        """Return the offset of the first row of the oldest buffered message (messages are kept in arrival order)."""
        first = next(iter(self._pending.values()), None)
        return first.first_offset if first is not None else None

    def _add_recipient_row(
        self, message: _Message, address: str, table: str, row: dict[str, Any], ref: RecordRef
    ) -> _Recipient:
        entry = message.recipient(address, ref)
        if table == EMAIL_EVENTS:
            entry.event = row
        else:
            entry.attachments.setdefault((_text(row, "SHA256"), _text(row, "FileName")), row)
        return entry

    def _emit_complete(self, message: _Message, candidates: list[_Recipient]) -> list[tuple[Observation, RecordRef]]:
        """Emit the complete recipients among ``candidates``; drop the message when none is left waiting."""
        # NOTE: a recipient whose rows arrive after the message was dropped starts a new message without
        # the URLs already emitted, and is emitted on expiry with what arrived since.
        emitted = []
        for entry in candidates:
            if message.is_complete(entry):
                del message.recipients[entry.address.lower()]
                emitted.append((self._recipient_observation(message, entry), entry.last_ref))
        if emitted and not message.recipients:
            del self._pending[message.network_message_id]
        return emitted

    def _emit_all(self, message: _Message) -> list[tuple[Observation, RecordRef]]:
        if not message.recipients:
            return self._urls_only(message)
        return [(self._recipient_observation(message, entry), entry.last_ref) for entry in message.recipients.values()]

    def _make_room(self) -> list[tuple[Observation, RecordRef]]:
        if len(self._pending) < self.max_pending:
            return []
        oldest = next(iter(self._pending))
        return self._emit_all(self._pending.pop(oldest))

    def _new_observation(self, message: _Message, timestamp: object) -> Observation:
        return Observation(
            source=SourceKind.MAIL,
            timestamp_ms=parse_timestamp(timestamp),
            stage=Stage.DELIVERED,
            event_code=message.network_message_id,
            format=FORMAT,
        )

    def _recipient_observation(self, message: _Message, entry: _Recipient) -> Observation:
        rows = [row for row in (entry.event, *entry.attachments.values()) if row is not None]
        observation = self._new_observation(message, rows[0].get("Timestamp") if rows else None)
        if entry.event is None or not was_blocked(entry.event):
            mailbox = self.rules.mailbox(entry.address)
            if mailbox is not None:
                observation.users.append(mailbox)
        for row in rows:
            _add_sender(observation, row)
        for row in entry.attachments.values():
            _add_attachment(observation, row)
        for row in message.urls.values():
            _add_url(observation, row)
        return observation

    def _urls_only(self, message: _Message) -> list[tuple[Observation, RecordRef]]:
        """Emit the URLs of a message whose recipients never arrived: a sighting without an entity."""
        if not message.urls or message.last_url_ref is None:
            return []
        first = next(iter(message.urls.values()))
        observation = self._new_observation(message, first.get("Timestamp"))
        for row in message.urls.values():
            _add_url(observation, row)
        return [(observation, message.last_url_ref)]
