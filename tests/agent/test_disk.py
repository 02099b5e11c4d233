"""Deploy and erase on real file disks (a lab node's disk is a file of fixed size)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from metalnet.agent.disk import CHUNK, Disk, DiskError, deploy, erase

MIB = 1 << 20
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


class Recorder:
    """A progress callback that keeps every call, to check phases and byte counts."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    def __call__(self, phase: str, done: int, total: int) -> None:
        self.calls.append((phase, done, total))

    def phases(self) -> list[str]:
        """Phases in order of first appearance."""
        seen: list[str] = []
        for phase, _, _ in self.calls:
            if not seen or seen[-1] != phase:
                seen.append(phase)
        return seen

    def last(self, phase: str) -> tuple[int, int]:
        return next((d, t) for p, d, t in reversed(self.calls) if p == phase)


class StuckByteDisk(Disk):
    """A disk whose byte at `stuck_at` keeps its old value whatever is written there.

    This models a bad sector that silently drops writes, the fault the read-back
    passes exist for. Only writes are altered; reads are the real file's content,
    so what the verify pass sees is what the "device" really holds.
    """

    stuck_at = 123_457

    def write_at(self, offset: int, data: bytes | memoryview) -> None:
        end = offset + len(data)
        if offset <= self.stuck_at < end:
            old = self.read_at(self.stuck_at, 1)
            patched = bytearray(data)
            patched[self.stuck_at - offset] = old[0]
            data = bytes(patched)
        super().write_at(offset, data)


def chunks_of(data: bytes, size: int = 300_000) -> Iterator[bytes]:
    """Yield `data` in pieces that do not line up with the disk's chunk size."""
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


def test_deploy_writes_exactly_the_image_and_verifies_it(make_disk) -> None:
    path = make_disk(8 * MIB, fill=0)
    image = os.urandom(3 * MIB + 12345)
    progress = Recorder()
    with Disk(path) as disk:
        report = deploy(disk, chunks_of(image), hashlib.sha256(image).hexdigest(), progress)
    content = path.read_bytes()
    assert report.bytes == len(image)
    assert report.sha256 == hashlib.sha256(image).hexdigest()
    assert content[: len(image)] == image
    assert content[len(image) :] == bytes(8 * MIB - len(image)), "rest of the disk untouched"
    assert progress.phases() == ["download", "verify"]
    assert progress.last("download") == (len(image), 0), "total unknown without an announced size"
    assert progress.last("verify") == (len(image), len(image))


def test_deploy_streams_each_chunk_to_disk_before_pulling_the_next(make_disk) -> None:
    path = make_disk(4 * MIB, fill=0)
    image = os.urandom(3 * CHUNK)

    def checking_stream() -> Iterator[bytes]:
        for index in range(3):
            assert path.read_bytes()[: index * CHUNK] == image[: index * CHUNK]
            yield image[index * CHUNK : (index + 1) * CHUNK]

    with Disk(path) as disk:
        deploy(disk, checking_stream(), hashlib.sha256(image).hexdigest(), Recorder())


def test_wrong_checksum_names_both_sums_and_leaves_no_image(make_disk) -> None:
    path = make_disk(8 * MIB, fill=0)
    image = os.urandom(2 * MIB)
    expected = hashlib.sha256(b"another image").hexdigest()
    progress = Recorder()
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(image), expected, progress, total_bytes=len(image))
    actual = hashlib.sha256(image).hexdigest()
    assert str(failure.value) == f"checksum mismatch: expected {expected}, got {actual}"
    assert failure.value.sha256 == actual
    assert path.read_bytes() == bytes(8 * MIB), "the written region was zeroed again"
    assert progress.phases() == ["download", "erase"]


def test_image_announced_larger_than_disk_is_refused_before_writing(make_disk) -> None:
    path = make_disk(1 * MIB)
    before = path.read_bytes()

    def first_chunk_only() -> Iterator[bytes]:
        yield b"\xeb\x63\x90" + bytes(CHUNK - 3)  # a boot sector's start: a raw image
        raise AssertionError("only the first chunk is read, to learn the image's format")

    with Disk(path) as disk, pytest.raises(DiskError, match="image larger than disk: 1048577"):
        deploy(disk, first_chunk_only(), EMPTY_SHA, Recorder(), total_bytes=MIB + 1)
    assert path.read_bytes() == before


def test_image_larger_than_disk_without_announced_size_stops_at_disk_end(make_disk) -> None:
    path = make_disk(1 * MIB)
    before = path.read_bytes()
    image = os.urandom(MIB + 1)
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(image, 300_000), hashlib.sha256(image).hexdigest(), Recorder())
    assert str(failure.value) == (
        f"image larger than disk: more than {MIB} bytes (disk {path} holds {MIB} bytes)"
    )
    after = path.read_bytes()
    assert len(after) == MIB, "a file disk is never extended"
    assert after[:900_000] == bytes(900_000), "the three chunks written were zeroed"
    assert after[900_000:] == before[900_000:], "the chunk that did not fit was never written"


def test_broken_download_propagates_and_zeroes_the_partial_image(make_disk) -> None:
    path = make_disk(2 * MIB, fill=0)

    def broken() -> Iterator[bytes]:
        yield os.urandom(500_000)
        raise ConnectionError("peer closed")

    with Disk(path) as disk, pytest.raises(ConnectionError):
        deploy(disk, broken(), EMPTY_SHA, Recorder())
    assert path.read_bytes() == bytes(2 * MIB)


def test_deploy_read_back_catches_a_disk_that_drops_a_write(make_disk) -> None:
    path = make_disk(1 * MIB, fill=0)
    image = bytes([0xA5]) * (512 * 1024)
    sha = hashlib.sha256(image).hexdigest()
    with StuckByteDisk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(image), sha, Recorder())
    on_disk = image[: StuckByteDisk.stuck_at] + b"\0" + image[StuckByteDisk.stuck_at + 1 :]
    assert str(failure.value) == (
        f"read-back mismatch: expected {sha}, got {hashlib.sha256(on_disk).hexdigest()}"
    )


def test_erase_zeroes_every_byte_and_reports_phases(make_disk) -> None:
    path = make_disk(8 * MIB + 4096)
    progress = Recorder()
    with Disk(path) as disk:
        report = erase(disk, progress)
    assert report.bytes == 8 * MIB + 4096
    assert path.read_bytes() == bytes(8 * MIB + 4096)
    assert progress.phases() == ["erase", "verify"]
    assert progress.last("erase") == progress.last("verify") == (report.bytes, report.bytes)


def test_erase_verification_names_the_first_non_zero_offset(make_disk) -> None:
    path = make_disk(2 * MIB, fill=0xFF)
    with StuckByteDisk(path) as disk, pytest.raises(DiskError) as failure:
        erase(disk, Recorder())
    assert str(failure.value) == "erase verification failed at byte offset 123457"


def test_missing_disk_is_an_error_not_a_new_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        Disk(tmp_path / "sda")
    assert not (tmp_path / "sda").exists()
