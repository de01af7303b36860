"""The operator's page documents every setting and every metric the code defines."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import REGISTRY

import service.metrics  # noqa: F401 - registers the metrics
from service.config import Settings

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


@pytest.mark.parametrize("name", sorted(Settings.model_fields))
def test_setting_documented(name: str) -> None:
    assert f"`YOKOTEN_{name.upper()}`" in DOC


def _metric_names() -> list[str]:
    names = []
    for collector in REGISTRY.collect():
        if collector.name.startswith("yokoten_"):
            suffix = "_total" if collector.type == "counter" else ""
            names.append(collector.name + suffix)
    return sorted(names)


@pytest.mark.parametrize("name", _metric_names())
def test_metric_documented(name: str) -> None:
    assert f"`{name}`" in DOC
