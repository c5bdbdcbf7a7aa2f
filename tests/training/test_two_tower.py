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
