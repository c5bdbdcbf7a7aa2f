"""Concurrent requests' Milvus searches, sent as one (`rgcd serve` with a Milvus server).

A worker of `rgcd serve` takes each request up to its one search on its event loop (the online read
and the checks: `Retriever.plan_user`, `plan_item`). The search goes to a queue. While no search is in
Milvus, the queue goes at once, on a thread of its own, as one multi-vector search
(`RoomVectors.search_many`); while one is, the loop takes the next requests up to their searches, and
those go together when it returns. A request alone waits for nothing (no timer fills a batch); under
load, eight requests cost Milvus and pymilvus about what one did (docs/serving.md, Speed).

With the embedded Milvus Lite file the search runs in the loop's thread as before: Lite searches in
Python inside this process, so a thread would only contend for the GIL.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from rgcd.embeddings.milvus_store import Hit
from rgcd.embeddings.retrieval import Answer, Pending, Retriever


class SearchBatcher:
    """One worker's queue of searches; `threaded=False` runs each search at once, in the caller."""

    def __init__(self, retriever: Retriever, threaded: bool, max_batch: int) -> None:
        self.retriever, self.max_batch = retriever, max_batch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="milvus-search") if threaded else None
        self._waiting: list[tuple[Pending, asyncio.Future[list[Hit]]]] = []
        self._in_milvus = False

    async def complete(self, plan: Answer | Pending) -> Answer:
        """The answer of a plan, its search sent with whatever else is waiting."""
        if isinstance(plan, Answer) or self._pool is None:
            return self.retriever.complete(plan)
        hits: asyncio.Future[list[Hit]] = asyncio.get_running_loop().create_future()
        self._waiting.append((plan, hits))
        if not self._in_milvus:
            self._send()
        return plan.finish(await hits)

    def _send(self) -> None:
        batch, self._waiting = self._waiting[: self.max_batch], self._waiting[self.max_batch:]
        self._in_milvus = True
        searches = [plan.search for plan, _ in batch]
        loop = asyncio.get_running_loop()
        job = loop.run_in_executor(self._pool, self.retriever.rooms.search_many, searches)
        job.add_done_callback(lambda done: self._returned(batch, done))

    def _returned(self, batch: list[tuple[Pending, asyncio.Future[list[Hit]]]],
                  done: asyncio.Future[list[list[Hit]]]) -> None:
        self._in_milvus = False
        error = done.exception()
        for n, (_, hits) in enumerate(batch):
            if hits.done():  # the request was cancelled (its client went away)
                continue
            if error is not None:
                hits.set_exception(error)
            else:
                hits.set_result(done.result()[n])
        if self._waiting:
            self._send()

    def close(self) -> None:
        """Stop the search thread (after the server has stopped taking requests)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
