"""The servers tests start (feature server, teacher server, retrieval service, redis): a free
127.0.0.1 port, a wait for /health that shows what the server printed when it fails, and a stop
by pid, never by name."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest


def free_port() -> int:
    """A free 127.0.0.1 port below Linux's ephemeral range (32768+): Milvus Lite's in-process gRPC
    server binds port 0 with SO_REUSEPORT and could otherwise share a port picked here."""
    while True:
        port = random.randint(20_000, 32_000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


def _printed(proc: subprocess.Popen) -> str:
    stream = proc.stderr or proc.stdout
    text = stream.read() if stream else ""
    return (text.decode(errors="replace") if isinstance(text, bytes) else text)[-3000:]


def wait_until_healthy(proc: subprocess.Popen, base: str, seconds: float,
                       output: Callable[[], str] | None = None) -> None:
    """Wait until `proc` answers 200 on `<base>/health`. If it exits first, or `seconds` pass,
    fail with what it printed: `output()`, or by default its stderr (else stdout) pipe."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        exited = proc.poll() is not None
        if exited or time.monotonic() > deadline:
            if not exited:  # its pipe ends only when it does
                proc.kill()
                proc.wait(timeout=10)
            why = f"exited with {proc.returncode}" if exited else f"not healthy in {seconds:g} s"
            pytest.fail(f"{proc.args[0]} {why}:\n{(output or (lambda: _printed(proc)))()}")
        time.sleep(0.3)


def stop(proc: subprocess.Popen, seconds: float = 30) -> None:
    """SIGTERM to `proc`'s pid (a gunicorn/uvicorn master stops its workers), then wait; SIGKILL
    if it has not stopped after `seconds`."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:
                continue
    return found


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) these processes and their descendants have used so far (/proc).
    Per request, it is what a request costs whatever else the shared machine runs."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0
    for pid in {d for p in pids for d in _descendants(p)}:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick
