"""Postfix maillog: the syslog lines of one message, joined by queue id.

Postfix logs one message over several lines from several daemons, tied by
the queue id: smtpd ``client=``, cleanup ``message-id=``, qmgr ``from=``,
one delivery-agent ``to=... status=`` line per recipient, and qmgr
``removed``. ``PostfixJoiner`` collects them per syslog host and queue id
and emits one observation per message when ``removed`` arrives, or a
partial one when the message expires or is evicted.

The message is not emitted once ``nrcpt`` recipients have a final status.
local(8) logs one ``to=`` line per member of an expanded alias, so counting
would cut the message short. The remaining recipients would then lose the
sender and client observables.

Entities and observables of a message:

- Each recipient logged with ``status=sent`` is a user entity (its mailbox
  identity, from ``to=``, which is the mailbox after alias expansion).
  Deferred, bounced and expired recipients are not, because nothing reached
  them. Neither are recipients of the discard(8) agent, which "pretends to
  deliver" (its manual page) and logs ``status=sent`` for mail it drops.
- The envelope sender (``email.from.address``), the client address
  (``source.ip``) and the client host name (``source.domain``) are
  observables. The sending server and the relay are never entities.
- The SASL login of an authenticated client is an account observable
  (``user.name``), so a compromised-account IOC matches the mail it sends.
- ``event_code`` is the Message-ID, or the queue id when no cleanup line was seen.

Lines about no queued message (connect, disconnect, TLS, warnings,
``NOQUEUE: reject``) yield nothing and are not errors. A NOQUEUE reject
refused the SMTP command before a message existed, so it reached nobody; its
sender and client could only make a sighting without an entity.

Three syslog headers are read: BSD (``Jan 31 09:50:02 host tag[pid]: text``),
RFC 3339 timestamps (``2024-01-31T09:50:02.123+01:00 host tag[pid]: text``,
as rsyslog writes them) and RFC 5424 (``<22>1 2024-01-31T09:50:02Z host tag pid - - text``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from detectors.adapters.fields import emit
from detectors.adapters.stream import RecordRef
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder
from detectors.observation import Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "postfix"

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), start=1
    )
}
_TAG = r"(?P<tag>[^\s\[\]:]+)(?:\[(?P<pid>[^\]\s]*)\])?:"
_BSD = re.compile(
    r"^(?:<\d{1,3}>)?(?P<month>[A-Z][a-z]{2})\s+(?P<day>\d{1,2})\s(?P<clock>\d{2}:\d{2}:\d{2})\s+(?P<host>\S+)\s+"
    + _TAG
    + r"\s?(?P<text>.*)$"
)
_RFC3339 = re.compile(
    r"^(?:<\d{1,3}>)?(?P<stamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?)\s+"
    r"(?P<host>\S+)\s+" + _TAG + r"\s?(?P<text>.*)$"
)
# RFC 5424: <PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA [MSG]
_RFC5424 = re.compile(
    r"^<\d{1,3}>1 (?P<stamp>\S+) (?P<host>\S+) (?P<tag>\S+) (?P<pid>\S+) \S+ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<text>.*))?$"
)
# syslog_name is "postfix", "postfix-<instance>" or a custom name; the part after the last "/" is the daemon.
_PROGRAM = re.compile(r"^(?P<instance>[\w.-]+)(?:/[\w.-]+)*/(?P<daemon>[\w.-]+)$")
_DAEMONS = frozenset(
    "smtpd smtp lmtp qmgr cleanup pickup local virtual pipe error discard bounce postscreen "
    "trivial-rewrite anvil scache tlsmgr master sendmail postdrop".split()
)
# Short queue ids are upper-case hex; long ones (enable_long_queue_ids) use digits and consonants only,
# so words such as NOQUEUE, warning or statistics never match.
_QUEUE_LINE = re.compile(r"^(?P<queue_id>[0-9A-F]{5,20}|[0-9B-DF-HJ-NP-TV-Zb-df-hj-np-tv-z]{10,20}): (?P<text>.*)$")
_DELIVERY = re.compile(r"^to=<(?P<to>[^>]*)>,")
_STATUS = re.compile(r"\bstatus=(?P<status>[a-z]+)")
_CLIENT = re.compile(r"^client=(?P<name>[^\s\[]*)\[(?P<ip>[^\]]*)\]")
_SASL_USER = re.compile(r"\bsasl_username=(?P<user>[^,\s]+)")
_MESSAGE_ID = re.compile(r"^message-id=(?P<id>\S*)")
_SENDER = re.compile(r"(?:^|[\s;,])from=<(?P<sender>[^>]*)>")
# Access, header and milter actions: "reject: RCPT from name[ip]: ...; from=<a> to=<b> ...".
_ACTION = re.compile(r"^(?:reject|milter-reject|discard|hold|redirect|warning|info|filter|replace|prepend|bcc): ")
_ACTION_CLIENT = re.compile(r"\bfrom (?P<name>[^\s\[;]*)\[(?P<ip>[^\]\s]+)\](?::\d+)?[:;]")
_SUBMISSION = re.compile(r"^(?:from=<|uid=\d+ from=<)")
# A BSD timestamp has no year: a date up to this far ahead of the clock is taken as this year's.
_CLOCK_SKEW = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SyslogLine:
    """The parts of one syslog line that Postfix parsing needs."""

    timestamp_ms: int | None
    host: str
    program: str
    text: str


@dataclass(slots=True)
class _Update:
    """Fields that one queue-id line adds to its message."""

    client_ip: str | None = None
    client_name: str | None = None
    sasl_username: str | None = None
    message_id: str | None = None
    sender: str | None = None
    delivered_to: str | None = None


@dataclass(slots=True)
class _Message:
    """The lines of one queued message seen so far."""

    queue_id: str
    created_ms: int
    first_offset: int
    last_ref: RecordRef
    timestamp_ms: int | None = None
    message_id: str | None = None
    sender: str | None = None
    client_ip: str | None = None
    client_name: str | None = None
    sasl_username: str | None = None
    delivered: list[str] = field(default_factory=list)

    def apply(self, update: _Update, timestamp_ms: int | None, ref: RecordRef) -> None:
        """Merge one line; the first value of each field wins, because later lines repeat it."""
        self.last_ref = ref
        if self.timestamp_ms is None:
            self.timestamp_ms = timestamp_ms
        self.message_id = self.message_id or update.message_id
        self.sender = self.sender or update.sender
        self.client_ip = self.client_ip or update.client_ip
        self.client_name = self.client_name or update.client_name
        self.sasl_username = self.sasl_username or update.sasl_username
        if update.delivered_to and update.delivered_to not in self.delivered:
            self.delivered.append(update.delivered_to)


def _bsd_timestamp(month_name: str, day: str, clock: str, now_ms: int) -> int | None:
    """Return epoch ms of a yearless BSD timestamp, read as UTC, in the latest year not ahead of ``now_ms``.

    A line from 31 December read on 1 January therefore gets last year. A
    29 February goes back to the latest leap year.
    """
    month = _MONTHS.get(month_name)
    if month is None:
        return None
    hour, minute, second = (int(part) for part in clock.split(":"))
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    for year in range(now.year, now.year - 5, -1):
        try:
            moment = datetime(year, month, int(day), hour, minute, second, tzinfo=UTC)
        except ValueError:
            continue
        if moment <= now + _CLOCK_SKEW:
            return int(moment.timestamp() * 1000)
    return None


def parse_syslog(line: str, now_ms: int) -> SyslogLine | None:
    """Split a BSD, RFC 3339 or RFC 5424 syslog line; return None for any other text.

    ``now_ms`` supplies the year of BSD timestamps. Times without a zone are read as UTC.
    """
    # NOTE: BSD and zone-less timestamps are usually local time on the mail host; no time zone is configurable yet.
    match = _BSD.match(line)
    if match is not None:
        timestamp_ms = _bsd_timestamp(match["month"], match["day"], match["clock"], now_ms)
        if timestamp_ms is None:
            raise MalformedRecordError(
                f"invalid syslog date {match['month']} {match['day']} {match['clock']} in line {line[:120]!r}",
                reason="syntax",
            )
        return SyslogLine(timestamp_ms, match["host"], match["tag"], match["text"])
    match = _RFC3339.match(line) or _RFC5424.match(line)
    if match is None:
        return None
    return SyslogLine(
        parse_timestamp(match["stamp"]), match["host"], match["tag"], (match["text"] or "").lstrip("\ufeff")
    )


def postfix_daemon(program: str) -> str | None:
    """Return the daemon name of a Postfix syslog tag (``postfix/submission/smtpd`` is ``smtpd``), else None."""
    match = _PROGRAM.match(program)
    if match is None:
        return None
    if match["instance"].startswith("postfix") or match["daemon"] in _DAEMONS:
        return match["daemon"]
    return None


def is_postfix_line(line: str) -> bool:
    """Return True for a syslog line written by a Postfix daemon."""
    match = _BSD.match(line) or _RFC3339.match(line) or _RFC5424.match(line)
    return match is not None and postfix_daemon(match["tag"]) is not None


def _address(value: str) -> str | None:
    """Return an envelope address, or None for the null sender ``<>``."""
    return None if is_placeholder(value) else value


def _delivery_update(text: str, daemon: str) -> _Update:
    # NOTE: a hand-off to a content filter (relay=127.0.0.1[127.0.0.1]:10024) also logs status=sent, so its
    # recipients count as delivered even when the filter later drops the message. The re-injected copy has
    # a new queue id, and the "queued as" link between the two is not followed yet.
    update = _Update()
    match = _DELIVERY.match(text)
    status = _STATUS.search(text)
    if match is not None and status is not None and status["status"] == "sent" and daemon != "discard":
        update.delivered_to = _address(match["to"])
    return update


def _client_update(text: str) -> _Update:
    match = _CLIENT.match(text)
    update = _Update()
    if match is not None:
        update.client_name = match["name"]
        update.client_ip = match["ip"]
    sasl = _SASL_USER.search(text)
    if sasl is not None:
        update.sasl_username = sasl["user"]
    return update


def _action_update(text: str) -> _Update:
    """Read the client and sender of a reject, hold or header-check line; its recipient got nothing."""
    update = _Update()
    client = _ACTION_CLIENT.search(text)
    if client is not None:
        update.client_name = client["name"]
        update.client_ip = client["ip"]
    sender = _SENDER.search(text)
    if sender is not None:
        update.sender = _address(sender["sender"])
    return update


def read_update(text: str, daemon: str) -> _Update | None:
    """Return what a queue-id line adds to its message, or None for lines that add nothing."""
    if text.startswith("to=<"):
        return _delivery_update(text, daemon)
    if text.startswith("client="):
        return _client_update(text)
    if text.startswith("message-id="):
        match = _MESSAGE_ID.match(text)
        message_id = match["id"].strip("<>") if match else ""
        return _Update(message_id=message_id or None)
    if _ACTION.match(text):
        return _action_update(text)
    if _SUBMISSION.match(text):
        sender = _SENDER.search(text)
        return _Update(sender=_address(sender["sender"]) if sender else None)
    return None


def build_observation(message: _Message, rules: IdentityRules) -> Observation | None:
    """Return the observation of a message, or None when it contains neither an entity nor an observable."""
    observation = Observation(
        source=SourceKind.MAIL,
        timestamp_ms=message.timestamp_ms,
        stage=Stage.DELIVERED,
        event_code=message.message_id or message.queue_id,
        format=FORMAT,
    )
    for address in message.delivered:
        mailbox = rules.mailbox(address)
        if mailbox is not None and mailbox not in observation.users:
            observation.users.append(mailbox)
    emit(observation, ObservableType.EMAIL, message.sender, "email.from.address")
    emit(observation, None, message.client_ip, "source.ip", ip_only=True)
    emit(observation, ObservableType.DOMAIN, message.client_name, "source.domain")
    emit(observation, ObservableType.USER, rules.user(message.sasl_username), "user.name")
    if not observation.users and not observation.observables:
        return None
    return observation


class PostfixJoiner:
    """Joins the lines of each queued message of one maillog stream.

    Messages are keyed by syslog host and queue id, because several mail
    servers may log into one stream. At most ``max_pending`` messages are
    buffered: a new message evicts the oldest, which is emitted as partial.
    ``expire`` emits messages first seen more than ``join_window_ms`` ago.
    """

    def __init__(self, rules: IdentityRules, join_window_ms: int, max_pending: int) -> None:
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        self.rules = rules
        self.join_window_ms = join_window_ms
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str], _Message] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, line: str, ref: RecordRef, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Add one maillog line; return the message it completes and any message it evicts."""
        syslog = parse_syslog(line, now_ms)
        if syslog is None:
            raise MalformedRecordError(
                f"not a syslog line (expected a BSD, RFC 3339 or RFC 5424 header): {line[:120]!r}; "
                "check the format bound to this input",
                reason="syntax",
            )
        daemon = postfix_daemon(syslog.program)
        queue_line = _QUEUE_LINE.match(syslog.text) if daemon is not None else None
        if daemon is None or queue_line is None:
            # Another mail daemon of the same maillog, or a Postfix line about no queued message.
            return []
        key = (syslog.host.lower(), queue_line["queue_id"])
        text = queue_line["text"]
        if text.strip() == "removed":
            message = self._pending.pop(key, None)
            return self._emit([message], ref) if message is not None else []
        update = read_update(text, daemon)
        if update is None:
            return []
        evicted: list[tuple[Observation, RecordRef]] = []
        message = self._pending.get(key)
        if message is None:
            evicted = self._make_room()
            message = self._pending[key] = _Message(queue_line["queue_id"], now_ms, ref.offset, ref)
        message.apply(update, syslog.timestamp_ms, ref)
        return evicted

    def expire(self, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Emit, as partial, every message first seen more than the join window ago."""
        expired = [key for key, message in self._pending.items() if now_ms - message.created_ms > self.join_window_ms]
        return self._emit([self._pending.pop(key) for key in expired])

    def oldest_offset(self) -> int | None:
        """Return the offset of the first line of the oldest buffered message.

        Messages are kept in arrival order, and offsets grow within a stream
        (a Kafka partition or the lines of a file), so the first is the oldest.
        """
        first = next(iter(self._pending.values()), None)
        return first.first_offset if first is not None else None

    def _make_room(self) -> list[tuple[Observation, RecordRef]]:
        if len(self._pending) < self.max_pending:
            return []
        oldest = next(iter(self._pending))
        return self._emit([self._pending.pop(oldest)])

    def _emit(self, messages: list[_Message], ref: RecordRef | None = None) -> list[tuple[Observation, RecordRef]]:
        """Build observations; each carries ``ref`` or else the ref of its message's last line."""
        emitted: list[tuple[Observation, RecordRef]] = []
        for message in messages:
            observation = build_observation(message, self.rules)
            if observation is not None:
                emitted.append((observation, ref or message.last_ref))
        return emitted
