"""Feature services, one per consumer. Frames and online reads ask for a service by name.

- training: what a user x item training frame needs (user behaviour, item content, reasoning,
  vectors); entity columns user_id, item_id.
- pair_training: what stage 2 reads per behaviour pair (co-engagement, teacher judgement);
  entity column pair_id.
- ranker: online features of one request (a user and candidate items): user features, item
  facts, on-air interval, reasoning fields and the item vectors with their model_version.
- retrieval: what candidate retrieval filters and scores on, per item: vectors + model_version,
  domain and author, on-air interval.
"""

from feast import FeatureService
from views.embeddings import item_embeddings
from views.generated import (
    behaviour_pairs,
    item_content,
    item_content_online,
    live_schedule,
    user_features_daily,
)
from views.reasoning import item_reasoning, pair_reasoning

training = FeatureService(
    name="training",
    features=[user_features_daily, item_content, item_reasoning, item_embeddings],
    description="Point-in-time training frames over (user_id, item_id, event_timestamp).",
)

pair_training = FeatureService(
    name="pair_training",
    features=[behaviour_pairs, pair_reasoning],
    description="Point-in-time frames over (pair_id, event_timestamp) for stage 2.",
)

ranker = FeatureService(
    name="ranker",
    features=[
        user_features_daily,
        # item_content's online columns, under item_content's name (item_content__domain, ...)
        item_content_online.with_name("item_content"),
        live_schedule[["start_timestamp", "end_timestamp"]],
        item_reasoning[["vertical_domain", "key_subject", "content_theme"]],
        item_embeddings,
    ],
    description="Online features for rankers: one user x candidate items.",
)

retrieval = FeatureService(
    name="retrieval",
    features=[
        item_embeddings,
        item_content_online[["domain", "author_id"]].with_name("item_content"),
        live_schedule[["start_timestamp", "end_timestamp"]],
    ],
    description="Per-item vectors, model version, domain, author and on-air interval.",
)
