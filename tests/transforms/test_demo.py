"""Invariants of the demo world at CI size: layout, encodings, keys, time order, cold start, signal."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rgcd.transforms.contract import BY_STEM, FILES, VECTOR_DIMS, Kind
from rgcd.transforms.demo import START, DemoSummary, generate

USERS, DAYS, SEED = 2_000, 14, 3
WINDOW_END = START.replace(tzinfo=None) + timedelta(days=DAYS)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, DemoSummary]:
    out = tmp_path_factory.mktemp("demo")
    return out, generate(out, users=USERS, days=DAYS, seed=SEED, show_progress=False)


def _read(folder: Path, stem: str) -> pl.DataFrame:
    """A raw file with typed columns (CSV datetimes parsed; epoch-ms as datetimes)."""
    spec = BY_STEM[stem]
    if spec.fmt == "parquet":
        return pl.read_parquet(folder / spec.filename)
    frame = pl.read_csv(folder / spec.filename, infer_schema=False)
    casts = []
    for col in spec.columns:
        c = pl.col(col.name)
        if col.kind is Kind.INT:
            casts.append(c.cast(pl.Int64))
        elif col.kind is Kind.DATETIME_STR:
            casts.append(c.str.to_datetime("%Y-%m-%d %H:%M:%S%.3f", time_unit="ms"))
        elif col.kind is Kind.EPOCH_MS:
            casts.append(c.cast(pl.Int64).cast(pl.Datetime("ms")))
    return frame.with_columns(casts)


def test_same_seed_same_files_other_seed_other_world(world, tmp_path):
    out, summary = world
    again = generate(tmp_path / "again", users=USERS, days=DAYS, seed=SEED, show_progress=False)
    assert again.rows == summary.rows
    for spec in FILES:
        assert (tmp_path / "again" / spec.filename).read_bytes() == (out / spec.filename).read_bytes(), \
            spec.filename
    other = generate(tmp_path / "other", users=USERS, days=DAYS, seed=SEED + 1, show_progress=False)
    other_plays = (tmp_path / "other" / "photo_play.parquet").read_bytes()
    assert other_plays != (out / "photo_play.parquet").read_bytes()
    assert other.rows["photo_play"] != summary.rows["photo_play"]


DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}$")
CSV_PATTERNS = {
    Kind.INT: re.compile(r"^-?\d+$"),
    Kind.DATETIME_STR: DATETIME_RE,
    Kind.EPOCH_MS: re.compile(r"^\d{13}$"),
    Kind.DATE_STR: re.compile(r"^\d{8}$"),
}


@pytest.mark.parametrize("spec", FILES, ids=lambda s: s.stem)
def test_every_contract_file_and_column_in_its_raw_encoding(world, spec):
    out, summary = world
    path = out / spec.filename
    assert path.exists(), f"{spec.filename} missing (required={spec.required})"
    if spec.fmt == "parquet":
        schema = pq.read_schema(path)
        table = pq.read_table(path)
        assert table.num_rows == summary.rows[spec.stem] > 0
        for col in spec.columns:
            assert col.name in schema.names, f"{spec.filename} lacks {col.name}"
            t = schema.field(col.name).type
            if col.kind is Kind.INT:
                assert pa.types.is_integer(t), (col.name, t)
            elif col.kind is Kind.STR:
                assert pa.types.is_string(t) or pa.types.is_large_string(t), (col.name, t)
            elif col.kind is Kind.TIMESTAMP:
                assert pa.types.is_timestamp(t) and t.unit == "ms" and t.tz is None, (col.name, t)
            elif col.kind is Kind.VECTOR:
                assert pa.types.is_list(t) or pa.types.is_large_list(t), (col.name, t)
                assert pa.types.is_float32(t.value_type)
                lengths = pl.from_arrow(table.column(col.name)).list.len()
                assert lengths.min() == lengths.max() == VECTOR_DIMS[spec.stem]
            if not col.nullable:
                assert table.column(col.name).null_count == 0, col.name
    else:
        frame = pl.read_csv(path, infer_schema=False)
        assert frame.height == summary.rows[spec.stem] > 0
        for col in spec.columns:
            assert col.name in frame.columns, f"{spec.filename} lacks {col.name}"
            values = frame[col.name]
            if not col.nullable:
                assert values.null_count() == 0, col.name
            pattern = CSV_PATTERNS.get(col.kind)
            if pattern is not None:
                bad = values.drop_nulls().filter(~values.drop_nulls().str.contains(pattern.pattern))
                assert bad.len() == 0, f"{spec.filename}.{col.name}: {bad.head(3).to_list()}"


def test_keys_unique_and_foreign_keys_hold(world):
    out, _ = world
    frames = {spec.stem: _read(out, spec.stem) for spec in FILES}
    for spec in FILES:
        frame = frames[spec.stem]
        if spec.key:
            assert frame.select(spec.key).is_duplicated().sum() == 0, spec.stem
        for fk in spec.foreign_keys:
            parent = frames[fk.parent][fk.parent_column]
            orphans = frame.filter(~pl.col(fk.column).is_in(parent.implode()))
            assert orphans.height == 0, f"{spec.stem}.{fk.column} -> {fk.parent}: {orphans.height}"
    # photo_play.author_id is the photo's author; a live row's author is the room's author.
    plays = frames["photo_play"].join(frames["photo_meta"].select("photo_id", owner="author_id"),
                                      on="photo_id")
    assert (plays["author_id"] == plays["owner"]).all()
    for stem, live_col in (("live_interaction", "live_id"), ("live_show", "live_id"),
                           ("live_comment", "live_stream_id")):
        joined = frames[stem].join(frames["live_room_meta"].select("live_id", host="author_id"),
                                   left_on=live_col, right_on="live_id")
        assert (joined["author_id"] == joined["host"]).all(), stem
    # Every live author posts short videos too (the live category is the author's photo category).
    authors = frames["author_profile"]
    live_authors = authors.filter(pl.col("is_live_author") == 1)["author_id"]
    assert frames["live_room_meta"]["author_id"].is_in(live_authors.implode()).all()
    assert live_authors.is_in(frames["photo_meta"]["author_id"].implode()).all()


def test_times_ordered_and_live_rows_inside_on_air_intervals(world):
    out, summary = world
    plays = _read(out, "photo_play")
    assert (plays["enter_timestamp"] <= plays["leave_timestamp"]).all()
    assert plays["enter_timestamp"].min() >= START.replace(tzinfo=None)
    assert plays["enter_timestamp"].max() < WINDOW_END

    rooms = _read(out, "live_room_meta")
    ended = rooms.filter(pl.col("end_timestamp").is_not_null())
    assert (ended["start_timestamp"] <= ended["end_timestamp"]).all()
    assert (ended["live_duration"] == (ended["end_timestamp"] - ended["start_timestamp"])
            .dt.total_milliseconds()).all()
    on_air = rooms.filter(pl.col("end_timestamp").is_null())
    assert on_air.height == summary.on_air_rooms > 0, "some rooms must still be on air at the end"
    assert on_air["live_duration"].null_count() == on_air.height
    assert (on_air["start_timestamp"] < WINDOW_END).all()
    minutes = ended["live_duration"] / 60_000
    assert (minutes < 30).mean() > 0.3 and (minutes > 180).mean() > 0.05, "many short, some long rooms"

    interval = rooms.select("live_id", "start_timestamp",
                            until=pl.col("end_timestamp").fill_null(pl.lit(WINDOW_END)))
    sessions = _read(out, "live_interaction").join(interval, on="live_id")
    assert sessions.height == summary.rows["live_interaction"]
    start, end = pl.col("live_play_start_timestamp"), pl.col("live_play_end_timestamp")
    assert sessions.select(
        inside=((start >= pl.col("start_timestamp")) & (start < pl.col("until"))).all(),
        ends_in_room=(end <= pl.col("until")).all(),
        ordered=(start <= end).all(),
        duration=(pl.col("play_duration") == (end - start).dt.total_milliseconds()).all(),
        p_date=(pl.col("p_date") == start.dt.strftime("%Y%m%d")).all(),
    ).row(0) == (True, True, True, True, True)
    for stem, live_col, ts in (("live_show", "live_id", "show_timestamp"),
                               ("live_comment", "live_stream_id", "comment_ts")):
        rows = _read(out, stem).join(interval, left_on=live_col, right_on="live_id")
        assert ((rows[ts] >= rows["start_timestamp"]) & (rows[ts] < rows["until"])).all(), stem


def test_cold_start_users_watch_short_videos_but_no_live_before_the_cut(world):
    out, summary = world
    cut = summary.cut.replace(tzinfo=None)
    assert START.replace(tzinfo=None) < cut < WINDOW_END
    users = _read(out, "user_id_set")["user_id"]
    live_before = pl.concat([
        _read(out, "live_interaction").filter(pl.col("live_play_start_timestamp") < cut)["user_id"],
        _read(out, "live_show").filter(pl.col("show_timestamp") < cut)["user_id"],
        _read(out, "live_comment").filter(pl.col("comment_ts") < cut)["user_id"],
    ]).unique()
    cold = users.filter(~users.is_in(live_before.implode()))
    assert 0.2 <= cold.len() / users.len() <= 0.4
    assert summary.cold_start_users >= cold.len()  # the summary counts sessions only
    plays = _read(out, "photo_play")
    with_plays = cold.is_in(plays["user_id"].implode()).mean()
    assert with_plays > 0.9, "cold-start users still watch short videos"
    later = _read(out, "live_interaction").filter(pl.col("live_play_start_timestamp") >= cut)
    assert cold.is_in(later["user_id"].implode()).mean() > 0.3, "cold-start users show up after the cut"


def _top_l1(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    return (frame.group_by("user_id", "l1").len()
            .sort(["user_id", "len", "l1"], descending=[False, True, False])
            .group_by("user_id", maintain_order=True).first().select("user_id", pl.col("l1").alias(name)))


def test_short_video_and_live_top_categories_agree_well_above_chance(world):
    out, _ = world
    l1 = _read(out, "photo_tag").select("photo_id", l1="first_level_category_name")
    photos = _read(out, "photo_meta").select("photo_id", "author_id").join(l1, on="photo_id")
    # A live author's category is the most frequent category of their short videos (as in the marts).
    author_l1 = (photos.group_by("author_id", "l1").len()
                 .sort(["author_id", "len", "l1"], descending=[False, True, False])
                 .group_by("author_id", maintain_order=True).first().select("author_id", "l1"))
    sv = _top_l1(_read(out, "photo_play").join(l1, on="photo_id"), "sv")
    live = _top_l1(_read(out, "live_interaction").join(author_l1, on="author_id"), "live")
    both = sv.join(live, on="user_id")
    assert both.height > 500
    agree = (both["sv"] == both["live"]).mean()
    shuffled = (both["sv"] == both["live"].shuffle(seed=0)).mean()
    assert agree > 0.35 and agree > 2.5 * shuffled, (agree, shuffled)


def test_engagement_follows_interest_and_popularity_is_long_tailed(world):
    out, _ = world
    l1 = _read(out, "photo_tag").select("photo_id", l1="first_level_category_name")
    plays = (_read(out, "photo_play").join(l1, on="photo_id")
             .join(_read(out, "photo_meta").select("photo_id", "duration"), on="photo_id")
             .with_columns(progress=(pl.col("leave_timestamp") - pl.col("enter_timestamp"))
                           .dt.total_milliseconds() / pl.col("duration")))
    # The user's most played category (by count, not progress) stands in for the latent interest.
    plays = (plays.join(_top_l1(plays, "top"), on="user_id")
             .with_columns(matched=pl.col("l1") == pl.col("top")))
    by = plays.group_by("matched").agg(pl.col("progress").mean(), pl.col("like_status_type").mean(),
                                       pl.col("is_complete_play").mean()).sort("matched")
    off, on = by.row(0, named=True), by.row(1, named=True)
    assert on["progress"] > off["progress"] + 0.1
    assert on["like_status_type"] > 1.2 * off["like_status_type"]
    assert on["is_complete_play"] > 1.2 * off["is_complete_play"]
    assert (plays["is_complete_play"] == (plays["progress"] >= 1.0)).all()
    valid = (plays["progress"] >= 0.1).mean()
    assert 0.6 < valid < 0.95, "the >= 10% positive rule must keep most plays but not all"

    counts = plays.group_by("photo_id").len().sort("len", descending=True)["len"]
    assert counts.head(max(1, counts.len() // 100)).sum() / counts.sum() > 0.1, "top 1% of photos"
    hours = plays["enter_timestamp"].dt.hour()
    evening = plays.filter(hours.is_between(18, 23))["progress"].mean()
    night = plays.filter(hours.is_between(2, 6))["progress"].mean()
    assert evening > night, "time of day moves engagement"


def test_texts_and_vectors_carry_topic_signal(world):
    out, _ = world
    tag = _read(out, "photo_tag")
    meta = _read(out, "photo_meta").join(tag, on="photo_id")
    assert meta["cover_title"].str.len_chars().gt(0).mean() > 0.9
    assert meta["video_texts"].str.contains("OCR:").mean() > 0.7
    assert tag["fourth_level_category_name"].null_count() < tag.height * 0.1
    # Same-category photos are closer in the 128-d space than photos of different categories.
    import numpy as np

    emb = _read(out, "photo_emb_128").join(tag.select("photo_id", "third_level_category_name"), on="photo_id")
    vec = np.stack(emb["feature"].head(600).to_numpy())
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    cats = emb["third_level_category_name"].head(600).to_numpy()
    sim = vec @ vec.T
    same = cats[:, None] == cats[None, :]
    off_diag = ~np.eye(len(cats), dtype=bool)
    assert sim[same & off_diag].mean() > sim[~same].mean() + 0.2


@pytest.mark.parametrize("seed", range(4))
def test_smallest_world_still_has_every_file(tmp_path, seed):
    # 10 users over 2 days: few rooms, maybe none after the cut; the generator must still cope.
    summary = generate(tmp_path, users=10, days=2, seed=seed, show_progress=False)
    assert all((tmp_path / spec.filename).exists() for spec in FILES)
    assert summary.rows["photo_play"] > 0 and summary.cut == START + timedelta(days=1)


def test_summary_line_and_bad_sizes(world, tmp_path):
    _, summary = world
    line = summary.one_line()
    assert "synthetic" in line and f"{summary.rows['photo_play']:,} plays" in line and "\n" not in line
    with pytest.raises(ValueError, match="at least"):
        generate(tmp_path, users=3, days=14, seed=0, show_progress=False)


def test_dirty_world_every_bad_row_kind_and_ingest_quarantines_exactly_the_manifest(tmp_path):
    import json

    from rgcd.config import IngestConfig, Workspace
    from rgcd.transforms.dirt import MANIFEST
    from rgcd.transforms.ingest import ingest

    src = tmp_path / "dirty"
    summary = generate(src, users=300, days=5, seed=1, dirty_rate=0.01, show_progress=False)
    manifest = json.loads((src / MANIFEST).read_text())["files"]
    kinds = {reason.split(" (")[0].split(" ")[0] for reasons in manifest.values() for reason in reasons}
    # missing ids and times, unparsable times, vectors ("<col> has not n values"), negative,
    # end before start, unknown foreign keys, duplicate keys, malformed CSV lines
    assert {"missing", "unparsable", "negative", "end", "unknown", "duplicate", "malformed",
            "feature", "embedding"} <= kinds, kinds
    assert any(r.startswith("missing") and "timestamp" in r for m in manifest.values() for r in m)
    report = ingest(src, Workspace(tmp_path / "ws"), IngestConfig())
    for stem, counts in report.files.items():
        assert dict(counts.reasons) == manifest.get(stem, {}), stem
        assert counts.accepted == summary.good_rows[stem], stem
        assert counts.read == counts.accepted + counts.quarantined
    # the truth rides along, untouched; a clean world writes no manifest
    assert (tmp_path / "ws" / "latent" / "params.json").read_bytes() == \
        (src / "latent" / "params.json").read_bytes()
    generate(src, users=300, days=5, seed=1, dirty_rate=0.0, show_progress=False)
    assert not (src / MANIFEST).exists()


def test_a_platforms_worth_of_rooms_most_never_visited_long_tailed_evening(world):
    out, summary = world
    # what the live-room protocol ranks: rooms on air at a test request (first entry after the cut)
    assert summary.on_air_at_requests["median"] >= 200, summary.on_air_at_requests
    rooms = _read(out, "live_room_meta")
    sessions = _read(out, "live_interaction")
    visited = sessions["live_id"].n_unique() / rooms.height
    assert visited < 0.5, f"most rooms get no session from the sampled users ({visited:.0%} visited)"
    per_streamer = np.sort(sessions.group_by("author_id").len()["len"].to_numpy())[::-1]
    top = int(np.ceil(0.01 * rooms["author_id"].n_unique()))
    # the top 1% of streamers get at least ten times their head count of sessions
    assert per_streamer[:top].sum() / per_streamer.sum() > 0.1, "long-tailed streamer popularity"
    for frame, ts in ((rooms, "start_timestamp"), (sessions, "live_play_start_timestamp")):
        hours = frame[ts].dt.hour()
        evening, night = hours.is_between(19, 22).mean() / 4, hours.is_between(2, 5).mean() / 4
        assert evening > 3 * night, (ts, evening, night)


def test_latent_truth_covers_every_item_and_user_and_the_linked_plays(world):
    from rgcd.transforms.latent import LATENT_DIR, read_latent

    out, summary = world
    truth = read_latent(out / LATENT_DIR)
    assert truth is not None
    ids = set(truth.items["item_id"].to_list())
    assert {f"photo:{p}" for p in _read(out, "photo_meta")["photo_id"].to_list()} <= ids
    assert {f"live:{r}" for r in _read(out, "live_room_meta")["live_id"].to_list()} <= ids
    assert truth.items.height == summary.rows["photo_meta"] + summary.rows["live_room_meta"]
    assert truth.users.height == USERS and truth.users["interests"].list.len().min() == 24
    plays = _read(out, "photo_play").group_by("user_id", "author_id").len()
    joined = truth.user_authors.join(plays, on=["user_id", "author_id"], how="full", coalesce=True)
    # every play counted (the generator's own draws; a few same-millisecond repeats were dropped)
    assert joined["len"].fill_null(0).sum() <= joined["plays"].fill_null(0).sum() <= \
        1.001 * joined["len"].fill_null(0).sum()
    assert set(truth.params["live_routes"]) == {"linked", "popularity", "popularity_evening", "chance"}


def test_density_knob_reaches_kuailive_m3_rates(tmp_path):
    from rgcd.config import DemoDensity

    users, days = 40, 3
    summary = generate(tmp_path, users=users, days=days, seed=2, density=DemoDensity.kuailive_m3(),
                       show_progress=False)
    per_day = {k: summary.rows[k] / (users * days) for k in ("photo_play", "live_interaction")}
    assert 180 < per_day["photo_play"] < 300 and 50 < per_day["live_interaction"] < 100, per_day
    assert 0.8 < summary.rows["photo_meta"] / (300 * users) < 1.2
    assert 0.8 < summary.rows["live_room_meta"] / (300 * users) < 1.2


def test_covers_add_a_synthetic_image_per_item_and_change_nothing_else(tmp_path):
    from PIL import Image

    from rgcd.transforms.latent import LATENT_DIR, read_latent

    plain = generate(tmp_path / "plain", users=60, days=3, seed=5, show_progress=False)
    covered = generate(tmp_path / "covered", users=60, days=3, seed=5, covers=True, show_progress=False)
    for spec in FILES:  # the world itself is the same; only the two meta files gain cover_path
        a, b = _read(plain.out, spec.stem), _read(covered.out, spec.stem)
        extra = ["cover_path"] if spec.stem in ("photo_meta", "live_room_meta") else []
        assert b.columns == a.columns + extra and b.drop(extra).equals(a)
    topics = read_latent(covered.out / LATENT_DIR)
    hues = {}
    for stem, key, domain in (("photo_meta", "photo_id", "photo"), ("live_room_meta", "live_id", "live")):
        meta = _read(covered.out, stem)
        for item_id, path in meta.select(key, "cover_path").iter_rows():
            assert Path(path).is_absolute() and Path(path).name == f"{domain}_{item_id}.png"
            with Image.open(path) as img:
                assert img.size == (16, 16)
                hues[f"{domain}:{item_id}"] = img.convert("HSV").getpixel((0, 0))[0]
    # the hue says the true topic: items of one topic are closer in hue than items of two
    item_topic = dict(topics.items.select("item_id", "topic").iter_rows())
    same, cross = [], []
    ids = sorted(hues)[:300]
    for i, x in enumerate(ids):
        for y in ids[i + 1:]:
            d = abs(hues[x] - hues[y])
            (same if item_topic[x] == item_topic[y] else cross).append(min(d, 256 - d))
    assert np.mean(same) + 10 < np.mean(cross)
