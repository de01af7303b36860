"""The ``yokoten`` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

import orjson
from aiokafka.errors import KafkaConnectionError, KafkaError

from detectors.adapters import formats
from detectors.feeds import FEED_FORMATS
from detectors.identity import IdentityRules
from detectors.index import IocIndex
from detectors.observation import SourceKind
from detectors.spread import DAY_MS, SpreadPolicy
from service.config import ConfigError, identity_rules, load_allowlists, load_settings
from service.logs import configure_logging

log = logging.getLogger(__name__)


def _identity_rules(args: argparse.Namespace) -> IdentityRules:
    return identity_rules(args.default_domain, args.domain_map or "", args.host_aliases or "")


def _run_replay(args: argparse.Namespace) -> int:
    from service.replay import Replay, load_feeds

    index = IocIndex(subdomains=not args.no_subdomains, min_confidence=args.min_confidence)
    policy = SpreadPolicy(args.max_entities, int(args.window_days * DAY_MS), args.org_wide_hosts)
    replay = Replay(
        index,
        _identity_rules(args),
        policy=policy,
        allowlist=load_allowlists(args.allowlist),
        prefilter=not args.no_prefilter,
    )
    for path in [*args.iocs, *args.files]:
        if not path.exists():
            print(f"yokoten replay: file not found: {path}", file=sys.stderr)
            return 2
    load_feeds(args.iocs, index, replay.summary, int(time.time() * 1000))
    source = SourceKind(args.source) if args.source else None
    dead_letter = args.dead_letter.open("wb") if args.dead_letter else None
    try:
        for path in args.files:
            replay.run_file(path, args.format, source, sys.stdout.buffer, dead_letter)
    finally:
        if dead_letter is not None:
            dead_letter.close()
    print(replay.summary.render(), file=sys.stderr)
    return 0


def _run_topics_create(args: argparse.Namespace) -> int:
    from service.topics import create_topics

    asyncio.run(create_topics(load_settings()))
    return 0


def _run_ioc_push(args: argparse.Namespace) -> int:
    from service.feed_producer import push_feed

    return asyncio.run(push_feed(load_settings(), args.file, args.format, args.source))


def _run_ioc_parse(args: argparse.Namespace) -> int:
    from service.feed_files import read_feed

    result = read_feed(args.file, args.format, args.source)
    for ioc in result.iocs:
        sys.stdout.buffer.write(orjson.dumps(ioc.to_record()) + b"\n")
    for error in result.errors:
        print(f"{args.file}:{error.line}: rejected ({error.reason}): {error.message}", file=sys.stderr)
    print(f"{len(result.iocs)} accepted, {result.skipped} skipped, {len(result.errors)} rejected", file=sys.stderr)
    return 0


def _run_ioc_remove(args: argparse.Namespace) -> int:
    from service.feed_producer import remove_iocs

    return asyncio.run(remove_iocs(load_settings(), args.values, args.type))


def _run_matcher(args: argparse.Namespace) -> int:
    from service.matcher_worker import run_matcher

    return asyncio.run(run_matcher(load_settings()))


def _run_correlator(args: argparse.Namespace) -> int:
    from service.correlator import run_correlator

    return run_correlator(load_settings())


def _run_retro_hunt(args: argparse.Namespace) -> int:
    from service.retro_hunt import run_retro_hunter

    return asyncio.run(run_retro_hunter(load_settings()))


def _run_produce(args: argparse.Namespace) -> int:
    from service.feed_producer import produce_lines

    return asyncio.run(produce_lines(load_settings(), args.topic, args.files, args.key))


def _run_alerts(args: argparse.Namespace) -> int:
    from service.feed_producer import print_alerts

    return asyncio.run(print_alerts(load_settings(), args.timeout, args.expect))


def _at_least_two(text: str) -> int:
    value = int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"{value} is below 2; an IOC needs two entities to spread")
    return value


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
ENV_EPILOG = (
    "Settings come from YOKOTEN_* environment variables (YOKOTEN_BOOTSTRAP_SERVERS, YOKOTEN_INPUTS, "
    "YOKOTEN_METRICS_PORT, ...); service/config.py lists each one with its default."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="yokoten", description="Lateral-spread IOC sweeps over Kafka event streams.", epilog=ENV_EPILOG
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("YOKOTEN_LOG_LEVEL", "INFO").upper(),
        choices=LOG_LEVELS,
        type=str.upper,
        help="Python logging level (default INFO, or YOKOTEN_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default=os.environ.get("YOKOTEN_LOG_FORMAT", "text"),
        help="log lines as plain text or JSON objects (default text, or YOKOTEN_LOG_FORMAT)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    replay = commands.add_parser("replay", help="match event files against IOC feeds without a broker")
    replay.add_argument(
        "--iocs", action="append", type=Path, default=[], required=True, help="IOC feed file (repeatable)"
    )
    replay.add_argument("--dead-letter", type=Path, help="write rejected records to this file as JSON lines")
    replay.add_argument(
        "--format", default="auto", choices=formats(), help="record format of every file (default: detect per record)"
    )
    replay.add_argument(
        "--source",
        choices=[kind.value for kind in SourceKind],
        help="source kind of records whose format does not fix it",
    )
    replay.add_argument("--default-domain", help="DNS suffix for short host names and bare accounts")
    replay.add_argument("--domain-map", help="NetBIOS=DNS domain pairs, comma-separated")
    replay.add_argument("--host-aliases", help="ADDRESS=host.name pairs, comma-separated, from an asset inventory")
    replay.add_argument(
        "--max-entities", type=_at_least_two, default=1000, help="hosts and users tracked per IOC (default 1000)"
    )
    replay.add_argument(
        "--window-days",
        type=float,
        default=30.0,
        help="entities unseen this many days before an IOC's newest sighting age out (default 30)",
    )
    replay.add_argument(
        "--org-wide-hosts",
        type=int,
        default=5,
        help="hosts at which an alert asks for an org-wide response (default 5)",
    )
    replay.add_argument("--allowlist", action="append", type=Path, default=[], help="allowlist file (repeatable)")
    replay.add_argument(
        "--min-confidence", type=int, default=0, help="skip IOCs with a lower confidence (0-100, default 0)"
    )
    replay.add_argument("--no-subdomains", action="store_true", help="domain IOCs match only the exact name")
    replay.add_argument(
        "--no-prefilter",
        action="store_true",
        help="parse every record; by default records whose text contains no IOC candidate are skipped unchecked",
    )
    replay.add_argument("files", nargs="+", type=Path, help="event files, one record per line")
    replay.set_defaults(handler=_run_replay)

    topics = commands.add_parser("topics", epilog=ENV_EPILOG, help="manage Kafka topics")
    topic_commands = topics.add_subparsers(dest="topics_command", required=True)
    topic_commands.add_parser("create", help="create every topic yokoten uses").set_defaults(handler=_run_topics_create)

    ioc = commands.add_parser("ioc", epilog=ENV_EPILOG, help="manage the IOC feed topic")
    ioc_commands = ioc.add_subparsers(dest="ioc_command", required=True)
    push = ioc_commands.add_parser("push", help="produce a feed file to the IOC topic")
    push.add_argument("file", type=Path, help="feed file, or a MISP feed folder with manifest.json")
    push.add_argument(
        "--format", default="auto", choices=FEED_FORMATS, help="feed format (default: detected from the content)"
    )
    push.add_argument("--source", help="feed name stored on each IOC (default: file name)")
    push.set_defaults(handler=_run_ioc_push)
    parse = ioc_commands.add_parser("parse", help="print the IOC records a feed file yields, as JSON lines")
    parse.add_argument("file", type=Path, help="feed file, or a MISP feed folder with manifest.json")
    parse.add_argument(
        "--format", default="auto", choices=FEED_FORMATS, help="feed format (default: detected from the content)"
    )
    parse.add_argument("--source", help="feed name stored on each IOC (default: file name)")
    parse.set_defaults(handler=_run_ioc_parse)
    remove = ioc_commands.add_parser("remove", epilog=ENV_EPILOG, help="remove IOCs from the IOC topic (tombstones)")
    remove.add_argument("values", nargs="+", help="IOC values, written as in a feed (defanged forms accepted)")
    remove.add_argument("--type", help="IOC type when it cannot be detected from the value (e.g. user-account)")
    remove.set_defaults(handler=_run_ioc_remove)

    commands.add_parser("matcher", epilog=ENV_EPILOG, help="run a matcher worker").set_defaults(handler=_run_matcher)
    commands.add_parser("correlator", epilog=ENV_EPILOG, help="run the correlator (faust worker)").set_defaults(
        handler=_run_correlator
    )
    commands.add_parser(
        "retro-hunt", help="hunt newly added IOCs through the input topics' history (one instance)"
    ).set_defaults(handler=_run_retro_hunt)

    produce = commands.add_parser(
        "produce", epilog=ENV_EPILOG, help="produce the lines of files to a topic, one record per line"
    )
    produce.add_argument("--topic", required=True, help="target topic")
    produce.add_argument("--key", help="key of every record (default: none, so records spread over partitions)")
    produce.add_argument("files", nargs="+", type=Path, help="text files; every non-blank line becomes one record")
    produce.set_defaults(handler=_run_produce)

    alerts = commands.add_parser("alerts", epilog=ENV_EPILOG, help="print alerts from the alerts topic as JSON lines")
    alerts.add_argument(
        "--timeout", type=float, default=30.0, help="stop after this many seconds without a new alert (default 30)"
    )
    alerts.add_argument("--expect", type=int, default=0, help="stop once this many alerts were printed (0: no limit)")
    alerts.set_defaults(handler=_run_alerts)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level not in LOG_LEVELS:
        parser.error(f"YOKOTEN_LOG_LEVEL {args.log_level!r} is not one of {', '.join(LOG_LEVELS)}")
    if args.log_format not in ("text", "json"):
        parser.error(f"YOKOTEN_LOG_FORMAT {args.log_format!r} is not text or json")
    configure_logging(args.log_level, args.log_format)
    try:
        return int(args.handler(args))
    except ConfigError as error:
        print(f"yokoten: {error}", file=sys.stderr)
        return 2
    except KafkaConnectionError as error:
        servers = os.environ.get("YOKOTEN_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
        if os.environ.get("YOKOTEN_SECURITY_PROTOCOL", "").upper().startswith("SASL"):
            # aiokafka reports a failed SASL login as a failed bootstrap, so both causes are named.
            print(
                f"yokoten: cannot connect to Kafka at {servers}: the broker is unreachable or SASL authentication "
                "failed; check YOKOTEN_BOOTSTRAP_SERVERS, YOKOTEN_SASL_MECHANISM, YOKOTEN_SASL_USERNAME and "
                "YOKOTEN_SASL_PASSWORD (or YOKOTEN_SASL_PASSWORD_FILE)",
                file=sys.stderr,
            )
        else:
            print(
                f"yokoten: cannot reach Kafka at {servers} ({error}); check YOKOTEN_BOOTSTRAP_SERVERS", file=sys.stderr
            )
        return 3
    except KafkaError as error:
        print(f"yokoten: Kafka request failed: {error}", file=sys.stderr)
        return 3
    except OSError as error:
        print(f"yokoten: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
