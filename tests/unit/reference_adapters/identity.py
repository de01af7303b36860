"""IdentityRules.user without its cache, for the reference adapters."""

from __future__ import annotations

from detectors.identity import _SERVICE_DOMAINS, _SERVICE_USERS, IdentityRules
from detectors.observables import identity_of_email, is_placeholder, normalize_account, normalize_email


class UncachedRules:
    """The host, user and mailbox rules of ``rules``, with ``user`` computed afresh on every call."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules

    def host(self, value: object) -> str | None:
        return self.rules.host(value)

    def mailbox(self, value: object) -> str | None:
        return self.rules.mailbox(value)

    def user(self, value: object) -> str | None:
        if not isinstance(value, str) or is_placeholder(value):
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
        return normalize_account(text, self.rules.domain_map, self.rules.default_domain)
