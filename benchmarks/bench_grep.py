"""The in-process matcher against ``grep -F -f`` and ``rg -F -f`` on the same corpus and IOC values.

The corpus is written to one file (all formats, one event per line, in produce
order) and the IOC values, less the CIDR blocks that a fixed-string search
cannot express, to a pattern file. Each tool counts matching lines (``-c``);
its wall time is taken with ``time.perf_counter`` around the process, best of
``--repeat`` runs. Both tools run with ``LC_ALL=C``, their fastest setting.
Each tool runs twice: case-sensitive, which misses the upper-case hashes that
Sysmon writes, and with ``-i``, which finds what the matcher finds. The time
each tool spends reading the patterns is measured apart, on an empty input.

The matcher figure is the pre-filter, ``StreamParser`` and ``match`` over the
same events with the index already built, as in a running worker
(``--no-prefilter``: ``parse_record`` and ``match`` of every event), and its
matches are checked against the planted ones.

Run::

    .venv/bin/python benchmarks/bench_grep.py            # 200k events, 100k IOCs
    .venv/bin/python benchmarks/bench_grep.py --quick
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from bench_matcher import build_index, compare, run_events, run_events_filtered
from corpus import generate_events, generate_iocs, grep_patterns
from machine import print_machine, tool_version

TOOLS = {
    "grep": ["grep", "-F", "-c"],
    "rg": ["rg", "-F", "-c", "--no-config", "-j", "1"],
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_tool(command: list[str], repeat: int, timeout: float) -> tuple[float | None, float | None, str, int]:
    """Run ``command`` up to ``repeat`` times; return the best wall and CPU times, the output and the exit code.

    Both times are None when a run timed out.

    A run that exceeds ``timeout`` seconds is killed and not repeated.
    """
    env = {**os.environ, "LC_ALL": "C"}
    best: float | None = None
    best_cpu: float | None = None
    output, code = "", 0
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), children_cpu()
        try:
            result = subprocess.run(
                command,
                capture_output=True,
                env=env,
                text=True,
                check=False,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            return None, None, f"timed out after {timeout:g} s", -1
        elapsed, cpu = time.perf_counter() - started, children_cpu() - cpu_started
        best = elapsed if best is None else min(best, elapsed)
        best_cpu = cpu if best_cpu is None else min(best_cpu, cpu)
        output, code = result.stdout.strip() or result.stderr.strip(), result.returncode
    return best, best_cpu, output, code


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare the in-process matcher with grep -F -f and rg -F -f.")
    parser.add_argument("--events", type=int, default=200_000, help="events in the corpus (default 200000)")
    parser.add_argument("--iocs", type=int, default=100_000, help="IOCs (default 100000)")
    parser.add_argument("--seed", type=int, default=7, help="corpus seed (default 7)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per tool and matcher passes; the best is reported (default 3)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=180.0,
        help="seconds after which one tool run is killed and reported as timed out (default 180)",
    )
    parser.add_argument("--quick", action="store_true", help="3000 events and 5000 IOCs: a smoke run of seconds")
    parser.add_argument("--no-prefilter", action="store_true", help="time the matcher parsing every event")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.iocs, args.repeat, args.timeout = 3000, 5000, 1, 10.0
    return args


def run(args: argparse.Namespace) -> dict[str, object]:
    versions = {name: tool_version([name, "--version"]) for name in TOOLS}
    results: dict[str, object] = {
        "machine": print_machine({f"{name}_version": version for name, version in versions.items()})
    }
    iocs = generate_iocs(args.iocs, args.seed)
    corpus = generate_events(iocs, args.events, args.seed, plant_from=min(10_000, args.iocs))
    records = [orjson.dumps(record) for record in iocs.records()]
    index, build_seconds = build_index(records)
    passes, cpu_passes = [], []
    runner = run_events if args.no_prefilter else run_events_filtered
    for _ in range(args.repeat):
        seconds, cpu, found = runner(corpus.events, index)
        problems = compare(found, corpus.expected, corpus.events)
        if problems:
            raise SystemExit(f"{len(problems)} events matched differently than planted, first: {problems[0]}")
        passes.append(seconds)
        cpu_passes.append(cpu)
    matcher_seconds, matcher_cpu = min(passes), min(cpu_passes)
    corpus_bytes = sum(len(raw) + 1 for _, raw in corpus.events)
    results["matcher"] = {
        "seconds": round(matcher_seconds, 3),
        "cpu_seconds": round(matcher_cpu, 3),
        "events_per_s": round(len(corpus.events) / matcher_seconds),
        "matched_events": len(found),
        "index_build_s": round(build_seconds, 2),
        "prefilter": not args.no_prefilter,
    }
    print(
        f"corpus: {len(corpus.events)} events, {corpus_bytes / 1e6:.1f} MB, {len(corpus.expected)} events with IOCs; "
        f"{args.iocs} IOCs ({len(grep_patterns(iocs))} fixed-string patterns, CIDR blocks left out)"
    )
    print(
        f"matcher: {matcher_seconds:.3f} s wall, {matcher_cpu:.3f} s CPU "
        f"({results['matcher']['events_per_s']} events/s wall), {len(found)} events matched"
    )  # type: ignore[index]

    tools: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="yokoten-grep-") as folder:
        events_path = Path(folder) / "events.log"
        patterns_path = Path(folder) / "patterns.txt"
        both_cases_path = Path(folder) / "patterns-both-cases.txt"
        empty_path = Path(folder) / "empty.log"
        events_path.write_bytes(b"".join(raw + b"\n" for _, raw in corpus.events))
        patterns = grep_patterns(iocs)
        patterns_path.write_text("".join(f"{value}\n" for value in patterns), encoding="utf-8")
        # Sysmon writes hashes in upper case; listing both cases lets a case-sensitive search find them.
        both_cases_path.write_text("".join(f"{value}\n{value.upper()}\n" for value in patterns), encoding="utf-8")
        empty_path.write_bytes(b"")
        variants = (
            ([], patterns_path, "case-sensitive"),
            ([], both_cases_path, "lower+upper patterns"),
            (["-i"], patterns_path, "ignore-case"),
        )
        for name, base in TOOLS.items():
            if shutil.which(base[0]) is None:
                tools[name] = {"error": f"{base[0]} is not installed"}
                print(f"{name}: not installed")
                continue
            for case_flags, pattern_file, label in variants:
                command = [*base, *case_flags, "-f", str(pattern_file)]
                seconds, cpu, output, code = time_tool([*command, str(events_path)], args.repeat, args.timeout)
                if seconds is None or cpu is None or code not in (0, 1):
                    tools[f"{name} {label}"] = {"command": " ".join([*command, "EVENTS"]), "error": output[:500]}
                    print(f"{name} {label}: FAILED ({output[:500]})")
                    continue
                setup, setup_cpu, _, _ = time_tool([*command, str(empty_path)], args.repeat, args.timeout)
                setup = min(setup or 0.0, seconds)
                setup_cpu = min(setup_cpu or 0.0, cpu)
                entry = {
                    "command": " ".join([*command, "EVENTS"]),
                    "seconds": round(seconds, 3),
                    "cpu_seconds": round(cpu, 3),
                    "pattern_setup_s": round(setup, 3),
                    "pattern_setup_cpu_s": round(setup_cpu, 3),
                    "matching_lines": int(output) if output.isdigit() else output,
                    "ratio_to_matcher": round(seconds / matcher_seconds, 3),
                    "cpu_ratio_to_matcher": round(cpu / matcher_cpu, 3),
                    "cpu_ratio_to_matcher_without_setup": round((cpu - setup_cpu) / matcher_cpu, 3),
                }
                tools[f"{name} {label}"] = entry
                print(
                    f"{name} {label}: {seconds:.3f} s wall, {cpu:.3f} s CPU (pattern setup {setup_cpu:.3f} s CPU), "
                    f"{entry['matching_lines']} lines; tool / matcher: wall {entry['ratio_to_matcher']}, "
                    f"CPU {entry['cpu_ratio_to_matcher']} ({entry['cpu_ratio_to_matcher_without_setup']} without setup)"
                )

    results["tools"] = tools
    # Only the variants that find the upper-case hashes do the matcher's work.
    complete = {
        name: entry for name, entry in tools.items() if not name.endswith("case-sensitive") and "seconds" in entry
    }  # type: ignore[operator]
    if complete:
        fastest_name = min(complete, key=lambda name: complete[name]["cpu_seconds"])  # type: ignore[index]
        speedup = complete[fastest_name]["cpu_seconds"] / matcher_cpu  # type: ignore[index]
        wall_speedup = complete[fastest_name]["seconds"] / matcher_seconds  # type: ignore[index]
        results["fastest_tool"] = fastest_name
        results["matcher_speedup_vs_fastest_tool_cpu"] = round(speedup, 3)
        results["matcher_speedup_vs_fastest_tool_wall"] = round(wall_speedup, 3)
        verdict = "met" if speedup >= 2 else "NOT met"
        print(
            f"matcher speed / speed of the fastest tool ({fastest_name}) = {speedup:.3f} by CPU time, "
            f"{wall_speedup:.3f} by wall time (target at least 2: {verdict})"
        )
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    results = run(args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
