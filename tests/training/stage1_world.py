"""A tiny crafted marts world (item_content + behaviour_pairs) in the contract's schema, built in code.

Items of five verticals; titles and texts use the vertical's words; multimodal vectors cluster by
vertical; behaviour pairs mostly link a short video and a live room of the same vertical.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

VERTICALS = {
    "Food": (
        ["Noodles", "Baking", "Street Food"],
        ["noodles", "dumplings", "spicy", "recipe", "kitchen", "bbq"],
    ),
    "Gaming": (
        ["Mobile Games", "Esports", "Retro"],
        ["ranked", "boss", "speedrun", "arena", "loot", "guild"],
    ),
    "Music": (["Guitar", "Karaoke", "Piano"], ["song", "chords", "concert", "melody", "cover", "band"]),
    "Sports": (
        ["Basketball", "Football", "Fitness"],
        ["dunk", "goal", "workout", "match", "training", "coach"],
    ),
    "Beauty": (["Makeup", "Skincare", "Hair"], ["lipstick", "serum", "tutorial", "glow", "brush", "curls"]),
}
T0 = datetime(2026, 3, 1, tzinfo=UTC)


def build_world(
    photos: int = 60, lives: int = 20, pairs: int = 80, seed: int = 0, noise: float = 0.1
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(item_content, behaviour_pairs) of a small world; `noise` is the share of cross-vertical pairs."""
    rng = np.random.default_rng(seed)
    names = list(VERTICALS)
    centres = {d: {v: rng.normal(size=dim) for v in names} for d, dim in (("photo", 128), ("live", 64))}
    rows = []
    for domain, count, offset in (("photo", photos, 1000), ("live", lives, 5000)):
        for k in range(count):
            vertical = names[k % len(names)]
            subs, words = VERTICALS[vertical]
            sub = subs[rng.integers(len(subs))]
            picked = [words[i] for i in rng.choice(len(words), size=3, replace=False)]
            author = 100 + (k % 12) * 5 + names.index(vertical)
            start = T0 + timedelta(hours=int(k))
            vec = centres[domain][vertical] + 0.5 * rng.normal(size=128 if domain == "photo" else 64)
            rows.append(
                {
                    "item_id": f"{domain}:{offset + k}",
                    "domain": domain,
                    "source_id": offset + k,
                    "author_id": author,
                    "title": f"{picked[0]} {picked[1]} {sub.lower()}" if domain == "photo" or k % 4 else "",
                    "body_text": f"{picked[2]} {picked[0]} {picked[2]} {sub.lower()} tips"
                    if domain == "photo"
                    else "",
                    "category_l1": vertical,
                    "category_l2": sub,
                    "category_l3": f"{sub} daily",
                    "category_l4": "",
                    "duration_ms": int(rng.integers(5_000, 600_000)),
                    "start_timestamp": start if domain == "live" else None,
                    "end_timestamp": start + timedelta(hours=2) if domain == "live" else None,
                    "mm_embedding": vec.astype(np.float32).tolist() if k % 7 else None,
                    "cover_path": None,  # the optional contract column: no covers in this world
                    "event_timestamp": start,
                    "created_timestamp": start + timedelta(days=1),
                }
            )
    items = pl.DataFrame(
        rows,
        schema_overrides={
            "mm_embedding": pl.List(pl.Float32),
            "cover_path": pl.String,
            "start_timestamp": pl.Datetime("us", "UTC"),
            "end_timestamp": pl.Datetime("us", "UTC"),
        },
    )
    photo_rows = [r for r in rows if r["domain"] == "photo"]
    live_rows = [r for r in rows if r["domain"] == "live"]
    pair_rows = []
    for k in range(pairs):
        photo = photo_rows[rng.integers(len(photo_rows))]
        same = [r for r in live_rows if r["category_l1"] == photo["category_l1"]]
        live = (
            live_rows[rng.integers(len(live_rows))] if rng.random() < noise else same[rng.integers(len(same))]
        )
        author_pair = k % 5 == 4
        co = int(rng.integers(1, 40))
        seen = T0 + timedelta(days=int(rng.integers(1, 10)))
        target = f"author:{live['author_id']}" if author_pair else live["item_id"]
        pair_rows.append(
            {
                "pair_id": f"{photo['item_id']}|{target}",
                "pair_type": "photo_live_author" if author_pair else "photo_live_room",
                "photo_item_id": photo["item_id"],
                "target_id": target,
                "photo_id": photo["source_id"],
                "live_id": None if author_pair else live["source_id"],
                "author_id": live["author_id"],
                "co_count": co,
                "distinct_users": max(1, co // 2),
                "strength": float(rng.uniform(0.05, 1.0)),
                "first_seen": seen - timedelta(days=1),
                "last_seen": seen,
                "event_timestamp": seen,
                "created_timestamp": seen + timedelta(hours=1),
            }
        )
    behaviour_pairs = pl.DataFrame(pair_rows, schema_overrides={"live_id": pl.Int64}).unique(
        "pair_id", keep="first", maintain_order=True
    )
    return items, behaviour_pairs


def write_world(marts_dir, **kwargs) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write the world's two marts as parquet under `marts_dir`; returns the frames."""
    items, behaviour_pairs = build_world(**kwargs)
    marts_dir.mkdir(parents=True, exist_ok=True)
    items.write_parquet(marts_dir / "item_content.parquet")
    behaviour_pairs.write_parquet(marts_dir / "behaviour_pairs.parquet")
    return items, behaviour_pairs
