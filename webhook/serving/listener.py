"""The listener: accepting connections, their TLS handshakes and their request heads, within bounds.

uvicorn hands its listening sockets to uvloop, which accepts every connection at once and gives it
a TLS handshake of up to 60 s; httptools has no limit on the request head and uvicorn sets no
deadline for it. Measured before these limits: a 10 MiB header was accepted, 25 unfinished 10 MiB
heads took the process to 413 MiB, a connection that never sent a byte stayed open for good, and
3,000 connections that never finished their handshake (about 50 KiB of uvloop's TLS buffers each)
took it from 125 to 284 MiB, above the chart's memory limit, without counting against anything.

Accepting is therefore ours (``BoundedLoop``, ``_Listener``), per process:

- at most ``max_connections`` connections, established *or still in their TLS handshake*;
  beyond it the listener stops accepting and new connections wait in the kernel's backlog until
  one closes, so the established ones (the apiserver keeps a few alive) keep working;
- a TLS handshake, opening or closing, must finish within ``handshake_timeout``;
- the metrics port gets its own TLS context, one that asks for no client certificate (uvicorn
  has one context for every port), so probes and Prometheus work with ``--client-ca-file``;
- ``malloc_trim`` after every ``TRIM_AFTER`` ended connections gives a flood's memory back.

Each accepted socket then goes to uvloop's ``connect_accepted_socket``, and each connection is a
``BoundedHttpToolsProtocol`` (uvicorn's httptools protocol) with, per connection:

- a cap on the bytes of a request head (request line and headers): past it, ``431`` and close;
- a deadline from the connection's (or the request's) first byte to the end of its head: close.

The body has its own deadline and size limit in ``endpoint.py``; idle keep-alive connections close
after ``timeout_keep_alive``. ``configure`` sets the per-connection limits once per process.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from webhook import metrics

log = logging.getLogger("entourage.listener")

_431 = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with bounded request heads; it tells its ``gate`` when it ends."""

    max_head_bytes = 64 * 1024
    head_timeout = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._head_open = True
        self._head_deadline: asyncio.TimerHandle | None = None
        self.gate: Gate | None = None
        """Set by the listener that accepted this connection; told when the connection ends."""
        self.made = False
        self._refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self.made = True  # the TLS handshake is done
        super().connection_made(transport)
        self._arm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)
        if self.gate is not None:
            self.gate.release()
            self.gate = None

    def data_received(self, data: bytes) -> None:
        if self._head_open:
            self._head_bytes += len(data)
            self._arm_head_deadline()
        super().data_received(data)
        # Checked after feeding: the chunk that ends a head may carry body bytes too, which must
        # not count; a head still open past the cap has cost at most the cap plus one read.
        if self._head_open and self._head_bytes > self.max_head_bytes and not self._refused and not self.transport.is_closing():
            self._refuse_head()

    def on_message_complete(self) -> None:
        if self._refused:
            return
        super().on_message_complete()
        self._head_open, self._head_bytes = True, 0  # what comes next is the next request's head

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_headers_complete(self) -> None:
        self._head_open = False
        self._disarm_head_deadline()
        # A whole head can arrive in one read (uvloop hands over up to 256 KiB at once), before
        # the check in data_received could see it open: measure the finished head itself.
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if self._refused or size > self.max_head_bytes:
            if not self._refused:
                self._refuse_head()
            return  # no request cycle: nothing of it reaches the app
        super().on_headers_complete()

    def _refuse_head(self) -> None:
        self._refused = True
        body = (
            b'{"kind":"Status","apiVersion":"v1","status":"Failure","code":431,"reason":"RequestHeaderFieldsTooLarge","message":"the request head is larger than %d bytes"}'
            % self.max_head_bytes
        )
        self.transport.write(_431 % (len(body), body))
        self.transport.close()
        metrics.CONNECTIONS_CLOSED.labels("header_too_large").inc()

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
            metrics.CONNECTIONS_CLOSED.labels("head_timeout").inc()


def configure(*, max_head_bytes: int, head_timeout: float) -> None:
    """Set this process's per-connection limits (each worker calls it with the options it was given)."""
    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.head_timeout = head_timeout


class ListenerConfig(uvicorn.Config):
    """uvicorn's Config serving ``BoundedHttpToolsProtocol`` on a ``BoundedLoop``; picklable, so
    every worker process gets the limits with the rest of the configuration.

    ``metrics_port``: a second listening port whose TLS context, from ``open_ssl_context_factory``
    (called in each process, like ``ssl_context_factory``), asks for no client certificate.
    """

    def __init__(
        self,
        app: Any,
        *,
        max_connections: int,
        handshake_timeout: float,
        metrics_port: int | None = None,
        open_ssl_context_factory: Callable[[], ssl.SSLContext] | None = None,
        **kwargs: Any,
    ) -> None:
        # Explicit protocol and loop: "auto" would silently fall back to asyncio and h11 (about a
        # quarter of the throughput) if uvloop or httptools went missing. No WebSocket upgrades.
        super().__init__(app, http=BoundedHttpToolsProtocol, loop="uvloop", ws="none", **kwargs)
        self.max_connections, self.handshake_timeout = max_connections, handshake_timeout
        self.metrics_port, self.open_ssl_context_factory = metrics_port, open_ssl_context_factory

    def get_loop_factory(self) -> Callable[[], asyncio.AbstractEventLoop]:
        return lambda: BoundedLoop(self)


_malloc_trim: Callable[[int], int] | None = getattr(ctypes.CDLL(None), "malloc_trim", None)  # glibc's; None elsewhere

TRIM_AFTER = 256
"""Connections ended between two ``malloc_trim`` calls (and 32 once fewer than 32 are left).
Memory that a flood of connections used stays with the process otherwise: after 600 unfinished
heads, 2,000 idle connections and 2,000 half-open handshakes the server kept 183 MiB (62 MiB
before), 213 MiB after a second round; with the trim it fell back to 70-81 MiB, round after
round. One trim takes 1-12 ms, so at most one per 256 connections (a handshake costs ~0.5 ms)."""


class Gate:
    """How many connections a process holds, established or in their handshake; its listeners
    accept only while there are fewer than ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self.ended = 0
        """Connections ended (closed, or failed in their handshake) since the last trim."""
        self.listeners: list[_Listener] = []

    @property
    def full(self) -> bool:
        return self.held >= self.limit

    def take(self) -> None:
        self.held += 1
        metrics.CONNECTIONS_OPEN.inc()

    def release(self) -> None:
        """One connection gone: accept again if there is room; give memory back after many."""
        self.held -= 1
        metrics.CONNECTIONS_OPEN.dec()
        self.ended += 1
        if _malloc_trim is not None and (self.ended >= TRIM_AFTER or (self.ended >= 32 and self.held < 32)):
            self.ended = 0
            _malloc_trim(0)
        if not self.full:
            for listener in self.listeners:
                listener.resume()


class BoundedLoop(uvloop.Loop):
    """uvloop whose TLS servers on a given socket (how ``run.py`` passes them) accept through a ``_Listener``."""

    def __init__(self, config: ListenerConfig) -> None:
        super().__init__()
        self.config = config
        self.gate = Gate(config.max_connections)

    async def create_server(self, protocol_factory: Callable[[], asyncio.BaseProtocol], *args: Any, **kwargs: Any) -> Any:
        sock, context = kwargs.get("sock"), kwargs.get("ssl")
        if args or sock is None or context is None:
            return await super().create_server(protocol_factory, *args, **kwargs)
        config = self.config
        if config.open_ssl_context_factory is not None and sock.getsockname()[1] == config.metrics_port:
            context = config.open_ssl_context_factory()
        listener = _Listener(self, sock, protocol_factory, context, self.gate, config.handshake_timeout)
        listener.start(kwargs.get("backlog") or 100)
        return _Server(listener)


class _Listener:
    """One listening socket: accepts while the gate is open, then one TLS handshake per connection."""

    def __init__(
        self,
        loop: uvloop.Loop,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.BaseProtocol],
        context: ssl.SSLContext,
        gate: Gate,
        handshake_timeout: float,
    ) -> None:
        self.loop, self.sock, self.protocol_factory, self.context = loop, sock, protocol_factory, context
        self.gate, self.handshake_timeout = gate, handshake_timeout
        self.reading = self.closed = False
        self.handshakes: set[asyncio.Task[None]] = set()

    def start(self, backlog: int) -> None:
        self.sock.listen(backlog)
        self.sock.setblocking(False)
        self.gate.listeners.append(self)
        self.resume()

    def resume(self) -> None:
        if not self.reading and not self.closed:
            self.reading = True
            self.loop.add_reader(self.sock.fileno(), self._accept)

    def pause(self) -> None:
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.sock.fileno())

    def close(self) -> None:
        if not self.closed:
            self.pause()
            self.closed = True
            self.gate.listeners.remove(self)

    def _accept(self) -> None:
        for _ in range(64):  # a burst per wake-up, as uvloop does
            if self.gate.full:
                self.pause()
                metrics.ACCEPT_PAUSES.inc()
                return
            try:
                connection, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:  # out of file descriptors (EMFILE): wait instead of spinning
                log.warning("cannot accept a connection; pausing for a second", extra={"fields": {"error": str(error)}})
                self.pause()
                self.loop.call_later(1.0, self.resume)
                return
            self.gate.take()
            task = self.loop.create_task(self._handshake(connection))
            self.handshakes.add(task)
            task.add_done_callback(self.handshakes.discard)

    def _protocol(self) -> asyncio.BaseProtocol:
        protocol = self.protocol_factory()
        if isinstance(protocol, BoundedHttpToolsProtocol):
            protocol.gate = self.gate
        return protocol

    async def _handshake(self, connection: socket.socket) -> None:
        made: list[asyncio.BaseProtocol] = []

        def factory() -> asyncio.BaseProtocol:
            made.append(self._protocol())
            return made[0]

        try:
            await self.loop.connect_accepted_socket(
                factory,
                connection,
                ssl=self.context,
                ssl_handshake_timeout=self.handshake_timeout,
                ssl_shutdown_timeout=self.handshake_timeout,
            )
        except Exception:  # noqa: BLE001 - too slow, refused or not TLS at all: the client's problem, counted
            metrics.CONNECTIONS_CLOSED.labels("tls_handshake").inc()
            connection.close()
            protocol = made[0] if made else None
            if isinstance(protocol, BoundedHttpToolsProtocol):
                if protocol.made or protocol.gate is None:
                    return  # it reached the protocol, which tells the gate when it ends
                protocol.gate = None
            self.gate.release()


class _Server:
    """What uvicorn keeps of a server: something to close, and to wait for."""

    def __init__(self, listener: _Listener) -> None:
        self.listener = listener

    def close(self) -> None:
        self.listener.close()

    async def wait_closed(self) -> None:
        """uvicorn waits for the connections itself; handshakes still running end by their deadline."""
