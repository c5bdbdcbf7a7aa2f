"""Databases on the tests' Milvus server: one per test module, emptied between tests that need it."""

from __future__ import annotations

import contextlib
import itertools

from rgcd.config import Settings

_databases = itertools.count(1)


def new_database(uri: str) -> str:
    """A fresh, empty database on the server."""
    from pymilvus import MilvusClient

    client = MilvusClient(uri=uri)
    try:
        name = f"rgcd_test_{next(_databases)}"
        while name in client.list_databases():
            name = f"rgcd_test_{next(_databases)}"
        client.create_database(name)
        return name
    finally:
        client.close()


def clear_database(settings: Settings) -> None:
    """Drop every alias and collection of the settings' server database (a no-op for a Lite file: each
    test has its own)."""
    from pymilvus import MilvusClient
    from pymilvus.exceptions import MilvusException

    r = settings.retrieval
    if not r.milvus_uri:
        return
    client = MilvusClient(uri=r.milvus_uri, db_name=r.milvus_db)
    try:
        # Milvus 2.3 lists the default database's aliases only, and keeps an alias past its collection
        with contextlib.suppress(MilvusException):
            client.drop_alias(r.alias)
        for name in client.list_collections():
            client.drop_collection(name)
    finally:
        client.close()
