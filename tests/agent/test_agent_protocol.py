"""The agent protocol's models, and the agent loop against a controller over real HTTP.

The controller used here is the stand-in from conftest.py: a FastAPI app in a
uvicorn thread on a free 127.0.0.1 port that implements the protocol with an
in-memory task table and token -> node map, and also serves the images. The real
controller (the database-backed router) is tested by the lifecycle tests.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket

import pytest
from pydantic import ValidationError

from metalnet.agent.protocol import Progress, Task, TaskResult, progress_path, task_path
from metalnet.agent.runner import ExitCode, Throttle, run_agent

MIB = 1 << 20
SHA = "ab" * 32
TOKENS = {"tok-n1": "n1", "tok-n2": "n2"}


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


# --- the agent against the stand-in controller ------------------------------------


@pytest.fixture
def lab(controller):
    """The stand-in controller knowing nodes n1 and n2 and their tokens."""
    controller.state.tokens.update(TOKENS)
    return controller


def agent(lab, disk, *, node: str = "n1", token: str = "tok-n1", **kwargs) -> int:
    kwargs.setdefault("poll_interval", 0.05)
    kwargs.setdefault("wait_timeout", 5.0)
    return run_agent(lab.url, node, token, disk, **kwargs)


def test_agent_polls_then_deploys_and_reports(lab, make_disk, caplog) -> None:
    caplog.set_level(logging.INFO, logger="metalnet.agent")
    disk = make_disk(16 * MIB)
    image = os.urandom(5 * MIB + 7)
    url, sha = lab.add_image("base.raw", image)
    lab.state.tasks["n1"] = Task(id=11, kind="deploy", image_url=url, sha256=sha)
    lab.state.empty_polls = 2

    assert agent(lab, disk) == ExitCode.OK

    assert lab.state.polls == 3, "two 204 answers, then the task"
    assert disk.read_bytes()[: len(image)] == image
    progress = [p for node, task, p in lab.state.progress if (node, task) == ("n1", 11)]
    assert len(progress) == len(lab.state.progress) >= 4
    phases = [p.phase for p in progress]
    assert phases == sorted(phases, key=["download", "verify"].index), "download, then verify"
    assert set(phases) == {"download", "verify"}
    assert all(p.total_bytes == len(image) for p in progress), "Content-Length is the total"
    assert progress[-1].done_bytes == len(image)
    assert lab.state.results == [
        (
            "n1",
            11,
            TaskResult(
                ok=True, message=f"deployed {len(image)} bytes", bytes=len(image), sha256=sha
            ),
        )
    ]
    assert "node=n1 task=11 phase=verify bytes=5242887/5242887" in caplog.text


def test_agent_erases_and_reports(lab, make_disk) -> None:
    disk = make_disk(8 * MIB)
    lab.state.tasks["n1"] = Task(id=12, kind="erase")

    assert agent(lab, disk) == ExitCode.OK

    assert disk.read_bytes() == bytes(8 * MIB)
    assert lab.state.progress[0][2].phase == "erase"
    assert lab.state.progress[-1][2] == Progress(
        phase="verify", done_bytes=8 * MIB, total_bytes=8 * MIB
    )
    [(_, _, result)] = lab.state.results
    assert (result.ok, result.bytes, result.sha256) == (True, 8 * MIB, None)


def test_agent_reports_a_wrong_checksum_and_exits_non_zero(lab, make_disk) -> None:
    disk = make_disk(8 * MIB, fill=0)
    image = os.urandom(MIB)
    url, actual = lab.add_image("evil.raw", image)
    lab.state.tasks["n1"] = Task(id=13, kind="deploy", image_url=url, sha256=SHA)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    [(_, _, result)] = lab.state.results
    assert not result.ok
    assert result.message == f"checksum mismatch: expected {SHA}, got {actual}"
    assert result.sha256 == actual
    assert disk.read_bytes() == bytes(8 * MIB), "the wrong image did not stay on the disk"


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (b"x" * (MIB + 1), "image larger than disk: 1048577 bytes announced"),
        (None, "image download failed: HTTP 404 from "),
    ],
)
def test_agent_reports_an_image_it_cannot_deploy(lab, make_disk, image, expected) -> None:
    disk = make_disk(MIB)
    url, sha = lab.add_image("img.raw", image) if image else (f"{lab.url}/images/gone", SHA)
    lab.state.tasks["n1"] = Task(id=14, kind="deploy", image_url=url, sha256=sha)

    assert agent(lab, disk) == ExitCode.TASK_FAILED

    [(_, _, result)] = lab.state.results
    assert (result.ok, result.bytes) == (False, 0)
    assert result.message.startswith(expected)


def test_agent_reports_a_missing_disk(lab, tmp_path) -> None:
    lab.state.tasks["n1"] = Task(id=15, kind="erase")

    assert agent(lab, tmp_path / "sdz") == ExitCode.TASK_FAILED

    [(_, _, result)] = lab.state.results
    assert result.message == f"disk {tmp_path / 'sdz'}: No such file or directory"


def test_token_of_another_node_is_refused_and_the_agent_stops(lab, make_disk, caplog) -> None:
    disk = make_disk(MIB)
    before = disk.read_bytes()
    lab.state.tasks["n1"] = Task(id=16, kind="erase")

    assert agent(lab, disk, node="n1", token="tok-n2") == ExitCode.AUTH

    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.getMessage() == (
        "node n1: controller refused the token on GET /agent/v1/nodes/n1/task "
        "(HTTP 403: token belongs to node n2, not n1)"
    )
    assert (lab.state.polls, lab.state.results, disk.read_bytes()) == (0, [], before)


def test_unknown_token_is_refused(lab, make_disk, caplog) -> None:
    assert agent(lab, make_disk(MIB), token="guess") == ExitCode.AUTH
    assert "HTTP 401: missing or unknown token" in caplog.text


def test_agent_gives_up_when_no_task_arrives(lab, make_disk) -> None:
    assert agent(lab, make_disk(MIB), wait_timeout=0.3) == ExitCode.NO_TASK
    assert 2 <= lab.state.polls <= 7


def test_agent_retries_a_restarting_controller(lab, make_disk) -> None:
    lab.state.tasks["n1"] = Task(id=17, kind="erase")
    lab.state.failures = 2  # the first two requests get 503

    assert agent(lab, make_disk(MIB)) == ExitCode.OK
    assert [r.ok for _, _, r in lab.state.results] == [True]


def test_agent_without_controller_polls_until_the_deadline(make_disk, virtual_clock) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert (
        run_agent(url, "n1", "t", make_disk(MIB), poll_interval=0.05, wait_timeout=0.5)
        == ExitCode.NO_TASK
    )


def test_result_digest_matches_the_disk(lab, make_disk) -> None:
    """The sha256 reported is of what the disk holds, not just of what was received."""
    disk = make_disk(2 * MIB)
    url, sha = lab.add_image("small.raw", b"hello metal")
    lab.state.tasks["n1"] = Task(id=18, kind="deploy", image_url=url, sha256=sha)
    assert agent(lab, disk) == ExitCode.OK
    [(_, _, result)] = lab.state.results
    assert result.sha256 == hashlib.sha256(disk.read_bytes()[: result.bytes]).hexdigest()
