from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest
from eval_world import build_marts

from rgcd.config import EvaluationConfig, Workspace
from rgcd.training.baselines import MODELS, UnknownModelError, build_model
from rgcd.training.baselines.popularity import Popularity
from rgcd.training.evaluation import evaluate_model, load_protocols
from rgcd.training.recommender import UNKNOWN_SCORE, ItemCatalog, Recommender, TrainData


def _tiny_train() -> TrainData:
    content = pl.DataFrame({
        "item_id": ["live:10", "live:11", "photo:1"], "domain": ["live", "live", "photo"],
        "author_id": [1, 2, 5], "start_timestamp": [datetime(2025, 1, 1, tzinfo=UTC)] * 2 + [None]})
    inter = pl.DataFrame({"user_id": [1, 2, 3, 1], "item_id": ["live:10"] * 3 + ["live:11"],
                          "key": ["author:1"] * 3 + ["author:2"], "domain": ["live"] * 4,
                          "event_timestamp": [datetime(2025, 1, 1, tzinfo=UTC)] * 4})
    return TrainData("t", inter, ItemCatalog(content))


def test_popularity_ranks_by_training_count_through_the_author():
    model = Popularity()
    model.fit(_tiny_train(), seed=0)
    scores = model.score(np.array([1, 99]), ["live:11", "live:10", "author:9"])
    assert scores.tolist() == [[1.0, 3.0, UNKNOWN_SCORE], [1.0, 3.0, UNKNOWN_SCORE]]


def _linked_train() -> TrainData:
    """Authors 1, 2, 3 stream (rooms 10, 11, 12, 13) and post short videos (photos 1-4)."""
    t = datetime(2025, 1, 1, tzinfo=UTC)
    content = pl.DataFrame({
        "item_id": ["live:10", "live:11", "live:12", "live:13", "photo:1", "photo:2", "photo:3", "photo:4"],
        "domain": ["live"] * 4 + ["photo"] * 4, "author_id": [1, 2, 3, 3, 1, 1, 2, 3],
        "start_timestamp": [t] * 4 + [None] * 4})
    rows = [  # (user, item, key, domain)
        (1, "photo:1", "photo:1", "photo"), (1, "photo:2", "photo:2", "photo"),
        (1, "photo:3", "photo:3", "photo"), (2, "photo:4", "photo:4", "photo"),
        (3, "live:12", "author:3", "live"), (4, "live:12", "author:3", "live"),
        (5, "live:11", "author:2", "live"),
    ]
    inter = pl.DataFrame({"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
                          "key": [r[2] for r in rows], "domain": [r[3] for r in rows],
                          "event_timestamp": [t] * len(rows)})
    return TrainData("t", inter, ItemCatalog(content))


def test_creator_link_counts_the_users_plays_of_each_rooms_creator():
    from rgcd.training.baselines.creator_link import CreatorLink

    model = CreatorLink()
    model.fit(_linked_train(), seed=0)
    items = ["live:10", "live:11", "live:13", "author:3", "photo:1", "live:99"]
    scores = model.score(np.array([2, 1, 7]), items)
    # user 1 played author 1 twice and author 2 once; user 2 author 3 once; user 7 nothing
    assert scores.tolist() == [[0, 0, 1, 1, UNKNOWN_SCORE, UNKNOWN_SCORE],
                               [2, 1, 0, 0, UNKNOWN_SCORE, UNKNOWN_SCORE],
                               [0, 0, 0, 0, UNKNOWN_SCORE, UNKNOWN_SCORE]]


def test_creator_link_popularity_is_lexicographic():
    from rgcd.training.baselines.creator_link import CreatorLinkPopularity

    model = CreatorLinkPopularity()
    model.fit(_linked_train(), seed=0)
    scores = model.score(np.array([1, 7]), ["live:10", "live:11", "live:12"])
    # popularity: author 3 has 2 live sessions, author 2 one, author 1 none; the top is 2
    assert scores[0].tolist() == pytest.approx([2 + 0 / 3, 1 + 1 / 3, 0 + 2 / 3])
    assert scores[1].tolist() == pytest.approx([0.0, 1 / 3, 2 / 3])
    assert scores[0].argsort().tolist() == [2, 1, 0]  # any play of a creator beats any popularity


def test_unknown_model_name_says_which_exist():
    with pytest.raises(UnknownModelError, match="popularity"):
        build_model("nope", None)


@pytest.fixture(scope="module")
def protocols(eval_ws, eval_cfg):
    return load_protocols(eval_ws, eval_cfg)


@pytest.mark.parametrize("name", list(MODELS))
def test_every_baseline_fits_scores_and_is_deterministic(name, protocols, eval_cfg):
    p = protocols["live-room"]
    users = p.test.users[:20]
    items = p.test.candidates[:15]
    runs = []
    for _ in range(2):
        model = build_model(name, eval_cfg)
        assert isinstance(model, Recommender) and model.name == name
        model.fit(p.train, seed=3)
        runs.append(model.score(users, items))
    assert runs[0].shape == (len(users), len(items))
    assert np.isfinite(runs[0]).all()
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5, atol=1e-6)


def test_cross_domain_models_reach_users_without_live_history(protocols, eval_cfg):
    p = protocols["live-room"]
    cold = np.unique(p.test.users[p.test.cold_start])
    assert len(cold) > 0
    spread = {}
    for name in ("bpr_mf", "emcdr", "uniembed"):
        model = build_model(name, eval_cfg)
        model.fit(p.train, seed=0)
        s = model.score(cold, p.test.candidates)
        spread[name] = float(np.std(s[:, s[0] > UNKNOWN_SCORE], axis=1).mean())
    # Live-only BPR-MF knows nothing about them (all equal); the cross-domain models do.
    assert spread["bpr_mf"] == 0.0
    assert spread["emcdr"] > 0 and spread["uniembed"] > 0


def test_author_content_uses_only_rooms_before_the_cut(protocols, eval_cfg):
    p = protocols["live-room"]
    cut = p.train.catalog.cut
    rooms = p.train.catalog.author_rooms()
    assert cut is not None and (rooms["start_timestamp"] < cut).all()


# ---- every model against a seeded random scorer, where its idea should help -----------------------

# A world with a planted signal: each user has one topic that drives both domains (90% of short-video
# plays, rooms of the topic 30x as likely as others on air), 30% of users have no live history
# before the cut, popular streamers draw more. Small: every fit takes a second or a few.
SIGNAL_WORLD = dict(users=300, days=6, authors=120, photos=400, seed=0, own_topic_share=0.9,
                    live_topic_weight=30.0, cold_share=0.3)
SIGNAL_CFG = EvaluationConfig(mf_samples=2**15, contrastive_samples=2**17, dim=16, text_max_items=100)
METRIC = "HR@1"  # few rooms are on air at once, so chance is high at K=10; the top pick tells more
MODEL_SEEDS = (0, 1, 2)
RANDOM_SEEDS = tuple(range(8))

# (protocol, slice) where each model's idea should beat chance. A new model is one line here, plus
# its factory in FACTORIES when it is not in rgcd.training.baselines.MODELS (the full method).
CLAIMS: dict[str, list[tuple[str, str]]] = {
    "popularity": [("live-room", "all")],  # popular streamers draw most entries
    # a user's short videos are mostly of their topic, so their creators' rooms are too
    "creator_link": [("live-room", "all")],
    "creator_link_popularity": [("live-room", "all")],
    "bpr_mf": [("klm3-cdr", "all")],  # every klm3-cdr test user has live history to factorise
    "content_mm": [("klm3-cdr", "all"), ("live-room", "all")],  # live history of one topic
    "content_text": [("live-room", "cold_start")],  # short-video titles share words with room names
    "uniembed": [("live-room", "cold_start")],  # one space: short-video history places the user
    "emcdr": [("live-room", "cold_start")],  # short-video vectors mapped into the live space
}
FACTORIES: dict[str, Callable[[EvaluationConfig], Recommender]] = {}


class SeededRandom:
    """The control: uniform random scores from the fit's seed; knows nothing."""

    name = "random"

    def fit(self, data, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def score(self, user_ids, item_ids) -> np.ndarray:
        return self.rng.random((len(user_ids), len(item_ids)))


@pytest.fixture(scope="module")
def signal_protocols(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("signal_ws")).ensure()
    build_marts(ws.marts, **SIGNAL_WORLD)
    return load_protocols(ws, SIGNAL_CFG)


def _metric_over_seeds(make: Callable[[], Recommender], protocol, slices: list[str],
                       seeds) -> dict[str, np.ndarray]:
    values: dict[str, list[float]] = {s: [] for s in slices}
    for seed in seeds:
        model = make()
        model.fit(protocol.train, seed)
        metrics, _ = evaluate_model(model, protocol.test, [1], seed)
        for s in slices:
            values[s].append(metrics[s][METRIC])
    return {s: np.array(v) for s, v in values.items()}


def test_every_model_has_a_claim_against_chance():
    assert set(MODELS) | set(FACTORIES) == set(CLAIMS)


@pytest.mark.parametrize("name", list(CLAIMS))
def test_model_beats_a_seeded_random_scorer_beyond_seed_noise(name, signal_protocols):
    factory = FACTORIES.get(name, lambda cfg: build_model(name, cfg))
    for protocol in sorted({p for p, _ in CLAIMS[name]}):
        slices = [s for p, s in CLAIMS[name] if p == protocol]
        p = signal_protocols[protocol]
        chance = _metric_over_seeds(SeededRandom, p, slices, RANDOM_SEEDS)
        got = _metric_over_seeds(lambda: factory(SIGNAL_CFG), p, slices, MODEL_SEEDS)
        for s in slices:
            noise = max(chance[s].std(ddof=1), got[s].std(ddof=1))
            margin = max(0.02, 3 * noise)
            what = f"{name} {protocol}/{s} {METRIC}: {got[s].round(4)} vs random {chance[s].round(4)}"
            assert got[s].mean() - chance[s].mean() > margin, what
            assert got[s].min() > chance[s].max(), what


def test_shared_items_are_masked_like_the_batch_by_batch_comparison():
    import torch

    from rgcd.training.baselines.uniembed import mask_shared_items

    gen = torch.Generator().manual_seed(0)
    for n, n_items in ((64, 20), (64, 1000), (8, 1)):
        items = torch.randint(0, n_items, (n,), generator=gen)
        logits = torch.randn(n, n, generator=gen)
        same = (items[None, :] == items[:, None]) & ~torch.eye(n, dtype=torch.bool)
        assert torch.equal(mask_shared_items(logits, items), logits.masked_fill(same, float("-inf")))


def test_klm3_author_content_is_fitted_only_before_its_cut(eval_ws, eval_cfg):
    """Rooms that start after klm3-cdr's cut get garbage vectors and titles: the catalogue's author
    rooms and content_mm's author vectors stay the same (a room's own vector may change: it is
    the room's content when it is a candidate on air, never an author's history)."""
    from rgcd.training.baselines.content import ContentMM
    from rgcd.training.evaluation import load_klm3_cdr

    marts = {n: pl.read_parquet(eval_ws.marts / f"{n}.parquet") for n in ("eval_klm3_cdr", "item_content")}
    before = load_klm3_cdr(marts, eval_cfg).train
    cut = before.catalog.cut
    post = (pl.col("domain") == "live") & (pl.col("start_timestamp") >= cut)
    assert marts["item_content"].filter(post).height > 0  # the world has rooms after the cut
    garbage = marts["item_content"].with_columns(
        pl.when(post).then(pl.col("mm_embedding").list.eval(pl.element() * 0 + 1e3))
        .otherwise(pl.col("mm_embedding")).alias("mm_embedding"),
        pl.when(post).then(pl.lit("garbage")).otherwise(pl.col("title")).alias("title"))
    after = load_klm3_cdr({**marts, "item_content": garbage}, eval_cfg).train
    assert after.catalog.cut == cut
    assert before.catalog.author_rooms().equals(after.catalog.author_rooms())
    fits = []
    for data in (before, after):
        model = ContentMM()
        model.fit(data, seed=0)
        fits.append({k: v for k, v in model.vectors.items() if k.startswith("author:")})
    assert fits[0].keys() == fits[1].keys() and len(fits[0]) > 0
    for key, vector in fits[0].items():
        np.testing.assert_array_equal(vector, fits[1][key])
