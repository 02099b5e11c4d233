"""Deploy an image to, and erase, a node's disk: a block device or (in the lab) a file.

Order of a deploy, and why. The image is streamed straight onto the disk while it
is hashed, then the written region is read back and hashed again. The alternative,
spooling the whole image first and writing it only once its checksum matched,
needs free space as large as the image, and the provisioning ramdisk has only RAM
(images are often larger). So a bad image cannot always be kept off the disk;
instead the agent makes sure it never stays there:

- a raw image announced (Content-Length) as larger than the disk is refused before
  a single byte is written, and one that turns out larger, or a compressed one
  whose content is larger (a decompression bomb included), is stopped at the
  disk's end (a file disk is never extended);
- on any failure (checksum mismatch, too large, broken download, corrupt or
  truncated compressed stream, read-back mismatch) the region written so far is
  zeroed again. A node is only deployed after a verified erase, so this returns
  the disk to its erased state and a half-written or wrong image can never be
  booted.

Compressed images (gzip, xz; metalnet.agent.formats) are decompressed while they
stream, so they need no more memory or space than raw ones. Two digests, because
they are of two things: the task's sha256 is over the bytes downloaded (what the
operator published and hashed), the read-back over the bytes written (the
decompressed content, hashed as it was written). For a raw image they are the same.

Read-back goes to the device, not the page cache: `Disk.sync` fsyncs and then
drops the file's cached pages (posix_fadvise DONTNEED), so a disk that silently
loses writes is caught by the verify pass.

The functions stream in `CHUNK` pieces and never hold an image in memory. They call
`progress(phase, done, total)` after every chunk; throttling is the caller's job.
A deploy's 'download' phase counts bytes downloaded, compressed or not.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from metalnet.agent import formats
from metalnet.agent.protocol import ImageFormat, Phase

CHUNK = 1 << 20
SYNC_EVERY = 64 << 20
"""Bytes written between fsyncs: the download waits on the writes, so its progress
tracks durable bytes, not the page cache."""

ProgressFn = Callable[[Phase, int, int], None]
log = logging.getLogger(__name__)


class DiskError(Exception):
    """A deploy or erase failed; the message names the cause for the task result.

    `bytes` and `sha256` say what was written or hashed before the failure, so the
    controller's record of a failed task is as precise as a successful one.
    """

    def __init__(
        self,
        message: str,
        *,
        bytes_done: int = 0,
        sha256: str | None = None,
        public: str | None = None,
    ) -> None:
        super().__init__(message)
        self.bytes_done = bytes_done
        self.sha256 = sha256
        self.public = public or message
        """What failed, for the tenant: never what was read (digests, sizes of content)."""


@dataclass(frozen=True)
class DiskReport:
    """What a successful deploy or erase wrote and verified."""

    bytes: int
    sha256: str | None
    image_format: ImageFormat = "raw"
    image_bytes: int = 0
    """Bytes downloaded: the published image, compressed or not (0 for an erase)."""


class Disk:
    """A block device or a plain file, opened read/write at a fixed size.

    A missing path is an error rather than a new file: a typo in the disk path
    must not make the agent "deploy" into a file nobody boots from. The size is
    found by seeking to the end, which works for files and block devices alike.
    Tests subclass this to model a faulty disk.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0))
        self.size = os.lseek(self._fd, 0, os.SEEK_END)

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        """Write all of `data` at `offset` (pwrite may write less than asked)."""
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written

    def read_at(self, offset: int, length: int) -> bytes:
        """Read exactly `length` bytes at `offset`; a short read means the disk shrank."""
        parts: list[bytes] = []
        while length:
            part = os.pread(self._fd, length, offset)
            if not part:
                raise DiskError(f"disk {self.path}: unexpected end of disk at byte offset {offset}")
            parts.append(part)
            offset, length = offset + len(part), length - len(part)
        return b"".join(parts)

    def sync(self) -> None:
        """Make written data durable and evict it from the page cache, so the next
        read comes from the device and proves what the device holds."""
        os.fsync(self._fd)
        os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)

    def close(self) -> None:
        """Close the device; safe to call twice."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> Disk:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class _SequentialWriter:
    """Writes a stream from offset 0, bounded by the disk, syncing every SYNC_EVERY."""

    def __init__(self, disk: Disk) -> None:
        self.disk = disk
        self.offset = 0
        self._unsynced = 0

    def write(self, data: bytes | memoryview) -> None:
        if self.offset + len(data) > self.disk.size:
            raise DiskError(
                f"image larger than disk: more than {self.disk.size} bytes "
                f"(disk {self.disk.path} holds {self.disk.size} bytes)",
                bytes_done=self.offset,
                public="image larger than disk",
            )
        self.disk.write_at(self.offset, data)
        self.offset += len(data)
        self._unsynced += len(data)
        if self._unsynced >= SYNC_EVERY:
            self.disk.sync()
            self._unsynced = 0

    def finish(self) -> None:
        self.disk.sync()


class _Download:
    """The image's chunks as downloaded: hashed, counted and reported as 'download'.

    The task's sha256 is over these bytes, the image as its publisher hashed it,
    whatever format it turns out to be."""

    def __init__(self, chunks: Iterable[bytes], progress: ProgressFn, total: int) -> None:
        self.chunks, self.progress, self.total = chunks, progress, total
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def __iter__(self) -> Iterator[bytes]:
        self.progress("download", 0, self.total)
        for chunk in self.chunks:
            self.sha256.update(chunk)
            self.bytes += len(chunk)
            self.progress("download", self.bytes, self.total)
            yield chunk


def _read_back(disk: Disk, length: int, progress: ProgressFn) -> Iterator[bytes]:
    """Yield the first `length` bytes of the disk in chunks, reporting 'verify'."""
    progress("verify", 0, length)
    for offset in range(0, length, CHUNK):
        chunk = disk.read_at(offset, min(CHUNK, length - offset))
        progress("verify", offset + len(chunk), length)
        yield chunk


def _zero_region(disk: Disk, length: int, progress: ProgressFn) -> None:
    """Overwrite bytes [0, length) with zeros and make that durable."""
    zeros = memoryview(bytes(CHUNK))
    writer = _SequentialWriter(disk)
    progress("erase", 0, length)
    while writer.offset < length:
        writer.write(zeros[: min(CHUNK, length - writer.offset)])
        progress("erase", writer.offset, length)
    writer.finish()


def _scrub(disk: Disk, length: int, progress: ProgressFn) -> None:
    """Best effort after a failed deploy: zero what was written. A failure here is
    logged, not raised, so the deploy's own error is the one reported."""
    if not length:
        return
    try:
        _zero_region(disk, length, progress)
    except OSError as exc:
        log.warning(
            "disk %s: could not zero %d bytes after a failed deploy: %s", disk.path, length, exc
        )


def deploy(
    disk: Disk,
    chunks: Iterable[bytes],
    expected_sha256: str,
    progress: ProgressFn,
    *,
    total_bytes: int | None = None,
) -> DiskReport:
    """Stream the image in `chunks` onto the start of `disk`, decompressing it on the
    way if its first bytes say it is compressed (metalnet.agent.formats).

    `expected_sha256` is checked against the bytes downloaded (the image as
    published); the read-back is checked against the digest of the bytes written
    (the decompressed content), computed while writing. `total_bytes` is the
    announced download size, if any: a raw image announced larger than the disk is
    refused before anything is written; a compressed one is stopped at the disk's
    end like an image without an announced size. Raises DiskError (after zeroing the
    region written so far) on any failure; errors from `chunks` propagate the same way.
    """
    download = _Download(chunks, progress, total_bytes or 0)
    writer = _SequentialWriter(disk)
    try:
        image_format, stream = formats.sniff(download)
        if not image_format.compressed and total_bytes is not None and total_bytes > disk.size:
            raise DiskError(
                f"image larger than disk: {total_bytes} bytes announced, "
                f"disk {disk.path} holds {disk.size} bytes",
                public="image larger than disk",
            )
        written = hashlib.sha256()
        for piece in formats.decode(image_format, stream, CHUNK):
            writer.write(piece)
            written.update(piece)
        writer.finish()
        downloaded = download.sha256.hexdigest()
        _expect(expected_sha256, downloaded, "checksum mismatch", writer.offset)
        read_back = hashlib.sha256()
        for chunk in _read_back(disk, writer.offset, progress):
            read_back.update(chunk)
        _expect(written.hexdigest(), read_back.hexdigest(), "read-back mismatch", writer.offset)
    except formats.ImageFormatError as exc:
        _scrub(disk, writer.offset, progress)
        raise DiskError(str(exc), bytes_done=writer.offset, public=exc.public) from None
    except Exception:
        _scrub(disk, writer.offset, progress)
        raise
    return DiskReport(
        bytes=writer.offset,
        sha256=read_back.hexdigest(),
        image_format=image_format.name,
        image_bytes=download.bytes,
    )


def _expect(expected: str, got: str, what: str, length: int) -> None:
    if got != expected:
        raise DiskError(
            f"{what}: expected {expected}, got {got}",
            bytes_done=length,
            sha256=got,
            public=f"{what}: the sha256 is not the one requested",
        )


def erase(disk: Disk, progress: ProgressFn) -> DiskReport:
    """Zero the whole disk, then read all of it back to prove every byte is zero.

    Raises DiskError naming the first byte offset that is not zero.
    """
    _zero_region(disk, disk.size, progress)
    offset = 0
    for chunk in _read_back(disk, disk.size, progress):
        if chunk.count(0) != len(chunk):
            bad = offset + len(chunk) - len(chunk.lstrip(b"\0"))
            raise DiskError(f"erase verification failed at byte offset {bad}", bytes_done=bad)
        offset += len(chunk)
    return DiskReport(bytes=disk.size, sha256=None)
