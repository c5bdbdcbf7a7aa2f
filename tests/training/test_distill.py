import json

import polars as pl
import pytest
from safetensors import safe_open

from rgcd.config import Settings
from training.distill import distill, linear_probe
from training.frames import MissingInput
from training.reasoning.run import reason


def _small() -> Settings:
    s = Settings()
    student = s.student.model_copy(
        update={
            "tiny_hidden": 32,
            "tiny_layers": 2,
            "tiny_heads": 2,
            "tiny_vocab": 500,
            "steps": 60,
            "batch_size": 16,
            "lr": 5e-3,
            "eval_items": 20,
        }
    )
    return s.model_copy(update={"student": student})


def test_linear_probe_on_hand_made_states():
    import torch

    x = torch.tensor([[0.0, 1.0], [0.1, 0.9], [1.0, 0.0], [0.9, 0.1], [0.8, 0.0]])
    acc, majority, k = linear_probe(x, ["a", "a", "b", "b", "b"], x[[0, 1, 2]], ["a", "a", "b"])
    assert (acc, k) == (1.0, 2) and majority == pytest.approx(1 / 3)


def test_distill_needs_reasoning_first(world_ws):
    with pytest.raises(MissingInput, match="rgcd reason"):
        distill(world_ws, _small(), show_progress=False)


def test_distill_end_to_end_and_resume(world_ws):
    settings = _small()
    reason(world_ws, settings, show_progress=False)
    report = distill(world_ws, settings, show_progress=False)
    items = pl.read_parquet(world_ws.marts / "item_content.parquet")
    index = pl.read_parquet(world_ws.models / "student" / "chorus_index.parquet")
    assert sorted(index["item_id"]) == sorted(items["item_id"]) and set(index["domain"]) == {"photo", "live"}
    with safe_open(world_ws.models / "student" / "chorus_states.safetensors", "pt") as f:
        assert f.get_tensor("chorus_states").shape == (items.height, 16, 32)
        assert f.metadata()["model_version"] == report.model_version
    saved = json.loads((world_ws.reports / "distill.json").read_text())
    assert saved["probe_accuracy"] > saved["probe_majority_rate"] + 0.3
    assert saved["final_loss"] < saved["first_loss"] / 3
    assert set(saved["generation_field_rate"]) == {"vertical_domain", "key_subject", "content_theme"}
    assert "not a pretrained LM" in saved["base"] and saved["teacher_ids"] == [
        "metadata-baseline (not an LLM)"
    ]
    assert (world_ws.models / "student" / "model" / "model.safetensors").exists()
    # a rerun reuses the finished training and the finished shards
    again = distill(world_ws, settings, show_progress=False)
    assert again.reused_training and again.encode_seconds == 0 and again.model_version == report.model_version
