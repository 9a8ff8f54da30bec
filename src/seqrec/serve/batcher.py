"""Micro-batching for the HTTP server: concurrent requests share one scoring pass.

Concurrent requests are collected for up to ``max_wait_ms`` (or ``max_batch`` requests) and
answered by one call of ``fn`` (`Recommender.answer`: one `score_chunks` pass per exclude_seen
value) on a single model thread, so the event loop never blocks on torch. The queue is bounded
(``max_queue`` waiting queries): past it a request is refused at once with `Overloaded` (HTTP
503 and Retry-After) instead of waiting without limit and growing the server's memory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from typing import Any

from seqrec.run.recommender import Answer, Query


class Overloaded(Exception):
    """More queries are waiting than the server accepts; the client should retry later."""


class MicroBatcher:
    """Collects concurrent queries into one call of ``fn`` (run on one worker thread)."""

    def __init__(
        self,
        fn: Callable[[list[Query]], list[Answer]],
        max_batch: int,
        max_wait_ms: float,
        max_queue: int = 8192,
    ):
        self.fn = fn
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self.executor: ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None
        self.batches = 0
        self.requests = 0
        self.largest = 0

    def stats(self) -> dict[str, Any]:
        return {
            "max_batch": self.max_batch,
            "max_wait_ms": self.max_wait * 1000.0,
            "max_queue": self.max_queue,
            "batches": self.batches,
            "requests": self.requests,
            "mean_batch": self.requests / self.batches if self.batches else 0.0,
            "largest_batch": self.largest,
        }

    def _ensure_worker(self) -> None:
        # started lazily on the loop that serves requests (a test client may use a new loop)
        loop = asyncio.get_running_loop()
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="seqrec-model")
        if self._loop is not loop or self._task is None or self._task.done():
            self._loop = loop
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._worker(self._queue))

    async def submit(self, queries: Sequence[Query]) -> list[Answer]:
        self._ensure_worker()
        assert self._loop is not None and self._queue is not None
        if self._queue.qsize() + len(queries) > self.max_queue:
            raise Overloaded(
                f"{self._queue.qsize()} queries are already waiting (at most {self.max_queue}); "
                "retry shortly or send fewer queries at once"
            )
        futures = []
        for q in queries:
            fut = self._loop.create_future()
            self._queue.put_nowait((q, fut))
            futures.append(fut)
        return list(await asyncio.gather(*futures))

    async def _worker(self, queue: asyncio.Queue) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [await queue.get()]
            deadline = loop.time() + self.max_wait
            while len(batch) < self.max_batch:
                try:
                    batch.append(queue.get_nowait())
                    continue
                except asyncio.QueueEmpty:
                    pass
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            batch = [(q, f) for q, f in batch if not f.done()]  # drop cancelled requests
            if not batch:
                continue
            queries = [q for q, _ in batch]
            try:
                answers = await loop.run_in_executor(self.executor, self.fn, queries)
            except Exception:
                # one bad query must not fail its neighbours: answer each on its own
                answers = []
                for q in queries:
                    try:
                        answers.append((await loop.run_in_executor(self.executor, self.fn, [q]))[0])
                    except Exception as err:
                        answers.append(err)
            self.batches += 1
            self.requests += len(batch)
            self.largest = max(self.largest, len(batch))
            for (_, fut), ans in zip(batch, answers, strict=True):
                if fut.done():
                    continue
                if isinstance(ans, Exception):
                    fut.set_exception(ans)
                else:
                    fut.set_result(ans)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with suppress(asyncio.CancelledError, RuntimeError):
                await self._task
        self._task = None
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None
