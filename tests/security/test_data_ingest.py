"""Hostile raw data at ingest (issue 25): paths that name files outside the data, times in the wrong
unit, text that is not UTF-8, columns the contract does not know, a header that names a column twice.

Each test fails on the ingest before issue 25: the covers passed, epoch seconds landed on 1970-01-21
with exit 0, one bad title refused the whole run, extra columns vanished without a word and a repeated
header name was accepted.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from data_world import DAY, lake_and_quarantine, photo_meta, plays, png, raw_world, sessions

from rgcd.cli import cli
from rgcd.config import IngestConfig, Workspace
from rgcd.transforms.covers import REFUSED_LARGE, REFUSED_MISSING, REFUSED_NOT_IMAGE, REFUSED_OUTSIDE
from rgcd.transforms.ingest import ContractError, ingest
from rgcd.transforms.raw_io import write_raw


@pytest.fixture
def ws(tmp_path) -> Workspace:
    return Workspace(tmp_path / "ws").ensure()


def _quarantine(ws: Workspace, stem: str) -> pl.DataFrame:
    return pl.read_parquet(ws.quarantine_table(stem))


def _lake(ws: Workspace, stem: str) -> pl.DataFrame:
    return pl.read_parquet(ws.lake_table(stem) / "**" / "*.parquet", hive_partitioning=False)


# --------------------------------------------------------------------------------------------- covers
def test_cover_paths_outside_the_data_or_not_images_are_quarantined_with_the_reason(tmp_path, ws):
    raw = tmp_path / "raw"
    good = png(raw / "covers" / "10.png")
    (raw / "covers" / "notes.png").write_text("not an image at all")  # an image's name, not its bytes
    big = png(raw / "covers" / "big.png", (64, 64))
    photos = photo_meta().vstack(photo_meta().with_columns(pl.col("photo_id") + 10)).with_columns(
        cover_path=pl.Series([str(good), "/etc/hostname", "../../../../../../etc/passwd",
                              str(raw / "covers" / "notes.png"), str(big), str(raw / "covers" / "gone.png")]))
    raw_world(raw, photos=photos)
    report = ingest(raw, ws, IngestConfig(cover_max_bytes=big.stat().st_size - 1))
    counts = report.files["photo_meta"]
    assert counts.as_tuple() == (6, 1, 5)  # read = accepted + quarantined
    lake = _lake(ws, "photo_meta")
    assert lake.get_column("cover_path").to_list() == [str(good)]
    reasons = dict(_quarantine(ws, "photo_meta").select("photo_id", "reason").iter_rows())
    assert reasons == {"11": REFUSED_OUTSIDE, "12": REFUSED_OUTSIDE, "20": REFUSED_NOT_IMAGE,
                       "21": REFUSED_LARGE, "22": REFUSED_MISSING}
    # the plays of the quarantined videos are quarantined too (unknown photo), so nothing downstream
    # can name them
    assert report.files["photo_play"].quarantined == 6


def test_a_symlink_inside_the_data_folder_that_points_outside_is_refused(tmp_path, ws):
    raw = tmp_path / "raw"
    (raw / "covers").mkdir(parents=True)
    outside = png(tmp_path / "elsewhere" / "secret.png")
    (raw / "covers" / "link.png").symlink_to(outside)
    raw_world(raw, photos=photo_meta(cover_path=[str(raw / "covers" / "link.png"), None, "  "]))
    report = ingest(raw, ws, IngestConfig())
    assert report.files["photo_meta"].as_tuple() == (3, 2, 1)
    assert _quarantine(ws, "photo_meta").get_column("reason").to_list() == [REFUSED_OUTSIDE]


def test_the_cover_check_refuses_devices_folders_odd_names_and_reads_only_images(tmp_path):
    from rgcd.transforms.covers import CoverPolicy, CoverRefused, read_cover

    anywhere = CoverPolicy.of(tmp_path, [Path("/")], 1000)
    for value in ("/dev/zero", "/proc/self/environ", str(tmp_path), f"{tmp_path}/a\x00b", "x" * 5000):
        assert anywhere.problem(value) in (REFUSED_MISSING, REFUSED_NOT_IMAGE), value
    cover = png(tmp_path / "c.png")
    assert read_cover("c.png", anywhere) == (cover.read_bytes(), "image/png")  # relative: to the base
    with pytest.raises(CoverRefused, match="outside"):
        read_cover(str(cover), CoverPolicy.of(tmp_path, [tmp_path / "elsewhere"], 1000))


# ---------------------------------------------------------------------------------------- plausible times
def _epoch_seconds_plays() -> pl.DataFrame:
    frame = plays()
    return frame.with_columns(pl.col(c).dt.epoch("s") for c in ("enter_timestamp", "leave_timestamp"))


def test_parquet_times_in_epoch_seconds_are_refused_naming_file_column_and_unit(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    ingest(raw, ws, IngestConfig())
    before = lake_and_quarantine(ws.root)
    _epoch_seconds_plays().write_parquet(raw / "photo_play.parquet")  # int64 seconds
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "ingest", str(raw)])
    said = " ".join(res.output.split())
    assert res.exit_code == 2, res.output
    assert "photo_play.parquet" in said and "enter_timestamp" in said and "epoch SECONDS" in said, said
    assert "multiply it by 1,000" in said and "plausible_from" in said, said
    assert lake_and_quarantine(ws.root) == before  # nothing written


def test_csv_times_in_epoch_seconds_text_are_refused(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    times = ("live_play_start_timestamp", "live_play_end_timestamp")
    frame = sessions().with_columns(pl.col(c).dt.epoch("s").cast(pl.String) for c in times)
    frame.write_csv(raw / "live_interaction.csv")
    with pytest.raises(ContractError) as err:
        ingest(raw, ws, IngestConfig())
    said = str(err.value)
    assert "live_interaction.csv" in said and "live_play_start_timestamp" in said and "epoch SECONDS" in said
    assert not ws.lake_table("live_interaction").exists()


def test_epoch_microseconds_are_named_as_such(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    plays().with_columns(pl.col(c).dt.epoch("us") for c in ("enter_timestamp", "leave_timestamp")) \
        .write_parquet(raw / "photo_play.parquet")
    with pytest.raises(ContractError, match="epoch MICROSECONDS"):
        ingest(raw, ws, IngestConfig())


def test_a_few_implausible_times_are_quarantined_row_by_row_and_the_window_is_configurable(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    frame = plays()
    stray = frame.head(1).with_columns(pl.col("photo_id").replace(10, 12),
                                       enter_timestamp=pl.lit(DAY.replace(year=1971)),
                                       leave_timestamp=pl.lit(DAY.replace(year=1971) + timedelta(seconds=9)))
    write_raw(raw, "photo_play", pl.concat([frame, stray]))
    report = ingest(raw, ws, IngestConfig())
    assert report.files["photo_play"].as_tuple() == (10, 9, 1)
    assert "implausible enter_timestamp" in _quarantine(ws, "photo_play").get_column("reason").item()
    # a window that excludes the whole world refuses it instead
    with pytest.raises(ContractError, match="outside the plausible window 2027-01-01"):
        ingest(raw, ws, IngestConfig.model_validate({"plausible_from": "2027-01-01"}))


# ------------------------------------------------------------------------------------ text and headers
def test_a_title_that_is_not_utf8_quarantines_its_row_naming_the_column(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    table = pq.read_table(raw / "photo_meta.parquet")
    titles = pa.array([b"a", b"caf\xe9 latin-1", b""], type=pa.binary()).view(pa.string())
    table = table.set_column(table.schema.get_field_index("cover_title"), "cover_title", titles)
    pq.write_table(table, raw / "photo_meta.parquet")
    report = ingest(raw, ws, IngestConfig())
    assert report.files["photo_meta"].as_tuple() == (3, 2, 1)
    row = _quarantine(ws, "photo_meta").row(0, named=True)
    assert row["reason"] == "cover_title is not UTF-8 text" and row["photo_id"] == "11"
    assert row["cover_title"].startswith("caf")  # kept, readable, with a replacement character


def test_columns_outside_the_contract_are_reported(tmp_path, ws):
    raw = raw_world(tmp_path / "raw", photos=photo_meta(uploader_ip=["1.2.3.4"] * 3, notes=["", "", ""]))
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "ingest", str(raw), "--json"])
    assert res.exit_code == 0, res.output
    assert '"dropped_columns": ["uploader_ip", "notes"]' in res.output, res.output
    report = ingest(raw, ws, IngestConfig())
    assert report.dropped == {"photo_meta": ["uploader_ip", "notes"]}
    assert "photo_meta: not in the contract, not ingested: uploader_ip, notes" in report.one_line()


def test_a_header_naming_a_column_twice_is_refused_naming_it(tmp_path, ws):
    raw = raw_world(tmp_path / "raw")
    path = raw / "live_interaction.csv"
    header, rest = path.read_text().split("\n", 1)
    path.write_text(header.replace("like_cnt", "share_cnt") + "\n" + rest)  # share_cnt twice
    with pytest.raises(ContractError, match="live_interaction.csv names the column share_cnt more than once"):
        ingest(raw, ws, IngestConfig())
    assert not ws.lake_table("live_interaction").exists()
