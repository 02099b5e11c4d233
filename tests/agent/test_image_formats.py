"""Compressed images: decompressed while streaming onto real file disks, safely.

The compressed forms are made with Python's gzip and lzma modules, which write the
formats RFC 1952 and the .xz file format describe; `gzip.compress` of several
pieces concatenated is a multi-member gzip file as pigz writes it.
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import lzma
import random
import zlib
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_disk import Recorder, StuckByteDisk, chunks_of

from metalnet.agent import formats
from metalnet.agent.disk import CHUNK, Disk, DiskError, deploy

MIB = 1 << 20
COMPRESS = {"gzip": gzip.compress, "xz": lambda data: lzma.compress(data, lzma.FORMAT_XZ)}


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mixed(seed: int, size: int) -> bytes:
    """Data like a disk image's: stretches of random bytes between runs of one byte."""
    rng = random.Random(seed)
    parts: list[bytes] = []
    while sum(map(len, parts)) < size:
        length = rng.randint(1, 256 * 1024)
        parts.append(
            rng.randbytes(length) if rng.random() < 0.5 else bytes([rng.randrange(3)]) * length
        )
    return b"".join(parts)[:size]


def split(data: bytes, first: int, size: int) -> Iterator[bytes]:
    """`data` as a download delivers it: a short first read, then pieces of `size`."""
    yield data[:first]
    yield from chunks_of(data[first:], size)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32),
    size=st.one_of(st.integers(0, 4096), st.integers(CHUNK - 4096, 3 * MIB)),
    kind=st.sampled_from(sorted(COMPRESS)),
    members=st.integers(1, 3),
    first=st.integers(1, 8),
    piece=st.integers(512, 400_000),
    spare=st.integers(0, 5000),
)
def test_compressed_and_raw_image_leave_the_same_disk(
    tmp_path_factory, seed, size, kind, members, first, piece, spare
) -> None:
    data = mixed(seed, size)
    # A raw image starting with a magic number is taken for that format (docs/boot.md).
    assume(not data.startswith((formats.GZIP_MAGIC, formats.XZ_MAGIC, *formats.UNSUPPORTED)))
    cuts = sorted(random.Random(seed).randrange(size + 1) for _ in range(members - 1))
    bounds = [0, *cuts, size]
    packed = b"".join(COMPRESS[kind](data[a:b]) for a, b in itertools.pairwise(bounds))
    directory = tmp_path_factory.mktemp("disks")
    before = random.Random(seed + 1).randbytes(size + spare)
    disks = {name: directory / name for name in ("raw", kind)}
    reports = {}
    for name, image in (("raw", data), (kind, packed)):
        disks[name].write_bytes(before)
        with Disk(disks[name]) as disk:
            reports[name] = deploy(
                disk, split(image, first, piece), sha(image), Recorder(), total_bytes=len(image)
            )

    assert disks["raw"].read_bytes() == disks[kind].read_bytes()
    assert disks[kind].read_bytes()[:size] == data
    raw, packed_report = reports["raw"], reports[kind]
    assert (
        (packed_report.bytes, packed_report.sha256) == (raw.bytes, raw.sha256) == (size, sha(data))
    )
    assert (packed_report.image_format, packed_report.image_bytes) == (kind, len(packed))
    assert (raw.image_format, raw.image_bytes) == ("raw", size)


@pytest.mark.parametrize("kind", sorted(COMPRESS))
def test_truncated_stream_is_refused_and_zeroed(make_disk, kind) -> None:
    path = make_disk(4 * MIB, fill=0)
    packed = COMPRESS[kind](random.Random(1).randbytes(2 * MIB))[:-100]
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(packed), sha(packed), Recorder())
    assert failure.value.public == f"truncated {kind} image"
    assert failure.value.bytes_done > MIB, "most of it was written before the end showed"
    assert path.read_bytes() == bytes(4 * MIB), "what was written is zeroed again"


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda gz: gz[:5000] + bytes([gz[5000] ^ 0xFF]) + gz[5001:], "a flipped bit"),
        (lambda gz: gz[:-8] + bytes(4) + gz[-4:], "a wrong CRC-32 (RFC 1952, 2.3.1)"),
        (lambda gz: gz + b"\0\0\0\0", "trailing bytes that are not another member"),
    ],
)
def test_corrupt_gzip_is_refused_and_zeroed(make_disk, damage, why) -> None:
    path = make_disk(4 * MIB, fill=0)
    packed = damage(gzip.compress(random.Random(2).randbytes(MIB)))
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(packed), sha(packed), Recorder())
    assert failure.value.public == "corrupt gzip image", why
    assert str(failure.value).startswith("corrupt gzip image: "), "the decoder's words, logged"
    assert path.read_bytes() == bytes(4 * MIB), why


@pytest.mark.parametrize("announced", [True, False])
def test_content_larger_than_disk_stops_at_its_end_and_is_zeroed(make_disk, announced) -> None:
    """A compressed image small enough to announce, whose content is not, and a bomb."""
    path = make_disk(2 * MIB)
    before = path.read_bytes()
    packed = gzip.compress(random.Random(3).randbytes(MIB) + bytes(64 * MIB))
    assert len(packed) < 2 * MIB
    total = len(packed) if announced else None
    progress = Recorder()
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(packed), sha(packed), progress, total_bytes=total)
    assert failure.value.public == "image larger than disk"
    after = path.read_bytes()
    assert len(after) == 2 * MIB, "a file disk is never extended"
    written = failure.value.bytes_done
    assert 2 * MIB - CHUNK < written <= 2 * MIB
    assert after[:written] == bytes(written)
    assert after[written:] == before[written:]
    assert progress.phases() == ["download", "erase"]


def test_decoding_a_bomb_never_makes_a_piece_larger_than_asked() -> None:
    bomb = gzip.compress(bytes(256 * MIB), compresslevel=9)
    assert len(bomb) < MIB  # one download chunk
    pieces = formats.decode(formats.GZIP, [bomb], CHUNK)
    sizes = [len(piece) for piece in itertools.islice(pieces, 100)]
    assert sizes == [CHUNK] * 100, "256 MiB of output come one bounded piece at a time"


def test_checksum_is_over_the_downloaded_bytes_not_the_content(make_disk) -> None:
    """The operator publishes the digest of the file served; that of its content is wrong."""
    path = make_disk(4 * MIB, fill=0)
    data = random.Random(4).randbytes(MIB)
    packed = gzip.compress(data)
    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(packed), sha(data), Recorder())
    assert str(failure.value) == f"checksum mismatch: expected {sha(data)}, got {sha(packed)}"
    assert path.read_bytes() == bytes(4 * MIB)


def test_read_back_of_a_compressed_image_checks_the_content_written(make_disk) -> None:
    path = make_disk(1 * MIB, fill=0)
    data = bytes([0xA5]) * (512 * 1024)
    packed = gzip.compress(data)
    with StuckByteDisk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, chunks_of(packed), sha(packed), Recorder())
    on_disk = data[: StuckByteDisk.stuck_at] + b"\0" + data[StuckByteDisk.stuck_at + 1 :]
    assert str(failure.value) == f"read-back mismatch: expected {sha(data)}, got {sha(on_disk)}"


@pytest.mark.parametrize(
    ("magic", "name"),
    [(b"\x28\xb5\x2f\xfd", "zstd"), (b"QFI\xfb\x00\x00\x00\x03", "qcow2")],
)
def test_recognised_formats_that_cannot_be_written_are_refused_untouched(
    make_disk, magic, name
) -> None:
    path = make_disk(1 * MIB)
    before = path.read_bytes()

    def image() -> Iterator[bytes]:
        yield magic[:3]
        yield magic[3:] + bytes(4096)
        raise AssertionError("the format is known from the first bytes")

    with Disk(path) as disk, pytest.raises(DiskError) as failure:
        deploy(disk, image(), sha(b""), Recorder())
    assert (
        failure.value.public
        == f"{name} images are not supported: publish the image raw, gzip or xz"
    )
    assert path.read_bytes() == before


def test_anything_without_a_known_magic_number_is_raw() -> None:
    for data in (b"", b"\x1f", b"\xeb\x63\x90" + bytes(509) + b"\x55\xaa"):
        assert formats.detect(data) is formats.RAW
    assert formats.detect(zlib.compress(b"x")) is formats.RAW, "zlib framing is not gzip"
