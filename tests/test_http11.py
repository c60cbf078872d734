"""delivery.http11: a POST written byte for byte, and answers read however they are split."""

from __future__ import annotations

import pytest

from gateway.delivery.http11 import MAX_HEAD, Answer, AnswerReader, InvalidAnswer, request_bytes

PLAIN = (
    b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"ok":true}'
)
CHUNKED = (
    b"HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n"
    b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


def read(data: bytes, limit: int = 1024) -> tuple[Answer | None, AnswerReader]:
    reader = AnswerReader(limit)
    return reader.feed(data), reader


def read_split(data: bytes, at: int, limit: int = 1024) -> tuple[Answer | None, AnswerReader]:
    """Feed ``data`` in two parts split at ``at``: the first must not be an answer."""
    reader = AnswerReader(limit)
    if at:
        assert reader.feed(data[:at]) is None
    return reader.feed(data[at:]), reader


def test_a_post_is_written_with_its_framing_and_headers_in_order() -> None:
    written = request_bytes(
        "/hooks?a=1", "example.test:8080", {"Content-Type": "application/json", "X-A": "é"}, b"{}"
    )
    assert written == (
        b"POST /hooks?a=1 HTTP/1.1\r\nHost: example.test:8080\r\nContent-Length: 2\r\n"
        b"Content-Type: application/json\r\nX-A: \xc3\xa9\r\n\r\n{}"
    )


def test_a_default_is_sent_unless_the_headers_name_it_in_any_case() -> None:
    defaults = {"User-Agent": "gw/1", "Authorization": "Basic eA=="}
    written = request_bytes("/", "h", {"user-agent": "theirs/2"}, b"", defaults)
    assert written == (
        b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n"
        b"user-agent: theirs/2\r\nAuthorization: Basic eA==\r\n\r\n"
    )


@pytest.mark.parametrize("value", ["a\r\nX-Evil: 1", "a\nb", "a\rb", "a\0b"])
def test_a_value_that_would_split_the_request_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        request_bytes("/", "h", {"X-A": value}, b"")


@pytest.mark.parametrize("name", ["X A", "X:A", "", "X\r\nA", "Host", "content-length"])
def test_a_name_that_is_not_a_token_or_sets_the_framing_is_refused(name: str) -> None:
    with pytest.raises(ValueError):
        request_bytes("/", "h", {name: "v"}, b"")


def test_a_whole_answer_is_read_and_leaves_the_connection_reusable() -> None:
    answer, reader = read(PLAIN)
    assert answer == Answer(200, "application/json", b'{"ok":true}')
    assert reader.reusable


@pytest.mark.parametrize("answer", [PLAIN, CHUNKED], ids=["length", "chunked"])
def test_an_answer_split_anywhere_reads_the_same(answer: bytes) -> None:
    whole, _ = read(answer)
    assert whole is not None
    for at in range(len(answer)):
        split, reader = read_split(answer, at)
        assert split == whole, at
        assert reader.reusable, at


def test_an_answer_fed_byte_by_byte_comes_at_its_last_byte() -> None:
    reader = AnswerReader(1024)
    for byte in CHUNKED[:-1]:
        assert reader.feed(bytes([byte])) is None
    assert reader.feed(CHUNKED[-1:]) == Answer(202, "text/plain", b"hello world")


def test_interim_answers_are_skipped() -> None:
    answer, reader = read(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: x\r\n\r\n" + PLAIN
    )
    assert answer is not None and answer.status == 200
    assert reader.reusable


@pytest.mark.parametrize(
    ("head", "reusable"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", False),
        (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", True),
        (b"HTTP/1.1 204 No Content\r\n\r\n", True),
        (b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n", True),
        # Bytes past the answer: the connection is out of step.
        (b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1", False),
        # Chunked beside a Content-Length: chunked decides, the connection is not kept.
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            False,
        ),
    ],
)
def test_whether_the_connection_is_kept(head: bytes, reusable: bool) -> None:
    answer, reader = read(head)
    assert answer is not None
    assert answer.body == b""
    assert reader.reusable is reusable


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
    ],
    ids=["no framing", "not chunked"],
)
def test_an_answer_without_a_length_runs_to_the_close(head: bytes) -> None:
    reader = AnswerReader(1024)
    assert reader.feed(head + b"part one, ") is None
    assert reader.feed(b"part two") is None
    answer = reader.end()
    assert answer.body == b"part one, part two"
    assert not reader.reusable


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 100,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n"
        + b"x" * 100
        + b"\r\n0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 100,
    ],
    ids=["length", "chunked", "to the close"],
)
def test_a_body_over_the_limit_is_cut_there_and_the_connection_dropped(answer: bytes) -> None:
    reader = AnswerReader(10)
    # The answer comes as soon as the limit is reached, the rest never read.
    got = reader.feed(answer[: answer.index(b"x") + 10])
    assert got is not None
    assert got.body == b"x" * 10
    assert not reader.reusable


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 2000 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"ICY 200 OK\r\n\r\n",
        b"HTTP/1.1 099 Low\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX-A : 1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n",
    ],
)
def test_what_is_not_http_is_an_invalid_answer(data: bytes) -> None:
    with pytest.raises(InvalidAnswer):
        AnswerReader(1024).feed(data)


def test_a_head_that_never_ends_is_refused_past_its_limit() -> None:
    reader = AnswerReader(1024)
    assert reader.feed(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(InvalidAnswer, match="head is over"):
        reader.feed(b"X-A: " + b"a" * MAX_HEAD)


def test_a_close_before_the_answer_is_whole_says_whether_anything_came() -> None:
    silent = AnswerReader(1024)
    with pytest.raises(InvalidAnswer, match="without an answer"):
        silent.end()
    assert not silent.started
    cut = AnswerReader(1024)
    assert cut.feed(PLAIN[:-3]) is None
    with pytest.raises(InvalidAnswer, match="before the answer was complete"):
        cut.end()
    assert cut.started
