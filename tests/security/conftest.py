"""The hostile-input suite: one tiny served workspace (tests/embeddings/serving_world.py), built and
published once for the whole suite; every test that could write compares what it holds before and
after (hostile.py: what "nothing was written" means)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "embeddings"))

from rgcd.config import RetrievalConfig, Settings  # noqa: E402


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings(retrieval=RetrievalConfig(default_k=10, validate_sample=8, cache_s=0.0))


@pytest.fixture(scope="session")
def world(tmp_path_factory, settings):
    """The serving world, built, published, with rgcd.yaml saying what `settings` say."""
    import serving_world as w

    from rgcd.embeddings.publish import publish

    ws = w.build(tmp_path_factory.mktemp("secure"), settings)
    publish(ws, settings)
    (ws.root / "rgcd.yaml").write_text("retrieval:\n  default_k: 10\n  validate_sample: 8\n  cache_s: 0.0\n")
    return ws
