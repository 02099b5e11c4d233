"""The agent protocol's models, and the agent loop against the real controller over HTTP.

The controller is metalnet's own app and agent router over a database (conftest.py);
what the agent reported is read back from the database, as the lifecycle reads it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import logging
import os
import socket
import threading
import time

import httpx
import pytest
from pydantic import ValidationError

from metalnet.agent.protocol import (
    Progress,
    Task,
    TaskResult,
    bearer,
    progress_path,
    task_path,
)
from metalnet.agent.runner import ExitCode, Throttle, run_agent
from metalnet.db.models import AgentTask

MIB = 1 << 20
SHA = "ab" * 32


# --- payload models -------------------------------------------------------------


def test_task_models_accept_the_documented_shapes() -> None:
    deploy = Task.model_validate_json(
        f'{{"id": 7, "kind": "deploy", "image_url": "http://img/x.raw", "sha256": "{SHA}"}}'
    )
    erase = Task.model_validate_json('{"id": 8, "kind": "erase", "image_url": null}')
    assert (deploy.kind, deploy.sha256, erase.kind, erase.image_url) == (
        "deploy",
        SHA,
        "erase",
        None,
    )


@pytest.mark.parametrize(
    "payload",
    [
        {"id": 1, "kind": "erase", "extra": 1},
        {"id": 1, "kind": "format"},
        {"id": "1", "kind": "erase"},
        {"id": 1, "kind": "deploy", "image_url": "http://img/x"},
        {"id": 1, "kind": "deploy", "image_url": "http://img/x", "sha256": SHA.upper()},
        {"id": 1, "kind": "deploy", "image_url": "http://img/x", "sha256": SHA[:-1]},
        {"id": 1, "kind": "deploy", "image_url": "file:///etc/shadow", "sha256": SHA},
        {"id": 1, "kind": "erase", "sha256": SHA},
    ],
)
def test_task_rejects_malformed_payloads(payload: dict) -> None:
    with pytest.raises(ValidationError):
        Task.model_validate(payload)


def test_progress_and_result_are_strict() -> None:
    with pytest.raises(ValidationError):
        Progress(phase="format", done_bytes=0, total_bytes=0)
    with pytest.raises(ValidationError):
        Progress(phase="write", done_bytes=5, total_bytes=4)
    assert Progress(phase="download", done_bytes=5, total_bytes=0).done_bytes == 5
    with pytest.raises(ValidationError):
        TaskResult.model_validate({"ok": True, "message": "", "bytes": 1, "note": "x"})
    with pytest.raises(ValidationError):
        TaskResult(ok=False, message="x", bytes=-1)
    with pytest.raises(ValidationError):
        TaskResult(ok=True, message="x", bytes=1, image_format="zstd", image_bytes=1)
    earlier = {"ok": True, "message": "deployed", "bytes": 1, "sha256": None}
    assert TaskResult.model_validate(earlier).image_format is None, "earlier agents' results"


def test_paths_quote_the_node_name() -> None:
    assert task_path("n1") == "/agent/v1/nodes/n1/task"
    assert progress_path("a/b", 3) == "/agent/v1/nodes/a%2Fb/tasks/3/progress"


def test_throttle_sends_phase_changes_completions_and_four_a_second() -> None:
    now = [0.0]
    throttle = Throttle(interval=0.25, clock=lambda: now[0])
    sent = []
    for step in range(20):  # 20 updates over one second of one phase
        now[0] = step * 0.05
        sent.append(throttle.should_send("download", step, 100))
    assert sum(sent) == 4
    assert throttle.should_send("download", 100, 100), "a completed phase is always sent"
    assert throttle.should_send("verify", 0, 100), "a new phase is always sent"


# --- the agent against the real controller -----------------------------------------


@pytest.fixture
def lab(controller):
    """The controller knowing nodes n1 and n2; their tokens in `lab.tokens`."""
    controller.tokens = {name: controller.node(name) for name in ("n1", "n2")}
    return controller


def agent(lab, disk, *, node: str = "n1", token: str | None = None, **kwargs) -> int:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("wait_timeout", 5.0)
    return run_agent(lab.url, node, token or lab.tokens[node], disk, **kwargs)


def wait_for(predicate, what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def test_agent_polls_then_deploys_and_reports(lab, make_disk, caplog) -> None:
    caplog.set_level(logging.INFO, logger="metalnet.agent")
    disk = make_disk(16 * MIB)
    image = os.urandom(5 * MIB + 7)
    url, sha = lab.add_image("base.raw", image)
    outcome: list[int] = []
    running = threading.Thread(target=lambda: outcome.append(agent(lab, disk)))
    running.start()
    wait_for(lambda: lab.polls() >= 2, "two polls without a task")
    task_id = lab.give("n1", "deploy", url, sha)
    running.join(30)

    assert outcome == [ExitCode.OK]
    assert disk.read_bytes()[: len(image)] == image
    progress = lab.progress(task_id)
    assert len(progress) >= 4
    phases = [p["phase"] for p in progress]
    assert phases == sorted(phases, key=["download", "verify"].index), "download, then verify"
    assert set(phases) == {"download", "verify"}
    assert all(p["total_bytes"] == len(image) for p in progress), "Content-Length is the total"
    assert progress[-1]["done_bytes"] == len(image)
    task = lab.task(task_id)
    assert (task.state, task.message, task.done_bytes) == (
        "done",
        f"deployed {len(image)} bytes",
        len(image),
    )
    assert f"node=n1 task={task_id} phase=verify bytes=5242887/5242887" in caplog.text


def results(lab, task_id: int) -> list[dict]:
    """The result payloads the agent posted for `task_id`, as JSON."""
    return [
        body
        for method, path, status, body in lab.recorder.requests
        if path.endswith(f"/tasks/{task_id}/result")
    ]


def test_agent_deploys_a_gzip_image_served_with_a_content_encoding(lab, make_disk) -> None:
    """The bytes served are the image: its sha256 is the .gz file's, and the agent,
    not the HTTP client, decompresses it."""
    disk = make_disk(8 * MIB)
    image = os.urandom(MIB) + bytes(3 * MIB)
    packed = gzip.compress(image)
    _, sha = lab.add_image("base.img.gz", packed)
    task_id = lab.give("n1", "deploy", f"{lab.images_url}/encoded/base.img.gz", sha)

    assert agent(lab, disk) == ExitCode.OK

    assert disk.read_bytes()[: len(image)] == image
    message = f"deployed {len(image)} bytes from a gzip image of {len(packed)} bytes"
    task = lab.task(task_id)
    assert (task.state, task.message, task.done_bytes) == ("done", message, len(image))
    downloads = [p for p in lab.progress(task_id) if p["phase"] == "download"]
    assert (downloads[-1]["done_bytes"], downloads[-1]["total_bytes"]) == (len(packed),) * 2
    assert results(lab, task_id) == [
        {
            "ok": True,
            "message": message,
            "bytes": len(image),
            "sha256": hashlib.sha256(image).hexdigest(),
            "image_format": "gzip",
            "image_bytes": len(packed),
        }
    ]


def test_result_of_a_raw_deploy_keeps_the_fields_of_earlier_releases(lab, make_disk) -> None:
    """A controller of the release before compressed images forbids unknown fields."""
    disk = make_disk(MIB)
    url, sha = lab.add_image("tiny.raw", b"raw image")
    task_id = lab.give("n1", "deploy", url, sha)

    assert agent(lab, disk) == ExitCode.OK

    assert [set(body) for body in results(lab, task_id)] == [{"ok", "message", "bytes", "sha256"}]


def test_agent_reports_a_corrupt_gzip_image_and_leaves_no_image(lab, make_disk) -> None:
    disk = make_disk(4 * MIB, fill=0)
    packed = bytearray(gzip.compress(os.urandom(2 * MIB)))
    packed[MIB] ^= 0xFF
    url, sha = lab.add_image("broken.img.gz", bytes(packed))
    task_id = lab.give("n1", "deploy", url, sha)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    assert (lab.task(task_id).state, lab.task(task_id).message) == ("failed", "corrupt gzip image")
    assert disk.read_bytes() == bytes(4 * MIB)


def test_agent_erases_and_reports(lab, make_disk) -> None:
    disk = make_disk(8 * MIB)
    task_id = lab.give("n1", "erase")

    assert agent(lab, disk) == ExitCode.OK

    assert disk.read_bytes() == bytes(8 * MIB)
    progress = lab.progress(task_id)
    assert progress[0]["phase"] == "erase"
    assert progress[-1] == {"phase": "verify", "done_bytes": 8 * MIB, "total_bytes": 8 * MIB}
    task = lab.task(task_id)
    assert (task.state, task.done_bytes, task.phase) == ("done", 8 * MIB, "verify")


def test_agent_reports_a_wrong_checksum_without_what_it_read(lab, make_disk) -> None:
    """The tenant learns that the checksum differs, not the digest of what was fetched."""
    disk = make_disk(8 * MIB, fill=0)
    image = os.urandom(MIB)
    url, actual = lab.add_image("evil.raw", image)
    task_id = lab.give("n1", "deploy", url, SHA)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    task = lab.task(task_id)
    assert task.state == "failed"
    assert task.message == "checksum mismatch: the sha256 is not the one requested"
    assert actual not in task.message
    assert disk.read_bytes() == bytes(8 * MIB), "the wrong image did not stay on the disk"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (b"x" * (MIB + 1), "image larger than disk"),
        (None, "image download failed: the image server answered with an error"),
    ],
)
def test_agent_reports_an_image_it_cannot_deploy(lab, make_disk, image, expected) -> None:
    disk = make_disk(MIB)
    if image:
        url, sha = lab.add_image("img.raw", image)
    else:
        url, sha = f"{lab.images_url}/images/gone", SHA
    task_id = lab.give("n1", "deploy", url, sha)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    task = lab.task(task_id)
    assert (task.state, task.message, task.done_bytes) == ("failed", expected, 0)


def test_agent_reports_a_missing_disk(lab, tmp_path) -> None:
    task_id = lab.give("n1", "erase")

    assert agent(lab, tmp_path / "sdz") == ExitCode.TASK_FAILED

    assert lab.task(task_id).message == f"disk {tmp_path / 'sdz'}: No such file or directory"


def test_token_of_another_node_is_refused_and_the_agent_stops(lab, make_disk, caplog) -> None:
    disk = make_disk(MIB)
    before = disk.read_bytes()
    task_id = lab.give("n1", "erase")

    assert agent(lab, disk, node="n1", token=lab.tokens["n2"]) == ExitCode.AUTH

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == (
        "node n1: controller refused the token on GET /agent/v1/nodes/n1/task "
        "(HTTP 403: token belongs to node n2, not n1)"
    )
    assert (lab.task(task_id).state, disk.read_bytes()) == ("pending", before)


def test_unknown_token_is_refused(lab, make_disk, caplog) -> None:
    assert agent(lab, make_disk(MIB), token="guess") == ExitCode.AUTH
    assert "HTTP 401: unknown or revoked token" in caplog.text


def test_agent_gives_up_when_no_task_arrives(lab, make_disk) -> None:
    assert agent(lab, make_disk(MIB), wait_timeout=0.3) == ExitCode.NO_TASK
    assert 2 <= lab.polls() <= 7


def test_agent_retries_a_restarting_controller(lab, make_disk, virtual_clock) -> None:
    task_id = lab.give("n1", "erase")
    lab.recorder.failures = 2  # the first two requests get 503

    assert agent(lab, make_disk(MIB)) == ExitCode.OK
    assert lab.task(task_id).state == "done"
    assert virtual_clock == [0.2, 0.4], "one back-off per 503, from the one retry policy"


def test_agent_without_controller_polls_until_the_deadline(make_disk, virtual_clock) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert (
        run_agent(url, "n1", "t", make_disk(MIB), poll_interval=0.05, wait_timeout=0.5)
        == ExitCode.NO_TASK
    )


def test_result_digest_matches_the_disk(lab, make_disk, caplog) -> None:
    """The sha256 the agent logs is of what the disk holds, not just of what was received."""
    caplog.set_level(logging.INFO, logger="metalnet.agent")
    disk = make_disk(2 * MIB)
    url, sha = lab.add_image("small.raw", b"hello metal")
    task_id = lab.give("n1", "deploy", url, sha)
    assert agent(lab, disk) == ExitCode.OK
    written = hashlib.sha256(disk.read_bytes()[: lab.task(task_id).done_bytes]).hexdigest()
    assert f"result=ok bytes=11 sha256={written}" in caplog.text


def test_task_is_stored_before_the_agent_is_answered(lab, make_disk) -> None:
    """A report the controller cannot commit is not acknowledged: the agent is told to
    retry (a 5xx), never 204 for a report that was then lost."""
    from sqlalchemy import event

    task_id = lab.give("n1", "erase")
    refused = []

    def refuse(session):
        if any(isinstance(o, AgentTask) and o.state == "done" for o in session.dirty):
            refused.append(True)
            raise RuntimeError("database gone")

    event.listen(lab.db.sessions, "before_commit", refuse)
    try:
        with httpx.Client(base_url=lab.url, headers=bearer(lab.tokens["n1"])) as http:
            assert http.get("/agent/v1/nodes/n1/task").status_code == 200
            answer = http.post(
                f"/agent/v1/nodes/n1/tasks/{task_id}/result",
                json={"ok": True, "message": "erased", "bytes": 5, "sha256": None},
            )
    finally:
        event.remove(lab.db.sessions, "before_commit", refuse)
    assert refused and answer.status_code >= 500
    assert lab.task(task_id).state == "running"


@pytest.mark.parametrize(
    "controller", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_byte_counters_hold_more_than_32_bits(lab) -> None:
    """A 5 GiB erase's byte count is stored exactly (a 32-bit column would lose it)."""
    task_id = lab.give("n1", "erase")
    five_gib = 5 << 30
    path = f"/agent/v1/nodes/n1/tasks/{task_id}"
    progress = {"phase": "erase", "done_bytes": five_gib - 1, "total_bytes": five_gib}
    result = {"ok": True, "message": "erased", "bytes": five_gib, "sha256": None}
    with httpx.Client(base_url=lab.url, headers=bearer(lab.tokens["n1"])) as http:
        assert http.get("/agent/v1/nodes/n1/task").status_code == 200
        assert http.post(f"{path}/progress", json=progress).status_code == 204
        assert http.post(f"{path}/result", json=result).status_code == 204
    task = lab.task(task_id)
    assert (task.done_bytes, task.total_bytes) == (five_gib, five_gib)


# --- where images may come from -----------------------------------------------------


def test_image_from_a_host_outside_the_policy_is_refused_before_connecting(lab, make_disk) -> None:
    """The task names a URL the controller's policy does not allow (the controller would
    refuse it at input; the agent checks again): nothing is fetched, nothing written."""
    disk = make_disk(MIB, fill=7)
    with socket.socket() as sock:
        sock.bind(("127.0.0.2", 0))
        sock.listen()
        elsewhere = f"http://127.0.0.2:{sock.getsockname()[1]}/secret"
        task_id = lab.give("n1", "deploy", elsewhere, SHA)
        assert agent(lab, disk) == ExitCode.TASK_FAILED
        sock.setblocking(False)
        with pytest.raises(BlockingIOError):
            sock.accept()  # nobody connected
    message = lab.task(task_id).message
    assert message.startswith("image refused: ") and "127.0.0.2" in message
    assert disk.read_bytes() == bytes([7]) * MIB


@pytest.mark.parametrize("target", ["controller", "outside"])
def test_redirect_out_of_the_policy_is_refused(lab, make_disk, target) -> None:
    disk = make_disk(MIB, fill=7)
    to = f"{lab.url}/metrics" if target == "controller" else "http://127.0.0.2:9/x"
    task_id = lab.give("n1", "deploy", lab.redirect("hop", to), SHA)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    task = lab.task(task_id)
    assert (
        task.message == "image refused: the image server redirected to a host that is not allowed"
    )
    assert disk.read_bytes() == bytes([7]) * MIB
    assert not any(path == "/metrics" for _, path, _, _ in lab.recorder.requests)


def test_redirect_within_the_policy_is_followed(lab, make_disk) -> None:
    disk = make_disk(2 * MIB)
    url, sha = lab.add_image("moved.raw", b"moved image")
    task_id = lab.give("n1", "deploy", lab.redirect("old", url), sha)
    assert agent(lab, disk) == ExitCode.OK
    assert lab.task(task_id).state == "done"
    assert disk.read_bytes()[:11] == b"moved image"


def _resolving(monkeypatch: pytest.MonkeyPatch, name: str, answers: list[str]) -> None:
    """`name` resolves to each of `answers` in turn, then to the last one for good.
    The resolver is replaced because no DNS server the system resolver asks runs
    here; the connections made to the answers are real."""
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host == name:
            host = answers.pop(0) if len(answers) > 1 else answers[0]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def _allow(lab, monkeypatch: pytest.MonkeyPatch, *entries: str) -> None:
    settings = lab.db.settings
    allowed = dataclasses.replace(settings, image_allow=(*settings.image_allow, *entries))
    monkeypatch.setattr(lab.db, "settings", allowed)


def test_an_image_host_is_fetched_from_the_address_it_was_checked_at(
    lab, make_disk, monkeypatch
) -> None:
    """DNS rebinding: the image host's name resolves to an allowed address when the
    agent checks it, then to the controller's. The agent connects to the address it
    checked (where nothing listens), so the controller is never reached."""
    controller = httpx.URL(lab.url)
    _allow(lab, monkeypatch, "rebind.test")
    _resolving(monkeypatch, "rebind.test", ["127.0.0.2", controller.host])
    disk = make_disk(MIB, fill=7)
    task_id = lab.give("n1", "deploy", f"http://rebind.test:{controller.port}/metrics", SHA)
    assert agent(lab, disk) == ExitCode.TASK_FAILED
    assert lab.task(task_id).state == "failed"
    assert not any(path == "/metrics" for _, path, _, _ in lab.recorder.requests)
    assert disk.read_bytes() == bytes([7]) * MIB


def test_an_image_named_by_host_name_is_fetched_by_that_name(lab, make_disk, monkeypatch) -> None:
    """The pinned connection still names the host (Host header), so a name-based image
    server answers; relative redirects stay on the name."""
    images = httpx.URL(lab.images_url)
    _allow(lab, monkeypatch, "images.test")
    _resolving(monkeypatch, "images.test", [images.host])
    _, sha = lab.add_image("named.raw", b"named image")
    named = f"http://images.test:{images.port}/go/hop"
    lab.redirects["hop"] = "/images/named.raw"
    disk = make_disk(2 * MIB)
    task_id = lab.give("n1", "deploy", named, sha)
    assert agent(lab, disk) == ExitCode.OK, lab.task(task_id).message
    assert disk.read_bytes()[:11] == b"named image"
    assert lab.image_hosts == [f"images.test:{images.port}"] * 2
