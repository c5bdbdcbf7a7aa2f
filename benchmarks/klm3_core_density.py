"""Claim: what klm3-cdr's k-core and 80/10/10 split leave of a world, per core threshold.

On a built workspace (after `rgcd run --stages demo-data,ingest,build`), from the warehouse's
`int_klm3_cdr_positives` (one row per user, domain and item: valid plays, live authors entered):
the density figures that decide whether the protocol can run (live positives per user, users per
live author), then for each threshold k the k-core per domain as `int_klm3_cdr_core` computes it
(users and items with at least k positives, to the fixed point) and the test cases the ratio split
gives (a user's live test rows are floor(0.1 n) of n core positives: a user needs n >= 10).

    python benchmarks/klm3_core_density.py WS [--ks 10 5 3 2 1]   # -> results/klm3_core_density.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from results_format import write_result  # noqa: E402

TEST_RATIO = 0.1  # dbt var klm3_test_ratio


def positives(ws: Path) -> pl.DataFrame:
    import duckdb

    with duckdb.connect(str(ws / "warehouse.duckdb"), read_only=True) as con:
        return con.sql("select user_id, domain, item_id from int_klm3_cdr_positives").pl()


def k_core(rows: pl.DataFrame, k: int, passes: int = 50) -> pl.DataFrame:
    """Keep (user, item) rows whose user and item have >= k rows in their domain, to the fixed point."""
    for _ in range(passes):
        users = rows.group_by("domain", "user_id").len().filter(pl.col("len") >= k).drop("len")
        items = rows.group_by("domain", "item_id").len().filter(pl.col("len") >= k).drop("len")
        kept = rows.join(users, on=["domain", "user_id"], how="semi").join(items, on=["domain", "item_id"],
                                                                            how="semi")
        if kept.height == rows.height:
            return kept
        rows = kept
    return rows


def quantiles(s: pl.Series) -> dict[str, float]:
    return {q: float(s.quantile(v)) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))} | {
        "mean": round(float(s.mean()), 2)}


def density(rows: pl.DataFrame) -> dict:
    live = rows.filter(pl.col("domain") == "live")
    per_user = live.group_by("user_id").len()["len"]
    per_author = live.group_by("item_id").len()["len"]
    return {"users_with_live": per_user.len(), "live_authors": per_author.len(),
            "live_authors_per_user": quantiles(per_user),
            "users_per_live_author": quantiles(per_author),
            "users_with_10_live_authors": int((per_user >= 10).sum()),
            "photo_positives_per_user": quantiles(rows.filter(pl.col("domain") == "photo")
                                                  .group_by("user_id").len()["len"])}


def core_figures(rows: pl.DataFrame, k: int) -> dict:
    core = k_core(rows, k)
    live = core.filter(pl.col("domain") == "live")
    n = live.group_by("user_id").len()
    test_users = n.filter((pl.col("len") * TEST_RATIO).floor() >= 1)
    return {"k": k, "live_rows": live.height, "live_users": n.height,
            "live_authors": live["item_id"].n_unique(),
            "photo_rows": core.height - live.height,
            "test_users": test_users.height,
            "test_rows": int((test_users["len"] * TEST_RATIO).floor().sum())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workspace", type=Path)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 5, 3, 2, 1])
    ap.add_argument("--note", default="", help="what world the workspace holds (size, density, knobs)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "klm3_core_density.json")
    args = ap.parse_args(argv)
    rows = positives(args.workspace)
    dens = density(rows)
    cores = [core_figures(rows, k) for k in args.ks]
    print(f"density: {dens}")
    for c in cores:
        print(f"  {c['k']:>2}-core: {c['live_users']:,} live users, {c['live_authors']:,} live authors, "
              f"{c['live_rows']:,} live rows; {c['test_users']:,} test users ({c['test_rows']:,} test rows)")
    ten = next((c for c in cores if c["k"] == 10), cores[0])
    write_result(args.out, claim="what klm3-cdr's k-core and 80/10/10 split leave of a world, per threshold",
                 figures={"world": args.note, "density": dens, "cores": cores},
                 headline=f"{ten['k']}-core: {ten['test_users']:,} test users, {ten['live_authors']:,} live "
                          f"authors; users with >= 10 live authors: {dens['users_with_10_live_authors']:,} "
                          f"of {dens['users_with_live']:,}",
                 peer=None, ratio=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
