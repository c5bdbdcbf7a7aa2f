import json

import numpy as np
import pytest
from click.testing import CliRunner

from rgcd.cli import cli
from training.evaluation import SLICES, MissingMartError, run_evaluation
from training.report import pca_2d


def test_report_files_and_schema(eval_ws, eval_cfg):
    out, doc = run_evaluation(eval_ws, eval_cfg, seeds=[0, 1], run="t", models=["popularity", "uniembed"],
                              progress=False)
    assert out == eval_ws.reports / "t"
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["protocols"] == doc["protocols"] and doc["seeds"] == [0, 1]
    names = {f"{m}@{k}" for m in ("HR", "Recall", "NDCG") for k in eval_cfg.ks}
    assert set(doc["protocols"]) == {"klm3-cdr", "live-room"}
    for p, models in doc["protocols"].items():
        assert list(models) == ["popularity", "uniembed"]
        for m, slices in models.items():
            assert set(slices) == set(SLICES)
            for s, metrics in slices.items():
                assert set(metrics) == names, (p, m, s)
                assert all(0.0 <= v <= 1.0 for v in metrics.values())
                assert set(doc["std"][p][m][s]) == names
                assert all(isinstance(v, float) for v in doc["std"][p][m][s].values())
        # The "strongest" entry is computed from the table, not written by hand.
        for s in SLICES:
            best = max(models, key=lambda m, s=s: models[m][s]["NDCG@10"])
            assert doc["strongest"][p][s]["model"] == best
    md = (out / "report.md").read_text()
    assert "| model |" in md and "the strongest baseline is" in md and "± " in md
    for png in ("hr_at_k_klm3-cdr.png", "hr_at_k_live-room.png", "item_projection.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert doc["timing_s"]["total"] > 0


def test_same_seeds_reproduce_the_same_numbers(eval_ws, eval_cfg):
    _, a = run_evaluation(eval_ws, eval_cfg, seeds=[5], run="r1", models=["bpr_mf"], progress=False)
    _, b = run_evaluation(eval_ws, eval_cfg, seeds=[5], run="r2", models=["bpr_mf"], progress=False)
    assert a["protocols"] == b["protocols"]
    assert a["std"]["live-room"]["bpr_mf"]["all"]["HR@10"] is None  # one seed: no noise estimate


def test_cli_evaluate_and_missing_marts(eval_ws, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["--workspace", str(eval_ws.root), "evaluate", "--seeds", "0",
                              "--run", "cli", "--models", "popularity"])
    assert res.exit_code == 0, res.output
    assert (eval_ws.reports / "cli" / "metrics.json").exists()
    res = runner.invoke(cli, ["--workspace", str(tmp_path / "empty"), "evaluate"])
    assert res.exit_code == 2 and "rgcd build" in res.output
    res = runner.invoke(cli, ["--workspace", str(eval_ws.root), "evaluate", "--models", "popularity,magic"])
    assert res.exit_code == 2 and "unknown model(s) magic" in res.output
    res = runner.invoke(cli, ["--workspace", str(eval_ws.root), "evaluate", "--seeds", "a,b"])
    assert res.exit_code == 2 and "comma-separated" in res.output


def test_pca_finds_the_direction_of_largest_variance():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 5)) * np.array([10.0, 1, 1, 1, 1])
    coords, ratio = pca_2d(x)
    assert coords.shape == (500, 2) and ratio[0] > 0.8
    assert abs(np.corrcoef(coords[:, 0], x[:, 0])[0, 1]) > 0.99


def test_pipeline_stage_evaluates_or_says_what_is_missing(eval_ws, eval_cfg, tmp_path):
    from rgcd.config import Settings, Workspace
    from rgcd.pipeline import STAGES

    stage = next(s for s in STAGES if s.name == "evaluate")
    settings = Settings(evaluation=eval_cfg.model_copy(update={"models": ["popularity"], "seeds": [0]}))
    line = stage.run(eval_ws, settings, None)
    assert "2 protocols x 1 models x 1 seeds" in line and str(eval_ws.reports) in line
    with pytest.raises(MissingMartError, match="rgcd build"):
        stage.run(Workspace(tmp_path).ensure(), settings, None)


def test_a_protocol_without_test_cases_is_skipped_and_reported(eval_ws, eval_cfg, tmp_path):
    import shutil

    import polars as pl

    from rgcd.config import Workspace
    from training.evaluation import EvaluationDataError

    ws = Workspace(tmp_path / "ws").ensure()
    for f in eval_ws.marts.glob("*.parquet"):
        shutil.copy(f, ws.marts / f.name)
    klm3 = pl.read_parquet(ws.marts / "eval_klm3_cdr.parquet")
    klm3.filter(pl.col("domain") == "photo").write_parquet(ws.marts / "eval_klm3_cdr.parquet")
    out, doc = run_evaluation(ws, eval_cfg, seeds=[0], run="s", models=["popularity"], progress=False)
    assert list(doc["protocols"]) == ["live-room"] and "no live test rows" in doc["skipped"]["klm3-cdr"]
    assert "Protocol klm3-cdr was skipped" in (out / "report.md").read_text()

    live = pl.read_parquet(ws.marts / "eval_live_room.parquet")
    live.filter(pl.col("split") == "train").write_parquet(ws.marts / "eval_live_room.parquet")
    with pytest.raises(EvaluationDataError, match="no protocol has test cases"):
        run_evaluation(ws, eval_cfg, seeds=[0], run="s2", models=["popularity"], progress=False)


def test_other_ks_still_give_a_table_and_a_strongest_model(eval_ws, eval_cfg):
    cfg = eval_cfg.model_copy(update={"ks": [5]})
    out, doc = run_evaluation(eval_ws, cfg, seeds=[0], run="k5", models=["popularity", "content_mm"],
                              progress=False)
    assert doc["strongest"]["live-room"]["all"]["metric"] == "NDCG@5"
    assert "Overall HR@5" in (out / "report.md").read_text()
