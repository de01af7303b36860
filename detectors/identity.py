"""Entity identity: one host or one person, however the log spells it.

A false "seen elsewhere" alert comes from counting one machine or one person
twice, so every adapter passes host names and accounts through
``IdentityRules`` before they become entities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detectors.observables import (
    identity_of_email,
    is_placeholder,
    normalize_account,
    normalize_email,
    normalize_ip,
)

# Distinct host strings remembered by IdentityRules.host before the cache starts over.
HOST_CACHE_SIZE = 65_536
# The same for account strings in IdentityRules.user.
USER_CACHE_SIZE = 65_536
# Built-in Windows principals: not persons, so never a user entity.
# Event 7045 names the service account "LocalSystem", and IIS runs pools as "IIS APPPOOL\<pool>".
_SERVICE_DOMAINS = frozenset({"nt authority", "nt service", "window manager", "font driver host", "iis apppool"})
_SERVICE_USERS = frozenset(
    {"system", "localsystem", "local service", "network service", "anonymous logon", "dwm-1", "dwm-2"}
)


@dataclass(frozen=True)
class IdentityRules:
    """How host names and accounts are folded into one identity.

    ``host_aliases``: address to host name, from an asset inventory or DHCP
    leases, so events that name a machine by address count as that machine.
    ``default_domain``: DNS suffix of the organisation. A short host name gets
    it appended (``WS01`` equals ``ws01.example.com``), and a bare account
    name gets it as its domain. ``domain_map``: NetBIOS domain to DNS domain,
    such as ``{"example": "example.com"}``, so ``EXAMPLE\\alice`` equals the
    mailbox ``alice@example.com``.
    """

    default_domain: str | None = None
    domain_map: dict[str, str] = field(default_factory=dict)
    host_aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        folded = {netbios.lower(): dns.lower() for netbios, dns in self.domain_map.items()}
        object.__setattr__(self, "domain_map", folded)
        aliases = {}
        for address, name in self.host_aliases.items():
            canonical = normalize_ip(address)
            if canonical is None:
                raise ValueError(f"host alias {address!r} is not an IP address; write ADDRESS=host.name")
            aliases[canonical[1]] = self._fqdn(name.strip().rstrip(".").lower())
        object.__setattr__(self, "host_aliases", aliases)
        object.__setattr__(self, "_host_cache", {})
        object.__setattr__(self, "_user_cache", {})

    def _fqdn(self, name: str) -> str:
        if "." not in name and self.default_domain:
            return f"{name}.{self.default_domain.lower()}"
        return name

    def host(self, value: object) -> str | None:
        """Return the canonical host entity, from a bounded cache: the same hosts recur in every event."""
        cache: dict[object, str | None] = self._host_cache  # type: ignore[attr-defined]
        if isinstance(value, str):
            if value in cache:
                return cache[value]
            if len(cache) >= HOST_CACHE_SIZE:
                cache.clear()
            cache[value] = self._canonical_host(value)
            return cache[value]
        return None

    def _canonical_host(self, value: object) -> str | None:
        """Return the canonical host entity: lower-case FQDN or IP address.

        An address listed in ``host_aliases`` becomes that host's name, so a
        proxy client address and the EDR host behind it are one entity.
        Names with spaces or control characters are not host names.
        """
        if not isinstance(value, str) or is_placeholder(value):
            return None
        text = value.strip().rstrip(".").lower()
        address = normalize_ip(text)
        if address is not None:
            alias = self.host_aliases.get(address[1])
            return alias if alias is not None else address[1]
        if not text or len(text) > 255 or not text.isprintable() or " " in text:
            return None
        if "." not in text and self.default_domain:
            return f"{text}.{self.default_domain.lower()}"
        return text

    def user(self, value: object) -> str | None:
        """Return the canonical person entity for an account, or None for service principals.

        Machine accounts (``WS01$``) and built-in principals such as
        ``NT AUTHORITY\\SYSTEM`` are not persons. Results come from a
        bounded cache, because the same accounts recur in every event.
        """
        if not isinstance(value, str):
            return None
        cache: dict[str, str | None] = self._user_cache  # type: ignore[attr-defined]
        if value in cache:
            return cache[value]
        if len(cache) >= USER_CACHE_SIZE:
            cache.clear()
        identity = cache[value] = self._canonical_user(value)
        return identity

    def _canonical_user(self, value: str) -> str | None:
        if is_placeholder(value):
            return None
        text = value.strip()
        lowered = text.lower()
        if "\\" in lowered:
            domain, _, name = lowered.partition("\\")
            if domain in _SERVICE_DOMAINS:
                return None
        else:
            name = lowered.partition("@")[0]
        if not name or name.endswith("$") or name in _SERVICE_USERS or is_placeholder(name):
            return None
        if "@" in text and "\\" not in text:
            email = normalize_email(text)
            if email is not None:
                return identity_of_email(email)
        return normalize_account(text, self.domain_map, self.default_domain)

    def mailbox(self, value: object) -> str | None:
        """Return the identity of a mailbox: the address without a ``+tag``."""
        if not isinstance(value, str):
            return None
        email = normalize_email(value)
        return identity_of_email(email) if email else None
