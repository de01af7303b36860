"""Prometheus metrics. Labels are low-cardinality only: never an IOC value or a host name."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("yokoten_events_consumed_total", "Input records consumed by the matcher", ["source"])
RECORDS_REJECTED = Counter(
    "yokoten_records_rejected_total", "Records sent to the dead-letter topic", ["source", "reason"]
)
RECORDS_PREFILTERED = Counter(
    "yokoten_records_prefiltered_total",
    "Input records not parsed because their text contains no IOC candidate",
    ["source"],
)
PREFILTER_MISSES = Counter(
    "yokoten_prefilter_misses_total",
    "Records the pre-filter skipped that the sampled check parsed and found sightings in",
)
MATCHES = Counter("yokoten_matches_total", "IOC matches (one per IOC and event)", ["ioc_type", "source"])
SIGHTINGS_SUPPRESSED = Counter(
    "yokoten_sightings_suppressed_total", "Sightings of allowlisted IOCs, which never alert", ["allowlist"]
)
SIGHTINGS_PRODUCED = Counter("yokoten_sightings_produced_total", "Sightings acknowledged by the broker")
ALERTS = Counter("yokoten_alerts_total", "Alerts published, first and updated", ["severity"])
IOCS_LOADED = Gauge("yokoten_iocs_loaded", "Active IOCs held in memory", ["type"])
IOC_UPDATES = Counter("yokoten_ioc_updates_total", "IOC topic records applied", ["change"])
IOC_FEED_ERRORS = Counter("yokoten_ioc_feed_errors_total", "IOC topic records that could not be used", ["reason"])
IOC_NEWEST_SECONDS = Gauge(
    "yokoten_ioc_newest_record_timestamp_seconds", "Kafka timestamp of the newest IOC topic record applied"
)
BATCH_SECONDS = Histogram(
    "yokoten_batch_duration_seconds",
    "Time to match one batch and get its sightings acknowledged",
    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
BATCH_RETRIES = Counter("yokoten_batch_retries_total", "Batches re-read after a failed produce or commit")
EVENT_DELAY_SECONDS = Histogram(
    "yokoten_event_delay_seconds",
    "Delay from the Kafka record timestamp to the end of matching",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
CONSUMER_LAG = Gauge(
    "yokoten_consumer_lag", "Records between the matcher position and the partition end", ["topic", "partition"]
)
RETRO_RECORDS = Counter("yokoten_retro_hunt_records_total", "Input records re-read by retro-hunt passes")
RETRO_PASSES = Counter("yokoten_retro_hunt_passes_total", "Retro-hunt passes completed")
JOIN_PENDING = Gauge("yokoten_join_pending", "Records or messages buffered by multi-record joins (Postfix, Defender)")
READY = Gauge("yokoten_ready", "1 once the IOC set is loaded and partitions are assigned")


class SourceCounters:
    """The counter children labelled with one source kind, resolved once instead of per record.

    ``labels()`` builds a label tuple and takes a lock on every call
    (prometheus_client 0.26). The children stay valid because nothing
    removes the series of these counters.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.consumed = EVENTS_CONSUMED.labels(source=source)
        self.prefiltered = RECORDS_PREFILTERED.labels(source=source)
        self._matches: dict[str, Counter] = {}
        self._rejected: dict[str, Counter] = {}

    def matches(self, ioc_type: str) -> Counter:
        """Return the MATCHES child of ``ioc_type`` and this source."""
        child = self._matches.get(ioc_type)
        if child is None:
            child = self._matches[ioc_type] = MATCHES.labels(ioc_type=ioc_type, source=self.source)
        return child

    def rejected(self, reason: str) -> Counter:
        """Return the RECORDS_REJECTED child of this source and ``reason``."""
        child = self._rejected.get(reason)
        if child is None:
            child = self._rejected[reason] = RECORDS_REJECTED.labels(source=self.source, reason=reason)
        return child


_SUPPRESSED: dict[str, Counter] = {}


def sightings_suppressed(allowlist: str) -> Counter:
    """Return the SIGHTINGS_SUPPRESSED child of one allowlist, resolved on first use."""
    child = _SUPPRESSED.get(allowlist)
    if child is None:
        child = _SUPPRESSED[allowlist] = SIGHTINGS_SUPPRESSED.labels(allowlist=allowlist)
    return child


def publish_ioc_counts(counts: dict[str, int]) -> None:
    """Set the IOC gauge for every type, zeroing types that are no longer loaded."""
    from detectors.observables import ObservableType

    for kind in ObservableType:
        IOCS_LOADED.labels(type=kind.value).set(counts.get(kind.value, 0))
