"""Parsing an ordered stream of records: one Kafka partition or one replayed file.

Some formats need what came before a record: Zeek TSV lines need the
``#fields`` header of their file, and Postfix or Microsoft Defender for
Office records describe one message over several records that must be
joined. ``StreamParser`` keeps that context for one stream, with bounded
state and a time limit, so a partial message still yields what it has.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observation import Observation, SourceKind

DEFAULT_JOIN_WINDOW_MS = 5 * 60 * 1000
DEFAULT_MAX_PENDING = 10_000


@dataclass(frozen=True, slots=True)
class RecordRef:
    """Origin of a record: a Kafka record, or a line of a file (partition 0, offset = line number)."""

    topic: str
    partition: int
    offset: int

    def to_dict(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


class Joiner(Protocol):
    """Per-stream state of a format whose events span several records.

    ``add`` returns the observations completed by the record (often none);
    ``expire`` returns partial ones older than the join window. Every
    observation carries the ref of the record that completed or last
    extended it. Two observations may share a ref only if their entities
    differ, because the correlator recognises redeliveries by ref and
    entities. ``oldest_offset`` is the offset of the oldest record still
    buffered, so the caller never commits past it.
    """

    def add(self, record: Any, ref: RecordRef, now_ms: int) -> list[tuple[Observation, RecordRef]]: ...

    def expire(self, now_ms: int) -> list[tuple[Observation, RecordRef]]: ...

    def oldest_offset(self) -> int | None: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class RecordFormat:
    """One input format.

    ``detect`` recognises a record of the format (a dict for JSON formats, a
    str line for text formats); ``context`` is the stream's context dict.
    Exactly one of ``adapt`` (one record, one observation) and ``joiner``
    (a factory of per-stream Joiners) is set. ``header`` sees every text
    line first; it stores header lines (Zeek ``#fields``, a CSV header row)
    in the context and returns True for them, so they are not records.
    ``encoded`` returns True for a record that carries a value in an
    encoding that a search of its text cannot see (base64, JSON in a
    string), so the pre-filter lets it through. ``check`` raises the
    MalformedRecordError that ``adapt`` would raise for a record it rejects
    (a wrong field type, a log type that is not read), without building the
    observation. It runs on records the pre-filter skips, so those still
    reach the dead letter.
    ``urls`` is False when the adapter parses no URL from a value that may
    contain tabs or line breaks (see ``RecordFilter.may_match``).
    ``candidate_text`` returns the values of only the fields ``adapt`` reads
    observables from, which the pre-filter then searches instead of every
    value, or None to search every value.
    """

    name: str
    kind: str
    detect: Callable[[Any, dict[str, Any]], bool]
    adapt: Callable[[Any, IdentityRules, SourceKind | None, dict[str, Any]], Observation] | None = None
    joiner: Callable[[IdentityRules, int, int], Joiner] | None = None
    header: Callable[[str, dict[str, Any]], bool] | None = None
    encoded: Callable[[Any], bool] | None = None
    check: Callable[[Any, IdentityRules, SourceKind | None], None] | None = None
    urls: bool = True
    candidate_text: Callable[[Any], str | None] | None = None


@dataclass
class StreamParser:
    """Parses the records of one ordered stream in a fixed or detected format.

    ``prefilter`` (see ``detectors.prefilter``) receives each decoded record
    (a text line or a JSON object) of a one-record format without a header.
    When it returns False, the adapter is skipped and the record yields no
    observation. Decoding,
    format detection and the format's ``check`` can still reject it, but
    formats without a ``check`` do not check such a record's fields. Every
    ``verify_every``-th skipped record is parsed all the same, and
    ``verifying`` is True after it, so the caller can check that it really
    yields no sighting.
    """

    fmt: str
    rules: IdentityRules
    source: SourceKind | None = None
    join_window_ms: int = DEFAULT_JOIN_WINDOW_MS
    max_pending: int = DEFAULT_MAX_PENDING
    context: dict[str, Any] = field(default_factory=dict)
    prefilter: Callable[[Any, bool], bool] | None = None
    verify_every: int = 0
    skipped: int = 0
    verifying: bool = False
    _joiners: dict[str, Joiner] = field(default_factory=dict)

    def parse(self, raw: bytes | None, ref: RecordRef, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Parse one record; return the observations it completes (none for headers, buffered parts and skipped records).

        Raises MalformedRecordError when the record fits no format.
        """
        self.verifying = False
        from detectors.adapters import decode_record, find_format

        record, kind = decode_record(raw, self.fmt)
        if kind == "text":
            if self._consume_header(record):
                return []
            if record.startswith("#") and self.fmt in ("auto", "squid"):
                return []
        spec = find_format(self.fmt, kind, record, self.context)
        if spec.joiner is not None:
            joiner = self._joiners.get(spec.name)
            if joiner is None:
                joiner = self._joiners[spec.name] = spec.joiner(self.rules, self.join_window_ms, self.max_pending)
            return joiner.add(record, ref, now_ms)
        if spec.adapt is None:
            raise MalformedRecordError(f"format {spec.name!r} has no adapter", reason="unknown_format")
        if self.prefilter is not None and spec.header is None and not (spec.encoded and spec.encoded(record)):
            text = spec.candidate_text(record) if spec.candidate_text is not None else None
            if not self.prefilter(record if text is None else text, spec.urls):
                if spec.check is not None:
                    spec.check(record, self.rules, self.source)
                self.skipped += 1
                if not self.verify_every or self.skipped % self.verify_every:
                    return []
                self.verifying = True
        return [(spec.adapt(record, self.rules, self.source, self.context), ref)]

    def _consume_header(self, line: str) -> bool:
        from detectors.adapters import REGISTRY

        for spec in REGISTRY:
            if spec.header is not None and (self.fmt in ("auto", spec.name)) and spec.header(line, self.context):
                return True
        return False

    def expire(self, now_ms: int) -> list[tuple[Observation, RecordRef]]:
        """Return partial joined events older than the join window."""
        expired: list[tuple[Observation, RecordRef]] = []
        for joiner in self._joiners.values():
            expired.extend(joiner.expire(now_ms))
        return expired

    def flush(self) -> list[tuple[Observation, RecordRef]]:
        """Return every partial joined event (end of a replayed file)."""
        return self.expire(2**62)

    @property
    def pending(self) -> int:
        """Records or messages buffered by joins."""
        return sum(len(joiner) for joiner in self._joiners.values())

    def oldest_offset(self) -> int | None:
        """Offset of the oldest buffered record, or None when nothing is buffered."""
        offsets = [offset for joiner in self._joiners.values() if (offset := joiner.oldest_offset()) is not None]
        return min(offsets) if offsets else None
