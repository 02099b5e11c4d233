"""The controller's HTTP application: the agent endpoint and the REST API."""

from __future__ import annotations

from fastapi import FastAPI, Response

from metalnet import metrics
from metalnet.api import agent, errors, v1
from metalnet.api.auth import Caller
from metalnet.db.engine import Database


def create_app(db: Database) -> FastAPI:
    """The FastAPI app over `db`; the OpenAPI document at /openapi.json.

    No /docs or /redoc: FastAPI's pages load their scripts from a CDN, which a browser
    on the operator's network should not be asked to fetch; any OpenAPI viewer can read
    /openapi.json instead.
    """
    app = FastAPI(title="metalnet", version="1", docs_url=None, redoc_url=None)
    app.state.db = db
    errors.install(app)
    app.include_router(agent.router)
    app.include_router(v1.router)
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


def metrics_endpoint(who: Caller) -> Response:
    """Prometheus exposition of metalnet's metrics, for admin tokens: switch names and
    failure counts are operator detail (Prometheus sends it with `authorization`)."""
    who.require_admin()
    text = metrics.exposition()
    return Response(text, media_type=metrics.CONTENT_TYPE)
