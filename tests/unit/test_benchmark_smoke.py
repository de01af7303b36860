"""Smoke run of the benchmark corpus generator and the in-process matcher benchmark.

Checks correctness only: every event matches exactly the IOCs the generator
planted in it. No timing is asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import bench_matcher  # noqa: E402
import corpus  # noqa: E402


def test_corpus_ioc_prefix_stable() -> None:
    small = corpus.generate_iocs(300, seed=11)
    large = corpus.generate_iocs(900, seed=11)
    assert small.items == large.items[:300]


def test_corpus_same_seed_same_events() -> None:
    iocs = corpus.generate_iocs(500, seed=5)
    first = corpus.generate_events(iocs, 400, seed=5, hit_rate=0.05)
    second = corpus.generate_events(iocs, 400, seed=5, hit_rate=0.05)
    assert first.events == second.events
    assert first.expected == second.expected


def test_corpus_matches_equal_planted() -> None:
    iocs = corpus.generate_iocs(3000, seed=3)
    generated = corpus.generate_events(iocs, 2500, seed=3, hit_rate=0.08, near_miss_rate=0.05)
    assert len(generated.expected) > 100
    assert generated.near_misses > 20
    index, _ = bench_matcher.build_index(orjson.dumps(record) for record in iocs.records())
    _, _, found = bench_matcher.run_events(generated.events, index)
    assert bench_matcher.compare(found, generated.expected, generated.events) == []
    _, _, filtered = bench_matcher.run_events_filtered(generated.events, index)
    assert bench_matcher.compare(filtered, generated.expected, generated.events) == []


def test_corpus_files_round_trip(tmp_path: Path) -> None:
    out = tmp_path / "corpus"
    assert (
        corpus.main(["--events", "1200", "--iocs", "1500", "--seed", "9", "--hit-rate", "0.05", "--out", str(out)]) == 0
    )
    events, expected = corpus.read_corpus_files(out)
    assert len(events) == 1200
    assert expected
    index, _ = bench_matcher.build_index((out / "iocs.jsonl").read_bytes().splitlines())
    assert len(index) == 1500
    _, _, found = bench_matcher.run_events(events, index)
    assert bench_matcher.compare(found, expected, events) == []
    patterns = (out / "patterns.txt").read_text().splitlines()
    assert len(patterns) == 1500 - corpus.CIDR_COUNT


def test_bench_matcher_quick_run() -> None:
    results = bench_matcher.run(bench_matcher.parse_args(["--quick", "--no-memory"]))
    per_size = results["per_size"]
    assert sorted(per_size) == [2000, 5000]
    for figures in per_size.values():
        assert figures["mismatches"] == 0
        assert figures["matched_events"] > 0


def test_bench_matcher_reports_mismatch() -> None:
    iocs = corpus.generate_iocs(800, seed=4)
    generated = corpus.generate_events(iocs, 600, seed=4, hit_rate=0.1)
    index, _ = bench_matcher.build_index(orjson.dumps(record) for record in iocs.records())
    _, _, found = bench_matcher.run_events(generated.events, index)
    position = next(iter(generated.expected))
    wrong = {**generated.expected, position: frozenset({"md5:" + "0" * 32})}
    problems = bench_matcher.compare(found, wrong, generated.events)
    assert len(problems) == 1
    assert f"event {position} " in problems[0]


@pytest.mark.parametrize("kind", corpus.KINDS)
def test_corpus_event_kinds_present(kind: str) -> None:
    iocs = corpus.generate_iocs(200, seed=2)
    generated = corpus.generate_events(iocs, 300, seed=2)
    assert any(event_kind == kind for event_kind, _ in generated.events)
