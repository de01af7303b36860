"""Machine description and process memory readings shared by the benchmark scripts."""

from __future__ import annotations

import cProfile
import io
import os
import platform
import pstats
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

PACKAGES = ("aiokafka", "faust-streaming", "orjson", "pyahocorasick", "idna", "pydantic")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def tool_version(command: list[str]) -> str:
    """Return the first output line of ``command`` (such as ``grep --version``), or why it failed."""
    if shutil.which(command[0]) is None:
        return "not installed"
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    except OSError as error:
        return f"failed: {error}"
    lines = (result.stdout or result.stderr).splitlines()
    return lines[0].strip() if lines else "unknown"


def source_revision() -> str:
    """Return the checked-out commit and whether tracked files differ from it (read-only git commands)."""
    repo = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    return f"{commit} with {len(changed)} modified tracked files" if changed else commit


def describe() -> dict[str, object]:
    """Return the CPU, core count, memory, Python and package versions of this run."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    memory_kb = 0
    try:
        with open("/proc/meminfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    memory_kb = int(line.split()[1])
    except OSError:
        pass
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(memory_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_average_1_5_15min": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "python": sys.version.split()[0],
        "source": source_revision(),
        "packages": versions,
    }


def print_machine(extra: dict[str, str] | None = None) -> dict[str, object]:
    info = describe()
    if extra:
        info.update(extra)
    print("machine:")
    for name, value in info.items():
        print(f"  {name}: {value}")
    return info


def proc_status(pid: int | str = "self") -> dict[str, int]:
    """Return VmRSS and VmHWM (peak resident set) of a process in KiB, from /proc/<pid>/status."""
    values = {}
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def top_functions(profile: cProfile.Profile, limit: int = 15, sort: str = "tottime") -> str:
    """Return the ``limit`` most expensive functions of a profile as pstats prints them."""
    stream = io.StringIO()
    stats = pstats.Stats(profile, stream=stream)
    stats.strip_dirs().sort_stats(sort).print_stats(limit)
    text = stream.getvalue()
    start = text.find("   ncalls")
    return text[start:] if start >= 0 else text
