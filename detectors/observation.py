"""The normalised observation that every source adapter produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from detectors.observables import ObservableType


class SourceKind(str, Enum):
    """Where an event came from; decides the stage an entity reached."""

    MAIL = "mail"
    PROXY = "proxy"
    EDR = "edr"
    VULN = "vuln"


class Stage(str, Enum):
    """How far an IOC got on an entity, in kill-chain order."""

    DELIVERED = "delivered"
    CONTACTED = "contacted"
    EXECUTED = "executed"


STAGE_ORDER = {Stage.DELIVERED: 1, Stage.CONTACTED: 2, Stage.EXECUTED: 3}


@dataclass(frozen=True, slots=True)
class Observable:
    """One typed, normalised value found in an event, with its ECS source field."""

    type: ObservableType
    value: str
    field: str


@dataclass(slots=True)
class Observation:
    """One raw event after parsing.

    ``hosts`` and ``users`` are the entities on whose behalf the event
    happened (normalised host names or client IPs, ``user@domain`` accounts,
    mailbox addresses). ``free_text`` holds fields such as command lines that
    are searched with the Aho-Corasick automaton rather than split into
    observables. ``attributes`` holds format-specific details that travel
    with the sighting, such as a scanner's CVSS score and severity.
    """

    source: SourceKind
    timestamp_ms: int | None
    hosts: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    observables: list[Observable] = field(default_factory=list)
    free_text: list[tuple[str, str]] = field(default_factory=list)
    stage: Stage = Stage.CONTACTED
    event_code: str | None = None
    format: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)
