import logging
import random

import numpy as np
import torch

from rgcd.training.checkpoint import Checkpointer, restore_rng, rng_state


def _model_and_optimizer(seed: int = 0):
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Linear(3, 1))
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    return model, opt


def _train(model, opt, steps: int) -> None:
    for _ in range(steps):
        x = torch.randn(8, 4)
        loss = model(x).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_round_trip_restores_model_optimizer_and_rng(tmp_path):
    model, opt = _model_and_optimizer()
    _train(model, opt, 3)
    ck = Checkpointer(tmp_path / "ck", every_steps=3, fingerprint="f1")
    assert not ck.maybe_save(2, {}) and ck.load() is None
    assert ck.maybe_save(3, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                             "losses": [0.5, 0.25], "extra": (1, None, "x")})
    expected_draws = (torch.rand(3), np.random.rand(2), random.random())

    got = ck.load()
    assert got["step"] == 3 and got["losses"] == [0.5, 0.25] and got["extra"] == (1, None, "x")
    model2, opt2 = _model_and_optimizer(seed=99)
    model2.load_state_dict(got["model"])
    opt2.load_state_dict(got["optimizer"])
    restore_rng(got["rng"])
    assert torch.equal(torch.rand(3), expected_draws[0])
    assert np.array_equal(np.random.rand(2), expected_draws[1]) and random.random() == expected_draws[2]
    # both continue identically
    torch.manual_seed(5)
    _train(model, opt, 2)
    torch.manual_seed(5)
    _train(model2, opt2, 2)
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)


def test_tied_weights_are_saved(tmp_path):
    emb = torch.nn.Embedding(5, 2)
    head = torch.nn.Linear(2, 5, bias=False)
    head.weight = emb.weight
    state = {"emb": emb.state_dict(), "head": head.state_dict()}
    Checkpointer(tmp_path, every_steps=1).save(1, state)
    got = Checkpointer(tmp_path, every_steps=1).load()
    assert torch.equal(got["head"]["weight"], emb.weight.detach())


def test_only_the_latest_checkpoint_is_kept_and_clear_removes_it(tmp_path):
    ck = Checkpointer(tmp_path / "ck", every_steps=2)
    for step in range(1, 7):
        ck.maybe_save(step, {"w": torch.full((2,), float(step))})
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["step-000000006"]
    assert ck.load()["w"].tolist() == [6.0, 6.0]
    ck.clear()
    assert not (tmp_path / "ck").exists() and ck.load() is None


def test_a_torn_checkpoint_is_skipped_with_one_line_and_an_older_one_used(tmp_path, caplog):
    ck = Checkpointer(tmp_path, every_steps=1, keep=2)
    ck.save(1, {"w": torch.ones(3)})
    newest = ck.save(2, {"w": torch.zeros(3)})
    tensors = newest / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:20])
    with caplog.at_level(logging.WARNING, logger="rgcd.training.checkpoint"):
        got = ck.load()
    assert got["step"] == 1 and got["w"].tolist() == [1.0, 1.0, 1.0]
    assert len(caplog.records) == 1 and "step-000000002" in caplog.records[0].getMessage()
    assert "\n" not in caplog.records[0].getMessage()


def test_a_checkpoint_of_another_run_is_not_resumed(tmp_path, caplog):
    Checkpointer(tmp_path, every_steps=1, fingerprint="config-a").save(4, {"w": torch.ones(1)})
    with caplog.at_level(logging.WARNING, logger="rgcd.training.checkpoint"):
        assert Checkpointer(tmp_path, every_steps=1, fingerprint="config-b").load() is None
    assert "another run" in caplog.text


def test_disabled_checkpointer_writes_nothing(tmp_path):
    ck = Checkpointer(tmp_path / "ck", every_steps=0)
    assert not ck.maybe_save(10, {"w": torch.ones(1)}) and ck.load() is None
    assert not (tmp_path / "ck").exists()
