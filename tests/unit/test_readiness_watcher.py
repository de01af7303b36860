"""The matcher's readiness watcher keeps running when a readiness check raises."""

from __future__ import annotations

import asyncio
import logging

import pytest

from service import metrics
from service.config import Settings
from service.matcher_worker import MatcherWorker


def test_watcher_survives_failing_check(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        worker = MatcherWorker(Settings())
        answers = iter([RuntimeError("partition not assigned"), None])

        def not_ready_reason() -> str | None:
            answer = next(answers, None)
            if isinstance(answer, Exception):
                raise answer
            return answer

        worker.not_ready_reason = not_ready_reason  # type: ignore[method-assign]
        task = asyncio.create_task(worker._watch_readiness())
        await asyncio.sleep(1.3)
        assert not task.done()
        task.cancel()
        await worker.producer.stop()
        await worker.consumer.stop()

    with caplog.at_level(logging.INFO, logger="service.matcher_worker"):
        asyncio.run(scenario())
    assert "Not ready: readiness check failed: RuntimeError('partition not assigned')" in caplog.text
    assert "Ready" in caplog.text.splitlines()[-1]
    assert metrics.READY._value.get() == 1
