"""Canonical forms of observables: the feed side and the event side must agree."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors.adapters.fields import emit
from detectors.ioc import resolve_type
from detectors.observables import (
    ObservableType,
    detect_type,
    normalize,
    normalize_cidr,
    normalize_domain,
    normalize_email,
    normalize_hash,
    normalize_ip,
    normalize_url,
    parse_url,
    refang,
    split_addresses,
)
from detectors.observation import Observation, SourceKind

MD5_T = "098f6bcd4621d373cade4e832627b4f6"
SHA1_T = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
H256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


# -- hashes -------------------------------------------------------------------


def test_hash_upper_case_folded() -> None:
    assert normalize_hash(H256.upper()) == (ObservableType.SHA256, H256)


def test_hash_whitespace_stripped() -> None:
    assert normalize_hash(f"  {MD5_T.upper()}\t") == (ObservableType.MD5, MD5_T)


def test_hash_type_from_length() -> None:
    assert normalize_hash(SHA1_T) == (ObservableType.SHA1, SHA1_T)
    assert normalize_hash("ab" * 64) == (ObservableType.SHA512, "ab" * 64)


def test_hash_wrong_length_rejected() -> None:
    assert normalize_hash(MD5_T[:-1]) is None
    assert normalize_hash(MD5_T + "0") is None


def test_hash_non_hex_rejected() -> None:
    assert normalize_hash("g" + MD5_T[1:]) is None
    assert normalize_hash("0x" + MD5_T) is None


def test_hash_named_kind_must_fit_length() -> None:
    assert normalize_hash(MD5_T, ObservableType.SHA1) is None
    assert normalize_hash(MD5_T.upper(), ObservableType.IMPHASH) == (ObservableType.IMPHASH, MD5_T)


# -- IP addresses and CIDR ----------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (" 192.0.2.1 ", (ObservableType.IPV4, "192.0.2.1")),
        ("192.0.2.1:8080", (ObservableType.IPV4, "192.0.2.1")),
        ("[192.0.2.1]:80", (ObservableType.IPV4, "192.0.2.1")),
        ("2001:DB8:0:0:0:0:0:1", (ObservableType.IPV6, "2001:db8::1")),
        ("[2001:db8::1]", (ObservableType.IPV6, "2001:db8::1")),
        ("[2001:db8::1]:443", (ObservableType.IPV6, "2001:db8::1")),
        ("fe80::1%eth0", (ObservableType.IPV6, "fe80::1")),
        ("[fe80::1%25eth0]:80", (ObservableType.IPV6, "fe80::1")),
        ("::ffff:192.0.2.1", (ObservableType.IPV4, "192.0.2.1")),
        ("::FFFF:c000:0201", (ObservableType.IPV4, "192.0.2.1")),
    ],
)
def test_ip_canonical_form(raw: str, expected: tuple[ObservableType, str]) -> None:
    assert normalize_ip(raw) == expected


@pytest.mark.parametrize("raw", ["192.0.2.256", "1.2.3", "01.2.3.4", "[2001:db8::1", "bad.example.net", "", "-"])
def test_ip_invalid_rejected(raw: str) -> None:
    assert normalize_ip(raw) is None


def test_cidr_host_bits_cleared() -> None:
    assert normalize_cidr("192.0.2.77/24") == (ObservableType.IPV4, "192.0.2.0/24")
    assert normalize_cidr("2001:db8::1/64") == (ObservableType.IPV6, "2001:db8::/64")


def test_cidr_host_prefix_kept() -> None:
    assert normalize_cidr("198.51.100.7/32") == (ObservableType.IPV4, "198.51.100.7/32")


def test_cidr_ipv4_mapped_becomes_ipv4() -> None:
    # Event addresses ::ffff:a.b.c.d become IPv4, so the block must be IPv4 to contain them.
    assert normalize_cidr("::ffff:192.0.2.0/120") == (ObservableType.IPV4, "192.0.2.0/24")


def test_cidr_without_slash_is_not_cidr() -> None:
    assert normalize_cidr("192.0.2.1") is None


# -- domains ------------------------------------------------------------------


def test_domain_case_folded() -> None:
    assert normalize_domain("BAD.Example.NET") == "bad.example.net"


def test_domain_root_dot_dropped() -> None:
    assert normalize_domain("BAD.example.NET.") == "bad.example.net"


@pytest.mark.parametrize(
    "raw", [".", "", "  ", "..", "a..b.example", "-bad.example", "localhost", "192.0.2.1", "bad.example.net:443"]
)
def test_domain_invalid_discarded(raw: str) -> None:
    assert normalize_domain(raw) is None


@pytest.mark.parametrize(
    ("unicode_name", "ascii_name"),
    [
        ("bücher.example", "xn--bcher-kva.example"),
        ("warrıors.example", "xn--warrors-ufb.example"),
        ("straße.example", "xn--strae-oqa.example"),
    ],
)
def test_domain_idna_2008_non_transitional(unicode_name: str, ascii_name: str) -> None:
    assert normalize_domain(unicode_name) == ascii_name
    assert normalize_domain(ascii_name.upper()) == ascii_name


def test_domain_dotless_i_not_folded_to_i() -> None:
    assert normalize_domain("warriors.example") != normalize_domain("warrıors.example")


def test_domain_sharp_s_not_folded_to_ss() -> None:
    assert normalize_domain("straße.example") != normalize_domain("strasse.example")


# -- URLs ---------------------------------------------------------------------


def test_url_scheme_dropped_from_key() -> None:
    assert normalize_url("http://bad.example.net/dl/payload.bin") == "bad.example.net/dl/payload.bin"
    assert normalize_url("bad.example.net/dl/payload.bin") == "bad.example.net/dl/payload.bin"


def test_url_scheme_kept_as_attribute() -> None:
    url = parse_url("HTTPS://bad.example.net/x")
    assert url is not None
    assert url.scheme == "https"


def test_url_host_lower_case_path_case_kept() -> None:
    assert normalize_url("HTTP://BAD.EXAMPLE.NET/A") == "bad.example.net/A"


def test_url_default_port_dropped() -> None:
    assert normalize_url("http://bad.example.net:80/a") == "bad.example.net/a"
    assert normalize_url("https://bad.example.net:443/x?y=1") == "bad.example.net/x?y=1"


def test_url_other_port_kept() -> None:
    assert normalize_url("https://bad.example.net:8443/x") == "bad.example.net:8443/x"
    assert normalize_url("http://bad.example.net:443/x") == "bad.example.net:443/x"


def test_url_fragment_dropped() -> None:
    assert normalize_url("http://bad.example.net/a#frag") == "bad.example.net/a"


def test_url_unreserved_escapes_decoded() -> None:
    assert normalize_url("bad.example.net/%7Euser/%41%2f") == "bad.example.net/~user/A%2F"


def test_url_empty_path_is_slash() -> None:
    assert normalize_url("http://bad.example.net") == "bad.example.net/"


def test_url_root_dot_dropped_from_host() -> None:
    assert normalize_url("http://bad.example.net./gate.php") == "bad.example.net/gate.php"


def test_url_credentials_dropped() -> None:
    assert normalize_url("http://user:pw@bad.example.net/") == "bad.example.net/"


def test_url_ipv6_host_bracketed() -> None:
    assert normalize_url("http://[2001:DB8::1]:80/a") == "[2001:db8::1]/a"


def test_url_idn_host_punycode() -> None:
    assert normalize_url("http://bücher.example/x") == "xn--bcher-kva.example/x"


def test_url_scheme_relative() -> None:
    assert normalize_url("//bad.example.net/x") == "bad.example.net/x"


def test_url_connect_domain_target() -> None:
    url = parse_url("bad.example.net:443")
    assert url is not None
    assert (url.host_type, url.host, url.port) == (ObservableType.DOMAIN, "bad.example.net", 443)


def test_url_connect_ip_target() -> None:
    url = parse_url("198.51.100.7:8443")
    assert url is not None
    assert (url.host_type, url.host, url.port) == (ObservableType.IPV4, "198.51.100.7", 8443)


@pytest.mark.parametrize("raw", ["/just/a/path", "http:///x", "-", "", "http://./x", "error:method-not-allowed"])
def test_url_without_host_rejected(raw: str) -> None:
    assert normalize_url(raw) is None


# -- e-mail -------------------------------------------------------------------


def test_email_display_name_dropped() -> None:
    assert normalize_email('"Billing Dept" <Billing@Bad.Example.NET>') == "billing@bad.example.net"


def test_email_display_name_with_comma() -> None:
    assert normalize_email('"Smith, Bob" <bob@example.com>') == "bob@example.com"


def test_email_plus_tag_kept() -> None:
    assert normalize_email("Alice+invoices@Example.com") == "alice+invoices@example.com"


def test_email_mailto_prefix_dropped() -> None:
    assert normalize_email("mailto:X@Example.COM") == "x@example.com"


@pytest.mark.parametrize(
    "raw", ["@example.com", "alice@", "a b@example.com", "alice@example.com;bob@example.com", "a,b@example.com"]
)
def test_email_invalid_rejected(raw: str) -> None:
    assert normalize_email(raw) is None


def test_split_addresses_quoted_comma() -> None:
    raw = 'alice@example.com;"Smith, Bob" <bob@example.com>'
    assert split_addresses(raw) == ["alice@example.com", '"Smith, Bob" <bob@example.com>']


def test_split_addresses_no_empty_entry() -> None:
    assert split_addresses(" ; alice@example.com,, bob@example.com; ") == ["alice@example.com", "bob@example.com"]


def test_split_addresses_semicolon_in_angle_brackets() -> None:
    assert split_addresses("Carol <carol@example.com>, dave@example.com") == [
        "Carol <carol@example.com>",
        "dave@example.com",
    ]


# -- refang -------------------------------------------------------------------


def test_refang_hxxps_keeps_https() -> None:
    assert refang("hxxps://login-bad[.]example[.]net/auth") == "https://login-bad.example.net/auth"
    assert refang("HXXPS://login-bad[.]example[.]net/auth2") == "https://login-bad.example.net/auth2"


def test_refang_hxxp_is_http() -> None:
    assert refang("hxxp://x[.]example") == "http://x.example"


def test_refang_other_scheme_kept() -> None:
    assert refang("tcp://bad[.]example[.]net:8989/c2") == "tcp://bad.example.net:8989/c2"


@pytest.mark.parametrize(
    ("defanged", "plain"),
    [
        ("bad[.]example[.]net", "bad.example.net"),
        ("bad(.)example(.)net", "bad.example.net"),
        ("bad[dot]example[DOT]net", "bad.example.net"),
        ("billing[@]bad.example.net", "billing@bad.example.net"),
        ("billing[at]bad.example.net", "billing@bad.example.net"),
        ("hxxp[:]//bad.example.net/", "http://bad.example.net/"),
        ("198.51.100[.]7", "198.51.100.7"),
    ],
)
def test_refang_tokens(defanged: str, plain: str) -> None:
    assert refang(defanged) == plain


def test_refang_then_url_key() -> None:
    assert normalize(ObservableType.URL, "hxxps://login-bad[.]example[.]net/auth") == "login-bad.example.net/auth"


# -- detect_type --------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (MD5_T.upper(), (ObservableType.MD5, MD5_T)),
        (H256, (ObservableType.SHA256, H256)),
        ("192.0.2.77/24", (ObservableType.IPV4, "192.0.2.0/24")),
        ("198.51.100.7", (ObservableType.IPV4, "198.51.100.7")),
        ("198.51.100.7:8443", (ObservableType.IPV4, "198.51.100.7")),
        ("198.51.100[.]7", (ObservableType.IPV4, "198.51.100.7")),
        ("[2001:db8::1]", (ObservableType.IPV6, "2001:db8::1")),
        ("2001:db8::1", (ObservableType.IPV6, "2001:db8::1")),
        ("hxxps://login-bad[.]example[.]net/auth", (ObservableType.URL, "login-bad.example.net/auth")),
        ("bad.example.net/dl", (ObservableType.URL, "bad.example.net/dl")),
        ("http://198.51.100.23/bins/x.arm7", (ObservableType.URL, "198.51.100.23/bins/x.arm7")),
        ("billing[at]bad.example.net", (ObservableType.EMAIL, "billing@bad.example.net")),
        ("BAD[.]example[.]NET.", (ObservableType.DOMAIN, "bad.example.net")),
        ("bad.example.net:443", (ObservableType.DOMAIN, "bad.example.net")),
        ("bücher.example", (ObservableType.DOMAIN, "xn--bcher-kva.example")),
    ],
)
def test_detect_type(raw: str, expected: tuple[ObservableType, str]) -> None:
    assert detect_type(raw) == expected


@pytest.mark.parametrize("raw", ["foo", "", ".", MD5_T + "0", "x" * 40])
def test_detect_type_unknown(raw: str) -> None:
    assert detect_type(raw) is None


# -- feed side and event side agree (property) ---------------------------------

_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True).filter(lambda label: label[2:4] != "--")
_TLD = st.from_regex(r"[a-z][a-z0-9]{1,6}", fullmatch=True)
_DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(_LABEL, min_size=1, max_size=4), _TLD)


def _event_value(kind: ObservableType | None, raw: str) -> list[tuple[ObservableType, str]]:
    observation = Observation(source=SourceKind.PROXY, timestamp_ms=None)
    emit(observation, kind, raw, "field", ip_only=kind is None)
    return [(observable.type, observable.value) for observable in observation.observables]


def _mixed_case(text: str, flips: list[bool]) -> str:
    return "".join(char.upper() if flip else char for char, flip in zip(text, flips + [False] * len(text)))


@given(_DOMAIN, st.lists(st.booleans(), max_size=80), st.booleans())
def test_domain_forms_agree(domain: str, flips: list[bool], root_dot: bool) -> None:
    written = _mixed_case(domain, flips) + ("." if root_dot else "")
    defanged = written.replace(".", "[.]", 1)
    assert resolve_type("domain", defanged) == (ObservableType.DOMAIN, domain)
    assert resolve_type(None, defanged) == (ObservableType.DOMAIN, domain)
    assert _event_value(ObservableType.DOMAIN, written) == [(ObservableType.DOMAIN, domain)]


@given(st.ip_addresses(v=4), st.integers(min_value=1, max_value=65535))
def test_ipv4_forms_agree(address: object, port: int) -> None:
    canonical = str(address)
    defanged = canonical.replace(".", "[.]")
    assert resolve_type("ip", defanged) == (ObservableType.IPV4, canonical)
    assert resolve_type(None, f"{canonical}:{port}") == (ObservableType.IPV4, canonical)
    assert _event_value(None, f"[::ffff:{canonical}]:{port}") == [(ObservableType.IPV4, canonical)]
    assert _event_value(None, f"{canonical}:{port}") == [(ObservableType.IPV4, canonical)]


@given(st.ip_addresses(v=6).filter(lambda address: address.ipv4_mapped is None), st.integers(1, 65535))
def test_ipv6_forms_agree(address: object, port: int) -> None:
    canonical = str(address)
    exploded = address.exploded.upper()  # type: ignore[attr-defined]
    assert resolve_type("ipv6", f"[{exploded}]") == (ObservableType.IPV6, canonical)
    assert resolve_type(None, exploded) == (ObservableType.IPV6, canonical)
    assert _event_value(None, f"[{exploded}]:{port}") == [(ObservableType.IPV6, canonical)]


@given(st.sampled_from([ObservableType.MD5, ObservableType.SHA1, ObservableType.SHA256]), st.data())
def test_hash_forms_agree(kind: ObservableType, data: st.DataObject) -> None:
    length = {ObservableType.MD5: 32, ObservableType.SHA1: 40, ObservableType.SHA256: 64}[kind]
    digest = data.draw(st.from_regex(rf"[0-9a-f]{{{length}}}", fullmatch=True))
    written = f" {digest.upper()} "
    assert resolve_type(kind.value, written) == (kind, digest)
    assert resolve_type("hash", written) == (kind, digest)
    assert _event_value(kind, written) == [(kind, digest)]


def test_canonical_dotted_quad_matches_ipaddress() -> None:
    import ipaddress
    import random

    from detectors.observables import _is_canonical_dotted_quad

    generator = random.Random(3)
    values = [".".join(str(generator.randint(0, 299)) for _ in range(4)) for _ in range(5000)]
    values += ["01.2.3.4", "1.2.3", "1.2.3.4.5", "0.0.0.0", "255.255.255.255", "1.2.3.04", "\u0661.2.3.4", " 1.2.3.4", "a.b.c.d"]
    for value in values:
        try:
            canonical = str(ipaddress.IPv4Address(value)) == value
        except ValueError:
            canonical = False
        assert _is_canonical_dotted_quad(value) is canonical, value
