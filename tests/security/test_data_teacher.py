"""The teacher against hostile data and hostile or absent endpoints (issue 25).

An OpenAI-shaped endpoint is played by a SCRIPTED stdlib HTTP server on 127.0.0.1 (not a model):
it answers each chat request with a fixed valid answer, or with a 401/400 whose body echoes the
request's Authorization header, and records every request's headers and body. The workspace is
the tiny stage-1 world of tests/training (marts built in code, Feast applied).

Before issue 25: the teacher read `/etc/passwd` named by a cover_path and sent it as an image;
the prompt carried the absolute cover path; a closed port or a 401 gave exit 0 with everything
rejected and the reasoning tables emptied; a body echoing the key was stored as it came; and
OPENAI_API_KEY was ignored, so `Bearer unset` went out.
"""

from __future__ import annotations

import base64
import json
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from data_world import png

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from stage1_world import write_world  # noqa: E402

from rgcd.cli import cli  # noqa: E402
from rgcd.config import Settings, Workspace  # noqa: E402
from rgcd.training.reasoning.run import reason  # noqa: E402
from rgcd.transforms.covers import COVER_ROOTS_FILE  # noqa: E402

ANSWER = json.dumps({"photo": {"vertical_domain": "v", "key_subject": "s", "content_theme": "t"},
                     "live": {"vertical_domain": "v", "key_subject": "s", "content_theme": "t"},
                     "match": True, "reason": "scripted", "semantic_transferability": 0.5})
KEY = "sk-test-0123456789abcdefSECRET"


@contextmanager
def scripted_endpoint(status: int = 200) -> Iterator[tuple[str, list[dict]]]:
    """(base_url, requests seen) of a scripted OpenAI-shaped server answering `status`."""
    seen: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the stdlib's name
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"authorization": self.headers.get("Authorization"), "body": body})
            if status == 200:
                reply = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                         "choices": [{"index": 0, "finish_reason": "stop",
                                      "message": {"role": "assistant", "content": ANSWER}}]}
            else:  # a careless proxy that echoes what it was sent
                reply = {"error": {"message": f"rejected; you sent Authorization: "
                                              f"{self.headers.get('Authorization')}", "code": status}}
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def ws(tmp_path) -> Workspace:
    from rgcd.featurestore.store import apply

    ws = Workspace(tmp_path / "ws").ensure()
    write_world(ws.marts)
    apply(ws, Settings())
    return ws


def _openai(base_url: str, **teacher) -> Settings:
    s = Settings()
    return s.model_copy(update={"teacher": s.teacher.model_copy(update={
        "backend": "openai", "base_url": base_url, "model": "scripted", "max_pairs": 4, "concurrency": 2,
        "retries": 0, "backoff_s": 0.0, "timeout_s": 10, "strength_bands": 1, **teacher})})


def _write_config(ws: Workspace, base_url: str) -> None:
    ws.config_file.write_text(f"teacher:\n  backend: openai\n  model: scripted\n  base_url: {base_url}\n"
                              "  max_pairs: 4\n  strength_bands: 1\n  retries: 0\n  backoff_s: 0\n"
                              "  timeout_s: 10\n")


def _covers(ws: Workspace, covered: dict[str, str]) -> None:
    """Give items cover_path values in the item_content mart (as a hostile raw file would have)."""
    mart = ws.marts / "item_content.parquet"
    items = pl.read_parquet(mart)
    items.with_columns(cover_path=pl.col("item_id").replace_strict(covered, default=None)).write_parquet(mart)


def _no_env_keys(monkeypatch) -> None:
    monkeypatch.delenv("RGCD_TEACHER_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


# --------------------------------------------------------------------------------------------- covers
def test_the_teacher_sends_no_file_outside_the_workspace_and_no_path(ws, tmp_path, monkeypatch):
    _no_env_keys(monkeypatch)
    from rgcd.training.frames import read_stage1_frames
    from rgcd.training.reasoning.run import select_pairs

    pairs, _ = select_pairs(read_stage1_frames(ws, Settings()), 4, 0.0, 3)
    data = tmp_path / "data"
    good = png(data / "good.png")
    outside_png = png(tmp_path / "elsewhere" / "x.png")
    (ws.lake / COVER_ROOTS_FILE).write_text(json.dumps({"roots": [str(data)]}))  # as ingest records
    _covers(ws, {pairs[0].photo.item_id: "/etc/passwd", pairs[0].live.item_id: str(good),
                 pairs[1].photo.item_id: "../../../../../../etc/hostname",
                 pairs[2].photo.item_id: str(outside_png), pairs[3].photo.item_id: str(good)})
    with scripted_endpoint() as (base_url, seen):
        report = reason(ws, _openai(base_url), show_progress=False)
    sent = [base64.b64decode(part["image_url"]["url"].split(",", 1)[1])
            for request in seen for message in request["body"]["messages"]
            if isinstance(message["content"], list)
            for part in message["content"] if part["type"] == "image_url"]
    assert sent == [good.read_bytes()]  # only the good cover of the one pair whose covers all pass
    wire = json.dumps([r["body"] for r in seen])
    assert str(ws.root) not in wire and str(tmp_path) not in wire and "/etc/" not in wire
    assert report.accepted == 1
    reasons = pl.read_parquet(ws.quarantine_table("pair_reasoning")).get_column("reason").to_list()
    assert all("cover refused: cover_path" in r for r in reasons) and len(reasons) == 3, reasons


# ------------------------------------------------------------------------------------- no model at all
def _previous_reasoning(ws: Workspace) -> dict[str, bytes]:
    reason(ws, Settings(), show_progress=False)  # the metadata baseline writes the tables first
    files = [ws.feature_data / "item_reasoning.parquet", ws.feature_data / "pair_reasoning.parquet",
             ws.reports / "reason.json"]
    return {f.name: f.read_bytes() for f in files}


def _fail_if_materialized(monkeypatch) -> None:
    import rgcd.featurestore.store as store

    def refuse(*args, **kwargs):
        raise AssertionError("materialized after a failed teacher")

    monkeypatch.setattr(store, "materialize_views", refuse)


def test_a_closed_port_fails_the_stage_and_keeps_the_previous_reasoning(ws, monkeypatch):
    _no_env_keys(monkeypatch)
    before = _previous_reasoning(ws)
    from servers import free_port

    _write_config(ws, f"http://127.0.0.1:{free_port()}/v1")
    _fail_if_materialized(monkeypatch)
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "reason"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "could not be reached" in said and "Connection refused" in said, said
    assert "teacher.base_url" in said, said
    assert "Traceback" not in res.output and "✓" not in res.output
    assert before == {name: (ws.feature_data / name if name != "reason.json" else ws.reports / name)
                      .read_bytes() for name in before}


def test_a_401_fails_the_stage_naming_the_key_variable_and_never_prints_the_key(ws, monkeypatch):
    _no_env_keys(monkeypatch)
    monkeypatch.setenv("RGCD_TEACHER_API_KEY", KEY)
    before = _previous_reasoning(ws)
    _fail_if_materialized(monkeypatch)
    with scripted_endpoint(401) as (base_url, seen):
        _write_config(ws, base_url)
        res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "reason"])
    said = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "401 unauthorized" in said and "$RGCD_TEACHER_API_KEY" in said, said
    assert KEY not in res.output and "[REDACTED]" in said
    assert seen and seen[0]["authorization"] == f"Bearer {KEY}"
    assert (ws.feature_data / "item_reasoning.parquet").read_bytes() == before["item_reasoning.parquet"]


# -------------------------------------------------------------------------------------------- secrets
def test_an_error_body_echoing_the_key_is_stored_redacted(ws, monkeypatch):
    _no_env_keys(monkeypatch)
    monkeypatch.setenv("RGCD_TEACHER_API_KEY", KEY)
    with scripted_endpoint(400) as (base_url, _):
        report = reason(ws, _openai(base_url), show_progress=False)
    assert report.rejected == 4
    stored = pl.read_parquet(ws.quarantine_table("pair_reasoning"))
    text = json.dumps(stored.select("raw_text", "reason").rows())
    assert KEY not in text and "0123456789abcdef" not in text and "Bearer [REDACTED]" in text, text
    cache = (ws.models / "teacher" / "answers.sqlite").read_bytes()
    assert KEY.encode() not in cache


def test_openai_api_key_is_honoured_and_no_placeholder_key_is_ever_sent(ws, monkeypatch):
    _no_env_keys(monkeypatch)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with scripted_endpoint() as (base_url, seen):
        reason(ws, _openai(base_url, max_pairs=1), show_progress=False)
    assert {r["authorization"] for r in seen} == {f"Bearer {KEY}"}
    monkeypatch.setenv("RGCD_TEACHER_API_KEY", "sk-first-choice-0000000")  # read first when set
    with scripted_endpoint() as (base_url, seen):
        reason(ws, _openai(base_url, max_pairs=1, model="other"), show_progress=False)
    assert {r["authorization"] for r in seen} == {"Bearer sk-first-choice-0000000"}
    _no_env_keys(monkeypatch)
    with scripted_endpoint() as (base_url, seen):
        reason(ws, _openai(base_url, max_pairs=1, model="third"), show_progress=False)
    assert seen and {r["authorization"] for r in seen} == {None}  # no header, not "Bearer unset"
