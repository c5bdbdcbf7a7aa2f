"""Ingest: contract refusals, quarantine reasons, counts, idempotence, day partitions."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import tiny_raw
from click.testing import CliRunner
from tiny_raw import plays as _plays
from tiny_raw import sessions as _sessions

from rgcd.cli import cli
from rgcd.config import IngestConfig, Workspace
from rgcd.transforms.contract import FILES, ingest_order
from rgcd.transforms.ingest import ContractError, ingest
from rgcd.transforms.raw_io import write_raw

DAY1 = datetime(2026, 3, 1, 8, 0, 0)
DAY2 = datetime(2026, 3, 2, 9, 30, 0)
SMALL = IngestConfig(batch_rows=4)  # several batches even in a tiny world


def _dimensions(folder: Path) -> None:
    write_raw(folder, "user_id_set", pl.DataFrame({"user_id": [1, 2, 3, 4]}))
    write_raw(folder, "author_profile", tiny_raw.author_profile())
    write_raw(folder, "photo_meta", pl.DataFrame({
        "photo_id": [10, 11, 12], "author_id": [100, 101, 100], "duration": [15_000, 30_000, 9_000],
        "display_type": [1, 1, 2], "cover_title": ["a", "b", ""], "video_texts": ["x", "y", "z"]}))
    write_raw(folder, "photo_tag", tiny_raw.photo_tag())
    write_raw(folder, "live_room_meta", pl.DataFrame({
        "live_id": [900, 901], "author_id": [101, 101], "live_name": ["room", ""],
        "start_timestamp": [DAY1 - timedelta(hours=1), DAY1],
        "end_timestamp": [DAY2 + timedelta(hours=12), None], "live_duration": [40 * 3600_000, None]}))


def _world(folder: Path, day: datetime = DAY1, dims: bool = True) -> Path:
    if dims:
        _dimensions(folder)
    write_raw(folder, "photo_play", _plays(day, [1, 2, 3], [10, 11, 12]))
    write_raw(folder, "live_interaction", _sessions(day, [1, 2, 3, 4]))
    return folder


def _lake_bytes(ws: Workspace) -> dict[str, bytes]:
    return {str(p.relative_to(ws.root)): p.read_bytes()
            for p in sorted([*ws.lake.rglob("*"), *ws.quarantine.rglob("*")]) if p.is_file()}


def _lake(ws: Workspace, stem: str) -> pl.DataFrame:
    return pl.read_parquet(ws.lake_table(stem) / "**" / "*.parquet", hive_partitioning=False)


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


def test_clean_world_lands_whole_with_lake_types(tmp_path, ws):
    report = ingest(_world(tmp_path / "raw"), ws, SMALL)
    assert report.quarantined == 0
    assert report.files["photo_play"].read == 9 and report.files["photo_play"].accepted == 9
    assert set(report.skipped) == {f.stem for f in FILES if not f.required}
    plays = pq.read_schema(next(ws.lake_table("photo_play").rglob("*.parquet")))
    assert str(plays.field("enter_timestamp").type) == "timestamp[ms, tz=UTC]"
    assert str(plays.field("user_id").type) == "int64"
    sessions = _lake(ws, "live_interaction")
    assert sessions.schema["live_play_start_timestamp"] == pl.Datetime("ms", "UTC")
    # the CSV's millisecond datetime strings survive to the millisecond
    assert sessions.get_column("live_play_start_timestamp").dt.millisecond().unique().to_list() == [456]
    assert (ws.lake_table("photo_play") / "event_date=2026-03-01" / "part-0.parquet").is_file()
    assert (ws.lake_table("photo_meta") / "part-0.parquet").is_file()
    assert not list(ws.quarantine.glob("*.parquet"))


def test_every_kind_of_bad_row_is_quarantined_with_its_reason(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    plays = _plays(DAY1, [1, 2], [10, 11]).with_columns(pl.col("user_id").cast(pl.Int64))
    bad_plays = pl.concat([
        plays,
        plays.head(1).with_columns(pl.lit(None, pl.Int64).alias("user_id")),       # missing id
        plays.head(1).with_columns(pl.lit(77, pl.Int64).alias("photo_id")),                  # unknown photo
        plays.head(1).with_columns((pl.col("enter_timestamp") - timedelta(hours=1))
                                   .alias("leave_timestamp")),                     # end before start
        plays.head(1).with_columns(pl.lit(None, pl.Datetime("us")).alias("enter_timestamp")),
        plays.head(1),                                                             # duplicate key
    ])
    write_raw(raw, "photo_play", bad_plays)
    sessions = _sessions(DAY1, [1, 2, 3]).with_columns(pl.col("live_play_start_timestamp")
                                                       .dt.strftime("%Y-%m-%d %H:%M:%S%.3f"))
    bad_sessions = pl.concat([
        sessions,
        sessions.head(1).with_columns(pl.lit("yesterday-ish").alias("live_play_start_timestamp")),
        sessions.head(1).with_columns(pl.lit(-5, pl.Int64).alias("play_duration")),
        sessions.head(1).with_columns(pl.lit(4242, pl.Int64).alias("live_id")),
        sessions.head(1).with_columns(pl.lit(99, pl.Int64).alias("user_id")),
    ])
    write_raw(raw, "live_interaction", bad_sessions)

    report = ingest(raw, ws, SMALL)

    q_plays = pl.read_parquet(ws.quarantine_table("photo_play"))
    assert sorted(q_plays.get_column("reason").to_list()) == sorted([
        "missing user_id", "unknown photo_id (not in photo_meta)", "end before start",
        "missing enter_timestamp", "duplicate key (user_id, photo_id, enter_timestamp)"])
    q_sessions = pl.read_parquet(ws.quarantine_table("live_interaction"))
    assert sorted(q_sessions.get_column("reason").to_list()) == sorted([
        "unparsable live_play_start_timestamp", "negative play_duration",
        "unknown live_id (not in live_room_meta)", "unknown user_id (not in user_id_set)"])
    # the original value is kept (as text), with where it came from and when
    assert "yesterday-ish" in q_sessions.get_column("live_play_start_timestamp").to_list()
    assert q_sessions.get_column("source_row").to_list() == [3, 4, 5, 6]
    assert q_plays.schema["ingested_at"] == pl.Datetime("ms", "UTC")
    assert q_plays.get_column("source").str.ends_with("photo_play.parquet").all()

    for stem in ("photo_play", "live_interaction"):
        counts = report.files[stem]
        lake_rows = _lake(ws, stem).height
        quarantined = pl.read_parquet(ws.quarantine_table(stem)).height
        assert counts.read == counts.accepted + counts.quarantined
        assert (counts.accepted, counts.quarantined) == (lake_rows, quarantined)
    assert report.files["photo_play"].read == bad_plays.height
    assert report.files["live_interaction"].read == bad_sessions.height


def test_bad_dimension_rows_and_children_of_quarantined_parents(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    write_raw(raw, "photo_meta", pl.DataFrame({
        "photo_id": [10, 11, 12], "author_id": [100, 101, 100], "duration": [15_000, 30_000, -1],
        "display_type": [1, 1, 2], "cover_title": ["a", "b", ""], "video_texts": ["x", "y", "z"]}))
    write_raw(raw, "live_room_meta", pl.DataFrame({
        "live_id": [900, 901], "author_id": [101, 101], "live_name": ["room", ""],
        "start_timestamp": [DAY1, DAY1], "end_timestamp": [DAY1 - timedelta(hours=1), None],
        "live_duration": [None, None]}))
    report = ingest(raw, ws, SMALL)
    assert pl.read_parquet(ws.quarantine_table("photo_meta")).get_column("reason").to_list() == [
        "negative duration"]
    assert pl.read_parquet(ws.quarantine_table("live_room_meta")).get_column("reason").to_list() == [
        "end before start"]
    # children check against the parent's accepted keys: photo 12 and live 900 are unknown now
    q_tags = pl.read_parquet(ws.quarantine_table("photo_tag"))
    assert q_tags.get_column("photo_id").to_list() == ["12"]
    assert report.files["photo_play"].reasons["unknown photo_id (not in photo_meta)"] == 3
    assert report.files["live_interaction"].reasons["unknown live_id (not in live_room_meta)"] == 2


def test_epoch_ms_integers_are_accepted_as_times(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    plays = _plays(DAY1, [1, 2], [10]).with_columns(
        pl.col("enter_timestamp").dt.epoch("ms"), pl.col("leave_timestamp").dt.epoch("ms"))
    write_raw(raw, "photo_play", plays)
    sessions = _sessions(DAY1, [1]).with_columns(pl.col("live_play_start_timestamp").dt.epoch("ms"))
    write_raw(raw, "live_interaction", sessions)
    report = ingest(raw, ws, SMALL)
    assert report.quarantined == 0
    lake = _lake(ws, "photo_play").sort("user_id")
    assert lake.get_column("enter_timestamp").to_list()[0].replace(tzinfo=None) == DAY1 + timedelta(
        milliseconds=123)
    starts = _lake(ws, "live_interaction").get_column("live_play_start_timestamp")
    assert starts.dt.millisecond().item() == 456


def test_csv_datetimes_without_milliseconds_are_tolerated(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    sessions = _sessions(DAY1, [1]).with_columns(
        pl.col("live_play_start_timestamp").dt.strftime("%Y-%m-%d %H:%M:%S"))
    write_raw(raw, "live_interaction", sessions)
    assert ingest(raw, ws, SMALL).quarantined == 0


def test_csv_values_in_tolerated_spellings_are_parsed(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    sessions = _sessions(DAY1, [1, 2, 3, 4, 1]).with_columns(pl.all().cast(pl.String))
    start = DAY1 + timedelta(milliseconds=456)
    tolerated = {
        "live_play_start_timestamp": [f"{start:%Y-%m-%dT%H:%M:%S}.456",       # ISO 'T'
                                      str(int(start.timestamp() * 1000) + 60_000),  # epoch ms text
                                      *[f"{start:%Y-%m-%d %H:%M:%S}.456"] * 3],
        "like_cnt": ["2.0", " 7 ", "NULL", "1.5", "0"],  # float spelling, padding; NULL; not an int
        "user_id": ["1", "2", "3", "4", "NA"],
    }
    sessions = sessions.with_columns(*[pl.Series(k, v) for k, v in tolerated.items()])
    write_raw(raw, "live_interaction", sessions)
    report = ingest(raw, ws, SMALL)
    quarantine = pl.read_parquet(ws.quarantine_table("live_interaction")).sort("source_row")
    assert quarantine.select("source_row", "reason").rows() == [
        (2, "missing like_cnt"), (3, "unparsable like_cnt"), (4, "missing user_id")]
    lake = _lake(ws, "live_interaction").sort("user_id")
    assert lake.get_column("like_cnt").to_list() == [2, 7]
    assert lake.get_column("live_play_start_timestamp").dt.second().to_list() == [0, 0]
    assert lake.get_column("live_play_start_timestamp").dt.minute().to_list() == [0, 1]
    assert report.files["live_interaction"].read == 5


def test_malformed_csv_lines_and_nan_integers_are_quarantined(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    path = write_raw(raw, "live_interaction", _sessions(DAY1, [1, 2]))
    with path.open("a") as fh:
        fh.write("1,101,900\n")  # a truncated line: 3 fields instead of 20
    plays = _plays(DAY1, [1, 2], [10]).with_columns(pl.col("like_status_type").cast(pl.Float64))
    write_raw(raw, "photo_play", plays.with_columns(
        pl.when(pl.col("user_id") == 2).then(float("nan")).otherwise(pl.col("like_status_type"))
        .alias("like_status_type")))
    report = ingest(raw, ws, SMALL)
    q = pl.read_parquet(ws.quarantine_table("live_interaction"))
    assert q.select("raw_line", "reason").rows() == [
        ("1,101,900", "malformed CSV line (3 fields, header has 20)")]
    assert report.files["live_interaction"].as_tuple() == (3, 2, 1)
    assert pl.read_parquet(ws.quarantine_table("photo_play")).get_column("reason").to_list() == [
        "missing like_status_type"]
    assert _lake(ws, "photo_play").get_column("like_status_type").dtype == pl.Int64


def test_reingesting_the_same_folder_leaves_lake_and_quarantine_byte_equal(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    plays = _plays(DAY1, [1, 2, 3], [10, 11])
    write_raw(raw, "photo_play", pl.concat([plays, plays.head(2), plays.head(1).with_columns(
        pl.lit(None, pl.Int64).alias("photo_id"))]))  # duplicates and a bad row: both paths
    first = ingest(raw, ws, SMALL)
    before = _lake_bytes(ws)
    second = ingest(raw, ws, SMALL)
    assert _lake_bytes(ws) == before
    assert first.as_json() == second.as_json()
    assert not (ws.root / ".ingest-staging").exists()


def test_an_interrupted_ingest_leaves_no_half_written_part(tmp_path, ws, monkeypatch):
    import rgcd.transforms.ingest as ingest_module

    raw = _world(tmp_path / "raw")
    ingest(raw, ws, SMALL)
    before = _lake_bytes(ws)
    write_raw(raw, "photo_play", _plays(DAY1, [1, 2, 3, 4], [10, 11, 12]))  # new data, same days
    real_check, calls = ingest_module._check, []

    def crash_midway(frame, source, parents):
        calls.append(source.spec.stem)
        if calls.count("photo_play") == 2:  # the second batch of photo_play
            raise KeyboardInterrupt
        return real_check(frame, source, parents)

    monkeypatch.setattr(ingest_module, "_check", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        ingest(raw, ws, SMALL)
    assert _lake_bytes(ws) == before
    assert not (ws.root / ".ingest-staging").exists()
    monkeypatch.setattr(ingest_module, "_check", real_check)
    assert ingest(raw, ws, SMALL).files["photo_play"].accepted == 12


def test_same_rows_from_a_copy_elsewhere_are_not_duplicated(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    ingest(raw, ws, SMALL)
    rows = {stem: _lake(ws, stem).sort(pl.all()) for stem in ("photo_play", "live_interaction", "photo_meta")}
    copy = tmp_path / "copy"
    shutil.copytree(raw, copy)
    ingest(copy, ws, IngestConfig(batch_rows=1000))  # other batch boundaries, same rows
    for stem, frame in rows.items():
        assert _lake(ws, stem).sort(pl.all()).equals(frame), stem


def _with_a_bad_play(folder: Path, day: datetime) -> None:
    plays = _plays(day, [1, 2, 3], [10, 11, 12])
    write_raw(folder, "photo_play", pl.concat([plays, plays.head(1).with_columns(
        pl.lit(None, pl.Int64).alias("photo_id"))]))


def test_a_second_day_adds_its_partitions_and_leaves_the_first_days_alone(tmp_path, ws):
    _with_a_bad_play(_world(tmp_path / "day1"), DAY1)
    ingest(tmp_path / "day1", ws, SMALL)
    day1 = {k: v for k, v in _lake_bytes(ws).items() if "event_date=2026-03-01" in k}
    assert day1
    day2 = _world(tmp_path / "day2", day=DAY2, dims=False)
    _dimensions(day2)  # the next export repeats the dimensions: upserted, not duplicated
    _with_a_bad_play(day2, DAY2)
    ingest(day2, ws, SMALL)
    after = _lake_bytes(ws)
    assert {k: v for k, v in after.items() if "event_date=2026-03-01" in k} == day1
    assert any("event_date=2026-03-02" in k for k in after)
    assert _lake(ws, "photo_play").height == 18
    assert _lake(ws, "photo_meta").height == 3
    # each folder's quarantined rows stay, and a rerun of the second leaves everything as it was
    sources = pl.read_parquet(ws.quarantine_table("photo_play")).get_column("source").to_list()
    assert sorted(Path(s).parent.name for s in sources) == ["day1", "day2"]
    ingest(day2, ws, SMALL)
    assert _lake_bytes(ws) == after


def test_missing_column_exits_2_naming_file_and_column(tmp_path):
    raw = _world(tmp_path / "raw")
    write_raw(raw, "photo_play", _plays(DAY1, [1], [10]).drop("enter_timestamp"))
    res = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "ingest", str(raw)])
    assert res.exit_code == 2
    assert "photo_play.parquet" in res.output and "enter_timestamp" in res.output
    assert not list((tmp_path / "ws" / "lake").iterdir())  # refused before anything was written


def test_missing_required_file_is_refused_and_optional_files_are_skipped(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    (raw / "photo_tag.csv").unlink()
    with pytest.raises(ContractError, match="photo_tag.csv"):
        ingest(raw, ws, SMALL)
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "ingest", str(raw)])
    assert res.exit_code == 2 and "photo_tag.csv" in res.output


def test_json_output_shape(tmp_path):
    raw = _world(tmp_path / "raw")
    write_raw(raw, "live_comment", pl.DataFrame({
        "live_stream_id": [900, 900, 5], "user_id": [1, 2, 1], "author_id": [101, 101, 101],
        "content": ["hi", "wow,\nnice", "?"], "comment_ts": [DAY1, DAY1 + timedelta(seconds=1), DAY1]}))
    res = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "ingest", str(raw), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert list(out) == ["files"]
    present = [f.stem for f in ingest_order() if (raw / f.filename).exists()]
    assert list(out["files"]) == present
    for counts in out["files"].values():
        assert set(counts) == {"read", "accepted", "quarantined"}
        assert counts["read"] == counts["accepted"] + counts["quarantined"]
    assert out["files"]["live_comment"] == {"read": 3, "accepted": 2, "quarantined": 1}


def test_a_later_export_upserts_dimensions_and_late_events_by_key(tmp_path, ws):
    ingest(_world(tmp_path / "day1"), ws, SMALL)
    later = tmp_path / "later"
    _dimensions(later)
    write_raw(later, "photo_meta", pl.DataFrame({  # photo 10 changed, photo 13 new, 11 and 12 absent
        "photo_id": [10, 13], "author_id": [100, 101], "duration": [16_000, 5_000],
        "display_type": [1, 1], "cover_title": ["a2", "d"], "video_texts": ["x", "w"]}))
    late = _plays(DAY1, [1], [10]).with_columns(pl.lit(1, pl.Int64).alias("like_status_type"))
    write_raw(later, "photo_play", pl.concat([late, _plays(DAY2, [4], [13])]))
    write_raw(later, "live_interaction", _sessions(DAY2, [4]))
    report = ingest(later, ws, SMALL)
    assert report.quarantined == 0
    photos = _lake(ws, "photo_meta").sort("photo_id")
    assert photos.get_column("photo_id").to_list() == [10, 11, 12, 13]
    assert photos.filter(pl.col("photo_id") == 10).get_column("cover_title").item() == "a2"
    plays = _lake(ws, "photo_play")
    assert plays.height == 9 + 1  # the late day-1 play replaced its row; one new day-2 play
    replaced = plays.filter((pl.col("user_id") == 1) & (pl.col("photo_id") == 10))
    assert replaced.get_column("like_status_type").to_list() == [1]


def test_a_csv_that_is_not_utf8_exits_2_naming_the_file_and_leaves_its_table_alone(tmp_path):
    raw = _world(tmp_path / "raw")
    path = raw / "live_interaction.csv"
    header, first, rest = path.read_bytes().split(b"\n", 2)
    path.write_bytes(b"\n".join([header, first.replace(b"feed", b"caf\xe9"), rest]))  # latin-1 'é'
    res = CliRunner().invoke(cli, ["--workspace", str(tmp_path / "ws"), "ingest", str(raw)])
    assert res.exit_code == 2, res.output
    assert "live_interaction.csv is not UTF-8" in res.output and "iconv" in res.output
    assert not (tmp_path / "ws" / "lake" / "live_interaction").exists()
    assert not (tmp_path / "ws" / ".ingest-staging").exists()


def test_optional_live_files_with_an_unknown_author_are_quarantined(tmp_path, ws):
    raw = _world(tmp_path / "raw")
    write_raw(raw, "live_comment", pl.DataFrame({
        "live_stream_id": [900, 900], "user_id": [1, 2], "author_id": [101, 555],
        "content": ["hi", "?"], "comment_ts": [DAY1, DAY1]}))
    write_raw(raw, "live_show", pl.DataFrame({
        "live_id": [900, 901], "user_id": [1, 1], "author_id": [555, 101],
        "show_timestamp": [DAY1, DAY1]}))
    report = ingest(raw, ws, SMALL)
    for stem in ("live_comment", "live_show"):
        assert report.files[stem].as_tuple() == (2, 1, 1), stem
        reasons = pl.read_parquet(ws.quarantine_table(stem)).get_column("reason").to_list()
        assert reasons == ["unknown author_id (not in author_profile)"], stem
