import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from eval_world import build_marts  # noqa: E402
from stage1_world import write_world  # noqa: E402

from rgcd.config import EvaluationConfig, Settings, Workspace  # noqa: E402


@pytest.fixture(scope="session")
def eval_ws(tmp_path_factory) -> Workspace:
    """A workspace whose marts are the tiny synthetic evaluation world."""
    ws = Workspace(tmp_path_factory.mktemp("eval_ws")).ensure()
    build_marts(ws.marts, users=200, days=6, authors=80, photos=300, seed=0)
    return ws


@pytest.fixture(scope="session")
def eval_cfg() -> EvaluationConfig:
    return EvaluationConfig(mf_samples=2**14, contrastive_samples=2**13, dim=8, text_max_items=50)


@pytest.fixture
def world_marts(tmp_path) -> Workspace:
    """A workspace whose marts hold a tiny crafted stage-1 world; Feast not applied yet."""
    ws = Workspace(tmp_path / "ws").ensure()
    write_world(ws.marts)
    return ws


@pytest.fixture
def world_ws(world_marts) -> Workspace:
    """The tiny stage-1 world with the Feast repo applied: what stage 1 reads from."""
    from rgcd.featurestore.store import apply

    apply(world_marts, Settings())  # ~4 s for the first in a process (imports), ~0.05 s after
    return world_marts


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As in `rgcd evaluate`: small models train far faster on one thread on a shared machine."""
    from rgcd.training.recommender import torch_threads

    with torch_threads(1):
        yield
