"""Schemathesis fuzzes `metalnet serve` from its own OpenAPI document over real HTTP.

Every operation gets generated requests (valid and invalid bodies, paths and queries)
with an admin token; every answer must be documented: no 5xx, a declared status code
and content type, and a body that matches the declared schema. Bounded to a few
examples per operation so it runs in CI.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from metalnet.sim.lab.postgres import free_port

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def served(template, tmp_path_factory) -> Iterator[tuple[str, str]]:
    """`metalnet serve` (controller, worker and API) over a copy of the seeded database."""
    source, tokens, _ids = template
    home = tmp_path_factory.mktemp("serve")
    shutil.copy(source, home / "api.db")
    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("metalnet")),
            "--db",
            f"sqlite:///{home / 'api.db'}",
            "serve",
            "--listen",
            url.removeprefix("http://"),
        ],
        env={**os.environ, "HOME": str(home)},
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/openapi.json").is_success:
                break
        except httpx.HTTPError:
            pass
        assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
        time.sleep(0.1)
    yield url, tokens["admin"]
    server.send_signal(signal.SIGTERM)
    server.wait(30)


def test_every_answer_matches_the_openapi_document(served) -> None:
    url, token = served
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    operations = [op for op in operations if op.path.startswith("/v1/")]  # admin-token API
    assert len(operations) >= 25
    headers = {"Authorization": f"Bearer {token}"}

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
        def answers_as_documented(case) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        answers_as_documented()
