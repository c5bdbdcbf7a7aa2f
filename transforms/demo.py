"""The demo world (v3, "honest"): a synthetic folder in the exact KuaiLive-M3 layout, worth learning from.

No channel is an oracle of the latent topic: each carries a share of it set by a knob of
`DemoWorld` (rgcd/config.py; docs/demo-world.md) and measured by `transforms/world_signal.py`.

What it encodes (and so what the later stages can learn):

- 24 topics, each with a four-level category path and an English vocabulary. Users hold a latent
  mixture over topics (Dirichlet, a few dominant topics) that drives BOTH domains.
- Creators (authors) have a main and a secondary topic; they post short videos mostly on their
  main topic, and the live authors among them go live on the same topics.
- Live rooms start mostly in the evening; many are short, some run for hours, and the ones still
  running at the end of the window are on air (`end_timestamp` NULL, `live_duration` NULL).
- Titles, OCR/subtitle text, live names and comments mix the topic's vocabulary with words shared
  by several topics and generic words, so some texts carry no topic word at all; half the items
  name an invented entity (a game, dish, team, place, person) whose topic only the knowledge table
  in `latent/` resolves (a large teacher's world knowledge; never in the raw files).
- Tags come from a noisy labeller (correct, sibling, random, missing) over a taxonomy that merges
  some topics; rooms carry no tags (as in KuaiLive-M3).
- Multimodal vectors are topic signal + a domain "look" + the author's style + noise (128-d
  photos, 64-d live, two spaces), so raw-vector topic purity is far from 1.
- Live interest is the short-video interest through a topic -> topic matrix (some interests
  transfer, some go to live-native topics) plus a live taste of its own; rooms drift from their
  streamer's main topic; the streamer pool follows KuaiLive-M3's counts (rare streamers common).
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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import Progress

from rgcd.config import DemoDensity, DemoWorld
from rgcd.transforms.contract import VECTOR_DIMS
from rgcd.transforms.dirt import MANIFEST, append_lines, dirty, write_manifest
from rgcd.transforms.latent import (
    GroupedSampler,
    LatentTruth,
    LiveChoice,
    LiveRoutes,
    is_evening,
    params_doc,
    write_latent,
)
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
MIN_LIVE_AUTHOR_SHARE = 0.25  # at least this share of creators stream ...
MAX_LIVE_AUTHOR_SHARE = 0.9   # ... and at most this one (more creators are made when rooms need them)
EXPLORE = 0.15                # share of plays whose topic comes from the global mix, not the user's
PLAY_TRENDING = 0.10          # share of plays that go to a popular video whatever its topic
LONG_ROOM_SHARE = 0.4         # rooms that run for hours (median 3 h); the rest median 25 min
# How a live session picks its room among those on air (transforms/latent.py: LiveChoice); the
# creator-linked share is DemoWorld.creator_link.
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
# Words with no topic: what fills real titles ("crazy day with the guys").
GENERIC_WORDS = ("today", "amazing", "vibes", "wow", "moment", "day", "crazy", "real", "everyone",
                 "story", "time", "favourite", "guys", "fun", "life", "chill", "part", "mood", "try", "look")
# Words several topics share: a reader cannot tell which one without more context.
AMBIGUOUS_WORDS: dict[str, tuple[int, ...]] = {
    "battle": (0, 1, 5), "cover": (3, 4), "build": (0, 11), "shot": (1, 9, 10), "drop": (1, 5, 17),
    "set": (4, 11, 13), "match": (0, 9, 10), "track": (3, 11, 20), "run": (2, 11, 19), "boss": (2, 21),
    "skin": (0, 14), "mix": (3, 6, 8), "heat": (6, 7, 11), "score": (9, 10, 22), "pitch": (3, 10, 17),
    "scale": (4, 17), "glow": (12, 14), "layers": (8, 13), "star": (3, 15, 22), "space": (2, 15),
    "wild": (18, 19), "ride": (19, 20), "trip": (19, 21), "reaction": (15, 21), "season": (9, 10, 23),
    "character": (2, 22, 23), "combo": (0, 6), "speed": (2, 20), "routine": (5, 11, 14),
    "look": (12, 13), "review": (14, 20, 22), "shell": (1, 7), "kit": (10, 12), "lesson": (4, 16),
    "words": (3, 16), "treats": (8, 18),
}
# The labeller's taxonomy is not the topics: some topics share a path (levels 2-3) and a level-4
# name is often a generic one, so a category does not name one topic.
LABEL_MERGES = {9: ("Ball Games", "Ball Sports"), 10: ("Ball Games", "Ball Sports"),
                12: ("Beauty", "Beauty Care"), 14: ("Beauty", "Beauty Care"),
                6: ("Cooking", "Home Kitchen"), 8: ("Cooking", "Home Kitchen"),
                21: ("Comedy and Film", "Clips"), 22: ("Comedy and Film", "Clips")}
GENERIC_L4 = ("Daily Life", "Highlights", "Tutorials", "Vlogs", "Reviews")
GENERIC_L4_SHARE = 0.3
# Live-native topics (singing, dancing, games, chat-like comedy, food stalls): where interest that
# does not transfer goes on a live platform (assumption).
LIVE_NATIVE = np.array([4, 4, 1, 4, 1, 4, 1, 2, 1, 1, 1, 1, 2, 2, 1, 1, 1, 1, 1, 1, 1, 4, 1, 1], float)
# The kind of entity each level-1 vertical names (a game, a dish, a team, a place, a person).
ENTITY_KIND = {"Gaming": "game", "Music": "person", "Food": "dish", "Sports": "team",
               "Beauty and Fashion": "person", "Knowledge": "person", "Lifestyle": "place",
               "Entertainment": "person"}
ENTITY_ZIPF = 1.1  # how often an entity is used: rank^-1.1, so most are rare (assumption)


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
    creator_linked_share: float = 0.0  # sessions in a room of a creator the user played in the window
    streamers: int = 0

    def one_line(self) -> str:
        """One line of figures for the CLI and `rgcd run`."""
        r = self.good_rows or self.rows
        dirt = sum(self.injected.values())
        dirt_note = f", {dirt:,} bad rows injected (dirt_manifest.json)" if dirt else ""
        return (f"demo world (synthetic, seed {self.seed}): {self.users:,} users, {self.days} days, "
                f"{r['author_profile']:,} authors ({self.streamers:,} streamers), "
                f"{r['photo_meta']:,} photos, "
                f"{r['live_room_meta']:,} live rooms ({self.on_air_rooms} on air at the end; "
                f"median {self.on_air_at_requests.get('median', 0):,.0f} on air at a test request), "
                f"{r['photo_play']:,} plays, {r['live_interaction']:,} live sessions "
                f"({self.creator_linked_share:.1%} creator-linked), "
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


def _flat(groups: list[list[str]]) -> tuple[pl.Series, np.ndarray, np.ndarray]:
    """A flat word list and each group's (offset, length) in it."""
    lengths = np.array([len(g) for g in groups])
    return (pl.Series([w for g in groups for w in g], dtype=pl.String),
            np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64), lengths)


def _entity_names(rng: np.random.Generator, n: int) -> np.ndarray:
    """`n` distinct invented proper names (two or three syllables): no dictionary knows them."""
    onsets = np.array(list("bdfgklmnprstvz") + ["br", "dr", "kr", "th", "sh", "ch", "tr"])
    vowels = np.array(["a", "e", "i", "o", "u", "ai", "ei", "ou"])
    codas = np.array(["", "", "", "n", "r", "x", "l", "s"])
    found: list[str] = []
    seen: set[str] = set(AMBIGUOUS_WORDS) | set(GENERIC_WORDS)
    while len(found) < n:
        m = 2 * (n - len(found)) + 16
        k = rng.integers(2, 4, m)
        parts = [onsets[rng.integers(0, len(onsets), m)] + vowels[rng.integers(0, len(vowels), m)]
                 for _ in range(3)]
        names = np.where(k == 3, parts[0] + parts[1] + parts[2], parts[0] + parts[1])
        names = names + codas[rng.integers(0, len(codas), m)]
        for name in names:
            name = str(name).capitalize()
            if name.lower() not in seen:
                seen.add(name.lower())
                found.append(name)
    return np.array(found[:n])


class _Text:
    """The text channel: topic, ambiguous and generic words, and the named entities.

    A content word is the item's topic's own word with probability `text_topic_word`, a word its
    topic shares with others with `text_ambiguous_word`, a generic word otherwise. An entity is
    an invented name whose topic only `latent/knowledge.parquet` gives.
    """

    def __init__(self, rng: np.random.Generator, world: DemoWorld) -> None:
        self.world = world
        self.vocab, self.vocab_at, self.vocab_n = _flat([list(t.words) for t in TOPICS])
        ambiguous = [[w for w, ts in AMBIGUOUS_WORDS.items() if k in ts] for k in range(N_TOPICS)]
        self.amb, self.amb_at, self.amb_n = _flat(ambiguous)
        self.generic = pl.Series(list(GENERIC_WORDS), dtype=pl.String)
        per = world.entities_per_topic
        self.entity_names = _entity_names(rng, N_TOPICS * per)
        self.entity_topic = np.repeat(np.arange(N_TOPICS), per)
        self.entity_kind = np.array([ENTITY_KIND[TOPICS[k].l1] for k in self.entity_topic])
        rank = np.concatenate([rng.permutation(per) + 1 for _ in range(N_TOPICS)])
        self._entity_pick = GroupedSampler(self.entity_topic, rank.astype(float) ** -ENTITY_ZIPF)

    def words(self, rng: np.random.Generator, topics: np.ndarray) -> pl.Series:
        """One content word per row."""
        n = len(topics)
        r = rng.random(n)
        u = rng.random(n)
        own = self.vocab.gather(self.vocab_at[topics] + (u * self.vocab_n[topics]).astype(np.int64))
        amb_n = self.amb_n[topics]
        amb = self.amb.gather(np.minimum(self.amb_at[topics] + (u * amb_n).astype(np.int64),
                                         len(self.amb) - 1))
        gen = self.generic.gather(rng.integers(0, len(self.generic), n))
        w = self.world
        use_own = r < w.text_topic_word
        use_amb = ~use_own & (r < w.text_topic_word + w.text_ambiguous_word) & (amb_n > 0)
        return pl.select(pl.when(pl.lit(use_own)).then(own).when(pl.lit(use_amb)).then(amb)
                         .otherwise(gen)).to_series()

    def entities(self, rng: np.random.Generator, topics: np.ndarray) -> np.ndarray:
        """An entity index per row (of the row's topic, Zipf-used), -1 for rows that name none."""
        has = rng.random(len(topics)) < self.world.knowledge_share
        idx = self._entity_pick.draw(rng, topics)
        return np.where(has, idx, -1)

    def entity_or(self, entity: np.ndarray, other: pl.Series) -> pl.Series:
        """The entity's name where a row names one, else `other`."""
        names = pl.Series(self.entity_names.tolist(), dtype=pl.String).gather(np.maximum(entity, 0))
        return pl.select(pl.when(pl.lit(entity >= 0)).then(names).otherwise(other)).to_series()

    def knowledge(self) -> pl.DataFrame:
        return pl.DataFrame({"entity": self.entity_names.tolist(),
                             "topic": self.entity_topic.astype(np.int64), "kind": self.entity_kind.tolist()})


def _pick(rng: np.random.Generator, options: tuple[str, ...], n: int,
          p: list[float] | None = None) -> pl.Series:
    return pl.Series(list(options)).gather(rng.choice(len(options), size=n, p=p))


def _emptied(rng: np.random.Generator, s: pl.Series, share: float) -> pl.Series:
    """Blank a share of a text column (real titles and subtitles are often missing)."""
    return pl.select(pl.when(pl.lit(rng.random(len(s)) < share)).then(pl.lit("")).otherwise(s)).to_series()


def _ms_to_datetime(ms: np.ndarray) -> pl.Series:
    return pl.Series(ms.astype(np.int64)).cast(pl.Datetime("ms"))


N_LOOKS = 8  # production styles per domain (lighting, framing, format): a nuisance shared across topics


def _vectors(rng: np.random.Generator, topics: np.ndarray, authors: np.ndarray, n_authors: int, dim: int,
             world: DemoWorld) -> pl.Series:
    """topic signal + a domain look + the author's style + noise, as list<float32> (one space per call)."""
    centroids = rng.normal(size=(N_TOPICS, dim))
    looks = rng.normal(size=(N_LOOKS, dim))
    style = rng.normal(size=(n_authors, dim)).astype(np.float32)
    n = len(topics)
    vec = world.vector_topic * centroids[topics] + world.vector_look * looks[rng.integers(0, N_LOOKS, n)]
    vec += world.vector_style * style[authors]
    vec += world.vector_noise * rng.normal(size=(n, dim))
    return pl.Series((vec / np.sqrt(dim)).astype(np.float32)).cast(pl.List(pl.Float32))


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
    interest: np.ndarray       # (n, topics) short-video mixture
    live_interest: np.ndarray  # (n, topics) live mixture: interest through the transfer matrix + own taste
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


def transfer_matrix(rng: np.random.Generator, world: DemoWorld) -> tuple[np.ndarray, np.ndarray]:
    """(M, strong): row k is where short-video interest in topic k goes on live.

    A transferring topic (`strong`) keeps `transfer_strong` on itself, another `transfer_weak`;
    of the rest, 30% goes to sibling topics (same level 1) and 70% to live-native topics.
    """
    strong = np.zeros(N_TOPICS, dtype=bool)
    strong[rng.permutation(N_TOPICS)[:round(world.transfer_strong_share * N_TOPICS)]] = True
    keep = np.where(strong, world.transfer_strong, world.transfer_weak)
    group = np.arange(N_TOPICS) // 3
    sibling = (group[:, None] == group[None, :]) & ~np.eye(N_TOPICS, dtype=bool)
    sibling = sibling / sibling.sum(axis=1, keepdims=True)
    native = np.tile(LIVE_NATIVE / LIVE_NATIVE.sum(), (N_TOPICS, 1))
    m = (1 - keep)[:, None] * (0.3 * sibling + 0.7 * native)
    m[np.arange(N_TOPICS), np.arange(N_TOPICS)] += keep
    return m / m.sum(axis=1, keepdims=True), strong


def _make_users(rng: np.random.Generator, n: int, topic_prior: np.ndarray, world: DemoWorld,
                transfer: np.ndarray) -> _Users:
    interest = rng.dirichlet(topic_prior * N_TOPICS * 0.12, size=n)
    live_prior = topic_prior * LIVE_NATIVE / (topic_prior * LIVE_NATIVE).sum()
    own = rng.dirichlet(live_prior * N_TOPICS * 0.12, size=n)
    live_interest = (1 - world.live_own_taste) * (interest @ transfer) + world.live_own_taste * own
    activity = rng.lognormal(0.0, 0.8, size=n)
    live_taste = np.exp(0.5 * np.log(activity) + rng.normal(0, 0.9, size=n))
    return _Users(
        ids=_ids(rng, n, 1_000_000, 40),
        interest=interest,
        live_interest=live_interest / live_interest.sum(axis=1, keepdims=True),
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


def _labeller_tags(rng: np.random.Generator, ids: np.ndarray, topic: np.ndarray, world: DemoWorld
                   ) -> pl.DataFrame:
    """photo_tag from a noisy labeller: the topic's path, a sibling's, any topic's, or no row."""
    n = len(ids)
    r = rng.random(n)
    sibling = (topic // 3) * 3 + (topic % 3 + rng.integers(1, 3, n)) % 3
    other = rng.integers(0, N_TOPICS, n)
    label = np.where(r < world.tag_correct, topic,
                     np.where(r < world.tag_correct + world.tag_sibling, sibling, other))
    tagged = r < world.tag_correct + world.tag_sibling + world.tag_random
    ids, label = ids[tagged], label[tagged]
    m = len(ids)
    l2 = [LABEL_MERGES.get(k, (t.l2, t.l3))[0] for k, t in enumerate(TOPICS)]
    l3 = [LABEL_MERGES.get(k, (t.l2, t.l3))[1] for k, t in enumerate(TOPICS)]
    own_l4 = pl.Series([t.l4[k] for t in TOPICS for k in range(3)]).gather(label * 3 + rng.integers(0, 3, m))
    l4 = pl.select(pl.when(pl.lit(rng.random(m) < GENERIC_L4_SHARE)).then(_pick(rng, GENERIC_L4, m))
                   .otherwise(own_l4)).to_series()
    return pl.DataFrame({
        "photo_id": ids,
        "first_level_category_name": pl.Series([t.l1 for t in TOPICS]).gather(label),
        "second_level_category_name": pl.Series(l2).gather(label),
        "third_level_category_name": pl.Series(l3).gather(label),
        "fourth_level_category_name": l4,
    }).with_columns(  # the real tags sometimes stop at level 3
        fourth_level_category_name=pl.when(pl.lit(rng.random(m) < 0.05)).then(None)
        .otherwise(pl.col("fourth_level_category_name")))


def _make_photos(rng: np.random.Generator, a: _Authors, n_target: int, text: _Text, world: DemoWorld):
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

    entity = text.entities(rng, topic)
    title = pl.concat_str([_pick(rng, TITLE_HOOKS, n), text.words(rng, topic),
                           text.entity_or(np.where(rng.random(n) < 0.5, entity, -1), text.words(rng, topic)),
                           _pick(rng, TITLE_TAILS, n)], separator=" ").str.strip_chars()
    texts = pl.concat_str([
        pl.lit("OCR:"), text.words(rng, topic).str.to_uppercase(), text.words(rng, topic).str.to_uppercase(),
        pl.lit("| SUB: today we"), _pick(rng, SUB_VERBS, n), pl.lit("the"), text.words(rng, topic),
        pl.lit("with"), text.entity_or(entity, text.words(rng, topic)), pl.lit("and some"),
        text.words(rng, topic),
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
    tag = _labeller_tags(rng, ids, topic, world)
    emb = pl.DataFrame({"photo_id": ids,
                        "feature": _vectors(rng, topic, author_idx, len(a.ids), VECTOR_DIMS["photo_emb_128"],
                                            world)})
    return meta, tag, emb, author_idx, topic, weight, duration, entity


@dataclass
class _Rooms:
    author: np.ndarray         # creator index, rooms sorted by start
    topic: np.ndarray
    weight: np.ndarray         # popularity weight in the draws
    start: np.ndarray          # epoch ms
    end: np.ndarray            # epoch ms as drawn (after the window for rooms still on air)
    window_end: int
    entity: np.ndarray         # the entity the room's name mentions, -1 for none

    @property
    def on_air_at_end(self) -> np.ndarray:
        return self.end > self.window_end


def _make_rooms(rng: np.random.Generator, a: _Authors, days: int, n_target: float, text: _Text,
                world: DemoWorld):
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
    # Many short rooms (median 25 min), some long ones (median 3 h); at least 5 minutes.
    long = rng.random(n) < LONG_ROOM_SHARE
    duration = np.where(long, rng.lognormal(np.log(3 * MS_HOUR), 0.5, n),
                        rng.lognormal(np.log(25 * 60_000), 0.8, n))
    duration = np.clip(duration, 5 * 60_000, 14 * MS_HOUR).astype(np.int64)
    # A streamer is in one room at a time: a room drawn to start while their earlier one runs is not held.
    earlier_end = (pl.DataFrame({"a": author_idx, "end": start + duration})
                   .select(pl.col("end").shift(1).cum_max().over("a")).to_series().fill_null(0).to_numpy())
    held = start >= earlier_end
    author_idx, start, duration, long = author_idx[held], start[held], duration[held], long[held]
    n = len(author_idx)
    r = rng.random(n)  # rooms drift from their streamer's main topic
    topic = np.where(r < world.room_main_topic, a.main_topic[author_idx],
                     np.where(r < world.room_main_topic + world.room_second_topic, a.second_topic[author_idx],
                              rng.integers(0, N_TOPICS, n)))
    end = start + duration
    window_end = int(START.timestamp() * 1000) + days * MS_DAY
    on_air = end > window_end
    ids = _ids(rng, n, 500_000_000, 30)
    entity = text.entities(rng, topic)
    name = pl.concat_str([_pick(rng, LIVE_OPENERS, n), text.words(rng, topic),
                          pl.when(pl.lit(entity >= 0)).then(pl.lit("with")).otherwise(pl.lit("and")),
                          text.entity_or(entity, text.words(rng, topic))], separator=" ")
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
                        "embedding": _vectors(rng, topic, author_idx, len(a.ids), VECTOR_DIMS["live_emb_64"],
                                              world)})
    weight = a.popularity[author_idx] ** 0.8 * rng.lognormal(0, 0.5, n)
    return meta, emb, _Rooms(author_idx, topic, weight, start, end, window_end, entity)


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
    choice = LiveChoice(u.live_interest, r.topic, r.weight, r.author, r.start, r.end, keys, plays, len(a.ids))
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
               per_user_day: float, routes: LiveRoutes, text: _Text):
    """live_interaction, live_comment and live_show; `per_user_day` sessions over all users."""
    # The held-out users' missing sessions before the cut are made up for by the others.
    rate = per_user_day / (1 - COLD_START_FRACTION * CUT_FRACTION) * u.live_taste
    span = days - np.where(u.held_out, cut_day(days), 0)
    counts = rng.poisson(rate * span)
    user_idx, at = _requests(rng, u, days, counts)
    room = choice.sample(rng, user_idx, at, routes)
    found = room >= 0  # nothing on air at that moment (only tiny worlds): no session
    user_idx, at, room = user_idx[found], at[found], room[found]
    n = len(user_idx)
    keys = user_idx.astype(np.int64) * len(a.ids) + r.author[room]
    pos = np.minimum(np.searchsorted(choice.linked_keys, keys), max(len(choice.linked_keys) - 1, 0))
    linked = (choice.linked_keys[pos] == keys) if len(choice.linked_keys) else np.zeros(n, bool)
    match = u.live_interest[user_idx, r.topic[room]] / u.live_interest.max(axis=1)[user_idx]
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
    content = pl.concat_str([_pick(rng, COMMENT_OPENERS, m), text.words(rng, s_topic)], separator=" ")
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
    return sessions, comments, shows, float(linked.mean()) if n else 0.0


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
                  photo_weight, photo_entity, linked_keys, linked_plays, topic_prior, text: _Text,
                  routes: LiveRoutes, transfer: np.ndarray, strong: np.ndarray, world: DemoWorld
                  ) -> LatentTruth:
    """What the draws came from, for the oracle and the simulated teacher (transforms/latent.py)."""
    n_a = len(a.ids)
    names = pl.Series(text.entity_names.tolist(), dtype=pl.String)

    def entity(idx: np.ndarray) -> pl.Series:
        return pl.select(pl.when(pl.lit(idx >= 0)).then(names.gather(np.maximum(idx, 0)))).to_series()

    items = pl.concat([
        pl.DataFrame({"item_id": pl.Series([f"photo:{i}" for i in photo_ids]), "domain": "photo",
                      "topic": photo_topic.astype(np.int64), "author_id": a.ids[photo_author],
                      "weight": photo_weight.astype(np.float64), "start_ms": None, "end_ms": None,
                      "entity": entity(photo_entity)},
                     schema_overrides={"start_ms": pl.Int64, "end_ms": pl.Int64, "entity": pl.String}),
        pl.DataFrame({"item_id": pl.Series([f"live:{i}" for i in room_ids]), "domain": "live",
                      "topic": r.topic.astype(np.int64), "author_id": a.ids[r.author],
                      "weight": r.weight.astype(np.float64), "start_ms": r.start, "end_ms": r.end,
                      "entity": entity(r.entity)}, schema_overrides={"entity": pl.String}),
    ])
    users = pl.DataFrame({"user_id": u.ids, "held_out": u.held_out}).with_columns(
        interests=pl.Series(u.live_interest.astype(np.float32)).cast(pl.List(pl.Float32)),
        photo_interests=pl.Series(u.interest.astype(np.float32)).cast(pl.List(pl.Float32)))
    user_authors = pl.DataFrame({"user_id": u.ids[linked_keys // n_a], "author_id": a.ids[linked_keys % n_a],
                                 "plays": linked_plays.astype(np.int64)})
    return LatentTruth(items, users, user_authors,
                       params_doc(routes, topic_prior, play_explore=EXPLORE, play_trending=PLAY_TRENDING,
                                  transfer=[[round(float(x), 6) for x in row] for row in transfer],
                                  transferring_topics=[int(k) for k in np.flatnonzero(strong)],
                                  world=world.model_dump()),
                       knowledge=text.knowledge())


def n_rooms(users: int, days: int, density: DemoDensity) -> float:
    """Expected rooms started in the window: per user, but never below the platform's floor."""
    return max(users * density.rooms_per_user, days * density.min_rooms_per_day)


def _creator_counts(users: int, days: int, density: DemoDensity, world: DemoWorld | None = None
                    ) -> tuple[int, int]:
    """(creators, streamers among them): enough creators for the videos and streamers for the rooms.

    Streamers = rooms / (days x rooms a streamer starts a day), the latter from KuaiLive-M3's counts
    (DemoWorld.streamer_rooms_per_day), so at the real density there are ~19 streamers per user.
    """
    per_day = (world or DemoWorld()).streamer_rooms_per_day
    n_live = max(1, round(n_rooms(users, days, density) / (days * per_day)))
    n_authors = max(20, round(users * density.photos_per_user / PHOTOS_PER_AUTHOR),
                    int(np.ceil(n_live / MAX_LIVE_AUTHOR_SHARE)))
    return n_authors, min(n_authors, max(n_live, round(MIN_LIVE_AUTHOR_SHARE * n_authors)))


COVERS = "covers"  # the demo's cover images, under its output folder
COVER_TOPIC_SHARE = 0.6  # covers whose colour is their topic's (no channel is an oracle)


def write_covers(folder: Path, domain: str, ids: np.ndarray, topic: np.ndarray, seed: int) -> pl.Series:
    """One synthetic cover per item (a 16x16 PNG), returning the absolute paths (`cover_path`).

    SYNTHETIC, not a picture of anything: a flat colour whose hue is the item's true topic for
    `COVER_TOPIC_SHARE` of the items and any topic's for the rest (assumption: a cover says
    something about the item, not everything), plus a little noise per item. Noise from its own
    generator: the world is unchanged by it.
    """
    from colorsys import hsv_to_rgb

    from PIL import Image

    rng = np.random.default_rng([seed, 1 if domain == "photo" else 2])
    shown = np.where(rng.random(len(ids)) < COVER_TOPIC_SHARE, topic, rng.integers(0, N_TOPICS, len(ids)))
    hue = (shown / N_TOPICS + rng.normal(0, 0.1 / N_TOPICS, len(ids))) % 1.0
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
             world: DemoWorld | None = None, dirty_rate: float = 0.0, covers: bool = False,
             show_progress: bool = True) -> DemoSummary:
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
    world = world or DemoWorld()
    routes = replace(SESSION_ROUTES, linked=world.creator_link)
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
        transfer, strong = transfer_matrix(rng, world)
        u = _make_users(rng, users, topic_prior, world, transfer)
        a = _make_authors(rng, *_creator_counts(users, days, density, world), topic_prior)
        text = _Text(rng, world)
        author_profile = _author_profile(rng, a)
        user_id_set = pl.DataFrame({"user_id": u.ids})
        step(1)
        photo_meta, photo_tag, photo_emb, photo_author, photo_topic, photo_weight, photo_duration, \
            photo_entity = _make_photos(rng, a, int(users * density.photos_per_user), text, world)
        photo_ids = photo_meta["photo_id"].to_numpy()
        step(2)
        room_meta, live_emb, rooms = _make_rooms(rng, a, days, n_rooms(users, days, density), text, world)
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
        sessions, comments, shows, linked_share = _make_live(rng, u, a, days, rooms, room_ids, choice,
                                                             density.live_sessions_per_user_day, routes, text)
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
                                        photo_weight, photo_entity, linked_keys, linked_plays, topic_prior,
                                        text, routes, transfer, strong, world))
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
                       seconds=time.perf_counter() - t0, files=files, creator_linked_share=linked_share,
                       streamers=int(a.is_live.sum()))
