"""Observable types and their canonical forms.

Feeds and event adapters both call these functions, so an observable written
in two different ways in a feed and in a log ends up as one string. Every
``normalize_*`` function returns ``None`` for a value that is missing, a
placeholder or not of the requested type; it never raises on bad input.
"""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from urllib.parse import unquote, urlsplit

import idna


class ObservableType(str, Enum):
    """Internal observable kinds; the values are the keys used on the IOC topic.

    Hash kinds are separate so that an IMPHASH never matches an MD5 IOC of the
    same length. ``threat_indicator_type`` maps them to STIX 2.1 names.
    """

    MD5 = "md5"
    SHA1 = "sha1"
    SHA256 = "sha256"
    SHA512 = "sha512"
    IMPHASH = "imphash"
    IPV4 = "ipv4-addr"
    IPV6 = "ipv6-addr"
    DOMAIN = "domain-name"
    URL = "url"
    EMAIL = "email-addr"
    USER = "user-account"
    FILE_NAME = "file-name"
    CVE = "cve"


HASH_TYPES = frozenset(
    {
        ObservableType.MD5,
        ObservableType.SHA1,
        ObservableType.SHA256,
        ObservableType.SHA512,
        ObservableType.IMPHASH,
    }
)
HASH_LENGTHS = {
    ObservableType.MD5: 32,
    ObservableType.SHA1: 40,
    ObservableType.SHA256: 64,
    ObservableType.SHA512: 128,
    ObservableType.IMPHASH: 32,
}
_HASH_BY_LENGTH = {32: ObservableType.MD5, 40: ObservableType.SHA1, 64: ObservableType.SHA256, 128: ObservableType.SHA512}

# Values that log sources write where a field has no value.
PLACEHOLDERS = frozenset({"", "-", "--", "(empty)", "unknown", "n/a", "na", "none", "null", "(null)", "nil", "?"})

_HEX = re.compile(r"[0-9a-f]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_DEFANG_SCHEME = re.compile(r"^h(?:xx|\*\*|XX)p(s?)(?=(?:\[:\]|:)//)", re.IGNORECASE)
_DEFANG_TOKENS = (
    ("[.]", "."),
    ("(.)", "."),
    ("{.}", "."),
    ("[dot]", "."),
    ("(dot)", "."),
    ("[@]", "@"),
    ("[at]", "@"),
    ("(at)", "@"),
    ("[:]", ":"),
    ("[://]", "://"),
    ("[/]", "/"),
)
_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PERCENT = re.compile(r"%([0-9A-Fa-f]{2})")
# Unquoted local part: no whitespace and none of the RFC 5322 specials, so a
# list separator or a second "@" marks text that contains more than one address.
_LOCAL_PART = re.compile(r'[^\s"(),:;<>@\[\\\]]{1,64}')
# An address with a prefix length, valid or not: "1.2.3.4/33" is a broken CIDR, not a URL.
_CIDR_LIKE = re.compile(r"[0-9a-fA-F:.]+/\d{1,3}")
_HOST_PORT = re.compile(r"(?P<host>[^:/]+):(?P<port>\d{1,5})")


def threat_indicator_type(kind: ObservableType) -> str:
    """Return the STIX 2.1 cyber-observable type name of ``kind``."""
    if kind in HASH_TYPES or kind is ObservableType.FILE_NAME:
        return "file"
    if kind is ObservableType.CVE:
        return "vulnerability"
    return kind.value


def is_placeholder(value: object) -> bool:
    """Return True for values that stand for "no value" (``-``, empty, ``unknown``)."""
    return not isinstance(value, str) or value.strip().lower() in PLACEHOLDERS


def refang(value: str) -> str:
    """Undo the usual defanging of indicators in reports.

    ``hxxp``/``hxxps`` become ``http``/``https`` and keep the ``s``; any other
    scheme is left as written. Bracketed dots, at signs and colons are restored.
    """
    text = value.strip()
    for token, plain in _DEFANG_TOKENS:
        if token in text:
            text = text.replace(token, plain)
        upper = token.upper()
        if upper != token and upper in text:
            text = text.replace(upper, plain)
    return _DEFANG_SCHEME.sub(lambda m: "http" + m.group(1).lower(), text)


# Every defanging token starts with one of these characters, so a value without
# them (and without surrounding whitespace or a defanged scheme) is not defanged.
_DEFANG_OPENERS = tuple(sorted({token[0] for token, _ in _DEFANG_TOKENS}))


def is_refanged(value: str) -> bool:
    """Return True when ``refang(value)`` is ``value`` unchanged.

    The check is cheap and conservative, so False means that ``refang`` may
    change the value, not that it will.
    """
    if value != value.strip():
        return False
    for opener in _DEFANG_OPENERS:
        if opener in value:
            return False
    # The defanged scheme needs a "://" after it once no bracket is present.
    return not (value[:1] in ("h", "H") and "://" in value)


def normalize_hash(value: str, kind: ObservableType | None = None) -> tuple[ObservableType, str] | None:
    """Lower-case and validate a hex digest; infer the algorithm from the length.

    A 32-digit value is an MD5 unless ``kind`` says IMPHASH.
    """
    if not isinstance(value, str):
        return None
    digest = value.strip().lower()
    if not digest or not _HEX.fullmatch(digest):
        return None
    if kind is None:
        inferred = _HASH_BY_LENGTH.get(len(digest))
        return (inferred, digest) if inferred else None
    if HASH_LENGTHS.get(kind) != len(digest):
        return None
    return kind, digest


_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_QUAD = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


def _is_canonical_dotted_quad(text: str) -> bool:
    """Return True for ``a.b.c.d`` with ASCII octets of at most 255 and no leading zero (already canonical)."""
    return _CANONICAL_QUAD.fullmatch(text) is not None


def is_canonical(kind: ObservableType, value: str) -> bool:
    """Return True when ``value`` is a hex digest or a plain IPv4 address already in canonical form.

    For such a value ``normalize(kind, value)`` returns ``value`` unchanged
    and ``refang`` leaves it alone, and this check costs far less than either.
    Other kinds and forms return False, which means "not known to be
    canonical", not "not canonical".
    """
    if kind in HASH_TYPES:
        return len(value) == HASH_LENGTHS[kind] and _HEX.fullmatch(value) is not None
    if kind is ObservableType.IPV4:
        return _is_canonical_dotted_quad(value)
    return False


def normalize_ip(value: str) -> tuple[ObservableType, str] | None:
    """Canonicalise an IPv4 or IPv6 address.

    Brackets, a port and an IPv6 zone are removed; an IPv4-mapped IPv6
    address becomes the IPv4 address.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or not (text[0].isdigit() or text[0] == "[" or ":" in text):
        # Host names are most of the values seen here; ipaddress would reject
        # each one by raising, which costs far more than this check.
        return None
    if _is_canonical_dotted_quad(text):
        return ObservableType.IPV4, text
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            return None
        text = text[1:end]
    elif text.count(":") == 1:
        text, port = text.split(":", 1)
        if not port.isdigit() or len(port) > 5 or int(port) > 65535:
            return None
    text = text.split("%", 1)[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return ObservableType.IPV4, str(address.ipv4_mapped)
        return ObservableType.IPV6, str(address)
    return ObservableType.IPV4, str(address)


def normalize_cidr(value: str) -> tuple[ObservableType, str] | None:
    """Canonicalise a CIDR block such as ``203.0.113.0/24`` (host bits are cleared)."""
    if not isinstance(value, str) or "/" not in value:
        return None
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        return None
    if isinstance(network, ipaddress.IPv4Network):
        return ObservableType.IPV4, str(network)
    mapped = network.network_address.ipv4_mapped
    if mapped is not None and network.prefixlen >= 96:
        # normalize_ip turns ::ffff:a.b.c.d into a.b.c.d, so the block must be IPv4 too or it never matches.
        return ObservableType.IPV4, str(ipaddress.IPv4Network((mapped, network.prefixlen - 96)))
    return ObservableType.IPV6, str(network)


def normalize_domain(value: str) -> str | None:
    """Return the lower-case ASCII (IDNA 2008 / UTS 46) form of a host name.

    The root dot is dropped; a port is not accepted here. IP addresses and
    names that are not valid host names return ``None``. Non-transitional
    processing keeps ``ß`` and the dotless ``ı`` distinct from ``ss`` and ``i``.
    """
    if not isinstance(value, str):
        return None
    name = value.strip().rstrip(".")
    if not name or len(name) > 253:
        return None
    if not name.isascii():
        try:
            name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError):
            return None
    name = name.lower()
    labels = name.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    if labels[-1].isdigit():
        return None
    return name


def _decode_unreserved(text: str) -> str:
    """Decode percent-escapes of unreserved characters and upper-case the rest (RFC 3986 6.2.2)."""

    def replace(match: re.Match[str]) -> str:
        char = chr(int(match.group(1), 16))
        return char if char in _UNRESERVED else "%" + match.group(1).upper()

    return _PERCENT.sub(replace, text)


class CanonicalUrl:
    """A URL split into the parts used for matching.

    ``key`` is ``host[:port]/path[?query]`` with the host lower-cased, the
    default port and the fragment dropped and the scheme left out, so that
    ``http://x/y`` in a feed equals ``x/y`` in a log that omits the scheme.
    """

    __slots__ = ("scheme", "host", "host_type", "port", "path", "query")

    def __init__(self, scheme: str, host: str, host_type: ObservableType, port: int | None, path: str, query: str):
        self.scheme = scheme
        self.host = host
        self.host_type = host_type
        self.port = port
        self.path = path
        self.query = query

    @property
    def key(self) -> str:
        netloc = f"[{self.host}]" if self.host_type is ObservableType.IPV6 else self.host
        if self.port is not None:
            netloc = f"{netloc}:{self.port}"
        return netloc + self.path + (f"?{self.query}" if self.query else "")

    @property
    def key_without_query(self) -> str:
        netloc = f"[{self.host}]" if self.host_type is ObservableType.IPV6 else self.host
        if self.port is not None:
            netloc = f"{netloc}:{self.port}"
        return netloc + self.path


def parse_url(value: str) -> CanonicalUrl | None:
    """Parse a URL with or without scheme, or a bare ``host:port`` CONNECT target."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 65536 or is_placeholder(text):
        return None
    if "://" not in text[:16] and not text.startswith("//"):
        text = "//" + text
    try:
        parts = urlsplit(text)
        port = parts.port
        hostname = parts.hostname
    except ValueError:
        return None
    if not hostname:
        return None
    scheme = parts.scheme.lower()
    host_ip = normalize_ip(hostname)
    if host_ip is not None:
        host_type, host = host_ip
    else:
        domain = normalize_domain(unquote(hostname))
        if domain is None:
            return None
        host_type, host = ObservableType.DOMAIN, domain
    if port is not None and _DEFAULT_PORTS.get(scheme) == port:
        port = None
    path = _decode_unreserved(parts.path) or "/"
    query = _decode_unreserved(parts.query)
    return CanonicalUrl(scheme, host, host_type, port, path, query)


def normalize_url(value: str) -> str | None:
    """Return the canonical URL key (see ``CanonicalUrl.key``)."""
    url = parse_url(value)
    return url.key if url else None


def normalize_email(value: str) -> str | None:
    """Lower-case an address and drop a display name or angle brackets.

    ``"Billing" <Billing@Bad.Example.NET>`` becomes ``billing@bad.example.net``.
    The domain part goes through ``normalize_domain``. Plus tags are kept here:
    ``identity_of_email`` strips them for entity identity only.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if "<" in text:
        start = text.rfind("<")
        end = text.find(">", start)
        if end < 0:
            return None
        text = text[start + 1 : end].strip()
    if text.lower().startswith("mailto:"):
        text = text[7:]
    local, sep, domain = text.rpartition("@")
    if not sep or not _LOCAL_PART.fullmatch(local):
        return None
    canonical_domain = normalize_domain(domain)
    if canonical_domain is None:
        return None
    return f"{local.lower()}@{canonical_domain}"


def split_addresses(value: str) -> list[str]:
    """Split an address list such as ``a@x.example;"Smith, Bob" <b@x.example>``.

    Commas and semicolons separate addresses (Outlook writes ``;``) except
    inside double quotes or angle brackets, so a display name may contain
    either. Empty entries are dropped. ``email.utils.getaddresses`` is not
    used because on Python 3.11 it returns an extra empty entry for a ``;``.
    """
    if not isinstance(value, str):
        return []
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    angle = False
    escaped = False
    for char in value:
        if escaped:
            escaped = False
        elif char == "\\" and quoted:
            escaped = True
        elif char == '"' and not angle:
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        elif char in ",;" and not quoted and not angle:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts if part.strip()]


def identity_of_email(address: str) -> str:
    """Drop a ``+tag`` from the local part, so ``alice+x@example.com`` is alice."""
    local, _, domain = address.partition("@")
    return f"{local.split('+', 1)[0]}@{domain}"


def normalize_file_name(value: str) -> str | None:
    """Return the lower-case base name of a Windows or POSIX path."""
    if not isinstance(value, str):
        return None
    name = value.strip().strip('"').replace("\\", "/").rsplit("/", 1)[-1].strip()
    if is_placeholder(name) or len(name) > 255:
        return None
    return name.lower()


def detect_type(value: str) -> tuple[ObservableType, str] | None:
    """Guess the type of a bare indicator (plain-text feeds) and normalise it.

    Order: hash, CIDR, IP, URL (has a scheme or a path), e-mail, domain.
    """
    text = refang(value)
    if not text:
        return None
    digest = normalize_hash(text)
    if digest:
        return digest
    cidr = normalize_cidr(text)
    if cidr:
        return cidr
    if _CIDR_LIKE.fullmatch(text):
        return None
    address = normalize_ip(text) if ":" not in text or text.count(":") > 1 or text.startswith("[") else None
    if address is None and text.count(":") == 1 and not text.startswith(("http", "//")):
        address = normalize_ip(text)
    if address:
        return address
    if "://" in text or "/" in text:
        url = normalize_url(text)
        return (ObservableType.URL, url) if url else None
    if "@" in text:
        email = normalize_email(text)
        return (ObservableType.EMAIL, email) if email else None
    # A feed line "host:port" names the host, as "ip:port" above names the IP.
    host_port = _HOST_PORT.fullmatch(text)
    if host_port and int(host_port.group("port")) > 65535:
        return None
    domain = normalize_domain(host_port.group("host") if host_port else text)
    return (ObservableType.DOMAIN, domain) if domain else None


def normalize(kind: ObservableType, value: str) -> str | None:
    """Normalise ``value`` as an observable of ``kind``; ``None`` if it is not one."""
    if kind in HASH_TYPES:
        digest = normalize_hash(value, kind)
        return digest[1] if digest else None
    if kind in (ObservableType.IPV4, ObservableType.IPV6):
        address = normalize_cidr(value) or normalize_ip(value)
        return address[1] if address and address[0] is kind else None
    if kind is ObservableType.DOMAIN:
        return normalize_domain(value)
    if kind is ObservableType.URL:
        return normalize_url(refang(value))
    if kind is ObservableType.EMAIL:
        return normalize_email(value)
    if kind is ObservableType.FILE_NAME:
        return normalize_file_name(value)
    if kind is ObservableType.USER:
        return normalize_account(value)
    if kind is ObservableType.CVE:
        return normalize_cve(value)
    return None


_CVE = re.compile(r"CVE-(\d{4})-(\d{4,7})", re.IGNORECASE)


def normalize_cve(value: str) -> str | None:
    """Return ``CVE-YYYY-NNNN`` in upper case, or None when ``value`` is not a CVE id."""
    if not isinstance(value, str):
        return None
    match = _CVE.fullmatch(value.strip())
    return f"CVE-{match.group(1)}-{match.group(2)}" if match else None


def normalize_account(value: str, domain_map: dict[str, str] | None = None, default_domain: str | None = None) -> str | None:
    """Return ``user@domain`` in lower case for ``DOMAIN\\user``, ``user@fqdn`` or ``user``.

    ``domain_map`` maps NetBIOS domain names (upper or lower case) to DNS
    domains; an unmapped NetBIOS name is kept as the domain part. A bare name
    gets ``default_domain`` when one is configured.
    """
    if is_placeholder(value):
        return None
    text = value.strip().lower()
    if "\\" in text:
        netbios, _, user = text.partition("\\")
        if not user or is_placeholder(user):
            return None
        mapped = (domain_map or {}).get(netbios, netbios)
        return f"{user}@{mapped}" if mapped else user
    if "@" in text:
        user, _, domain = text.rpartition("@")
        if not user:
            return None
        domain = domain.rstrip(".")
        if domain:
            return f"{user}@{domain}"
        text = user
    return f"{text}@{default_domain.lower()}" if default_domain else text
