import json

import numpy as np
import pytest
from click.testing import CliRunner

from rgcd.cli import cli
from rgcd.training.evaluation import SLICES, MissingMartError, run_evaluation
from rgcd.training.report import pca_2d


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


def test_worker_processes_give_the_numbers_of_one_process(eval_ws, eval_cfg):
    parallel = eval_cfg.model_copy(update={"workers": 2, "parallel_from_cases": 0})
    serial = eval_cfg.model_copy(update={"workers": 1})
    kw = {"seeds": [0, 1], "models": ["popularity", "bpr_mf"], "progress": False, "with_oracle": False}
    _, a = run_evaluation(eval_ws, parallel, run="pool", **kw)
    _, b = run_evaluation(eval_ws, serial, run="one", **kw)
    assert a["protocols"] == b["protocols"] and a["per_seed"] == b["per_seed"]
    assert list(a["protocols"]["live-room"]) == ["popularity", "bpr_mf"]  # report order kept


def test_a_worker_keeps_nothing_of_a_finished_job(eval_ws, eval_cfg):
    # What a model cached (encoded texts, index tensors) no later model reads, in one job or the next.
    from rgcd.training import evaluation, recommender, text_encoder

    evaluation._worker_setup(str(eval_ws.root), eval_cfg.model_dump_json(), None,
                             ["content_text", "bpr_mf"], [], False)
    try:
        for model in ("content_text", "bpr_mf"):
            out = evaluation._worker_job([(model, ["live-room"])], [10], [0])
            assert out["runs"][model]["live-room"][0][0].metrics
            assert not text_encoder._CACHE and recommender._LAST_PAIRS == [None, None]
    finally:
        evaluation._WORKER.pop("stack").close()
        evaluation._WORKER.clear()


def test_the_full_method_is_one_job_and_the_baselines_follow_largest_first():
    from rgcd.training.evaluation import _jobs

    full = ["rgcd", "rgcd-no-routing"]
    protocols = {"rgcd": ["klm3-cdr", "live-room"], "rgcd-no-routing": ["live-room"]}
    jobs = _jobs(["popularity", "content_text", "uniembed", *full, "oracle"], full,
                 lambda m: protocols.get(m, ["klm3-cdr", "live-room"]))
    assert jobs[0] == [("rgcd", ["klm3-cdr", "live-room"]), ("rgcd-no-routing", ["live-room"])]
    assert [job[0][0] for job in jobs[1:]] == ["content_text", "uniembed", "oracle", "popularity"]
    assert all(len(job) == 1 for job in jobs[1:])
    assert _jobs(["popularity"], [], lambda m: ["live-room"]) == [[("popularity", ["live-room"])]]


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
    from rgcd.training.evaluation import EvaluationDataError

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


# ---- aggregation and wording on crafted results whose answers are known ---------------------------

# NDCG@10 per seed (0, 1, 2) of each (model, slice) on live-room; HR@10 = NDCG@10 + 0.1.
CRAFTED = {
    "popularity": {"all": [0.30, 0.32, 0.34], "cold_start": [0.30, 0.32, 0.34], "tail": [0.50, 0.40, 0.60]},
    "bpr_mf": {"all": [0.20, 0.21, 0.22], "cold_start": [0.30, 0.31, 0.32], "tail": None},
    # not a baseline (the full method's slot): best everywhere, so bold, but never "strongest baseline"
    "rgcd": {"all": [0.90, 0.90, 0.90], "cold_start": [0.90, 0.90, 0.90], "tail": [0.90, 0.90, 0.90]},
}


def _crafted_result(seeds=(0, 1, 2)):
    from rgcd.training.evaluation import ModelRun
    from rgcd.training.report import EvaluationResult

    runs = []
    for model, slices in CRAFTED.items():
        for i, seed in enumerate(seeds):
            metrics = {s: ({} if v is None else {"NDCG@10": v[i], "HR@10": v[i] + 0.1, "Recall@10": v[i]})
                       for s, v in slices.items()}
            runs.append(ModelRun("live-room", model, seed, metrics, {"all": 9, "cold_start": 3, "tail": 2},
                                 fit_s=1.0 + i, eval_s=0.5))
    return EvaluationResult(run="crafted", seeds=list(seeds), ks=[10], runs=runs,
                            baselines={"popularity", "bpr_mf"},
                            cases={"live-room": {"all": 9, "cold_start": 3, "tail": 2}})


def test_headline_figures_are_the_mean_and_sample_std_of_the_seeds(tmp_path):
    from rgcd.training.report import write_report

    doc = json.loads((write_report(_crafted_result(), tmp_path) / "metrics.json").read_text())
    pop = doc["protocols"]["live-room"]["popularity"]
    assert pop["all"]["NDCG@10"] == pytest.approx(0.32)
    assert pop["tail"]["NDCG@10"] == pytest.approx(0.50)
    assert pop["tail"]["HR@10"] == pytest.approx(0.60)
    # Sample std (ddof=1): sqrt(((0.02)^2 + 0 + (0.02)^2) / 2) = 0.02; tail: sqrt((0.01+0.01)/2) = 0.1.
    std = doc["std"]["live-room"]["popularity"]
    assert std["all"]["NDCG@10"] == pytest.approx(0.02)
    assert std["tail"]["NDCG@10"] == pytest.approx(0.1)
    assert doc["std"]["live-room"]["rgcd"]["all"]["NDCG@10"] == pytest.approx(0.0, abs=1e-12)
    assert doc["protocols"]["live-room"]["bpr_mf"]["tail"] == {}  # a slice without values stays empty
    for seed in ("0", "1", "2"):
        assert doc["per_seed"][seed]["live-room"]["bpr_mf"]["all"]["NDCG@10"] == pytest.approx(
            CRAFTED["bpr_mf"]["all"][int(seed)])
    assert doc["timing_s"]["fit"]["live-room"]["popularity"] == pytest.approx(2.0)  # mean of 1, 2, 3


def test_strongest_runner_up_and_within_noise_on_known_answers(tmp_path):
    from rgcd.training.report import write_report

    out = write_report(_crafted_result(), tmp_path)
    best = json.loads((out / "metrics.json").read_text())["strongest"]["live-room"]
    # all: popularity 0.32 ± 0.02 leads bpr_mf 0.21 ± 0.01 by 0.11 > 0.02: a real lead.
    assert best["all"] == pytest.approx({"metric": "NDCG@10", "model": "popularity", "value": 0.32,
                                         "runner_up": "bpr_mf", "runner_up_value": 0.21,
                                         "within_noise": False})
    # cold_start: 0.32 ± 0.02 vs 0.31 ± 0.01, gap 0.01 <= 0.02: within seed noise.
    assert best["cold_start"]["model"] == "popularity" and best["cold_start"]["runner_up"] == "bpr_mf"
    assert best["cold_start"]["within_noise"] is True
    # tail: bpr_mf has no value there, so there is no runner-up and nothing to compare.
    assert best["tail"]["model"] == "popularity" and best["tail"]["runner_up"] is None
    assert best["tail"]["within_noise"] is None
    md = (out / "report.md").read_text()
    assert ("On live-room, the strongest baseline is popularity on all (NDCG@10 0.3200 vs bpr_mf 0.2100); "
            "popularity on cold_start (NDCG@10 0.3200 vs bpr_mf 0.3100, within seed noise); "
            "popularity on tail (NDCG@10 0.5000).") in md
    assert "rgcd on" not in md  # the full method is not a baseline


def test_one_seed_says_noise_is_unknown():
    from rgcd.training.report import strongest, strongest_sentences

    mean = {"p": {"a": {s: {"NDCG@10": 0.5} for s in ("all", "cold_start", "tail")},
                  "b": {s: {"NDCG@10": 0.4} for s in ("all", "cold_start", "tail")}}}
    std = {"p": {m: {s: {"NDCG@10": None} for s in ("all", "cold_start", "tail")} for m in ("a", "b")}}
    best = strongest(mean, std, {"a", "b"})
    assert best["p"]["all"]["within_noise"] is None and best["p"]["all"]["runner_up"] == "b"
    assert "(NDCG@10 0.5000 vs b 0.4000, one seed: noise unknown)" in strongest_sentences(best)[0]


def test_the_bold_cell_is_the_best_mean_of_its_column(tmp_path):
    from rgcd.training.report import write_report

    md = (write_report(_crafted_result(), tmp_path) / "report.md").read_text()
    lines = [line for line in md.splitlines() if line.startswith("| ")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    split = [[c.strip() for c in line.strip("|").split("|")] for line in lines[1:]]
    rows = {cells[0]: cells for cells in split}
    assert head[:3] == ["model", "Overall HR@10", "Overall NDCG@10"]
    # rgcd is best in every column it has a value in; popularity beats bpr_mf but is not bold.
    for col in range(1, len(head)):
        assert rows["rgcd"][col].startswith("**") and rows["rgcd"][col].endswith("**"), head[col]
        assert not rows["popularity"][col].startswith("**"), head[col]
    assert rows["popularity"][2] == "0.3200 ± 0.0200"
    assert rows["bpr_mf"][head.index("Tail items NDCG@10")] == "–"


def test_an_extra_model_is_evaluated_but_never_named_the_strongest_baseline(eval_ws, eval_cfg):
    """How the full method plugs in (README): `extra={name: factory}`; here an oracle-like model that
    scores each user's test rooms first, so it leads every slice, yet it is not a baseline."""
    import polars as pl

    live = pl.read_parquet(eval_ws.marts / "eval_live_room.parquet").filter(pl.col("split") == "test")
    entered = set(live.select("user_id", "item_id").iter_rows())

    class Peeking:
        name = "peeking"

        def fit(self, data, seed):
            pass

        def score(self, user_ids, item_ids):
            return np.array([[float((int(u), i) in entered) for i in item_ids] for u in user_ids])

    cfg = eval_cfg.model_copy(update={"protocols": ["live-room"]})
    out, doc = run_evaluation(eval_ws, cfg, seeds=[0], run="extra", models=["popularity"],
                              extra={"peeking": Peeking}, progress=False)
    models = doc["protocols"]["live-room"]
    assert list(models) == ["popularity", "peeking"]
    assert models["peeking"]["all"]["HR@10"] == 1.0 > models["popularity"]["all"]["HR@10"]
    assert all(e["model"] == "popularity" for e in doc["strongest"]["live-room"].values())
    assert "| peeking | **" in (out / "report.md").read_text()
