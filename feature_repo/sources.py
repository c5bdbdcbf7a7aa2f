"""Batch sources: the dbt marts and the tables the model stages write, as absolute parquet paths.

The only thing done at import time is reading RGCD_WORKSPACE (Feast imports this file on every
apply; the DuckDB offline store resolves relative paths against the process's working directory,
so paths are made absolute here). `rgcd features apply` sets the variable to its workspace. The
folders come from `rgcd.config.Workspace`, the one place the workspace's layout is spelled.
"""

import os
from pathlib import Path

from feast import FileSource, PushSource

from rgcd.config import Workspace

# Default: ./workspace of this checkout, the `rgcd` command's default workspace from its root.
_CHECKOUT_WORKSPACE = Path(__file__).resolve().parents[1] / "workspace"
WORKSPACE = Workspace(os.environ.get("RGCD_WORKSPACE") or _CHECKOUT_WORKSPACE)
MARTS = WORKSPACE.marts
FEATURE_DATA = WORKSPACE.feature_data


def mart_source(name: str, timestamp_field: str = "event_timestamp",
                created_timestamp_column: str = "created_timestamp") -> FileSource:
    """The parquet a dbt mart is exported to: <workspace>/marts/<name>.parquet."""
    return FileSource(
        name=name,
        path=str(MARTS / f"{name}.parquet"),
        timestamp_field=timestamp_field,
        created_timestamp_column=created_timestamp_column,
        description=f"dbt mart {name}",
        tags={"origin": "dbt"},
    )


def feature_data_source(name: str) -> FileSource:
    """A table written by a model stage: <workspace>/feature_data/<name>.parquet (regenerated)."""
    return FileSource(
        name=name,
        path=str(FEATURE_DATA / f"{name}.parquet"),
        timestamp_field="event_timestamp",
        created_timestamp_column="created_timestamp",
        description=f"model-stage table {name}",
        tags={"origin": "model"},
    )


item_reasoning_source = feature_data_source("item_reasoning")
pair_reasoning_source = feature_data_source("pair_reasoning")
item_embeddings_source = feature_data_source("item_embeddings")
user_embeddings_source = feature_data_source("user_embeddings")
user_recent_videos_source = feature_data_source("user_recent_videos")

# Push sources: rows written straight into the online store (a room going on air, a user's new
# plays) while the batch table behind each stays what its stage wrote.
item_embeddings_push = PushSource(name="item_embeddings_push", batch_source=item_embeddings_source)
user_recent_videos_push = PushSource(name="user_recent_videos_push", batch_source=user_recent_videos_source)
