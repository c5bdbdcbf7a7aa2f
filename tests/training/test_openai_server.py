"""The `openai` backend against a REAL OpenAI-compatible server: `transformers serve` on 127.0.0.1.

The served model is a tiny Qwen2 taught in seconds to answer this world's two strongest pairs
(tests/training/stage1_tiny_teacher.py), so the accepted path runs end to end over HTTP, offline.
"""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from stage1_tiny_teacher import build_tiny_teacher

from rgcd.config import Settings
from training.frames import read_stage1_frames
from training.reasoning.run import reason, select_pairs

SECRET = "sk-test-never-print-this-42"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(**teacher) -> Settings:
    s = Settings()
    return s.model_copy(update={"teacher": s.teacher.model_copy(update=teacher)})


@pytest.fixture
def served_teacher(world_ws, tmp_path):
    pairs, _ = select_pairs(read_stage1_frames(world_ws, Settings()), 2, 0.0)
    model_dir = build_tiny_teacher(pairs, tmp_path / "tiny-teacher")
    here = str(Path(sys.executable).parent)
    serve = shutil.which("transformers", path=here) or shutil.which("transformers")
    assert serve, "the `transformers` CLI is missing: install transformers[serving] (see pyproject.toml)"
    port = _free_port()
    log = open(tmp_path / "serve.log", "w")  # noqa: SIM115 (closed below)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [serve, "serve", "--host", "127.0.0.1", "--port", str(port), "--device", "cpu", str(model_dir)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                served = (tmp_path / "serve.log").read_text()
                raise AssertionError(f"transformers serve did not come up:\n{served}")
            time.sleep(1)
        yield f"http://127.0.0.1:{port}/v1", str(model_dir)
    finally:
        proc.send_signal(signal.SIGTERM)  # stopped by its pid, never by name
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow
def test_openai_backend_against_transformers_serve(world_ws, served_teacher, monkeypatch, caplog):
    base_url, model = served_teacher
    monkeypatch.setenv("RGCD_TEACHER_API_KEY", SECRET)
    caplog.set_level(logging.DEBUG)
    settings = _settings(
        backend="openai",
        base_url=base_url,
        model=model,
        max_pairs=2,
        concurrency=2,
        timeout_s=120,
        retries=1,
        backoff_s=0.1,
        max_new_tokens=200,
    )
    report = reason(world_ws, settings, show_progress=False)
    assert report.teacher_id == f"openai:{model}" and report.is_llm
    assert (report.pairs_selected, report.accepted, report.rejected) == (2, 2, 0)
    rows = pl.read_parquet(world_ws.feature_data / "pair_reasoning.parquet")
    assert set(rows["teacher_id"]) == {f"openai:{model}"}
    assert rows["semantic_transferability"].is_between(0, 1).all()
    # the key travels in the header only: not in logs, not in reports
    assert SECRET not in caplog.text and SECRET not in (world_ws.reports / "reason.json").read_text()
    # a rerun is answered from the cache, without the server's help
    again = reason(world_ws, settings, show_progress=False)
    assert (again.from_cache, again.generated) == (2, 0)

    # the hf backend, same model in process, same answers
    hf = reason(
        world_ws, _settings(backend="hf", model=model, max_pairs=2, max_new_tokens=200), show_progress=False
    )
    assert hf.accepted == 2 and hf.teacher_id == "hf:tiny-teacher"


def test_openai_backend_unreachable_server_ends_rejected(world_ws):
    settings = _settings(
        backend="openai",
        base_url=f"http://127.0.0.1:{_free_port()}/v1",
        model="nobody",
        max_pairs=3,
        retries=1,
        backoff_s=0.0,
        timeout_s=5,
    )
    report = reason(world_ws, settings, show_progress=False)
    assert (report.accepted, report.rejected) == (0, 3)
    q = pl.read_parquet(world_ws.quarantine_table("pair_reasoning"))
    assert q["reason"].str.contains("APIConnectionError").all() and (q["attempts"] == 2).all()
    assert json.loads((world_ws.reports / "reason.json").read_text())["schema_valid_rate"] == 0.0
