"""Retrieval over the rooms on air: U2I, I2I, fallbacks, reasons, errors; the CLI's JSON; rooms."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import serving_world as w
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.embeddings.publish import publish
from rgcd.embeddings.retrieval import BadQuery, Evidence, Retriever, UnknownQuery, explain


@pytest.fixture(scope="module")
def world(tmp_path_factory, settings):
    ws = w.build(tmp_path_factory.mktemp("retrieval"), settings)
    publish(ws, settings)
    w.write_config(ws, settings, default_k=10, cache_s=0.0)
    return ws


@pytest.fixture
def retriever(world, settings):
    r = Retriever(world, settings)
    yield r
    r.close()


def _on_air(item_id, at):
    start, end = w.room_interval(item_id)
    return start <= at and (end is None or at < end)


@pytest.mark.parametrize("hours", [-30, -10, -1, 0, 24 * 400])  # historical (ended rooms), at the cut, later
def test_every_candidate_is_on_air_at_the_asked_time(retriever, hours):
    at = w.T0 + timedelta(hours=hours)
    expected = {r for r in w.ROOMS if _on_air(r, at)}
    for answer in (retriever.for_user(3, at, 40), retriever.for_item("photo:5", at, 40)):
        got = {c.item_id for c in answer.candidates}
        assert got == expected  # k exceeds the rooms on air: exactly those, none other
        assert all(c.reason for c in answer.candidates)


def test_user_vector_finds_rooms_of_the_users_topic_with_a_reason(retriever):
    answer = retriever.for_user(1, w.T0, 3)  # user 1: topic 1 (Gaming, 'ranked match')
    assert answer.source == "user_vector" and answer.model_version == "v1"
    assert all(w.room_topic(c.item_id) == 1 for c in answer.candidates)
    reason = answer.candidates[0].reason
    assert "shares the key subject 'ranked match' with your recent short video photo:" in reason
    scores = [c.score for c in answer.candidates]
    assert scores == sorted(scores, reverse=True)


def test_fallbacks_say_which_they_took(retriever):
    recent = retriever.for_user(17, w.T0, 3)  # no vector, five photos of topic 1
    assert recent.source == "recent_short_videos"
    assert all(w.room_topic(c.item_id) == 1 for c in recent.candidates)
    popular = retriever.for_user(19, w.T0, 3)  # neither: the most popular rooms on air
    assert popular.source == "popular_on_air"
    scores = [c.score for c in popular.candidates]
    assert scores == sorted(scores, reverse=True)
    assert popular.candidates[0].reason.startswith("popular on air")


def test_i2i_and_rooms_without_teacher_knowledge(retriever):
    answer = retriever.for_item("photo:4", w.T0, 40)  # photo:4 is topic 0; live:1036 on air since T0 - 4 h
    by_id = {c.item_id: c for c in answer.candidates}
    assert by_id["live:1036"].reason.startswith("no teacher knowledge")  # rooms k >= 36 have none
    assert w.room_topic(answer.candidates[0].item_id) == 0


def test_errors(retriever):
    with pytest.raises(UnknownQuery, match="user 999"):
        retriever.for_user(999, w.T0)
    with pytest.raises(UnknownQuery, match="photo:77777"):
        retriever.for_item("photo:77777", w.T0)
    with pytest.raises(BadQuery, match="short video"):
        retriever.for_item("live:1000", w.T0)
    with pytest.raises(BadQuery, match="k=0"):
        retriever.for_user(1, w.T0, 0)


def test_a_collection_of_an_older_layout_is_refused_until_republished(world, settings, retriever):
    """Layouts before 3 recorded no oldest start (no lower bound on `at`) and kept ended rooms in one
    partition: readers refuse them, naming the command that rebuilds, instead of serving unbounded."""
    from rgcd.embeddings.milvus_store import LAYOUT, NotPublished

    published = retriever.published()
    client = retriever.rooms.client
    client.alter_collection_properties(published.collection, {"layout": "2"})
    try:
        with pytest.raises(NotPublished, match="layout 2.*rgcd publish"):
            retriever.for_user(1, w.T0)
        out = CliRunner().invoke(cli, ["-w", str(world.root), "retrieve", "--user", "1"])
        assert out.exit_code != 0 and "rgcd publish" in out.output and "Traceback" not in out.output
    finally:
        client.alter_collection_properties(published.collection, {"layout": LAYOUT})
    assert retriever.for_user(1, w.T0).candidates


def test_cli_json_and_exit_codes(world):
    run = CliRunner()
    out = run.invoke(cli, ["-w", str(world.root), "retrieve", "--user", "2", "--at", "2025-05-09T20:00:00Z",
                           "--k", "4", "--json"])
    assert out.exit_code == 0, out.output
    body = json.loads(out.stdout)
    assert list(body) == ["model_version", "query", "at", "source", "candidates"]
    assert body["query"] == "user:2" and body["at"] == "2025-05-09T20:00:00Z" and len(body["candidates"]) == 4
    assert set(body["candidates"][0]) == {"item_id", "author_id", "score", "reason"}
    bad = run.invoke(cli, ["-w", str(world.root), "retrieve", "--user", "999"])
    assert bad.exit_code == 2 and "not in the online store" in bad.output and "Traceback" not in bad.output
    assert run.invoke(cli, ["-w", str(world.root), "retrieve"]).exit_code == 2


def test_rooms_start_and_end_from_the_command_line(world, tmp_path):
    vector = w.topic_vector(2)  # topic 2: first for user 2
    room = {"live_id": 8001, "author_id": 505, "transferable": vector, "residual": [1.0, 0.0, 0.0, 0.0],
            "retrieval": vector, "model_version": "v1"}
    path = tmp_path / "rooms.json"
    path.write_text(json.dumps([room]))
    run = CliRunner()
    out = run.invoke(cli, ["-w", str(world.root), "rooms", "start", str(path)])
    assert out.exit_code == 0 and "precomputed vectors of v1" in out.output, out.output
    top = json.loads(run.invoke(cli, ["-w", str(world.root), "retrieve", "--user", "2", "--json"]).stdout)
    assert top["candidates"][0]["item_id"] == "live:8001"
    assert run.invoke(cli, ["-w", str(world.root), "rooms", "end", "live:8001"]).exit_code == 0
    top = json.loads(run.invoke(cli, ["-w", str(world.root), "retrieve", "--user", "2", "--json"]).stdout)
    assert "live:8001" not in [c["item_id"] for c in top["candidates"]]
    path.write_text("not json {")
    out = run.invoke(cli, ["-w", str(world.root), "rooms", "start", str(path)])
    assert out.exit_code == 2 and "JSON" in out.output


def test_a_room_going_on_air_reaches_live_schedule_and_the_log_for_the_next_publish(world, retriever):
    """rooms start pushes the room's interval to live_schedule online (its push source) and its
    vectors, retrieval included, to item_embeddings; rooms end pushes the end; both are logged."""
    from rgcd.embeddings.rooms import end_room, read_started, start_rooms

    vector = w.topic_vector(3)
    start = w.T0 + timedelta(hours=1)
    room = {"live_id": 8002, "author_id": 506, "start_timestamp": start.isoformat(), "live_name": "late show",
            "transferable": vector, "residual": [1.0, 0.0, 0.0, 0.0], "retrieval": vector,
            "model_version": "v1"}
    start_rooms(retriever, [room])
    schedule = ["live_schedule:author_id", "live_schedule:start_timestamp", "live_schedule:end_timestamp"]
    (row,) = retriever.online(schedule + ["item_embeddings:retrieval"], "item_id", ["live:8002"])
    assert row["live_schedule__author_id"] == 506 and row["live_schedule__end_timestamp"] is None
    assert row["live_schedule__start_timestamp"] == start
    assert row["item_embeddings__retrieval"] == pytest.approx(vector)
    end = start + timedelta(hours=2)
    assert end_room(retriever, "live:8002", end)
    (row,) = retriever.online(schedule, "item_id", ["live:8002"])
    assert row["live_schedule__end_timestamp"] == end
    logged = read_started(world).filter(item_id="live:8002").row(0, named=True)
    assert logged["live_name"] == "late show"
    assert (logged["start_timestamp"], logged["end_timestamp"]) == (start, end)
    assert not end_room(retriever, "live:8002", end)  # ended already


@pytest.mark.parametrize(("hours", "days"), [(-30, 1), (-23, 2), (-10, 1)])
def test_a_historical_request_searches_the_days_its_rooms_can_have_started_in(world, settings, hours, days):
    """Ended rooms sit in partitions by start day: a request at a past `at` searches `on_air` and the
    day(s) a room on air then can have started in (rooms last 2 h here), not the archive, and still
    finds every room on air then."""
    from rgcd.embeddings.milvus_store import RoomVectors, to_ms

    at = w.T0 + timedelta(hours=hours)
    store = RoomVectors.connect(world, settings)
    try:
        current = store.current()
        archive = [p for p in store.client.list_partitions(current.collection) if p.startswith("ended_")]
        assert len(archive) == 2  # the world's ended rooms started over two days
        partitions, _ = store._window(current, to_ms(at))
        assert partitions[0] == "on_air" and len(partitions) == 1 + days
        found = {h.item_id for h in store.popular(at, 1000)}
    finally:
        store.close()
    on_air = {r for r in w.ROOMS if w.room_interval(r)[0] <= at
              and (w.room_interval(r)[1] is None or w.room_interval(r)[1] > at)}
    assert found == on_air and len(on_air) > 1


def test_a_reason_names_the_strongest_shared_field_then_the_strongest_video():
    videos = [("photo:1", {"key_subject": "Cats", "content_theme": "pets", "vertical_domain": "animals"}),
              ("photo:2", {"key_subject": " dogs ", "content_theme": "Pets", "vertical_domain": ""}),
              ("photo:3", {"key_subject": "dogs", "content_theme": "", "vertical_domain": "animals"})]
    evidence = Evidence(videos)
    room = {"key_subject": "DOGS", "content_theme": "pets", "vertical_domain": "animals", "teacher_id": "t"}
    # the key subject beats the theme, and the first (newest) video holding it is named
    assert explain(room, evidence, "your recent short video", "transferable") == (
        "shares the key subject 'DOGS' with your recent short video photo:2 (teacher: t)")
    room = {"key_subject": "birds", "content_theme": "", "vertical_domain": "animals", "teacher_id": ""}
    assert explain(room, evidence, "the short video", None) == (
        "shares the vertical 'animals' with the short video photo:1")
    room = {"key_subject": "birds", "content_theme": "", "vertical_domain": "", "teacher_id": ""}
    assert explain(room, evidence, "the short video", "x") == (
        "a room about 'birds' (no vertical), close in the x space; no topic shared with the short videos "
        "the teacher knows")
    assert explain(room, Evidence([]), "the short video", None) == "a room about 'birds' (no vertical)"


@pytest.mark.parametrize("margin", [8, 0])  # 0: every search whose rooms differ runs again alone
def test_searches_batched_into_one_give_each_its_own_answer(retriever, monkeypatch, margin):
    """Searches sent as one multi-vector search (requests "now" ms apart) answer exactly as each alone:
    rooms on air at one search's time but not at another's never take its slots."""
    import dataclasses

    from rgcd.embeddings import milvus_store
    from rgcd.embeddings.milvus_store import Search, to_ms

    monkeypatch.setattr(milvus_store, "BATCH_MARGIN", margin)
    # every time counts as "now" (after the last end known), so all of them go to Milvus as one;
    # rooms live:1036 and live:1039 (on air, from T0 - 4 h and T0 - 1 h) separate the times
    published = dataclasses.replace(retriever.published(), ended_until=0)
    times = [w.T0 - timedelta(hours=5), w.T0, w.T0 - timedelta(hours=2)]
    searches = [Search(field, w.topic_vector(topic), to_ms(at), k, published)
                for field, topic, at, k in [("retrieval", 0, times[0], 14), ("retrieval", 0, times[1], 1),
                                            ("transferable", 1, times[2], 3), ("retrieval", 3, times[0], 2),
                                            ("retrieval", 3, times[1], 5), ("transferable", 1, times[0], 40)]]
    sent: list[int] = []
    search_group = retriever.rooms._search_group

    def counted(group, partitions):
        sent.append(len(group))
        return search_group(group, partitions)

    monkeypatch.setattr(retriever.rooms, "_search_group", counted)
    together = retriever.rooms.search_many(searches)
    # one Milvus search per field; with no margin, the search at T0 - 5 h for 14 rooms (12 on air then)
    # runs again alone
    assert sorted(sent) == ([2, 4] if margin else [1, 2, 4])
    alone = [retriever.rooms.search_many([s])[0] for s in searches]
    assert [[h.item_id for h in hits] for hits in together] == [[h.item_id for h in hits] for hits in alone]
    assert together[0][0].score == pytest.approx(alone[0][0].score)
    early = {h.item_id for h in together[0]}
    assert "live:1039" not in early and "live:1036" not in early and len(early) == 12  # on air at T0 - 5 h


def test_the_service_sends_concurrent_searches_together(retriever, monkeypatch):
    """While one search is in Milvus, the requests that reach their search wait and go as one; each
    gets the answer it would get alone."""
    import asyncio

    from rgcd.embeddings.search_batcher import SearchBatcher

    sizes: list[int] = []
    search_many = retriever.rooms.search_many

    def counted(searches):
        sizes.append(len(searches))
        return search_many(searches)

    monkeypatch.setattr(retriever.rooms, "search_many", counted)
    asks = [(u, w.T0 - timedelta(hours=h)) for u, h in [(1, 0), (2, 1), (3, 0), (5, 30), (6, 0), (17, 0)]]
    batcher = SearchBatcher(retriever, threaded=True, max_batch=4)

    async def ask_all():
        return await asyncio.gather(*(batcher.complete(retriever.plan_user(u, at, 5)) for u, at in asks),
                                    batcher.complete(retriever.plan_item("photo:4", w.T0, 5)))

    try:
        answers = asyncio.run(ask_all())
    finally:
        batcher.close()
    assert sizes == [1, 4, 2]  # the first at once; the rest, at most max_batch at a time, as it returned
    sizes.clear()
    alone = [retriever.for_user(u, at, 5) for u, at in asks] + [retriever.for_item("photo:4", w.T0, 5)]
    assert sizes == [1] * len(alone)
    def without_scores(answer):
        body = answer.as_json()
        return body | {"candidates": [c | {"score": None} for c in body["candidates"]]}

    # the same rooms, order and reasons; scores to float32's precision (a search of several vectors
    # may sum in another order)
    assert [without_scores(a) for a in answers] == [without_scores(a) for a in alone]
    assert [c.score for a in answers for c in a.candidates] == pytest.approx(
        [c.score for a in alone for c in a.candidates], abs=1e-5)
