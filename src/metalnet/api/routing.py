"""How the API's routes run their endpoints: each blocking endpoint in one thread hop.

FastAPI runs a plain (`def`) endpoint in a worker thread and then, in a second hop,
validates its answer against the response model in a worker thread again. Each hop
hands the interpreter lock between threads (queue, wake-up, the loop's self-pipe): at
50 concurrent requests the hops took about as much of it as the endpoint. Endpoints do
blocking database I/O, so they stay plain functions; this route class runs one in
the thread pool from a coroutine, so FastAPI validates and serialises the answer on
the event loop (no I/O there) and the request makes exactly one hop.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool


def one_hop(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """`endpoint` as a coroutine running it in the thread pool; coroutines and
    generators (streamed answers, which FastAPI iterates itself) unchanged.

    `functools.wraps` keeps the name and `__wrapped__`, from which FastAPI reads the
    parameters, the annotations and the response model.
    """
    kinds = (inspect.iscoroutinefunction, inspect.isasyncgenfunction, inspect.isgeneratorfunction)
    if any(kind(endpoint) for kind in kinds):
        return endpoint

    @functools.wraps(endpoint)
    async def call(*args: Any, **kwargs: Any) -> Any:
        return await run_in_threadpool(endpoint, *args, **kwargs)

    return call


class Route(APIRoute):
    """An API route whose blocking endpoint costs one thread hop per request."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, one_hop(endpoint), **kwargs)
