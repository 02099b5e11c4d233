"""NETCONF message framing over SSH (RFC 6242).

Every session starts with base:1.0 end-of-message framing (`]]>]]>`) for the
hello exchange; when both peers announce base:1.1 the session switches to chunked
framing (`\\n#<len>\\n<data>…\\n##\\n`). This module only splits and joins bytes.
"""

from __future__ import annotations

import re

EOM = b"]]>]]>"
_CHUNK_HEADER = re.compile(rb"\n#([1-9][0-9]{0,9})\n")
_END_OF_CHUNKS = b"\n##\n"
MAX_CHUNK = 65536


class FramingError(Exception):
    """The peer sent bytes that are not a valid frame; the session must end."""


class FrameReader:
    """Accumulates received bytes and yields whole messages."""

    def __init__(self) -> None:
        self.chunked = False
        self._buf = bytearray()

    def feed(self, data: bytes) -> None:
        """Add received bytes."""
        self._buf += data

    def next_message(self) -> bytes | None:
        """Return the next complete message, or None until more bytes arrive."""
        return self._next_chunked() if self.chunked else self._next_eom()

    def _next_eom(self) -> bytes | None:
        end = self._buf.find(EOM)
        if end < 0:
            return None
        message = bytes(self._buf[:end]).strip()
        del self._buf[: end + len(EOM)]
        return message

    def _next_chunked(self) -> bytes | None:
        pos = 0
        while pos < len(self._buf) and self._buf[pos : pos + 1] in (b" ", b"\r", b"\t"):
            pos += 1
        parts: list[bytes] = []
        while True:
            if self._buf.startswith(_END_OF_CHUNKS, pos):
                del self._buf[: pos + len(_END_OF_CHUNKS)]
                return b"".join(parts)
            if len(self._buf) - pos < 4:
                return None
            header = _CHUNK_HEADER.match(self._buf, pos)
            if header is None:
                if b"\n" in self._buf[pos + 2 :] or len(self._buf) - pos > 13:
                    raise FramingError(f"bad chunk header {bytes(self._buf[pos : pos + 13])!r}")
                return None
            size = int(header.group(1))
            start = header.end()
            if len(self._buf) < start + size:
                return None
            parts.append(bytes(self._buf[start : start + size]))
            pos = start + size


def frame(message: bytes, *, chunked: bool) -> bytes:
    """Encode one message for the wire."""
    if not chunked:
        return message + b"\n" + EOM
    chunks = [
        b"\n#%d\n" % len(message[i : i + MAX_CHUNK]) + message[i : i + MAX_CHUNK]
        for i in range(0, len(message), MAX_CHUNK)
    ]
    return b"".join(chunks) + _END_OF_CHUNKS
