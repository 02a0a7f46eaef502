"""The ceiling: a plain ASGI app answering every POST with one fixed AdmissionReview response.

It is served by the very code path ``entourage serve`` uses (``webhook.cli.main(["serve", …])``)
with only ``webhook.serving.app.create_app`` swapped for this app, so the uvicorn settings (TLS,
event loop, HTTP parser, access log, keep-alive) and any start-up tuning in the CLI or the server
module are the same for both sides of every ratio, even when server.py changes.

Run: ``python -m bench.baseline --tls-cert-file C --tls-private-key-file K --host H --port P``.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson

UID = "6c9a2f0e-1b7d-4e3a-9f58-2d4c8b1a7e35"
"""The uid of the reference review (the small case), so the fixed answer is valid for it."""

BODY = orjson.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": {"uid": UID, "allowed": True}})
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(
    scope: MutableMapping[str, Any],
    receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
    send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
) -> None:
    """Read the request body (as any handler must), then send the fixed answer."""
    if scope["type"] != "http":  # lifespan: nothing to set up
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False) and message["type"] == "http.request"
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def main(argv: list[str]) -> int:
    from webhook import cli
    from webhook.serving import app as serving_app

    serving_app.create_app = lambda *args, **kwargs: app  # type: ignore[assignment]
    return cli.main(["serve", *argv])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
