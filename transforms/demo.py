"""The demo world: a synthetic folder in the exact KuaiLive-M3 layout, worth learning from.

What it encodes (and so what the later stages can learn):

- 24 topics, each with a four-level category path and an English vocabulary. Users hold a latent
  mixture over topics (Dirichlet, a few dominant topics) that drives BOTH domains.
- Creators (authors) have a main and a secondary topic; they post short videos mostly on their
  main topic, and the live authors among them go live on the same topics.
- Live rooms start mostly in the evening; many are short, some run for hours, and the ones still
  running at the end of the window are on air (`end_timestamp` NULL, `live_duration` NULL).
- Titles, OCR/subtitle text, live names and comments are drawn from the topic's vocabulary;
  multimodal vectors are the topic's centroid plus noise (128-d photos, 64-d live, two spaces).
- Engagement (play progress, completion, likes, follows, watch time, gifts, comments) rises with
  the user's interest in the item's topic, with long-tailed (Zipf-like) author popularity and
  with the evening hours. Some live sessions follow a creator the user watched on short video.
- A fraction of users have no live session before the cut (the last 20% of the days): the
  cold-start users of the live-room evaluation. They still watch short videos throughout.

Everything is vectorised numpy/polars (no Python loop over rows) and deterministic by seed.
Files are written through `rgcd.transforms.raw_io.write_raw`, the one encoder of the raw layout.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import Progress

from rgcd.config import DemoDensity
from rgcd.transforms.contract import VECTOR_DIMS
from rgcd.transforms.dirt import MANIFEST, append_lines, dirty, write_manifest
from rgcd.transforms.latent import LatentTruth, LiveChoice, LiveRoutes, is_evening, params_doc, write_latent
from rgcd.transforms.raw_io import encode_raw, write_raw

START = datetime(2025, 5, 5, tzinfo=UTC)
MS_HOUR = 3_600_000
MS_DAY = 24 * MS_HOUR

CUT_FRACTION = 0.8            # cold-start users have no live session before START + 80% of the days
COLD_START_FRACTION = 0.15    # users held out of live before the cut (light users add a few more)
# How much happens per user (plays and sessions a day, catalogue size) is the `DemoDensity` of the
# configuration; what follows is the shape of the world at any density.
SHOWS_PER_SESSION = 2.0       # impressions without entry (live_show), per live session
PHOTOS_PER_AUTHOR = 10.0      # catalogue size -> number of creators
STREAMS_PER_LIVE_AUTHOR_DAY = 3.0  # mean rooms a streamer starts a day -> number of streamers
MIN_LIVE_AUTHOR_SHARE = 0.25  # at least this share of creators stream ...
MAX_LIVE_AUTHOR_SHARE = 0.9   # ... and at most this one (more creators are made when rooms need them)
EXPLORE = 0.15                # share of plays whose topic comes from the global mix, not the user's
PLAY_TRENDING = 0.10          # share of plays that go to a popular video whatever its topic
LONG_ROOM_SHARE = 0.4         # rooms that run for hours (median 3 h); the rest median 25 min
# How a live session picks its room among those on air (transforms/latent.py: LiveChoice).
SESSION_ROUTES = LiveRoutes(linked=0.25, popularity=0.10, popularity_evening=0.10, chance=0.08)

# Hour-of-day weights (UTC is the users' clock in the demo): quiet at night, lunch and evening peaks.
PLAY_HOURS = np.array([3, 2, 1, 1, 1, 1, 2, 4, 5, 5, 5, 6, 8, 8, 6, 5, 5, 6, 8, 10, 11, 11, 9, 6], float)
LIVE_SESSION_HOURS = np.array([3, 2, 1, 1, 1, 1, 1, 2, 3, 3, 3, 4, 5, 5, 4, 4, 5, 6, 9, 12, 13, 12, 9, 5],
                              float)
LIVE_START_HOURS = np.array([2, 1, 1, 1, 1, 1, 1, 2, 2, 3, 3, 3, 4, 4, 3, 3, 4, 5, 8, 11, 12, 11, 8, 4],
                            float)


@dataclass(frozen=True)
class Topic:
    """A latent topic: its category path (levels 1-3, a choice of level 4) and its vocabulary."""

    l1: str
    l2: str
    l3: str
    l4: tuple[str, ...]
    words: tuple[str, ...]


def _t(l1: str, l2: str, l3: str, l4: str, words: str) -> Topic:
    return Topic(l1, l2, l3, tuple(l4.split("|")), tuple(words.split("|")))


TOPICS: tuple[Topic, ...] = (
    _t("Gaming", "Mobile Games", "MOBA", "Hero Guides|Ranked Matches|Patch Reviews",
       "hero|lane|jungle|ranked|combo|tower|team fight|build|skin|support|carry|patch|mvp|gank"),
    _t("Gaming", "Shooter Games", "Battle Royale", "Solo vs Squad|Sniper Plays|Loot Guides",
       "sniper|squad|loot|zone|headshot|airdrop|rifle|clutch|scope|recoil|final circle|spray|bunker"),
    _t("Gaming", "Console Games", "Open World", "Boss Fights|Speedruns|Story Walkthroughs",
       "quest|boss|dungeon|speedrun|dragon|sword|open world|side quest|save point|loot chest|raid"),
    _t("Music", "Vocal", "Covers", "Ballads|Pop Covers|Karaoke Nights",
       "cover|ballad|karaoke|vocal|chorus|melody|duet|high note|acoustic|harmony|lyrics|falsetto"),
    _t("Music", "Instruments", "Guitar and Piano", "Fingerstyle|Piano Covers|Beginner Lessons",
       "guitar|piano|chord|riff|fingerstyle|scale|ukulele|violin|solo|strumming|keys|arpeggio"),
    _t("Music", "Dance", "Street Dance", "Choreography|Freestyle|K-pop Dance",
       "choreography|hip hop|moves|routine|freestyle|popping|breaking|kpop|dance battle|footwork"),
    _t("Food", "Cooking", "Home Recipes", "Noodles|Stir Fry|Soups",
       "recipe|noodles|dumplings|stir fry|garlic|wok|soup|braised pork|fried rice|chili oil|tofu"),
    _t("Food", "Food Tours", "Street Food", "Night Markets|Spicy Challenges|Local Stalls",
       "street food|night market|skewers|spicy|stall|grill|vendor|hot pot|bbq|food tour|crispy"),
    _t("Food", "Baking", "Desserts", "Cakes|Bread|Cookies",
       "cake|bread|cream|oven|dough|cookies|chocolate|frosting|croissant|matcha|cheesecake|sourdough"),
    _t("Sports", "Ball Games", "Basketball", "Highlights|Skills Training|Playoffs",
       "dunk|three pointer|crossover|court|rebound|playoff|buzzer beater|layup|assist|free throw"),
    _t("Sports", "Ball Games", "Football", "Goals|Skills|Match Analysis",
       "goal|striker|penalty|dribble|free kick|keeper|derby|header|offside|volley|midfield"),
    _t("Sports", "Fitness", "Workouts", "Home Workouts|Gym Training|Yoga",
       "workout|squat|abs|cardio|protein|gym|stretch|plank|deadlift|yoga|hiit|bulking"),
    _t("Beauty and Fashion", "Makeup", "Makeup Tutorials", "Eye Makeup|Lipstick Tests|Full Face",
       "lipstick|foundation|eyeliner|blush|contour|eyeshadow|mascara|concealer|glow|palette"),
    _t("Beauty and Fashion", "Fashion", "Outfits", "Street Style|Thrift Hauls|Lookbooks",
       "outfit|street style|sneakers|jacket|thrift|lookbook|denim|haul|try on|accessories"),
    _t("Beauty and Fashion", "Skincare", "Skincare Routines", "Acne Care|Night Routine|Product Reviews",
       "serum|moisturizer|sunscreen|acne|toner|cleanser|retinol|hydration|pores|face mask"),
    _t("Knowledge", "Science", "Popular Science", "Experiments|Space|Everyday Physics",
       "experiment|physics|chemistry|space|planet|reaction|telescope|molecule|gravity|rocket"),
    _t("Knowledge", "Languages", "Language Learning", "English Speaking|Grammar|Vocabulary",
       "vocabulary|grammar|pronunciation|phrase|english|accent|idiom|speaking|listening|verbs"),
    _t("Knowledge", "Finance", "Personal Finance", "Budgeting|Investing|Side Hustles",
       "stocks|budget|savings|investing|market|dividend|side hustle|salary|index fund|interest"),
    _t("Lifestyle", "Pets", "Cats and Dogs", "Puppies|Kittens|Pet Care",
       "puppy|kitten|cat|dog|grooming|treats|zoomies|paws|adoption|cuddles|fetch"),
    _t("Lifestyle", "Travel", "Outdoor Travel", "Hiking|Road Trips|Beaches",
       "mountain|beach|road trip|hotel|hiking|sunset|camping|waterfall|backpacking|island"),
    _t("Lifestyle", "Vehicles", "Cars", "Supercars|Tuning|Test Drives",
       "engine|drift|supercar|tuning|garage|test drive|horsepower|exhaust|track day|wheels"),
    _t("Entertainment", "Comedy", "Skits", "Pranks|Parodies|Office Humor",
       "prank|skit|sketch|joke|parody|roast|reaction|punchline|bloopers|office"),
    _t("Entertainment", "Film and TV", "Movie Recaps", "Thrillers|Romance|Sci-fi",
       "movie|recap|plot twist|trailer|episode|villain|ending explained|director|scene|sequel"),
    _t("Entertainment", "Anime", "Anime and Cosplay", "Cosplay|Anime Reviews|Fan Art",
       "anime|cosplay|manga|character|fan art|opening|season|wig|convention|arc"),
)
N_TOPICS = len(TOPICS)

TITLE_HOOKS = ("Best", "Easy", "My first", "Top 5", "Daily", "Quick", "Honest", "Ultimate",
               "Late night", "Beginner", "Pro", "Crazy", "Weekend", "Simple", "Insane")
TITLE_TAILS = ("", "challenge", "tips", "tutorial", "vlog", "highlights", "review", "#fyp",
               "part 2", "compilation", "explained", "fails")
SUB_VERBS = ("try", "talk about", "show you", "review", "learn", "test", "rank", "fix")
LIVE_OPENERS = ("Live:", "Late night", "Chill", "Marathon:", "Q&A:", "Daily", "Come hang:")
COMMENT_OPENERS = ("love the", "more", "wow", "what", "so good", "best", "again", "how")
COMMENT_GENERIC = ("666", "hello from the night shift", "first time here", "gg", "hahaha",
                   "sending support", "hi everyone", "lol")


@dataclass(frozen=True)
class DemoSummary:
    """What `generate` wrote: row counts per file and the world's key figures."""

    out: Path
    users: int
    days: int
    seed: int
    rows: dict[str, int]
    cold_start_users: int
    on_air_rooms: int
    cut: datetime
    seconds: float
    on_air_at_requests: dict[str, float] = field(default_factory=dict)
    good_rows: dict[str, int] = field(default_factory=dict)   # rows before any bad row was added
    injected: dict[str, int] = field(default_factory=dict)    # bad rows per file (--dirty)
    files: dict[str, Path] = field(default_factory=dict)

    def one_line(self) -> str:
        """One line of figures for the CLI and `rgcd run`."""
        r = self.good_rows or self.rows
        dirt = sum(self.injected.values())
        dirt_note = f", {dirt:,} bad rows injected (dirt_manifest.json)" if dirt else ""
        return (f"demo world (synthetic, seed {self.seed}): {self.users:,} users, {self.days} days, "
                f"{r['author_profile']:,} authors, {r['photo_meta']:,} photos, "
                f"{r['live_room_meta']:,} live rooms ({self.on_air_rooms} on air at the end; "
                f"median {self.on_air_at_requests.get('median', 0):,.0f} on air at a test request), "
                f"{r['photo_play']:,} plays, {r['live_interaction']:,} live sessions, "
                f"{self.cold_start_users:,} live-cold-start users before {self.cut:%Y-%m-%d}, "
                f"{self.seconds:.1f}s{dirt_note}")


# --------------------------------------------------------------------------------------------
# sampling building blocks


def _ids(rng: np.random.Generator, n: int, base: int, max_gap: int) -> np.ndarray:
    """`n` distinct increasing ids from `base` with random gaps (ids look sparse, like real ones)."""
    return base + np.cumsum(rng.integers(1, max_gap + 1, size=n)).astype(np.int64)


def _zipf_weights(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Long-tailed popularity: rank^-exponent over a random ranking."""
    ranks = rng.permutation(n) + 1
    return ranks.astype(float) ** -exponent


class GroupedSampler:
    """Draws one member of a given group per request, in proportion to member weights.

    Members are sorted by group; each member's key is `group + cumulative share within group`, so a
    draw is one `searchsorted` of `group + U[0,1)` for all requests at once. A request for a group
    with no members lands on the next group's first member (a fallback only tiny worlds hit).
    """

    def __init__(self, group: np.ndarray, weight: np.ndarray) -> None:
        self.order = np.argsort(group, kind="stable")
        g = group[self.order]
        w = weight[self.order].astype(float)
        cum = np.cumsum(w)
        boundaries = np.flatnonzero(np.diff(g)) + 1
        starts = np.concatenate([[0], boundaries])
        ends = np.concatenate([boundaries, [len(g)]])
        before = np.repeat(np.concatenate([[0.0], cum[ends[:-1] - 1]]), ends - starts)
        totals = np.repeat(cum[ends - 1], ends - starts) - before
        within = (cum - before) / totals
        within[ends - 1] = 1.0  # exact upper edge, so a draw never spills into the next group
        self.keys = g + within

    def draw(self, rng: np.random.Generator, groups: np.ndarray) -> np.ndarray:
        """One member index (into the original arrays) per requested group."""
        pos = np.searchsorted(self.keys, groups + rng.random(len(groups)), side="left")
        return self.order[np.minimum(pos, len(self.order) - 1)]


def _words(rng: np.random.Generator, topics: np.ndarray) -> pl.Series:
    """One vocabulary word of each row's topic."""
    lengths = np.array([len(t.words) for t in TOPICS])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = pl.Series([w for t in TOPICS for w in t.words])
    idx = offsets[topics] + (rng.random(len(topics)) * lengths[topics]).astype(np.int64)
    return flat.gather(idx)


def _word_pair(rng: np.random.Generator, topics: np.ndarray) -> tuple[pl.Series, pl.Series]:
    """Two different vocabulary words of each row's topic."""
    lengths = np.array([len(t.words) for t in TOPICS])
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    flat = pl.Series([w for t in TOPICS for w in t.words])
    n_words = lengths[topics]
    first = (rng.random(len(topics)) * n_words).astype(np.int64)
    second = (first + 1 + (rng.random(len(topics)) * (n_words - 1)).astype(np.int64)) % n_words
    return flat.gather(offsets[topics] + first), flat.gather(offsets[topics] + second)


def _pick(rng: np.random.Generator, options: tuple[str, ...], n: int,
          p: list[float] | None = None) -> pl.Series:
    return pl.Series(list(options)).gather(rng.choice(len(options), size=n, p=p))


def _emptied(rng: np.random.Generator, s: pl.Series, share: float) -> pl.Series:
    """Blank a share of a text column (real titles and subtitles are often missing)."""
    return pl.select(pl.when(pl.lit(rng.random(len(s)) < share)).then(pl.lit("")).otherwise(s)).to_series()


def _ms_to_datetime(ms: np.ndarray) -> pl.Series:
    return pl.Series(ms.astype(np.int64)).cast(pl.Datetime("ms"))


def _vectors(rng: np.random.Generator, topics: np.ndarray, dim: int, noise: float,
             extra: np.ndarray | None = None) -> pl.Series:
    """Topic centroid (+ an optional per-row offset) plus Gaussian noise, as list<float32>."""
    centroids = rng.normal(size=(N_TOPICS, dim)) / np.sqrt(dim)
    vec = centroids[topics] + noise * rng.normal(size=(len(topics), dim)) / np.sqrt(dim)
    if extra is not None:
        vec += extra
    return pl.Series(vec.astype(np.float32)).cast(pl.List(pl.Float32))


def cut_day(days: int) -> int:
    """Day index of the cold-start cut: the last ~20% of the window, at least one day on each side."""
    return max(1, min(days - 1, round(days * CUT_FRACTION)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _times(rng: np.random.Generator, n: int, days: int, hour_weights: np.ndarray,
           first_day: np.ndarray | int = 0) -> np.ndarray:
    """Epoch-ms times over days [first_day, days) with the given hour-of-day profile."""
    start_ms = int(START.timestamp() * 1000)
    day = first_day + (rng.random(n) * (days - np.asarray(first_day))).astype(np.int64)
    hour = rng.choice(24, size=n, p=hour_weights / hour_weights.sum())
    return start_ms + day * MS_DAY + hour * MS_HOUR + rng.integers(0, MS_HOUR, size=n)


# --------------------------------------------------------------------------------------------
# the world


@dataclass
class _Users:
    ids: np.ndarray
    interest: np.ndarray       # (n, topics) mixture
    activity: np.ndarray       # short-video plays multiplier, mean 1
    live_taste: np.ndarray     # live sessions multiplier, mean 1
    held_out: np.ndarray       # bool: no live session before the cut


@dataclass
class _Authors:
    ids: np.ndarray
    main_topic: np.ndarray
    second_topic: np.ndarray
    popularity: np.ndarray
    is_live: np.ndarray


def _make_users(rng: np.random.Generator, n: int, topic_prior: np.ndarray) -> _Users:
    interest = rng.dirichlet(topic_prior * N_TOPICS * 0.12, size=n)
    activity = rng.lognormal(0.0, 0.8, size=n)
    live_taste = np.exp(0.5 * np.log(activity) + rng.normal(0, 0.9, size=n))
    return _Users(
        ids=_ids(rng, n, 1_000_000, 40),
        interest=interest,
        activity=activity / activity.mean(),
        live_taste=live_taste / live_taste.mean(),
        held_out=rng.random(n) < COLD_START_FRACTION,
    )


def _make_authors(rng: np.random.Generator, n: int, n_live: int, topic_prior: np.ndarray) -> _Authors:
    main = rng.choice(N_TOPICS, size=n, p=topic_prior)
    # The secondary topic is often a sibling under the same level-1 category.
    siblings = (main // 3) * 3 + rng.integers(0, 3, size=n)
    second = np.where(rng.random(n) < 0.6, siblings, rng.integers(0, N_TOPICS, size=n))
    popularity = _zipf_weights(rng, n, 1.0)
    # Popular creators are more likely to stream.
    live_score = rng.random(n) * (1.0 + 3.0 * popularity ** 0.3)
    is_live = np.zeros(n, dtype=bool)
    is_live[np.argsort(-live_score, kind="stable")[:n_live]] = True
    return _Authors(_ids(rng, n, 30_000_000, 20), main, second, popularity, is_live)


def _author_profile(rng: np.random.Generator, a: _Authors) -> pl.DataFrame:
    n = len(a.ids)
    fans = np.clip(np.round(np.log10(a.popularity * 1e6) + rng.normal(0, 0.4, n)), 0, 6).astype(int)
    buckets = ("[0,10)", "[10,100)", "[100,1k)", "[1k,10k)", "[10k,100k)", "[100k,1m)", "[1m,+)")
    return pl.DataFrame({
        "author_id": a.ids,
        "is_photo_author": np.ones(n, dtype=np.int64),
        "is_live_author": a.is_live.astype(np.int64),
        "gender": _pick(rng, ("M", "F", "U"), n, [0.47, 0.45, 0.08]),
        "age_segment": _pick(rng, ("18-23", "24-30", "31-40", "41-49", "50+"), n,
                             [0.22, 0.33, 0.25, 0.12, 0.08]),
        "fans_user_num": pl.Series(list(buckets)).gather(fans),
    })


def _make_photos(rng: np.random.Generator, a: _Authors, n_target: int):
    """photo_meta, photo_tag, photo_emb_128 and the arrays later steps sample from."""
    # Every creator posts at least one video (a streamer's rooms take their videos' category).
    extra = max(n_target / len(a.ids) - 1.0, 0.0)
    per_author = 1 + rng.poisson(extra * (0.5 + 0.5 * a.popularity ** 0.2 / np.mean(a.popularity ** 0.2)))
    author_idx = np.repeat(np.arange(len(a.ids)), per_author)
    n = len(author_idx)
    r = rng.random(n)
    topic = np.where(r < 0.75, a.main_topic[author_idx],
                     np.where(r < 0.9, a.second_topic[author_idx], rng.integers(0, N_TOPICS, n)))
    weight = a.popularity[author_idx] ** 0.7 * rng.lognormal(0, 0.8, n)
    duration = np.clip(rng.lognormal(np.log(18_000), 0.7, n), 3_000, 600_000).astype(np.int64)
    ids = _ids(rng, n, 100_000_000, 50)

    title = pl.concat_str([_pick(rng, TITLE_HOOKS, n), *_word_pair(rng, topic),
                           _pick(rng, TITLE_TAILS, n)], separator=" ").str.strip_chars()
    sub_1, sub_2 = _word_pair(rng, topic)
    texts = pl.concat_str([
        pl.lit("OCR:"), *(w.str.to_uppercase() for w in _word_pair(rng, topic)),
        pl.lit("| SUB: today we"), _pick(rng, SUB_VERBS, n), pl.lit("the"), sub_1,
        pl.lit("with"), sub_2, pl.lit("and some"), _words(rng, topic),
    ], separator=" ")
    meta = pl.DataFrame({
        "photo_id": ids,
        "author_id": a.ids[author_idx],
        "duration": duration,
        "display_type": rng.choice(np.array([1, 2, 3], dtype=np.int64), size=n, p=[0.8, 0.15, 0.05]),
    }).with_columns(
        cover_title=_emptied(rng, pl.select(title).to_series(), 0.05),
        video_texts=_emptied(rng, pl.select(texts).to_series(), 0.15),
    )
    l4_choice = (rng.random(n) * 3).astype(np.int64)
    tag = pl.DataFrame({
        "photo_id": ids,
        "first_level_category_name": pl.Series([t.l1 for t in TOPICS]).gather(topic),
        "second_level_category_name": pl.Series([t.l2 for t in TOPICS]).gather(topic),
        "third_level_category_name": pl.Series([t.l3 for t in TOPICS]).gather(topic),
        "fourth_level_category_name": pl.Series([t.l4[k] for t in TOPICS for k in range(3)])
        .gather(topic * 3 + l4_choice),
    }).with_columns(  # the real tags sometimes stop at level 3
        fourth_level_category_name=pl.when(pl.lit(rng.random(n) < 0.05)).then(None)
        .otherwise(pl.col("fourth_level_category_name")))
    # A small per-author style offset: videos of one creator look alike beyond their topic.
    style = rng.normal(size=(len(a.ids), VECTOR_DIMS["photo_emb_128"])) * 0.3 / np.sqrt(128)
    emb = pl.DataFrame({"photo_id": ids,
                        "feature": _vectors(rng, topic, VECTOR_DIMS["photo_emb_128"], 0.8,
                                            style[author_idx])})
    return meta, tag, emb, author_idx, topic, weight, duration


@dataclass
class _Rooms:
    author: np.ndarray         # creator index, rooms sorted by start
    topic: np.ndarray
    weight: np.ndarray         # popularity weight in the draws
    start: np.ndarray          # epoch ms
    end: np.ndarray            # epoch ms as drawn (after the window for rooms still on air)
    window_end: int

    @property
    def on_air_at_end(self) -> np.ndarray:
        return self.end > self.window_end


def _make_rooms(rng: np.random.Generator, a: _Authors, days: int, n_target: float):
    """live_room_meta and live_emb_64; rooms start inside the window, evening-heavy.

    Each streamer has their own rate of going live; the rates are scaled so that the window holds
    about `n_target` rooms. A room's popularity is its streamer's (long-tailed) times a little
    noise of its own.
    """
    live_authors = np.flatnonzero(a.is_live)
    rate = np.clip(rng.lognormal(np.log(0.6), 0.6, len(live_authors)), 0.1, 3.0)
    rate *= n_target / (rate.sum() * days)
    author_idx = np.repeat(live_authors, rng.poisson(rate * days))
    start = _times(rng, len(author_idx), days, LIVE_START_HOURS)
    order = np.argsort(start, kind="stable")  # rooms in start order (LiveChoice searches by start)
    author_idx, start = author_idx[order], start[order]
    n = len(author_idx)
    topic = np.where(rng.random(n) < 0.85, a.main_topic[author_idx], a.second_topic[author_idx])
    # Many short rooms (median 25 min), some long ones (median 3 h); at least 5 minutes.
    long = rng.random(n) < LONG_ROOM_SHARE
    duration = np.where(long, rng.lognormal(np.log(3 * MS_HOUR), 0.5, n),
                        rng.lognormal(np.log(25 * 60_000), 0.8, n))
    duration = np.clip(duration, 5 * 60_000, 14 * MS_HOUR).astype(np.int64)
    end = start + duration
    window_end = int(START.timestamp() * 1000) + days * MS_DAY
    on_air = end > window_end
    ids = _ids(rng, n, 500_000_000, 30)
    name_1, name_2 = _word_pair(rng, topic)
    name = pl.concat_str([_pick(rng, LIVE_OPENERS, n), name_1, pl.lit("and"), name_2], separator=" ")
    meta = pl.DataFrame({
        "live_id": ids,
        "author_id": a.ids[author_idx],
        "live_name": _emptied(rng, pl.select(name).to_series(), 0.1),
        "start_timestamp": _ms_to_datetime(start),
        "end_timestamp": _ms_to_datetime(end),
        "live_duration": duration,
    }).with_columns(
        end_timestamp=pl.when(pl.lit(on_air)).then(None).otherwise(pl.col("end_timestamp")),
        live_duration=pl.when(pl.lit(on_air)).then(None).otherwise(pl.col("live_duration")),
    )
    emb = pl.DataFrame({"live_id": ids,
                        "embedding": _vectors(rng, topic, VECTOR_DIMS["live_emb_64"], 0.9)})
    weight = a.popularity[author_idx] ** 0.8 * rng.lognormal(0, 0.5, n)
    return meta, emb, _Rooms(author_idx, topic, weight, start, end, window_end)


def _make_plays(rng, u: _Users, a: _Authors, photo_ids, photo_author, photo_topic, photo_weight,
                photo_duration, days: int, topic_prior: np.ndarray, per_user_day: float):
    """photo_play: who watched what, when, how far, and what they did."""
    counts = rng.poisson(per_user_day * days * u.activity)
    user_idx = np.repeat(np.arange(len(u.ids)), counts)  # grouped by user, ascending
    n = len(user_idx)
    topic = _user_topics(rng, u, user_idx, topic_prior)
    photo = GroupedSampler(photo_topic, photo_weight).draw(rng, topic)
    # Trending: a share of plays go to what is popular on the platform, whatever its topic.
    trending = rng.random(n) < PLAY_TRENDING
    popular = np.cumsum(photo_weight / photo_weight.sum())
    photo[trending] = np.minimum(np.searchsorted(popular, rng.random(int(trending.sum()))), len(popular) - 1)
    ptopic = photo_topic[photo]
    enter = _times(rng, n, days, PLAY_HOURS)
    hour = (enter // MS_HOUR) % 24
    evening = ((hour >= 18) & (hour <= 23)).astype(float)
    match = u.interest[user_idx, ptopic] / u.interest.max(axis=1)[user_idx]
    pop = np.log(photo_weight[photo])
    pop = (pop - pop.mean()) / (pop.std() + 1e-9)
    # Progress (watched / duration) above 1 means the video looped; >= 1 is a complete play.
    progress = 1.3 * _sigmoid(-2.6 + 3.4 * match + 0.3 * evening + 0.2 * pop + rng.normal(0, 1.2, n))
    watched = (progress * photo_duration[photo]).astype(np.int64)
    complete = progress >= 1.0
    like = rng.random(n) < _sigmoid(-4.6 + 2.2 * match + 1.2 * np.minimum(progress, 1) + 0.3 * pop)
    follow_before = rng.random(n) < 0.02 + 0.08 * match
    follow_new = rng.random(n) < _sigmoid(-6.5 + 2.5 * match + 1.2 * complete)
    frame = pl.DataFrame({
        "user_id": u.ids[user_idx],
        "photo_id": photo_ids[photo],
        "author_id": a.ids[photo_author[photo]],
        "enter_timestamp": _ms_to_datetime(enter),
        "leave_timestamp": _ms_to_datetime(enter + watched),
        "enter_play_type": _pick(rng, ("slide", "click", "follow_feed", "search", "profile"), n,
                                 [0.7, 0.12, 0.1, 0.04, 0.04]),
        "is_complete_play": complete.astype(np.int64),
        "like_status_type": like.astype(np.int64),
        "is_follow_before_play": follow_before.astype(np.int64),
        "is_follow_after_play": (follow_before | follow_new).astype(np.int64),
    })
    return frame, user_idx, photo, counts


def _user_topics(rng, u: _Users, user_idx: np.ndarray, topic_prior: np.ndarray,
                 explore: float = EXPLORE) -> np.ndarray:
    """A topic per event: from the user's own mixture, or (exploration) from the global mix."""
    grid_user = np.repeat(np.arange(len(u.ids)), N_TOPICS)
    own = GroupedSampler(grid_user, u.interest.ravel() + 1e-12).draw(rng, user_idx) % N_TOPICS
    return np.where(rng.random(len(user_idx)) < explore,
                    rng.choice(N_TOPICS, size=len(user_idx), p=topic_prior), own)


def _live_choice(u: _Users, a: _Authors, r: _Rooms, play_user: np.ndarray, play_author: np.ndarray
                 ) -> tuple[LiveChoice, np.ndarray, np.ndarray]:
    """The live-session rule of this world, and its creator-linked counts (keys, plays)."""
    keys, plays = np.unique(play_user.astype(np.int64) * len(a.ids) + play_author, return_counts=True)
    choice = LiveChoice(u.interest, r.topic, r.weight, r.author, r.start, r.end, keys, plays, len(a.ids))
    return choice, keys, plays


def _requests(rng, u: _Users, days: int, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(user index, epoch ms) of `counts` live requests per user in time order; held-out users
    only after the cut."""
    first_day = np.where(u.held_out, cut_day(days), 0)
    user_idx = np.repeat(np.arange(len(u.ids)), counts)
    at = _times(rng, len(user_idx), days, LIVE_SESSION_HOURS, first_day[user_idx])
    order = np.argsort(at, kind="stable")
    return user_idx[order], at[order]


def _impressions(rng, u: _Users, days: int, r: _Rooms, room_ids, author_ids, counts: np.ndarray
                 ) -> pl.DataFrame:
    """live_show: `counts` impressions per user, half by room popularity, half by chance."""
    user_idx = np.repeat(np.arange(len(u.ids)), counts)
    cut = int(START.timestamp() * 1000) + cut_day(days) * MS_DAY
    end = np.minimum(r.end, r.window_end)
    held = u.held_out[user_idx]
    late = np.flatnonzero(end > cut)  # rooms a held-out user can be shown (after the cut)
    by_pop = rng.random(len(user_idx)) < 0.5
    room = np.empty(len(user_idx), dtype=np.int64)
    for pool, rows in ((np.arange(len(end)), ~held), (late, held)):
        if len(pool) == 0:
            room[rows] = -1
            continue
        dur = (end[pool] - r.start[pool]).astype(np.float64)
        for mask, w in ((rows & by_pop, r.weight[pool] * dur), (rows & ~by_pop, dur)):
            cum = np.cumsum(w / w.sum())
            room[mask] = pool[np.minimum(np.searchsorted(cum, rng.random(int(mask.sum()))), len(pool) - 1)]
    ok = room >= 0
    user_idx, room, held = user_idx[ok], room[ok], held[ok]
    lo = np.where(held, np.maximum(r.start[room], cut), r.start[room])
    at = lo + (rng.random(len(room)) * (end[room] - lo)).astype(np.int64)
    return pl.DataFrame({
        "live_id": room_ids[room],
        "user_id": u.ids[user_idx],
        "author_id": author_ids[r.author[room]],
        "show_timestamp": _ms_to_datetime(at),
    }).unique(subset=["live_id", "user_id", "show_timestamp"], keep="first", maintain_order=True)


def _make_live(rng, u: _Users, a: _Authors, days: int, r: _Rooms, room_ids, choice: LiveChoice,
               per_user_day: float):
    """live_interaction, live_comment and live_show; `per_user_day` sessions over all users."""
    # The held-out users' missing sessions before the cut are made up for by the others.
    rate = per_user_day / (1 - COLD_START_FRACTION * CUT_FRACTION) * u.live_taste
    span = days - np.where(u.held_out, cut_day(days), 0)
    counts = rng.poisson(rate * span)
    user_idx, at = _requests(rng, u, days, counts)
    room = choice.sample(rng, user_idx, at, SESSION_ROUTES)
    found = room >= 0  # nothing on air at that moment (only tiny worlds): no session
    user_idx, at, room = user_idx[found], at[found], room[found]
    n = len(user_idx)
    keys = user_idx.astype(np.int64) * len(a.ids) + r.author[room]
    pos = np.minimum(np.searchsorted(choice.linked_keys, keys), max(len(choice.linked_keys) - 1, 0))
    linked = (choice.linked_keys[pos] == keys) if len(choice.linked_keys) else np.zeros(n, bool)
    match = u.interest[user_idx, r.topic[room]] / u.interest.max(axis=1)[user_idx]
    evening = is_evening(at).astype(float)
    room_end = np.minimum(r.end, r.window_end)
    watch = rng.lognormal(np.log(40_000) + 1.6 * match + 0.3 * evening + 0.4 * linked, 1.1, n)
    play_duration = np.minimum(watch.astype(np.int64), room_end[room] - at)
    minutes = play_duration / 60_000
    engaged = 0.2 + match + 0.5 * linked
    follow_enter = rng.random(n) < 0.05 + 0.3 * linked
    follow_new = ~follow_enter & (rng.random(n) < _sigmoid(-4.5 + 1.5 * match + 0.4 * np.log1p(minutes)))
    cancel = follow_enter & (rng.random(n) < 0.003)
    gift = rng.random(n) < _sigmoid(-5.0 + 2.0 * match + 0.5 * np.log1p(minutes) + 0.5 * linked)
    gift_cnt = np.where(gift, 1 + rng.poisson(0.8, n), 0)
    auto = rng.random(n) < 0.3
    source = np.where(linked, rng.choice(np.array(["follow", "profile", "feed"]), n, p=[0.5, 0.2, 0.3]),
                      rng.choice(np.array(["feed", "explore", "search", "follow"]), n,
                                 p=[0.6, 0.25, 0.1, 0.05]))
    sessions = pl.DataFrame({
        "user_id": u.ids[user_idx],
        "author_id": a.ids[r.author[room]],
        "live_id": room_ids[room],
        "live_play_start_timestamp": _ms_to_datetime(at),
        "live_play_end_timestamp": _ms_to_datetime(at + play_duration),
        "p_date": _ms_to_datetime(at).dt.strftime("%Y%m%d"),
        "live_source_category": source,
        "enter_live_action": np.where(auto, "auto_play", rng.choice(np.array(["click", "slide"]), n)),
        "is_auto_play": auto.astype(np.int64),
        "is_follow_enter": follow_enter.astype(np.int64),
        "is_follow_leave": ((follow_enter | follow_new) & ~cancel).astype(np.int64),
        "play_duration": play_duration,
        "like_cnt": rng.poisson(0.4 * minutes ** 0.7 * engaged),
        "comment_cnt": rng.poisson(0.12 * minutes ** 0.6 * engaged),
        "send_gift_cnt": gift_cnt,
        "send_gift_num": gift_cnt * rng.geometric(0.4, n),
        "follow_author_cnt": follow_new.astype(np.int64),
        "cancel_follow_author_cnt": cancel.astype(np.int64),
        "share_cnt": (rng.random(n) < 0.01 + 0.03 * match).astype(np.int64),
        "report_live_cnt": (rng.random(n) < 0.001).astype(np.int64),
    }).unique(subset=["user_id", "live_id", "live_play_start_timestamp"], keep="first",
              maintain_order=True)

    # One comment row per counted comment, inside the session, worded from the room's topic.
    cc = sessions["comment_cnt"].to_numpy()
    rep = np.repeat(np.arange(len(sessions)), cc)
    s_start = sessions["live_play_start_timestamp"].dt.epoch("ms").to_numpy()[rep]
    s_dur = sessions["play_duration"].to_numpy()[rep]
    s_topic = r.topic[np.searchsorted(room_ids, sessions["live_id"].to_numpy()[rep])]
    m = len(rep)
    content = pl.concat_str([_pick(rng, COMMENT_OPENERS, m), _words(rng, s_topic)], separator=" ")
    content = pl.select(pl.when(pl.lit(rng.random(m) < 0.25)).then(_pick(rng, COMMENT_GENERIC, m))
                        .otherwise(content)).to_series()
    comments = pl.DataFrame({
        "live_stream_id": sessions["live_id"].gather(rep),
        "user_id": sessions["user_id"].gather(rep),
        "author_id": sessions["author_id"].gather(rep),
        "content": content,
        "comment_ts": _ms_to_datetime(s_start + (rng.random(m) * np.maximum(s_dur, 1)).astype(np.int64)),
    }).unique(subset=["live_stream_id", "user_id", "comment_ts"], keep="first", maintain_order=True)

    # Impressions without entry: the feed shows what is popular (room weight) or any room, at a
    # moment of its interval. Drawn room first, then time: cheaper than LiveChoice, and impressions
    # are not what the oracle ranks.
    shows = _impressions(rng, u, days, r, room_ids, a.ids, rng.poisson(SHOWS_PER_SESSION * counts))
    return sessions, comments, shows


def on_air_at(t_ms: np.ndarray, start_ms: np.ndarray, end_ms: np.ndarray) -> np.ndarray:
    """Rooms on air at each time: start <= t < end (what the live-room protocol ranks)."""
    return (np.searchsorted(np.sort(start_ms), t_ms, side="right")
            - np.searchsorted(np.sort(end_ms), t_ms, side="right"))


def on_air_at_test_requests(sessions: pl.DataFrame, rooms: pl.DataFrame, cut: datetime) -> dict[str, float]:
    """Rooms on air at the live-room test requests, as `eval_live_room` defines them.

    A request is a user's first entry into a room at or after the cut, kept if the room was on
    air then; returns the request count and the 10th, 50th and 90th percentile of rooms on air.
    """
    cut_ms = int(cut.timestamp() * 1000)
    t = (sessions.select("user_id", "live_id", t=pl.col("live_play_start_timestamp").dt.epoch("ms"))
         .filter(pl.col("t") >= cut_ms).group_by("user_id", "live_id").agg(pl.col("t").min())["t"].to_numpy())
    if len(t) == 0:
        return {"requests": 0, "p10": 0.0, "median": 0.0, "p90": 0.0}
    start = rooms["start_timestamp"].dt.epoch("ms").to_numpy()
    end = rooms["end_timestamp"].dt.epoch("ms").fill_null(np.iinfo(np.int64).max).to_numpy()
    n = on_air_at(t, start, end)
    return {"requests": len(t), "p10": float(np.percentile(n, 10)), "median": float(np.median(n)),
            "p90": float(np.percentile(n, 90))}


def _latent_truth(u: _Users, a: _Authors, r: _Rooms, room_ids, photo_ids, photo_author, photo_topic,
                  photo_weight, linked_keys, linked_plays, topic_prior) -> LatentTruth:
    """What the draws came from, for the oracle (transforms/latent.py has the layout)."""
    n_a = len(a.ids)
    items = pl.concat([
        pl.DataFrame({"item_id": pl.Series([f"photo:{i}" for i in photo_ids]), "domain": "photo",
                      "topic": photo_topic.astype(np.int64), "author_id": a.ids[photo_author],
                      "weight": photo_weight.astype(np.float64), "start_ms": None, "end_ms": None},
                     schema_overrides={"start_ms": pl.Int64, "end_ms": pl.Int64}),
        pl.DataFrame({"item_id": pl.Series([f"live:{i}" for i in room_ids]), "domain": "live",
                      "topic": r.topic.astype(np.int64), "author_id": a.ids[r.author],
                      "weight": r.weight.astype(np.float64), "start_ms": r.start, "end_ms": r.end}),
    ])
    users = pl.DataFrame({"user_id": u.ids, "held_out": u.held_out}).with_columns(
        interests=pl.Series(u.interest.astype(np.float32)).cast(pl.List(pl.Float32)))
    user_authors = pl.DataFrame({"user_id": u.ids[linked_keys // n_a], "author_id": a.ids[linked_keys % n_a],
                                 "plays": linked_plays.astype(np.int64)})
    return LatentTruth(items, users, user_authors,
                       params_doc(SESSION_ROUTES, topic_prior,
                                  play_explore=EXPLORE, play_trending=PLAY_TRENDING))


def n_rooms(users: int, days: int, density: DemoDensity) -> float:
    """Expected rooms started in the window: per user, but never below the platform's floor."""
    return max(users * density.rooms_per_user, days * density.min_rooms_per_day)


def _creator_counts(users: int, days: int, density: DemoDensity) -> tuple[int, int]:
    """(creators, streamers among them): enough creators for the videos and streamers for the rooms."""
    n_live = max(1, round(n_rooms(users, days, density) / (days * STREAMS_PER_LIVE_AUTHOR_DAY)))
    n_authors = max(20, round(users * density.photos_per_user / PHOTOS_PER_AUTHOR),
                    int(np.ceil(n_live / MAX_LIVE_AUTHOR_SHARE)))
    return n_authors, min(n_authors, max(n_live, round(MIN_LIVE_AUTHOR_SHARE * n_authors)))


COVERS = "covers"  # the demo's cover images, under its output folder


def write_covers(folder: Path, domain: str, ids: np.ndarray, topic: np.ndarray, seed: int) -> pl.Series:
    """One synthetic cover per item (a 16x16 PNG), returning the absolute paths (`cover_path`).

    SYNTHETIC, not a picture of anything: a flat colour whose hue is the item's true topic plus a
    little noise per item, so a vision-language teacher has a cover that says something about the
    item, the way a real cover does. Noise from its own generator: the world is unchanged by it.
    """
    from colorsys import hsv_to_rgb

    from PIL import Image

    rng = np.random.default_rng([seed, 1 if domain == "photo" else 2])
    hue = (topic / N_TOPICS + rng.normal(0, 0.1 / N_TOPICS, len(ids))) % 1.0
    value = rng.uniform(0.6, 1.0, len(ids))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for item_id, h, v in zip(ids, hue, value, strict=True):
        path = folder.resolve() / f"{domain}_{item_id}.png"
        rgb = tuple(int(255 * c) for c in hsv_to_rgb(h, 0.8, v))
        Image.new("RGB", (16, 16), rgb).save(path)
        paths.append(str(path))
    return pl.Series("cover_path", paths, dtype=pl.String)


def generate(out: Path, users: int, days: int, seed: int, *, density: DemoDensity | None = None,
             dirty_rate: float = 0.0, covers: bool = False, show_progress: bool = True) -> DemoSummary:
    """Write the demo world (every file of the data contract) to `out`; same seed, same files.

    `density` sets plays and live sessions per user-day and the catalogue per user (default: the
    demo world's; `DemoDensity.kuailive_m3()` is the real dataset's). `dirty_rate` > 0 appends
    that share of bad rows to each file (transforms/dirt.py) and writes `dirt_manifest.json`.
    `covers` writes a synthetic cover image per video and room (`write_covers`) and the contract's
    optional `cover_path` column; the rest of the world is the same with or without them.
    The latent truth goes to `<out>/latent/` (transforms/latent.py).
    """
    if not 0 <= dirty_rate < 1:
        raise ValueError(f"dirty rate must be in [0, 1) (got {dirty_rate})")
    if users < 10 or days < 2:
        raise ValueError(f"demo world needs at least 10 users and 2 days (got {users} users, {days} days)")
    density = density or DemoDensity()
    t0 = time.perf_counter()
    out = Path(out)
    rng = np.random.default_rng(seed)
    # Topic sizes differ (some verticals are simply bigger), shared by users and creators.
    topic_prior = rng.dirichlet(np.full(N_TOPICS, 4.0))
    steps = ("users and creators", "short videos", "live rooms", "short-video plays", "live sessions",
             "writing files")
    with Progress(console=Console(stderr=True), transient=True, disable=not show_progress) as bar:
        task = bar.add_task("demo world", total=len(steps))

        def step(i: int) -> None:
            bar.update(task, completed=i, description=f"demo world: {steps[min(i, len(steps) - 1)]}")

        step(0)
        u = _make_users(rng, users, topic_prior)
        a = _make_authors(rng, *_creator_counts(users, days, density), topic_prior)
        author_profile = _author_profile(rng, a)
        user_id_set = pl.DataFrame({"user_id": u.ids})
        step(1)
        photo_meta, photo_tag, photo_emb, photo_author, photo_topic, photo_weight, photo_duration = \
            _make_photos(rng, a, int(users * density.photos_per_user))
        photo_ids = photo_meta["photo_id"].to_numpy()
        step(2)
        room_meta, live_emb, rooms = _make_rooms(rng, a, days, n_rooms(users, days, density))
        room_ids = room_meta["live_id"].to_numpy()
        step(3)
        plays, play_user, play_photo, play_counts = _make_plays(
            rng, u, a, photo_ids, photo_author, photo_topic, photo_weight, photo_duration, days, topic_prior,
            density.plays_per_user_day)
        plays = plays.unique(
            subset=["user_id", "photo_id", "enter_timestamp"], keep="first", maintain_order=True
        ).sort("enter_timestamp", "user_id", maintain_order=True)  # logs come in time order
        step(4)
        choice, linked_keys, linked_plays = _live_choice(u, a, rooms, play_user, photo_author[play_photo])
        sessions, comments, shows = _make_live(rng, u, a, days, rooms, room_ids, choice,
                                               density.live_sessions_per_user_day)
        sessions = sessions.sort("live_play_start_timestamp", "user_id", maintain_order=True)
        comments = comments.sort("comment_ts", "user_id", maintain_order=True)
        shows = shows.sort("show_timestamp", "user_id", maintain_order=True)
        step(5)
        if covers:
            photo_meta = photo_meta.with_columns(
                cover_path=write_covers(out / COVERS, "photo", photo_ids, photo_topic, seed))
            room_meta = room_meta.with_columns(
                cover_path=write_covers(out / COVERS, "live", room_ids, rooms.topic, seed))
        frames = {
            "user_id_set": user_id_set, "author_profile": author_profile, "photo_meta": photo_meta,
            "photo_tag": photo_tag, "live_room_meta": room_meta, "photo_play": plays,
            "live_interaction": sessions, "photo_emb_128": photo_emb, "live_emb_64": live_emb,
            "live_comment": comments, "live_show": shows,
        }
        good_rows = {stem: f.height for stem, f in frames.items()}
        written, lines, manifest = dirty({s: encode_raw(s, f) for s, f in frames.items()}, dirty_rate, seed)
        files = {stem: write_raw(out, stem, frame) for stem, frame in written.items()}
        for stem, extra in lines.items():
            append_lines(files[stem], extra)
        (out / MANIFEST).unlink(missing_ok=True)
        if dirty_rate > 0:
            write_manifest(out, dirty_rate, manifest)
        write_latent(out, _latent_truth(u, a, rooms, room_ids, photo_ids, photo_author, photo_topic,
                                        photo_weight, linked_keys, linked_plays, topic_prior))
        step(6)

    cut = START + timedelta(days=cut_day(days))
    cut_pl = cut.replace(tzinfo=None)
    live_before = sessions.filter(pl.col("live_play_start_timestamp") < cut_pl)["user_id"].unique()
    cold = users - live_before.len()
    return DemoSummary(out=out, users=users, days=days, seed=seed,
                       rows={stem: f.height for stem, f in written.items()}, good_rows=good_rows,
                       injected={stem: sum(m.values()) for stem, m in manifest.items()},
                       cold_start_users=cold, on_air_rooms=int(rooms.on_air_at_end.sum()), cut=cut,
                       on_air_at_requests=on_air_at_test_requests(sessions, room_meta, cut),
                       seconds=time.perf_counter() - t0, files=files)
