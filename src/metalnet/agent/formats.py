"""Image formats: which one an image is, from its first bytes, and how to decode it.

The format is read from the image's magic number, never from its URL, file name or
HTTP headers: a URL ending in `.raw` may serve gzip, and a compressed image written
as it is would pass its checksum and leave a disk that never boots. Magic numbers:

- gzip: ID1 ID2 = 1f 8b (RFC 1952, section 2.3.1). A gzip file is a series of
  members (section 2.2), so concatenated members (pigz, `cat a.gz b.gz`) decode to
  the concatenation of their contents, as gunzip does.
- xz: FD 37 7A 58 5A 00 (The .xz File Format 1.1.0, section 2.1.1.1, "Header Magic
  Bytes"); concatenated streams decode like gzip members. Stream Padding between
  streams (section 2.2) is not accepted: `xz` itself never writes it.
- Recognised but refused, so they are never written to a disk as if they were raw:
  zstd, 28 B5 2F FD (RFC 8878, section 3.1.1, Magic_Number 0xFD2FB528 little-endian;
  Python 3.11 has no zstd decoder), and qcow2, "QFI" FB (QEMU's docs/interop/qcow2.txt,
  header `magic`), which needs random access to convert.

Anything else is raw. A bootable raw disk starts with a boot sector (MBR or GPT's
protective MBR), never with one of these magic numbers.

Decoding is bounded: every call to a decompressor asks for at most `CHUNK` bytes of
output, so one small chunk of a decompression bomb never becomes a large buffer, and
the writer bounds the total by the disk's size.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from metalnet.agent.protocol import ImageFormat

MAGIC_BYTES = 6
"""How many leading bytes `detect` needs (the longest magic number, xz's)."""

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
UNSUPPORTED = {b"\x28\xb5\x2f\xfd": "zstd", b"QFI\xfb": "qcow2"}


class ImageFormatError(Exception):
    """The image is in a refused format or its compressed stream is broken.

    `public` says which, for the tenant; the message adds the decoder's words for
    the operator's log."""

    def __init__(self, message: str, public: str) -> None:
        super().__init__(message)
        self.public = public


class _Decompressor(Protocol):
    """What the decoding loop needs: the interface of lzma.LZMADecompressor."""

    @property
    def eof(self) -> bool: ...

    @property
    def needs_input(self) -> bool: ...

    @property
    def unused_data(self) -> bytes: ...

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Gunzip:
    """zlib's gzip decoder behind LZMADecompressor's interface (needs_input, bounded output).

    zlib keeps input it could not use within `max_length` in `unconsumed_tail` and
    wants it passed back; output as long as asked for may mean more is pending."""

    def __init__(self) -> None:
        self._zlib = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # 16+: gzip framing
        self._tail = b""
        self.needs_input = True

    @property
    def eof(self) -> bool:
        return self._zlib.eof

    @property
    def unused_data(self) -> bytes:
        return self._zlib.unused_data

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        out = self._zlib.decompress(self._tail + data, max_length)
        self._tail = self._zlib.unconsumed_tail
        self.needs_input = not self.eof and not self._tail and len(out) < max_length
        return out


@dataclass(frozen=True)
class Format:
    """One image format: its name and a factory for a fresh decoder (None: raw)."""

    name: ImageFormat
    decoder: Callable[[], _Decompressor] | None

    @property
    def compressed(self) -> bool:
        return self.decoder is not None


RAW = Format("raw", None)
GZIP = Format("gzip", _Gunzip)
XZ = Format("xz", lambda: lzma.LZMADecompressor(format=lzma.FORMAT_XZ))


def detect(head: bytes) -> Format:
    """The format of an image starting with `head` (at least MAGIC_BYTES bytes, or all).

    Raises ImageFormatError for a recognised format the agent cannot write."""
    for magic, name in UNSUPPORTED.items():
        if head.startswith(magic):
            message = f"{name} images are not supported: publish the image raw, gzip or xz"
            raise ImageFormatError(message, public=message)
    if head.startswith(GZIP_MAGIC):
        return GZIP
    if head.startswith(XZ_MAGIC):
        return XZ
    return RAW


def sniff(chunks: Iterable[bytes]) -> tuple[Format, Iterator[bytes]]:
    """Read just enough of `chunks` to detect the format; the stream is returned whole."""
    stream = iter(chunks)
    head = b""
    for chunk in stream:
        head += chunk
        if len(head) >= MAGIC_BYTES:
            break
    return detect(head), _prepend(head, stream)


def _prepend(head: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if head:
        yield head
    yield from rest


def decode(image_format: Format, chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """The image's content: `chunks` as they are (raw), or decompressed in pieces of
    at most `limit` bytes. A compressed stream that is corrupt, truncated or
    followed by anything but another member raises ImageFormatError."""
    if image_format.decoder is None:
        yield from chunks
        return
    new = image_format.decoder
    decoder = new()
    try:
        for data in chunks:
            while data or not decoder.needs_input:
                if decoder.eof:  # what follows a member must be another member
                    data = decoder.unused_data + data
                    if not data:
                        break
                    decoder = new()
                piece = decoder.decompress(data, limit)
                data = b""
                if piece:
                    yield piece
    except (zlib.error, lzma.LZMAError, EOFError) as exc:
        raise ImageFormatError(
            f"corrupt {image_format.name} image: {exc}",
            public=f"corrupt {image_format.name} image",
        ) from None
    if not decoder.eof:
        message = f"truncated {image_format.name} image: the compressed stream ends early"
        raise ImageFormatError(message, public=f"truncated {image_format.name} image")
