"""The dbt project on a tiny lake: build, docs, incremental = full refresh, failures, absent files."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal

from rgcd.cli import cli
from rgcd.config import DemoDensity, Settings, Workspace
from rgcd.warehouse import DBT_PROJECT, WarehouseError, build, generate_docs, run_dbt

# The marts of the BRIEF, with their columns in order.
MART_COLUMNS = {
    "user_features_daily": [
        "user_id", "event_timestamp", "created_timestamp",
        *[f"{m}_{w}" for m in ("sv_plays", "sv_valid_plays", "sv_complete_plays", "sv_likes", "sv_follows")
          for w in ("1d", "7d", "30d")],
        *[c for r in (1, 2, 3) for c in (f"top_category_{r}", f"top_category_{r}_share")],
        *[f"{m}_{w}"
          for m in ("live_sessions", "live_watch_ms", "live_gifts", "live_comments", "live_follows")
          for w in ("7d", "30d")],
        "is_live_cold_start",
    ],
    "item_content": [
        "item_id", "domain", "source_id", "author_id", "title", "body_text", "category_l1", "category_l2",
        "category_l3", "category_l4", "duration_ms", "start_timestamp", "end_timestamp", "mm_embedding",
        "cover_path", "event_timestamp", "created_timestamp",
    ],
    "live_schedule": ["item_id", "live_id", "author_id", "start_timestamp", "end_timestamp",
                      "event_timestamp", "created_timestamp"],
    "behaviour_pairs": [
        "pair_id", "pair_type", "photo_item_id", "target_id", "photo_id", "live_id", "author_id", "co_count",
        "distinct_users", "strength", "first_seen", "last_seen", "event_timestamp", "created_timestamp",
    ],
    "behaviour_pair_rule_effect": ["event_date", "valid_plays", "plays_over_cap", "sessions",
                                   "sessions_over_cap", "candidate_pairs", "pairs_under_floor",
                                   "pairs_over_cap", "kept_pairs"],
    "user_item_interactions": ["user_id", "item_id", "domain", "author_id", "event_timestamp", "is_positive",
                               "strength"],
    "eval_klm3_cdr": ["user_id", "domain", "item_id", "event_timestamp", "split"],
    "eval_live_room": ["user_id", "live_id", "item_id", "request_timestamp", "split", "is_cold_start_user",
                       "is_tail_item", "is_not_linked", "is_new_streamer", "is_off_topic"],
}


def read_marts(ws: Workspace) -> dict[str, pl.DataFrame]:
    """Every mart, without the build-time column, in a canonical row order."""
    frames = {}
    for name in MART_COLUMNS:
        frame = pl.read_parquet(ws.marts / f"{name}.parquet")
        frame = frame.drop([c for c in ("created_timestamp",) if c in frame.columns])
        sortable = [c for c, t in frame.schema.items() if not isinstance(t, pl.List)]
        frames[name] = frame.sort(sortable, nulls_last=True)
    return frames


@pytest.mark.slow
def test_incremental_build_equals_full_refresh(tmp_path: Path, tiny_lake) -> None:
    """Build on 4 days, add day 5 to the lake, build again: the marts equal a --full-refresh build,
    the incremental models re-read only the newest day, every dbt test passes, docs generate."""
    ws = Workspace(tmp_path / "ws").ensure()
    # Caps the tiny lake exceeds (about 9 valid plays and 4 sessions per user-day), so the pair
    # rule's ranking is part of what incremental days must reproduce.
    settings = Settings.model_validate({"warehouse": {
        "pair_plays_per_user_day": 5, "pair_sessions_per_user_day": 2, "pair_max_per_user_day": 6}})
    tiny_lake(ws.lake, n_days=4)
    first = build(ws, settings)
    rule = first.pair_rule
    assert rule["plays_over_cap"] > 0 and rule["sessions_over_cap"] > 0 and rule["pairs_over_cap"] > 0
    assert rule["candidate_pairs"] == rule["pairs_under_floor"] + rule["pairs_over_cap"] + rule["kept_pairs"]
    assert "pair rule kept" in first.one_line()
    assert first.success and first.count("unit_test") >= 10 and first.count("test") >= 150
    assert set(first.marts) == set(MART_COLUMNS)
    for name, columns in MART_COLUMNS.items():
        assert pl.read_parquet_schema(ws.marts / f"{name}.parquet").names() == columns, name
        assert first.marts[name] > 0, name
    four_days = read_marts(ws)

    tiny_lake(ws.lake, n_days=5)  # the same 4 days plus a fifth
    second = build(ws, settings)
    assert second.success
    compiled = ws.dbt_artifacts / "target/compiled/rgcd/models/intermediate"
    executed = (compiled / "int_photo_plays_scored.sql").read_text()
    assert "event_date >= (date '2026-03-04' - 0)" in executed  # the newest old day onwards, not all
    incremental = read_marts(ws)
    assert incremental["user_features_daily"].height == 40 * 5
    assert incremental["user_item_interactions"].height > four_days["user_item_interactions"].height

    run_dbt(ws, settings, "run", full_refresh=True)
    full = read_marts(ws)
    for name in MART_COLUMNS:
        # exact, except float sums, whose order of addition differs (0.1 + 0.2 + 0.3 != 0.3 + 0.2 + 0.1)
        assert_frame_equal(incremental[name], full[name], rel_tol=1e-12, abs_tol=1e-12)

    target = generate_docs(ws, settings)
    catalog = json.loads((target / "catalog.json").read_text())
    columns = catalog["nodes"]["model.rgcd.user_features_daily"]["columns"]
    assert list(columns)[: len(MART_COLUMNS["user_features_daily"])] == MART_COLUMNS["user_features_daily"]
    manifest = json.loads((target / "manifest.json").read_text())
    feast = manifest["nodes"]["model.rgcd.behaviour_pairs"]["config"]["meta"]["feast"]
    assert feast["join_key"] == "pair_id" and "feast" in manifest["nodes"]["model.rgcd.item_content"]["tags"]
    assert (target / "index.html").exists()

    # A changed setting must not leave old days on the old value: the next build is a full refresh.
    narrower = settings.model_copy(update={"warehouse": settings.warehouse.model_copy(
        update={"pair_window_hours": 1})})
    changed = build(ws, narrower, select="+int_behaviour_pair_events_daily")
    assert "full refresh: pair_window_hours changed" in changed.one_line()
    run_sql = ws.dbt_artifacts / "target/run/rgcd/models/intermediate/int_behaviour_pair_events_daily.sql"
    assert "event_date >=" not in run_sql.read_text()  # every day recomputed with the new window


def test_absent_optional_files_give_null_vectors(tmp_path: Path, tiny_lake) -> None:
    """Without photo_emb_128 / live_emb_64 the item marts still build, with NULL vectors."""
    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2, embeddings=False)
    report = build(ws, Settings(), select="+item_content +live_schedule")
    assert report.success and set(report.marts) == {"item_content", "live_schedule"}
    items = pl.read_parquet(ws.marts / "item_content.parquet")
    assert items["mm_embedding"].null_count() == items.height > 0
    assert items["cover_path"].null_count() == items.height  # no cover_path column in the lake
    live = items.filter(pl.col("domain") == "live")
    assert live["category_l1"].null_count() == 0  # rooms inherit their author's category path


def test_cover_paths_reach_item_content_trimmed_and_blanks_null(tmp_path: Path, tiny_lake,
                                                              tiny_cover_of) -> None:
    """The contract's optional cover_path (photo_meta, live_room_meta) is carried to item_content."""
    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2, covers=True)
    assert build(ws, Settings(), select="+item_content").success
    items = pl.read_parquet(ws.marts / "item_content.parquet")
    expected = [(tiny_cover_of(i) or "").strip() or None for i in items["source_id"]]
    assert items["cover_path"].to_list() == expected
    for domain in ("photo", "live"):
        kinds = items.filter(pl.col("domain") == domain)["cover_path"]
        assert 0 < kinds.null_count() < kinds.len()  # both domains: covers and items without one


def test_an_empty_mart_is_an_empty_parquet_file(tmp_path: Path, tiny_lake) -> None:
    """No user reaches a 1000-core: the split is an empty file (no placeholder row), and a warning."""
    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2)
    report = run_dbt(ws, Settings(), "build", select="+eval_klm3_cdr", extra_vars={"klm3_core": 1000})
    assert report.marts == {"eval_klm3_cdr": 0}
    assert report.statuses[("test", "warn")] == 1
    assert pl.read_parquet(ws.marts / "eval_klm3_cdr.parquet").columns == MART_COLUMNS["eval_klm3_cdr"]


def test_a_new_mart_column_reaches_the_docs_without_other_changes(tmp_path: Path, tiny_lake) -> None:
    """An analytics engineer adds a column to a mart's SQL only: dbt docs list it."""
    project = tmp_path / "dbt"
    shutil.copytree(DBT_PROJECT, project, ignore=shutil.ignore_patterns("target", "logs"))
    sql = project / "models/marts/live_schedule.sql"
    new_column = "    epoch_ms(end_timestamp) - epoch_ms(start_timestamp) as on_air_ms,\n"
    sql.write_text(sql.read_text().replace("    author_id,\n", "    author_id,\n" + new_column))
    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2)
    settings = Settings()
    run_dbt(ws, settings, "build", select="+live_schedule", project=project)
    run_dbt(ws, settings, "docs generate", project=project)
    catalog = json.loads((ws.dbt_artifacts / "target/catalog.json").read_text())
    assert "on_air_ms" in catalog["nodes"]["model.rgcd.live_schedule"]["columns"]
    assert "on_air_ms" in pl.read_parquet_schema(ws.marts / "live_schedule.parquet").names()


def test_failing_test_exits_nonzero_with_dbt_message(tmp_path: Path, tiny_lake) -> None:
    """A room that ends before it starts fails a data test: exit code 1 and dbt's own message."""
    import pyarrow.parquet as pq

    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2)
    path = ws.lake_table("live_room_meta") / "part-0.parquet"
    rooms = pl.read_parquet(path).with_columns(
        pl.when(pl.col("live_id") == 5000).then(pl.col("start_timestamp").dt.offset_by("-1h"))
        .otherwise(pl.col("end_timestamp")).alias("end_timestamp"))
    pq.write_table(rooms.to_arrow().cast(pq.read_schema(path)), path)
    result = CliRunner().invoke(
        cli, ["--workspace", str(ws.root), "build", "--select", "stg_lake__live_rooms"])
    assert result.exit_code == 1
    assert "expression_is_true_stg_lake__live_rooms_end_timestamp" in result.output
    assert "Got 1 result" in result.output


def test_missing_lake_table_is_refused(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    with pytest.raises(WarehouseError, match=r"no user_id_set table .* ingest"):
        build(ws, Settings())


def test_the_warehouse_lock_is_explained_and_released(tmp_path: Path, tiny_lake) -> None:
    ws = Workspace(tmp_path / "ws").ensure()
    tiny_lake(ws.lake, n_days=2)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import duckdb, sys, time
        con = duckdb.connect({str(ws.warehouse)!r})
        print("open", flush=True)
        time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "open"
        with pytest.raises(WarehouseError, match="holds .*warehouse.duckdb open"):
            build(ws, Settings(), select="stg_lake__users")
    finally:
        holder.kill()
        holder.wait()
    # and once rgcd has built, it holds nothing: another process can open the file
    build(ws, Settings(), select="stg_lake__users")
    opened = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(ws.warehouse)!r})"],
                            capture_output=True, text=True)
    assert opened.returncode == 0, opened.stderr


@pytest.mark.slow
def test_build_at_ci_size_on_the_demo_world(tmp_path: Path) -> None:
    """2,000 demo users through the real ingest: every dbt test passes and both protocols have
    test users in both domains, cold-start users and tail items included.

    The world has one live session per user-day here instead of the demo's 0.357: at 2,000 users
    the demo's density spreads ~5 live sessions per user over a platform's worth of streamers, and
    klm3-cdr's 10-core (10 distinct authors per user) would be empty (at the demo size it holds
    1,252 users). KuaiLive-M3 itself has 76 live sessions per user-day."""
    from rgcd.transforms.demo import generate
    from rgcd.transforms.ingest import ingest

    ws = Workspace(tmp_path / "ws").ensure()
    settings = Settings()
    generate(ws.demo_data, users=2_000, days=14, seed=7, show_progress=False,
             density=DemoDensity(live_sessions_per_user_day=1.0))
    ingest(ws.demo_data, ws, settings.ingest)
    report = build(ws, settings)
    assert report.success and all(rows > 0 for rows in report.marts.values()), report.marts
    klm3 = pl.read_parquet(ws.marts / "eval_klm3_cdr.parquet")
    assert set(klm3.filter(pl.col("split") == "test")["domain"]) == {"photo", "live"}
    live_room = pl.read_parquet(ws.marts / "eval_live_room.parquet").filter(pl.col("split") == "test")
    assert live_room["is_cold_start_user"].any() and live_room["is_tail_item"].any()
    features = pl.read_parquet(ws.marts / "user_features_daily.parquet")
    assert features.height == 2_000 * 14



def test_klm3_core_is_the_benchmarks_on_real_data_and_the_demos_on_a_demo_world(tmp_path: Path) -> None:
    from rgcd.transforms.latent import LATENT_DIR
    from rgcd.warehouse import dbt_vars

    ws = Workspace(tmp_path / "ws").ensure()
    settings = Settings.model_validate({"warehouse": {"klm3_core": 10}, "demo": {"klm3_core": 3}})
    assert dbt_vars(ws, settings)["klm3_core"] == 10  # real data: the public benchmark's 10-core
    (ws.root / LATENT_DIR).mkdir()
    (ws.root / LATENT_DIR / "params.json").write_text("{}")
    assert dbt_vars(ws, settings)["klm3_core"] == 3  # a synthetic world: the threshold set for its density
