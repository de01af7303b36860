"""Tests of the plain-text and CSV IOC feed parsers."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.feeds import FEED_FORMATS, FeedResult, detect_feed_format, parse_feed
from detectors.feeds.csv import parse_csv
from detectors.feeds.plain import parse_plain
from detectors.ioc import Ioc
from detectors.observables import ObservableType

REAL = Path(__file__).resolve().parents[2].parent / "shared" / "real"
ABUSECH = REAL / "ioc" / "abusech"
PLAINTEXT = REAL / "ioc" / "plaintext"
SHA256_OF_TEST = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
# Pieces that hypothesis joins into text full of quoting, comment and defanging edge cases.
FEED_FRAGMENTS = ['"', ",", "#", "\n", "\r", "\t", ";", "[.]", "hxxp://", ":", "/", "a", "1", "value,type"]

PLAIN_FEED = "\n".join(
    [
        "# yokoten test list",  # 1
        "",  # 2
        "hxxps://login-bad[.]example[.]net/auth",  # 3
        "HXXPS://login-bad[.]example[.]net/auth2",  # 4
        "tcp://bad[.]example[.]net:8989/c2",  # 5
        "bad[.]example[.]net   # phishing sender domain",  # 6
        "198.51.100[.]7",  # 7
        "203.0.113.0/24",  # 8
        "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08",  # 9
        "098f6bcd4621d373cade4e832627b4f6",  # 10
        "billing[@]bad[.]example[.]net",  # 11
        "// analyst note",  # 12
        "not an indicator!",  # 13
        "http://bad.example.net/#/invoice",  # 14
        "hxxp[:]//c2(.)example[dot]org/gate",  # 15
        "   ",  # 16
        "ops[at]example[.]org",  # 17
    ]
)

URLHAUS_HEADER = "# id,dateadded,url,url_status,last_online,threat,tags,urlhaus_link,reporter"
URLHAUS_ROW_1 = (
    '"3000001","2024-05-01 10:00:00","http://198.51.100.23/bins/x.arm7","online","","malware_download",'
    '"elf,mirai","https://urlhaus.abuse.ch/url/3000001/","example_reporter"'
)
URLHAUS_ROW_2 = (
    '"3000002","2024-05-01 10:05:00","http://bad.example.net/#/invoice","online","","malware_download",'
    '"","https://urlhaus.abuse.ch/url/3000002/","example_reporter"'
)
URLHAUS_FEED = "\n".join(
    ["#" * 40, "# URLhaus Database Dump (CSV)", "#", URLHAUS_HEADER, URLHAUS_ROW_1, URLHAUS_ROW_2, "# END 2 entries"]
)

THREATFOX_FEED = "\n".join(
    [
        "################################################################",
        "# ThreatFox IOCs: CSV export (test rows)                       #",
        '# "first_seen_utc","ioc_id","ioc_value","ioc_type","threat_type","fk_malware","malware_alias",'
        '"malware_printable","last_seen_utc","confidence_level","reference","tags","anonymous","reporter"',
        '"2022-08-05 11:40:15", "841508", "2001:db8:1::5:40669", "ip:port", "botnet_cc", "win.redline_stealer", '
        '"None", "RedLine Stealer", "", "100", "None", "RedLineStealer", "0", "abuse_ch"',
        '"2022-08-05 11:36:10 UTC", "841507", "198.51.100.9:443", "ip:port", "botnet_cc", "win.cobalt_strike", '
        '"None", "Cobalt Strike", "", "75", "None", "c2,CobaltStrike", "0", "example_reporter"',
        '"2022-08-05 11:30:00", "841506", "c2.example.org", "domain", "botnet_cc", "apk.hydra", '
        '"None", "Hydra", "", "50", "None", "None", "0", "example_reporter"',
        '"2022-08-05 11:20:00", "841505", "9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08", '
        '"sha256_hash", "payload", "win.agent_tesla", "None", "Agent Tesla", "", "100", "None", "exe", "0", "x"',
        '"2022-08-05 11:10:00", "841504", "c2.example.org:8080", "ip:port", "botnet_cc", "win.agent_tesla", '
        '"None", "Agent Tesla", "", "100", "None", "None", "0", "x"',
    ]
)

GENERIC_FEED = "\n".join(
    [
        "value,type,confidence,severity,tags,tlp,first_seen,valid_until,source,comment",  # 1
        'bad.example.net,domain,80,high,"phishing,kit",TLP:AMBER,'  # 2
        "2024-05-01T00:00:00Z,2024-12-31T00:00:00Z,,note 1",
        "198.51.100.7,ip,,,,,,,partner-feed,",  # 3
        ",domain,,,,,,,,empty value",  # 4
        "bad.example.net,domain,170,,,,,,,",  # 5
        "evil.example.org,ip,,,,,,,,",  # 6
        "evil.example.org,filehash-sha256,,,,,,,,",  # 7
        "# a comment between rows",  # 8
        "not a value!,,,,,,,,,",  # 9
        "ops@example.org,email,,low,,,,,,",  # 10
    ]
)


def by_key(result: FeedResult) -> dict[str, Ioc]:
    return {ioc.key: ioc for ioc in result.iocs}


def read_real(path: Path) -> str:
    if not path.exists():
        pytest.skip("../shared/real not present: real feed samples are read in place and not shipped")
    return path.read_text(encoding="utf-8")


# Plain lists


@pytest.fixture(scope="module")
def plain_result() -> FeedResult:
    return parse_feed(PLAIN_FEED, "plain", source="test-list")


@pytest.mark.parametrize(
    ("key", "kind"),
    [
        ("url:login-bad.example.net/auth", ObservableType.URL),
        ("url:login-bad.example.net/auth2", ObservableType.URL),
        ("url:bad.example.net:8989/c2", ObservableType.URL),
        ("domain-name:bad.example.net", ObservableType.DOMAIN),
        ("ipv4-addr:198.51.100.7", ObservableType.IPV4),
        ("ipv4-addr:203.0.113.0/24", ObservableType.IPV4),
        ("sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", ObservableType.SHA256),
        ("md5:098f6bcd4621d373cade4e832627b4f6", ObservableType.MD5),
        ("email-addr:billing@bad.example.net", ObservableType.EMAIL),
        ("url:bad.example.net/", ObservableType.URL),
        ("url:c2.example.org/gate", ObservableType.URL),
        ("email-addr:ops@example.org", ObservableType.EMAIL),
    ],
)
def test_plain_indicator_loaded(plain_result: FeedResult, key: str, kind: ObservableType) -> None:
    iocs = by_key(plain_result)
    assert key in iocs
    assert iocs[key].type is kind


def test_plain_ioc_count(plain_result: FeedResult) -> None:
    assert len(plain_result.iocs) == 12


def test_plain_garbage_line_error(plain_result: FeedResult) -> None:
    assert [(error.line, error.reason) for error in plain_result.errors] == [(13, "value")]
    assert "'not an indicator!'" in plain_result.errors[0].message


def test_plain_comments_and_blanks_skipped(plain_result: FeedResult) -> None:
    assert plain_result.skipped == 4


def test_plain_source_applied(plain_result: FeedResult) -> None:
    assert {ioc.source for ioc in plain_result.iocs} == {"test-list"}


def test_plain_url_fragment_kept_in_context(plain_result: FeedResult) -> None:
    assert by_key(plain_result)["url:bad.example.net/"].context == {"raw_value": "http://bad.example.net/#/invoice"}


def test_plain_defanged_value_kept_in_context(plain_result: FeedResult) -> None:
    ioc = by_key(plain_result)["url:bad.example.net:8989/c2"]
    assert ioc.context == {"raw_value": "tcp://bad[.]example[.]net:8989/c2"}


def test_plain_canonical_value_has_no_context(plain_result: FeedResult) -> None:
    assert by_key(plain_result)["md5:098f6bcd4621d373cade4e832627b4f6"].context == {}


def test_plain_source_defaults_to_name() -> None:
    result = parse_plain("bad.example.net\n", name="list.txt")
    assert result.iocs[0].source == "list.txt"


def test_plain_iterable_of_lines() -> None:
    result = parse_plain(["bad.example.net\r\n", 42, "198.51.100.7\n"])  # type: ignore[list-item]
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net", "ipv4-addr:198.51.100.7"]
    assert [(error.line, error.reason) for error in result.errors] == [(2, "input")]


def test_plain_duplicates_merged() -> None:
    result = parse_plain("bad.example.net\nBAD.example.NET\nbad[.]example[.]net\n")
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net"]


# CSV feeds


@pytest.fixture(scope="module")
def urlhaus_result() -> FeedResult:
    return parse_feed(URLHAUS_FEED, source="urlhaus")


def test_csv_urlhaus_detected() -> None:
    assert detect_feed_format(URLHAUS_FEED) == "csv"


def test_csv_urlhaus_two_urls(urlhaus_result: FeedResult) -> None:
    assert [ioc.key for ioc in urlhaus_result.iocs] == ["url:198.51.100.23/bins/x.arm7", "url:bad.example.net/"]


def test_csv_urlhaus_no_errors(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.errors == []


def test_csv_urlhaus_comments_skipped(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.skipped == 4


def test_csv_urlhaus_tags_split(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.iocs[0].tags == ["elf", "mirai", "malware_download"]


def test_csv_urlhaus_dateadded_is_valid_from(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.iocs[0].valid_from == 1714557600000


def test_csv_urlhaus_fragment_url_whole(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.iocs[1].context["raw_value"] == "http://bad.example.net/#/invoice"


def test_csv_urlhaus_context_columns(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.iocs[0].context == {
        "id": "3000001",
        "url_status": "online",
        "urlhaus_link": "https://urlhaus.abuse.ch/url/3000001/",
        "reporter": "example_reporter",
        "raw_value": "http://198.51.100.23/bins/x.arm7",
    }


def test_csv_urlhaus_source_argument(urlhaus_result: FeedResult) -> None:
    assert urlhaus_result.iocs[0].source == "urlhaus"


def _summary(result: FeedResult) -> list[tuple[str, list[str], int | None]]:
    return [(ioc.key, ioc.tags, ioc.valid_from) for ioc in result.iocs]


def test_csv_added_column_same_iocs(urlhaus_result: FeedResult) -> None:
    def insert_column(line: str, value: str) -> str:
        fields = line.split('","') if line.startswith('"') else line.split(",")
        separator = '","' if line.startswith('"') else ","
        return separator.join(fields[:3] + [value] + fields[3:])

    widened = "\n".join(
        [insert_column(URLHAUS_HEADER, "added"), insert_column(URLHAUS_ROW_1, "x"), insert_column(URLHAUS_ROW_2, "y")]
    )
    assert _summary(parse_feed(widened)) == _summary(urlhaus_result)


def test_csv_uncommented_header_same_iocs(urlhaus_result: FeedResult) -> None:
    text = "\n".join([URLHAUS_HEADER.removeprefix("# "), URLHAUS_ROW_1, URLHAUS_ROW_2])
    assert _summary(parse_feed(text)) == _summary(urlhaus_result)


def test_csv_repeated_header_skipped(urlhaus_result: FeedResult) -> None:
    text = "\n".join([URLHAUS_HEADER, URLHAUS_HEADER.removeprefix("# "), URLHAUS_ROW_1, URLHAUS_ROW_2])
    result = parse_feed(text)
    assert _summary(result) == _summary(urlhaus_result)
    assert result.errors == []


def test_csv_offline_row_loads() -> None:
    text = "\n".join([URLHAUS_HEADER, URLHAUS_ROW_1.replace('"online"', '"offline"')])
    result = parse_feed(text)
    assert [ioc.key for ioc in result.iocs] == ["url:198.51.100.23/bins/x.arm7"]
    assert result.iocs[0].context["url_status"] == "offline"


@pytest.fixture(scope="module")
def threatfox_result() -> FeedResult:
    return parse_feed(THREATFOX_FEED, name="threatfox.csv")


def test_csv_threatfox_keys(threatfox_result: FeedResult) -> None:
    assert [ioc.key for ioc in threatfox_result.iocs] == [
        "ipv6-addr:2001:db8:1::5",
        "ipv4-addr:198.51.100.9",
        "domain-name:c2.example.org",
        "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    ]


def test_csv_threatfox_ipv6_port_in_context(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[0].context["port"] == 40669


def test_csv_threatfox_ipv4_port_in_context(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[1].context["port"] == 443


def test_csv_threatfox_confidence(threatfox_result: FeedResult) -> None:
    assert [ioc.confidence for ioc in threatfox_result.iocs] == [100, 75, 50, 100]


def test_csv_threatfox_tags(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[1].tags == ["c2", "CobaltStrike", "Cobalt Strike"]


def test_csv_threatfox_placeholder_tags_dropped(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[2].tags == ["Hydra"]


def test_csv_threatfox_utc_suffix_time(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[1].valid_from == 1659699370000


def test_csv_threatfox_source_defaults_to_name(threatfox_result: FeedResult) -> None:
    assert threatfox_result.iocs[0].source == "threatfox.csv"


def test_csv_threatfox_ip_port_domain_rejected(threatfox_result: FeedResult) -> None:
    assert [(error.line, error.reason) for error in threatfox_result.errors] == [(8, "value")]
    assert "'c2.example.org:8080'" in threatfox_result.errors[0].message


def test_csv_malwarebazaar_hash_columns() -> None:
    text = "\n".join(
        [
            '# "first_seen_utc","sha256_hash","md5_hash","sha1_hash","reporter","file_name"',
            '"2022-08-05 11:40:15","9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",'
            '"098f6bcd4621d373cade4e832627b4f6","a94a8fe5ccb19ba61c4c0873d391e987982fbbd3","x","a.exe"',
        ]
    )
    result = parse_feed(text)
    assert [ioc.key for ioc in result.iocs] == [f"sha256:{SHA256_OF_TEST}"]
    assert result.iocs[0].context["md5_hash"] == "098f6bcd4621d373cade4e832627b4f6"


@pytest.fixture(scope="module")
def generic_result() -> FeedResult:
    return parse_feed(GENERIC_FEED, source="generic")


def test_csv_generic_keys(generic_result: FeedResult) -> None:
    assert [ioc.key for ioc in generic_result.iocs] == [
        "domain-name:bad.example.net",
        "ipv4-addr:198.51.100.7",
        "email-addr:ops@example.org",
    ]


def test_csv_generic_errors(generic_result: FeedResult) -> None:
    assert [(error.line, error.reason) for error in generic_result.errors] == [
        (4, "missing_value"),
        (5, "field_type"),
        (6, "value"),
        (7, "type"),
        (9, "value"),
    ]


def test_csv_generic_error_names_value(generic_result: FeedResult) -> None:
    assert "'170'" in generic_result.errors[1].message


def test_csv_generic_skipped(generic_result: FeedResult) -> None:
    assert generic_result.skipped == 1


def test_csv_generic_metadata(generic_result: FeedResult) -> None:
    ioc = generic_result.iocs[0]
    assert ioc.confidence == 80
    assert ioc.severity == "high"
    assert ioc.tags == ["phishing", "kit"]
    assert ioc.tlp == "tlp:amber"
    assert ioc.valid_from == 1714521600000
    assert ioc.valid_until == 1735603200000
    assert ioc.context == {"comment": "note 1"}


def test_csv_generic_source_column_wins(generic_result: FeedResult) -> None:
    assert [ioc.source for ioc in generic_result.iocs] == ["generic", "partner-feed", "generic"]


def test_csv_duplicate_last_wins() -> None:
    result = parse_feed("value,tags\nbad.example.net,first\n198.51.100.7,\nbad.example.net,second\n")
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net", "ipv4-addr:198.51.100.7"]
    assert result.iocs[0].tags == ["second"]


def test_csv_header_without_value_column() -> None:
    result = parse_feed("alpha,beta\nbad.example.net,x\n", "csv")
    assert result.iocs == []
    assert [(error.line, error.reason) for error in result.errors] == [(1, "header")]
    assert "columns found: alpha, beta" in result.errors[0].message


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_other_delimiters(delimiter: str) -> None:
    text = f"indicator{delimiter}tags\nbad.example.net{delimiter}x\n"
    assert [ioc.key for ioc in parse_feed(text).iocs] == ["domain-name:bad.example.net"]


def test_csv_multiline_field_line_numbers() -> None:
    text = 'value,comment\nbad.example.net,"two\n# lines"\nnot a value!,x\n'
    result = parse_feed(text)
    assert [ioc.context["comment"] for ioc in result.iocs] == ["two\n# lines"]
    assert [error.line for error in result.errors] == [4]


def test_csv_unclosed_quote_rest_loads() -> None:
    text = 'value,comment\nbad.example.net,"open\n198.51.100.7,x\n'
    result = parse_feed(text)
    assert [ioc.key for ioc in result.iocs] == ["ipv4-addr:198.51.100.7"]
    assert [(error.line, error.reason) for error in result.errors] == [(2, "csv")]


def test_csv_hash_inside_row_is_data() -> None:
    result = parse_feed("url,tags\nhttp://bad.example.net/#/a,x\n")
    assert result.iocs[0].context["raw_value"] == "http://bad.example.net/#/a"


def test_csv_iterable_of_lines() -> None:
    result = parse_csv(["value\n", "bad.example.net\n"])
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net"]


# Format detection and dispatch


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bad.example.net\n198.51.100.7\n", "plain"),
        ("# url list\nhttp://bad.example.net/x\n", "plain"),
        ("url\nhttp://bad.example.net/x\n", "csv"),
        ('"2024-01-01","198.51.100.7"\n', "csv"),
        ("# id,url\n1,http://bad.example.net/x\n", "csv"),
        ("http://bad.example.net/a,b\n", "plain"),
        ("", "plain"),
    ],
)
def test_detect_feed_format_cases(text: str, expected: str) -> None:
    assert detect_feed_format(text) == expected


def test_parse_feed_bytes_rejected() -> None:
    result = parse_feed(b"bad.example.net", name="x.txt")  # type: ignore[arg-type]
    assert [(error.line, error.reason) for error in result.errors] == [(0, "input")]


def test_parse_feed_unknown_format() -> None:
    result = parse_feed("bad.example.net", "yaml")
    assert [(error.line, error.reason) for error in result.errors] == [(0, "format")]
    assert "'yaml'" in result.errors[0].message


# Edge cases, in both formats


@pytest.mark.parametrize("fmt", ["plain", "csv"])
def test_edge_empty_text(fmt: str) -> None:
    result = parse_feed("", fmt)
    assert (result.iocs, result.errors, result.skipped) == ([], [], 0)


@pytest.mark.parametrize("fmt", ["plain", "csv"])
def test_edge_only_comments(fmt: str) -> None:
    result = parse_feed("# one\n#\n\n# three\n", fmt)
    assert (result.iocs, result.errors, result.skipped) == ([], [], 4)


@pytest.mark.parametrize("fmt", FEED_FORMATS)
def test_edge_binary_junk(fmt: str) -> None:
    result = parse_feed("\x00\xff", fmt)
    assert result.iocs == []
    assert [error.line for error in result.errors] == [1]


def test_edge_huge_line_plain() -> None:
    result = parse_feed("a" * 1_000_000)
    assert [(error.line, error.reason) for error in result.errors] == [(1, "too_long")]
    assert len(result.errors[0].message) <= 400


def test_edge_huge_line_csv() -> None:
    result = parse_feed("value\n" + "a" * 1_000_000 + "\nbad.example.net\n", "csv")
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net"]
    assert [(error.line, error.reason) for error in result.errors] == [(2, "csv")]


@pytest.mark.parametrize("text", [PLAIN_FEED, URLHAUS_FEED, GENERIC_FEED])
def test_edge_crlf_same_result(text: str) -> None:
    assert parse_feed(text.replace("\n", "\r\n")) == parse_feed(text)


def test_edge_bom_plain() -> None:
    result = parse_feed("\ufeffbad.example.net\n")
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net"]


def test_edge_bom_csv_header() -> None:
    result = parse_feed("\ufeffvalue,type\nbad.example.net,domain\n")
    assert [ioc.key for ioc in result.iocs] == ["domain-name:bad.example.net"]


@settings(max_examples=300, deadline=None)
@given(
    text=st.one_of(
        st.text(),
        st.lists(st.sampled_from(FEED_FRAGMENTS)).map("".join),
    ),
    fmt=st.sampled_from(FEED_FORMATS),
)
def test_parse_feed_never_raises(text: str, fmt: str) -> None:
    result = parse_feed(text, fmt)
    assert isinstance(result, FeedResult)
    assert all(error.reason != "internal" for error in result.errors)


# Real abuse.ch and vendor exports, read in place


def test_real_feodo_0404_counts() -> None:
    result = parse_feed(read_real(ABUSECH / "feodotracker_ipblocklist_fetched2024-04-04.csv"), source="feodo")
    assert len(result.iocs) == 28
    assert result.errors == []
    assert result.skipped == 9


def test_real_feodo_0404_first_row() -> None:
    result = parse_feed(read_real(ABUSECH / "feodotracker_ipblocklist_fetched2024-04-04.csv"), source="feodo")
    first = result.iocs[0]
    assert first.key == "ipv4-addr:192.9.135.73"
    assert first.context["port"] == 1194
    assert first.tags == ["Pikabot"]
    assert first.valid_from == 1684864304000


def test_real_feodo_snapshot_diff() -> None:
    old = parse_feed(read_real(ABUSECH / "feodotracker_ipblocklist_fetched2024-04-03.csv"))
    new = parse_feed(read_real(ABUSECH / "feodotracker_ipblocklist_fetched2024-04-04.csv"))
    assert len(old.iocs) == 27
    assert set(by_key(new)) - set(by_key(old)) == {"ipv4-addr:172.233.221.61"}


def test_real_urlhaus_counts() -> None:
    result = parse_feed(read_real(ABUSECH / "urlhaus_csv_dump_2026-01-20_excerpt.csv"))
    assert len(result.iocs) == 47
    assert result.errors == []
    assert {ioc.type for ioc in result.iocs} == {ObservableType.URL}


def test_real_urlhaus_values() -> None:
    iocs = by_key(parse_feed(read_real(ABUSECH / "urlhaus_csv_dump_2026-01-20_excerpt.csv")))
    assert iocs["url:42.179.49.19:57387/bin.sh"].valid_from == 1768900346000
    assert iocs["url:123.14.225.132:53485/bin.sh"].tags == ["32-bit", "arm", "elf", "mirai", "Mozi", "malware_download"]
    assert iocs["url:gl1g7tts-5500.euw.devtunnels.ms/free.exe"].context["id"] == "3760442"


@pytest.mark.parametrize(
    ("name", "kind", "first"),
    [
        (
            "eset_backdoordiplomacy_samples.sha256",
            "sha256",
            "063065bca918d8d3a1dedcb6a42757c4dc1a05291fefc8f88068b3e03162e129",
        ),
        ("eset_backdoordiplomacy_samples.sha1", "sha1", "2183ae45adef97500a26dbbf69d910b82bfe721a"),
    ],
)
def test_real_eset_hash_lists(name: str, kind: str, first: str) -> None:
    result = parse_feed(read_real(PLAINTEXT / name))
    assert len(result.iocs) == 22
    assert result.errors == []
    assert result.iocs[0].key == f"{kind}:{first}"


def test_real_sunburst_nbis_ip_column() -> None:
    result = parse_feed(read_real(PLAINTEXT / "mandiant_sunburst_Indicator_Release_NBIs.csv"))
    assert len(result.iocs) == 10
    assert [(error.line, error.reason) for error in result.errors] == [(line, "missing_value") for line in range(2, 8)]
    assert result.iocs[0].key == "ipv4-addr:13.59.205.66"
    assert result.iocs[0].context["fqdn"] == "deftsecurity[.]com"


def test_real_sunburst_hashes_no_value_column() -> None:
    result = parse_feed(read_real(PLAINTEXT / "mandiant_sunburst_Indicator_Release_Hashes.csv"), "csv")
    assert result.iocs == []
    assert [(error.line, error.reason) for error in result.errors] == [(1, "header")]
    assert "columns found: sha256, sha1, md5, filename" in result.errors[0].message
