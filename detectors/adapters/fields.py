"""Helpers shared by adapters: add one raw field value as a typed observable."""

from __future__ import annotations

from detectors.observables import (
    ObservableType,
    is_placeholder,
    normalize,
    normalize_domain,
    normalize_ip,
    parse_url,
)
from detectors.observation import Observable, Observation


def emit(
    observation: Observation,
    kind: ObservableType | None,
    value: object,
    field: str,
    *,
    ip_only: bool = False,
) -> None:
    """Normalise ``value`` and append it to ``observation`` when it is valid.

    ``kind=None`` with ``ip_only`` reads an IP address. A domain field that
    holds an IP address is added as an IP. Placeholders and invalid values
    are skipped: a log field is not an error because it is empty.
    """
    if not isinstance(value, str) or is_placeholder(value):
        return
    if ip_only or kind is ObservableType.DOMAIN:
        address = normalize_ip(value)
        if address is not None:
            observation.observables.append(Observable(address[0], address[1], field))
            return
        if ip_only:
            return
        domain = normalize_domain(value)
        if domain is not None:
            observation.observables.append(Observable(ObservableType.DOMAIN, domain, field))
        return
    if kind is ObservableType.URL:
        url = parse_url(value)
        if url is not None:
            observation.observables.append(Observable(ObservableType.URL, url.key, field))
        return
    if kind is None:
        return
    canonical = normalize(kind, value)
    if canonical is not None:
        observation.observables.append(Observable(kind, canonical, field))


def emit_unique(
    observation: Observation, kind: ObservableType | None, value: object, field: str, **options: bool
) -> None:
    """Emit a value unless the observation already has it under another field."""
    before = len(observation.observables)
    emit(observation, kind, value, field, **options)
    if len(observation.observables) > before:
        added = observation.observables[-1]
        if any((item.type, item.value) == (added.type, added.value) for item in observation.observables[:-1]):
            observation.observables.pop()
