import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from stage1_world import write_world  # noqa: E402

from rgcd.config import Workspace  # noqa: E402


@pytest.fixture
def world_ws(tmp_path) -> Workspace:
    """A workspace whose marts hold a tiny crafted world."""
    ws = Workspace(tmp_path / "ws").ensure()
    write_world(ws.marts)
    return ws


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread, and the test machine is shared."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
