"""The controller's HTTP application: the agent endpoint, the REST API, the dashboard."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio.to_thread
from fastapi import FastAPI, Response

from metalnet import metrics, ui
from metalnet.api import agent, attachments, boot, errors, fabric, v1
from metalnet.api.auth import Caller
from metalnet.db.engine import POOL_SIZE, Database

# Threads running the (synchronous) endpoints. More threads than database connections
# in the pool made requests open and close overflow connections, and more threads than
# a few per core only make them take turns at the interpreter lock: at 50 concurrent
# requests, 40 threads (anyio's default) served fewer requests, later, than 8.
API_THREADS = min(8, POOL_SIZE // 2)

# How every process serving the app runs uvicorn. The stock asyncio event loop, not
# uvloop: measured with wrk at 50 connections (bench/api.py), uvloop served some
# connections far later than others (p99 150-515 ms against 53-61 ms for one project,
# 1.3-1.4 s against 159-233 ms for the network list) for no less CPU per request.
SERVER_OPTIONS = {"log_level": "warning", "access_log": False, "loop": "asyncio"}


@asynccontextmanager
async def _threads(_app: FastAPI) -> AsyncIterator[None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
    yield


def create_app(db: Database) -> FastAPI:
    """The FastAPI app over `db`; the OpenAPI document at /openapi.json.

    No /docs or /redoc: FastAPI's pages load their scripts from a CDN, which a browser
    on the operator's network should not be asked to fetch; any OpenAPI viewer can read
    /openapi.json instead.
    """
    app = FastAPI(title="metalnet", version="1", docs_url=None, redoc_url=None, lifespan=_threads)
    app.state.db = db
    errors.install(app)
    app.include_router(agent.router)
    app.include_router(boot.router)
    app.include_router(v1.router)
    app.include_router(fabric.router)
    app.include_router(attachments.router)
    ui.mount(app)
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


async def metrics_endpoint(who: Caller) -> Response:
    """Prometheus exposition of metalnet's metrics, for admin tokens: switch names and
    failure counts are operator detail (Prometheus sends it with `authorization`).
    A coroutine: the metrics are in memory, so no thread hop."""
    who.require_admin()
    text = metrics.exposition()
    return Response(text, media_type=metrics.CONTENT_TYPE)
