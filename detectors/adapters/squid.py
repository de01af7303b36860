"""Squid access.log lines, native and extended ("logformat") layouts.

Native: ``time elapsed client action/code bytes method URL user hierarchy/peer type``.
Extended layouts insert more columns, so the method and URL are found after
the ``ACTION/code`` column instead of at fixed positions.
"""

from __future__ import annotations

import re

from detectors.adapters.fields import emit
from detectors.exceptions import MalformedRecordError
from detectors.identity import IdentityRules
from detectors.observables import ObservableType, is_placeholder
from detectors.observation import Observation, SourceKind, Stage
from detectors.timestamps import parse_timestamp

FORMAT = "squid"

_LINE = re.compile(r"^\d{9,11}(?:\.\d{1,6})?\s+-?\d+\s+\S+\s")
_RESULT = re.compile(r"^[A-Z_]+/\d{3}$")
_METHOD = re.compile(r"^[A-Z][A-Z_-]{1,19}$")
_HTTP_VERSION = re.compile(r"^(?:HTTP/)?\d\.\d$")


def is_squid_line(line: str) -> bool:
    """Return True when ``line`` starts like a Squid access.log entry."""
    return bool(_LINE.match(line))


def _first_match(pattern: re.Pattern[str], tokens: list[str], start: int, stop: int) -> int | None:
    """Return the index of the first token in ``tokens[start:stop]`` that ``pattern`` matches, or None."""
    for index in range(start, min(stop, len(tokens))):
        if pattern.match(tokens[index]):
            return index
    return None


def _columns(line: str) -> tuple[list[str], int, int]:
    """Split a line into tokens; return them with the indexes of the ACTION/code and method columns."""
    tokens = line.split()
    if len(tokens) < 7 or not is_squid_line(line):
        raise MalformedRecordError(f"not a Squid access.log line: {line[:120]!r}", reason="syntax")
    result_index = _first_match(_RESULT, tokens, 3, 8)
    if result_index is None:
        raise MalformedRecordError(f"no ACTION/code column in Squid line: {line[:120]!r}", reason="syntax")
    method_index = _first_match(_METHOD, tokens, result_index + 1, min(len(tokens) - 1, result_index + 8))
    if method_index is None:
        raise MalformedRecordError(f"no request method in Squid line: {line[:120]!r}", reason="syntax")
    return tokens, result_index, method_index


def check(line: str, _rules: IdentityRules) -> None:
    """Raise for a line that ``adapt`` would reject."""
    _columns(line)


def adapt(line: str, rules: IdentityRules) -> Observation:
    """Turn one access.log line into an observation; the client is the entity."""
    tokens, result_index, method_index = _columns(line)
    url = tokens[method_index + 1]
    rest = tokens[method_index + 2 :]
    if rest and _HTTP_VERSION.match(rest[0]):
        rest = rest[1:]
    observation = Observation(
        source=SourceKind.PROXY,
        timestamp_ms=parse_timestamp(tokens[0]),
        stage=Stage.CONTACTED,
        event_code=tokens[result_index],
        format=FORMAT,
    )
    client = rules.host(tokens[2])
    if client is not None:
        observation.hosts.append(client)
    if rest:
        user = rules.user(rest[0])
        if user is not None:
            observation.users.append(user)
    emit(observation, ObservableType.URL, url, "url.original")
    if len(rest) > 1 and "/" in rest[1]:
        peer = rest[1].split("/", 1)[1]
        if not is_placeholder(peer):
            emit(observation, None, peer, "destination.ip", ip_only=True)
    return observation
