"""What bounds the work one request can cause: its body size, its texts' length, its tokens, its
deadline, its client, and how long its connection may take to send it.

``BodySizeLimit``: Starlette's own limiter answers a declared over-size
Content-Length in plain text; this one answers 413 with a JSON body, like every
other error of the API, checks the declared length before the app runs and
counts the bytes of a chunked body as they arrive.

``bound_texts`` caps each text by characters before anything tokenizes it, and
``Engine.tokens`` counts what the model would read, before any model work.
``until_done`` runs a request's work until it is done, its deadline passes (503)
or its client disconnects; either of the last two cancels the work, which then
stops at its next step (an encode slice, a batch).

``TimedH11Protocol`` gives a connection a deadline for each request's headers and
body: uvicorn itself only closes connections that sit idle between requests.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

import h11
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

R = TypeVar("R")

# characters per token that no text of prose reaches (they average 3 to 5): a text over
# max_length x this many characters is far over max_length tokens, and tokenizing a
# multi-megabyte text costs seconds of CPU
CHARS_PER_TOKEN = 16


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
                    raise HTTPException(
                        413, self._detail()
                    )  # FastAPI re-raises it; the handler makes JSON
            return message

        await self.app(scope, counted, send)


class ClientGone(Exception):
    """The client disconnected before its response was ready; its work was cancelled."""


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body was read already: the next message is the
    disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def until_done(work: Coroutine[Any, Any, R], request: Request, timeout_s: float) -> R:
    """``work``'s result; cancelled with ClientGone when the client disconnects, or with a 503
    after ``timeout_s``."""
    task = asyncio.ensure_future(work)
    task.add_done_callback(
        lambda t: t.cancelled() or t.exception()
    )  # an abandoned task's error is not news
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait(
            {task, gone}, timeout=timeout_s, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        # a no-op once it is done; else it stops at its next await (a batch, an encode slice)
        task.cancel()
        gone.cancel()
    if task in done:
        return task.result()
    if gone in done:
        gone.result()  # re-raises if watching the connection itself failed
        raise ClientGone()
    raise HTTPException(
        503,
        f"not scored within {timeout_s:g} s (the server's request_timeout_s): it is busy, "
        "or the request is too large; retry later or send fewer passages",
    )


def bound_texts(
    query: str, passages: list[str], max_length: int, cut: bool
) -> tuple[str, list[str]]:
    """The texts cut to ``max_length`` x CHARS_PER_TOKEN characters (``cut``: truncate END), else a
    400 for the first longer one; both before any tokenizing, so that a request's cost follows its
    token budget, not its bytes."""
    limit = max_length * CHARS_PER_TOKEN
    if cut:
        return query[:limit], [p[:limit] for p in passages]
    for name, text in (("query", query), *((f"passages[{i}]", p) for i, p in enumerate(passages))):
        if len(text) > limit:
            raise HTTPException(
                400,
                f"{name}: {len(text)} characters, far over the model's maximum of {max_length} "
                f"tokens (refused unread over {limit} characters, {CHARS_PER_TOKEN} per token); "
                'shorten it or send "truncate": "END" to cut it',
            )
    return query, passages


class TimedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with deadlines for receiving a request.

    Its headers must arrive within ``headers_timeout_s`` of the connection opening (or of
    the first byte of a request on a kept-alive connection), its body within
    ``body_timeout_s`` of its headers. Past either the client gets a 408, if no response
    has started, and the connection is closed: a slow or silent client holds a socket
    for seconds, not forever. Idle time between requests stays uvicorn's
    ``timeout_keep_alive``.
    """

    def __init__(self, *args, headers_timeout_s: float, body_timeout_s: float, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timeouts = {"headers": headers_timeout_s, "body": body_timeout_s}
        self.phase: str | None = None
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._enter("headers")

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self._follow()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._follow()

    def connection_lost(self, exc: Exception | None) -> None:
        self._enter(None)
        super().connection_lost(exc)

    def _follow(self) -> None:
        """Move to the phase h11's parser is in: headers (part of a request read), body, or none
        (idle, or all read)."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            self._enter("body")
        elif state is h11.IDLE and self.conn.trailing_data[0]:
            self._enter("headers")
        elif state is not h11.IDLE or self.phase == "body":
            self._enter(None)

    def _enter(self, phase: str | None) -> None:
        if phase == self.phase:
            return
        if self.deadline is not None:
            self.deadline.cancel()
        self.phase = phase
        self.deadline = self.loop.call_later(self.timeouts[phase], self._expired) if phase else None

    def _expired(self) -> None:
        timeout = self.timeouts[self.phase]
        log.info(
            "%s: request %s not received within %g s (deploy.%s_timeout_s): connection closed",
            f"{self.client[0]}:{self.client[1]:d}" if self.client else "client",
            self.phase,
            timeout,
            self.phase,
        )
        if not self.transport.is_closing():
            if (
                self.phase == "headers" or not self.cycle.response_started
            ):  # else 408 would be a second answer
                detail = (
                    f"request {self.phase} not received within {timeout:g} s "
                    f"(the server's {self.phase}_timeout_s)"
                )
                body = JSONResponse({"detail": detail}).body
                self.transport.write(
                    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
                )
            self.transport.close()
        self.deadline = None


def connection_limits(
    headers_timeout_s: float, body_timeout_s: float, keep_alive_timeout_s: float
) -> dict:
    """``uvicorn.Config`` options that give every connection these time limits."""
    return {
        "http": functools.partial(
            TimedH11Protocol, headers_timeout_s=headers_timeout_s, body_timeout_s=body_timeout_s
        ),
        "timeout_keep_alive": keep_alive_timeout_s,
    }
