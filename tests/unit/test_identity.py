"""Entity identity: one host and one person, however a log spells them."""

from __future__ import annotations

import pytest

from detectors.identity import IdentityRules

RULES = IdentityRules(default_domain="example.com", domain_map={"EXAMPLE": "example.com"})


def test_host_short_name_gets_default_domain() -> None:
    assert RULES.host("WS01") == "ws01.example.com"


def test_host_fqdn_equals_short_name() -> None:
    assert RULES.host("ws01.example.com") == RULES.host("WS01")


def test_host_root_dot_and_case_folded() -> None:
    assert RULES.host("WS01.EXAMPLE.COM.") == "ws01.example.com"


def test_host_other_domain_kept() -> None:
    assert RULES.host("ws01.other.example") == "ws01.other.example"


def test_host_short_name_without_default_domain() -> None:
    assert IdentityRules().host("WS01") == "ws01"


def test_host_ip_address_canonical() -> None:
    assert RULES.host("::ffff:192.0.2.5") == "192.0.2.5"


@pytest.mark.parametrize("value", ["-", "", "   ", ".", "ws 01", None, 5])
def test_host_placeholder_is_none(value: object) -> None:
    assert RULES.host(value) is None


@pytest.mark.parametrize(
    "account", ["EXAMPLE\\Alice", "example\\alice", "alice@example.com", "Alice@Example.COM", "alice"]
)
def test_user_one_identity_for_alice(account: str) -> None:
    assert RULES.user(account) == "alice@example.com"


def test_user_plus_tag_stripped() -> None:
    assert RULES.user("Alice+invoices@Example.com") == "alice@example.com"


def test_user_unmapped_netbios_domain_kept() -> None:
    assert RULES.user("OTHER\\alice") == "alice@other"


def test_user_empty_domain_part_is_bare_name() -> None:
    assert RULES.user("alice@") == "alice@example.com"


@pytest.mark.parametrize(
    "account",
    [
        "NT AUTHORITY\\SYSTEM",
        "nt authority\\network service",
        "NT AUTHORITY\\LocalService",
        "NT SERVICE\\TrustedInstaller",
        "Window Manager\\DWM-1",
        "IIS APPPOOL\\DefaultAppPool",
        "SYSTEM",
        "LocalSystem",
        "ANONYMOUS LOGON",
    ],
)
def test_user_service_principal_is_none(account: str) -> None:
    assert RULES.user(account) is None


@pytest.mark.parametrize("account", ["WS01$", "EXAMPLE\\WS01$", "ws01$@example.com"])
def test_user_machine_account_is_none(account: str) -> None:
    assert RULES.user(account) is None


@pytest.mark.parametrize("account", ["-", "", "EXAMPLE\\", "EXAMPLE\\-", "@example.com", None])
def test_user_placeholder_is_none(account: object) -> None:
    assert RULES.user(account) is None


def test_mailbox_plus_tag_stripped() -> None:
    assert RULES.mailbox("Alice+invoices@Example.com") == "alice@example.com"


def test_mailbox_display_name_dropped() -> None:
    assert RULES.mailbox('"Smith, Bob" <Bob@Example.com>') == "bob@example.com"


def test_mailbox_equals_windows_account() -> None:
    assert RULES.mailbox("Alice+invoices@Example.com") == RULES.user("EXAMPLE\\Alice")


@pytest.mark.parametrize("value", ["-", "", "alice@example.com;bob@example.com", None])
def test_mailbox_invalid_is_none(value: object) -> None:
    assert RULES.mailbox(value) is None
