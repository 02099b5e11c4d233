"""The controller's HTTP application."""

from __future__ import annotations

from fastapi import FastAPI

from metalnet.api import agent
from metalnet.db.engine import Database


def create_app(db: Database) -> FastAPI:
    """The FastAPI app serving the agent endpoint over `db`."""
    app = FastAPI(title="metalnet", version="1")
    app.state.db = db
    app.include_router(agent.router)
    return app
