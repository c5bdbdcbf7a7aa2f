"""benchmarks/signal_sweep.py: its worlds, its summary of a report and its plot, on fake reports."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("signal_sweep", ROOT / "benchmarks" / "signal_sweep.py")
sweep = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sweep)


def test_each_knob_moves_alone_around_the_demo_default_and_the_default_world_runs_once():
    from rgcd.config import DemoWorld

    assert {k: getattr(DemoWorld(), k) for k in sweep.DEFAULTS} == sweep.DEFAULTS
    worlds = dict(sweep.worlds())
    assert len(worlds) == 5 and all(len(levels) >= 3 for _, levels in sweep.SWEEPS.values())
    for knobs in worlds.values():
        assert sum(knobs[k] != sweep.DEFAULTS[k] for k in knobs) <= 1
    doc = sweep.settings_doc(sweep.parse_args(["--users", "50"]), worlds[next(iter(worlds))])
    assert doc["demo"]["users"] == 50 and doc["evaluation"]["protocols"] == ["live-room"]
    smoke = sweep.settings_doc(sweep.parse_args(["--preset", "smoke"]), worlds[next(iter(worlds))])
    assert smoke["student"] == {"steps": 40, "max_train_items": 300, "eval_items": 40, "seed": 0}
    assert smoke["evaluation"]["seeds"] == [0] and smoke["evaluation"]["mf_samples"] == 2**15


def _metrics(values: dict[str, dict[str, float]]) -> dict:
    models = {m: {s: {"NDCG@10": v, "HR@10": 2 * v} for s, v in by_slice.items()}
              for m, by_slice in values.items()}
    return {"protocols": {"live-room": models}, "cases": {"live-room": {"all": 10, "tail": 4}},
            "intervals": {"live-room": {"all": {"baseline": "uniembed", "models": {
                "rgcd": {"NDCG@10": {"delta": 0.01, "lo_holm": -0.01, "hi_holm": 0.03}}}}}}}


def test_the_summary_names_the_strongest_model_and_baseline_never_the_oracle():
    metrics = _metrics({"popularity": {"all": 0.1, "tail": 0.0}, "uniembed": {"all": 0.2, "tail": 0.05},
                        "rgcd": {"all": 0.21, "tail": 0.01}, "oracle": {"all": 0.9, "tail": 0.5}})
    out = sweep.summarise(metrics, {"popularity", "uniembed"})
    assert out["all"]["strongest"] == "rgcd" and out["all"]["strongest_baseline"] == "uniembed"
    assert out["tail"]["strongest"] == "uniembed" and out["tail"]["cases"] == 4
    assert out["all"]["intervals"]["rgcd"]["delta"] == pytest.approx(0.01)


def test_the_plot_is_written(tmp_path):
    metrics = _metrics({"popularity": {"all": 0.1, "tail": 0.0}, "rgcd": {"all": 0.2, "tail": 0.1},
                        "oracle": {"all": 0.5, "tail": 0.3}})
    point = {"label": "x", "slices": sweep.summarise(metrics, {"popularity"})}
    sweep.plot({"multimodal": [point, point, point], "text": [point, point, point]}, tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    point["channels"], point["level"] = [{"channel": "vectors", "domain": "live", "purity_10nn": 0.3,
                                          "probe_accuracy": 0.7}], 2.4
    table = sweep.markdown({"multimodal": [point]})
    assert "| 2.4 | vectors live 0.30 / 0.70 | rgcd 0.2000 (+0.0100 [-0.0100, +0.0300] vs uniembed)" in table
