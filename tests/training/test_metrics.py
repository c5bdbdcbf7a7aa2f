import math

import numpy as np
import pytest

from rgcd.training.metrics import batch_metrics, hit_rate, ndcg, recall


def test_hand_computed_values():
    ranked = ["a", "b", "c", "d", "e"]
    positives = {"b", "e", "z"}  # z is never ranked
    assert hit_rate(ranked, positives, 1) == 0.0
    assert hit_rate(ranked, positives, 2) == 1.0
    # Recall divides by all positives (3), not by min(positives, K).
    assert recall(ranked, positives, 2) == pytest.approx(1 / 3)
    assert recall(ranked, positives, 5) == pytest.approx(2 / 3)
    # NDCG@2: hit at rank 2 -> 1/log2(3); ideal over min(3, 2) = 2 positives -> 1 + 1/log2(3).
    assert ndcg(ranked, positives, 2) == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    # NDCG@5: hits at ranks 2 and 5; ideal over min(3, 5) = 3 positives.
    dcg = 1 / math.log2(3) + 1 / math.log2(6)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg(ranked, positives, 5) == pytest.approx(dcg / idcg)


def test_single_positive_at_top_and_missing():
    assert ndcg(["x", "y"], {"x"}, 10) == 1.0
    assert ndcg(["y", "x"], {"x"}, 10) == pytest.approx(1 / math.log2(3))
    assert recall(["y", "w"], {"x"}, 10) == 0.0
    assert hit_rate(["y", "w"], {"x"}, 10) == 0.0


def test_no_positives_or_bad_k_is_an_error():
    with pytest.raises(ValueError, match="positives"):
        recall(["a"], set(), 1)
    with pytest.raises(ValueError, match="K"):
        ndcg(["a"], {"a"}, 0)


def test_batched_equals_pure_on_random_cases():
    rng = np.random.default_rng(3)
    ks = [1, 3, 10]
    hits_rows, n_pos, cases = [], [], []
    for _ in range(200):
        ranked = list(rng.permutation(30)[:10])
        positives = set(rng.choice(30, size=rng.integers(1, 6), replace=False).tolist())
        cases.append((ranked, positives))
        hits_rows.append([r in positives for r in ranked])
        n_pos.append(len(positives))
    got = batch_metrics(np.array(hits_rows), np.array(n_pos), ks)
    for k in ks:
        for i, (ranked, positives) in enumerate(cases):
            assert got[f"HR@{k}"][i] == hit_rate(ranked, positives, k)
            assert got[f"Recall@{k}"][i] == pytest.approx(recall(ranked, positives, k))
            assert got[f"NDCG@{k}"][i] == pytest.approx(ndcg(ranked, positives, k))


def test_batched_refuses_cases_without_positives_or_short_rankings():
    with pytest.raises(ValueError, match="positive"):
        batch_metrics(np.zeros((1, 5), bool), np.array([0]), [5])
    with pytest.raises(ValueError, match="fewer than K"):
        batch_metrics(np.zeros((1, 5), bool), np.array([1]), [10])
