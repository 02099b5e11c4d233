"""NETCONF framing: end-of-message (base:1.0) and chunked (base:1.1)."""

from __future__ import annotations

import pytest

from metalnet.sim.switch.framing import FrameReader, FramingError, frame


@pytest.mark.parametrize("chunked", [False, True])
def test_messages_survive_arbitrary_splits(chunked: bool) -> None:
    messages = [b"<rpc>one</rpc>", b"<rpc>" + b"x" * 70000 + b"</rpc>", b"<rpc/>"]
    wire = b"".join(frame(m, chunked=chunked) for m in messages)
    reader = FrameReader()
    reader.chunked = chunked
    got = []
    for i in range(0, len(wire), 7):
        reader.feed(wire[i : i + 7])
        while (message := reader.next_message()) is not None:
            got.append(message)
    assert got == messages


def test_chunked_frames_split_large_messages() -> None:
    wire = frame(b"a" * 70000, chunked=True)
    assert wire.startswith(b"\n#65536\n") and wire.endswith(b"\n#4464\n" + b"a" * 4464 + b"\n##\n")


def test_bad_chunk_header_is_refused() -> None:
    reader = FrameReader()
    reader.chunked = True
    reader.feed(b"\n#abc\n<rpc/>\n##\n")
    with pytest.raises(FramingError):
        reader.next_message()
