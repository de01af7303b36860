"""Offline replay: the detectors over log files, without a broker.

Each line of an event file is one record, matched exactly as the Kafka
matcher matches a topic record; sightings go through the same spread state
as the correlator, and alerts are written as JSON lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from detectors.adapters.stream import RecordRef, StreamParser
from detectors.allowlist import Allowlist
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.index import IocIndex
from detectors.matcher import sightings_of
from detectors.prefilter import RecordFilter
from detectors.observation import Observation, SourceKind
from detectors.spread import SpreadPolicy, apply_sighting, build_alert, new_state
from service.feed_files import read_feed

log = logging.getLogger(__name__)


@dataclass
class ReplaySummary:
    """Counts of one replay run, printed on standard error."""

    files: int = 0
    records: int = 0
    rejected: int = 0
    skipped: int = 0
    sightings: int = 0
    suppressed: int = 0
    alerts: int = 0
    iocs: int = 0
    feed_errors: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)

    def render(self) -> str:
        reasons = ", ".join(f"{reason}={count}" for reason, count in sorted(self.rejected_by_reason.items()))
        return (
            f"yokoten replay: {self.iocs} IOCs loaded ({self.feed_errors} feed errors), {self.files} files, "
            f"{self.records} records, {self.rejected} rejected{f' ({reasons})' if reasons else ''}, "
            f"{self.skipped} blank lines skipped, {self.sightings} sightings ({self.suppressed} allowlisted), {self.alerts} alerts"
        )


def load_feeds(paths: Iterable[Path], index: IocIndex, summary: ReplaySummary, now_ms: int) -> None:
    """Load IOC feed files into ``index``; feed errors are logged and counted."""
    for path in paths:
        result = read_feed(path)
        for ioc in result.iocs:
            index.apply(ioc, now_ms)
        for error in result.errors:
            log.warning("Feed %s line %d rejected (%s): %s", path, error.line, error.reason, error.message)
        summary.feed_errors += len(result.errors)
    index.rebuild()
    summary.iocs = len(index)


def _records(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip(b"\r\n")


class Replay:
    """Replays event files through the matcher and the spread state in memory."""

    def __init__(
        self,
        index: IocIndex,
        rules: IdentityRules,
        max_entities: int = 1000,
        policy: SpreadPolicy | None = None,
        allowlist: Allowlist | None = None,
        prefilter: bool = True,
    ) -> None:
        self.allowlist = allowlist
        self.index = index
        self.record_filter = RecordFilter(index) if prefilter else None
        self.rules = rules
        self.policy = policy or SpreadPolicy(max_entities=max_entities)
        self.states: dict[str, dict[str, Any]] = {}
        self.summary = ReplaySummary()

    def run_file(
        self,
        path: Path,
        fmt: str,
        source: SourceKind | None,
        alerts_out: IO[bytes],
        dead_letter: IO[bytes] | None,
    ) -> None:
        """Replay one file; alerts go to ``alerts_out``, rejected lines to ``dead_letter``.

        Each file is one stream: a Zeek header or a joined mail message never
        spans two files, and partial joins are flushed at the end of the file.
        """
        self.summary.files += 1
        self.index.prepare()
        parser = StreamParser(
            fmt, self.rules, source, prefilter=self.record_filter.may_match if self.record_filter else None
        )
        topic = str(path)
        for number, raw in _records(path):
            if not raw.strip():
                self.summary.skipped += 1
                continue
            self.summary.records += 1
            now_ms = int(time.time() * 1000)
            try:
                observations = parser.parse(raw, RecordRef(topic, 0, number), now_ms)
            except MalformedRecordError as error:
                self._reject(path, number, raw, error, dead_letter)
                continue
            self._correlate(observations, alerts_out, now_ms)
        self._correlate(parser.flush(), alerts_out, int(time.time() * 1000))

    def _correlate(self, observations: list[tuple[Observation, RecordRef]], alerts_out: IO[bytes], now_ms: int) -> None:
        for observation, ref in observations:
            for sighting in sightings_of(observation, ref, self.index, now_ms, self.allowlist):
                self.summary.sightings += 1
                self.summary.suppressed += bool(sighting.get("suppressed_by"))
                state = self.states.setdefault(sighting["ioc"]["key"], new_state())
                if apply_sighting(state, sighting, now_ms, policy=self.policy):
                    alerts_out.write(orjson.dumps(build_alert(state, now_ms, self.policy.org_wide_hosts)) + b"\n")
                    alerts_out.flush()
                    self.summary.alerts += 1

    def _reject(
        self, path: Path, number: int, raw: bytes, error: MalformedRecordError, dead_letter: IO[bytes] | None
    ) -> None:
        self.summary.rejected += 1
        self.summary.rejected_by_reason[error.reason] = self.summary.rejected_by_reason.get(error.reason, 0) + 1
        log.debug("Rejected %s line %d (%s): %s", path, number, error.reason, error)
        if dead_letter is not None:
            entry = {
                "reason": error.reason,
                "error": str(error),
                "file": str(path),
                "line": number,
                "original": raw.decode("utf-8", errors="backslashreplace"),
            }
            dead_letter.write(orjson.dumps(entry) + b"\n")
