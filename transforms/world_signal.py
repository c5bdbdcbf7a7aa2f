"""How much of the latent topic each channel of a synthetic world carries, measured.

For every channel (multimodal vectors, tags, titles, texts, live names, comments, the named
entities) and domain: the 10-nearest-neighbour topic purity (cosine; the share of an item's 10
nearest items with its topic) and a linear probe's topic accuracy (ridge one-vs-rest, 75/25 split),
on a sample of items, next to the majority-topic share (chance). Text channels are hashed bags of
words. Each row says what the channel's knob is calibrated to: a published figure where one
exists, the stated assumption where none does (docs/demo-world.md).

`rgcd demo-data` prints the table; tests/transforms/test_demo.py checks each figure's band.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from rgcd.transforms.contract import BY_STEM
from rgcd.transforms.latent import LATENT_DIR, read_latent

HASH_DIMS = 4096
NEIGHBOURS = 10
_TOKEN = re.compile(r"[a-z0-9#]+")

# What each channel's knob rests on (DemoWorld in rgcd/config.py holds the numbers).
CALIBRATION = {
    "vectors": "assumption: no published topic purity for KuaiLive-M3's vectors; generic pretrained "
               "vectors separate 24 topics partially (purity ~0.3-0.5)",
    "tags": "assumption: an automatic labeller, 60% right, 15% sibling, 10% any, 15% untagged; "
            "merged paths; rooms have no tags (as in KuaiLive-M3)",
    "title": "assumption: 35% topic words, 25% shared words, 40% generic; 5% empty",
    "texts": "assumption: as titles; 15% empty (no OCR or subtitles)",
    "live_name": "assumption: as titles; 10% empty; rooms drift from their streamer (60/20/20)",
    "comments": "assumption: as titles; a quarter generic chatter",
    "entities": "assumption: half the items name an invented entity (Zipf-used); its topic is in "
                "latent/ only",
}


@dataclass(frozen=True)
class ChannelSignal:
    """One channel's measured share of the latent topic."""

    channel: str
    domain: str
    items: int
    coverage: float      # share of sampled items with something in this channel
    purity_10nn: float
    probe_accuracy: float
    chance: float        # majority-topic share of the sample
    calibrated_to: str


def _tokens(text: str | None) -> list[str]:
    return _TOKEN.findall((text or "").lower())


def hashed_bags(texts: list[str | None], dims: int = HASH_DIMS) -> np.ndarray:
    """Binary bags of words hashed into `dims` columns, rows L2-normalised (zero rows stay zero)."""
    x = np.zeros((len(texts), dims), dtype=np.float32)
    for i, text in enumerate(texts):
        for tok in set(_tokens(text)):
            x[i, zlib.crc32(tok.encode()) % dims] = 1.0
    return _normalise(x)


def _normalise(x: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def purity_10nn(x: np.ndarray, topic: np.ndarray, k: int = NEIGHBOURS) -> float:
    """Mean share of each row's k nearest rows (cosine, self excluded) with the row's topic."""
    sim = x @ x.T
    np.fill_diagonal(sim, -np.inf)
    nn = np.argpartition(-sim, k, axis=1)[:, :k]
    return float((topic[nn] == topic[:, None]).mean())


def probe_accuracy(x: np.ndarray, topic: np.ndarray, seed: int = 0, ridge: float = 1.0) -> float:
    """Held-out accuracy of a ridge one-vs-rest linear probe (dual form), 75/25 split."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(topic))
    cut = int(0.75 * len(order))
    tr, te = order[:cut], order[cut:]
    xt = np.hstack([x, np.ones((len(x), 1), dtype=x.dtype)]).astype(np.float64)
    y = np.eye(int(topic.max()) + 1)[topic[tr]] * 2 - 1
    gram = xt[tr] @ xt[tr].T
    alpha = np.linalg.solve(gram + ridge * np.eye(len(tr)), y)
    pred = (xt[te] @ (xt[tr].T @ alpha)).argmax(axis=1)
    return float((pred == topic[te]).mean())


def _read(folder: Path, stem: str, key: str) -> pl.DataFrame:
    """A raw file, one row per `key` (a dirty world's malformed lines and repeated keys dropped)."""
    spec = BY_STEM[stem]
    path = folder / spec.filename
    if spec.fmt == "parquet":
        frame = pl.read_parquet(path)
    else:
        frame = pl.read_csv(path, infer_schema=False, truncate_ragged_lines=True, ignore_errors=True)
    frame = frame.with_columns(pl.col(key).cast(pl.Int64, strict=False))
    return frame if key == "live_stream_id" else frame.unique(subset=key, keep="first", maintain_order=True)


def _measure(channel: str, domain: str, x: np.ndarray, topic: np.ndarray, present: np.ndarray,
             calibration: str) -> ChannelSignal:
    counts = np.bincount(topic)
    return ChannelSignal(channel, domain, len(topic), round(float(present.mean()), 4),
                         round(purity_10nn(x, topic), 4), round(probe_accuracy(x, topic), 4),
                         round(float(counts.max() / counts.sum()), 4), calibration)


def measure_world(folder: Path, sample: int = 3000, seed: int = 0) -> list[ChannelSignal]:
    """Every channel's signal in the synthetic world written to `folder` (needs its latent/)."""
    folder = Path(folder)
    truth = read_latent(folder / LATENT_DIR)
    if truth is None:
        raise ValueError(f"{folder} has no {LATENT_DIR}/ folder: only a synthetic world can be measured")
    rng = np.random.default_rng(seed)
    items = truth.items.select("item_id", "domain", "topic", "entity" if "entity" in truth.items.columns
                               else pl.lit(None, pl.String).alias("entity"))
    out: list[ChannelSignal] = []
    for domain, key, emb_stem, emb_col in (("photo", "photo_id", "photo_emb_128", "feature"),
                                           ("live", "live_id", "live_emb_64", "embedding")):
        dom = items.filter(pl.col("domain") == domain)
        pick = np.sort(rng.choice(dom.height, size=min(sample, dom.height), replace=False))
        frame = dom[pick].with_columns(pl.col("item_id").str.split(":").list.get(1).cast(pl.Int64).alias(key))
        topic = frame["topic"].to_numpy()
        emb = frame.join(_read(folder, emb_stem, key).select(key, emb_col), on=key, how="left",
                         maintain_order="left")
        x = np.stack([np.asarray(v if v is not None else np.zeros(1), dtype=np.float32)
                      for v in emb[emb_col].to_list()])
        out.append(_measure("vectors", domain, _normalise(x), topic, np.ones(len(topic), bool),
                            CALIBRATION["vectors"]))
        texts = _texts(folder, domain, key, frame)
        for channel, column in texts.items():
            present = np.array([bool(_tokens(t)) for t in column])
            out.append(_measure(channel, domain, hashed_bags(column), topic, present, CALIBRATION[channel]))
        ent = frame["entity"].to_list()
        present = np.array([e is not None for e in ent])
        out.append(_measure("entities", domain, hashed_bags(ent), topic, present, CALIBRATION["entities"]))
    return out


def _texts(folder: Path, domain: str, key: str, frame: pl.DataFrame) -> dict[str, list[str | None]]:
    """The text channels of the sampled items, in the sample's order."""
    ids = frame.select(key)
    if domain == "photo":
        meta = ids.join(_read(folder, "photo_meta", key).select(key, "cover_title", "video_texts"), on=key,
                        how="left", maintain_order="left")
        cats = [c.name for c in BY_STEM["photo_tag"].columns if c.name != key]
        tags = ids.join(_read(folder, "photo_tag", key)
                        .select(key, pl.concat_str(cats, separator=" ", ignore_nulls=True).alias("tags")),
                        on=key, how="left", maintain_order="left")
        return {"tags": tags["tags"].to_list(), "title": meta["cover_title"].to_list(),
                "texts": meta["video_texts"].to_list()}
    meta = ids.join(_read(folder, "live_room_meta", key).select(key, "live_name"), on=key, how="left",
                    maintain_order="left")
    comments = (_read(folder, "live_comment", "live_stream_id")
                .group_by("live_stream_id").agg(pl.col("content").str.join(" "))
                .rename({"live_stream_id": key}))
    com = ids.join(comments, on=key, how="left", maintain_order="left")
    return {"live_name": meta["live_name"].to_list(), "comments": com["content"].to_list()}


def signal_table(rows: list[ChannelSignal]) -> str:
    """The rows as a fixed-width table (what `rgcd demo-data` prints)."""
    head = (f"{'channel':<10} {'domain':<6} {'items':>6} {'cover':>6} {'10-NN':>6} {'probe':>6} "
            f"{'chance':>6}  ")
    lines = [head + "calibrated to"]
    for r in rows:
        lines.append(f"{r.channel:<10} {r.domain:<6} {r.items:>6} {r.coverage:>6.2f} {r.purity_10nn:>6.2f} "
                     f"{r.probe_accuracy:>6.2f} {r.chance:>6.2f}  {r.calibrated_to}")
    return "\n".join(lines)


def as_dicts(rows: list[ChannelSignal]) -> list[dict]:
    return [asdict(r) for r in rows]


def world_figures(folder: Path) -> dict[str, float]:
    """The world's other knobs, measured: rooms on their streamer's main topic, live interest kept
    on the short-video topic, and the share of topics whose interest transfers."""
    truth = read_latent(Path(folder) / LATENT_DIR)
    if truth is None:
        raise ValueError(f"{folder} has no {LATENT_DIR}/ folder")
    live = truth.items.filter(pl.col("domain") == "live").select("author_id", "topic")
    main = (live.group_by("author_id", "topic").len()
            .sort("author_id", "len", "topic", descending=[False, True, False])
            .group_by("author_id", maintain_order=True).first().select("author_id", main="topic"))
    on_main = live.join(main, on="author_id").select((pl.col("topic") == pl.col("main")).mean()).item()
    photo = np.stack(truth.users["photo_interests"].to_numpy()) if "photo_interests" in truth.users.columns \
        else None
    live_i = np.stack(truth.users["interests"].to_numpy())
    kept = float(np.minimum(photo, live_i).sum(axis=1).mean()) if photo is not None else float("nan")
    transferring = len(truth.params.get("transferring_topics", [])) / live_i.shape[1]
    return {"rooms_on_streamers_top_topic": round(float(on_main or 0.0), 4),
            "live_interest_overlap_with_short_video": round(kept, 4),
            "transferring_topics_share": round(transferring, 4)}


def print_signal(folder: Path, console) -> None:
    """Measure the world in `folder` and print the table and figures (the `rgcd demo-data` hook)."""
    import time

    t0 = time.perf_counter()
    rows = measure_world(folder)
    console.print("channel signal (share of the latent topic; 3,000 items per domain):", markup=False)
    console.print(signal_table(rows), markup=False, soft_wrap=True)
    figures = ", ".join(f"{k} {v}" for k, v in world_figures(folder).items())
    console.print(f"world: {figures} (measured in {time.perf_counter() - t0:.0f}s)", markup=False)
