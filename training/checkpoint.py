"""Training checkpoints that survive a kill: save every N steps, resume from the last good one.

A checkpoint is a folder `<dir>/step-<step>/` holding `tensors.safetensors` (every tensor of the
saved state: model and optimizer state dicts, torch RNG states, which are ByteTensors) and
`state.json` (the step, the fingerprint of what is being trained, and everything that is not a
tensor, with markers where the tensors go). The folder is written under a hidden temp name and
renamed into place, so a kill mid-save leaves the previous checkpoint; one that is torn anyway
(a truncated file, a foreign fingerprint) is skipped with one log line, never a traceback.

The state is any nesting of dicts, lists and tuples over tensors, numpy arrays, numbers, strings
and None; `load()` gives back the same structure (dict keys keep their types: an optimizer's
integer parameter ids stay integers).
"""

from __future__ import annotations

import json
import logging
import random
import re
import shutil
from pathlib import Path
from typing import Any

from rgcd.atomic import atomic_path, remove_stale_temps

log = logging.getLogger(__name__)

TENSORS_FILE = "tensors.safetensors"
STATE_FILE = "state.json"
FORMAT = "rgcd-checkpoint-1"
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    """The torch, numpy and Python random states, to be saved in a checkpoint."""
    import numpy as np
    import torch

    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def restore_rng(state: dict[str, Any]) -> None:
    """Set the torch, numpy and Python random states saved by `rng_state()`."""
    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def _flatten(obj: Any, tensors: dict[str, Any], key: str) -> Any:
    """JSON-able form of `obj`; tensors are moved into `tensors` under path-like keys."""
    import numpy as np
    import torch

    if isinstance(obj, torch.Tensor):
        # clone: tied weights share storage, which safetensors refuses
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        tensors[key] = torch.from_numpy(np.ascontiguousarray(obj).copy())
        return {"__ndarray__": key}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {"__items__": [[_flatten(k, tensors, f"{key}/k{i}"), _flatten(v, tensors, f"{key}/{i}")]
                              for i, (k, v) in enumerate(obj.items())]}
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{key}/{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{key}/{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"a checkpoint cannot hold {type(obj).__name__} (at {key or 'the top'})")


def _unflatten(obj: Any, tensors: dict[str, Any]) -> Any:
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return tensors[obj["__ndarray__"]].numpy()
        if "__tuple__" in obj:
            return tuple(_unflatten(v, tensors) for v in obj["__tuple__"])
        return {_unflatten(k, tensors): _unflatten(v, tensors) for k, v in obj["__items__"]}
    if isinstance(obj, list):
        return [_unflatten(v, tensors) for v in obj]
    return obj


class Checkpointer:
    """Saves a training state every `every_steps` steps under `dir` and loads the latest good one.

    `fingerprint` names what is trained (config + inputs); a checkpoint with another fingerprint
    belongs to another run and is not resumed. `every_steps <= 0` turns checkpoints off.
    `keep` is how many of the latest checkpoints stay on disk (the rest are removed after a save).
    """

    def __init__(self, dir: Path, every_steps: int, fingerprint: str = "", keep: int = 1) -> None:
        self.dir = Path(dir)
        self.every_steps = every_steps
        self.fingerprint = fingerprint
        self.keep = max(1, keep)

    @property
    def enabled(self) -> bool:
        return self.every_steps > 0

    def _step_dirs(self) -> list[tuple[int, Path]]:
        if not self.dir.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.dir.iterdir() if (m := _STEP_DIR.match(p.name))]
        return sorted(found, reverse=True)

    def maybe_save(self, step: int, state: dict[str, Any]) -> bool:
        """Save `state` as the checkpoint of `step` when `step` is a multiple of `every_steps`
        (under torchrun, rank 0 alone writes: every rank holds the same state)."""
        from rgcd.training import distributed

        if not self.enabled or step <= 0 or step % self.every_steps or not distributed.is_main():
            return False
        self.save(step, state)
        return True

    def save(self, step: int, state: dict[str, Any]) -> Path:
        """Write `state` as the checkpoint of `step` (atomically) and drop older checkpoints."""
        from safetensors.torch import save_file

        tensors: dict[str, Any] = {}
        tree = _flatten(state, tensors, "s")
        final = self.dir / f"step-{step:09d}"
        with atomic_path(final) as tmp:
            tmp.mkdir()
            save_file(tensors, tmp / TENSORS_FILE)
            (tmp / STATE_FILE).write_text(json.dumps(
                {"format": FORMAT, "step": step, "fingerprint": self.fingerprint, "state": tree}))
        for _, old in self._step_dirs()[self.keep:]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _read(self, folder: Path) -> dict[str, Any]:
        from safetensors.torch import load_file

        meta = json.loads((folder / STATE_FILE).read_text())
        if meta.get("format") != FORMAT:
            raise ValueError(f"not an rgcd checkpoint (format {meta.get('format')!r})")
        if meta.get("fingerprint") != self.fingerprint:
            raise ValueError("it belongs to another run (config or inputs changed)")
        state = _unflatten(meta["state"], load_file(folder / TENSORS_FILE))
        state["step"] = int(meta["step"])
        return state

    def load(self) -> dict[str, Any] | None:
        """The latest good checkpoint's state (with its `step`), or None when there is none.

        A torn or foreign checkpoint is skipped with one log line and the next older one tried.
        """
        if not self.enabled:
            return None
        remove_stale_temps(self.dir)
        for step, folder in self._step_dirs():
            try:
                return self._read(folder)
            except Exception as err:  # a torn file can fail in json, safetensors or the tree
                log.warning("ignoring checkpoint %s (step %d): %s", folder, step,
                            str(err).splitlines()[0] if str(err) else type(err).__name__)
        return None

    def clear(self) -> None:
        """Remove every checkpoint (training finished; its result is saved elsewhere)."""
        from rgcd.training import distributed

        if not distributed.is_main():
            return
        shutil.rmtree(self.dir, ignore_errors=True)
