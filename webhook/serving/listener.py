"""uvicorn's httptools protocol with the limits a server in the path of every pod needs.

httptools has no limit on the request head and uvicorn sets no deadline for it: a 10 MiB header
was accepted, 25 unfinished 10 MiB heads took the process to 413 MiB, and a connection that never
sent a byte stayed open for good. This subclass adds, per connection:

- a cap on the bytes of a request head (request line and headers): past it, ``431`` and close;
- a deadline from the connection's (or the request's) first byte to the end of its head: close;
- a cap on the open connections of the process: a new connection past it is closed at once, so
  established ones (the apiserver keeps a few alive) keep working.

The body has its own deadline and size limit in ``endpoint.py``; idle keep-alive connections close
after ``timeout_keep_alive``. ``configure`` sets the limits once per process, from ServeOptions.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with bounded request heads and a bounded number of connections."""

    max_head_bytes = 64 * 1024
    head_timeout = 10.0
    max_connections = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_open = True
        self._head_deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            transport.close()  # refused: the established connections keep their capacity
            return
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            self._head_bytes += len(data)
            self._arm_head_deadline()
        super().data_received(data)
        # Checked after feeding: the chunk that ends a head may carry body bytes too, which must
        # not count; a head still open past the cap has cost at most the cap plus one read.
        if self._head_open and self._head_bytes > self.max_head_bytes and not self.transport.is_closing():
            self._refuse_head()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_open, self._head_bytes = True, 0  # what comes next is the next request's head

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm_head_deadline()
        super().on_headers_complete()

    def _refuse_head(self) -> None:
        body = b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":431,"reason":"RequestHeaderFieldsTooLarge","message":"the request head is larger than %d bytes"}' % self.max_head_bytes
        self.transport.write(_431 % (len(body), body))
        self.transport.close()

    def _arm_head_deadline(self) -> None:
        if self._head_deadline is None:
            self._head_deadline = self.loop.call_later(self.head_timeout, self._head_too_slow)

    def _disarm_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_too_slow(self) -> None:
        self._head_deadline = None
        if self._head_open and not self.transport.is_closing():
            self.transport.close()


def configure(*, max_head_bytes: int, head_timeout: float, max_connections: int) -> None:
    """Set this process's limits (each worker calls it with the options it was given)."""
    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.head_timeout = head_timeout
    BoundedHttpToolsProtocol.max_connections = max_connections
