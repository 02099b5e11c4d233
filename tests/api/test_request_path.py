"""The API's request path: at most one thread hop per request (none for a read of the
embedded database), and tokens remembered for at most `apitokens.VERIFIED_SECONDS`
without letting a revoked token back in."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from datetime import UTC, datetime

import anyio.to_thread
import httpx
import pytest
from fastapi.routing import APIRoute
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from sqlalchemy import update

from metalnet import apitokens, inventory
from metalnet.api.app import create_app
from metalnet.db.models import ApiToken


def _api_routes(routes: list) -> Iterator[APIRoute]:
    """Every API route, also those of included routers (kept nested by FastAPI)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        yield from _api_routes(getattr(getattr(route, "original_router", None), "routes", []))


def _calls(dependant) -> Iterator:
    yield dependant.call
    for dependency in dependant.dependencies:
        yield from _calls(dependency)


def test_no_route_runs_a_plain_function_per_request(api) -> None:
    """FastAPI runs each plain (`def`) dependency in a worker thread, and a plain
    endpoint in one, then validates its answer in another: every one is a thread hop.
    Only coroutines are allowed; the route class makes one of each blocking endpoint."""
    routes = list(_api_routes(create_app(api.db).routes))
    assert len(routes) > 40
    plain = {
        f"{route.path} {call.__qualname__}"
        for route in routes
        for call in _calls(route.dependant)
        if call is not None and not inspect.iscoroutinefunction(call)
    }
    assert plain == set()


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The functions the request path hands to a worker thread, in order."""
    counted: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def count(func, *args, **kwargs):
        counted.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", count)
    return counted


def test_a_read_of_the_embedded_database_makes_no_thread_hop(api, hops) -> None:
    assert api.call("a", "GET", "/v1/projects/a").status_code == 200  # token looked up too
    assert api.call("a", "GET", "/v1/projects/a/networks").status_code == 200
    assert hops == []
    made = api.call(
        "a", "POST", "/v1/projects/a/networks", json={"name": "n2", "cidr": "10.9.0.0/24"}
    )
    assert made.status_code == 201, made.text
    assert len(hops) == 1  # a write may wait for SQLite's write lock: in the pool


def test_a_read_hops_only_where_reads_may_wait(db, hops, serve) -> None:
    """PostgreSQL reads wait on the network: token lookup and endpoint in the pool;
    SQLite's on the loop."""
    with db.session() as s:
        inventory.create_project(s, "p")
        _row, token = apitokens.create(s, "t", "p")
    apitokens.VERIFIED.forget()
    with serve(db) as url:
        answer = httpx.get(f"{url}/v1/projects/p", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    assert len(hops) == (2 if db.reads_wait else 0)


def test_only_get_routes_are_database_reads(api) -> None:
    """A route marked as a read runs on the event loop on SQLite: a write there would
    hold the loop while waiting for the write lock."""
    reads = {
        (route.path, method)
        for route in _api_routes(create_app(api.db).routes)
        if getattr(route.endpoint, "database_read", False)  # functools.wraps copies it
        for method in route.methods
    }
    assert ("/v1/projects/{name}", "GET") in reads
    assert {method for _path, method in reads} == {"GET"}


def test_a_token_revoked_by_another_process_is_refused_within_the_bound(
    api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process's revocation (a plain UPDATE here, which this process's sessions
    never see) reaches this process once its memory of the token expires."""
    now = [1000.0]
    monkeypatch.setattr(apitokens, "clock", lambda: now[0])
    assert api.call("a", "GET", "/v1/projects/a").status_code == 200
    with api.db.engine.begin() as connection:
        connection.execute(
            update(ApiToken)
            .where(ApiToken.id == api.token_ids["a"])
            .values(revoked_at=datetime.now(UTC))
        )
    now[0] += apitokens.VERIFIED_SECONDS / 2
    assert api.call("a", "GET", "/v1/projects/a").status_code == 200  # the stated bound
    now[0] += apitokens.VERIFIED_SECONDS / 2
    denied = api.call("a", "GET", "/v1/projects/a")
    assert denied.status_code == 401
    assert denied.json()["error"]["message"] == "unknown or revoked token"


def test_a_revocation_through_the_api_is_refused_at_once(api) -> None:
    assert api.call("a", "GET", "/v1/projects/a").status_code == 200
    revoked = api.call("admin", "DELETE", f"/v1/tokens/{api.token_ids['a']}")
    assert revoked.status_code == 200
    assert api.call("a", "GET", "/v1/projects/a").status_code == 401


def test_a_deleted_projects_token_is_refused_at_once(api) -> None:
    """Deleting a project deletes its tokens (cascade): a name reused at once must not
    be reachable with the old project's token."""
    assert api.call("admin", "POST", "/v1/projects", json={"name": "c"}).status_code == 201
    made = api.call("admin", "POST", "/v1/tokens", json={"name": "t-c", "project": "c"})
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    assert api.call(None, "GET", "/v1/projects/c", headers=dict(headers)).status_code == 200
    assert api.call("admin", "DELETE", "/v1/projects/c").status_code == 204
    assert api.call("admin", "POST", "/v1/projects", json={"name": "c"}).status_code == 201
    assert api.call(None, "GET", "/v1/projects/c", headers=dict(headers)).status_code == 401


class VerifiedTokensModel(RuleBasedStateMachine):
    """`apitokens.Verified` against a plain model: a token is served from memory only
    if it was remembered, with a generation no `forget()` has ended, less than
    VERIFIED_SECONDS ago."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.real_clock = apitokens.clock
        apitokens.clock = lambda: self.now
        self.cache = apitokens.Verified()
        self.expires: dict[str, float] = {}
        self.lookups: list[tuple[str, int]] = []  # (digest, generation at its start)

    @rule(digest=st.sampled_from("abc"))
    def start_lookup(self, digest: str) -> None:
        self.lookups.append((digest, self.cache.generation))

    @precondition(lambda self: self.lookups)
    @rule(index=st.integers(min_value=0))
    def finish_lookup(self, index: int) -> None:
        digest, generation = self.lookups.pop(index % len(self.lookups))
        caller = apitokens.Caller(id=ord(digest), name=digest, project=None)
        if generation == self.cache.generation:
            self.expires[digest] = self.now + apitokens.VERIFIED_SECONDS
        self.cache.remember(digest, caller, generation)

    @rule()
    def forget(self) -> None:
        self.cache.forget()
        self.expires.clear()

    @rule(seconds=st.sampled_from([0.0, 0.25, 0.5, apitokens.VERIFIED_SECONDS, 2.0]))
    def wait(self, seconds: float) -> None:
        self.now += seconds

    @invariant()
    def serves_exactly_the_live_entries(self) -> None:
        for digest in "abc":
            served = self.cache.get(digest) is not None
            assert served == (self.expires.get(digest, -1.0) > self.now), digest

    def teardown(self) -> None:
        apitokens.clock = self.real_clock


TestVerifiedTokens = VerifiedTokensModel.TestCase
