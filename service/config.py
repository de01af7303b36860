"""Service settings, read once from ``YOKOTEN_*`` environment variables or a ``.env``-style file.

Every setting is defined here and nowhere else. Validation runs at start-up,
and an invalid value stops the service with a message naming the variable.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from aiokafka.helpers import create_ssl_context
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from detectors.adapters import formats
from detectors.allowlist import Allowlist, parse_allowlist
from detectors.exceptions import FeedError
from detectors.identity import IdentityRules
from detectors.observation import SourceKind
from detectors.spread import DAY_MS, SpreadPolicy

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

log = logging.getLogger(__name__)

DEFAULT_INPUTS = "yokoten.mail:mail:auto,yokoten.proxy:proxy:auto,yokoten.edr:edr:auto"
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
SSL_PROTOCOLS = frozenset({"SSL", "SASL_SSL"})
# GSSAPI and OAUTHBEARER are left out: they need a Kerberos set-up or a token
# provider, and no setting configures either.
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_OPTIONAL_SECURITY_FIELDS = (
    "sasl_mechanism",
    "sasl_username",
    "sasl_password",
    "sasl_password_file",
    "ssl_cafile",
    "ssl_certfile",
    "ssl_keyfile",
    "ssl_password",
    "ssl_password_file",
)


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

    # hide_input_in_errors keeps passwords out of the text of validation errors.
    model_config = SettingsConfigDict(env_prefix="YOKOTEN_", env_file=None, extra="forbid", hide_input_in_errors=True)

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
    join_window_seconds: float = Field(
        300.0,
        gt=0,
        description="Longest wait for the rest of a multi-record message (Postfix, Defender) before it is matched as it is",
    )
    batch_timeout_ms: int = Field(200, ge=1, description="Longest wait for a batch, in milliseconds")
    prefilter: bool = Field(
        True,
        description="Skip parsing records whose raw text contains no IOC candidate; such records are not checked field by field",
    )
    prefilter_verify_every: int = Field(
        1000,
        ge=0,
        description="Parse every Nth record the pre-filter skipped and count any sighting it yields as a miss; 0 turns it off",
    )
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
    org_wide_hosts: int = Field(5, ge=2, description="Hosts at which an alert requests an organisation-wide response")
    stix_sightings_topic: str = Field(
        "yokoten.stix-sightings", description="Topic for STIX 2.1 Sighting bundles; empty disables them"
    )
    metrics_port: int = Field(9308, ge=0, le=65535, description="Prometheus and health HTTP port; 0 disables it")
    metrics_host: str = Field("127.0.0.1", description="Address the metrics and health server binds to")
    security_protocol: str = Field("PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL")
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: SecretStr | None = Field(None, description="SASL password; never logged")
    sasl_password_file: Path | None = Field(
        None, description="File that contains the SASL password, read at start-up; instead of sasl_password"
    )
    ssl_cafile: Path | None = Field(
        None, description="PEM file of the CA certificates that sign the broker certificates; default: system CAs"
    )
    ssl_certfile: Path | None = Field(None, description="PEM file of the client certificate for TLS client auth")
    ssl_keyfile: Path | None = Field(
        None, description="PEM file of the client private key; default: the key is in ssl_certfile"
    )
    ssl_password: SecretStr | None = Field(None, description="Password of an encrypted client key; never logged")
    ssl_password_file: Path | None = Field(
        None, description="File that contains the client key password, read at start-up; instead of ssl_password"
    )
    ssl_check_hostname: bool = Field(
        True, description="Check that each broker certificate matches the host name the client connects to"
    )
    log_level: str = Field("INFO", description="Python logging level")
    log_format: str = Field("text", pattern="^(text|json)$", description="Log lines as plain text or JSON objects")
    shutdown_timeout_s: float = Field(
        30.0, gt=0, description="Longest wait for the current batch on SIGTERM, in seconds"
    )

    _ssl_context: ssl.SSLContext | None = PrivateAttr(None)

    @field_validator(*_OPTIONAL_SECURITY_FIELDS, mode="before")
    @classmethod
    def _empty_as_unset(cls, value: object) -> object:
        # An empty variable, as templates often write for an unused option, means unset.
        return None if value == "" else value

    @field_validator("security_protocol")
    @classmethod
    def _check_security_protocol(cls, value: str) -> str:
        protocol = value.strip().upper()
        if protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"unknown security protocol {value!r}; valid protocols: {', '.join(SECURITY_PROTOCOLS)}")
        return protocol

    @field_validator("sasl_mechanism")
    @classmethod
    def _check_sasl_mechanism(cls, value: str | None) -> str | None:
        if value is None:
            return None
        mechanism = value.strip().upper()
        if mechanism not in SASL_MECHANISMS:
            raise ValueError(f"unknown SASL mechanism {value!r}; valid mechanisms: {', '.join(SASL_MECHANISMS)}")
        return mechanism

    @model_validator(mode="after")
    def _check_security(self) -> Settings:
        """Read the password files, check the SASL and TLS settings together and build the TLS context.

        Raises ConfigError, which pydantic passes through unchanged, with every
        problem found. No message contains a password.
        """
        problems = self._sasl_problems()
        problems += self._ssl_problems()
        problems += self._read_password_files()
        if not problems and self.security_protocol in SSL_PROTOCOLS:
            self._ssl_context = self._build_ssl_context()
        if problems:
            raise ConfigError(f"invalid configuration: {'; '.join(problems)}")
        return self

    def _read_password_files(self) -> list[str]:
        problems = []
        for name in ("sasl_password", "ssl_password"):
            path: Path | None = getattr(self, f"{name}_file")
            if path is None:
                continue
            variable = f"YOKOTEN_{name.upper()}"
            if getattr(self, name) is not None:
                problems.append(f"{variable} and {variable}_FILE are both set; set only one of them")
                continue
            try:
                # A line break at the end, as editors and echo write it, is not part of the password.
                secret = path.read_text(encoding="utf-8").rstrip("\r\n")
            except (OSError, UnicodeDecodeError) as error:
                problems.append(f"{variable}_FILE: cannot read {path}: {_describe_read_error(error)}")
                continue
            if not secret:
                problems.append(f"{variable}_FILE: {path} is empty")
                continue
            setattr(self, name, SecretStr(secret))
        return problems

    def _sasl_problems(self) -> list[str]:
        protocol = self.security_protocol
        if protocol in SASL_PROTOCOLS:
            missing = []
            if self.sasl_mechanism is None:
                missing.append("YOKOTEN_SASL_MECHANISM")
            if not self.sasl_username:
                missing.append("YOKOTEN_SASL_USERNAME")
            if self.sasl_password is None and self.sasl_password_file is None:
                missing.append("YOKOTEN_SASL_PASSWORD (or YOKOTEN_SASL_PASSWORD_FILE)")
            if missing:
                return [f"YOKOTEN_SECURITY_PROTOCOL is {protocol}, which needs {', '.join(missing)}"]
            return []
        stray = [
            f"YOKOTEN_{name.upper()}"
            for name in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file")
            if getattr(self, name) is not None
        ]
        if stray:
            return [
                f"{', '.join(stray)} set, but YOKOTEN_SECURITY_PROTOCOL is {protocol}, which does not use SASL; "
                "set YOKOTEN_SECURITY_PROTOCOL to SASL_PLAINTEXT or SASL_SSL, or unset them"
            ]
        return []

    def _ssl_problems(self) -> list[str]:
        protocol = self.security_protocol
        if protocol not in SSL_PROTOCOLS:
            stray = [
                f"YOKOTEN_{name.upper()}"
                for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_password", "ssl_password_file")
                if getattr(self, name) is not None
            ]
            if stray:
                return [
                    f"{', '.join(stray)} set, but YOKOTEN_SECURITY_PROTOCOL is {protocol}, which does not use TLS; "
                    "set YOKOTEN_SECURITY_PROTOCOL to SSL or SASL_SSL, or unset them"
                ]
            return []
        problems = []
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            path: Path | None = getattr(self, name)
            if path is not None and not path.is_file():
                reason = "is not a file" if path.exists() else "file not found"
                problems.append(f"YOKOTEN_{name.upper()}: {reason}: {path}")
        if self.ssl_certfile is None:
            needing_cert = [
                f"YOKOTEN_{name.upper()}"
                for name in ("ssl_keyfile", "ssl_password", "ssl_password_file")
                if getattr(self, name) is not None
            ]
            if needing_cert:
                problems.append(f"{', '.join(needing_cert)} set without YOKOTEN_SSL_CERTFILE, the client certificate")
        return problems

    def _build_ssl_context(self) -> ssl.SSLContext:
        """Build the TLS context of every Kafka client; raise ConfigError naming the file that failed."""
        try:
            context = create_ssl_context(cafile=self.ssl_cafile)
        except (ssl.SSLError, OSError) as error:
            raise ConfigError(
                f"invalid configuration: YOKOTEN_SSL_CAFILE: cannot load CA certificates from "
                f"{self.ssl_cafile or 'the system store'}: {error}"
            ) from None
        if self.ssl_certfile is not None:
            password = self.ssl_password
            try:
                # The callable returns b"" for no password, so OpenSSL fails on an
                # encrypted key instead of prompting on the terminal.
                context.load_cert_chain(
                    self.ssl_certfile,
                    self.ssl_keyfile,
                    password=lambda: password.get_secret_value() if password is not None else b"",
                )
            except (ssl.SSLError, OSError) as error:
                raise ConfigError(
                    f"invalid configuration: YOKOTEN_SSL_CERTFILE/YOKOTEN_SSL_KEYFILE: cannot load the client "
                    f"certificate {self.ssl_certfile} and key {self.ssl_keyfile or '(in the certificate file)'}: "
                    f"{error}; check YOKOTEN_SSL_PASSWORD if the key is encrypted"
                ) from None
        if not self.ssl_check_hostname:
            log.warning(
                "YOKOTEN_SSL_CHECK_HOSTNAME is false: broker certificates are checked against the CAs, "
                "but not against the broker host names"
            )
            context.check_hostname = False
        return context

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
        """Return the aiokafka connection options shared by consumers, producers and admin.

        The result contains the SASL password in clear text: pass it to the
        client, never to a log.
        """
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in SASL_PROTOCOLS:
            assert self.sasl_password is not None  # _check_security requires it
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = self.sasl_password.get_secret_value()
        if self.security_protocol in SSL_PROTOCOLS:
            options["ssl_context"] = self._ssl_context
        return options

    def faust_credentials(self) -> CredentialsT | None:
        """Return faust's ``broker_credentials`` for the same security settings, or None for PLAINTEXT."""
        import faust

        if self.security_protocol in SASL_PROTOCOLS:
            assert self.sasl_password is not None  # _check_security requires it
            # With an ssl_context, faust connects with SASL_SSL, otherwise SASL_PLAINTEXT.
            return faust.SASLCredentials(
                username=self.sasl_username,
                password=self.sasl_password.get_secret_value(),
                mechanism=self.sasl_mechanism,
                ssl_context=self._ssl_context,
            )
        if self.security_protocol == "SSL":
            return faust.SSLCredentials(self._ssl_context)
        return None


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


def _describe_read_error(error: OSError | UnicodeDecodeError) -> str:
    if isinstance(error, UnicodeDecodeError):
        return "the file is not UTF-8 text"
    return error.strerror or str(error)
