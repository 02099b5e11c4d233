"""How the API's routes run their endpoints: each blocking endpoint in at most one
thread hop, and a database read on the embedded database in none.

FastAPI runs a plain (`def`) endpoint in a worker thread and then, in a second hop,
validates its answer against the response model in a worker thread again. Each hop
hands the interpreter lock between threads (queue, wake-up, the loop's self-pipe): at
50 concurrent requests the hops took about as much of it as the endpoint. Endpoints do
blocking database I/O, so they stay plain functions; this route class runs one in
the thread pool from a coroutine, so FastAPI validates and serialises the answer on
the event loop (no I/O there) and the request makes exactly one hop.

A read of the embedded database (SQLite) makes no hop at all: in WAL mode a reader
never waits for the writer (https://sqlite.org/wal.html, "Concurrency"), so a read
is tens of microseconds of work on a local file, while the worker thread doing it
handed the interpreter lock back and forth with the busy event loop at every SQLite
call: at 50 connections a request waited ~100 ms for its turns (32 context switches
per request; on the loop, under one). PostgreSQL's reads wait on the network and
stay in the pool. Endpoints that only read the database say so (`database_read`);
the `database` dependency tells this module, per request, whether its reads may wait.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool

T = TypeVar("T")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])

# Whether the database of the request being served may make a read wait (set by the
# `database` dependency; the safe default sends reads to the pool).
READS_WAIT: ContextVar[bool] = ContextVar("metalnet_reads_wait", default=True)


def database_read(endpoint: Endpoint) -> Endpoint:
    """Mark `endpoint` as one that only reads the database (no writes, no switch or
    BMC I/O, no files): on the embedded database it runs on the event loop. Apply it
    below the route decorator."""
    endpoint.database_read = True  # type: ignore[attr-defined]
    return endpoint


async def run_read(read: Callable[..., T], *args: Any) -> T:
    """Run a database read: on the loop when the request's database never makes a
    read wait, else in the thread pool (one hop)."""
    if READS_WAIT.get():
        return await run_in_threadpool(read, *args)
    return read(*args)


def one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` as a coroutine running it in the thread pool (a `database_read` one
    by `run_read`); coroutines and generators (streamed answers, which FastAPI iterates
    itself) unchanged.

    `functools.wraps` keeps the name and `__wrapped__`, from which FastAPI reads the
    parameters, the annotations and the response model.
    """
    kinds = (inspect.iscoroutinefunction, inspect.isasyncgenfunction, inspect.isgeneratorfunction)
    if any(kind(endpoint) for kind in kinds):
        return endpoint
    run = run_read if getattr(endpoint, "database_read", False) else run_in_threadpool

    @functools.wraps(endpoint)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await run(functools.partial(endpoint, *args, **kwargs))

    return call


class Route(APIRoute):
    """An API route whose blocking endpoint costs at most one thread hop per request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, one_hop(endpoint), **kwargs)
