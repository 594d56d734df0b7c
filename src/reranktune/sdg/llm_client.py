"""An OpenAI-compatible chat/embeddings client that is safe to point at a paid, rate-limited API.

Why hand-rolled on httpx + tenacity rather than data-designer: the stage needs per-call
control that data-designer's engine does not expose (a requests-per-minute cap, retrying
500 as well as 502-504, a stop on 401/403 with the count done, per-document resume and
call accounting); see docs/llm-generator.md.

- one ``httpx.Client`` to ``base_url`` only; proxies/netrc from the environment are off
  unless ``trust_env`` is set, so nothing but the configured endpoint is contacted;
- at most ``concurrency`` requests in flight, request starts spaced to ``requests_per_minute``;
- 429, 5xx, timeouts and connection errors are retried with exponential backoff and full
  jitter (``Retry-After`` is honoured up to ``backoff_max_s``);
- 401/403 raise :class:`AuthError` (never retried); other 4xx raise :class:`RequestRejected`;
- the key is only ever placed in the ``Authorization`` header, and every error message
  passes through :func:`redact`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from reranktune.params import LlmParams

log = logging.getLogger(__name__)


class LlmError(RuntimeError):
    """Base class; messages are redacted."""


class AuthError(LlmError):
    """The endpoint rejected the key (401/403): stop the whole run."""


class TransientError(LlmError):
    """429, 5xx, timeout or connection failure: worth retrying later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RequestRejected(LlmError):
    """Another 4xx (bad request, unknown model, context too long): retrying will not help."""


def redact(text: str, secret: str | None) -> str:
    return text.replace(secret, "***") if secret else text


@dataclass
class Usage:
    """Thread-safe call accounting, written to the stage summary."""

    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, **values: int) -> None:
        with self.lock:
            self.counts.update(values)


class RateLimiter:
    """Space request starts at least ``60 / rpm`` seconds apart, across threads."""

    def __init__(self, requests_per_minute: float | None) -> None:
        self.interval = 60.0 / requests_per_minute if requests_per_minute else 0.0
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        if start > now:
            time.sleep(start - now)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


class LlmClient:
    def __init__(self, params: LlmParams, api_key: str | None) -> None:
        self.params = params
        self.api_key = api_key
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.Client(
            base_url=params.base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(params.timeout_s),
            trust_env=params.trust_env,
            limits=httpx.Limits(max_connections=params.concurrency),
        )
        self.slots = threading.BoundedSemaphore(params.concurrency)
        self.rate = RateLimiter(params.requests_per_minute)
        self.usage = Usage()
        self.stop = threading.Event()  # set after a 401/403: no further calls
        self.auth_error: AuthError | None = None  # the first rejection, for the final message
        self._jitter = wait_random_exponential(
            multiplier=params.backoff_initial_s, max=params.backoff_max_s
        )

    def close(self) -> None:
        self.http.close()

    # -- one HTTP call -------------------------------------------------------------
    def _post_once(self, path: str, body: dict) -> dict:
        if self.stop.is_set():
            raise AuthError("stopped: an earlier call's key was rejected")
        self.rate.wait()
        with self.slots:
            self.usage.add(requests=1)
            try:
                response = self.http.post(path, json=body)
            except httpx.TimeoutException as exc:
                self.usage.add(timeouts=1)
                raise TransientError(
                    f"{path}: timed out after {self.params.timeout_s:g} s"
                ) from exc
            except httpx.TransportError as exc:
                raise TransientError(
                    redact(f"{path}: {type(exc).__name__}: {exc}", self.api_key)
                ) from exc
        status = response.status_code
        if status == 200:
            try:
                return response.json()
            except ValueError as exc:
                raise TransientError(f"{path}: 200 with a body that is not JSON") from exc
        detail = redact(response.text[:300], self.api_key)
        self.usage.add(**{f"http_{status}": 1})
        if status in (401, 403):
            error = AuthError(
                f"{self.params.base_url}: HTTP {status}: the API key was rejected ({detail})"
            )
            self.auth_error = self.auth_error or error
            self.stop.set()
            raise error
        if status == 429 or status >= 500:
            raise TransientError(f"{path}: HTTP {status}: {detail}", _retry_after(response))
        raise RequestRejected(f"{path}: HTTP {status}: {detail}")

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, TransientError) and exc.retry_after is not None:
            return min(exc.retry_after, self.params.backoff_max_s)
        return self._jitter(state)

    def _before_sleep(self, state: RetryCallState) -> None:
        self.usage.add(retries=1)
        log.info("retrying after %s (attempt %d)", state.outcome.exception(), state.attempt_number)

    def post(self, path: str, body: dict) -> dict:
        """POST with retries on transient failures; the last TransientError propagates."""
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.params.max_retries + 1),
            wait=self._wait,
            before_sleep=self._before_sleep,
            reraise=True,
        )
        return retrying(self._post_once, path, body)

    # -- API --------------------------------------------------------------------------
    def chat(
        self,
        step: str,
        messages: list[dict],
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> str:
        p = self.params
        body = {
            **p.extra_body,
            "model": p.model_for(step),
            "messages": messages,
            "temperature": p.temperature if temperature is None else temperature,
            "top_p": p.top_p,
            "max_tokens": max_tokens or p.max_tokens,
        }
        reply = self.post("chat/completions", body)
        usage = reply.get("usage") or {}
        self.usage.add(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        try:
            content = reply["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise RequestRejected(
                "chat/completions: reply has no choices[0].message.content"
            ) from exc
        return content if isinstance(content, str) else ""

    def embed(self, texts: list[str]) -> list[list[float]]:
        p = self.params
        body = {
            **p.embedding_extra_body,
            "model": p.embedding_model,
            "input": texts,
            "encoding_format": "float",
        }
        reply = self.post("embeddings", body)
        try:
            data = sorted(reply["data"], key=lambda d: d["index"])
            vectors = [[float(x) for x in d["embedding"]] for d in data]
        except (KeyError, TypeError, ValueError) as exc:
            raise RequestRejected("embeddings: reply is not {data: [{index, embedding}]}") from exc
        if len(vectors) != len(texts):
            raise RequestRejected(f"embeddings: {len(vectors)} vectors for {len(texts)} texts")
        return vectors

    def preflight(self) -> None:
        """One tiny call per distinct model before any work: a rejected key or unknown model stops
        at once."""
        steps = {self.params.model_for(step): step for step in ("judge", "artifacts", "qa")}
        for step in steps.values():
            self.chat(
                step,
                [{"role": "user", "content": "Reply with OK."}],
                max_tokens=16,
                temperature=0.0,
            )
