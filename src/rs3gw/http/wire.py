"""Serialising response heads: status lines, the cached Date/Server line, framing headers."""
from __future__ import annotations

import time
from email.utils import formatdate
from http import HTTPStatus

CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"
CHUNKED_END = b"0\r\n\r\n"
CRLF = b"\r\n"

# Handlers must not frame the message themselves; these are written by the HTTP layer only.
FRAMING_HEADERS = frozenset(("content-length", "transfer-encoding", "connection", "date", "server"))

_STATUS_LINES: dict[int, bytes] = {
    s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode("ascii") for s in HTTPStatus
}


def status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    if line is None:
        if not 100 <= status <= 999:
            raise ValueError(f"invalid HTTP status {status}")
        line = f"HTTP/1.1 {status} Unknown\r\n".encode("ascii")
        _STATUS_LINES[status] = line
    return line


def status_has_body(status: int) -> bool:
    return not (status < 200 or status == 204 or status == 304)


class DateCache:
    """`Date` + `Server` header bytes, rebuilt at most once per second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def get(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._second = second
            self._line = (
                b"Date: " + formatdate(second, usegmt=True).encode("ascii")
                + b"\r\nServer: rs3gw\r\n"
            )
        return self._line


def encode_headers(headers: list[tuple[str, str]]) -> tuple[bytes, int | None]:
    """Encode handler headers, dropping framing ones; returns (bytes, Content-Length if given).

    Rejects CR/LF inside names or values: a handler echoing user input must never be able to
    inject headers or split the response.
    """
    lines: list[str] = []
    declared_length: int | None = None
    for name, value in headers:
        lname = name.lower()
        if lname in FRAMING_HEADERS:
            if lname == "content-length":
                declared_length = int(value)
            continue
        lines.append(f"{name}: {value}\r\n")
    if not lines:
        return b"", declared_length
    text = "".join(lines)
    n = len(lines)
    if text.count("\n") != n or text.count("\r") != n:
        raise ValueError("CR or LF inside a response header")
    try:
        data = text.encode("latin-1")
    except UnicodeEncodeError:
        data = text.encode("utf-8")
    return data, declared_length


def chunk_prefix(size: int) -> bytes:
    return b"%x\r\n" % size
