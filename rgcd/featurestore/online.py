"""Online reads that never wait on the registry, and a feature server sized to the machine.

Feast reads its registry (a protobuf file) on the request path in two ways: with a cache TTL, the
first request after expiry re-reads and re-parses the file; and every refresh, even of an
unchanged file, clears the per-service request plan (feast.utils._get_cached_request_context),
which the next request rebuilds from protobuf. Measured here, either costs a request ~30-170 ms:
the p99 of a 1 + 200 ranker read. So the registry cache never expires inside a request
(`cache_ttl_seconds: 0`, `cache_mode: thread`: no file check per call), and a refresh, run by the
feature server's timer every `features.registry_refresh_s` (or by a long-lived SDK caller), only
re-reads a registry file that changed, then rebuilds every service's plan before a request asks.

Precomputed services (`FeatureService(precompute_online=True)`, one blob per entity) would cut a
ranker read to one online read per entity kind, but in Feast 0.67 precomputation scans entities
only in Redis (SQLite: "Entity scanning not supported", nothing written) and a request with any
entity lacking a blob fails (RuntimeError) instead of answering nulls; a ranker asks for new
rooms all the time, so the services stay plain: one read per feature view.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import warnings
from pathlib import Path

from feast import FeatureStore
from feast.utils import _get_cached_request_context

# In the registry section of the Feast configuration (see the module docstring).
REGISTRY_CACHE = {"cache_ttl_seconds": 0, "cache_mode": "thread"}
# Feast 0.67's first online read in a process imports its Milvus online store (to learn which stores
# support versioned reads, whatever store is configured), and pydantic warns on that module's config
# class; the module is imported here first, with that one warning silenced, so no reader prints it.
FEAST_MILVUS_STORE = "feast.infra.online_stores.milvus_online_store.milvus"
FEAST_MILVUS_WARNING = r'Field name "vector_enabled" in "MilvusOnlineStoreConfig" shadows an attribute'


def import_feast_milvus_store_quietly() -> None:
    """Import Feast's Milvus online-store module without its pydantic warning (once per process)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=FEAST_MILVUS_WARNING, category=UserWarning)
        with contextlib.suppress(ImportError):  # Feast without its Milvus extra: nothing to warn about
            importlib.import_module(FEAST_MILVUS_STORE)


def freeze_startup_heap() -> None:
    """Take every object alive now (imports, the registry, the request plans, models) out of the cyclic
    garbage collector's scans (`gc.freeze`), once a serving process has loaded what it serves.

    Measured (benchmarks/feast_online.py's world, SQLite, two reads of 1 + 200): ~416,000 objects are
    tracked after start-up, and each full collection paused a read 450-790 ms of CPU, which was the
    whole p99 (749 ms against a p50 of 43); frozen, a collection scans only what requests create and
    the p99 fell to 59 ms. Done before a fork it also keeps those pages shared by the workers (the
    `gc` module's documentation). Objects created later are collected as before."""
    gc.collect()
    gc.freeze()


def default_workers() -> int:
    """Feature server workers when not configured: one per CPU this process may run on.

    Requests are CPU-bound Python (protobuf in, JSON out), so more workers than cores only queue.
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class RegistryWatchingStore(FeatureStore):
    """A FeatureStore whose registry refresh re-reads only a changed file, then warms the plans."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._registry_seen = self._registry_stamp()
        self._quiet_imports_done = False

    def _before_online_read(self) -> None:
        if not self._quiet_imports_done:
            import_feast_milvus_store_quietly()
            self._quiet_imports_done = True

    def get_online_features(self, *args, **kwargs):
        """Feast's online read, its first call in the process without a third-party warning."""
        self._before_online_read()
        return super().get_online_features(*args, **kwargs)

    async def get_online_features_async(self, *args, **kwargs):
        """Feast's async online read (the feature server's, on Redis), as get_online_features."""
        self._before_online_read()
        return await super().get_online_features_async(*args, **kwargs)

    def _registry_stamp(self) -> tuple[int, int] | None:
        path = Path(self.config.registry.path)
        if not path.is_absolute():
            path = Path(self.repo_path) / path
        try:
            stat = path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def refresh_registry(self) -> None:
        """Re-read the registry if its file changed since the last read; rebuild request plans."""
        stamp = self._registry_stamp()
        if stamp is not None and stamp == self._registry_seen:
            return
        super().refresh_registry()
        self._registry_seen = stamp
        self.warm()

    def ready_to_serve(self) -> None:
        """What a process that serves reads calls once, after opening the store: `warm`, then
        `freeze_startup_heap` (the p99 of an online read was the garbage collector's full scans)."""
        self.warm()
        freeze_startup_heap()

    def warm(self) -> None:
        """Build every feature service's request plan now, so that no request has to (and import what
        Feast's first online read imports, so that no request pays for it)."""
        from feast.errors import FeatureNameCollisionError

        self._before_online_read()
        for service in self.registry.list_feature_services(self.project, allow_cache=True):
            for full_feature_names in (True, False):
                try:
                    _get_cached_request_context(self.registry, self.project, service, full_feature_names)
                except FeatureNameCollisionError:  # short names collide: such requests fail anyway
                    continue
