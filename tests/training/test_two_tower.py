"""The two-tower models' shared fixes (training/baselines/uniembed.py): own-domain negatives and one
creator identity across domains, for uniembed and the full method alike."""

from datetime import UTC, datetime

import numpy as np
import polars as pl
import torch

from rgcd.training.baselines.uniembed import UniEmbed, UniEmbedConfig, own_domain_only
from rgcd.training.recommender import ItemCatalog, TrainData

T = datetime(2025, 1, 1, tzinfo=UTC)


CREATORS = 6


def _creator_world() -> TrainData:
    """Creators 1-6 post short videos and stream; streamers 7-12 only stream. Ten users play each
    creator's videos and nothing else; ten users enter the rooms of each pair of streamers (k, k+6).
    No user plays a creator AND enters that creator's room: only the shared author_id links them."""
    photos = [(f"photo:{10 * k + j}", k) for k in range(1, CREATORS + 1) for j in range(5)]
    rooms = [(f"live:{100 + a}", a) for a in range(1, 2 * CREATORS + 1)]
    content = pl.DataFrame({"item_id": [i for i, _ in photos + rooms],
                            "author_id": [a for _, a in photos + rooms],
                            "domain": ["photo"] * len(photos) + ["live"] * len(rooms),
                            "start_timestamp": [None] * len(photos) + [T] * len(rooms)})
    rows = []
    for k in range(1, CREATORS + 1):
        for v in range(10):
            rows += [(10 * k + v, p, p, "photo") for p, a in photos if a == k]
            rows += [(1000 + 10 * k + v, r, f"author:{a}", "live")
                     for r, a in rooms if a in (k, k + CREATORS)]
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "key", "domain"], orient="row").with_columns(
        pl.lit(T).alias("event_timestamp"))
    return TrainData("t", inter, ItemCatalog(content))


def _linked_share(cfg: UniEmbedConfig) -> float:
    """How often a creator's viewer ranks that creator's room first among the creators' rooms."""
    data = _creator_world()
    viewers = np.array([10 * k + v for k in range(1, CREATORS + 1) for v in range(10)])
    hits = []
    for seed in range(3):
        model = UniEmbed(cfg)
        model.fit(data, seed)
        s = model.score(viewers, [f"live:{100 + a}" for a in range(1, CREATORS + 1)])
        hits.append((s.argmax(axis=1) == viewers // 10 - 1).mean())
    return float(np.mean(hits))


def test_a_creators_viewers_reach_that_creators_rooms_through_one_identity():
    cfg = UniEmbedConfig(dim=8, samples=2**13, batch_size=64)
    assert _linked_share(cfg) > 0.5
    # Without the shared identity nothing links them: chance is 1 in 6.
    cfg.creator_identity = False
    assert _linked_share(cfg) < 0.35


def test_a_live_positive_has_live_negatives_only():
    logits = torch.zeros(4, 4)
    is_live = torch.tensor([True, False, True, False])
    masked = own_domain_only(logits, is_live)
    assert torch.isinf(masked[0, 1]) and torch.isinf(masked[1, 0]) and masked[0, 2] == 0 and masked[1, 3] == 0
    assert (torch.isinf(masked).sum(dim=1) == 2).all()


def _room_world() -> TrainData:
    """Two streamers per topic (0: streamers 1, 2; 1: streamers 3, 4); each room's vector says its
    topic. Users 0-19 enter topic-0 rooms, users 20-39 topic-1 rooms, of streamers 1 and 3 only;
    streamers 2 and 4 go on air only at test time (never seen in training)."""
    rng = np.random.default_rng(0)
    centre = {0: rng.normal(size=16), 1: rng.normal(size=16)}
    rows, content = [], []
    for author, topic in ((1, 0), (2, 0), (3, 1), (4, 1)):
        for r in range(6):
            item = f"live:{100 * author + r}"
            content.append((item, "live", author, T, (centre[topic] + 0.3 * rng.normal(size=16)).tolist()))
    content += [("photo:1", "photo", 9, None, None)]
    for u in range(40):
        author = 1 if u < 20 else 3
        for r in rng.choice(6, size=3, replace=False):
            rows.append((u, f"live:{100 * author + r}", f"author:{author}", "live"))
    columns = ["item_id", "domain", "author_id", "start_timestamp", "mm_embedding"]
    frame = pl.DataFrame(content, schema=columns, orient="row",
                         schema_overrides={"mm_embedding": pl.List(pl.Float32)})
    inter = pl.DataFrame(rows, schema=["user_id", "item_id", "key", "domain"], orient="row").with_columns(
        pl.lit(T).alias("event_timestamp"))
    return TrainData("t", inter, ItemCatalog(frame))


def test_rooms_are_scored_as_they_were_trained_and_unseen_streamers_through_their_content():
    data = _room_world()
    model = UniEmbed(UniEmbedConfig(dim=8, samples=2**13, batch_size=64, room_level=True, id_dropout=0.3))
    model.fit(data, seed=0)
    # a trained room's score vector is the very vector training used for it
    trained = model.items.take(["live:100", "live:301"])[0]
    assert np.allclose(model.retrieval_vectors(["live:100", "live:301"])[0], trained, atol=1e-6)
    # rooms of streamers never seen in training are ranked by their content: topic 0's users
    # put streamer 2's rooms (topic 0) above streamer 4's (topic 1), and the other way round
    unseen = [f"live:{100 * a + r}" for a in (2, 4) for r in range(6)]
    s = model.score(np.arange(40), unseen)
    assert (s > -1e8).all()
    prefers_topic0 = s[:, :6].mean(axis=1) > s[:, 6:].mean(axis=1)
    assert prefers_topic0[:20].mean() > 0.9 and prefers_topic0[20:].mean() < 0.1
