"""What `rgcd publish` writes into Feast's online store for the readers: view names and the columns of
each user's recent short videos. Publish and retrieval both import it."""

from __future__ import annotations

ITEM_VECTORS = "item_embeddings"



USER_VECTORS = "user_embeddings"



RECENT_VIDEOS = "user_recent_videos"



# user_recent_videos' columns of the teacher's knowledge of each recent video (what reasons compare).
RECENT_KNOWLEDGE = {"vertical_domain": "recent_vertical_domains", "key_subject": "recent_key_subjects",
                    "content_theme": "recent_content_themes"}
