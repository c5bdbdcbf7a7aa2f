"""benchmarks/yardstick.py: its arguments and its aggregation, on a tiny fake set of run reports."""

import importlib.util
from pathlib import Path

import numpy as np
import pydantic
import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("yardstick", ROOT / "benchmarks" / "yardstick.py")
yardstick = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(yardstick)


def test_arguments_and_the_settings_each_run_gets():
    args = yardstick.parse_args(["--preset", "smoke", "--world-seeds", "3", "4", "--seeds", "0", "1",
                                 "--set", "transfer.steps=7", "--set", "evaluation.seeds=[5]",
                                 "--set", "student.seed=9"])
    assert args.world_seeds == [3, 4] and args.seeds == [0, 1]
    doc = yardstick.settings_doc(args, world_seed=4, seed=1)
    assert doc["demo"] == {"users": 400, "days": 6, "seed": 4}
    assert doc["transfer"]["steps"] == 7 and doc["transfer"]["seed"] == 1
    # what the benchmark varies wins over an override that would fix it
    assert doc["student"]["seed"] == 1 and doc["evaluation"]["seeds"] == [1]
    assert yardstick.PRESETS["smoke"]["demo"] == {"users": 400, "days": 6}  # the preset is not mutated
    assert yardstick.settings_doc(yardstick.parse_args(["--users", "50"]), 7, 0)["demo"]["users"] == 50


@pytest.mark.parametrize("argv", [["--seeds", "1", "1"], ["--users", "0"], ["--set", "steps=3"],
                                  ["--set", "transfer.steps"], ["--n-boot", "5"]])
def test_arguments_that_cannot_run_are_refused(argv, capsys):
    with pytest.raises(SystemExit):
        yardstick.parse_args(argv)


def test_a_setting_that_does_not_exist_stops_before_anything_runs():
    args = yardstick.parse_args(["--set", "transfer.stepz=3"])
    with pytest.raises(pydantic.ValidationError):
        yardstick.settings_doc(args, 7, 0)


def _report(folder: Path, arrays: dict[str, np.ndarray]) -> Path:
    folder.mkdir(parents=True)
    np.savez_compressed(folder / "per_case.npz", **arrays)
    return folder


def _fake_runs(tmp_path: Path) -> dict[int, dict[int, Path]]:
    """Two worlds x two seeds. On `all`, creator_link (0.3 / 0.4) beats popularity (0.1 / 0.2) and
    rgcd is creator_link + 0.05 or + 0.15 by seed in world 1, + 0.1 in world 2. On `tail`,
    popularity is the strongest baseline."""
    worlds: dict[int, dict[int, Path]] = {}
    for w, n, pop, link, gains in ((1, 200, 0.1, 0.3, (0.05, 0.15)), (2, 100, 0.2, 0.4, (0.1, 0.1))):
        for seed, gain in enumerate(gains):
            arrays = {}
            for model, value, tail in (("popularity", pop, 0.5), ("creator_link", link, 0.2),
                                       ("rgcd", link + gain, 0.6)):
                for metric in ("NDCG@10", "HR@10"):
                    arrays[f"live-room|{model}|{seed}|all|{metric}"] = np.full(n, value, np.float32)
                    arrays[f"live-room|{model}|{seed}|tail|{metric}"] = np.full(n // 2, tail, np.float32)
            worlds.setdefault(w, {})[seed] = _report(tmp_path / f"w{w}s{seed}", arrays)
    return worlds


def test_aggregation_pools_worlds_and_seeds_against_the_strongest_baseline(tmp_path):
    agg = yardstick.aggregate(_fake_runs(tmp_path), {"popularity", "creator_link"}, n_boot=400)
    means = agg["means"]["live-room"]
    assert means["creator_link"]["all"]["NDCG@10"] == pytest.approx(0.35)  # mean of the worlds' means
    assert means["rgcd"]["all"]["NDCG@10"] == pytest.approx(0.45)
    iv = agg["intervals"]["live-room"]
    assert iv["all"]["baseline"] == "creator_link" and iv["tail"]["baseline"] == "popularity"
    assert set(iv["all"]["models"]) == {"popularity", "rgcd"}  # never the baseline against itself
    e = iv["all"]["models"]["rgcd"]["NDCG@10"]
    # cases are constant, so only world 1's seeds vary: its mean is 0.05, 0.1 or 0.15 by the seeds
    # drawn, world 2's 0.1; the pooled statistic is their average
    assert e["delta"] == pytest.approx(0.1)
    assert e["lo"] == pytest.approx(0.075, abs=1e-6) and e["hi"] == pytest.approx(0.125, abs=1e-6)
    assert (e["n_cases"], e["n_seeds"]) == (300, 2)
    tail = iv["tail"]["models"]["rgcd"]["NDCG@10"]
    assert tail["delta"] == pytest.approx(0.1) and tail["lo"] == pytest.approx(0.1)
    # Holm over the two slices: the smaller p is doubled
    ps = sorted(iv[s]["models"]["rgcd"]["NDCG@10"]["p"] for s in ("all", "tail"))
    assert sorted(iv[s]["models"]["rgcd"]["NDCG@10"]["p_holm"] for s in ("all", "tail"))[0] == pytest.approx(
        min(1.0, 2 * ps[0]))
    assert yardstick.ratios(agg)["live-room"]["all"]["rgcd"] == pytest.approx(0.45 / 0.35, abs=1e-4)
    table = yardstick.markdown(agg, [1, 2], [0, 1])
    assert "| creator_link | 0.3500 (baseline)" in table and "all (vs creator_link)" in table


def test_a_world_whose_cases_differ_across_seeds_is_refused(tmp_path):
    worlds = {1: {0: _report(tmp_path / "a", {"live-room|popularity|0|all|NDCG@10": np.zeros(3)}),
                  1: _report(tmp_path / "b", {"live-room|popularity|1|all|NDCG@10": np.zeros(4)})}}
    with pytest.raises(SystemExit, match="different cases"):
        yardstick.aggregate(worlds, {"popularity"}, n_boot=100)


def test_the_baseline_is_chosen_on_validation_means_where_every_run_has_them(tmp_path):
    import json

    worlds = _fake_runs(tmp_path)
    for by_seed in worlds.values():  # popularity leads on the validation cases of `all`
        for report in by_seed.values():
            valid = {"live-room": {"popularity": {"all": {"NDCG@10": 0.6}},
                                   "creator_link": {"all": {"NDCG@10": 0.5}}}}
            (report / "metrics.json").write_text(json.dumps({"valid_protocols": valid}))
    iv = yardstick.aggregate(worlds, {"popularity", "creator_link"}, n_boot=100)["intervals"]["live-room"]
    assert iv["all"]["baseline"] == "popularity" and iv["all"]["chosen_on"] == "validation split"
    assert iv["tail"]["chosen_on"].startswith("test split")
    assert iv["all"]["models"]["rgcd"]["NDCG@10"]["delta"] == pytest.approx(0.45 - 0.15)
