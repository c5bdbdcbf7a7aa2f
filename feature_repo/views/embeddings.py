"""Item vectors written by stage 2 (`rgcd transfer`: <workspace>/feature_data/item_embeddings.parquet).

Each row carries the model_version that produced it, so a ranker reads a vector and its version
together. Stamped like every model-stage table (DESIGN.md, Serving): event_timestamp = the training
cut the vectors were fitted at (or a room's start for a room encoded later), created_timestamp =
when written. Frames do not cut by created_timestamp: vectors fitted at a cut are visible to
frames from the cut on (they saw nothing after it), and a retrain at the same cut wins the tie.
"""

from datetime import timedelta

from entities import item
from feast import FeatureView, Field
from feast.types import Array, Float32, String
from sources import item_embeddings_source

item_embeddings = FeatureView(
    name="item_embeddings",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="transferable", dtype=Array(Float32),
              description="stage 2: the cross-domain transferable vector"),
        Field(name="residual", dtype=Array(Float32), description="stage 2: the domain residual vector"),
        Field(name="model_version", dtype=String, description="the model that produced both vectors"),
    ],
    source=item_embeddings_source,
    online=True,
    description="Transferable and residual item vectors (stage 2), with their model version.",
    tags={"regenerated": "false", "stamped": "evidence", "written_by": "transfer"},
)
