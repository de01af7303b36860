"""Service settings, read once from ``YOKOTEN_*`` environment variables or a ``.env``-style file.

Every setting is defined here and nowhere else. Validation runs at start-up,
and an invalid value stops the service with a message naming the variable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.adapters import formats
from detectors.allowlist import Allowlist, parse_allowlist
from detectors.exceptions import FeedError
from detectors.identity import IdentityRules
from detectors.observation import SourceKind
from detectors.spread import DAY_MS, SpreadPolicy

log = logging.getLogger(__name__)

DEFAULT_INPUTS = "yokoten.mail:mail:auto,yokoten.proxy:proxy:auto,yokoten.edr:edr:auto"


class ConfigError(Exception):
    """A setting is missing or invalid; the message names the variable to fix."""


@dataclass(frozen=True)
class InputBinding:
    """One input topic with the source kind and record format it carries."""

    topic: str
    source: SourceKind
    format: str


def _pairs(text: str) -> dict[str, str]:
    return {
        left.strip(): right.strip()
        for left, _, right in (part.partition("=") for part in text.split(","))
        if right.strip()
    }


def identity_rules(default_domain: str | None, domain_map: str, host_aliases: str) -> IdentityRules:
    """Build the identity rules from the text form of the settings (``A=B,C=D``)."""
    return IdentityRules(default_domain, _pairs(domain_map or ""), _pairs(host_aliases or ""))


def parse_inputs(text: str) -> list[InputBinding]:
    """Parse ``topic:source:format`` entries separated by commas."""
    bindings = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        parts = entry.split(":")
        if len(parts) != 3:
            raise ValueError(f"input binding {entry!r} must be topic:source:format, such as yokoten.edr:edr:sysmon")
        topic, source, fmt = parts
        if source not in {kind.value for kind in SourceKind}:
            raise ValueError(
                f"source kind {source!r} in {entry!r} must be one of {', '.join(k.value for k in SourceKind)}"
            )
        if fmt not in formats():
            raise ValueError(f"format {fmt!r} in {entry!r} must be one of {', '.join(formats())}")
        bindings.append(InputBinding(topic, SourceKind(source), fmt))
    if not bindings:
        raise ValueError("no input topics configured")
    return bindings


class Settings(BaseSettings):
    """All yokoten settings. The environment variable of each field is ``YOKOTEN_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="YOKOTEN_", env_file=None, extra="forbid")

    bootstrap_servers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, host:port[,host:port]")
    inputs: str = Field(DEFAULT_INPUTS, description="Input bindings: topic:source:format, comma-separated")
    ioc_topic: str = Field("yokoten.iocs", description="Compacted IOC feed topic, keyed by type:value")
    sightings_topic: str = Field("yokoten.sightings", description="Matcher output, keyed by IOC")
    alerts_topic: str = Field("yokoten.alerts", description="Correlated alerts, keyed by alert id")
    dead_letter_topic: str = Field("yokoten.dead-letter", description="Rejected records with the reason in headers")
    matcher_group: str = Field("yokoten-matcher", description="Consumer group of the matcher workers")
    retro_group: str = Field("yokoten-retro-hunt", description="Consumer group of the retro-hunter on the IOC topic")
    retro_lookback_hours: float = Field(
        7 * 24, gt=0, description="How far back a retro-hunt reads the input topics, in hours (at most their retention)"
    )
    retro_batch_seconds: float = Field(
        10.0, ge=0, description="IOCs added within this many seconds share one retro-hunt pass"
    )
    correlator_id: str = Field("yokoten-correlator", description="faust application id of the correlator")
    partitions: int = Field(4, ge=1, description="Partitions of topics created by 'yokoten topics create'")
    replication_factor: int = Field(1, ge=1, description="Replication factor of created topics")
    batch_max_records: int = Field(2000, ge=1, description="Records per matcher batch")
    batch_timeout_ms: int = Field(200, ge=1, description="Longest wait for a batch, in milliseconds")
    default_domain: str | None = Field(None, description="DNS suffix that completes short host names and bare accounts")
    domain_map: str = Field("", description="NetBIOS=DNS domain pairs, comma-separated, e.g. EXAMPLE=example.com")
    host_aliases: str = Field(
        "", description="ADDRESS=host.name pairs, comma-separated, e.g. 10.20.0.11=ws01.corp.example"
    )
    min_confidence: int = Field(0, ge=0, le=100, description="IOCs with a lower confidence are not loaded")
    allowlist_files: str = Field(
        "", description="Allowlist files (plain lists or MISP warninglists), comma-separated; listed values never alert"
    )
    subdomains: bool = Field(True, description="Domain IOCs also match their subdomains")
    max_entities: int = Field(1000, ge=2, description="Hosts and users tracked per IOC before only counts grow")
    spread_window_days: float = Field(
        30.0, gt=0, description="Entities not seen for this many days before an IOC's newest sighting age out"
    )
    org_wide_hosts: int = Field(5, ge=2, description="Hosts at which an alert asks for an organisation-wide response")
    stix_sightings_topic: str = Field(
        "yokoten.stix-sightings", description="Topic for STIX 2.1 Sighting bundles; empty disables them"
    )
    metrics_port: int = Field(9308, ge=0, le=65535, description="Prometheus and health HTTP port; 0 disables it")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics and health server binds to")
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password; never logged")
    log_level: str = Field("INFO", description="Python logging level")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log lines as plain text or JSON objects")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the current batch on SIGTERM, in seconds"
    )

    @field_validator("inputs")
    @classmethod
    def _check_inputs(cls, value: str) -> str:
        parse_inputs(value)
        return value

    @field_validator("domain_map")
    @classmethod
    def _check_domain_map(cls, value: str) -> str:
        for pair in filter(None, (part.strip() for part in value.split(","))):
            if "=" not in pair:
                raise ValueError(f"domain map entry {pair!r} must be NETBIOS=dns.domain")
        return value

    @field_validator("host_aliases")
    @classmethod
    def _check_host_aliases(cls, value: str) -> str:
        identity_rules(None, "", value)
        return value

    @property
    def input_bindings(self) -> list[InputBinding]:
        return parse_inputs(self.inputs)

    def identity_rules(self) -> IdentityRules:
        return identity_rules(self.default_domain, self.domain_map, self.host_aliases)

    def allowlist(self) -> Allowlist:
        """Load the allowlist files; raise ConfigError naming a file that cannot be read."""
        return load_allowlists([Path(part.strip()) for part in self.allowlist_files.split(",") if part.strip()])

    def spread_policy(self) -> SpreadPolicy:
        return SpreadPolicy(self.max_entities, int(self.spread_window_days * DAY_MS), self.org_wide_hosts)

    def kafka_options(self) -> dict[str, object]:
        """Return the aiokafka connection options shared by consumers, producers and admin."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return options


def load_allowlists(paths: list[Path]) -> Allowlist:
    """Read allowlist files; rejected values are logged, an unreadable file raises ConfigError."""
    allowlist = Allowlist()
    for path in paths:
        try:
            entries, problems = parse_allowlist(path.read_text(encoding="utf-8", errors="replace"), path.name)
        except (OSError, FeedError) as error:
            raise ConfigError(f"YOKOTEN_ALLOWLIST_FILES: cannot use {path}: {error}") from None
        for problem in problems:
            log.warning("Allowlist value rejected: %s", problem)
        log.info("Loaded allowlist %s with %d values from %s", entries.name, len(entries), path)
        allowlist.lists.append(entries)
    return allowlist


def load_settings(env_file: Path | None = None, **overrides: object) -> Settings:
    """Read the settings; raise ConfigError naming each invalid variable."""
    try:
        if env_file is not None:
            return Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = "; ".join(
            f"YOKOTEN_{'_'.join(str(part) for part in item['loc']).upper()}: {item['msg']}" for item in error.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
