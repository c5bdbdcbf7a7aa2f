"""Stage 2's vector tables are written batch by batch: old versions kept, peak flat in the catalogue."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from rgcd.training.vector_tables import TIMESTAMP, vectors_column, write_versioned_table


def _writer(ids: list[str], vectors: np.ndarray, version: str, created: datetime):
    def batch(start: int, stop: int) -> pl.DataFrame:
        n = stop - start
        return pl.DataFrame([pl.Series("item_id", ids[start:stop], pl.Utf8),
                             vectors_column(vectors[start:stop], n).alias("transferable"),
                             pl.Series("model_version", [version] * n, pl.Utf8),
                             pl.Series("created_timestamp", [created] * n, dtype=TIMESTAMP)])
    return batch


def test_new_rows_first_then_the_newest_older_versions_and_no_more(tmp_path):
    path = tmp_path / "item_embeddings.parquet"
    ids = [f"i{n}" for n in range(25)]
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    for k, version in enumerate(("v1", "v2", "v3")):
        vectors = np.full((25, 4), k, dtype=np.float32)
        written = write_versioned_table(path, version, 2, 25, 7, _writer(ids, vectors, version,
                                                                         t0 + timedelta(hours=k)))
        assert written == (25 if k == 0 else 50)
    table = pl.read_parquet(path)
    assert table["model_version"].to_list() == ["v3"] * 25 + ["v2"] * 25  # v1 dropped: keep 2
    assert table.filter(pl.col("model_version") == "v2")["item_id"].to_list() == ids
    assert table.schema["transferable"] == pl.List(pl.Float32)
    assert table.filter(pl.col("model_version") == "v3")["transferable"].to_list()[0] == [2.0] * 4
    write_versioned_table(path, "v3", 1, 25, 100, _writer(ids, np.zeros((25, 4), np.float32), "v3", t0))
    assert pl.read_parquet(path)["model_version"].unique().to_list() == ["v3"]


# The writer in a fresh process over `rows` items of 64-d vectors (the arrays exist before the peak is
# reset: stage 2 holds them anyway); prints the peak RSS growth while writing, twice (a second version
# makes the writer copy the first one back from the file).
_MEASURE = """
import json, sys
from datetime import UTC, datetime
from pathlib import Path
import numpy as np, polars as pl
from rgcd.memory import peak_rss_bytes, reset_peak_rss, trim_heap
from rgcd.training.vector_tables import TIMESTAMP, vectors_column, write_versioned_table
rows, path = int(sys.argv[1]), Path(sys.argv[2])
ids = [f"item:{n}" for n in range(rows)]
vectors = np.random.default_rng(0).standard_normal((rows, 64)).astype(np.float32)
def writer(version):
    def batch(start, stop):
        n = stop - start
        return pl.DataFrame([pl.Series("item_id", ids[start:stop], pl.Utf8),
                             vectors_column(vectors[start:stop], n).alias("transferable"),
                             pl.Series("model_version", [version] * n, pl.Utf8),
                             pl.Series("created_timestamp", [datetime.now(UTC)] * n, dtype=TIMESTAMP)])
    return batch
peaks = []
for version in ("v1", "v2"):
    trim_heap(); reset_peak_rss(); base = peak_rss_bytes()
    write_versioned_table(path, version, 3, rows, 10_000, writer(version))
    peaks.append(peak_rss_bytes() - base)
print(json.dumps(peaks))
"""


def test_the_writers_peak_does_not_grow_with_the_catalogue(tmp_path):
    """8x the items (100 MiB of vectors in memory, then on disk twice) adds < 30 MiB to the peak."""
    from rgcd.memory import reset_peak_rss

    if not reset_peak_rss():
        import pytest

        pytest.skip("this OS cannot reset the peak RSS (/proc/self/clear_refs)")
    growth = {}
    for rows in (50_000, 400_000):
        out = subprocess.run([sys.executable, "-c", _MEASURE, str(rows), str(tmp_path / f"{rows}.parquet")],
                             capture_output=True, text=True, check=True)
        growth[rows] = max(json.loads(out.stdout.strip().splitlines()[-1]))
    assert growth[400_000] - growth[50_000] < 30 * 2**20, growth
