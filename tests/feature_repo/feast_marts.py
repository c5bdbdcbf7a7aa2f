"""The marts of the BRIEF contract as a crafted dbt manifest, plus tiny parquet worlds for them.

The manifest holds only what `rgcd features sync` reads of dbt's real one (nodes, resource_type,
tags, config.meta.feast, columns with data_type), so tests need no dbt run.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl

_WINDOWS3 = ("1d", "7d", "30d")
_WINDOWS2 = ("7d", "30d")


def _user_features_daily() -> list[tuple[str, str]]:
    cols = [("user_id", "bigint")]
    for base in ("sv_plays", "sv_valid_plays", "sv_complete_plays", "sv_likes", "sv_follows"):
        cols += [(f"{base}_{w}", "bigint") for w in _WINDOWS3]
    for k in (1, 2, 3):
        cols += [(f"top_category_{k}", "varchar"), (f"top_category_{k}_share", "double")]
    for base in ("live_sessions", "live_watch_ms", "live_gifts", "live_comments", "live_follows"):
        cols += [(f"{base}_{w}", "bigint") for w in _WINDOWS2]
    cols.append(("is_live_cold_start", "boolean"))
    return cols


# TTLs as the dbt YAML sets them (0d = never expires), except user_features_daily: 2 days here
# (30 in dbt) so that the leakage tests can cross its expiry with small numbers.
_TIMES = [("event_timestamp", "timestamp with time zone"), ("created_timestamp", "timestamp with time zone")]

CONTRACT_MARTS: dict[str, dict] = {
    "user_features_daily": {
        "feast": {"entity": "user", "join_key": "user_id", "ttl": "2d"},
        "columns": _user_features_daily() + _TIMES,
    },
    "item_content": {
        "feast": {"entity": "item", "join_key": "item_id", "ttl": "0d",
                  "online_fields": ["domain", "author_id", "category_l1", "category_l2", "duration_ms"]},
        "columns": [("item_id", "varchar"), ("domain", "varchar"), ("source_id", "bigint"),
                    ("author_id", "bigint"), ("title", "varchar"), ("body_text", "varchar"),
                    ("category_l1", "varchar"), ("category_l2", "varchar"), ("category_l3", "varchar"),
                    ("category_l4", "varchar"), ("duration_ms", "bigint"),
                    ("start_timestamp", "timestamp with time zone"),
                    ("end_timestamp", "timestamp with time zone"), ("mm_embedding", "float[]"),
                    ("cover_path", "varchar")] + _TIMES,
    },
    "live_schedule": {
        "feast": {"entity": "item", "join_key": "item_id", "ttl": "0d"},
        "columns": [("item_id", "varchar"), ("live_id", "bigint"), ("author_id", "bigint"),
                    ("start_timestamp", "timestamp with time zone"),
                    ("end_timestamp", "timestamp with time zone")] + _TIMES,
    },
    "behaviour_pairs": {
        "feast": {"entity": "behaviour_pair", "join_key": "pair_id", "ttl": "0d"},
        "columns": [("pair_id", "varchar"), ("pair_type", "varchar"), ("photo_item_id", "varchar"),
                    ("target_id", "varchar"), ("photo_id", "bigint"), ("live_id", "bigint"),
                    ("author_id", "bigint"), ("co_count", "bigint"), ("distinct_users", "bigint"),
                    ("strength", "double"), ("first_seen", "timestamp with time zone"),
                    ("last_seen", "timestamp with time zone")] + _TIMES,
    },
}


def manifest(marts: dict[str, dict] = CONTRACT_MARTS,
             untagged: tuple[str, ...] = ("eval_live_room",)) -> dict:
    """A dbt manifest (the parts sync reads) with these marts tagged feast, plus untagged models."""
    nodes: dict[str, dict] = {}
    for name, spec in marts.items():
        meta = {"timestamp_field": "event_timestamp", "created_timestamp_column": "created_timestamp",
                **spec["feast"]}
        nodes[f"model.rgcd.{name}"] = {
            "resource_type": "model", "name": name, "tags": ["feast"],
            "original_file_path": f"models/marts/{name}.sql",
            "description": f"mart {name}",
            "config": {"tags": ["feast"], "meta": {"feast": meta}, "materialized": "external"},
            "columns": {c: {"name": c, "data_type": t, "description": "", "meta": {}}
                        for c, t in spec["columns"]},
        }
    for name in untagged:
        nodes[f"model.rgcd.{name}"] = {"resource_type": "model", "name": name, "tags": [],
                                       "config": {"tags": [], "meta": {}},
                                       "columns": {"user_id": {"name": "user_id", "data_type": "bigint"}}}
    nodes["test.rgcd.not_null_x"] = {"resource_type": "test", "name": "not_null_x", "tags": ["feast"]}
    return {"metadata": {"dbt_version": "1.11.16"}, "nodes": nodes}


def contract_repo(dest: Path) -> Path:
    """A copy of feature_repo/ whose generated views come from the crafted contract manifest.

    Tests that depend on a TTL use it, so they do not move when dbt's YAML changes.
    """
    import shutil

    from rgcd.featurestore import dbt_sync
    from rgcd.featurestore import store as fs

    shutil.copytree(fs.REPO_DIR, dest, ignore=shutil.ignore_patterns("__pycache__"))
    (dest / fs.GENERATED).write_text(dbt_sync.render(
        dbt_sync.tagged_marts(manifest(), fs.entity_join_keys(dest))))
    return dest


def write_manifest(path: Path, data: dict) -> Path:
    """Write a manifest dict as dbt would (target/manifest.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


_POLARS = {"bigint": pl.Int64, "varchar": pl.String, "double": pl.Float64, "boolean": pl.Boolean,
           "timestamp with time zone": pl.Datetime("us", "UTC"), "float[]": pl.List(pl.Float32)}


def write_table(path: Path, columns: list[tuple[str, str]], rows: dict[str, list]) -> Path:
    """Write rows as parquet with the declared column types; columns not given are null."""
    n = len(next(iter(rows.values())))
    data = {c: pl.Series(c, rows.get(c, [None] * n), dtype=_POLARS[t], strict=False) for c, t in columns}
    extra = sorted(set(rows) - {c for c, _ in columns})
    if extra:
        raise KeyError(f"columns not in the table: {extra}")
    path.parent.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(data).write_parquet(path)
    return path


def write_mart(marts_dir: Path, name: str, rows: dict[str, list],
               marts: dict[str, dict] = CONTRACT_MARTS) -> Path:
    """Write <marts_dir>/<name>.parquet as dbt would export it."""
    return write_table(marts_dir / f"{name}.parquet", marts[name]["columns"], rows)


FEATURE_DATA: dict[str, list[tuple[str, str]]] = {
    "item_reasoning": [("item_id", "varchar"), ("vertical_domain", "varchar"), ("key_subject", "varchar"),
                       ("content_theme", "varchar"), ("teacher_id", "varchar"),
                       ("prompt_version", "varchar")] + _TIMES,
    "pair_reasoning": [("pair_id", "varchar"), ("photo_item_id", "varchar"), ("target_id", "varchar"),
                       ("match", "boolean"), ("reason", "varchar"), ("semantic_transferability", "double"),
                       ("teacher_id", "varchar"), ("prompt_version", "varchar")] + _TIMES,
    "item_embeddings": [("item_id", "varchar"), ("domain", "varchar"), ("transferable", "float[]"),
                        ("residual", "float[]"), ("retrieval", "float[]"), ("model_version", "varchar")]
                       + _TIMES,
}


def write_feature_data(feature_data_dir: Path, name: str, rows: dict[str, list]) -> Path:
    """Write <feature_data_dir>/<name>.parquet as a model stage would."""
    return write_table(feature_data_dir / f"{name}.parquet", FEATURE_DATA[name], rows)


TWO_ROOMS = ["live:1", "live:2"]


def write_two_rooms(ws, t, day) -> None:
    """Two rooms of two authors (live:1 on air [t - day, t), live:2 from t, still on air), one
    behaviour pair and model m7's item vectors: the item side of the online-store tests' world."""
    write_mart(ws.marts, "item_content", {
        "item_id": TWO_ROOMS, "domain": ["live", "live"], "author_id": [10, 20],
        "event_timestamp": [t - day] * 2, "created_timestamp": [t - day] * 2})
    write_mart(ws.marts, "live_schedule", {
        "item_id": TWO_ROOMS, "live_id": [1, 2], "start_timestamp": [t - day, t], "end_timestamp": [t, None],
        "event_timestamp": [t - day, t], "created_timestamp": [t - day, t]})
    write_mart(ws.marts, "behaviour_pairs", {"pair_id": ["p"], "event_timestamp": [t],
                                             "created_timestamp": [t]})
    write_feature_data(ws.feature_data, "item_embeddings", {
        "item_id": TWO_ROOMS, "transferable": [[0.5, 1.5], [2.5, 3.5]], "residual": [[1.0], [2.0]],
        "model_version": ["m7", "m7"], "event_timestamp": [t] * 2, "created_timestamp": [t] * 2})

