"""Publishing: idempotent, rollback, a killed publish leaves readers on the old version."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import serving_world as w
from milvus_backends import clear_database

from rgcd.config import Workspace
from rgcd.embeddings.milvus_store import RoomVectors, collection_name
from rgcd.embeddings.publish import PublishError, publish, rollback, run_stage
from rgcd.embeddings.retrieval import Retriever, VersionMismatch

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _empty_database(settings):
    """On the server, each test starts from an empty database (a Lite file is new per test)."""
    clear_database(settings)


@pytest.fixture
def world(tmp_path, settings):
    # per test: publishing changes the world (alias, versions, online rows), so no test may see
    # another's publishes whatever the order
    return w.build(tmp_path / "publish", settings)


def _state(ws, settings):
    store = RoomVectors.connect(ws, settings)
    try:
        published = [(p.collection, p.published_rows, p.published_at) for p in store.published()]
        return store.alias_target(), published
    finally:
        store.close()


def test_stage_is_skipped_without_vectors(tmp_path, settings):
    line = run_stage(Workspace(tmp_path).ensure(), settings)
    assert line.startswith("skipped: ") and "item_embeddings.parquet" in line


def test_publish_is_idempotent_and_validated(world, settings):
    first = publish(world, settings)
    assert first.changed and first.rooms == 40 and first.on_air == 14
    before = _state(world, settings)
    recent = (world.feature_data / "user_recent_videos.parquet").read_bytes()
    again = publish(world, settings)
    assert not again.changed and again.one_line().startswith("unchanged v1")
    assert _state(world, settings) == before  # same collection, same rows, same publication time
    assert (world.feature_data / "user_recent_videos.parquet").read_bytes() == recent
    assert before[0] == collection_name("v1")


def test_new_version_then_rollback_moves_alias_and_online_vectors(world, settings):
    publish(world, settings)
    w.write_vectors(world, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
    report = publish(world, settings)
    assert report.model_version == "v2" and report.previous == collection_name("v1")
    retriever = Retriever(world, settings)
    try:
        assert retriever.for_user(1, at=w.T0).model_version == "v2"
        assert retriever.for_item("photo:4", at=w.T0).model_version == "v2"
    finally:
        retriever.close()
    back = rollback(world, settings)
    assert back.model_version == "v1" and back.collection == collection_name("v1")
    retriever = Retriever(world, settings)
    try:  # the online vectors went back with the alias: no version mismatch after a rollback
        assert retriever.for_user(1, at=w.T0).model_version == "v1"
        assert retriever.for_item("photo:4", at=w.T0).source == "item_vector"
    finally:
        retriever.close()
    with pytest.raises(PublishError, match="no earlier published version"):
        rollback(world, settings)
    assert publish(world, settings, "v2").model_version == "v2"  # forward again, collection reused


def _published_v1_v2(world, settings) -> None:
    publish(world, settings)
    w.write_vectors(world, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
    publish(world, settings, "v2")


def test_version_mismatch_is_an_error(world, settings):
    _published_v1_v2(world, settings)
    w.write_vectors(world, "v3", seed=2, created=datetime.now(UTC) + timedelta(seconds=2), users=True)
    from rgcd.featurestore.store import materialize_views

    materialize_views(world, settings, ["item_embeddings", "user_embeddings"])  # v3 online, v2 in Milvus
    retriever = Retriever(world, settings)
    try:
        with pytest.raises(VersionMismatch, match="'v3'.*'v2'"):
            retriever.for_user(1, at=w.T0)
        with pytest.raises(VersionMismatch):
            retriever.for_item("photo:4", at=w.T0)
    finally:
        retriever.close()
    assert publish(world, settings).model_version == "v3"


def test_keep_versions_drops_the_oldest(world, settings):
    two = settings.retrieval.model_copy(update={"keep_versions": 2})
    small = settings.model_copy(update={"retrieval": two})
    _published_v1_v2(world, small)
    w.write_vectors(world, "v3", seed=2, created=datetime.now(UTC) + timedelta(seconds=2))
    publish(world, small)
    target, published = _state(world, small)
    assert target == collection_name("v3")
    assert [c for c, _, _ in published] == [collection_name("v2"), collection_name("v3")]


KILL = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    from rgcd.embeddings import milvus_store, publish
    from rgcd.config import Settings, Workspace
    def killed(self, name):  # the process dies where the alias would move
        os.kill(os.getpid(), signal.SIGKILL)
    milvus_store.RoomVectors.switch_alias = killed
    settings = Settings.model_validate_json({settings!r})
    publish.publish(Workspace({ws!r}), settings)
""")


@pytest.mark.slow
def test_a_publish_killed_before_the_alias_switch_leaves_readers_on_the_old_version(tmp_path, settings):
    ws = w.build(tmp_path / "ws", settings)
    publish(ws, settings)
    w.write_vectors(ws, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
    code = KILL.format(tests=str(Path(__file__).parent), ws=str(ws.root), settings=settings.model_dump_json())
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr
    store = RoomVectors.connect(ws, settings)
    try:
        assert store.alias_target() == collection_name("v1")
        assert store.current().model_version == "v1"
    finally:
        store.close()
    # the online store already holds v2 (written first): a user read searches v2's collection, built
    # and validated before the kill (never a mixed answer, never an error while a publish is under
    # way); a rerun of publish completes the switch
    retriever = Retriever(ws, settings)
    try:
        answer = retriever.for_user(1, at=w.T0)
        assert answer.model_version == "v2" and answer.candidates
        assert retriever.published().model_version == "v1"
    finally:
        retriever.close()
    assert publish(ws, settings).model_version == "v2"


def test_rooms_started_since_stage_2_are_kept_for_the_next_publish(world, settings):
    """A room that went on air after a publish stays in the next version's rooms when it can be
    encoded (tests/test_pipeline.py, with a real student); without a student the publish says it
    left the room out, rather than dropping it silently or reusing another version's vectors."""
    from rgcd.embeddings.rooms import start_rooms

    publish(world, settings)
    retriever = Retriever(world, settings)
    vector = w.unit([1.0] * w.DIM)
    try:
        start_rooms(retriever, [{"live_id": 8003, "author_id": 507, "transferable": vector,
                                 "residual": w.unit([1.0] * 4), "retrieval": vector, "model_version": "v1"}])
    finally:
        retriever.close()
    w.write_vectors(world, "v2", seed=1, created=datetime.now(UTC) + timedelta(seconds=1))
    report = publish(world, settings)
    assert report.model_version == "v2" and report.rooms == 40
    assert "1 rooms started since stage 2 left out" in report.one_line()
    assert "models/student/model is missing" in report.one_line()


def test_publish_in_windows_reads_schedules_per_window_and_publishes_every_room(world, settings, monkeypatch):
    """Windows of 7 rooms (40 rooms: 6 windows): Feast is asked for 7 schedules at most at a time, and
    the collection is what one window would give (every room, the on-air ones in their partition)."""
    import rgcd.embeddings.publish as pub

    asked: list[int] = []
    schedule = pub._schedule

    def counting(ws, s, item_ids):
        asked.append(len(item_ids))
        return schedule(ws, s, item_ids)

    monkeypatch.setattr(pub, "_schedule", counting)
    small = settings.model_copy(update={"retrieval": settings.retrieval.model_copy(
        update={"publish_batch_rooms": 7, "insert_batch": 3})})
    report = publish(world, small)
    assert report.changed and report.rooms == 40 and report.on_air == 14
    assert max(asked) <= 7 and sum(asked) == 40 + report.without_schedule
    assert not list(world.feature_data.glob(".publish_rooms_*"))  # the staging file is removed
    store = RoomVectors.connect(world, small)
    try:
        assert store.count(report.collection) == 40 and store.count(report.collection, "on_air") == 14
    finally:
        store.close()
