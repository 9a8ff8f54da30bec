"""The request-body limit, held on the bytes actually received, chunked or not.

Starlette reads a request body until the client stops and FastAPI checks nothing on the way, so
a limit on the Content-Length header alone let a chunked body (no Content-Length) of any size
in: 100 MB grew the server by ~400 MB. `BodyLimit` is ASGI middleware in front of the app:

* a declared Content-Length over the limit gets 413 before a byte is read;
* a chunked body is read here first, counting, into a spooled temporary file that keeps at most
  `SPOOL_BYTES` in memory (the rest goes to disk): past the limit the request gets 413 and the
  file is dropped, so an over-limit body costs the server about `SPOOL_BYTES` of memory, not
  the limit; a body within the limit is handed to the app as one message, as if it had come
  with a Content-Length;
* every body the app reads is counted again (`BodyTooLarge` from ``receive``), in case a
  client sends more than it declared.

The 413 has the server's one error shape (`serve.errors`).
"""

from __future__ import annotations

import tempfile

from seqrec.serve.errors import BodyTooLarge, error_response, too_large

SPOOL_BYTES = 1 << 20  # a chunked body's bytes held in memory while it is counted


class BodyLimit:
    """ASGI middleware: no request body over ``max_bytes`` reaches the app or stays in memory."""

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.strip().isdigit():
            msg = "Content-Length must be a whole number of bytes"
            return await error_response(400, msg)(scope, receive, send)
        if declared is not None and int(declared) > self.max_bytes:
            return await self._too_large(scope, receive, send)
        if declared is None and b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            first = await self._read_chunked(receive)
            if first is None:
                return await self._too_large(scope, receive, send)
            receive = _replay(first, receive)
        await self._guarded(scope, receive, send)

    async def _too_large(self, scope, receive, send) -> None:
        resp = error_response(413, too_large(self.max_bytes), {"limit_bytes": self.max_bytes})
        await resp(scope, receive, send)

    async def _read_chunked(self, receive) -> dict | None:
        """The whole body as one ``http.request`` message, or None once it passes the limit
        (a client that went away is passed on as its disconnect message)."""
        size = 0
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as spool:
            while True:
                message = await receive()
                if message["type"] != "http.request":
                    return message
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    return None
                spool.write(chunk)
                if not message.get("more_body", False):
                    break
            spool.seek(0)
            return {"type": "http.request", "body": spool.read(), "more_body": False}

    async def _guarded(self, scope, receive, send) -> None:
        """Run the app, counting what it reads; a 413 if it reads past the limit."""
        received = 0
        started = False

        async def counted_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except BodyTooLarge:  # raised where no handler turned it into a response
            if started:
                raise
            await self._too_large(scope, receive, send)


def _replay(first: dict, receive):
    """A ``receive`` that gives ``first`` once, then whatever the server sends next."""
    pending = [first]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed
