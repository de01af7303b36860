"""HTTP endpoints of a worker: Prometheus ``/metrics``, ``/healthz`` (liveness) and ``/readyz`` (readiness)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

log = logging.getLogger(__name__)


async def start_http_server(host: str, port: int, is_ready: Callable[[], bool]) -> web.AppRunner:
    """Start the endpoint server on ``host:port``; the caller stops it with ``runner.cleanup()``."""

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(_: web.Request) -> web.Response:
        ready = is_ready()
        return web.json_response({"ready": ready}, status=200 if ready else 503)

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics), web.get("/healthz", healthz), web.get("/readyz", readyz)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    log.info("Serving /metrics, /healthz and /readyz on %s:%d", host, port)
    return runner
