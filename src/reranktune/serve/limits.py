"""What bounds the work one request can cause: its body size, its tokens, its deadline, its client.

``BodySizeLimit``: Starlette's own limiter answers a declared over-size
Content-Length in plain text; this one answers 413 with a JSON body, like every
other error of the API, checks the declared length before the app runs and
counts the bytes of a chunked body as they arrive.

``Engine.tokens`` counts what the model would read, before any model work.
``until_done`` runs a request's work until it is done, its deadline passes (503)
or its client disconnects; either of the last two cancels the work, which then
stops at its next step (an encode slice, a batch).
"""
from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send


R = TypeVar("R")


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _detail(self) -> str:
        return f"request body over {self.max_bytes} bytes (the server's max_body_bytes)"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            detail = self._detail() if status == 413 else "invalid Content-Length header"
            await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._detail())   # FastAPI re-raises it; the handler makes JSON
            return message

        await self.app(scope, counted, send)


class ClientGone(Exception):
    """The client disconnected before its response was ready; its work was cancelled."""


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body was read already: the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_done(work: Coroutine[Any, Any, R], request: Request, timeout_s: float) -> R:
    """``work``'s result; cancelled with ClientGone when the client disconnects, or with a 503 after ``timeout_s``."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())   # an abandoned task's error is not news
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()   # a no-op once it is done; else it stops at its next await (a batch, an encode slice)
        gone.cancel()
    if task in done:
        return task.result()
    if gone in done:
        gone.result()   # re-raises if watching the connection itself failed
        raise ClientGone()
    raise HTTPException(503, f"not scored within {timeout_s:g} s (the server's request_timeout_s): it is busy, "
                        "or the request is too large; retry later or send fewer passages")
