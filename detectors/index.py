"""The in-memory IOC index: exact hash tables, domain label walk, CIDR ranges and
an Aho-Corasick automaton for IOC strings inside free text.

The index is updated one record at a time from the IOC topic and queried for
every observable of every event, so lookups avoid allocation where they can.
"""

from __future__ import annotations

import ipaddress
import logging
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import Enum

import ahocorasick

from detectors.ioc import Ioc
from detectors.observables import HASH_TYPES, ObservableType, parse_url

log = logging.getLogger(__name__)

# IOC types looked for inside free text: hashes as hex runs, the others by the automaton.
_TEXT_TYPES = HASH_TYPES | {
    ObservableType.DOMAIN,
    ObservableType.URL,
    ObservableType.IPV4,
    ObservableType.IPV6,
    ObservableType.EMAIL,
    ObservableType.FILE_NAME,
}
_WORD = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-")
_PATH_OR_WORD = _WORD | frozenset("/")
_HASH_LENGTHS = frozenset({32, 40, 64, 128})
_HEX = frozenset("0123456789abcdef")
_HEX_TAIL = re.compile(r"[0-9a-f]+")
# A hash IOC enters the automaton by its first HASH_PREFIX characters only,
# and a hit is checked against the whole hex run. Full hex strings share
# almost no prefixes, so they would be most of the automaton's nodes.
HASH_PREFIX = 8
# An IPv4-mapped IPv6 address with its IPv4 part in hex (::ffff:c000:201),
# which normalize_ip turns into a dotted quad the text does not show.
_MAPPED_HEX = re.compile(r":ffff:[0-9a-f]{1,4}:[0-9a-f]")
# An IPv6 address written without "::": eight groups, or six and a dotted IPv4 tail.
_IPV6_FULL = re.compile(r"(?:[0-9a-f]{1,4}:){6}(?:[0-9a-f]{1,4}:[0-9a-f]{1,4}|[0-9]{1,3}\.)")
# Every CVE id contains this, and a CVE observable always matches (implicit IOCs).
_CVE_PROBE = "cve-"
# Below this many pending strings the small delta automaton absorbs new IOCs,
# so one pushed IOC does not rebuild the automaton of every loaded IOC.
DELTA_LIMIT = 20_000


class Change(str, Enum):
    """Outcome of applying one IOC topic record to the index."""

    ADDED = "added"
    UPDATED = "updated"
    REMOVED = "removed"
    IGNORED = "ignored"


@dataclass(frozen=True, slots=True)
class Match:
    """One IOC found in one event: the IOC and the event field it was found in."""

    ioc: Ioc
    field: str


def _now_ms() -> int:
    return int(time.time() * 1000)


class IocIndex:
    """All active IOCs of one worker.

    ``subdomains``: a domain IOC also matches its subdomains
    (``bad.example.net`` matches ``cdn.bad.example.net``), never a longer
    label (``notbad.example.net``).
    """

    def __init__(self, *, subdomains: bool = True, min_confidence: int = 0) -> None:
        self.subdomains = subdomains
        self.min_confidence = min_confidence
        self._by_key: dict[str, Ioc] = {}
        self._removed_at: dict[str, int] = {}
        self._networks: dict[int, dict[int, dict[int, Ioc]]] = {4: {}, 6: {}}
        self._main = ahocorasick.Automaton()
        self._main_words = 0
        self._delta = ahocorasick.Automaton()
        self._pending: set[str] = set()
        self._delta_dirty = False
        self._bulk = False
        self._text_keys: dict[str, list[str]] = {}
        # Automaton words that are not IOC values, with reference counts: the
        # pre-filter's URL hosts, account names and CIDR address prefixes, and
        # the first HASH_PREFIX characters of every hash IOC.
        self._probes: dict[str, int] = {}
        self._hash_prefixes: dict[str, int] = {}
        self._unprobed_count = 0
        self._ipv6_count = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def get(self, key: str) -> Ioc | None:
        return self._by_key.get(key)

    def values(self) -> Iterator[Ioc]:
        return iter(self._by_key.values())

    def count_by_type(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for ioc in self._by_key.values():
            counts[ioc.type.value] = counts.get(ioc.type.value, 0) + 1
        return counts

    # -- updates ---------------------------------------------------------

    def apply(self, ioc: Ioc, now_ms: int | None = None) -> Change:
        """Add or update ``ioc``; a revoked or expired record removes it.

        An update whose ``modified`` is older than the stored one (a late or
        replayed copy) is ignored, also after the IOC was revoked. An update
        keeps the stored tags and context (``merge_metadata``). An IOC below
        ``min_confidence`` is not loaded, and an update that drops below it
        removes the IOC.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        key = ioc.key
        current = self._by_key.get(key)
        newest = current.modified if current is not None else self._removed_at.get(key)
        if ioc.modified is not None and newest is not None and ioc.modified < newest:
            return Change.IGNORED
        if not ioc.is_active(now_ms) or not self._confident(ioc):
            if ioc.revoked and ioc.modified is not None:
                self._removed_at[key] = ioc.modified
            return Change.REMOVED if self._drop(key) else Change.IGNORED
        self._removed_at.pop(key, None)
        if current is not None:
            ioc = merge_metadata(current, ioc)
        self._by_key[key] = ioc
        if current is not None:
            network = _network_of(ioc)
            if network is not None:
                self._networks[network.version][network.prefixlen][int(network.network_address)] = ioc
            return Change.UPDATED
        self._insert(ioc, key)
        return Change.ADDED

    def _confident(self, ioc: Ioc) -> bool:
        """IOCs below ``min_confidence`` are not loaded; IOCs without a confidence are."""
        return ioc.confidence is None or ioc.confidence >= self.min_confidence

    def remove(self, key: str) -> Change:
        """Remove the IOC with topic key ``key`` (a tombstone)."""
        self._removed_at.pop(key, None)
        return Change.REMOVED if self._drop(key) else Change.IGNORED

    def expire(self, now_ms: int | None = None) -> list[str]:
        """Drop IOCs past ``valid_until``; return their keys."""
        now_ms = _now_ms() if now_ms is None else now_ms
        expired = [key for key, ioc in self._by_key.items() if not ioc.is_active(now_ms)]
        for key in expired:
            self._drop(key)
        return expired

    def _track_probes(self, ioc: Ioc, step: int) -> None:
        """Count the pre-filter words and flags of ``ioc`` in (``step`` 1) or out (``step`` -1)."""
        probes = _probes_of(ioc)
        self._unprobed_count += step * _unprobed(ioc, probes)
        self._ipv6_count += step * _is_ipv6(ioc, probes)
        table = self._hash_prefixes if ioc.type in HASH_TYPES else self._probes
        for probe in probes:
            count = table.pop(probe, 0) + step
            if count > 0:
                table[probe] = count
            if step > 0 and count == 1:
                self._add_word(probe)

    def _insert(self, ioc: Ioc, key: str) -> None:
        self._track_probes(ioc, 1)
        network = _network_of(ioc)
        if network is not None:
            table = self._networks[network.version].setdefault(network.prefixlen, {})
            table[int(network.network_address)] = ioc
            return
        if ioc.type in _TEXT_TYPES:
            keys = self._text_keys.setdefault(ioc.value, [])
            keys.append(key)  # the same string object as the _by_key key
            if ioc.type not in HASH_TYPES:
                self._add_word(ioc.value)

    def begin_bulk_load(self) -> None:
        """Stop tracking new automaton words until the next ``rebuild``, which adds every word anyway.

        For a first load of many IOCs: nothing is searchable until that
        ``rebuild``, and the load skips a set insertion and an automaton
        look-up per IOC.
        """
        self._bulk = True

    def _add_word(self, word: str) -> None:
        if self._bulk:
            return
        if word not in self._main and word not in self._pending:
            self._pending.add(word)
            self._delta_dirty = True

    def _drop(self, key: str) -> bool:
        ioc = self._by_key.pop(key, None)
        if ioc is None:
            return False
        self._track_probes(ioc, -1)
        network = _network_of(ioc)
        if network is not None:
            table = self._networks[network.version].get(network.prefixlen, {})
            table.pop(int(network.network_address), None)
            if not table:
                self._networks[network.version].pop(network.prefixlen, None)
        keys = self._text_keys.get(ioc.value)
        if keys and key in keys:
            keys.remove(key)
            if not keys:
                # The automaton keeps the string; hits are checked against _text_keys and _probes.
                del self._text_keys[ioc.value]
                if ioc.value not in self._probes and ioc.value not in self._hash_prefixes:
                    self._pending.discard(ioc.value)
        return True

    def rebuild(self) -> None:
        """Rebuild the main automaton from every text IOC and empty the delta."""
        automaton = ahocorasick.Automaton()
        for text, keys in self._text_keys.items():
            if len(keys) == 1:
                if self._by_key[keys[0]].type not in HASH_TYPES:
                    automaton.add_word(text, text)
            elif any(self._by_key[key].type not in HASH_TYPES for key in keys):
                automaton.add_word(text, text)
        for word in (*self._probes, *self._hash_prefixes):
            automaton.add_word(word, word)
        if len(automaton):
            automaton.make_automaton()
        self._main = automaton
        self._main_words = len(automaton)
        self._pending.clear()
        self._bulk = False
        self._delta = ahocorasick.Automaton()
        self._delta_dirty = False
        log.debug("Rebuilt Aho-Corasick automaton with %d strings", self._main_words)

    def prepare(self) -> None:
        """Make pending IOCs searchable; call before matching a batch."""
        if not self._delta_dirty:
            return
        if len(self._pending) > max(DELTA_LIMIT, self._main_words // 10):
            self.rebuild()
            return
        delta = ahocorasick.Automaton()
        for text in self._pending:
            delta.add_word(text, text)
        if len(delta):
            delta.make_automaton()
        self._delta = delta
        self._delta_dirty = False

    # -- lookups ---------------------------------------------------------

    def lookup(self, kind: ObservableType, value: str, now_ms: int) -> Iterator[Ioc]:
        """Yield the active IOCs that match one normalised observable."""
        ioc = self._by_key.get(f"{kind.value}:{value}")
        if ioc is not None and ioc.is_active(now_ms):
            yield ioc
        if kind is ObservableType.DOMAIN:
            if self.subdomains:
                yield from self._parent_domains(value, now_ms)
        elif kind is ObservableType.IPV4 or kind is ObservableType.IPV6:
            yield from self._networks_containing(value, now_ms)
        elif kind is ObservableType.URL:
            yield from self._url_parts(value, now_ms)

    def _parent_domains(self, domain: str, now_ms: int) -> Iterator[Ioc]:
        position = domain.find(".")
        while position >= 0:
            parent = domain[position + 1 :]
            if "." not in parent:
                return
            ioc = self._by_key.get(f"domain-name:{parent}")
            if ioc is not None and ioc.is_active(now_ms):
                yield ioc
            position = domain.find(".", position + 1)

    def _networks_containing(self, address: str, now_ms: int) -> Iterator[Ioc]:
        version = 6 if ":" in address else 4
        tables = self._networks[version]
        if not tables:
            return
        # inet_pton is strict and far cheaper than ipaddress for an address already canonical.
        try:
            packed = socket.inet_pton(socket.AF_INET6 if version == 6 else socket.AF_INET, address)
        except OSError:
            return
        number = int.from_bytes(packed, "big")
        width = 32 if version == 4 else 128
        for prefixlen, table in tables.items():
            masked = number >> (width - prefixlen) << (width - prefixlen) if prefixlen else 0
            ioc = table.get(masked)
            if ioc is not None and ioc.is_active(now_ms):
                yield ioc

    def _url_parts(self, key: str, now_ms: int) -> Iterator[Ioc]:
        url = parse_url(key)
        if url is None:
            return
        if url.query:
            ioc = self._by_key.get(f"url:{url.key_without_query}")
            if ioc is not None and ioc.is_active(now_ms):
                yield ioc
        yield from self.lookup(url.host_type, url.host, now_ms)

    def search_text(self, text: str, now_ms: int) -> Iterator[Ioc]:
        """Yield IOCs whose value appears in ``text`` on token boundaries.

        pyahocorasick's ``iter`` reports every occurrence, including ones
        inside longer tokens (``iter_long`` drops real matches in 2.3.1), so
        each hit is checked here: ``evil.example`` must not match inside
        ``notevil.example`` or ``evil.example.org``.
        """
        if not self._text_keys:
            return
        lowered = text.lower()
        for automaton in (self._main, self._delta):
            if not len(automaton) or automaton.kind != ahocorasick.AHOCORASICK:
                continue
            for end, word in automaton.iter(lowered):
                if word in self._hash_prefixes:
                    yield from self._hashes_at(lowered, end - HASH_PREFIX + 1, now_ms)
                keys = self._text_keys.get(word)
                if not keys:
                    continue
                start = end - len(word) + 1
                for key in keys:
                    ioc = self._by_key[key]
                    if ioc.type in HASH_TYPES:
                        continue
                    if ioc.is_active(now_ms) and _on_boundary(lowered, start, end, ioc.type, self.subdomains):
                        yield ioc

    def _hashes_at(self, lowered: str, start: int, now_ms: int) -> Iterator[Ioc]:
        """Yield hash IOCs equal to the hex run at ``start``, with the boundaries of ``_on_boundary``."""
        if start > 0 and (lowered[start - 1] in _WORD or lowered[start - 1] == "."):
            return
        run = _HEX_TAIL.match(lowered, start)
        if run is None:
            return
        digest = run.group()
        end = run.end()
        if len(digest) not in _HASH_LENGTHS or lowered[end : end + 1] in _WORD:
            return
        if lowered[end : end + 1] == "." and lowered[end + 1 : end + 2] in _WORD:
            return
        for key in self._text_keys.get(digest, ()):
            ioc = self._by_key[key]
            if ioc.type in HASH_TYPES and ioc.is_active(now_ms):
                yield ioc

    def has_candidate(self, lowered: str) -> bool:
        """Return True when lower-case ``lowered`` may hold a match for some IOC of the index.

        False means that no observable read from a record with this text can
        match. The text then contains none of the automaton's words as a
        substring: IOC values, URL hosts, account names, e-mail local parts
        with their ``@``, CIDR octet prefixes and hash prefixes. A hash prefix
        counts only when its whole hex run is a hash IOC. The text also
        contains no CVE id and no IPv6 or IPv4-mapped address that needs
        canonicalising. The caller handles escapes and encodings (see
        ``detectors.prefilter``). Pending IOCs count once ``prepare`` has run.
        """
        if self._unprobed_count or _CVE_PROBE in lowered or (":ffff:" in lowered and _MAPPED_HEX.search(lowered)):
            return True
        if self._ipv6_count and ("::" in lowered or (lowered.count(":") >= 6 and _IPV6_FULL.search(lowered))):
            return True
        for automaton in (self._main, self._delta):
            if not len(automaton) or automaton.kind != ahocorasick.AHOCORASICK:
                continue
            for end, word in automaton.iter(lowered):
                if word in self._text_keys or word in self._probes:
                    return True
                if word not in self._hash_prefixes:
                    continue
                start = end - HASH_PREFIX + 1
                if start > 0 and lowered[start - 1] in _HEX:
                    continue
                run = _HEX_TAIL.match(lowered, start)
                if run is not None and run.group() in self._text_keys:
                    return True
        return False


def merge_metadata(current: Ioc, update: Ioc) -> Ioc:
    """Return ``update`` with the tags and context of ``current`` kept.

    Feeds often re-publish an IOC with only the fields that changed, so tags
    add up and context keys missing from the update keep their old values;
    every other field is the update's.
    """
    tags = list(dict.fromkeys([*current.tags, *update.tags]))
    context = {**current.context, **update.context}
    return replace(update, tags=tags, context=context)


def _probes_of(ioc: Ioc) -> tuple[str, ...]:
    """Return the pre-filter words of an IOC whose value need not appear whole in a matching record.

    A URL matches through its canonical key, which can differ from the raw
    text (default port, empty path, escapes), but its host always appears.
    An account matches through identity rules, which join a domain and a
    name with a backslash and map NetBIOS domains (``CORP\\alice`` is
    ``alice@corp.example``). The last part of its user name between
    backslashes always appears in one value. An e-mail address always shows
    its local part and ``@``, while its domain may differ in case or follow
    white space. An address in a CIDR block starts with one of the block's
    octet prefixes. A hash enters by its first ``HASH_PREFIX`` characters.
    An empty tuple for a URL or an account means that no word is sure to
    appear (see ``_unprobed``).
    """
    if ioc.type is ObservableType.URL:
        host = _url_key_host(ioc.value)
        return (host,) if host else ()
    if ioc.type is ObservableType.USER:
        user = ioc.value.rpartition("@")[0] if "@" in ioc.value else ioc.value
        name = user.rstrip("\\").rpartition("\\")[2]
        return (name,) if name else ()
    if ioc.type is ObservableType.EMAIL:
        return (ioc.value.rpartition("@")[0] + "@",)
    if ioc.type in HASH_TYPES:
        return (ioc.value[:HASH_PREFIX],)
    if ioc.type is ObservableType.IPV4 and "/" in ioc.value:
        return _octet_prefixes(ipaddress.IPv4Network(ioc.value))
    return ()


def _unprobed(ioc: Ioc, probes: tuple[str, ...]) -> int:
    """Return 1 for a URL or account IOC without a pre-filter word, which every record must then pass for."""
    return int(not probes and ioc.type in (ObservableType.URL, ObservableType.USER))


def _url_key_host(key: str) -> str:
    """Return the host of a canonical URL key, ``host[:port]/path`` or ``[ipv6][:port]/path``."""
    netloc = key.partition("/")[0]
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.partition(":")[0]


def _octet_prefixes(network: ipaddress.IPv4Network) -> tuple[str, ...]:
    """Return the dotted prefixes, cut after a whole octet, that every address of ``network`` starts with.

    ``203.0.112.0/23`` gives ``203.0.112.`` and ``203.0.113.``; a /32 gives the address.
    """
    octets = -(-network.prefixlen // 8)
    shift = 32 - 8 * octets
    first = int(network.network_address) >> shift
    last = int(network.broadcast_address) >> shift
    prefixes = []
    for number in range(first, last + 1):
        parts = [str((number >> (8 * (octets - 1 - position))) & 0xFF) for position in range(octets)]
        prefixes.append(".".join(parts) + ("." if octets < 4 else ""))
    return tuple(prefixes)


def _is_ipv6(ioc: Ioc, probes: tuple[str, ...]) -> int:
    """Return 1 for an IPv6 IOC or a URL IOC on an IPv6 host (its probe is the address), else 0."""
    return int(ioc.type is ObservableType.IPV6 or (ioc.type is ObservableType.URL and any(":" in probe for probe in probes)))


def _network_of(ioc: Ioc) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if ioc.type not in (ObservableType.IPV4, ObservableType.IPV6) or "/" not in ioc.value:
        return None
    return ipaddress.ip_network(ioc.value)


def _on_boundary(text: str, start: int, end: int, kind: ObservableType, subdomains: bool) -> bool:
    """Check that text[start:end + 1] is a whole token for an IOC of ``kind``.

    A dot before the hit makes it a subdomain, which counts only for a domain
    IOC when ``subdomains`` is on, as in ``IocIndex.lookup``. A URL IOC names
    one host, so ``sub.bad.example.net/dl`` is not ``bad.example.net/dl``.
    """
    before = text[start - 1] if start > 0 else ""
    after = text[end + 1] if end + 1 < len(text) else ""
    after_next = text[end + 2] if end + 2 < len(text) else ""
    if before in _WORD:
        return False
    if before == "." and not (kind is ObservableType.DOMAIN and subdomains):
        return False
    if kind is ObservableType.EMAIL and before in ("+", "%", "."):
        return False
    if kind is ObservableType.URL and after in _PATH_OR_WORD:
        return False
    if after in _WORD:
        return False
    # "evil.example" inside "evil.example.org", "1.2.3.4" inside "1.2.3.45" or "1.2.3.4.5".
    return not (after == "." and after_next in _WORD)
