"""Dynamic batching: pairs from concurrent requests share forward passes.

One worker task scores at most ``max_batch`` pairs per call, on a single
background thread. It takes pairs from the oldest waiting request first and,
while the batch is not full, waits up to ``max_wait_s`` for more requests to fill
it. Small requests arriving together then cost one forward pass instead of one
each, and the model never runs twice at once (which on a CPU only makes the runs
fight for cores).

A large request is scored over several batches, its pairs sorted by ``sort_key``
(their length), longest first, so each batch pads little: a batch that ends one
request and starts the next pads only the first one's shortest pairs up to the
next one's longest. Between two batches the worker
drops every request whose caller stopped waiting (its ``submit`` was cancelled:
the client went away or its deadline passed), so such a request costs at most the
batch already running.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatcherStopped(RuntimeError):
    """The server is shutting down; the request was not scored."""


@dataclass(eq=False)
class _Job(Generic[T]):
    items: list[T]
    future: asyncio.Future = field(repr=False)
    scores: list[float] = field(default_factory=list)
    taken: int = 0  # items handed to a batch so far

    @property
    def left(self) -> int:
        return len(self.items) - self.taken


def length_order(items: Sequence[T], sort_key: Callable[[T], Any] | None) -> list[int]:
    """Positions of ``items``, largest ``sort_key`` first (as given without one)."""
    if sort_key is None:
        return list(range(len(items)))
    return sorted(range(len(items)), key=lambda i: sort_key(items[i]), reverse=True)


def in_request_order(scores: list[float], order: list[int]) -> list[float]:
    out = [0.0] * len(order)
    for position, i in enumerate(order):
        out[i] = scores[position]
    return out


class DynamicBatcher(Generic[T]):
    def __init__(
        self,
        run: Callable[[list[T]], list[float]],
        max_batch: int,
        max_wait_s: float,
        sort_key: Callable[[T], Any] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.sort_key = sort_key
        self._waiting: deque[_Job[T]] = deque()
        self._arrived: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: list[_Job[T]] = []
        self.batches = 0  # forward calls made, for logs and tests
        self.dropped = (
            0  # requests given up with pairs still unscored (client gone, deadline passed)
        )

    async def start(self) -> None:
        self._arrived = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batcher")
        self._worker = asyncio.create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Cancel the worker; requests still waiting get an error instead of hanging."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for job in [*self._inflight, *self._waiting]:
            if not job.future.done():
                job.future.set_exception(BatcherStopped("server is shutting down"))
        self._waiting.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    @property
    def queued(self) -> int:
        """Pairs not yet handed to the model, of requests still waiting for their scores."""
        return sum(job.left for job in self._waiting if not job.future.done())

    async def submit(self, items: Sequence[T]) -> list[float]:
        """Scores of ``items``, in their order; cancelling the call drops what is not scored yet."""
        if self._arrived is None:
            raise RuntimeError("batcher not started")
        if not items:
            return []
        order = length_order(items, self.sort_key)
        job = _Job([items[i] for i in order], asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        self._arrived.set()
        return in_request_order(await job.future, order)

    def _prune(self) -> None:
        live = [job for job in self._waiting if not job.future.done()]
        self.dropped += sum(job.future.cancelled() for job in self._waiting)
        self._waiting = deque(live)

    async def _wait_for_arrival(self, timeout: float | None = None) -> bool:
        assert self._arrived is not None
        self._arrived.clear()
        try:
            await asyncio.wait_for(self._arrived.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _next_batch(self) -> list[tuple[_Job[T], int, int]]:
        """``(job, start, end)`` slices, oldest job first, ``max_batch`` items at most in all."""
        loop = asyncio.get_running_loop()
        self._prune()
        while not self._waiting:
            await self._wait_for_arrival()
            self._prune()
        deadline = loop.time() + self.max_wait_s
        while self.queued < self.max_batch and (remaining := deadline - loop.time()) > 0:
            if not await self._wait_for_arrival(remaining):
                break
        self._prune()
        batch, room = [], self.max_batch
        while self._waiting and room:
            job = self._waiting[0]
            count = min(room, job.left)
            batch.append((job, job.taken, job.taken + count))
            job.taken += count
            room -= count
            if not job.left:
                self._waiting.popleft()
        return batch

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if not batch:
                continue
            self._inflight = [job for job, _, _ in batch]
            items = [item for job, start, end in batch for item in job.items[start:end]]
            try:
                scores = await loop.run_in_executor(self._executor, self._run, items)
            except Exception as exc:  # the requests fail, the worker keeps serving
                log.exception("scoring %d pairs failed", len(items))
                for job in self._inflight:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            position = 0
            for job, start, end in batch:
                job.scores.extend(scores[position : position + end - start])
                position += end - start
                if len(job.scores) == len(job.items) and not job.future.done():
                    job.future.set_result(job.scores)
