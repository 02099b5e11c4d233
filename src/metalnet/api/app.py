"""The controller's HTTP application: the agent endpoint, the REST API, the dashboard."""

from __future__ import annotations

from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from metalnet import metrics, ui
from metalnet.api import agent, attachments, errors, fabric, v1
from metalnet.db.engine import Database


def create_app(db: Database) -> FastAPI:
    """The FastAPI app over `db`; OpenAPI at /openapi.json, docs at /docs."""
    app = FastAPI(title="metalnet", version="1")
    app.state.db = db
    errors.install(app)
    app.include_router(agent.router)
    app.include_router(v1.router)
    app.include_router(fabric.router)
    app.include_router(attachments.router)
    ui.mount(app)
    app.add_api_route("/metrics", metrics_endpoint, include_in_schema=False)
    return app


def metrics_endpoint() -> Response:
    """Prometheus exposition of metalnet's metrics (no token: scrape from the admin net)."""
    return Response(generate_latest(metrics.REGISTRY), media_type=CONTENT_TYPE_LATEST)
