"""LogStream: the lines of one pods/log response, the last one even without its newline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from kubejobs.adapters.podlogs import KubeUnavailable, LogStream


class Response:
    """What LogStream uses of requests.Response: iter_content, then EOF or an error."""

    def __init__(self, chunks: list[bytes], error: Exception | None = None) -> None:
        self.chunks = chunks
        self.error = error

    def iter_content(self, chunk_size: int) -> Iterator[bytes]:
        yield from self.chunks
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        pass


def lines(stream: LogStream) -> list[bytes]:
    return [line for batch in stream for line in batch]


def response(*chunks: bytes, error: Exception | None = None) -> Any:
    return Response(list(chunks), error)


def test_lines_split_across_reads_come_whole() -> None:
    stream = LogStream(response(b"T1 a\nT2 b", b"c\nT3 d\n"))
    assert lines(stream) == [b"T1 a", b"T2 bc", b"T3 d"]


def test_final_read_keeps_a_last_line_without_newline() -> None:
    stream = LogStream(response(b"T1 a|b|\nT2 ta", b"il"), final=True)
    assert lines(stream) == [b"T1 a|b|", b"T2 tail"]


def test_following_read_holds_back_a_tail_that_may_still_grow() -> None:
    assert lines(LogStream(response(b"T1 a\nT2 ta"))) == [b"T1 a"]


@pytest.mark.parametrize(
    "error",
    [requests.ConnectionError("connection reset"), requests.exceptions.ChunkedEncodingError()],
)
def test_a_cut_stream_never_passes_its_tail_as_a_line(error: Exception) -> None:
    stream = LogStream(response(b"T1 a\nT2 ha", error=error), final=True)
    got: list[bytes] = []
    with pytest.raises(KubeUnavailable):
        for batch in stream:
            got.extend(batch)
    assert got == [b"T1 a"]


def test_an_idle_final_read_does_not_pass_its_tail_either() -> None:
    stream = LogStream(
        response(b"T1 a\nT2 ha", error=requests.Timeout("read timed out")), final=True
    )
    assert lines(stream) == [b"T1 a"]
    assert stream.idle
