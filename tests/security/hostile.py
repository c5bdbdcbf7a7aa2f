"""What hostile requests aim at, and what "nothing was written" means for a served workspace."""

from __future__ import annotations

import hashlib

ATTACKER_ROOM = 9_000_001  # the live_id hostile requests try to put on air


def written_state(ws, settings) -> dict:
    """What a write would change: Milvus rows of the published collection, the online store's bytes,
    the log of started rooms. Opens (and releases) the Milvus Lite file in this process."""
    from rgcd.embeddings.milvus_store import RoomVectors

    rooms = RoomVectors.connect(ws, settings)
    try:
        current = rooms.current()
        count = rooms.count(current.collection)
        attacker = rooms.rooms([f"live:{ATTACKER_ROOM}"])
    finally:
        rooms.close()
    log = ws.feature_data / "rooms_started.parquet"
    return {"milvus_rows": count, "attacker_in_milvus": bool(attacker),
            "online_store": hashlib.sha256((ws.feast / "online_store.db").read_bytes()).hexdigest(),
            "log": hashlib.sha256(log.read_bytes()).hexdigest() if log.exists() else None}
