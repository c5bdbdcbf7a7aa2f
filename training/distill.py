"""`rgcd distill`: train the chorus-token student on teacher knowledge, encode every item, prove it.

Writes, under `<ws>/models/student/`:
- `model/`: the student (`save_pretrained`: base LM + tokenizer as safetensors, chorus head);
- `chorus_states.safetensors` (tensor `chorus_states`, N x n_chorus x d, float32) and
  `chorus_index.parquet` (row, item_id, domain, model_version): every item of both domains;
and `<ws>/reports/distill.json`: on held-out items (never trained on), a linear probe's accuracy at
predicting `vertical_domain` from chorus states next to the majority-class rate (and the same probe
on the untrained student, as a control), and the rate at which the student's own generation
reproduces each teacher field.

Resumable: a finished training (same settings, same reasoning table) is reused; training saves a
checkpoint every `student.checkpoint_every_steps` steps under `checkpoints/` and a rerun after a
kill resumes from it to the same weights as an uninterrupted run; encoding writes shards that a
rerun skips (same model version, same item content). Every file is written beside its place and
renamed in (rgcd.atomic); a torn or foreign states file or index is reported in one line and rebuilt.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from rgcd.atomic import atomic_path, write_json_atomic, write_parquet_atomic
from rgcd.config import Settings, StudentConfig, Workspace
from rgcd.faults import kill_point
from rgcd.training import distributed
from rgcd.training.checkpoint import Checkpointer, restore_rng, rng_state
from rgcd.training.chorus_states import CHORUS_TENSOR, ChorusStates, write_states_file
from rgcd.training.frames import MissingInput, stage1_cut
from rgcd.training.precision import dtype_name, encode_dtype
from rgcd.training.reasoning.schema import ITEM_FIELDS, knowledge_text, parse_knowledge_text
from rgcd.training.recommender import torch_threads
from rgcd.training.student import ChorusStudent, ChorusStudentConfig, cosine_lr, encode_items, item_text
from rgcd.training.student_items import ITEM_COLUMNS, ItemsDigest, StudentItems
from rgcd.training.tiny_base import TINY_BASE_NAME, build_tiny_causal_lm

SHARD_ITEMS = 2_048
# Every process that encodes (the workers and this one) runs one torch thread: a matmul's last bits
# depend on how many threads share it (measured here: 3 threads differ from 1), so the chorus states
# must not depend on how many processes encode them nor on the machine's cores.
ENCODE_THREADS = 1
# Settings that change when and how the work is done and saved, not what is learned: outside the
# fingerprint.
_NOT_FINGERPRINTED = {"checkpoint_every_steps", "encode_dtype", "encode_processes", "read_batch_items"}

log = logging.getLogger(__name__)


@dataclass
class DistillReport:
    """Figures of one `rgcd distill` run (also written to reports/distill.json)."""

    base: str
    teacher_ids: list[str]
    model_version: str
    hidden_size: int
    n_chorus: int
    items_encoded: int
    items_with_knowledge: int
    train_items: int
    held_out_items: int
    steps: int
    first_loss: float | None
    final_loss: float | None
    train_seconds: float
    encode_seconds: float
    encode_items_per_s: float
    encode_dtype: str
    probe_accuracy: float | None
    probe_majority_rate: float | None
    probe_classes: int
    probe_accuracy_untrained_student: float | None
    generation_items: int
    generation_parse_rate: float | None
    generation_field_rate: dict[str, float]
    reused_training: bool
    # Per domain, a linear probe's accuracy at the item's topic (the world's latent topic, else
    # category_l1) from the chorus states and from the raw multimodal vectors, same items.
    topic_probe: dict | None = None

    def one_line(self) -> str:
        """The run in one line of figures."""
        probe = (
            f"probe {self.probe_accuracy:.2f} vs majority {self.probe_majority_rate:.2f}"
            if self.probe_accuracy is not None
            else "probe n/a"
        )
        fields = ", ".join(f"{k} {v:.2f}" for k, v in self.generation_field_rate.items())
        return (
            f"{self.items_encoded} items encoded ({self.n_chorus}x{self.hidden_size}, {self.encode_dtype}), "
            f"trained on "
            f"{self.train_items} items x {self.steps} steps (loss {self.first_loss} -> {self.final_loss}); "
            f"held-out {self.held_out_items}: {probe}; generation reproduces {fields}"
        )


# Which items a student trains on is part of what it is: a change here retrains every student.
TRAINING_SPLIT = "domains-shared-hash-order-1"


def _held_out(item_id: str, fraction: float) -> bool:
    # A hash split: stable across runs and machines, independent of row order.
    return _hash_rank(item_id) / 0xFFFFFFFF < fraction


def _hash_rank(item_id: str) -> int:
    return int(hashlib.sha1(item_id.encode()).hexdigest()[:8], 16)


def training_split(rows: list[dict], cap: int, held_out_fraction: float) -> tuple[list[dict], list[dict]]:
    """(train, held out) of the items with teacher knowledge.

    The held-out items are a hash split, in hash order (the generation check scores the first few: both
    domains, not the rooms that sort first). The train items are at most `cap`, shared evenly among the
    domains (a domain with fewer leaves its share to the others), each domain's in hash order, and
    the chosen ones mixed in hash order: a prefix in id order would be rooms only ("live:" sorts
    before "photo:"), and the student would never learn a short video."""
    held: list[dict] = []
    candidates: list[dict] = []
    for r in sorted(rows, key=lambda r: (_hash_rank(r["item_id"]), r["item_id"])):
        (held if _held_out(r["item_id"], held_out_fraction) else candidates).append(r)
    by_domain: dict[str, list[dict]] = {}
    for r in candidates:
        by_domain.setdefault(r["domain"], []).append(r)
    quota, left = {}, cap
    for n, (domain, group) in enumerate(sorted(by_domain.items(), key=lambda kv: len(kv[1]))):
        quota[domain] = min(len(group), left // (len(by_domain) - n))
        left -= quota[domain]
    chosen = {r["item_id"] for domain, group in by_domain.items() for r in group[: quota[domain]]}
    return [r for r in candidates if r["item_id"] in chosen], held


def _fingerprint(cfg: StudentConfig, knowledge: dict[str, str], base: str) -> str:
    h = hashlib.sha256(json.dumps(cfg.model_dump(exclude=_NOT_FINGERPRINTED), sort_keys=True).encode())
    h.update(base.encode())
    h.update(TRAINING_SPLIT.encode())
    # What the student learns from, not the file's bytes: `rgcd reason` rewrites the table with a
    # fresh created_timestamp even when every answer comes from its cache.
    h.update(json.dumps(sorted(knowledge.items()), ensure_ascii=False).encode())
    return h.hexdigest()[:16]


def items_digest(items: pl.DataFrame | StudentItems) -> str:
    """A digest of what the student reads of every item, in order (ids and content)."""
    return items.digest if isinstance(items, StudentItems) else ItemsDigest().update(items).hexdigest()


def _ensure_base(
    ws: Workspace, cfg: StudentConfig, items: StudentItems, knowledge: dict[str, str]
) -> tuple[Path, str]:
    """The base LM folder: the configured one, or a tiny one built from config in the workspace
    (its tokenizer learns from the first 50,000 items known before the cut and the knowledge)."""
    if cfg.base_path:
        path = Path(cfg.base_path)
        if not (path / "config.json").exists():
            raise MissingInput(
                f"student.base_path {path} is not a transformers model folder (no config.json)"
            )
        return path, str(path)
    path = ws.student / "tiny_base"
    stamp = path / "built_with.json"
    wanted = {
        "hidden": cfg.tiny_hidden,
        "layers": cfg.tiny_layers,
        "heads": cfg.tiny_heads,
        "vocab": cfg.tiny_vocab,
        "items": items.n_known,
        "seed": cfg.seed,
    }
    if not stamp.exists() or json.loads(stamp.read_text()) != wanted:
        first = list(items.windows(stop=min(items.n_known, 50_000), columns=ITEM_COLUMNS[:-1], size=50_000))
        rows = first[0].to_dicts() if first else []
        corpus = [item_text(r) for r in rows] + list(knowledge.values())
        max_positions = 2 * (
            cfg.n_soft_tokens + cfg.max_item_tokens + cfg.n_chorus + cfg.max_knowledge_tokens
        )
        with atomic_path(path) as tmp:  # the folder and its stamp land together
            build_tiny_causal_lm(
                corpus,
                tmp,
                hidden=cfg.tiny_hidden,
                layers=cfg.tiny_layers,
                heads=cfg.tiny_heads,
                vocab_size=cfg.tiny_vocab,
                max_positions=max_positions,
                seed=cfg.seed,
            )
            (tmp / stamp.name).write_text(json.dumps(wanted))
    return path, TINY_BASE_NAME


def _progress(show: bool) -> Progress:
    return Progress(
        TextColumn("[bold]distill[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not show,
        transient=True,
    )


def train_student(
    student: ChorusStudent,
    items: list[dict],
    knowledge: list[str],
    cfg: StudentConfig,
    show_progress: bool = True,
    checkpointer: Checkpointer | None = None,
) -> list[float]:
    """Next-token training on (item, knowledge) samples; returns the loss per step.

    With a `checkpointer`, training resumes from its latest checkpoint (model, optimizer, both
    random generators, losses so far) and saves one every `every_steps` steps, so a run killed
    and rerun ends with the same weights as one never killed.
    """
    rng = random.Random(cfg.seed)
    torch.manual_seed(cfg.seed)
    opt = torch.optim.AdamW(student.parameters(), lr=cfg.lr, weight_decay=0.01)
    losses: list[float] = []
    first_step = 0
    resumed = checkpointer.load() if checkpointer else None
    if resumed is not None:
        student.load_state_dict(resumed["model"])
        opt.load_state_dict(resumed["optimizer"])
        rng.setstate(resumed["sampler"])
        restore_rng(resumed["rng"])
        losses, first_step = list(resumed["losses"]), resumed["step"]
    student.train()
    with _progress(show_progress and distributed.is_main()) as progress:
        task = progress.add_task("training", total=cfg.steps, completed=first_step)
        for step in range(first_step, cfg.steps):
            idx = rng.sample(range(len(items)), min(cfg.batch_size, len(items)))
            idx = distributed.part(idx)  # this rank's share of the batch every rank drew alike
            batch = student.collate([items[i] for i in idx], [knowledge[i] for i in idx])
            for group in opt.param_groups:
                group["lr"] = cosine_lr(step, cfg.steps, cfg.lr)
            # under torchrun: weighted by this rank's share of the batch's knowledge tokens
            loss = distributed.weighted_by_share(student(batch), int(batch.knowledge_valid.sum()))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            distributed.average_gradients(student)  # under torchrun: the same step on every rank
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            opt.step()
            losses.append(distributed.mean(loss.item()))
            progress.update(task, advance=1, description=f"training loss {losses[-1]:.3f}")
            if checkpointer is not None and checkpointer.maybe_save(step + 1, {
                "model": student.state_dict(), "optimizer": opt.state_dict(),
                "sampler": rng.getstate(), "rng": rng_state(), "losses": losses,
            }):
                kill_point("distill.after_checkpoint")
            kill_point("distill.train_step")
    student.eval()
    return losses




def encode_all(
    student: ChorusStudent,
    items: pl.DataFrame | StudentItems,
    out_dir: Path,
    model_version: str,
    batch_size: int,
    show_progress: bool = True,
    shard_items: int = SHARD_ITEMS,
    dtype: torch.dtype = torch.float32,
    model_dir: Path | None = None,
    processes: int = 1,
    boundary: int = 0,
) -> tuple[list[Path], pl.DataFrame, float]:
    """Encode every item into shards (skipping shards a previous run finished).

    Items are turned into rows one shard at a time and each shard's states go to disk, so
    memory holds one shard, whatever the catalogue. Encoding runs in `dtype` (the states are
    stored as float32 either way). With `processes` > 1 and the saved student in `model_dir`,
    that many processes of one torch thread each encode the shards (`_encode_in_processes`).
    No shard spans `boundary` (the first items before it, the rest after), so the states of the
    items before it never depend on the items after it (a shard's batches mix its items).
    Returns (shard files in order, index, seconds spent encoding in this run);
    `write_states_file` merges the shards.
    """
    shard_dir = out_dir / "chorus_shards" / model_version
    with distributed.main_first() as main:  # under torchrun rank 0 alone clears stale shards
        if main:
            _clear_stale_shards(shard_dir, f"{items_digest(items)} {dtype_name(dtype)}")
    spans = [(start, min(shard_items, end - start)) for lo, end in ((0, boundary), (boundary, items.height))
             for start in range(lo, end, shard_items)]
    shards = [(shard_dir / f"part-{shard:05d}.safetensors", start, size)
              for shard, (start, size) in enumerate(spans)]
    todo = [s for s in shards if not _readable_shard(s[0], s[2])]
    distributed.barrier()  # every rank has its list before any rank writes a shard
    everyone_todo, todo = todo, distributed.part(todo)  # under torchrun: this rank's share of the shards
    t0 = time.perf_counter()
    with _progress(show_progress and distributed.is_main()) as progress:
        task = progress.add_task("encoding all items", total=items.height,
                                 completed=items.height - sum(size for _, _, size in todo))
        if processes > 1 and model_dir is not None and len(todo) > 1 and not distributed.active():
            done = _encode_in_processes(model_dir, items, todo, batch_size, dtype, processes)
        else:
            encoder = student if dtype == torch.float32 else copy.deepcopy(student).to(dtype)
            done = (_encode_shard(encoder, items, shard, batch_size) for shard in todo)
        with torch_threads(ENCODE_THREADS):  # as many as each worker has (see ENCODE_THREADS)
            for size in done:
                kill_point("distill.encode_shard")
                progress.advance(task, size)
    distributed.barrier()  # every shard is written before rank 0 merges them
    index = pl.DataFrame(
        {
            "row": np.arange(items.height, dtype=np.int64),
            "item_id": items["item_id"],
            "domain": items["domain"],
            "model_version": [model_version] * items.height,
        }
    )
    return [path for path, _, _ in shards], index, (time.perf_counter() - t0) if everyone_todo else 0.0


def _clear_stale_shards(shard_dir: Path, digest: str) -> None:
    """Remove shards of another model version or of other item content (the same ids with a restated
    title or a new vector), then stamp the folder with the content's digest."""
    if shard_dir.parent.exists():
        for old in shard_dir.parent.iterdir():
            if old.name != shard_dir.name:
                shutil.rmtree(old)
    stamp = shard_dir / "items_digest.txt"
    if shard_dir.exists() and (not stamp.exists() or stamp.read_text() != digest):
        shutil.rmtree(shard_dir)
    shard_dir.mkdir(parents=True, exist_ok=True)
    stamp.write_text(digest)


def _encode_shard(encoder: ChorusStudent, items: pl.DataFrame, shard: tuple[Path, int, int],
                  batch_size: int) -> int:
    """Encode one shard's items and write its file (whole or not at all); returns its size."""
    from safetensors.torch import save_file

    path, start, size = shard
    states = encode_items(encoder, items.slice(start, size).select(ITEM_COLUMNS).to_dicts(), batch_size)
    with atomic_path(path) as tmp:  # a shard exists only once complete
        # which rank encoded it (under torchrun): what the torchrun test checks
        save_file({CHORUS_TENSOR: states.contiguous()}, tmp, metadata={"rank": str(distributed.rank())})
    return size


def _encode_in_processes(model_dir: Path, items: pl.DataFrame | StudentItems,
                         todo: list[tuple[Path, int, int]], batch_size: int, dtype: torch.dtype,
                         processes: int):
    """Yield each shard's size as one of `processes` worker processes (one torch thread each, the
    student loaded from `model_dir`) finishes it. On 2 cores two of them encode 1.40x as many
    items a second as one process on two threads (`benchmarks/encode_processes.py`; the model is
    too small for two threads to share one batch well)."""
    from rgcd.workers import results_as_completed

    # Items on disk go to a worker as (file, start, size) and are read there: the parent never holds
    # every shard's rows at once (the pool keeps every submitted job's arguments until it runs).
    jobs = [((items.path, start, size) if isinstance(items, StudentItems)
             else items.slice(start, size).select(ITEM_COLUMNS), path, batch_size)
            for path, start, size in todo]
    yield from results_as_completed(_encoder_job, jobs, processes, _encoder_setup,
                                    (str(model_dir), dtype_name(dtype)))


_ENCODER: dict[str, ChorusStudent] = {}


def _encoder_setup(model_dir: str, dtype: str) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    torch.set_num_threads(ENCODE_THREADS)
    _ENCODER["student"] = ChorusStudent.from_pretrained(Path(model_dir)).eval().to(getattr(torch, dtype))


def _encoder_job(rows: pl.DataFrame | tuple[Path, int, int], path: Path, batch_size: int) -> int:
    if isinstance(rows, tuple):  # (items file, start, size): this shard's rows, read here
        rows = StudentItems.rows(*rows)
    return _encode_shard(_ENCODER["student"], rows, (path, 0, rows.height), batch_size)


def encode_processes(cfg: StudentConfig) -> int:
    """How many processes encode the catalogue (student.encode_processes; 0: one per usable core)."""
    return cfg.encode_processes or len(os.sched_getaffinity(0))


def _readable_shard(path: Path, rows: int) -> bool:
    """Whether a finished shard of `rows` items is there (a missing or torn one is re-encoded)."""
    if not path.exists():
        return False
    try:
        shard = ChorusStates.from_file(path)
        shard.read(np.array([rows - 1]))  # the last row: a torn file ends before it
    except Exception as err:  # a torn file fails in the header or the read with various errors
        log.warning("re-encoding %s: unreadable (%s)", path.name, _first_line(err))
        return False
    return len(shard) == rows


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _finished_states(out_dir: Path, model_version: str, items: pl.DataFrame,
                     dtype: torch.dtype = torch.float32) -> ChorusStates | None:
    """The chorus states of a previous run of this very model over these very items, encoded in
    `dtype`, else None.

    A torn or foreign states file or index (truncated, another format, another model) is
    reported in one log line and None is returned, so the caller rebuilds it.
    """
    try:
        states = ChorusStates(out_dir)
        if states.student_version != model_version:
            return None
        if states.metadata.get("items_digest") != items_digest(items):
            return None
        if states.metadata.get("encode_dtype", "float32") != dtype_name(dtype):
            return None
        index = pl.read_parquet(out_dir / "chorus_index.parquet")
        if (not index["item_id"].equals(items["item_id"])
                or set(index["model_version"].unique().to_list()) != {model_version}):
            return None
        if len(states):
            states.read(np.array([len(states) - 1]))  # a truncated file ends before its last row
    except FileNotFoundError:
        return None
    except Exception as err:  # safetensors-layout and parquet errors of many kinds on a torn file
        log.warning("rebuilding the chorus states: chorus_states.safetensors or chorus_index.parquet "
                    "is unreadable (%s)", _first_line(err))
        return None
    return states if len(states) == items.height else None


def linear_probe(
    train_x: torch.Tensor,
    train_y: list[str],
    test_x: torch.Tensor,
    test_y: list[str],
    seed: int = 0,
    steps: int = 300,
) -> tuple[float, float, int]:
    """Multinomial logistic regression on flattened, standardised states; (accuracy, majority rate, classes).

    The majority rate is the share of test items in the training set's most frequent class.
    """
    classes = sorted(set(train_y))
    pos = {c: i for i, c in enumerate(classes)}
    x = train_x.reshape(len(train_x), -1).float()
    mean, std = x.mean(0), x.std(0) + 1e-6
    x = (x - mean) / std
    xt = (test_x.reshape(len(test_x), -1).float() - mean) / std
    y = torch.tensor([pos[c] for c in train_y])
    torch.manual_seed(seed)
    probe = torch.nn.Linear(x.shape[1], len(classes))
    opt = torch.optim.Adam(probe.parameters(), lr=0.01, weight_decay=1e-3, fused=True)
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(probe(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = [classes[i] for i in probe(xt).argmax(-1).tolist()]
    accuracy = float(np.mean([p == t for p, t in zip(pred, test_y, strict=True)]))
    majority = max(classes, key=train_y.count)
    return accuracy, float(np.mean([t == majority for t in test_y])), len(classes)


def topic_probe_by_domain(ws: Workspace, items: StudentItems, states: ChorusStates, seed: int,
                          per_domain: int = 2_000) -> dict:
    """Per domain, linear-probe accuracy at the topic from the chorus states and from the raw
    multimodal vectors, on the same items known before the cut (those with a vector; up to
    `per_domain`, split 80/20 by a hash of the item id). The topic is the world's latent one where
    it has it, else category_l1. The items are chosen from their ids, domains and topics; only the
    chosen items' vectors are read."""
    from rgcd.training.reasoning.truth import load_item_topics

    topics = load_item_topics(ws)
    label = "latent topic" if topics else "category_l1"
    topic = (pl.col("item_id").replace_strict({k: str(v) for k, v in topics.items()}, default=None)
             if topics else pl.col("category_l1")).alias("topic")
    has_vector = pl.col("mm_embedding").is_not_null().alias("vector")
    small = pl.concat([w.select("item_id", "domain", topic, has_vector)
                       for w in items.windows(stop=items.n_known,
                                              columns=["item_id", "domain", "category_l1", "mm_embedding"])]
                      or [pl.DataFrame(schema={"item_id": pl.String, "domain": pl.String, "topic": pl.String,
                                               "vector": pl.Boolean})])
    out: dict = {"label": label}
    for domain in ("photo", "live"):
        rows = small.filter((pl.col("domain") == domain) & pl.col("topic").is_not_null() & pl.col("vector"))
        rows = rows.sort("item_id").gather_every(max(1, rows.height // per_domain)).head(per_domain)
        if rows.height < 20 or rows["topic"].n_unique() < 2:
            continue
        test = np.array([_held_out(i, 0.2) for i in rows["item_id"].to_list()])
        y = rows["topic"].to_list()
        ytr = [v for v, t in zip(y, test, strict=True) if not t]
        yte = [v for v, t in zip(y, test, strict=True) if t]
        if not ytr or not yte:
            continue
        chosen = rows["item_id"].implode()
        vectors = pl.concat([w.filter(pl.col("item_id").is_in(chosen))
                             for w in items.windows(stop=items.n_known, columns=["item_id", "mm_embedding"])])
        vectors = rows.select("item_id").join(vectors, on="item_id", how="left", maintain_order="left")
        dim = len(vectors["mm_embedding"][0])
        spaces = {"chorus_states": states.take(np.array([states.row_of[i] for i in rows["item_id"]])),
                  "raw_vectors": torch.from_numpy(
                      vectors["mm_embedding"].explode().to_numpy().astype(np.float32).reshape(-1, dim))}
        figures = {"items": rows.height}
        for name, x in spaces.items():
            mask = torch.from_numpy(test)
            accuracy, majority, _ = linear_probe(x[~mask], ytr, x[mask], yte, seed=seed)
            figures[name], figures["majority"] = round(accuracy, 4), round(majority, 4)
        out[domain] = figures
    return out


def _normalise(value: str) -> str:
    return " ".join(value.lower().split())


def generation_rates(
    student: ChorusStudent, items: list[dict], teacher: list[dict], batch_size: int
) -> tuple[float, dict[str, float]]:
    """The share of items whose generation parses, and per field the share reproducing the teacher exactly."""
    parsed_ok, hits = 0, dict.fromkeys(ITEM_FIELDS, 0)
    for start in range(0, len(items), batch_size):
        texts = student.generate_knowledge(student.collate(items[start : start + batch_size]))
        for text, truth in zip(texts, teacher[start : start + batch_size], strict=True):
            got = parse_knowledge_text(text)
            parsed_ok += all(f in got for f in ITEM_FIELDS)
            for f in ITEM_FIELDS:
                hits[f] += _normalise(got.get(f, "")) == _normalise(truth[f])
    n = max(1, len(items))
    return round(parsed_ok / n, 4), {f: round(h / n, 4) for f, h in hits.items()}


def distill(ws: Workspace, settings: Settings, *, show_progress: bool = True) -> DistillReport | None:
    """Run stage 1b end to end (see the module docstring). Under torchrun (training/distributed.py)
    every rank trains and encodes its share; rank 0 writes and reports, the others return None."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    distributed.start(settings.distributed)
    cfg = settings.student
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    reasoning_path = ws.feature_data / "item_reasoning.parquet"
    if not reasoning_path.exists():
        raise MissingInput(
            f"{reasoning_path} is missing: run `rgcd reason` first (the student learns from it)"
        )
    cut = stage1_cut(ws)
    reasoning = pl.read_parquet(reasoning_path)
    if reasoning.height == 0:
        raise MissingInput(
            f"{reasoning_path} has no rows (every teacher answer was rejected?): see "
            f"{ws.quarantine_table('pair_reasoning')} and reports/reason.json"
        )
    # Every item is encoded (a test-period room needs its chorus states to be ranked), but only
    # the items that existed before the cut shape the student: its tokenizer, its training.
    # They are encoded first and in shards of their own, so their states never depend on later ones.
    # The items are read through Feast in windows into a file of this run (training/student_items.py).
    scratch = ws.student / f"items_read-{distributed.rank()}.parquet"
    items = StudentItems.read(ws, settings, cut, scratch)
    try:
        return _distill_items(ws, settings, items, reasoning, show_progress)
    finally:
        scratch.unlink(missing_ok=True)


def _distill_items(ws: Workspace, settings: Settings, items: StudentItems, reasoning: pl.DataFrame,
                   show_progress: bool) -> DistillReport | None:
    """distill's work once its items are read: the tiny base, training, encoding, the report."""
    cfg, n_known = settings.student, items.n_known
    knowledge = {r["item_id"]: knowledge_text(r) for r in reasoning.iter_rows(named=True)}
    with distributed.main_first():  # rank 0 builds the tiny base, the others read it
        base_path, base_name = _ensure_base(ws, cfg, items, knowledge)
    out_dir = ws.student
    model_dir = out_dir / "model"
    fingerprint = _fingerprint(cfg, knowledge, base_name)
    model_version = f"student-{fingerprint}"

    answered = reasoning["item_id"].unique()
    known_answered = pl.concat([w.filter(pl.col("item_id").is_in(answered.implode()))
                                for w in items.windows(stop=n_known, columns=ITEM_COLUMNS)]
                               or [pl.DataFrame(schema=items.schema(ITEM_COLUMNS))])
    labelled = reasoning.join(known_answered, on="item_id", how="inner").sort("item_id")
    rows = labelled.to_dicts()
    train, held = training_split(rows, cfg.max_train_items, cfg.held_out_fraction)
    if len(train) < 2 or len(held) < 1:
        raise MissingInput(
            f"only {len(rows)} items have teacher knowledge and content ({len(train)} train, "
            f"{len(held)} held out): raise teacher.max_pairs and rerun `rgcd reason`"
        )
    student_cfg = ChorusStudentConfig(
        base_path=str(base_path),
        n_chorus=cfg.n_chorus,
        n_soft_tokens=cfg.n_soft_tokens,
        mask_direct_path=cfg.mask_direct_path,
        max_item_tokens=cfg.max_item_tokens,
        max_knowledge_tokens=cfg.max_knowledge_tokens,
        mm_distill_weight=cfg.mm_distill_weight,
    )
    torch.manual_seed(cfg.seed)
    untrained = ChorusStudent.from_base(student_cfg)
    untrained.eval()
    probe_rows = train[:2_000]
    control = linear_probe(
        encode_items(untrained, probe_rows, cfg.encode_batch_size),
        [r["vertical_domain"] for r in probe_rows],
        encode_items(untrained, held, cfg.encode_batch_size),
        [r["vertical_domain"] for r in held],
        seed=cfg.seed,
    )[0]
    stamp = model_dir / "distill_fingerprint.txt"
    reused = stamp.exists() and stamp.read_text() == fingerprint
    t0 = time.perf_counter()
    if reused:
        student = ChorusStudent.from_pretrained(model_dir).eval()
        losses = json.loads((model_dir / "losses.json").read_text())
    else:
        student = untrained
        checkpoints = Checkpointer(out_dir / "checkpoints", cfg.checkpoint_every_steps, fingerprint)
        losses = train_student(student, train, [knowledge[r["item_id"]] for r in train], cfg, show_progress,
                               checkpoints)
        if distributed.is_main():  # every rank holds the same weights
            # The model folder with its stamp is swapped in whole: a kill leaves the old or the new.
            with atomic_path(model_dir) as tmp:
                student.save_pretrained(tmp)
                (tmp / "losses.json").write_text(json.dumps(losses))
                (tmp / stamp.name).write_text(fingerprint)
        checkpoints.clear()
    train_seconds = time.perf_counter() - t0

    states_path, index_path = out_dir / "chorus_states.safetensors", out_dir / "chorus_index.parquet"
    dtype = encode_dtype(cfg.encode_dtype)
    states = _finished_states(out_dir, model_version, items, dtype)
    encode_seconds = 0.0
    if states is None:
        parts, index, encode_seconds = encode_all(
            student, items, out_dir, model_version, cfg.encode_batch_size, show_progress, dtype=dtype,
            model_dir=model_dir, processes=encode_processes(cfg), boundary=n_known,
        )
        if not distributed.is_main():
            return None
        # The index first: the states file carries the model version and items digest that make
        # the pair valid, so a kill between the two renames leaves a pair that is rebuilt.
        write_parquet_atomic(index, index_path)
        kill_point("distill.between_index_and_states")
        with atomic_path(states_path) as tmp:
            write_states_file(tmp, parts, (cfg.n_chorus, student.hidden_size), items.height,
                              {"model_version": model_version, "n_chorus": str(cfg.n_chorus),
                               "items_digest": items_digest(items), "encode_dtype": dtype_name(dtype)})
        shutil.rmtree(out_dir / "chorus_shards")  # merged; the shards were only the resume points
        states = ChorusStates(out_dir)
    if not distributed.is_main():
        return None

    def rows_of(chosen: list[dict]) -> np.ndarray:
        return np.array([states.row_of[r["item_id"]] for r in chosen], dtype=np.int64)

    accuracy, majority, n_classes = linear_probe(
        states.take(rows_of(probe_rows)),
        [r["vertical_domain"] for r in probe_rows],
        states.take(rows_of(held)),
        [r["vertical_domain"] for r in held],
        seed=cfg.seed,
    )
    scored = held[: cfg.eval_items]
    parse_rate, field_rate = generation_rates(student, scored, scored, cfg.encode_batch_size)
    encoded_now = len(states) if encode_seconds > 0 else 0
    report = DistillReport(
        base=base_name,
        teacher_ids=sorted(reasoning["teacher_id"].unique().to_list()),
        model_version=model_version,
        hidden_size=student.hidden_size,
        n_chorus=cfg.n_chorus,
        items_encoded=len(states),
        items_with_knowledge=len(rows),
        train_items=len(train),
        held_out_items=len(held),
        steps=len(losses),
        first_loss=round(losses[0], 4) if losses else None,
        final_loss=round(float(np.mean(losses[-10:])), 4) if losses else None,
        train_seconds=round(train_seconds, 2),
        encode_seconds=round(encode_seconds, 2),
        encode_items_per_s=round(encoded_now / encode_seconds, 1) if encode_seconds > 0 else 0.0,
        encode_dtype=states.metadata.get("encode_dtype", "float32"),
        probe_accuracy=round(accuracy, 4),
        probe_majority_rate=round(majority, 4),
        probe_classes=n_classes,
        probe_accuracy_untrained_student=round(control, 4),
        generation_items=len(scored),
        generation_parse_rate=parse_rate,
        generation_field_rate=field_rate,
        reused_training=reused,
        topic_probe=topic_probe_by_domain(ws, items, states, cfg.seed),
    )
    write_json_atomic(asdict(report), ws.reports / "distill.json")
    return report
