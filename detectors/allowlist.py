"""Allowlists: values that never alert, such as the organisation's own domains or sanctioned services.

Feeds regularly carry benign values (a CDN, a public resolver, a cloud
provider's address range). A sighting of an allowlisted IOC is still
produced, marked with the list that suppressed it, so the suppression is
visible and counted, but it never adds an entity to the IOC's spread.

Lists come as plain text (one value per line, type detected, ``#``
comments) or as MISP warninglist JSON (``{"name", "type", "list"}`` with
type ``string``, ``hostname``, ``cidr`` or ``substring``; ``regex`` lists
are reported as unsupported).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.exceptions import FeedError
from detectors.ioc import Ioc
from detectors.observables import ObservableType, detect_type, normalize_domain, normalize_ip, parse_url, refang

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class AllowlistEntries:
    """One named list: exact values, domains (with their subdomains), networks and substrings."""

    name: str
    values: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    networks: list[Network] = field(default_factory=list)
    substrings: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.values) + len(self.domains) + len(self.networks) + len(self.substrings)

    def add(self, raw: str) -> bool:
        """Add one value of unknown type; return False when it is not a usable value."""
        text = refang(raw.strip())
        if not text:
            return False
        if "/" in text and text.replace("/", "").replace(".", "").replace(":", "").isalnum():
            try:
                self.networks.append(ipaddress.ip_network(text, strict=False))
                return True
            except ValueError:
                pass
        detected = detect_type(text.lstrip("."))
        if detected is None:
            return False
        kind, value = detected
        if kind is ObservableType.DOMAIN:
            self.domains.add(value)
        else:
            self.values.add(value)
        return True

    def covers(self, ioc: Ioc) -> bool:
        """Return True when the IOC's value is on this list."""
        value = ioc.value
        if value in self.values:
            return True
        host = _host_of(ioc)
        if host is not None:
            if any(host == domain or host.endswith("." + domain) for domain in self.domains):
                return True
            address = normalize_ip(host)
            if address is not None and self.networks:
                parsed = ipaddress.ip_address(address[1])
                if any(parsed in network for network in self.networks if network.version == parsed.version):
                    return True
        return any(substring in value for substring in self.substrings)


def _host_of(ioc: Ioc) -> str | None:
    if ioc.type is ObservableType.DOMAIN or ioc.type in (ObservableType.IPV4, ObservableType.IPV6):
        return ioc.value if "/" not in ioc.value else None
    if ioc.type is ObservableType.URL:
        url = parse_url(ioc.value)
        return url.host if url else None
    if ioc.type is ObservableType.EMAIL:
        return ioc.value.rpartition("@")[2]
    return None


@dataclass
class Allowlist:
    """Every loaded list; ``suppressing_list`` names the first list that covers an IOC."""

    lists: list[AllowlistEntries] = field(default_factory=list)

    def suppressing_list(self, ioc: Ioc) -> str | None:
        for entries in self.lists:
            if entries.covers(ioc):
                return entries.name
        return None

    def __bool__(self) -> bool:
        return any(len(entries) for entries in self.lists)


def parse_allowlist(text: str, name: str) -> tuple[AllowlistEntries, list[str]]:
    """Parse a plain list or a MISP warninglist; return the entries and one message per rejected value."""
    stripped = text.lstrip()
    if stripped.startswith("{"):
        return _parse_warninglist(stripped, name)
    entries = AllowlistEntries(name)
    problems = []
    for number, line in enumerate(text.splitlines(), start=1):
        value = line.split(" #", 1)[0].strip()
        if not value or value.startswith(("#", "//")):
            continue
        if not entries.add(value):
            problems.append(f"{name}:{number}: {value[:120]!r} is not a domain, address, range, URL, e-mail or hash")
    return entries, problems


def _parse_warninglist(text: str, name: str) -> tuple[AllowlistEntries, list[str]]:
    try:
        document: Any = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise FeedError(f"warninglist {name} is not valid JSON: {error}", reason="json") from None
    if not isinstance(document, dict) or not isinstance(document.get("list"), list):
        raise FeedError(f"warninglist {name} has no 'list' array; expected a MISP warninglist", reason="format")
    list_type = str(document.get("type", "string"))
    entries = AllowlistEntries(str(document.get("name") or name))
    problems: list[str] = []
    if list_type == "regex":
        raise FeedError(f"warninglist {entries.name} is of type regex, which is not supported", reason="unsupported")
    for value in document["list"]:
        if not isinstance(value, str):
            problems.append(f"{entries.name}: {str(value)[:60]!r} is not a string")
        elif list_type == "substring":
            entries.substrings.append(value.lower())
        elif list_type == "hostname":
            domain = normalize_domain(value.lstrip("."))
            if domain is None:
                problems.append(f"{entries.name}: {value[:120]!r} is not a host name")
            else:
                entries.domains.add(domain)
        elif not entries.add(value):
            problems.append(f"{entries.name}: {value[:120]!r} is not a usable value")
    return entries, problems
