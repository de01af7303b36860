"""Reading IOC feed files and folders from disk for ``yokoten ioc push`` and ``yokoten replay``."""

from __future__ import annotations

from pathlib import Path

from detectors.feeds import FeedResult, parse_feed
from detectors.feeds.misp import parse_misp_feed


def read_feed(path: Path, fmt: str = "auto", source: str | None = None) -> FeedResult:
    """Parse one feed file, or a MISP feed folder (``manifest.json`` plus ``<uuid>.json`` event files).

    Raises OSError when the file or folder cannot be read.
    """
    if path.is_dir():
        manifest_path = path / "manifest.json"
        if not manifest_path.is_file():
            raise FileNotFoundError(f"{path} is a folder without manifest.json; give a feed file or a MISP feed folder")
        events = {
            event.stem: event.read_text(encoding="utf-8", errors="replace")
            for event in path.glob("*.json")
            if event.name != "manifest.json"
        }
        return parse_misp_feed(
            manifest_path.read_text(encoding="utf-8", errors="replace"),
            events,
            source=source or path.name,
            name=str(manifest_path),
        )
    return parse_feed(
        path.read_text(encoding="utf-8", errors="replace"), fmt, source=source or path.stem, name=path.name
    )
