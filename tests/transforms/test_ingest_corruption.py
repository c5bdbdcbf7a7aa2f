"""Corruption sweep for ingest: truncations, flipped bytes, other delimiters and encodings,
header-only and empty files, huge fields. For every case the exit code is 0 or 2, never a
traceback, and when it is not 0 the lake and quarantine are byte-unchanged."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_ingest import DAY2, _lake_bytes, _world

from rgcd.cli import cli
from rgcd.config import IngestConfig, Workspace
from rgcd.transforms.ingest import ingest


def _truncate(share: float) -> Callable[[Path], None]:
    def cut(path: Path) -> None:
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * share)])
    return cut


def _flip(where: float, n: int = 8) -> Callable[[Path], None]:
    def flip(path: Path) -> None:
        data = bytearray(path.read_bytes())
        start = min(int(len(data) * where), len(data) - n)
        for i in range(start, start + n):
            data[i] ^= 0xA5
        path.write_bytes(bytes(data))
    return flip


def _delimiter(mark: str) -> Callable[[Path], None]:
    return lambda path: path.write_text(path.read_text().replace(",", mark))


def _encoding(codec: str) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(path.read_text().replace("feed", "fééd").encode(codec))


def _header_only(path: Path) -> None:
    if path.suffix == ".csv":
        path.write_text(path.read_text().splitlines()[0] + "\n")
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        pq.write_table(table.slice(0, 0), path)


def _huge_field(path: Path) -> None:
    lines = path.read_text().splitlines()
    cells = lines[1].split(",")
    cells[-1] = "9" * 3_000_000  # one 3 MB cell: bigger than a CSV read block
    path.write_text("\n".join([lines[0], ",".join(cells), *lines[2:]]) + "\n")


def _unbalanced_quote(path: Path) -> None:
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace(",", ',"', 1)
    path.write_text("\n".join(lines) + "\n")


def _nul_bytes(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + b"\x00" * 64 + data[len(data) // 2:])


BOTH = {"empty": _truncate(0.0), "ten bytes": _truncate(0.0001), "half": _truncate(0.5),
        "last byte cut": _truncate(0.999), "flipped at start": _flip(0.0),
        "flipped in the middle": _flip(0.5), "flipped near the end": _flip(0.97), "header only": _header_only}
CSV_ONLY = {"semicolons": _delimiter(";"), "tabs": _delimiter("\t"), "utf-16": _encoding("utf-16"),
            "latin-1": _encoding("latin-1"), "huge field": _huge_field, "unbalanced quote": _unbalanced_quote,
            "NUL bytes": _nul_bytes}
FILES = ["user_id_set.csv", "live_interaction.csv", "photo_meta.parquet", "photo_play.parquet"]
CASES = [(f, name, fn) for f in FILES
         for name, fn in {**BOTH, **(CSV_ONLY if f.endswith(".csv") else {})}.items()]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[Path, Path]:
    """A workspace holding one ingested day, and the raw folder of the next day."""
    root = tmp_path_factory.mktemp("sweep")
    ws = Workspace(root / "ws").ensure()
    ingest(_world(root / "day1"), ws, IngestConfig())
    return ws.root, _world(root / "day2", day=DAY2)


@pytest.mark.parametrize(("raw_file", "case", "corrupt"), CASES, ids=[f"{f}-{c}" for f, c, _ in CASES])
def test_a_corrupt_file_exits_0_or_2_and_a_refusal_leaves_the_lake_unchanged(base, tmp_path, raw_file, case,
                                                                            corrupt):
    ws_root, raw = base
    ws = Workspace(shutil.copytree(ws_root, tmp_path / "ws"))
    folder = Path(shutil.copytree(raw, tmp_path / "raw"))
    corrupt(folder / raw_file)
    before = _lake_bytes(ws)
    res = CliRunner().invoke(cli, ["--workspace", str(ws.root), "ingest", str(folder)])
    assert res.exception is None or isinstance(res.exception, SystemExit), (case, res.exception)
    assert res.exit_code in (0, 2), (case, res.output)
    assert "Traceback" not in res.output, (case, res.output)  # nor one that a library "ignored"
    if res.exit_code == 2:
        said = " ".join(res.output.split())
        assert raw_file in said, (case, said)  # the message names the file
        assert _lake_bytes(ws) == before, case
    assert not (ws.root / ".ingest-staging").exists()
