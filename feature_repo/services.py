"""Feature services, one per consumer; the platform reads Feast only through these, by name.

- training: a user x item training frame for an ML engineer (`rgcd features frame`, the default);
  entity columns user_id, item_id.
- pair_training: behaviour pairs and the teacher's pair judgement, per pair_id (stage 1 reads the
  pairs, stage 2 the pairs with the judgement).
- item_training: item facts and content, per item_id (stage 1's items, read by the student);
- item_answers: the teacher's item-level answers, per item_id (stage 2 fills the transferability of
  pairs the teacher did not judge from its two items' answers).
- item_facts: the few item facts stage 2 joins to its vectors (domain, author, category, start).
- publishing: each room's author and on-air interval, per item_id (`rgcd publish`).
- ranker: online features of one request (a user and candidate items) for downstream rankers, in
  one read with the user's features repeated on every candidate's row; ranker_user + ranker_items:
  the same features in two reads, the user's once (per user_id) and the candidates' (per item_id):
  about a third of the values to read, convert and send at 200 candidates (benchmarks/feast_online.py).
- retrieval_user / retrieval_item: what candidate retrieval reads online for a user (vector,
  recent short videos with the teacher's knowledge, short-video activity) and for an item
  (vector, the teacher's knowledge).
Column lists here are the contract with the code that reads them (training/frames.py,
training/stage2.py, embeddings/publish.py, embeddings/retrieval.py).
"""

from feast import FeatureService
from views.embeddings import item_embeddings, user_embeddings, user_recent_videos
from views.generated import (
    behaviour_pairs,
    item_content,
    item_content_online,
    live_schedule,
    user_features_daily,
)
from views.reasoning import item_reasoning, pair_reasoning

KNOWLEDGE = ["vertical_domain", "key_subject", "content_theme", "teacher_id"]

training = FeatureService(
    name="training",
    features=[user_features_daily, item_content, item_reasoning, item_embeddings],
    description="Point-in-time training frames over (user_id, item_id, event_timestamp).",
)

pair_training = FeatureService(
    name="pair_training",
    features=[
        behaviour_pairs[["pair_type", "photo_item_id", "target_id", "photo_id", "live_id", "author_id",
                         "co_count", "distinct_users", "strength", "first_seen", "last_seen"]],
        pair_reasoning[["semantic_transferability"]],
    ],
    description="Point-in-time frames over (pair_id, event_timestamp): stage 1's pairs, stage 2's pairs.",
)

item_training = FeatureService(
    name="item_training",
    features=[
        item_content[["domain", "source_id", "author_id", "title", "body_text", "category_l1", "category_l2",
                      "category_l3", "category_l4", "duration_ms", "start_timestamp", "end_timestamp",
                      "mm_embedding", "cover_path"]],
    ],
    description="Point-in-time item facts over (item_id, event_timestamp): stage 1's and stage 2's items.",
)

item_answers = FeatureService(
    name="item_answers",
    features=[item_reasoning[["vertical_domain", "key_subject", "content_theme"]]],
    description="Point-in-time teacher answers per item over (item_id, event_timestamp): what stage 2 "
                "fills an unjudged pair's transferability from.",
)

item_facts = FeatureService(
    name="item_facts",
    features=[item_content[["domain", "author_id", "category_l1", "start_timestamp"]]],
    description="Point-in-time item facts over (item_id, event_timestamp): stage 2's item table.",
)

publishing = FeatureService(
    name="publishing",
    features=[live_schedule[["author_id", "start_timestamp", "end_timestamp"]]],
    description="Each room's author and on-air interval, over (item_id, event_timestamp).",
)

RANKER_ITEM_VIEWS = [
    # item_content's online columns, under item_content's name (item_content__domain, ...)
    item_content_online.with_name("item_content"),
    live_schedule[["start_timestamp", "end_timestamp"]],
    item_reasoning[["vertical_domain", "key_subject", "content_theme"]],
    item_embeddings,
]

ranker = FeatureService(
    name="ranker",
    features=[user_features_daily, *RANKER_ITEM_VIEWS],
    description="Online features for rankers: one user x candidate items.",
)

ranker_user = FeatureService(
    name="ranker_user",
    features=[user_features_daily],
    description="Online features for rankers, per user_id: the ranker service's user half.",
)

ranker_items = FeatureService(
    name="ranker_items",
    features=RANKER_ITEM_VIEWS,
    description="Online features for rankers, per item_id: the ranker service's candidate half.",
)

retrieval_user = FeatureService(
    name="retrieval_user",
    features=[
        user_embeddings[["user_vector", "model_version"]],
        user_recent_videos[["recent_photo_ids", "recent_vertical_domains", "recent_key_subjects",
                            "recent_content_themes"]],
        user_features_daily[["sv_plays_30d"]],
    ],
    description="Online, per user_id: what retrieval reads to place a user in the vector space.",
)

retrieval_item = FeatureService(
    name="retrieval_item",
    features=[item_embeddings[["transferable", "model_version"]], item_reasoning[KNOWLEDGE]],
    description="Online, per item_id: an item's vector and the teacher's knowledge of it.",
)
