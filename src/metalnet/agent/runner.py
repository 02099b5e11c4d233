"""The agent loop the provisioning ramdisk runs: fetch this node's task, run it, report.

`run_agent` is the whole program behind `metalnet agent`; it returns the process
exit code instead of exiting so the CLI and the lab can both call it. Every step
is logged as one line naming the node, the task, the phase and the byte count, so
a node's console tells an operator what happened without a debugger.

Talking to the controller: transient failures (connection errors, timeouts, 5xx,
429) are retried a few times with exponential back-off, because the controller may
restart at any moment and resumes from its database. While waiting for a task the
agent keeps polling through such failures until `wait_timeout`. A 401/403 is never
retried: the token is wrong or belongs to another node, and the agent stops with a
one-line message. Progress is advisory; losing one is logged, not fatal.

The image is fetched with a separate HTTP client that does not carry the node's
token, since the image server need not be the controller.
"""

from __future__ import annotations

import enum
import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pydantic

from metalnet.agent.disk import CHUNK, Disk, DiskError, DiskReport, deploy, erase
from metalnet.agent.protocol import (
    Phase,
    Progress,
    Task,
    TaskResult,
    bearer,
    progress_path,
    result_path,
    task_path,
)
from metalnet.errors import InputError
from metalnet.retry import Retry
from metalnet.validate import ImagePolicy

log = logging.getLogger(__name__)

CONTROLLER_RETRY = Retry(attempts=5, first=0.2, cap=2.0)
"""Each call to the controller: a restart of the controller is outlasted, a dead one not."""
MAX_REDIRECTS = 5
PROGRESS_INTERVAL = 0.25
"""Seconds between progress reports within one phase (at most ~4 a second)."""


class ExitCode(enum.IntEnum):
    """What `run_agent` returns; the ramdisk's init script or the lab acts on it."""

    OK = 0
    TASK_FAILED = 1
    AUTH = 2
    NO_TASK = 3
    CONTROLLER = 4


class ControllerError(Exception):
    """The controller could not be reached or answered something off-protocol."""


class AuthError(ControllerError):
    """The controller refused the token (401) or it belongs to another node (403)."""


class ControllerUnreachable(ControllerError):
    """Transient failures outlasted the retries; waiting for a task polls on anyway."""


class _Transient(Exception):
    """One failed attempt worth retrying: the controller may be restarting."""


@dataclass
class Throttle:
    """Decides which progress updates are sent: the first of every phase, the one
    that completes a phase, and otherwise at most one per `interval` seconds."""

    interval: float = PROGRESS_INTERVAL
    clock: Callable[[], float] = time.monotonic
    _phase: Phase | None = field(default=None, init=False)
    _last: float = field(default=0.0, init=False)

    def should_send(self, phase: Phase, done: int, total: int) -> bool:
        now = self.clock()
        due = phase != self._phase or done == total or now - self._last >= self.interval
        if due:
            self._phase, self._last = phase, now
        return due


class _Controller:
    """The three protocol calls for one node, with retries and error mapping."""

    def __init__(self, http: httpx.Client, node: str) -> None:
        self.http, self.node = http, node

    def fetch_task(self) -> Task | None:
        response = self._request("GET", task_path(self.node))
        if response.status_code == 204:
            return None
        try:
            return Task.model_validate_json(response.content)
        except pydantic.ValidationError as exc:
            raise ControllerError(f"controller sent an invalid task: {_first_error(exc)}") from exc

    def send_progress(self, task_id: int, progress: Progress) -> None:
        self._request("POST", progress_path(self.node, task_id), progress)

    def send_result(self, task_id: int, result: TaskResult) -> None:
        self._request("POST", result_path(self.node, task_id), result)

    def _request(
        self, method: str, path: str, body: pydantic.BaseModel | None = None
    ) -> httpx.Response:
        """Send one call, retrying transient failures with exponential back-off."""
        try:
            return CONTROLLER_RETRY.call(
                lambda: self._attempt(method, path, body),
                retry_on=(_Transient,),
                what=f"node={self.node} {method} {path}",
            )
        except _Transient as exc:
            raise ControllerUnreachable(
                f"controller unreachable: {method} {path} failed ({exc}) "
                f"{CONTROLLER_RETRY.attempts} times"
            ) from exc

    def _attempt(self, method: str, path: str, body: pydantic.BaseModel | None) -> httpx.Response:
        content = body.model_dump_json(exclude_none=True) if body is not None else None
        headers = {"Content-Type": "application/json"} if body is not None else None
        try:
            response = self.http.request(method, path, content=content, headers=headers)
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        status = response.status_code
        if status in (401, 403):
            raise AuthError(
                f"controller refused the token on {method} {path} "
                f"(HTTP {status}: {_detail(response)})"
            )
        if status == 429 or status >= 500:
            raise _Transient(f"HTTP {status}")
        if status not in (200, 204):
            raise ControllerError(
                f"controller answered HTTP {status} to {method} {path}: {_detail(response)}"
            )
        return response


def _detail(response: httpx.Response) -> str:
    """The controller's error text: FastAPI's {"detail": ...} or the raw body, one line."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        detail = response.text
    return " ".join(str(detail).split())[:200] or response.reason_phrase


def _first_error(exc: pydantic.ValidationError) -> str:
    error = exc.errors()[0]
    return f"{'.'.join(map(str, error['loc'])) or 'task'}: {error['msg']}"


def _wait_for_task(api: _Controller, poll_interval: float, wait_timeout: float) -> Task | None:
    """Poll until a task arrives; transient failures just mean 'poll again'."""
    deadline = time.monotonic() + wait_timeout
    log.info("node=%s waiting for a task", api.node)
    while True:
        try:
            task = api.fetch_task()
        except ControllerUnreachable as exc:
            log.warning("node=%s %s; still polling", api.node, exc)
            task = None
        if task is not None:
            return task
        if time.monotonic() + poll_interval > deadline:
            return None
        time.sleep(poll_interval)


def _reporter(api: _Controller, task_id: int) -> Callable[[Phase, int, int], None]:
    """A progress callback for the disk code that logs and posts throttled updates."""
    throttle = Throttle()

    def report(phase: Phase, done: int, total: int) -> None:
        if not throttle.should_send(phase, done, total):
            return
        log.info("node=%s task=%d phase=%s bytes=%d/%d", api.node, task_id, phase, done, total)
        try:
            api.send_progress(task_id, Progress(phase=phase, done_bytes=done, total_bytes=total))
        except AuthError:
            raise
        except ControllerError as exc:
            log.warning("node=%s task=%d progress not delivered: %s", api.node, task_id, exc)

    return report


class ImageRefused(Exception):
    """The image URL, or a redirect, leads outside the controller's image policy."""


def _check_target(policy: ImagePolicy, url: str) -> str:
    """The address to fetch `url` from: the policy's check, then again on every address
    the host resolves to, so a name cannot lead to one of the controller's own endpoints.
    The connection goes to the address returned (`_get`), never to a second answer."""
    try:
        policy.check(url)
    except InputError as exc:
        raise ImageRefused(str(exc)) from None
    parts = httpx.URL(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        found = socket.getaddrinfo(parts.host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpx.ConnectError(f"cannot resolve {parts.host}: {exc}") from None
    addresses = [info[4][0] for info in found]
    if any(policy.denies(address, port) for address in addresses):
        raise ImageRefused(f"image URL {url!r} points at the controller itself")
    return addresses[0]


def _get(http: httpx.Client, url: str, address: str) -> httpx.Request:
    """A GET of `url` sent to `address`, where its host name was checked: the name is
    not resolved again, since a second answer may name another host (DNS rebinding).
    The server still sees the name (Host header) and TLS checks the certificate
    against it (SNI, httpcore's `sni_hostname` extension)."""
    named = httpx.URL(url)
    headers = {"Host": named.netloc.decode("ascii"), "Accept-Encoding": "identity"}
    extensions = {"sni_hostname": named.host} if named.scheme == "https" else {}
    return http.build_request(
        "GET", named.copy_with(host=address), headers=headers, extensions=extensions
    )


@contextmanager
def _image(
    http: httpx.Client, url: str, policy: ImagePolicy
) -> Iterator[tuple[Iterator[bytes], int | None]]:
    """Open the image download: its byte stream and its announced size, if any.

    Redirects are followed by hand, each checked against the policy before it is
    requested, and each fetched from the address its name was checked at. The bytes
    are taken as sent (`iter_raw`): a server that labels a .gz file
    `Content-Encoding: gzip` despite `Accept-Encoding: identity` still yields the
    published file, whose sha256 the task names; the disk code
    recognises the compression from the bytes themselves."""
    address = _check_target(policy, url)
    for _ in range(MAX_REDIRECTS + 1):
        response = http.send(_get(http, url, address), stream=True)
        if not response.is_redirect:
            break
        location = response.headers.get("Location", "")
        response.close()
        url = str(httpx.URL(url).join(location))  # relative to the name, not the address
        try:
            address = _check_target(policy, url)
        except ImageRefused:
            log.error("image redirect to %s refused by the image policy", url)
            raise ImageRefused(
                "the image server redirected to a host that is not allowed"
            ) from None
    else:
        response.close()
        raise ImageRefused(f"more than {MAX_REDIRECTS} redirects")
    try:
        if response.status_code != 200:
            raise DiskError(
                f"image download failed: HTTP {response.status_code} from {url}",
                public="image download failed: the image server answered with an error",
            )
        length = response.headers.get("Content-Length")
        yield response.iter_raw(CHUNK), int(length) if length is not None else None
    finally:
        response.close()


def _execute(
    task: Task, disk_path: Path, images: httpx.Client, progress: Callable[[Phase, int, int], None]
) -> DiskReport:
    """Run one task on the disk; raises DiskError, OSError or httpx.HTTPError on failure."""
    with Disk(disk_path) as disk:
        if task.kind == "erase":
            return erase(disk, progress)
        assert task.image_url is not None and task.sha256 is not None  # Task validates this
        policy = ImagePolicy(task.image_allow, task.image_deny)
        with _image(images, task.image_url, policy) as (chunks, length):
            return deploy(disk, chunks, task.sha256, progress, total_bytes=length)


def _run_task(task: Task, disk_path: Path, images: httpx.Client, api: _Controller) -> TaskResult:
    """Run the task and turn its outcome, good or bad, into the result to report.

    The report reaches the tenant: it says what failed, never what was read (digests,
    sizes, status codes, connection errors of whatever the URL reached). The details
    go to this node's log for the operator.
    """
    try:
        report = _execute(task, disk_path, images, _reporter(api, task.id))
    except ImageRefused as exc:
        return TaskResult(ok=False, message=f"image refused: {exc}", bytes=0)
    except DiskError as exc:
        log.error("node=%s task=%d failed: %s", api.node, task.id, exc)
        return TaskResult(ok=False, message=exc.public, bytes=exc.bytes_done)
    except httpx.HTTPError as exc:
        log.error("node=%s task=%d image download failed: %r", api.node, task.id, exc)
        return TaskResult(ok=False, message=_download_failure(exc), bytes=0)
    except OSError as exc:
        return TaskResult(ok=False, message=f"disk {disk_path}: {exc.strerror or exc}", bytes=0)
    if task.kind == "erase":
        message = f"erased and verified {report.bytes} bytes"
    else:
        message = f"deployed {report.bytes} bytes"
    if report.image_format == "raw":
        return TaskResult(ok=True, message=message, bytes=report.bytes, sha256=report.sha256)
    return TaskResult(
        ok=True,
        message=f"{message} from a {report.image_format} image of {report.image_bytes} bytes",
        bytes=report.bytes,
        sha256=report.sha256,
        image_format=report.image_format,
        image_bytes=report.image_bytes,
    )


def _download_failure(exc: httpx.HTTPError) -> str:
    """What failed in an image download, in words that reveal nothing fetched."""
    if isinstance(exc, httpx.TimeoutException):
        return "image download failed: the image server did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "image download failed: could not connect to the image server"
    return "image download failed: the transfer broke off"


def run_agent(
    controller_url: str,
    node: str,
    token: str,
    disk_path: str | Path,
    *,
    poll_interval: float = 0.5,
    wait_timeout: float = 300.0,
    http_timeout: float = 10.0,
    verify: ssl.SSLContext | bool = True,
) -> int:
    """Wait for this node's task, run it on `disk_path`, report progress and result.

    Returns 0 when a successful result was reported, otherwise an `ExitCode`:
    TASK_FAILED (failure reported), AUTH (token refused), NO_TASK (none within
    `wait_timeout` seconds) or CONTROLLER (unreachable or off-protocol). `verify`: what
    an https:// controller's certificate is checked against.
    """
    with (
        httpx.Client(
            base_url=controller_url, headers=bearer(token), timeout=http_timeout, verify=verify
        ) as http,
        httpx.Client(timeout=http_timeout, follow_redirects=False) as images,
    ):
        api = _Controller(http, node)
        try:
            return _serve_one_task(api, Path(disk_path), images, poll_interval, wait_timeout)
        except AuthError as exc:
            log.error("node %s: %s", node, exc)
            return ExitCode.AUTH
        except ControllerError as exc:
            log.error("node %s: %s", node, exc)
            return ExitCode.CONTROLLER


def _serve_one_task(
    api: _Controller,
    disk_path: Path,
    images: httpx.Client,
    poll_interval: float,
    wait_timeout: float,
) -> ExitCode:
    task = _wait_for_task(api, poll_interval, wait_timeout)
    if task is None:
        log.error("node=%s no task arrived within %g s", api.node, wait_timeout)
        return ExitCode.NO_TASK
    log.info(
        "node=%s task=%d kind=%s image=%s disk=%s",
        api.node,
        task.id,
        task.kind,
        task.image_url or "-",
        disk_path,
    )
    result = _run_task(task, disk_path, images, api)
    outcome = "ok" if result.ok else "failed"
    log.info(
        "node=%s task=%d result=%s bytes=%d sha256=%s message=%s",
        api.node,
        task.id,
        outcome,
        result.bytes,
        result.sha256 or "-",
        result.message,
    )
    api.send_result(task.id, result)
    return ExitCode.OK if result.ok else ExitCode.TASK_FAILED
