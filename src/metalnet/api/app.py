"""The controller's HTTP application: the agent endpoint and the REST API."""

from __future__ import annotations

from fastapi import FastAPI

from metalnet.api import agent, errors, v1
from metalnet.db.engine import Database


def create_app(db: Database) -> FastAPI:
    """The FastAPI app over `db`; OpenAPI at /openapi.json, docs at /docs."""
    app = FastAPI(title="metalnet", version="1")
    app.state.db = db
    errors.install(app)
    app.include_router(agent.router)
    app.include_router(v1.router)
    return app
