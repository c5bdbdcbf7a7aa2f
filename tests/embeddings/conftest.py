import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from rgcd.config import RetrievalConfig, Settings  # noqa: E402


@pytest.fixture(scope="module")
def settings() -> Settings:
    return Settings(retrieval=RetrievalConfig(default_k=10, validate_sample=8, cache_s=0.0))
