"""Vectors of stage 2 (`rgcd transfer`: <workspace>/feature_data/item_embeddings.parquet,
user_embeddings.parquet) and what retrieval reads per user (user_recent_videos, written by publish).

Each row carries the model_version that produced it, so a ranker reads a vector and its version
together. Stamped like every model-stage table (docs/features.md): event_timestamp = the training
cut the vectors were fitted at (or a room's start for a room encoded later), created_timestamp =
when written. Frames do not cut by created_timestamp: vectors fitted at a cut are visible to
frames from the cut on (they saw nothing after it), and a retrain at the same cut wins the tie.
`retrieval` is the two-tower item tower (user_vector's space): Milvus searches it for user -> live,
and a ranker reads it here to score a candidate against the user. Rooms that go on air after a
training run are pushed
(item_embeddings_push) straight into the online store by `rgcd rooms start`; the batch table
stays what stage 2 wrote.
"""

from datetime import timedelta

from entities import item, user
from feast import FeatureView, Field
from feast.types import Array, Float32, String
from sources import item_embeddings_push, user_embeddings_source, user_recent_videos_push

item_embeddings = FeatureView(
    name="item_embeddings",
    entities=[item],
    ttl=timedelta(days=365),
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="transferable", dtype=Array(Float32),
              description="stage 2: the cross-domain transferable vector"),
        Field(name="residual", dtype=Array(Float32), description="stage 2: the domain residual vector"),
        Field(name="retrieval", dtype=Array(Float32),
              description="the two-tower retriever's item-tower vector (scored against user_vector)"),
        Field(name="model_version", dtype=String, description="the model that produced the vectors"),
    ],
    source=item_embeddings_push,
    online=True,
    description="Transferable, residual and retrieval item vectors (stage 2), with their model version.",
    tags={"regenerated": "false", "stamped": "evidence", "written_by": "transfer, rooms start"},
)

user_embeddings = FeatureView(
    name="user_embeddings",
    entities=[user],
    ttl=timedelta(days=365),
    schema=[
        Field(name="user_vector", dtype=Array(Float32),
              description="stage 2: the two-tower retriever's user-tower vector at the training cut"),
        Field(name="model_version", dtype=String, description="the model that produced the vector"),
    ],
    source=user_embeddings_source,
    online=True,
    description="User vectors for user -> live retrieval (stage 2), with their model version.",
    tags={"regenerated": "false", "stamped": "evidence", "written_by": "transfer"},
)

user_recent_videos = FeatureView(
    name="user_recent_videos",
    entities=[user],
    # A user's recent history is stale after a month; the fallback then says it had none.
    ttl=timedelta(days=30),
    schema=[
        Field(name="recent_photo_ids", dtype=Array(String),
              description="the user's latest positive short videos (progress >= 10%), newest first"),
        Field(name="recent_vertical_domains", dtype=Array(String),
              description="the teacher's vertical of each recent video, in the same order ('' if none)"),
        Field(name="recent_key_subjects", dtype=Array(String),
              description="the teacher's key subject of each recent video ('' if none)"),
        Field(name="recent_content_themes", dtype=Array(String),
              description="the teacher's content theme of each recent video ('' if none)"),
    ],
    source=user_recent_videos_push,
    online=True,
    description="Recent short-video history per user with the teacher's knowledge of each video (as of "
                "the publish): the retrieval fallback for users without a vector, and what reasons "
                "compare a room with, in the same online read as the user's vector.",
    tags={"regenerated": "true", "written_by": "publish"},
)
