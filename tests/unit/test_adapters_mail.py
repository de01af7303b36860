"""Mail adapters: Postfix maillog, Defender for Office 365 rows and Proofpoint TAP events.

Golden tests read real third-party samples in place through a StreamParser
per file, as the replay does. The samples live outside the repository
(their licences vary) in ``shared/real`` beside the work tree, so the module
is skipped without it. Join, identity and hostile-input tests use plain values.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.adapters import m365, postfix, proofpoint
from detectors.adapters.stream import RecordRef, StreamParser
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.index import IocIndex
from detectors.ioc import Ioc
from detectors.matcher import sightings_of
from detectors.observables import ObservableType as T
from detectors.observation import Observation, SourceKind, Stage
from detectors.spread import apply_sighting, new_state
from detectors.timestamps import format_timestamp
from service.replay import Replay, ReplaySummary, load_feeds

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
if not REAL.is_dir():
    pytest.skip("../shared/real not present: real samples are read in place and not shipped", allow_module_level=True)

MAIL = REAL / "mail"
LOGRAPTOR = MAIL / "lograptor_postfix.log"
FAIL2BAN = MAIL / "fail2ban_postfix.log"
DOVECOT = MAIL / "lograptor_dovecot.log"
DEFENDER = MAIL / "elastic_m365_defender_test-email.log"
TAP = MAIL / "elastic_proofpoint_tap_message-delivered.excerpt.log"
MDE_SIMULAND = REAL / "edr" / "mde_simuland" / "Microsoft365DefenderEvents.json"
OFFICE_ACTIVITY = MAIL / "otrf_simuland_OfficeActivity_MailItemsAccessed.json"

PLAIN = IdentityRules()
# 2023-11-14T22:13:20Z: the year given to the yearless BSD syslog timestamps below.
NOW = 1_700_000_000_000
WINDOW = 60_000

Parsed = list[tuple[Observation, int]]


def _parse_file(path: Path, fmt: str, rules: IdentityRules = PLAIN) -> tuple[Parsed, dict[str, int]]:
    """Parse a file as the replay does: blank lines are skipped, and partial joins are flushed at the end."""
    parser = StreamParser(fmt, rules)
    parsed: Parsed = []
    rejected: dict[str, int] = {}
    for number, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            parsed.extend(
                (observation, ref.offset)
                for observation, ref in parser.parse(raw, RecordRef(str(path), 0, number), NOW)
            )
        except MalformedRecordError as error:
            rejected[error.reason] = rejected.get(error.reason, 0) + 1
    parsed.extend((observation, ref.offset) for observation, ref in parser.flush())
    return parsed, rejected


def _observables(observation: Observation) -> list[tuple[T, str, str]]:
    return [(observable.type, observable.value, observable.field) for observable in observation.observables]


def _by_offset(parsed: Parsed) -> dict[int, Observation]:
    return {offset: observation for observation, offset in parsed}


def _feed(parser: StreamParser, lines: list[str | bytes | dict[str, Any]], now_ms: int = NOW, start: int = 1) -> Parsed:
    """Parse records with offsets ``start``, ``start + 1`` ...; dicts are sent as JSON."""
    emitted: Parsed = []
    for offset, line in enumerate(lines, start=start):
        if isinstance(line, dict):
            raw = orjson.dumps(line)
        elif isinstance(line, str):
            raw = line.encode()
        else:
            raw = line
        emitted.extend(
            (observation, ref.offset) for observation, ref in parser.parse(raw, RecordRef("t", 0, offset), now_ms)
        )
    return emitted


def _postfix_line(text: str, *, daemon: str = "qmgr", host: str = "mx1", stamp: str = "Nov 14 10:00:00") -> str:
    """Return a Postfix syslog line with a BSD header."""
    return f"{stamp} {host} postfix/{daemon}[100]: {text}"


def _message_lines(queue_id: str, *recipients: str, status: str = "sent") -> list[str]:
    lines = [
        _postfix_line(f"{queue_id}: client=mail.bad.example.net[203.0.113.7]", daemon="smtpd"),
        _postfix_line(f"{queue_id}: message-id=<{queue_id.lower()}@bad.example.net>", daemon="cleanup"),
        _postfix_line(f"{queue_id}: from=<billing@bad.example.net>, size=2000, nrcpt={len(recipients)} (queue active)"),
    ]
    for recipient in recipients:
        lines.append(
            _postfix_line(
                f"{queue_id}: to=<{recipient}>, relay=local, delay=0.1, dsn=2.0.0, status={status} (ok)", daemon="local"
            )
        )
    return lines


# -- Postfix: real files -------------------------------------------------------


def test_lograptor_file_counts() -> None:
    parsed, rejected = _parse_file(LOGRAPTOR, "postfix")
    assert rejected == {}
    assert [offset for _, offset in parsed] == [6, 19, 21]


def test_lograptor_relayed_message_three_recipients() -> None:
    observation = _by_offset(_parse_file(LOGRAPTOR, "postfix")[0])[6]
    assert observation.source is SourceKind.MAIL
    assert observation.stage is Stage.DELIVERED
    assert observation.format == "postfix"
    assert observation.users == [
        "stegosaurus@ceratops.dinos.test",
        "oviraptor@ceratops.dinos.test",
        "velociraptor@ceratops.dinos.test",
    ]
    assert observation.hosts == []
    # The file starts after this message's smtpd and cleanup lines, so only the sender is known.
    assert _observables(observation) == [(T.EMAIL, "tarbosaurus@dinos.test", "email.from.address")]
    assert observation.event_code == "ED36AD08054"
    assert format_timestamp(observation.timestamp_ms) == "2023-01-31T09:50:02.000Z"


def test_lograptor_authenticated_submission() -> None:
    observation = _by_offset(_parse_file(LOGRAPTOR, "postfix")[0])[21]
    # to=<trex@dinos.test> with orig_to=<tyrannosaurus.rex@dinos.test>: the mailbox after alias expansion counts.
    assert observation.users == ["trex@dinos.test", "brachiosaurus@external.test"]
    assert observation.hosts == []
    assert _observables(observation) == [
        (T.EMAIL, "triceratops@dinos.test", "email.from.address"),
        (T.IPV4, "192.168.4.150", "source.ip"),
        (T.DOMAIN, "stegosaurus.dinos.test", "source.domain"),
        (T.USER, "triceratops", "user.name"),
    ]
    assert observation.event_code == "gondwana.LRH.2.11.1409210944216.21048@ceratops.dinos.test"
    assert format_timestamp(observation.timestamp_ms) == "2023-01-31T09:50:08.000Z"


def test_lograptor_local_pickup_message() -> None:
    observation = _by_offset(_parse_file(LOGRAPTOR, "postfix")[0])[19]
    assert observation.users == ["tyrannosaurus.rex@external.test"]
    assert _observables(observation) == [(T.EMAIL, "triceratops@dinos.test", "email.from.address")]
    assert observation.event_code == "gondwana.LRH.2.11.1409210944216.21048@ceratops.dinos.test"


def test_lograptor_relay_never_observable() -> None:
    parsed, _ = _parse_file(LOGRAPTOR, "postfix")
    values = {value for observation, _ in parsed for _, value, _ in _observables(observation)}
    assert "192.168.9.10" not in values
    assert "antispam.dinos.test" not in values


def test_fail2ban_file_counts() -> None:
    parsed, rejected = _parse_file(FAIL2BAN, "postfix")
    # 203 lines: 52 blank, 88 "# failJSON" comments (not syslog, so rejected with the fixed format),
    # 63 Postfix lines of which 24 are NOQUEUE rejects.
    assert rejected == {"syntax": 88}
    assert [offset for _, offset in parsed] == [20, 46, 48]


def test_fail2ban_queued_rejects_have_no_entity() -> None:
    parsed = _by_offset(_parse_file(FAIL2BAN, "postfix")[0])
    assert [observation.users for observation in parsed.values()] == [[], [], []]
    assert _observables(parsed[20]) == [
        (T.EMAIL, "xxxxxx@example.com", "email.from.address"),
        (T.IPV4, "192.0.2.1", "source.ip"),
        (T.DOMAIN, "example.com", "source.domain"),
    ]
    assert parsed[20].event_code == "00ADB3C0899"
    assert _observables(parsed[46]) == [
        (T.EMAIL, "security@mail.example.com", "email.from.address"),
        (T.IPV4, "192.0.2.151", "source.ip"),
        (T.DOMAIN, "66-220-155-151.mail-mail.facebook.com", "source.domain"),
    ]
    # A long queue id, a multi-part syslog name and the null sender from=<>.
    assert _observables(parsed[48]) == [
        (T.IPV4, "192.0.2.109", "source.ip"),
        (T.DOMAIN, "signing-milter.example.com", "source.domain"),
    ]
    assert parsed[48].event_code == "44JCRG5tYPzCqt2"
    assert format_timestamp(parsed[48].timestamp_ms) == "2023-03-11T23:27:54.000Z"


def test_fail2ban_noqueue_rejects_yield_nothing() -> None:
    parsed, _ = _parse_file(FAIL2BAN, "postfix")
    values = {value for observation, _ in parsed for _, value, _ in _observables(observation)}
    assert "192.0.43.10" not in values
    assert "badactor@example.com" not in values


def test_fail2ban_auto_skips_comments() -> None:
    parsed, rejected = _parse_file(FAIL2BAN, "auto")
    assert rejected == {}
    assert [offset for _, offset in parsed] == [20, 46, 48]


def test_postfix_format_ignores_dovecot_lines() -> None:
    parsed, rejected = _parse_file(DOVECOT, "postfix")
    assert parsed == []
    assert rejected == {}


@pytest.mark.parametrize(
    "path",
    [
        DOVECOT,
        MAIL / "fail2ban_sendmail-reject.log",
        MAIL / "fail2ban_exim.log",
        MAIL / "wrccdc2018_zeek_smtp.log.sample",
        REAL / "proxy_network" / "squid" / "elastic_squid-log-access.head40.log",
        REAL / "proxy_network" / "squid" / "fail2ban_squid_access.log",
    ],
)
def test_postfix_detection_skips_other_logs(path: Path) -> None:
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    assert [line for line in lines if postfix.is_postfix_line(line.strip())] == []


def test_postfix_auto_same_observations() -> None:
    fixed, _ = _parse_file(LOGRAPTOR, "postfix")
    auto, _ = _parse_file(LOGRAPTOR, "auto")
    assert auto == fixed


# -- Postfix: joins --------------------------------------------------------------


def test_postfix_out_of_order_lines_joined() -> None:
    parser = StreamParser("postfix", PLAIN, join_window_ms=WINDOW)
    lines = _message_lines("A1B2C3D4E5", "alice@example.com")
    emitted = _feed(parser, [lines[3], lines[2], lines[0], lines[1], _postfix_line("A1B2C3D4E5: removed")])
    assert len(emitted) == 1
    observation, offset = emitted[0]
    assert offset == 5
    assert observation.users == ["alice@example.com"]
    assert _observables(observation) == [
        (T.EMAIL, "billing@bad.example.net", "email.from.address"),
        (T.IPV4, "203.0.113.7", "source.ip"),
        (T.DOMAIN, "mail.bad.example.net", "source.domain"),
    ]
    assert observation.event_code == "a1b2c3d4e5@bad.example.net"
    assert parser.pending == 0


def test_postfix_removed_before_lines_then_expire() -> None:
    parser = StreamParser("postfix", PLAIN, join_window_ms=WINDOW)
    assert _feed(parser, [_postfix_line("A1B2C3D4E5: removed")]) == []
    assert _feed(parser, _message_lines("A1B2C3D4E5", "alice@example.com"), start=2) == []
    emitted = parser.expire(NOW + WINDOW + 1)
    assert [(observation.users, ref.offset) for observation, ref in emitted] == [(["alice@example.com"], 5)]


def test_postfix_partial_on_expire() -> None:
    parser = StreamParser("postfix", PLAIN, join_window_ms=WINDOW)
    lines = _message_lines("A1B2C3D4E5", "alice@example.com", "bob@example.com")
    assert _feed(parser, lines[:4]) == []
    assert parser.expire(NOW + WINDOW) == []
    emitted = parser.expire(NOW + WINDOW + 1)
    assert len(emitted) == 1
    observation, ref = emitted[0]
    assert observation.users == ["alice@example.com"]
    assert (T.EMAIL, "billing@bad.example.net", "email.from.address") in _observables(observation)
    assert ref.offset == 4
    assert parser.pending == 0


def test_postfix_max_pending_evicts_oldest() -> None:
    parser = StreamParser("postfix", PLAIN, max_pending=2)
    first = _feed(parser, _message_lines("AAAAA00001", "alice@example.com"))
    second = _feed(parser, _message_lines("BBBBB00002", "bob@example.com"), start=10)
    evicted = _feed(parser, _message_lines("CCCCC00003", "carol@example.com"), start=20)
    assert first == []
    assert second == []
    assert [(observation.event_code, observation.users, offset) for observation, offset in evicted] == [
        ("aaaaa00001@bad.example.net", ["alice@example.com"], 4)
    ]
    assert parser.pending == 2


def test_postfix_oldest_offset_follows_buffer() -> None:
    parser = StreamParser("postfix", PLAIN)
    assert parser.oldest_offset() is None
    _feed(parser, [_postfix_line("AAAAA00001: from=<a@bad.example.net>, size=1, nrcpt=1 (queue active)")], start=7)
    _feed(parser, [_postfix_line("BBBBB00002: from=<b@bad.example.net>, size=1, nrcpt=1 (queue active)")], start=8)
    _feed(
        parser,
        [_postfix_line("AAAAA00001: to=<x@example.com>, relay=local, status=sent (ok)", daemon="local")],
        start=9,
    )
    assert parser.oldest_offset() == 7
    _feed(parser, [_postfix_line("AAAAA00001: removed")], start=10)
    assert parser.oldest_offset() == 8
    _feed(parser, [_postfix_line("BBBBB00002: removed")], start=11)
    assert parser.oldest_offset() is None


def test_postfix_undelivered_recipients_not_entities() -> None:
    parser = StreamParser("postfix", PLAIN)
    lines = [
        _postfix_line("A1B2C3D4E5: from=<billing@bad.example.net>, size=1, nrcpt=4 (queue active)"),
        _postfix_line(
            "A1B2C3D4E5: to=<sent@example.com>, relay=mx[192.0.2.5]:25, dsn=2.0.0, status=sent (250 ok)", daemon="smtp"
        ),
        _postfix_line(
            "A1B2C3D4E5: to=<later@example.com>, relay=none, dsn=4.4.1, status=deferred (timeout)", daemon="smtp"
        ),
        _postfix_line(
            "A1B2C3D4E5: to=<gone@example.com>, relay=none, dsn=5.1.1, status=bounced (unknown)", daemon="error"
        ),
        _postfix_line(
            "A1B2C3D4E5: to=<dropped@example.com>, relay=none, dsn=2.0.0, status=sent (dropped)", daemon="discard"
        ),
        _postfix_line("A1B2C3D4E5: removed"),
    ]
    emitted = _feed(parser, lines)
    assert [observation.users for observation, _ in emitted] == [["sent@example.com"]]


def test_postfix_plus_address_identity() -> None:
    parser = StreamParser("postfix", PLAIN)
    emitted = _feed(
        parser, [*_message_lines("A1B2C3D4E5", "Alice+invoices@Example.com"), _postfix_line("A1B2C3D4E5: removed")]
    )
    assert emitted[0][0].users == ["alice@example.com"]


def test_postfix_same_queue_id_two_hosts() -> None:
    parser = StreamParser("postfix", PLAIN)
    lines = [
        _postfix_line("A1B2C3D4E5: to=<alice@example.com>, relay=local, status=sent (ok)", daemon="local", host="mx1"),
        _postfix_line("A1B2C3D4E5: to=<bob@example.com>, relay=local, status=sent (ok)", daemon="local", host="mx2"),
        _postfix_line("A1B2C3D4E5: removed", host="mx1"),
        _postfix_line("A1B2C3D4E5: removed", host="mx2"),
    ]
    emitted = _feed(parser, lines)
    assert [(observation.users, offset) for observation, offset in emitted] == [
        (["alice@example.com"], 3),
        (["bob@example.com"], 4),
    ]


def test_postfix_lines_without_queue_yield_nothing() -> None:
    parser = StreamParser("postfix", PLAIN)
    lines = [
        _postfix_line("connect from unknown[198.51.100.9]", daemon="smtpd"),
        _postfix_line(
            "NOQUEUE: reject: RCPT from unknown[198.51.100.9]: 554 5.7.1 denied; from=<a@bad.example.net> "
            "to=<alice@example.com> proto=ESMTP helo=<x>",
            daemon="smtpd",
        ),
        _postfix_line("warning: unknown[198.51.100.9]: SASL LOGIN authentication failed", daemon="smtpd"),
        _postfix_line("A1B2C3D4E5: sender non-delivery notification: B1B2C3D4E5", daemon="bounce"),
        "Nov 14 10:00:00 mx1 dovecot: imap-login: Login: user=<alice>",
    ]
    assert _feed(parser, lines) == []
    assert parser.pending == 0


def test_postfix_non_syslog_line_rejected() -> None:
    parser = StreamParser("postfix", PLAIN)
    with pytest.raises(MalformedRecordError, match="not a syslog line") as caught:
        _feed(parser, ["just some text"])
    assert caught.value.reason == "syntax"


def test_postfix_rfc5424_and_rfc3339_headers() -> None:
    parser = StreamParser("postfix", PLAIN)
    lines = [
        "<22>1 2024-01-31T09:50:02.5Z mx1 postfix/qmgr 26374 - - A1B2C3D4E5: from=<billing@bad.example.net>, "
        "size=1, nrcpt=1 (queue active)",
        "2024-01-31T10:50:03+01:00 mx1 postfix/lmtp[77]: A1B2C3D4E5: to=<alice@example.com>, relay=lmtp, "
        "status=sent (ok)",
        '<22>1 2024-01-31T09:50:04Z mx1 postfix/qmgr 26374 - [origin ip="192.0.2.1"] \ufeffA1B2C3D4E5: removed',
    ]
    emitted = _feed(parser, lines)
    assert len(emitted) == 1
    observation, offset = emitted[0]
    assert offset == 3
    assert observation.users == ["alice@example.com"]
    assert format_timestamp(observation.timestamp_ms) == "2024-01-31T09:50:02.500Z"


def test_postfix_year_rolls_back_at_new_year() -> None:
    parser = StreamParser("postfix", PLAIN)
    new_year = 1_704_067_200_000  # 2024-01-01T00:00:00Z
    lines = [*_message_lines("A1B2C3D4E5", "alice@example.com"), _postfix_line("A1B2C3D4E5: removed")]
    lines = [line.replace("Nov 14", "Dec 31") for line in lines]
    emitted = _feed(parser, lines, now_ms=new_year)
    assert format_timestamp(emitted[0][0].timestamp_ms) == "2023-12-31T10:00:00.000Z"


def test_postfix_invalid_date_rejected() -> None:
    parser = StreamParser("postfix", PLAIN)
    with pytest.raises(MalformedRecordError, match="invalid syslog date Feb 30"):
        _feed(parser, [_postfix_line("A1B2C3D4E5: removed", stamp="Feb 30 10:00:00")])


# -- Postfix: replay ---------------------------------------------------------------


def test_postfix_replay_exact_alerts(tmp_path: Path) -> None:
    feed = tmp_path / "iocs.txt"
    # Two senders and a client address from the file, the relay (never an observable)
    # and a recipient (an entity, never an observable): only the first three can alert.
    feed.write_text("tarbosaurus@dinos.test\ntriceratops@dinos.test\n192.168.4.150\n192.168.9.10\ntrex@dinos.test\n")
    index = IocIndex()
    load_feeds([feed], index, ReplaySummary(), NOW)
    replay = Replay(index, PLAIN)
    alerts_out = io.BytesIO()
    replay.run_file(LOGRAPTOR, "postfix", None, alerts_out, None)
    alerts = [orjson.loads(line) for line in alerts_out.getvalue().splitlines()]
    scopes = [(alert["threat"]["indicator"]["value"], alert["related"]["user"]) for alert in alerts]
    assert scopes == [
        (
            "tarbosaurus@dinos.test",
            ["oviraptor@ceratops.dinos.test", "stegosaurus@ceratops.dinos.test", "velociraptor@ceratops.dinos.test"],
        ),
        # Its first message (line 19) reached one mailbox; the second (line 21) brought two more.
        (
            "triceratops@dinos.test",
            ["brachiosaurus@external.test", "trex@dinos.test", "tyrannosaurus.rex@external.test"],
        ),
        ("192.168.4.150", ["brachiosaurus@external.test", "trex@dinos.test"]),
    ]
    assert [alert["related"]["hosts"] for alert in alerts] == [[], [], []]
    assert replay.summary.records == 21
    assert replay.summary.rejected == 0
    assert replay.summary.sightings == 4


# -- Defender for Office 365 -----------------------------------------------------

NMI = "a194a8a6-d97c-4be1-ae31-08dacc512345"


def test_defender_file_counts() -> None:
    parsed, rejected = _parse_file(DEFENDER, "m365")
    assert rejected == {}
    # The click (line 5) is emitted at once; the message waits for its 4 announced
    # attachments, of which the file contains 1, and is flushed at the end.
    assert [offset for _, offset in parsed] == [5, 2]


def test_defender_message_joined_from_three_tables() -> None:
    observation = _by_offset(_parse_file(DEFENDER, "m365")[0])[2]
    assert observation.source is SourceKind.MAIL
    assert observation.stage is Stage.DELIVERED
    assert observation.users == ["user@testmsftalerts.onmicrosoft.com"]
    assert _observables(observation) == [
        (T.EMAIL, "user@testmsftalerts.onmicrosoft.com", "email.from.address"),
        (T.IPV4, "81.2.69.144", "source.ip"),
        (T.IPV6, "2a02:cf40::", "source.ip"),
        # The attachment row names another sender than the EmailEvents row in this sanitised sample.
        (T.EMAIL, "test@testmsftalerts.onmicrosoft.com", "email.from.address"),
        (
            T.SHA256,
            "67ff7e5e56d160f3343b712e018f7aea4ac6c544f8c73d9b6509550fbd512345",
            "email.attachments.file.hash.sha256",
        ),
        (T.FILE_NAME, "attachedimage", "email.attachments.file.name"),
        (T.URL, "www.example.com/foo.gif?key1=val1&key2=val2", "url.full"),
        (T.DOMAIN, "southcentralusr-notifyp.svc.ms", "url.domain"),
    ]
    assert observation.event_code == NMI
    assert format_timestamp(observation.timestamp_ms) == "2022-11-22T06:19:40.000Z"


def test_defender_click_without_account() -> None:
    observation = _by_offset(_parse_file(DEFENDER, "m365")[0])[5]
    assert observation.stage is Stage.CONTACTED
    assert observation.users == []
    assert _observables(observation) == [
        (T.URL, "southcentralusr-notifyp.svc.ms/api/v2/tracking/method/View?mi=Kn90pV0CpEaOPMa_SixTuQ", "url.full")
    ]


def test_defender_auto_same_observations() -> None:
    assert _parse_file(DEFENDER, "auto") == _parse_file(DEFENDER, "m365")


def test_defender_other_tables_left_alone() -> None:
    rows = [orjson.loads(line) for line in MDE_SIMULAND.read_bytes().splitlines() if line.strip()]
    rows += [orjson.loads(OFFICE_ACTIVITY.read_bytes())]
    assert len(rows) == 10
    assert [m365.is_m365_record(row) for row in rows] == [False] * 10
    assert [proofpoint.is_proofpoint_event(row) for row in rows] == [False] * 10


def test_defender_fixed_format_rejects_other_tables() -> None:
    _, rejected = _parse_file(MDE_SIMULAND, "m365")
    assert rejected == {"syntax": 9}


def _email_event(recipient: str, *, attachments: int = 0, urls: int = 0, action: str = "Delivered") -> dict[str, Any]:
    return {
        "$table": "EmailEvents",
        "Timestamp": "2024-05-01T08:00:00Z",
        "NetworkMessageId": "nmi-1",
        "RecipientEmailAddress": recipient,
        "SenderFromAddress": '"Billing Dept" <Billing@Bad.Example.NET>',
        "SenderMailFromAddress": "bounce@bad.example.net",
        "SenderIPv4": "203.0.113.7",
        "DeliveryAction": action,
        "AttachmentCount": attachments,
        "UrlCount": urls,
    }


def _attachment(recipient: str, sha256: str = "ab" * 32) -> dict[str, Any]:
    return {
        "NetworkMessageId": "nmi-1",
        "RecipientEmailAddress": recipient,
        "FileName": "invoice.xlsm",
        "SHA256": sha256,
    }


URL_ROW = {"NetworkMessageId": "nmi-1", "Url": "https://login.bad.example.net/a", "UrlDomain": "login.bad.example.net"}


def test_defender_emits_when_announced_rows_arrive() -> None:
    parser = StreamParser("m365", PLAIN)
    emitted = _feed(
        parser, [URL_ROW, _attachment("alice@example.com"), _email_event("alice@example.com", attachments=1, urls=1)]
    )
    assert len(emitted) == 1
    observation, offset = emitted[0]
    assert offset == 3
    assert observation.users == ["alice@example.com"]
    assert _observables(observation) == [
        (T.EMAIL, "billing@bad.example.net", "email.from.address"),
        (T.EMAIL, "bounce@bad.example.net", "email.sender.address"),
        (T.IPV4, "203.0.113.7", "source.ip"),
        (T.SHA256, "ab" * 32, "email.attachments.file.hash.sha256"),
        (T.FILE_NAME, "invoice.xlsm", "email.attachments.file.name"),
        (T.URL, "login.bad.example.net/a", "url.full"),
        (T.DOMAIN, "login.bad.example.net", "url.domain"),
    ]
    assert parser.pending == 0


def test_defender_url_row_completes_two_recipients() -> None:
    parser = StreamParser("m365", PLAIN)
    rows = [_email_event("alice@example.com", urls=1), _email_event("Bob+x@Example.com", urls=1), URL_ROW]
    emitted = _feed(parser, rows)
    # Each keeps the ref of its own EmailEvents row, so the spread state never drops one as a redelivery.
    assert [(observation.users, offset) for observation, offset in emitted] == [
        (["alice@example.com"], 1),
        (["bob@example.com"], 2),
    ]


def test_defender_blocked_recipient_not_entity() -> None:
    parser = StreamParser("m365", PLAIN)
    emitted = _feed(parser, [_email_event("alice@example.com", action="Blocked")])
    assert emitted[0][0].users == []
    assert (T.IPV4, "203.0.113.7", "source.ip") in _observables(emitted[0][0])


def test_defender_partial_on_expire() -> None:
    parser = StreamParser("m365", PLAIN, join_window_ms=WINDOW)
    assert _feed(parser, [_email_event("alice@example.com", attachments=2), _attachment("alice@example.com")]) == []
    assert parser.expire(NOW + WINDOW) == []
    emitted = parser.expire(NOW + WINDOW + 1)
    assert [(observation.users, ref.offset) for observation, ref in emitted] == [(["alice@example.com"], 2)]


def test_defender_urls_without_recipient_on_flush() -> None:
    parser = StreamParser("m365", PLAIN)
    assert _feed(parser, [URL_ROW]) == []
    emitted = parser.flush()
    assert [(observation.users, _observables(observation), ref.offset) for observation, ref in emitted] == [
        ([], [(T.URL, "login.bad.example.net/a", "url.full"), (T.DOMAIN, "login.bad.example.net", "url.domain")], 1)
    ]


def test_defender_max_pending_and_oldest_offset() -> None:
    parser = StreamParser("m365", PLAIN, max_pending=2)
    first = _email_event("alice@example.com", urls=1)
    second = {**_email_event("bob@example.com", urls=1), "NetworkMessageId": "nmi-2"}
    third = {**_email_event("carol@example.com", urls=1), "NetworkMessageId": "nmi-3"}
    assert _feed(parser, [first, second], start=5) == []
    assert parser.oldest_offset() == 5
    evicted = _feed(parser, [third], start=7)
    assert [(observation.users, offset) for observation, offset in evicted] == [(["alice@example.com"], 5)]
    assert parser.pending == 2
    assert parser.oldest_offset() == 6


def test_defender_streaming_envelope_and_click() -> None:
    parser = StreamParser("auto", PLAIN)
    click = {
        "category": "AdvancedHunting-UrlClickEvents",
        "properties": {
            "Timestamp": "2024-05-01T08:05:00Z",
            "Url": "https://login.bad.example.net/a",
            "AccountUpn": "Alice@Example.com",
            "IPAddress": "198.51.100.23",
            "ActionType": "ClickAllowed",
            "NetworkMessageId": "nmi-1",
        },
    }
    blocked = {**click, "properties": {**click["properties"], "ActionType": "ClickBlocked", "IsClickedThrough": False}}
    emitted = _feed(parser, [click, blocked])
    assert [(observation.users, observation.stage, offset) for observation, offset in emitted] == [
        (["alice@example.com"], Stage.CONTACTED, 1),
        (["alice@example.com"], Stage.DELIVERED, 2),
    ]
    assert _observables(emitted[0][0]) == [
        (T.URL, "login.bad.example.net/a", "url.full"),
        (T.IPV4, "198.51.100.23", "client.ip"),
    ]


def test_defender_batch_rejected() -> None:
    parser = StreamParser("auto", PLAIN)
    batch = {"records": [{"category": "AdvancedHunting-EmailUrlInfo", "properties": URL_ROW}]}
    with pytest.raises(MalformedRecordError, match="split it into one record per row"):
        _feed(parser, [batch])


def test_defender_missing_join_column() -> None:
    parser = StreamParser("m365", PLAIN)
    row = {key: value for key, value in _email_event("alice@example.com").items() if key != "NetworkMessageId"}
    with pytest.raises(MalformedRecordError, match="EmailEvents row has no NetworkMessageId") as caught:
        _feed(parser, [row])
    assert caught.value.reason == "missing_field"
    assert parser.pending == 0


# -- Proofpoint TAP ----------------------------------------------------------------


def test_tap_file_counts() -> None:
    parsed, rejected = _parse_file(TAP, "proofpoint")
    assert rejected == {}
    assert [offset for _, offset in parsed] == [1, 2]


def test_tap_message_with_parts() -> None:
    observation = _by_offset(_parse_file(TAP, "proofpoint")[0])[2]
    assert observation.stage is Stage.DELIVERED
    assert observation.users == ["abc.xyz@example.com"]
    # Both parts hash the same text, so each digest appears once.
    assert _observables(observation) == [
        (T.EMAIL, "xyz-abc.us1_152023242.13741304-5fabcd4567@example.com", "email.sender.address"),
        (T.EMAIL, "client.services@example.com", "email.from.address"),
        (T.IPV4, "175.16.199.1", "source.ip"),
        (
            T.SHA256,
            "a591a6d40bf420404a011733cfb7b190d62c65bf0bcda32b57b277d9ad9f146e",
            "email.attachments.file.hash.sha256",
        ),
        (T.MD5, "b10a8db164e0754105b7a99be72e3fe5", "email.attachments.file.hash.md5"),
        (T.FILE_NAME, "text.html", "email.attachments.file.name"),
        (T.FILE_NAME, "text.txt", "email.attachments.file.name"),
        (T.URL, "example.com/view/xpxxxx6uxxxxx9y", "url.full"),
    ]
    assert observation.event_code == "RxkxxxxxlxzxkxnxxxxDxrxwxxxxx6"
    assert format_timestamp(observation.timestamp_ms) == "2022-03-15T15:00:20.000Z"


def test_tap_message_without_headers() -> None:
    observation = _by_offset(_parse_file(TAP, "proofpoint")[0])[1]
    assert observation.users == ["fhsvbui8axxxxxxui8abc256326@example.com"]
    # Two threats name the same URL; threatUrl (Proofpoint's portal) is not an observable.
    assert _observables(observation) == [
        (T.IPV4, "175.16.199.1", "source.ip"),
        (T.URL, "zbcd123456x0.example.com/", "url.full"),
    ]


def test_tap_auto_same_observations() -> None:
    assert _parse_file(TAP, "auto") == _parse_file(TAP, "proofpoint")


def _tap_message(**fields: Any) -> dict[str, Any]:
    return {
        "GUID": "guid-1",
        "messageTime": "2024-05-01T08:00:00.000Z",
        "messageParts": [],
        "threatsInfoMap": [],
        **fields,
    }


def test_tap_semicolon_list_and_quoted_comma() -> None:
    record = _tap_message(
        headerFrom='"Billing Dept" <Billing@Bad.Example.NET>',
        toAddresses='alice@example.com;"Smith, Bob" <bob@example.com>',
        ccAddresses="carol@example.com",
    )
    observation = proofpoint.adapt(record, PLAIN)
    assert observation.users == ["alice@example.com", "bob@example.com", "carol@example.com"]
    assert _observables(observation) == [(T.EMAIL, "billing@bad.example.net", "email.from.address")]
    index = IocIndex()
    index.apply(Ioc(T.EMAIL, "billing@bad.example.net", source="test"), NOW)
    index.rebuild()
    sightings = sightings_of(observation, RecordRef("mail", 0, 1), index, NOW)
    assert [sighting["ioc"]["value"] for sighting in sightings] == ["billing@bad.example.net"]
    state = new_state()
    assert apply_sighting(state, sightings[0], NOW)
    assert sorted(state["users"]) == ["alice@example.com", "bob@example.com", "carol@example.com"]


def test_tap_plus_address_identity() -> None:
    observation = proofpoint.adapt(_tap_message(recipient=["Alice+invoices@Example.com"]), PLAIN)
    assert observation.users == ["alice@example.com"]


def test_tap_envelope_recipients_preferred() -> None:
    record = _tap_message(
        recipient=["alice@example.com"], toAddresses=["partner@external.example"], ccAddresses=["list@example.com"]
    )
    assert proofpoint.adapt(record, PLAIN).users == ["alice@example.com"]


def test_tap_blocked_message_no_entity() -> None:
    record = _tap_message(recipient=["alice@example.com"], quarantineFolder="Phish", senderIP="203.0.113.7")
    observation = proofpoint.adapt(record, PLAIN)
    assert observation.users == []
    assert _observables(observation) == [(T.IPV4, "203.0.113.7", "source.ip")]


def test_tap_attachment_threat_hash() -> None:
    threat = {"threat": "CD" * 32, "threatType": "attachment", "threatUrl": "https://threatinsight.proofpoint.com/x"}
    observation = proofpoint.adapt(_tap_message(threatsInfoMap=[threat]), PLAIN)
    assert _observables(observation) == [(T.SHA256, "cd" * 32, "email.attachments.file.hash.sha256")]


def test_tap_click_event() -> None:
    record = {
        "GUID": "guid-1",
        "clickTime": "2024-05-01T08:05:00.000Z",
        "clickIP": "198.51.100.23",
        "url": "https://login.bad.example.net/a",
        "recipient": "Alice@Example.com",
        "sender": "billing@bad.example.net",
        "senderIP": "203.0.113.7",
    }
    parser = StreamParser("auto", PLAIN)
    [(observation, offset)] = _feed(parser, [record])
    assert offset == 1
    assert observation.stage is Stage.CONTACTED
    assert observation.format == "proofpoint"
    assert observation.users == ["alice@example.com"]
    assert _observables(observation) == [
        (T.URL, "login.bad.example.net/a", "url.full"),
        (T.IPV4, "198.51.100.23", "client.ip"),
        (T.EMAIL, "billing@bad.example.net", "email.sender.address"),
        (T.IPV4, "203.0.113.7", "source.ip"),
    ]


def test_tap_api_response_rejected() -> None:
    response = {"queryEndTime": "2024-05-01T08:00:00Z", "messagesDelivered": [_tap_message()], "clicksPermitted": []}
    with pytest.raises(MalformedRecordError, match="send one element of those arrays per record"):
        proofpoint.adapt(response, PLAIN)


def test_tap_wrong_part_list_type() -> None:
    with pytest.raises(MalformedRecordError, match="messageParts is str, expected a list") as caught:
        proofpoint.adapt(_tap_message(messageParts="a.txt"), PLAIN)
    assert caught.value.reason == "field_type"


# -- Hostile input -------------------------------------------------------------------

_FIELD_NAMES = sorted(
    {
        # Defender streaming envelope and table names
        "category",
        "properties",
        "records",
        "Table",
        "$table",
        "Type",
        "time",
        "tenantId",
        # Defender e-mail columns
        "Timestamp",
        "NetworkMessageId",
        "RecipientEmailAddress",
        "SenderFromAddress",
        "SenderMailFromAddress",
        "SenderIPv4",
        "SenderIPv6",
        "DeliveryAction",
        "DeliveryLocation",
        "AttachmentCount",
        "UrlCount",
        "EmailDirection",
        "FileName",
        "SHA256",
        "Url",
        "UrlDomain",
        "AccountUpn",
        "IPAddress",
        "ActionType",
        "IsClickedThrough",
        "ActionTrigger",
        "ActionResult",
        # Proofpoint TAP fields
        "GUID",
        "sender",
        "fromAddress",
        "headerFrom",
        "replyToAddress",
        "headerReplyTo",
        "recipient",
        "toAddresses",
        "ccAddresses",
        "senderIP",
        "messageParts",
        "threatsInfoMap",
        "messageTime",
        "quarantineFolder",
        "quarantineRule",
        "clickTime",
        "clickIP",
        "url",
        "threat",
        "threatType",
        "sha256",
        "md5",
        "filename",
        "messagesDelivered",
        "clicksBlocked",
    }
)
_TEXTS = st.sampled_from(
    [
        "",
        "-",
        "nmi-1",
        "alice@example.com",
        '"Smith, Bob" <bob@example.com>;carol@example.com',
        "https://login.bad.example.net/a",
        "203.0.113.7",
        "2a02:cf40::",
        "ab" * 32,
        "CD" * 16,
        "2024-05-01T08:00:00Z",
        "9" * 400,
        "AdvancedHunting-EmailEvents",
        "AdvancedHunting-EmailUrlInfo",
        "AdvancedHunting-EmailAttachmentInfo",
        "AdvancedHunting-UrlClickEvents",
        "EmailEvents",
        "Blocked",
        "ClickBlocked",
        "url",
        "attachment",
        "3",
        "\u00b2",
        "9" * 5000,
    ]
)
_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
    | _TEXTS
)
_VALUES = st.recursive(
    _LEAVES,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.sampled_from(_FIELD_NAMES), children, max_size=5)
    ),
    max_leaves=15,
)
_ROWS = st.dictionaries(st.sampled_from(_FIELD_NAMES), _VALUES, max_size=10)
_CATEGORIES = st.sampled_from([f"AdvancedHunting-{table}" for table in sorted(m365.TABLES)])
# Streaming envelopes with a valid category, so that the row inside is read whatever its type.
_ENVELOPES = st.fixed_dictionaries({"category": _CATEGORIES, "properties": _ROWS | _VALUES})
_OPTIONAL_COLUMNS = {name: _VALUES for name in _FIELD_NAMES}


def _shaped(required: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Return records with valid join columns and any value in every other column, so rows reach the join."""
    optional = {name: strategy for name, strategy in _OPTIONAL_COLUMNS.items() if name not in required}
    return st.fixed_dictionaries(required, optional=optional)


_JOINABLE = st.sampled_from(["nmi-1", "nmi-2"])
# Announced counts are the only columns parsed as numbers.
_COUNTS = st.sampled_from(["\u00b2", "9" * 5000, " 2 ", "-1", -1, 0, 1, True, 2**63 - 1]) | _VALUES
_SHAPED_ROWS = st.one_of(
    _shaped(
        {"$table": st.sampled_from(sorted(m365.TABLES)), "NetworkMessageId": _JOINABLE, "RecipientEmailAddress": _TEXTS}
    ),
    _shaped(
        {
            "$table": st.just("EmailEvents"),
            "NetworkMessageId": _JOINABLE,
            "RecipientEmailAddress": _TEXTS,
            "AttachmentCount": _COUNTS,
            "UrlCount": _COUNTS,
        }
    ),
    _shaped({"$table": st.just("EmailUrlInfo"), "NetworkMessageId": _JOINABLE, "Url": _TEXTS}),
    _shaped({"GUID": st.just("guid-1"), "messageTime": _TEXTS}),
    _shaped({"GUID": st.just("guid-1"), "clickTime": _TEXTS}),
)
_RECORDS = (
    _ROWS | _SHAPED_ROWS | _ENVELOPES | st.fixed_dictionaries({"records": st.lists(_ENVELOPES | _ROWS, max_size=3)})
)


def _parse_all_hostile(parser: StreamParser, records: list[bytes]) -> None:
    """Parse every record, then expire and flush; only MalformedRecordError may escape a record."""
    for offset, raw in enumerate(records):
        try:
            parser.parse(raw, RecordRef("t", 0, offset), NOW + offset)
        except MalformedRecordError:
            pass
    parser.expire(NOW + 5)
    parser.flush()
    assert parser.pending == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(_RECORDS, max_size=6), fmt=st.sampled_from(["auto", "m365", "proofpoint"]))
def test_hostile_json_only_malformed_escapes(records: list[dict[str, Any]], fmt: str) -> None:
    parser = StreamParser(fmt, PLAIN, join_window_ms=3, max_pending=2)
    _parse_all_hostile(parser, [orjson.dumps(record) for record in records])


_STAMPS = st.sampled_from(
    ["Nov 14 10:00:00 mx1 ", "Feb 29 10:00:00 mx1 ", "Jan 99 10:00:00 mx1 ", "2024-01-31T09:50:02Z mx1 ", "<22>"]
)
_TAGS = st.sampled_from(
    ["postfix/smtpd[1]: ", "postfix/qmgr[2]: ", "postfix/discard[3]: ", "other/smtp: ", "postfix: "]
)
_QUEUE_IDS = st.sampled_from(["A1B2C3D4E5: ", "44JCRG5tYPzCqt2: ", "NOQUEUE: ", ""])
_TEXT_PARTS = st.sampled_from(
    [
        "removed",
        "client=",
        "client=x[",
        "to=<",
        "to=<a@b>, status=sent",
        "from=<",
        "message-id=<",
        "reject: RCPT from x[",
        "uid=1 from=<a@b.example>",
        "sasl_username=",
        "[",
        "]",
        ";",
        "<>",
    ]
)
_POSTFIX_LINES = st.one_of(
    st.text(max_size=80),
    st.builds(
        lambda stamp, tag, queue_id, parts: stamp + tag + queue_id + "".join(parts),
        _STAMPS,
        _TAGS,
        _QUEUE_IDS,
        st.lists(_TEXT_PARTS | st.text(max_size=10), max_size=6),
    ),
    st.builds(lambda text: "<22>1 2024-01-31T09:50:02Z mx1 postfix/qmgr 1 - " + text, st.text(max_size=40)),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_POSTFIX_LINES, max_size=8), fmt=st.sampled_from(["auto", "postfix"]))
def test_hostile_text_only_malformed_escapes(lines: list[str], fmt: str) -> None:
    parser = StreamParser(fmt, PLAIN, join_window_ms=3, max_pending=2)
    _parse_all_hostile(parser, [line.encode("utf-8") for line in lines])
