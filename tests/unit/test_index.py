"""IocIndex: exact tables, domain label walk, CIDR ranges, lifecycle and free-text search."""

from __future__ import annotations

import pytest

from detectors.index import Change, IocIndex
from detectors.ioc import Ioc
from detectors.observables import ObservableType as T

NOW = 1_714_694_400_000  # 2024-05-03T00:00:00Z
H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
MD5_T = "098f6bcd4621d373cade4e832627b4f6"


def _index(*iocs: Ioc, subdomains: bool = True) -> IocIndex:
    index = IocIndex(subdomains=subdomains)
    for ioc in iocs:
        index.apply(ioc, now_ms=NOW)
    index.rebuild()
    return index


def _lookup(index: IocIndex, kind: T, value: str, now_ms: int = NOW) -> list[str]:
    return [ioc.key for ioc in index.lookup(kind, value, now_ms)]


def _search(index: IocIndex, text: str, now_ms: int = NOW) -> list[str]:
    return [ioc.key for ioc in index.search_text(text, now_ms)]


# -- exact lookups ------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (T.SHA256, H256),
        (T.MD5, MD5_T),
        (T.IPV4, "198.51.100.7"),
        (T.IPV6, "2001:db8::7"),
        (T.DOMAIN, "bad.example.net"),
        (T.URL, "bad.example.net/dl/payload.bin"),
        (T.EMAIL, "billing@bad.example.net"),
        (T.USER, "alice@example.com"),
        (T.FILE_NAME, "inv.exe"),
    ],
)
def test_index_exact_lookup(kind: T, value: str) -> None:
    index = _index(Ioc(kind, value))
    assert _lookup(index, kind, value) == [f"{kind.value}:{value}"]


def test_index_imphash_not_md5() -> None:
    index = _index(Ioc(T.MD5, "0123456789abcdef0123456789abcdef"))
    assert _lookup(index, T.IMPHASH, "0123456789abcdef0123456789abcdef") == []


def test_index_url_query_falls_back_to_path() -> None:
    index = _index(Ioc(T.URL, "bad.example.net/dl"))
    assert _lookup(index, T.URL, "bad.example.net/dl?id=1") == ["url:bad.example.net/dl"]


def test_index_url_finds_host_ioc() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net"), Ioc(T.IPV4, "198.51.100.7"))
    assert _lookup(index, T.URL, "bad.example.net/gate.php") == ["domain-name:bad.example.net"]
    assert _lookup(index, T.URL, "198.51.100.7:8443/") == ["ipv4-addr:198.51.100.7"]


def test_index_url_other_host_no_match() -> None:
    index = _index(Ioc(T.URL, "bad.example.net/dl"))
    assert _lookup(index, T.URL, "notbad.example.net/dl/a") == []


# -- domain label walk --------------------------------------------------------


def test_index_domain_not_inside_label() -> None:
    index = _index(Ioc(T.DOMAIN, "ample.com"))
    assert _lookup(index, T.DOMAIN, "www.example.com") == []


def test_index_domain_subdomain_matches() -> None:
    index = _index(Ioc(T.DOMAIN, "ample.com"))
    assert _lookup(index, T.DOMAIN, "cdn.ample.com") == ["domain-name:ample.com"]


def test_index_domain_deep_subdomain_matches() -> None:
    index = _index(Ioc(T.DOMAIN, "ample.com"))
    assert _lookup(index, T.DOMAIN, "a.b.cdn.ample.com") == ["domain-name:ample.com"]


def test_index_domain_subdomains_off() -> None:
    index = _index(Ioc(T.DOMAIN, "ample.com"), subdomains=False)
    assert _lookup(index, T.DOMAIN, "cdn.ample.com") == []
    assert _lookup(index, T.DOMAIN, "ample.com") == ["domain-name:ample.com"]


def test_index_domain_tld_alone_never_walked() -> None:
    index = IocIndex()
    index.apply(Ioc(T.DOMAIN, "com"), now_ms=NOW)
    assert _lookup(index, T.DOMAIN, "cdn.ample.com") == []


# -- CIDR ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.0", ["ipv4-addr:192.0.2.0/24"]),
        ("192.0.2.255", ["ipv4-addr:192.0.2.0/24"]),
        ("192.0.1.255", []),
        ("192.0.3.0", []),
    ],
)
def test_index_cidr_24_edges(address: str, expected: list[str]) -> None:
    index = _index(Ioc(T.IPV4, "192.0.2.0/24"))
    assert _lookup(index, T.IPV4, address) == expected


def test_index_cidr_32_one_address() -> None:
    index = _index(Ioc(T.IPV4, "198.51.100.7/32"))
    assert _lookup(index, T.IPV4, "198.51.100.7") == ["ipv4-addr:198.51.100.7/32"]
    assert _lookup(index, T.IPV4, "198.51.100.8") == []


def test_index_cidr_0_contains_everything() -> None:
    # resolve_type rejects blocks this broad, but an Ioc built directly must still work.
    index = _index(Ioc(T.IPV4, "0.0.0.0/0"))
    assert _lookup(index, T.IPV4, "203.0.113.1") == ["ipv4-addr:0.0.0.0/0"]


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("2001:db8::", ["ipv6-addr:2001:db8::/64"]),
        ("2001:db8::ffff:ffff:ffff:ffff", ["ipv6-addr:2001:db8::/64"]),
        ("2001:db8:0:1::", []),
    ],
)
def test_index_cidr_ipv6_64(address: str, expected: list[str]) -> None:
    index = _index(Ioc(T.IPV6, "2001:db8::/64"))
    assert _lookup(index, T.IPV6, address) == expected


def test_index_cidr_ipv4_not_in_ipv6_table() -> None:
    index = _index(Ioc(T.IPV6, "2001:db8::/64"))
    assert _lookup(index, T.IPV4, "192.0.2.1") == []


def test_index_cidr_update_replaces_ioc() -> None:
    index = _index(Ioc(T.IPV4, "192.0.2.0/24", modified=1))
    index.apply(Ioc(T.IPV4, "192.0.2.0/24", modified=2, severity="high"), now_ms=NOW)
    assert [ioc.severity for ioc in index.lookup(T.IPV4, "192.0.2.9", NOW)] == ["high"]


def test_index_cidr_tombstone_removes_range() -> None:
    index = _index(Ioc(T.IPV4, "192.0.2.0/24"))
    index.remove("ipv4-addr:192.0.2.0/24")
    assert _lookup(index, T.IPV4, "192.0.2.9") == []


# -- lifecycle ----------------------------------------------------------------


def test_index_expired_ioc_not_added() -> None:
    index = IocIndex()
    assert index.apply(Ioc(T.DOMAIN, "old.example.net", valid_until=NOW - 1), now_ms=NOW) is Change.IGNORED
    assert len(index) == 0


def test_index_ioc_expires_at_valid_until() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", valid_until=NOW + 10))
    assert _lookup(index, T.DOMAIN, "bad.example.net", NOW + 9) == ["domain-name:bad.example.net"]
    assert _lookup(index, T.DOMAIN, "bad.example.net", NOW + 10) == []


def test_index_expired_ioc_not_in_text() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", valid_until=NOW + 10))
    assert _search(index, "curl http://bad.example.net/x", NOW + 10) == []


def test_index_expired_cidr_no_match() -> None:
    index = _index(Ioc(T.IPV4, "192.0.2.0/24", valid_until=NOW + 10))
    assert _lookup(index, T.IPV4, "192.0.2.9", NOW + 10) == []


def test_index_expire_drops_keys() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", valid_until=NOW + 10), Ioc(T.DOMAIN, "ok.example.net"))
    assert index.expire(now_ms=NOW + 10) == ["domain-name:bad.example.net"]
    assert len(index) == 1


def test_index_revoked_removes() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", modified=100))
    assert index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=200, revoked=True), now_ms=NOW) is Change.REMOVED
    assert _lookup(index, T.DOMAIN, "bad.example.net") == []


def test_index_late_copy_after_revoke_ignored() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", modified=100))
    index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=200, revoked=True), now_ms=NOW)
    assert index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=100), now_ms=NOW) is Change.IGNORED
    assert _lookup(index, T.DOMAIN, "bad.example.net") == []


def test_index_newer_copy_after_revoke_restores() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", modified=100))
    index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=200, revoked=True), now_ms=NOW)
    assert index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=300), now_ms=NOW) is Change.ADDED


def test_index_older_update_ignored() -> None:
    index = _index(Ioc(T.DOMAIN, "bad.example.net", modified=200, severity="high"))
    assert index.apply(Ioc(T.DOMAIN, "bad.example.net", modified=100, severity="low"), now_ms=NOW) is Change.IGNORED
    assert index.get("domain-name:bad.example.net").severity == "high"  # type: ignore[union-attr]


def test_index_tombstone_removes() -> None:
    index = _index(Ioc(T.SHA256, H256))
    assert index.remove(f"sha256:{H256}") is Change.REMOVED
    assert _lookup(index, T.SHA256, H256) == []


def test_index_tombstone_unknown_key_ignored() -> None:
    assert IocIndex().remove("domain-name:none.example") is Change.IGNORED


# -- free text ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("notevil.example", []),
        ("evil.example.org", []),
        ("http://evil.example/x", ["domain-name:evil.example"]),
        ('"evil.example"', ["domain-name:evil.example"]),
        ("sub.evil.example", ["domain-name:evil.example"]),
        ("EVIL.EXAMPLE", ["domain-name:evil.example"]),
        ("ping evil.example.", ["domain-name:evil.example"]),
        ("evil.example:443", ["domain-name:evil.example"]),
    ],
)
def test_index_text_domain_boundaries(text: str, expected: list[str]) -> None:
    index = _index(Ioc(T.DOMAIN, "evil.example"))
    assert _search(index, text) == expected


def test_index_text_subdomains_off() -> None:
    index = _index(Ioc(T.DOMAIN, "evil.example"), subdomains=False)
    assert _search(index, "sub.evil.example") == []
    assert _search(index, "http://evil.example/x") == ["domain-name:evil.example"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("11.2.3.4", []),
        ("1.2.3.45", []),
        ("1.2.3.4.5", []),
        ("0.1.2.3.4", []),
        ("ping 1.2.3.4", ["ipv4-addr:1.2.3.4"]),
        ("connect 1.2.3.4:80", ["ipv4-addr:1.2.3.4"]),
        ("ping 1.2.3.4.", ["ipv4-addr:1.2.3.4"]),
    ],
)
def test_index_text_ip_boundaries(text: str, expected: list[str]) -> None:
    index = _index(Ioc(T.IPV4, "1.2.3.4"))
    assert _search(index, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("curl http://notbad.example.net/dl/a", []),
        ("curl http://bad.example.net/dl/a", []),
        ("curl http://sub.bad.example.net/dl", []),
        ("curl http://bad.example.net/dl", ["url:bad.example.net/dl"]),
        ("curl http://bad.example.net/dl?x=1", ["url:bad.example.net/dl"]),
    ],
)
def test_index_text_url_boundaries(text: str, expected: list[str]) -> None:
    index = _index(Ioc(T.URL, "bad.example.net/dl"))
    assert _search(index, text) == expected


def test_index_text_hash_in_command_line() -> None:
    index = _index(Ioc(T.SHA256, H256))
    command = f"certutil -hashfile C:\\x.exe SHA256 | findstr {H256.upper()}"
    assert _search(index, command) == [f"sha256:{H256}"]


def test_index_text_hash_inside_longer_hex() -> None:
    index = _index(Ioc(T.MD5, MD5_T))
    assert _search(index, "ab" + MD5_T) == []


def test_index_text_email_boundaries() -> None:
    index = _index(Ioc(T.EMAIL, "billing@bad.example.net"))
    assert _search(index, "send billing@bad.example.net") == ["email-addr:billing@bad.example.net"]
    assert _search(index, "send xbilling@bad.example.net") == []


def test_index_text_file_name_in_path() -> None:
    index = _index(Ioc(T.FILE_NAME, "inv.exe"))
    assert _search(index, "C:\\Users\\a\\Downloads\\inv.exe /s") == ["file-name:inv.exe"]
    assert _search(index, "copy inv.exe.bak") == []


def test_index_text_cidr_not_searched() -> None:
    index = _index(Ioc(T.IPV4, "192.0.2.0/24"))
    assert _search(index, "ping 192.0.2.0/24") == []


# -- main and delta automata -----------------------------------------------------


def test_index_delta_finds_new_ioc_after_prepare() -> None:
    index = _index(Ioc(T.DOMAIN, "evil.example"))
    index.apply(Ioc(T.DOMAIN, "late.example"), now_ms=NOW)
    index.prepare()
    assert _search(index, "x late.example y evil.example") == ["domain-name:evil.example", "domain-name:late.example"]


def test_index_delta_keeps_earlier_pending() -> None:
    index = _index()
    index.apply(Ioc(T.DOMAIN, "one.example"), now_ms=NOW)
    index.prepare()
    index.apply(Ioc(T.DOMAIN, "two.example"), now_ms=NOW)
    index.prepare()
    assert _search(index, "one.example two.example") == ["domain-name:one.example", "domain-name:two.example"]


def test_index_removed_main_ioc_not_reported() -> None:
    index = _index(Ioc(T.DOMAIN, "evil.example"))
    index.remove("domain-name:evil.example")
    index.prepare()
    assert _search(index, "x evil.example") == []


def test_index_removed_delta_ioc_not_reported() -> None:
    index = _index()
    index.apply(Ioc(T.DOMAIN, "late.example"), now_ms=NOW)
    index.prepare()
    index.apply(Ioc(T.DOMAIN, "late.example", modified=2, revoked=True), now_ms=NOW)
    index.prepare()
    assert _search(index, "x late.example") == []


def test_index_readded_ioc_found_again() -> None:
    index = _index(Ioc(T.DOMAIN, "evil.example"))
    index.remove("domain-name:evil.example")
    index.apply(Ioc(T.DOMAIN, "evil.example"), now_ms=NOW)
    index.prepare()
    assert _search(index, "x evil.example") == ["domain-name:evil.example"]


def test_index_same_value_two_types_one_string() -> None:
    index = _index(Ioc(T.MD5, MD5_T), Ioc(T.IMPHASH, MD5_T))
    index.remove(f"md5:{MD5_T}")
    assert _search(index, f"hash {MD5_T}") == [f"imphash:{MD5_T}"]
