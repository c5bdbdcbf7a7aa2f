"""Typed settings: one YAML file, loaded into pydantic models.

Every path the platform writes is derived from the workspace folder (see `Workspace`),
so a run is one self-contained directory.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# A setting's name for the dtype of an encode (resolved by training/precision.py: `encode_dtype`).
EncodeDtype = Literal["auto", "float32", "bfloat16"]
# The full method and its ablations (training/full_method.py), named here so that what only
# needs the names (evaluate's main process) does not import the models and torch with them.
# rgcd-no-stage2 is the full method's retriever without the stage-2 vectors: what the wiring alone gives.
FULL_METHOD = ("rgcd", "rgcd-no-reasoning", "rgcd-no-decomposition", "rgcd-no-routing", "rgcd-no-stage2")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def inside_workspace(value: str) -> str:
    """A setting naming a path inside the workspace: relative, without '..' (empty passes)."""
    path = Path(value)
    if value and (path.is_absolute() or ".." in path.parts):
        raise ValueError("must be a path inside the workspace (a relative path without '..')")
    return value


class DemoDensity(_Section):
    """How much happens per user in the demo world: engagement a day and catalogue size.

    The defaults make the demo world (small enough for `make demo` on 2 cores). KuaiLive-M3's own
    density (111M plays and 35M live interactions of 21.9k users over 21 days; 6.7M videos and
    6.6M rooms) is `DemoDensity.kuailive_m3()`: about 240 plays and 76 live sessions per user-day,
    300 videos and 300 rooms per user.
    """

    plays_per_user_day: float = Field(3.6, gt=0, description="short-video plays per user and day")
    live_sessions_per_user_day: float = Field(
        0.357, gt=0, description="live sessions per user and day (over all users, cold-start ones "
                                 "included)")
    photos_per_user: float = Field(3.0, gt=0, description="short videos in the catalogue per user")
    rooms_per_user: float = Field(8.5, gt=0, description="live rooms started in the window per user")
    min_rooms_per_day: float = Field(
        3_000, ge=0, description="the platform's floor: rooms started a day whatever the number of "
                                 "users (a small sample of users still sees a platform's rooms)")

    @classmethod
    def kuailive_m3(cls) -> DemoDensity:
        """The per-user density of the real KuaiLive-M3 dataset (use with 21 days)."""
        return cls(plays_per_user_day=240.0, live_sessions_per_user_day=76.0, photos_per_user=300.0,
                   rooms_per_user=300.0)


class DemoWorld(_Section):
    """How much of the latent truth each channel of the demo world carries (docs/demo-world.md).

    Each knob is set from a published figure where one exists (cited) and is a stated assumption
    where none does; none is set from what makes a model win. `rgcd demo-data` measures every
    channel (10-NN topic purity and linear-probe accuracy) and prints the figures.
    """

    vector_topic: float = Field(1.0, ge=0, description="multimodal vectors: amplitude of the topic "
                                                        "centroid (the signal)")
    vector_look: float = Field(1.2, ge=0, description="amplitude of the domain's shared 'look' (one of 8 "
                                                       "production styles per item, topic-blind)")
    vector_style: float = Field(0.8, ge=0, description="amplitude of the author's own style (shared by "
                                                        "all their items, topic-blind)")
    vector_noise: float = Field(2.4, ge=0, description="amplitude of per-item noise. Assumption (no "
                                                        "published purity for KuaiLive-M3's vectors): "
                                                        "generic pretrained vectors separate 24 topics "
                                                        "partially, 10-NN purity about 0.3-0.5")
    tag_correct: float = Field(0.60, ge=0, le=1, description="labeller: share of videos tagged with "
                                                             "their topic's path (assumption)")
    tag_sibling: float = Field(0.15, ge=0, le=1, description="labeller: share tagged with a sibling "
                                                             "topic (same level 1) (assumption)")
    tag_random: float = Field(0.10, ge=0, le=1, description="labeller: share tagged with any topic "
                                                            "(assumption); the rest are untagged")
    text_topic_word: float = Field(0.35, ge=0, le=1, description="share of a text's content words from "
                                                                 "its topic's vocabulary (assumption)")
    text_ambiguous_word: float = Field(0.25, ge=0, le=1, description="share of words shared by several "
                                                                     "topics ('battle', 'cover'); the "
                                                                     "rest are generic (assumption)")
    knowledge_share: float = Field(0.5, ge=0, le=1, description="share of items whose text names an "
                                                                "entity (a game, dish, team, place, "
                                                                "person) only world knowledge resolves")
    entities_per_topic: int = Field(120, gt=0, description="invented entities per topic; Zipf-used, so "
                                                           "most are rare and co-occurrence cannot "
                                                           "learn them (assumption)")
    transfer_strong_share: float = Field(0.5, ge=0, le=1, description="share of topics whose short-video "
                                                                      "interest carries to live "
                                                                      "(assumption)")
    transfer_strong: float = Field(0.75, ge=0, le=1, description="live interest kept on the same topic "
                                                                 "for a transferring topic")
    transfer_weak: float = Field(0.15, ge=0, le=1, description="... for a topic that does not transfer "
                                                               "(the rest goes to live-native topics)")
    live_own_taste: float = Field(0.25, ge=0, le=1, description="share of a user's live interest "
                                                                "unrelated to their short videos")
    room_main_topic: float = Field(0.6, ge=0, le=1, description="rooms on their streamer's main topic; "
                                                                "room_second_topic on the second, the "
                                                                "rest drift to any topic (assumption)")
    room_second_topic: float = Field(0.2, ge=0, le=1)
    streamer_rooms_per_day: float = Field(
        0.755, gt=0, description="rooms a streamer starts a day: KuaiLive-M3's 6.6M rooms over 21 days "
                                 "and ~19 streamers per user x 21.9k users (KuaiLive, arXiv 2508.05633: "
                                 "452,621 streamers / 23,772 users); at the real density this gives 19 "
                                 "streamers per user")
    creator_link: float = Field(0.25, ge=0, le=1, description="share of live requests where the user "
                                                              "looks for a creator they watched (entered "
                                                              "if live; assumption, the realised share "
                                                              "is printed)")

    @model_validator(mode="after")
    def _shares_fit(self) -> DemoWorld:
        for names in (("tag_correct", "tag_sibling", "tag_random"),
                      ("text_topic_word", "text_ambiguous_word"), ("room_main_topic", "room_second_topic")):
            if sum(getattr(self, n) for n in names) > 1:
                raise ValueError(f"{' + '.join(names)} must be at most 1")
        if self.creator_link > 0.6:  # the other routes take 0.18-0.28 (transforms/demo.py: SESSION_ROUTES)
            raise ValueError("creator_link must be at most 0.6")
        return self


class DemoConfig(_Section):
    """Size, seed and density of the synthetic KuaiLive-M3 world."""

    users: int = Field(20_000, gt=0)
    days: int = Field(14, gt=1)
    seed: int = 7
    density: DemoDensity = DemoDensity()
    world: DemoWorld = DemoWorld()
    klm3_core: int = Field(
        1, gt=0, description="klm3-cdr's k-core on a demo world (a workspace with latent/), in place of "
                             "warehouse.klm3_core: the benchmark's 10 scaled by the demo's live sessions per "
                             "streamer against KuaiLive-M3's (6.3 / 84 x 10 = 0.75, so 1: no core filter); "
                             "measured in benchmarks/klm3_core_density.py, docs/evaluation.md")
    dirty_rate: float = Field(0.001, ge=0, lt=1, description="share of bad rows appended to each raw file "
                                                            "(transforms/dirt.py), so ingest's quarantine "
                                                            "shows; 0 for a clean world")
    covers: bool = Field(False, description="write a synthetic cover image per video and room "
                                            "(<demo>/covers/, the contract's optional cover_path) for "
                                            "vision-language teachers; ~1 ms per item")


class IngestConfig(_Section):
    """How raw files are streamed into the lake."""

    batch_rows: int = Field(500_000, gt=0, description="rows per streamed batch of a large file")
    batch_mib: int = Field(64, gt=0, description="cap on a batch's raw size; wide rows (vectors) "
                                                  "get fewer rows per batch")
    plausible_from: date = Field(date(2000, 1, 1), description="the earliest plausible event time (UTC): "
                                 "an earlier time quarantines its row, and a column mostly outside the "
                                 "window refuses the file (epoch seconds or microseconds read as "
                                 "milliseconds land in 1970 or tens of thousands of years ahead)")
    plausible_to: date = Field(date(2100, 1, 1), description="the first implausible event time (UTC), "
                                                             "exclusive: see plausible_from")
    cover_max_bytes: int = Field(10 * 2**20, gt=0, description="largest cover image (cover_path) a row "
                                 "may name; the teacher reads no larger file either")

    @model_validator(mode="after")
    def _window_not_empty(self) -> IngestConfig:
        if self.plausible_to <= self.plausible_from:
            raise ValueError("ingest.plausible_to must be after ingest.plausible_from")
        return self


class WarehouseConfig(_Section):
    """dbt-duckdb settings."""

    pair_window_hours: int = Field(24, gt=0, description="co-engagement window for behaviour pairs")
    # The pair rule (docs/warehouse.md, the behaviour-pair rule): what a user can contribute per UTC day is
    # capped, so pairs grow with engagement, not with plays x sessions.
    pair_plays_per_user_day: int = Field(20, gt=0, description="a user's strongest valid plays of a day "
                                                               "that can form pairs")
    pair_sessions_per_user_day: int = Field(10, gt=0, description="a user's strongest live sessions of "
                                                                  "a day that can form pairs")
    pair_max_per_user_day: int = Field(50, gt=0, description="the strongest (short video, room) "
                                                             "co-engagements kept per user and day")
    pair_min_strength: float = Field(0.2, ge=0.0, le=1.0, description="floor on a co-engagement's "
                                                                      "strength")
    klm3_core: int = Field(10, gt=0, description="klm3-cdr's k-core per domain on real data: users and items "
                                                 "with at least this many positives (the public "
                                                 "benchmark's 10); a demo world uses demo.klm3_core")
    threads: int = Field(2, gt=0)
    memory_limit_gb: float = Field(0.0, ge=0.0, description="DuckDB memory limit of every connection "
                                                            "(dbt, frames, readers); 0: memory_fraction "
                                                            "of the machine's RAM")
    memory_fraction: float = Field(0.5, gt=0.0, le=1.0, description="share of RAM DuckDB may use when "
                                                                    "memory_limit_gb is 0")
    spill_folder: str = Field("duckdb_spill", description="where DuckDB spills, relative to the "
                                                          "workspace")

    @field_validator("spill_folder")
    @classmethod
    def _inside_workspace(cls, value: str) -> str:
        if not value:
            raise ValueError("must be a folder inside the workspace (a relative path without '..')")
        return inside_workspace(value)


class FeaturesConfig(_Section):
    """Feast settings."""

    project: str = "rgcd"
    offline_store: Literal["asof", "duckdb"] = Field(
        "asof", description="asof: point-in-time joins as DuckDB ASOF JOINs (rgcd.featurestore."
                            "offline_store); duckdb: Feast's stock DuckDB store, same answers, slower")
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_connection_string: str = "localhost:6379"
    serve_workers: int = Field(0, ge=0, description="`rgcd features serve` worker processes; 0: one per "
                                                    "CPU core")
    registry_refresh_s: int = Field(5, gt=0, description="how often a running feature server checks the "
                                                         "registry file for a new `apply`")
    materialize_slice_rows: int = Field(
        100_000, gt=0, description="rows of a view's table per Feast materialize call: the time range is "
                                   "cut into windows of about this many rows, loaded oldest first, so "
                                   "Feast's pull, its pandas steps and the online write hold one window")
    online_write_batch_rows: int = Field(
        10_000, gt=0, description="rows per online-store write inside a window (Feast's "
                                  "materialization.online_write_batch_size)")


class TeacherConfig(_Section):
    """Stage 1a: who writes the reasoning."""

    backend: Literal["metadata", "openai", "hf", "world"] = Field(
        "metadata", description="world: a simulated teacher for synthetic worlds only, not an LLM "
                                "(answers from <workspace>/latent/ with accuracy world_accuracy)")
    world_accuracy: float = Field(0.9, ge=0.0, le=1.0, description="world teacher: the share of items whose "
                                                                   "topic it names right")
    world_seed: int = Field(0, description="world teacher: the seed of its wrong answers")
    model: str = ""
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "RGCD_TEACHER_API_KEY"
    max_pairs: int = Field(2_000, gt=0, description="budget of an LLM teacher: pairs it judges")
    free_teacher_pairs: int = Field(
        20_000, gt=0, description="budget of a teacher that costs nothing (the metadata baseline, the "
                                  "simulated world teacher)")
    strength_bands: int = Field(4, gt=0, description="pairs are judged in this many equal-count bands of "
                                                      "behaviour strength, a hashed sample of each (1: the "
                                                      "strongest pairs only)")
    min_strength: float = Field(0.0, ge=0.0, le=1.0, description="high-confidence cut on pair strength")
    max_pairs_per_item: int = Field(3, gt=0, description="spreads the budget over more items: at most this "
                                                          "many pairs per short video and per live room")
    concurrency: int = Field(4, gt=0, description="requests in flight (openai) / batch size (hf)")
    timeout_s: float = Field(60.0, gt=0)
    retries: int = Field(2, ge=0, description="extra attempts for transport errors and for invalid answers")
    backoff_s: float = Field(1.0, ge=0, description="first retry wait; doubles each attempt")
    temperature: float = Field(0.0, ge=0)
    max_new_tokens: int = Field(256, gt=0, description="new tokens per answer; under the hf grammar at "
                                                        "least the longest answer's length (743)")
    structured_output: bool = Field(True, description="decode within the answer schema: a grammar (hf), "
                                                      "response_format json_schema (openai; falls back to "
                                                      "prompt-and-validate where a server refuses it)")
    send_covers: bool = Field(True, description="items' cover_path images go to a vision-language "
                                                "teacher (hf VLM, openai image parts)")


class StudentConfig(_Section):
    """Stage 1b: the student with chorus tokens and its distillation budget."""

    base_path: str = Field("", description="any transformers causal LM folder; empty: build a tiny "
                                           "untrained Qwen2 from config + a tokenizer trained offline")
    tiny_hidden: int = Field(64, gt=0)
    tiny_layers: int = Field(2, gt=0)
    tiny_heads: int = Field(4, gt=0)
    tiny_vocab: int = Field(2_000, gt=0)
    n_chorus: int = Field(16, gt=0, description="learnable chorus tokens appended after the item inputs")
    n_soft_tokens: int = Field(2, gt=0, description="soft tokens the multimodal vector is projected into")
    mask_direct_path: bool = Field(True, description="knowledge tokens see the item only via chorus tokens")
    max_item_tokens: int = Field(64, gt=0)
    max_knowledge_tokens: int = Field(40, gt=0)
    mm_distill_weight: float = Field(1.0, ge=0, description="weight of the multimodal distillation term: "
                                     "the mean chorus state must point where the item's multimodal "
                                     "vector points (0: next-token prediction alone)")
    max_train_items: int = Field(3_000, gt=0, description="cap on the items with teacher knowledge the "
                                 "student trains on, shared evenly among the domains")
    held_out_fraction: float = Field(0.2, gt=0, lt=1)
    steps: int = Field(800, gt=0)
    batch_size: int = Field(32, gt=0)
    lr: float = Field(5e-3, gt=0)
    encode_batch_size: int = Field(128, gt=0)
    read_batch_items: int = Field(
        200_000, gt=0, description="items per window read through Feast (and per slice of the run's "
                                   "item file): the item frame is never whole in memory (~1 KB an item)")
    encode_dtype: EncodeDtype = Field(
        "auto", description="dtype for encoding every item after training (auto: bfloat16 where the CPU "
                            "has it natively, AMX / AVX512-BF16: 1.1x faster, cosine 0.9998 to float32; "
                            "else float32)")
    encode_processes: int = Field(0, ge=0, description="processes that encode every item after training, "
                                  "one torch thread each, so the states do not depend on how many there "
                                  "are (0: one per CPU core; 1: in this process); on 2 cores two "
                                  "processes encode 1.40x as fast as one process on two threads: "
                                  "benchmarks/encode_processes.py")
    eval_items: int = Field(200, gt=0, description="held-out items whose generation is scored")
    torch_threads: int = Field(2, ge=0, description="CPU threads for torch while training, pinned here "
                                                    "rather than by the machine: a matmul's last bits "
                                                    "depend on how many threads share it, so the same "
                                                    "configuration gives the same student anywhere (0: "
                                                    "torch's default, one per core or OMP_NUM_THREADS: "
                                                    "the weights then depend on the machine); on an idle "
                                                    "2-core machine two are 1.4x faster than one")
    checkpoint_every_steps: int = Field(100, ge=0, description="training saves a checkpoint every N "
                                        "steps and a rerun after a kill resumes from it (0: none)")
    seed: int = 0


class TransferConfig(_Section):
    """Stage 2: transferable / residual decomposition over the chorus states (training/decomposition.py)."""

    dim: int = Field(32, gt=0, description="size of the transferable and of the residual vector")
    n_queries: int = Field(4, gt=0, description="learnable queries per space attending "
                                                  "over the chorus states")
    heads: int = Field(4, gt=0, description="attention heads of the query-aware aggregation")
    use_reasoning: bool = Field(True, description="purity from behaviour AND the teacher's "
                                                  "semantic_transferability (off: behaviour alone)")
    decompose: bool = Field(True, description="a transferable and a residual vector (off: one vector)")
    routing: bool = Field(True, description="high-purity pairs in the transferable space, low-purity "
                                            "pairs through transferable + residual (off: all pairs "
                                            "in the transferable space)")
    separation: bool = Field(True, description="penalise the squared cosine between an item's "
                                               "transferable and residual vectors")
    separation_weight: float = Field(0.1, ge=0)
    domain_alignment_weight: float = Field(1.0, ge=0, description="pull the two domains' mean "
                                                                  "transferable vectors together (0: off)")
    reasoning_weight: float = Field(0.5, ge=0, le=1, description="purity = behaviour^(1-w) x "
                                                                 "transferability^w")
    item_answer_fields: list[Literal["vertical_domain", "key_subject", "content_theme"]] = Field(
        ["content_theme", "vertical_domain"], description="an unjudged pair's transferability from its "
        "two items' item-level answers (item_reasoning at the cut) where both have them: a least-squares "
        "fit of the judged training pairs' teacher scores on [same answer] per field (no latent truth, "
        "no test split); the ridge probe fills the rest. Empty: the probe fills every unjudged pair")
    high_purity_quantile: float = Field(0.5, gt=0, lt=1, description="pairs at or above this quantile "
                                                                     "of purity are high purity")
    temperature: float = Field(0.5, gt=0, description="InfoNCE temperature; behaviour pairs are noisy (87% "
                               "join items of different topics on World v3). Held-out pairs' percentile on a "
                               "4,000-user world: raw-vector inputs 0.526 (0.516 at 0.1), chorus states a "
                               "tie (0.511 vs 0.512); same-topic pairs' cosine 3-4x higher than at 0.1")
    logq_correction: bool = Field(True, description="in-batch sampling-bias correction on live items")
    max_pairs: int = Field(150_000, gt=0, description="room pairs read (a hash sample of the eligible "
                                                      "pair ids when there are more)")
    held_out_fraction: float = Field(0.1, gt=0, lt=1, description="pairs kept out of training for the "
                                                                  "alignment figures (hash of pair_id)")
    steps: int = Field(600, gt=0, description="most training steps of a fit, a cap over max_epochs that "
                                             "keeps `make demo` in budget: a step of 256 pairs costs ~0.1 s "
                                             "on one thread, and evaluation fits 5 models")
    max_epochs: float = Field(3.0, gt=0, description="most passes over the training pairs; training stops "
                                                    "earlier when the held-out recall stops rising")
    eval_every: int = Field(100, gt=0, description="steps between measurements of the held-out pairs' "
                                                   "ranking (the stopping metric: the mean percentile of "
                                                   "each pair's own room)")
    patience: int = Field(3, gt=0, description="measurements without a gain before training stops "
                                               "(the best weights are kept)")
    eval_pairs: int = Field(4_096, gt=1, description="held-out pairs the stopping metric ranks")
    batch_size: int = Field(256, gt=1)
    lr: float = Field(3e-3, gt=0)
    checkpoint_every: int = Field(100, gt=0, description="steps between resumable checkpoints")
    encode_batch_size: int = Field(512, gt=0, description="items per chunk read from the chorus states "
                                   "(4,096: as fast, 0.37 GiB more at the demo size)")
    torch_threads: int = Field(1, ge=0, description="CPU threads for torch (0: torch's default)")
    retriever_id_dropout: float = Field(
        0.25, ge=0, lt=1, description="the full method's retriever: share of training rows whose id and "
                                      "creator embeddings are dropped, so its content path ranks rooms of "
                                      "streamers it never saw")
    keep_versions: int = Field(3, gt=0, description="model versions kept in item/user_embeddings "
                                                    "(the newest first), for rollback")
    write_batch_rows: int = Field(100_000, gt=0, description="rows per batch written to item/user_embeddings "
                                  "(the writer holds one batch, whatever the catalogue)")
    seed: int = 0


class IndexConfig(_Section):
    """The vector index of a published collection on a Milvus server (Milvus Lite: FLAT whatever
    this says). FLAT is exact; HNSW and IVF_FLAT trade recall for time once the rooms on air are many
    (docs/serving.md, Retrieval against exact search, measured). The search parameters are recorded
    in the collection with its index, so every reader searches as publish validated."""

    type: Literal["FLAT", "HNSW", "IVF_FLAT"] = Field("FLAT", description="FLAT (exact), HNSW or IVF_FLAT")
    hnsw_m: int = Field(16, ge=2, le=2048, description="HNSW: links per vector")
    hnsw_ef_construction: int = Field(200, gt=0, description="HNSW: candidates kept while building")
    hnsw_ef: int = Field(200, gt=0, description="HNSW: candidates kept while searching (at least the k "
                                                "asked: raised to it)")
    ivf_nlist: int = Field(1024, ge=1, le=65536, description="IVF_FLAT: clusters the vectors are cut into")
    ivf_nprobe: int = Field(32, ge=1, description="IVF_FLAT: clusters searched (at most ivf_nlist)")

    def build_params(self) -> dict[str, int]:
        """Milvus' index parameters for this type."""
        return {"HNSW": {"M": self.hnsw_m, "efConstruction": self.hnsw_ef_construction},
                "IVF_FLAT": {"nlist": self.ivf_nlist}}.get(self.type, {})

    def search_params(self) -> dict[str, int]:
        """Milvus' search parameters for this type (HNSW's ef is raised to the k of each search)."""
        return {"HNSW": {"ef": self.hnsw_ef}, "IVF_FLAT": {"nprobe": min(self.ivf_nprobe, self.ivf_nlist)}
                }.get(self.type, {})


class RetrievalConfig(_Section):
    """Publishing and serving vectors: Milvus Lite file by default, a Milvus server by URI."""

    milvus_uri: str = Field("", description="empty: the Milvus Lite file <workspace>/milvus/rooms.db; "
                                            "http://host:19530 for a Milvus server (same code)")
    milvus_token: str = Field("", description="token for a Milvus server ('user:password'); empty: none")
    milvus_db: str = Field("", description="database on a Milvus server (empty: the server's default)")
    alias: str = Field("live_rooms", description="the Milvus alias readers search through")
    keep_versions: int = Field(3, gt=0, description="published collections kept (the current one "
                                                    "included) for `rgcd publish --rollback`")
    default_k: int = Field(50, gt=0, le=1000, description="candidates returned when k is not given")
    max_k: int = Field(1000, gt=0, description="largest k a request may ask for")
    validate_sample: int = Field(32, gt=0, description="published vectors that must find themselves first "
                                                       "before the alias is switched")
    history_videos: int = Field(20, gt=0, description="recent positive short videos kept per user for "
                                                      "the no-vector fallback and the reasons")
    popularity_days: int = Field(7, gt=0, description="days of live sessions behind a room's popularity "
                                                      "(its author's sessions before the cut)")
    cache_s: float = Field(1.0, ge=0, description="how long a reader trusts its view of the alias "
                                                  "(which collection and version) before asking Milvus")
    index: IndexConfig = Field(default_factory=IndexConfig)
    insert_batch: int = Field(5_000, gt=0, description="rows per Milvus insert while publishing")
    publish_batch_rooms: int = Field(50_000, gt=0, description="rooms per window while publishing: the "
                                     "window's schedule is read through Feast and its rows staged, then "
                                     "inserted; publish holds one window, whatever the catalogue")
    search_batch: int = Field(16, ge=0, description="`rgcd serve` with a Milvus server: concurrent "
                              "requests' searches sent to Milvus as one, at most this many (0: each "
                              "request searches on its own, in turn, as with Milvus Lite)")
    host: str = Field("127.0.0.1", description="`rgcd serve` bind address")
    port: int = Field(8765, gt=0, lt=65536, description="`rgcd serve` port")
    serve_workers: int = Field(1, gt=0, description="`rgcd serve` worker processes; more than 1 needs "
                                                    "milvus_uri to name a Milvus server (a Lite file "
                                                    "allows one process)")


class ServingConfig(_Section):
    """Who may write through the HTTP servers (`rgcd serve`, `rgcd features serve`), and what a
    request may ask. The token itself is never in this file: it is read from an environment
    variable or a file inside the workspace (docs/security.md)."""

    write_token_env: str = Field("RGCD_WRITE_TOKEN", description="environment variable that holds the "
                                 "bearer token write routes require (POST /rooms/..., Feast's write "
                                 "routes when asked for); writes are off while no token is set")
    write_token_file: str = Field("", description="a file inside the workspace holding the token (e.g. "
                                  "secrets/write_token, mode 600), read when the variable is unset")
    clock_skew_s: int = Field(300, ge=0, description="how far past now a request's `at` or a room's "
                              "start may be (clocks differ a little; the future has no rooms)")
    max_body_kib: int = Field(4096, gt=0, description="largest request body `rgcd serve` reads")

    @field_validator("write_token_file")
    @classmethod
    def _token_inside_workspace(cls, value: str) -> str:
        return inside_workspace(value)


class EvaluationConfig(_Section):
    """Evaluation protocols and trust settings."""

    ks: list[int] = Field(default_factory=lambda: [10, 20, 40, 50])
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2])
    models: list[str] = Field(
        default_factory=lambda: ["popularity", "creator_link", "creator_link_popularity", "bpr_mf",
                                 "content_mm", "content_text", "uniembed", "emcdr"],
        description="models evaluated, in report order (see training/baselines)")
    full_method: list[str] = Field(
        default_factory=lambda: list(FULL_METHOD),
        description="the full method and its ablations, evaluated after the baselines when the "
                    "student's chorus states exist (training/full_method.py)")
    protocols: list[Literal["klm3-cdr", "live-room"]] = Field(
        default_factory=lambda: ["klm3-cdr", "live-room"])
    ablation_protocols: list[Literal["klm3-cdr", "live-room"]] = Field(
        default_factory=lambda: ["live-room"],
        description="protocols the full method's ablations are evaluated on (the full method itself "
                    "and the baselines run on every protocol): live-room is the task the method is "
                    "for, and each ablation on klm3-cdr costs a stage-2 fit and three retriever fits")
    head_fraction: float = Field(0.2, gt=0, lt=1, description="klm3-cdr: popular share that is not tail")
    klm3_cold_start_quantile: float = Field(
        0.25, gt=0, lt=1, description="klm3-cdr cold_start slice: users at or below this quantile of "
                                      "live training interactions (10-core leaves no true cold start)")
    mf_samples: int = Field(2**21, gt=0, description="training rows drawn by each BPR-MF fit (bpr_mf, "
                                                     "both of emcdr's): a fixed CPU budget, not epochs")
    contrastive_samples: int = Field(2**19, gt=0, description="training rows drawn by each two-tower fit "
                                                             "(uniembed, the full method, its ablations, "
                                                             "the published retriever): 512 steps of 1,024; "
                                                             "at 2^18 uniembed's live-room NDCG@10 falls "
                                                             "from 0.113 to 0.035 (measured)")
    dim: int = Field(32, gt=0, description="embedding size of the trained baselines")
    torch_threads: int = Field(1, gt=0, description="torch threads while baselines train and score")
    workers: int = Field(2, gt=0, description="processes that fit and score models side by side (one "
                                              "model on one protocol, all seeds, per job); 1: all in "
                                              "this process")
    parallel_from_cases: int = Field(
        5000, ge=0, description="workers are started only when the protocols have at least this many "
                                "test rows in their eval marts (below, starting them costs more than they "
                                "save)")
    bootstrap_samples: int = Field(1000, ge=100, description="resamples of the report's paired bootstrap "
                                                             "intervals (training/intervals.py)")
    text_max_items: int = Field(3000, gt=0, description="content_text: most-played items whose text "
                                                        "is encoded (MiniLM costs ~10 ms per text here)")
    text_encode_dtype: EncodeDtype = Field(
        "auto", description="content_text's MiniLM dtype (auto: bfloat16 where the CPU has it natively: "
                            "2.9x faster, cosine 0.9999 to float32; else float32)")


class DistributedConfig(_Section):
    """Training stages under torchrun (training/distributed.py): read only in processes torchrun
    started with more than one process; one process ignores it."""

    backend: Literal["gloo", "nccl"] = Field("gloo", description="torch.distributed backend: gloo on "
                                                                "CPUs, nccl between GPUs")
    timeout_s: int = Field(1800, gt=0, description="how long a rank waits for the others (at a "
                                                   "barrier, a gradient average) before the run fails")


class Settings(_Section):
    """The whole configuration of one rgcd workspace."""

    demo: DemoConfig = DemoConfig()
    ingest: IngestConfig = IngestConfig()
    warehouse: WarehouseConfig = WarehouseConfig()
    features: FeaturesConfig = FeaturesConfig()
    teacher: TeacherConfig = TeacherConfig()
    student: StudentConfig = StudentConfig()
    transfer: TransferConfig = TransferConfig()
    retrieval: RetrievalConfig = RetrievalConfig()
    serving: ServingConfig = ServingConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    distributed: DistributedConfig = DistributedConfig()


def load_settings(path: Path | None) -> Settings:
    """Load settings from a YAML file; a missing path gives the embedded defaults."""
    if path is None or not Path(path).exists():
        return Settings()
    data = yaml.safe_load(Path(path).read_text()) or {}
    return Settings.model_validate(data)


class Workspace:
    """The folder layout of one run; every path the platform writes lives here."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root).resolve()

    @property
    def config_file(self) -> Path:
        return self.root / "rgcd.yaml"

    @property
    def lake(self) -> Path:
        return self.root / "lake"

    def lake_table(self, table: str) -> Path:
        return self.lake / table

    @property
    def quarantine(self) -> Path:
        return self.root / "quarantine"

    def quarantine_table(self, table: str) -> Path:
        return self.quarantine / f"{table}.parquet"

    @property
    def warehouse(self) -> Path:
        return self.root / "warehouse.duckdb"

    @property
    def marts(self) -> Path:
        return self.root / "marts"

    @property
    def dbt_artifacts(self) -> Path:
        """dbt's target/ (manifest, catalog, docs) and logs/ for this workspace."""
        return self.root / "dbt"

    @property
    def feature_data(self) -> Path:
        """Tables written by the model stages that Feast reads (reasoning, item embeddings)."""
        return self.root / "feature_data"

    @property
    def feast(self) -> Path:
        return self.root / "feast"

    @property
    def milvus(self) -> Path:
        return self.root / "milvus"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def student(self) -> Path:
        """The student (stage 1b): model/ and every item's chorus states (`rgcd distill`)."""
        return self.models / "student"

    @property
    def stage2_models(self) -> Path:
        """The stage-2 model versions `rgcd transfer` keeps (the versions in item_embeddings)."""
        return self.models / "transfer" / "versions"

    def stage2_model(self, version: str) -> Path:
        """One stage-2 model version as `rgcd transfer` wrote it (aggregation + retriever item tower)."""
        return self.stage2_models / version

    @property
    def published_model(self) -> Path:
        """The stage-2 model of the version readers are served, copied here by `rgcd publish` only."""
        return self.models / "published"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def demo_data(self) -> Path:
        return self.root / "demo_data"

    def ensure(self) -> Workspace:
        """Create the folder skeleton (idempotent)."""
        for folder in (self.lake, self.quarantine, self.marts, self.feature_data, self.feast,
                       self.milvus, self.models, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        return self

    def settings(self) -> Settings:
        """The workspace's settings: its rgcd.yaml if present, else the defaults."""
        return load_settings(self.config_file)
