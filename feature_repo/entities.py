"""Entities: who or what a feature describes. Join keys and value types are the marts' columns."""

from feast import Entity, ValueType

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A viewer (user_id of user_id_set.csv); the same id in both domains.",
)

item = Entity(
    name="item",
    join_keys=["item_id"],
    value_type=ValueType.STRING,
    description="A short video ('photo:<photo_id>') or a live room ('live:<live_id>').",
)

author = Entity(
    name="author",
    join_keys=["author_id"],
    value_type=ValueType.INT64,
    description="A creator (author_id); live authors are the klm3-cdr benchmark's targets.",
)

behaviour_pair = Entity(
    name="behaviour_pair",
    join_keys=["pair_id"],
    value_type=ValueType.STRING,
    description="A behaviour pair (short video, live room or live author), id from behaviour_pairs.",
)
