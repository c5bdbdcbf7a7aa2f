"""Worker processes for CPU-bound jobs (distill's encoding, evaluate's models): the one way they start.

Spawned, never forked (polars and torch hold threads that a fork would copy half-way), each set up
once by an initializer, and tied to the process that started them: on Linux a worker is killed
when its parent dies (`PR_SET_PDEATHSIG`), so a killed stage never leaves workers writing behind
its back. The pool is created from the calling thread, which must outlive it (the signal follows
the thread that started the worker).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when the thread that started it dies (Linux's
    PR_SET_PDEATHSIG; elsewhere nothing: the process outlives a killed parent)."""
    import contextlib
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG


def _setup(parent: int, initializer: Callable[..., None], initargs: tuple) -> None:
    die_with_parent()
    # A parent killed while this worker was still booting sent no signal (the request above came
    # after); then this process has been handed to another parent and leaves by itself.
    if os.getppid() != parent:
        os._exit(1)
    initializer(*initargs)


def results_as_completed(fn: Callable[..., Any], jobs: Sequence[tuple], processes: int,
                         initializer: Callable[..., None], initargs: tuple = ()) -> Iterator[Any]:
    """`fn(*job)` for every job in `processes` spawned workers, submitted in order; yields each
    result as its job finishes. A failed job (or Ctrl-C) cancels the rest instead of waiting for
    them, and its error is raised here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=max(1, min(processes, len(jobs))),
                             mp_context=multiprocessing.get_context("spawn"),
                             initializer=_setup, initargs=(os.getpid(), initializer, initargs)) as pool:
        futures = [pool.submit(fn, *job) for job in jobs]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
