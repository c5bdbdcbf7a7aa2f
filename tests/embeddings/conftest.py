"""The serving tests run against both vector backends: the embedded Milvus Lite file (the default) and
the packaged Milvus 2.3 standalone server (the production twin, `rgcd milvus start`'s code), started once
per session in its own network namespace and stopped by its launcher's pid at the end. Each test module
gets its own database on the server, so modules never see each other's collections or aliases."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import milvus_backends  # noqa: E402

from rgcd.config import RetrievalConfig, Settings  # noqa: E402

BACKENDS = ["lite", "server"]


@pytest.fixture(scope="session")
def milvus_server(tmp_path_factory):
    """The URI of the packaged Milvus server (one per test session)."""
    from servers import free_port

    from rgcd.embeddings import milvus_server as ms

    root = tmp_path_factory.mktemp("milvus-server")
    try:
        state = ms.start(root, free_port(), timeout_s=150)
    except ms.MilvusServerError as err:
        pytest.fail(str(err))
    yield state.uri
    ms.stop(root)
    assert ms.read_state(root) is None


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def settings(request, backend) -> Settings:
    retrieval = RetrievalConfig(default_k=10, validate_sample=8, cache_s=0.0)
    if backend == "server":
        uri = request.getfixturevalue("milvus_server")
        database = milvus_backends.new_database(uri)
        retrieval = retrieval.model_copy(update={"milvus_uri": uri, "milvus_db": database})
    return Settings(retrieval=retrieval)
