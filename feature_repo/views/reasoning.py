"""Teacher reasoning written by stage 1a (<workspace>/feature_data/{item,pair}_reasoning.parquet).

Rows are stamped with when their evidence existed (event_timestamp: a pair's last co-engagement,
an item's first appearance) and when they were generated (created_timestamp). Reasoning is often a
backfill over historical logs, written long after its evidence, so frames do NOT cut by
created_timestamp (that would hide every backfill from every historical frame): a row is visible
from its evidence time on and never before it, and created_timestamp breaks ties, so a
regeneration (new teacher, new prompt version) of the same evidence wins (docs/features.md).
"""

from datetime import timedelta

from entities import behaviour_pair, item
from feast import FeatureView, Field
from feast.types import Bool, Float64, String
from sources import item_reasoning_source, pair_reasoning_source

item_reasoning = FeatureView(
    name="item_reasoning",
    entities=[item],
    # Knowledge about an item does not go stale by itself; a year bounds the PIT scan.
    ttl=timedelta(days=365),
    schema=[
        Field(name="item_id", dtype=String),
        Field(name="vertical_domain", dtype=String, description="teacher: the item's vertical"),
        Field(name="key_subject", dtype=String, description="teacher: what the item is about"),
        Field(name="content_theme", dtype=String, description="teacher: the item's theme"),
        Field(name="teacher_id", dtype=String, description="which teacher wrote it"),
        Field(name="prompt_version", dtype=String),
    ],
    source=item_reasoning_source,
    online=True,
    description="Per-item structured knowledge from the teacher (stage 1a).",
    tags={"regenerated": "false", "stamped": "evidence", "written_by": "reason"},
)

pair_reasoning = FeatureView(
    name="pair_reasoning",
    entities=[behaviour_pair],
    ttl=timedelta(days=365),
    schema=[
        Field(name="pair_id", dtype=String),
        Field(name="photo_item_id", dtype=String),
        Field(name="target_id", dtype=String),
        Field(name="match", dtype=Bool, description="teacher: do the two items match"),
        Field(name="reason", dtype=String, description="teacher: a brief reason"),
        Field(name="semantic_transferability", dtype=Float64, description="teacher: in [0, 1]"),
        Field(name="teacher_id", dtype=String),
        Field(name="prompt_version", dtype=String),
    ],
    source=pair_reasoning_source,
    online=False,
    description="Per-pair judgement from the teacher (stage 1a); read by stage 2's routing loss.",
    tags={"regenerated": "false", "stamped": "evidence", "written_by": "reason"},
)
