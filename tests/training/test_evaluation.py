from collections.abc import Sequence
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from rgcd.training.evaluation import EvalSet, evaluate_cases, evaluate_model, load_protocols, rank_top
from rgcd.training.recommender import ItemCatalog, Recommender


class TableModel:
    """Scores from a fixed {user: {item: score}} table; everything else 0."""

    name = "table"

    def __init__(self, table: dict[int, dict[str, float]]) -> None:
        self.table = table

    def fit(self, data, seed: int) -> None:
        pass

    def score(self, user_ids: np.ndarray, item_ids: Sequence[str]) -> np.ndarray:
        return np.array([[self.table.get(int(u), {}).get(i, 0.0) for i in item_ids] for u in user_ids])


def _evalset(**kw) -> EvalSet:
    base = dict(protocol="t", candidates=["a", "b", "c", "d", "e"], users=np.array([1, 2]),
                pos_ptr=np.array([0, 1, 3]), pos_idx=np.array([2, 0, 4]),
                cold_start=np.array([True, False]), tail_item=np.array([False, False, False, False, True]))
    base.update(kw)
    return EvalSet(**base)


def test_hand_ranked_cases_give_hand_computed_metrics():
    # user 1: ranking e d c b a, positive c at rank 3. user 2: ranking a b c d e, positives a, e.
    model = TableModel({1: dict(zip("abcde", [1, 2, 3, 4, 5], strict=True)),
                        2: dict(zip("abcde", [5, 4, 3, 2, 1], strict=True))})
    flags = {"not_linked": np.array([True, False, True]), "new_streamer": np.array([False, True, False]),
             "off_topic": np.array([False, False, False])}
    metrics, counts = evaluate_model(model, _evalset(pos_flags=flags), ks=[1, 3], seed=0)
    assert counts == {"all": 2, "cold_start": 1, "tail": 1, "not_linked": 2, "cold_start_not_linked": 1,
                      "new_streamer": 1, "off_topic": 0}
    assert metrics["all"]["HR@1"] == pytest.approx(0.5)
    assert metrics["all"]["HR@3"] == pytest.approx(1.0)
    assert metrics["all"]["Recall@3"] == pytest.approx((1 + 0.5) / 2)
    ndcg_u1 = (1 / np.log2(4)) / 1.0
    ndcg_u2 = 1.0 / (1 + 1 / np.log2(3))
    assert metrics["all"]["NDCG@3"] == pytest.approx((ndcg_u1 + ndcg_u2) / 2)
    assert metrics["cold_start"]["NDCG@3"] == pytest.approx(ndcg_u1)
    # tail slice: user 2 keeps only its tail positive e, ranked 5th -> no hit in the top 3.
    assert metrics["tail"]["HR@3"] == 0.0
    # not_linked: user 1's c (rank 3) and user 2's e only (rank 5: a miss, though a is first).
    assert metrics["not_linked"]["NDCG@3"] == pytest.approx((ndcg_u1 + 0.0) / 2)
    assert metrics["not_linked"]["HR@1"] == 0.0
    assert metrics["cold_start_not_linked"]["NDCG@3"] == pytest.approx(ndcg_u1)
    # new_streamer: user 2 keeps only a, ranked first, ideal DCG of one positive.
    assert metrics["new_streamer"]["NDCG@3"] == pytest.approx(1.0)
    assert metrics["off_topic"] == {}


def test_per_case_values_pair_up_and_average_to_the_means():
    model = TableModel({1: dict(zip("abcde", [1, 2, 3, 4, 5], strict=True)),
                        2: dict(zip("abcde", [5, 4, 3, 2, 1], strict=True))})
    out = evaluate_cases(model, _evalset(), ks=[10], seed=0)
    assert out.per_case["all"]["HR@10"].tolist() == [1.0, 1.0]
    # user 2: a at rank 1, e at rank 5 of two positives
    user2 = (1 + 1 / np.log2(6)) / (1 + 1 / np.log2(3))
    assert out.per_case["all"]["NDCG@10"].tolist() == pytest.approx([0.5, user2])
    assert out.per_case["all"]["NDCG@10"].mean() == pytest.approx(out.means["all"]["NDCG@10"])
    assert out.per_case["not_linked"] == {}  # no flags: no positive counts in the slice


def test_excluded_and_off_air_items_are_never_ranked():
    model = TableModel({1: {"a": 9, "b": 8, "c": 1}, 2: {"a": 9, "b": 8, "e": 1}})
    excl = _evalset(pos_ptr=np.array([0, 1, 2]), pos_idx=np.array([2, 4]),
                    excl_ptr=np.array([0, 2, 4]), excl_idx=np.array([0, 1, 0, 1]))
    metrics, _ = evaluate_model(model, excl, ks=[1], seed=0)
    assert metrics["all"]["HR@1"] == 1.0  # a and b excluded: the positive is first
    on_air = _evalset(pos_ptr=np.array([0, 1, 2]), pos_idx=np.array([2, 4]),
                      request_ms=np.array([100, 100]), cand_start_ms=np.array([200, 200, 0, 0, 0]),
                      cand_end_ms=np.array([300, 300, 150, 150, 150]))
    metrics, _ = evaluate_model(model, on_air, ks=[1], seed=0)
    assert metrics["all"]["HR@1"] == 1.0  # a and b not on air at t=100


def test_masked_items_never_count_as_hits_even_with_few_candidates():
    # Only b is on air; the positive a is not, so K=3 over 1 candidate must be a miss.
    model = TableModel({1: {"a": 5}})
    es = _evalset(candidates=["a", "b"], users=np.array([1]), pos_ptr=np.array([0, 1]), pos_idx=np.array([0]),
                  cold_start=np.array([False]), tail_item=np.array([False, False]),
                  request_ms=np.array([10]), cand_start_ms=np.array([20, 0]), cand_end_ms=np.array([30, 30]))
    metrics, _ = evaluate_model(model, es, ks=[3], seed=0)
    assert metrics["all"]["HR@3"] == 0.0


def test_ties_are_broken_at_random_not_by_position():
    scores = np.zeros((2000, 20))
    top = rank_top(scores, 1, np.random.default_rng(0))
    counts = np.bincount(top[:, 0], minlength=20)
    assert counts.min() > 50 and counts.max() < 160  # ~100 each: uniform, not always index 0
    scores[:, 7] = 1.0
    assert (rank_top(scores, 3, np.random.default_rng(1))[:, 0] == 7).all()
    # Different rows get different random orders among ties.
    assert len({tuple(r) for r in rank_top(np.zeros((50, 20)), 5, np.random.default_rng(2))}) > 40


def test_oracle_scores_perfectly_on_both_protocols(eval_ws, eval_cfg):
    protocols = load_protocols(eval_ws, eval_cfg)
    klm3 = pl.read_parquet(eval_ws.marts / "eval_klm3_cdr.parquet").filter(
        (pl.col("domain") == "live") & (pl.col("split") == "test"))
    table_klm3: dict[int, dict[str, float]] = {}
    for u, a in klm3.select("user_id", "item_id").iter_rows():
        table_klm3.setdefault(u, {})[f"author:{a}"] = 1.0
    metrics, counts = evaluate_model(TableModel(table_klm3), protocols["klm3-cdr"].test, eval_cfg.ks, 0)
    assert counts["all"] > 20 and counts["cold_start"] > 0 and counts["tail"] > 0
    for s in ("all", "cold_start", "tail"):
        assert metrics[s]["HR@10"] == 1.0
        assert metrics[s]["Recall@50"] == 1.0
        assert metrics[s]["NDCG@50"] == pytest.approx(1.0)

    live = pl.read_parquet(eval_ws.marts / "eval_live_room.parquet").filter(pl.col("split") == "test")
    table = {}
    for u, i in live.select("user_id", "item_id").iter_rows():
        table.setdefault(u, {})[i] = 1.0
    metrics, counts = evaluate_model(TableModel(table), protocols["live-room"].test, eval_cfg.ks, 0)
    assert counts["cold_start"] > 0
    for s in ("all", "cold_start", "tail"):
        assert metrics[s]["HR@10"] == 1.0  # a user enters < 10 rooms in the test days

    # The reverse oracle ranks every positive after all other candidates (40 live authors).
    anti = TableModel({u: {i: -v for i, v in row.items()} for u, row in table_klm3.items()})
    metrics, _ = evaluate_model(anti, protocols["klm3-cdr"].test, [10], 0)
    assert metrics["all"]["HR@10"] == 0.0


def test_live_room_split_and_candidates_follow_the_schedule(eval_ws, eval_cfg):
    p = load_protocols(eval_ws, eval_cfg, ["live-room"])["live-room"]
    test = p.test
    cut_ms = int(test.request_ms.min())
    train_ms = p.train.interactions["event_timestamp"].dt.epoch("ms").to_numpy()
    assert (train_ms < cut_ms).all()
    for case in range(test.n_cases):
        t = test.request_ms[case]
        for c in test.pos_idx[test.pos_ptr[case]:test.pos_ptr[case + 1]]:
            assert test.cand_start_ms[c] <= t < test.cand_end_ms[c]
    assert set(p.train.interactions.filter(pl.col("domain") == "live")["key"].str.slice(0, 7)) == {"author:"}


def test_klm3_excludes_train_and_valid_items_but_not_test_positives(eval_ws, eval_cfg):
    p = load_protocols(eval_ws, eval_cfg, ["klm3-cdr"])["klm3-cdr"]
    t = p.test
    for case in range(t.n_cases):
        pos = set(t.pos_idx[t.pos_ptr[case]:t.pos_ptr[case + 1]])
        excl = set(t.excl_idx[t.excl_ptr[case]:t.excl_ptr[case + 1]])
        assert pos and not pos & excl
    assert set(p.train.interactions["domain"]) == {"photo", "live"}
    assert int(np.ceil(0.25 * t.n_cases)) == t.cold_start.sum()


def test_catalog_maps_rooms_to_authors():
    content = pl.DataFrame({"item_id": ["live:1", "photo:2"], "domain": ["live", "photo"],
                            "author_id": [7, 8],
                            "start_timestamp": [datetime(2025, 1, 1, tzinfo=UTC), None]})
    cat = ItemCatalog(content)
    assert cat.cf_keys(["live:1", "photo:2", "author:3", "live:99"]) == ["author:7", "photo:2", "author:3",
                                                                        "live:99"]


def test_table_model_satisfies_the_protocol():
    assert isinstance(TableModel({}), Recommender)


def _klm3_marts() -> dict[str, pl.DataFrame]:
    """A crafted eval_klm3_cdr: live items are authors; each user's train, valid and test authors."""
    t = datetime(2025, 1, 1, tzinfo=UTC)
    rows = [  # (user, domain, item, split)
        (1, "photo", 500, "train"), (1, "live", 10, "train"), (1, "live", 11, "train"),
        (1, "live", 12, "valid"), (1, "live", 11, "test"), (1, "live", 13, "test"),
        (2, "photo", 501, "train"), (2, "live", 10, "train"), (2, "live", 14, "valid"),
        (2, "live", 14, "test"),
        (3, "live", 15, "train"), (3, "live", 12, "test"),
        (4, "live", 13, "train"), (4, "live", 12, "valid"),  # no test row: not a test case
    ]
    ev = pl.DataFrame({"user_id": [r[0] for r in rows], "domain": [r[1] for r in rows],
                       "item_id": [r[2] for r in rows], "split": [r[3] for r in rows],
                       "event_timestamp": [t] * len(rows)})
    # photo 500 is by author 11 (games), photo 501 by author 14 (food); author 12 has no topic
    content = pl.DataFrame({"item_id": ["photo:500", "photo:501", "live:1", "live:2", "live:3"],
                            "domain": ["photo", "photo", "live", "live", "live"],
                            "author_id": [11, 14, 11, 13, 14],
                            "category_l1": ["games", "food", "games", "food", "food"],
                            "start_timestamp": [None] * 5},
                           schema_overrides={"start_timestamp": pl.Datetime("us", "UTC")})
    return {"eval_klm3_cdr": ev, "item_content": content}


def test_klm3_exclusion_is_train_and_valid_minus_test_positives_on_a_crafted_case(eval_cfg):
    from rgcd.training.evaluation import load_klm3_cdr

    t = load_klm3_cdr(_klm3_marts(), eval_cfg).test
    assert t.candidates == [f"author:{a}" for a in (10, 11, 12, 13, 14, 15)]
    cases = {int(u): i for i, u in enumerate(t.users)}
    assert set(cases) == {1, 2, 3}

    def named(ptr, idx, case):
        return {t.candidates[c] for c in idx[ptr[case]:ptr[case + 1]]}

    # user 1: train {10, 11} + valid {12}, minus test positives {11, 13}; user 2: {10, 14} - {14}.
    expected_excl = {1: {"author:10", "author:12"}, 2: {"author:10"}, 3: {"author:15"}}
    expected_pos = {1: {"author:11", "author:13"}, 2: {"author:14"}, 3: {"author:12"}}
    for user, case in cases.items():
        assert named(t.excl_ptr, t.excl_idx, case) == expected_excl[user], user
        assert named(t.pos_ptr, t.pos_idx, case) == expected_pos[user], user


def test_klm3_validation_cases_exclude_train_items_only(eval_cfg):
    from rgcd.training.evaluation import load_klm3_cdr

    v = load_klm3_cdr(_klm3_marts(), eval_cfg).valid
    cases = {int(u): i for i, u in enumerate(v.users)}
    assert set(cases) == {1, 2, 4}  # the users with a valid row

    def named(ptr, idx, case):
        return {v.candidates[c] for c in idx[ptr[case]:ptr[case + 1]]}

    expected_pos = {1: {"author:12"}, 2: {"author:14"}, 4: {"author:12"}}
    expected_excl = {1: {"author:10", "author:11"}, 2: {"author:10"}, 4: {"author:13"}}
    for user, case in cases.items():
        assert named(v.pos_ptr, v.pos_idx, case) == expected_pos[user], user
        assert named(v.excl_ptr, v.excl_idx, case) == expected_excl[user], user


def test_klm3_slice_flags_on_a_crafted_case(eval_cfg):
    from rgcd.training.evaluation import load_klm3_cdr

    t = load_klm3_cdr(_klm3_marts(), eval_cfg).test
    flags = {}
    for case, user in enumerate(t.users):
        for e in range(t.pos_ptr[case], t.pos_ptr[case + 1]):
            flags[(int(user), t.candidates[t.pos_idx[e]])] = tuple(
                bool(t.pos_flags[f][e]) for f in ("not_linked", "new_streamer", "off_topic"))
    # user 1 played author 11 (games) only: 13 is not linked and off topic; nobody streams 14 or 12
    # in train; user 3 has no short video, so no topic to be off.
    assert flags == {(1, "author:11"): (False, False, False), (1, "author:13"): (True, False, True),
                     (2, "author:14"): (False, True, False), (3, "author:12"): (True, True, False)}


def test_klm3_exclusion_matches_the_mart_on_the_synthetic_world(eval_ws, eval_cfg):
    """Every case's exclusion set, recomputed from the mart: non-empty for most users, and right."""
    t = load_protocols(eval_ws, eval_cfg, ["klm3-cdr"])["klm3-cdr"].test
    live = pl.read_parquet(eval_ws.marts / "eval_klm3_cdr.parquet").filter(pl.col("domain") == "live")
    by_split: dict[tuple[int, str], set[str]] = {}
    for u, a, s in live.select("user_id", "item_id", "split").iter_rows():
        by_split.setdefault((u, "test" if s == "test" else "seen"), set()).add(f"author:{a}")
    non_empty = 0
    for case, user in enumerate(t.users):
        excl = {t.candidates[c] for c in t.excl_idx[t.excl_ptr[case]:t.excl_ptr[case + 1]]}
        want = by_split.get((int(user), "seen"), set()) - by_split[(int(user), "test")]
        assert excl == want, int(user)
        non_empty += bool(excl)
    assert non_empty > 0.9 * t.n_cases


def test_rank_top_equals_a_full_sort_with_the_same_tie_keys():
    """Both of rank_top's paths (rows without ties at the k-th place, and rows with them) give
    what sorting every row by (score, tie key) gives."""
    rng = np.random.default_rng(3)
    for trial in range(20):
        scores = rng.normal(size=(60, 80)).round(trial % 3)  # rounding makes ties
        scores[:, rng.random(80) < 0.3] = -np.inf
        scores[:5] = 0.0  # a user the model knows nothing about: every score equal
        for k in (1, 10, 80, 100):
            tie = np.random.default_rng(trial).random(scores.shape)
            want = []
            for row, keys in zip(scores, tie, strict=True):
                chosen = np.lexsort((-keys, -row))[:min(k, len(row))]  # best score, then highest key
                want.append(chosen[np.lexsort((keys[chosen], -row[chosen]))])
            got = rank_top(scores, k, np.random.default_rng(trial))
            assert np.array_equal(got, np.array(want)), (trial, k)


def test_a_model_whose_fit_reads_no_seed_is_fitted_once_and_ranked_per_seed(eval_ws, eval_cfg):
    """A seed-independent model (popularity) is fitted once for every seed; each seed still breaks
    ties its own way, and the metrics equal those of a fresh fit per seed."""
    from rgcd.training.baselines.popularity import Popularity
    from rgcd.training.evaluation import fit_and_evaluate, run_seeds

    protocol = load_protocols(eval_ws, eval_cfg, ["live-room"])["live-room"]
    made: list[Popularity] = []

    def factory() -> Popularity:
        made.append(Popularity())
        return made[-1]

    runs, _ = run_seeds("popularity", factory, protocol, eval_cfg.ks, [0, 1, 2], threads=1)
    assert len(made) == 1 and [r.seed for r in runs] == [0, 1, 2]
    assert runs[1].fit_s == 0.0 and runs[0].fit_s > 0
    fresh = [fit_and_evaluate(Popularity(), protocol, eval_cfg.ks, seed) for seed in (0, 1, 2)]
    assert [r.metrics for r in runs] == [r.metrics for r in fresh]
    assert runs[0].metrics != runs[1].metrics  # ties broken by each seed's keys (popularity ties)


def test_group_sums_equal_np_add_at_bit_for_bit():
    """`sum_rows_by` (np.bincount per column) adds the same float64 values in the same order as the
    np.add.at it replaced: the content profiles, and so the figures, do not move."""
    from rgcd.training.recommender import sum_rows_by

    rng = np.random.default_rng(3)
    values = (rng.normal(size=(500, 24)) * 10.0 ** rng.integers(-8, 3, size=(1, 24))).astype(np.float32)
    index, take = rng.integers(0, 70, size=20_000), rng.integers(0, 500, size=20_000)
    expected = np.zeros((70, 24))
    np.add.at(expected, index, values[take])
    assert np.array_equal(sum_rows_by(index, values, 70, take=take), expected)
    expected = np.zeros((70, 24))
    np.add.at(expected, index[:500], values)
    assert np.array_equal(sum_rows_by(index[:500], values, 70), expected)
