"""Cost of turning IOC topic records into ``Ioc`` objects: CPU time per record and resident memory.

The records are the benchmark corpus IOCs serialised as ``yokoten ioc push``
writes them (canonical type and value, ``source``, ``severity``,
``confidence`` and one tag), one JSON object per line in ``--records``. A
missing file is generated first in a child process, so the generator's memory
does not count in the measured process. Two measurements:

- ``time``: CPU seconds of ``ioc_from_record`` alone. Records are decoded
  with ``orjson.loads`` in batches outside the timed loop, and the best of
  ``--rounds`` passes counts.
- ``memory``: VmRSS before and after building and keeping one ``Ioc`` per
  record, after ``gc.collect()``. With ``--index`` every Ioc also goes
  through ``IocIndex.apply``, which adds ``_by_key`` and
  ``_text_keys``, and then ``rebuild`` makes the automaton: the figures
  after it are those of the whole index as the feed loader builds it.

Run::

    .venv/bin/python benchmarks/bench_ioc_load.py --measure time --records /tmp/iocs-1m.ndjson
    .venv/bin/python benchmarks/bench_ioc_load.py --measure memory --records /tmp/iocs-1m.ndjson [--index]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import orjson
from corpus import generate_iocs
from machine import proc_status

from detectors.index import IocIndex
from detectors.ioc import ioc_from_record

BATCH = 10_000
NOW_MS = int(time.time() * 1000)


def write_records(path: Path, count: int, seed: int) -> None:
    """Write ``count`` corpus IOC records to ``path``, one JSON object per line."""
    with path.open("wb") as handle:
        for record in generate_iocs(count, seed).records():
            handle.write(orjson.dumps(record) + b"\n")


def read_records(path: Path, count: int, seed: int) -> list[bytes]:
    """Return the records of ``path``, generating the file in a child process when it is missing."""
    if not path.exists():
        command = [sys.executable, __file__, "--write", "--records", str(path), "--count", str(count), "--seed", str(seed)]
        subprocess.run(command, check=True)
    return path.read_bytes().splitlines()


def measure_time(records: list[bytes], rounds: int) -> dict[str, float]:
    """Return the best CPU seconds over ``rounds`` passes of ``ioc_from_record`` and the µs per record."""
    best = float("inf")
    for _ in range(rounds):
        spent = 0.0
        for start in range(0, len(records), BATCH):
            decoded = [orjson.loads(raw) for raw in records[start : start + BATCH]]
            started = time.process_time()
            for record in decoded:
                ioc_from_record(record)
            spent += time.process_time() - started
        best = min(best, spent)
    return {"cpu_s": round(best, 2), "cpu_us_per_record": round(best / len(records) * 1e6, 2)}


def measure_memory(records: list[bytes], with_index: bool) -> dict[str, float]:
    """Return VmRSS in MiB before and after keeping one Ioc per record (and applying it when ``with_index``)."""
    gc.collect()
    before = proc_status()["VmRSS"]
    started = time.process_time()
    index = IocIndex()
    index.begin_bulk_load()
    iocs = []
    for raw in records:
        ioc = ioc_from_record(orjson.loads(raw))
        if with_index:
            index.apply(ioc, now_ms=NOW_MS)
        else:
            iocs.append(ioc)

    gc.collect()
    after = proc_status()["VmRSS"]
    result = {
        "rss_before_mib": round(before / 1024, 1),
        "rss_after_mib": round(after / 1024, 1),
        "delta_mib": round((after - before) / 1024, 1),
        "bytes_per_ioc": round((after - before) * 1024 / len(records)),
        "iocs": len(index) if with_index else len(iocs),
    }

    if with_index:
        # The feed loader rebuilds the automaton once the topic is read, so this is the whole index.
        index.rebuild()
        gc.collect()
        built = proc_status()
        result.update(
            {
                "build_cpu_s": round(time.process_time() - started, 1),
                "rss_built_mib": round(built["VmRSS"] / 1024, 1),
                "peak_rss_mib": round(built["VmHWM"] / 1024, 1),
                "index_delta_mib": round((built["VmRSS"] - before) / 1024, 1),
                "automaton_nodes": index._main.get_stats()["nodes_count"],
            }
        )
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--measure", choices=("time", "memory"))
    parser.add_argument("--write", action="store_true", help="only write the records file")
    parser.add_argument("--records", type=Path, required=True, help="IOC records file, one JSON object per line")
    parser.add_argument("--count", type=int, default=1_000_000, help="number of IOC records when generating the file")
    parser.add_argument("--seed", type=int, default=1, help="seed of the corpus IOC set")
    parser.add_argument("--rounds", type=int, default=2, help="number of timed passes, of which the best counts (time only)")
    parser.add_argument("--index", action="store_true", help="also apply every Ioc to an IocIndex (memory only)")
    args = parser.parse_args(argv)
    if args.write:
        write_records(args.records, args.count, args.seed)
        return 0
    if args.measure is None:
        parser.error("give --measure time or --measure memory")
    records = read_records(args.records, args.count, args.seed)
    if args.measure == "time":
        result = measure_time(records, args.rounds)
    else:
        result = measure_memory(records, args.index)
    print(json.dumps({"measure": args.measure, "records": len(records), "index": args.index, **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
