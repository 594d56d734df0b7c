"""Dynamic batching: pairs from concurrent requests share forward passes.

One worker task takes the oldest waiting request, then keeps gathering more
until it holds ``max_batch`` pairs or ``max_wait_s`` has passed, and scores the
lot in one call on a single background thread. Small requests arriving
together then cost one forward pass instead of one each, and the model never
runs twice at once (which on a CPU only makes the runs fight for cores).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class BatcherStopped(RuntimeError):
    """The server is shutting down; the request was not scored."""


@dataclass
class _Job(Generic[T]):
    items: Sequence[T]
    future: asyncio.Future = field(repr=False)


class DynamicBatcher(Generic[T]):
    def __init__(self, run: Callable[[list[T]], list[float]], max_batch: int, max_wait_s: float) -> None:
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self._run = run
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Job[T]] | None = None
        self._worker: asyncio.Task | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._inflight: list[_Job[T]] = []
        self.batches = 0   # forward calls made, for logs and tests

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batcher")
        self._worker = asyncio.create_task(self._loop(), name="dynamic-batcher")

    async def stop(self) -> None:
        """Cancel the worker; requests still waiting get an error instead of hanging."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        waiting = list(self._inflight)
        while self._queue is not None and not self._queue.empty():
            waiting.append(self._queue.get_nowait())
        for job in waiting:
            if not job.future.done():
                job.future.set_exception(BatcherStopped("server is shutting down"))
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def submit(self, items: Sequence[T]) -> list[float]:
        if self._queue is None:
            raise RuntimeError("batcher not started")
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Job(items, future))
        return await future

    async def _gather(self) -> list[_Job[T]]:
        assert self._queue is not None
        jobs = [await self._queue.get()]
        count = len(jobs[0].items)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while count < self.max_batch:
            try:
                job = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            jobs.append(job)
            count += len(job.items)
        return [j for j in jobs if not j.future.done()]   # a cancelled request needs no scores

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = self._inflight = await self._gather()
            if not jobs:
                continue
            items = [item for job in jobs for item in job.items]
            try:
                scores = await loop.run_in_executor(self._executor, self._run, items)
            except Exception as exc:  # the requests fail, the worker keeps serving
                log.exception("scoring %d pairs failed", len(items))
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for job in jobs:
                end = start + len(job.items)
                if not job.future.done():
                    job.future.set_result(scores[start:end])
                start = end
