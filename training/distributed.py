"""The training stages on torchrun: data-parallel processes (DDP), one machine or several.

`rgcd distill` (the student's training and the encoding of every item) and `rgcd transfer`
(stage 2's training) run as usual in one process, or under torchrun, which starts N copies of
the command and tells each its rank through the environment (RANK, WORLD_SIZE, MASTER_ADDR, ...):

    torchrun --standalone --nproc-per-node 2 --no-python rgcd -w WS distill
    torchrun --nnodes 2 --node-rank 0 --master-addr HOST --master-port 29500 \\
             --nproc-per-node 2 --no-python rgcd -w /shared/WS transfer      # and node-rank 1 on the other

Nothing here is per site: the backend and its timeout are `distributed.*` in the configuration
(gloo on CPU; nccl on GPUs). Every rank reads the same workspace (one folder, shared by the
machines of a multi-node run) and computes what the others compute, except for these hooks:

- `average_gradients(model)`: after each backward pass, the gradients averaged over the ranks (one
  all-reduce), so every rank takes the same optimizer step: data-parallel training as DDP does it;
- `part(rows)`: this rank's contiguous share of a batch (or of the shards to encode);
- `weighted_by_share(loss, count)`: a mean loss weighted by the rank's share of the terms it
  averages (the student's tokens), so the average over the ranks is the whole batch's mean;
- `gather_rows(x)`: the whole batch's rows back from every rank's share, with gradients. Stage 2's
  contrastive loss needs every row of the batch (its in-batch negatives), so each rank encodes
  its share, gathers the batch and computes the one-process loss; the backward pass sums each
  share's gradient over the ranks and the average turns the sum into the one-process gradient.
- `is_main()` / `main_first()` / `barrier()`: rank 0 alone writes files (checkpoints, the model,
  the tables, the report); the others wait where they read what it wrote.

Outside torchrun (no WORLD_SIZE, or 1) every hook is the identity and nothing is initialised.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch

from rgcd.config import DistributedConfig

T = TypeVar("T")


def launched() -> bool:
    """True in a process torchrun started with more than one process in the job."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def start(cfg: DistributedConfig) -> None:
    """Join torchrun's process group (once per process); nothing outside torchrun."""
    import torch.distributed as dist

    if launched() and not dist.is_initialized():
        dist.init_process_group(backend=cfg.backend, timeout=timedelta(seconds=cfg.timeout_s))


def active() -> bool:
    """True once this process is one of several ranks of a started group."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if active() else 0


def world_size() -> int:
    import torch.distributed as dist

    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes."""
    return rank() == 0


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


@contextlib.contextmanager
def main_first() -> Iterator[bool]:
    """Rank 0 runs the block first (it may build and write what the block reads), then the others;
    yields whether this rank is the main one."""
    if not is_main():
        barrier()
    try:
        yield is_main()
    finally:
        if is_main():
            barrier()


def average_gradients(model: torch.nn.Module) -> None:
    """After backward, under torchrun: every parameter's gradient averaged over the ranks (gloo's
    all-reduce), so every rank takes the same optimizer step; nothing outside torchrun.

    What DistributedDataParallel does, without its gradient buckets: those need every rank to use the
    same parameters in a step, and the student's multimodal projection is unused by a share of a
    batch without vectors (DDP then fails on a mismatched collective, or with
    find_unused_parameters prints a warning per run). Call it between `backward()` and clipping.
    """
    if not active():
        return
    import torch.distributed as dist

    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    used = torch.tensor([p.grad is not None for p in params], dtype=grads[0].dtype)
    # one collective per step, not one per tensor; the flags say which parameters some rank used
    flat = torch.cat([g.reshape(-1) for g in grads] + [used])
    dist.all_reduce(flat)
    flat[: -len(params)] /= dist.get_world_size()
    used_somewhere = flat[-len(params):] > 0
    at = 0
    for p, g, on in zip(params, grads, used_somewhere.tolist(), strict=True):
        # a parameter no rank used keeps no gradient, as in one process (the optimizer skips it)
        p.grad = flat[at:at + g.numel()].view_as(g).clone() if on else None
        at += g.numel()


def bounds(n: int, ranks: int, which: int) -> tuple[int, int]:
    """[start, stop) of share `which` of `n` rows cut into `ranks` contiguous shares (sizes differ by
    at most one, the larger first, like np.array_split)."""
    base, extra = divmod(n, ranks)
    start = which * base + min(which, extra)
    return start, start + base + (1 if which < extra else 0)


def part(rows: Sequence[T] | np.ndarray) -> Sequence[T] | np.ndarray:
    """This rank's contiguous share of `rows` (all of them outside torchrun)."""
    start, stop = bounds(len(rows), world_size(), rank())
    return rows[start:stop]


class _GatherRows(torch.autograd.Function):
    """Concatenate every rank's rows (in rank order); backward: the sum over the ranks of the
    gradient of this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, n: int) -> torch.Tensor:
        import torch.distributed as dist

        ranks = dist.get_world_size()
        sizes = [bounds(n, ranks, r)[1] - bounds(n, ranks, r)[0] for r in range(ranks)]
        padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype)
        padded[: len(x)] = x
        pieces = [torch.empty_like(padded) for _ in range(ranks)]
        dist.all_gather(pieces, padded.contiguous())
        ctx.n, ctx.ranks = n, ranks
        return torch.cat([p[:s] for p, s in zip(pieces, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        import torch.distributed as dist

        total = grad.contiguous().clone()
        dist.all_reduce(total)
        start, stop = bounds(ctx.n, ctx.ranks, dist.get_rank())
        return total[start:stop], None


def gather_rows(x: torch.Tensor | None, n: int) -> torch.Tensor | None:
    """The batch of `n` rows from every rank's `part` of it (x itself outside torchrun)."""
    if x is None or not active():
        return x
    return _GatherRows.apply(x, n)


def gather_outputs(outputs: tuple[torch.Tensor | None, ...], n: int) -> tuple[torch.Tensor | None, ...]:
    """`gather_rows` of each of a model's outputs (a tuple of row tensors, None where a space is off)."""
    return tuple(gather_rows(x, n) for x in outputs)


def weighted_by_share(loss: torch.Tensor, count: int) -> torch.Tensor:
    """A rank's mean loss over its `count` terms (tokens) times its share of the batch's terms times
    the ranks: averaged over the ranks, these give the mean over the whole batch's terms, as one
    process computes it (an unweighted average would weigh a token of a shorter share more)."""
    if not active():
        return loss
    import torch.distributed as dist

    total = torch.tensor([float(count)], dtype=torch.float64)
    dist.all_reduce(total)
    return loss * (count * dist.get_world_size() / max(float(total.item()), 1.0))


def mean(value: float) -> float:
    """The mean of a figure over the ranks (a loss to record), the figure itself outside torchrun."""
    if not active():
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item() / dist.get_world_size())


def worker_line() -> str:
    """What a rank other than 0 prints when its share of a stage is done."""
    return f"rank {rank()} of {world_size()}: its share done, rank 0 writes"
