"""The explorer: a page `rgcd serve` serves at /explore/ and the read-only JSON routes it needs.

The page (embeddings/explorer_static/: index.html, explorer.js, explorer.css; no CDN, no library)
asks the routes the rankers use for candidates (GET /retrieve/user/{id}, GET /retrieve/item/{id})
and these for what no ranker route gives (every one a GET; nothing here writes to the stores):

GET /explore/api/overview            model version, the training cut, users and short videos to start from
GET /explore/api/user/{user_id}      ?at=&window_h= the user's recent short videos (as retrieval reads
                                     them), live history before `at`, cold start or not, rooms entered
                                     in [at, at + window_h)
GET /explore/api/popular             ?at=&k= the baseline beside the model: the most popular rooms on air
GET /explore/api/items               ?ids=a,b,... title, categories, author and teacher knowledge of items
GET /explore/api/item/{item_id}      one item's facts and teacher knowledge
GET /explore/api/projection          2-D PCA of the published transferable and residual item vectors
GET /explore/api/report              the newest evaluation report (metrics.json) and its plots' names
GET /explore/api/report/plot/{name}  one of those plots (PNG)
GET /explore/api/platform            model versions, alias and its history, the last run's stages,
                                     ingest's quarantine counts, feature services and their views' freshness

Files are read, never imported from a training stage: the marts (item_content, user_item_interactions,
eval_live_room), feature_data/item_embeddings.parquet, reports/<run>/metrics.json, quarantine/*.parquet,
the run log (rgcd/run_log.py) and the alias log (embeddings/alias_log.py). Each table is read once
and kept while its file is unchanged. The projection is computed once per published model version
(numpy SVD, rgcd.training.projection.pca_2d) on at most PROJECTION_POINTS items and cached as
<workspace>/explorer/projection_<version>.json.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from rgcd.atomic import write_json_atomic
from rgcd.config import Settings, Workspace
from rgcd.embeddings.alias_log import read_switches
from rgcd.embeddings.milvus_store import KNOWLEDGE, ON_AIR, QUERY_WINDOW, NotPublished, to_ms
from rgcd.embeddings.retrieval import ITEM_SERVICE, USER_SERVICE, BadQuery, UnknownQuery, echo, parse_id
from rgcd.embeddings.retrieval import _recent_evidence as recent_evidence
from rgcd.run_log import last_run

if TYPE_CHECKING:
    from rgcd.embeddings.retrieval import Retriever

STATIC = Path(__file__).with_name("explorer_static")
PROJECTION_POINTS = 3000  # items drawn in the space view: rooms first (up to half), then short videos
SUGGESTED_USERS = 12  # users offered on the user view: half cold-start, half not, where the marts say so
SUGGESTED_VIDEOS = 12
ON_AIR_SNAPSHOT_S = 5.0  # how long the baseline keeps its copy of the rooms on air (they change)
ROOM_SCALARS = ["item_id", "author_id", "start_ms", "end_ms", "popularity"]
MAX_ITEMS = 200  # ids per /explore/api/items request
HISTORY_ROWS = 10  # live rooms shown of a user's history
CATALOGUE_COLUMNS = ("item_id", "domain", "author_id", "title", "category_l1", "category_l2")
REPORT_KEYS = ("run", "created", "seeds", "ks", "protocols", "std", "cases", "strongest", "intervals",
               "oracle_share", "skipped")
_PLOT = re.compile(r"[A-Za-z0-9_.-]{1,100}\.png")
_ITEM = re.compile(r"(photo|live):[0-9]{1,19}")


def iso(t: datetime | None) -> str | None:
    """A UTC time as the routes write it (…Z), None stays None."""
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=UTC)
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


class FileCache:
    """Tables read once and kept while their file's modification time and size stay the same."""

    def __init__(self) -> None:
        self._kept: dict[tuple[Path, str], tuple[tuple[float, int], object]] = {}

    def get(self, path: Path, what: str, read: Callable[[Path], object]) -> object | None:
        """`read(path)`, or the value kept from the last read of this unchanged file; None if absent."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        stamp = (st.st_mtime, st.st_size)
        kept = self._kept.get((path, what))
        if kept is None or kept[0] != stamp:
            kept = (stamp, read(path))
            self._kept[(path, what)] = kept
        return kept[1]


class Explorer:
    """What the explorer's routes answer, over one workspace and the service's retriever."""

    def __init__(self, ws: Workspace, settings: Settings, retriever: Callable[[], Retriever]) -> None:
        self.ws, self.settings, self._retriever = ws, settings, retriever
        self.files = FileCache()
        self._partitions: dict[tuple[str, str], tuple[float, pl.DataFrame]] = {}

    @property
    def retriever(self) -> Retriever:
        return self._retriever()

    # -- tables ----------------------------------------------------------------------------------

    def catalogue(self) -> pl.DataFrame | None:
        """item_id, domain, author_id, title, category_l1/l2 of every item (the item_content mart)."""
        def read(path: Path) -> pl.DataFrame:
            names = pl.scan_parquet(path).collect_schema().names()
            return pl.read_parquet(path, columns=[c for c in CATALOGUE_COLUMNS if c in names]).sort("item_id")

        return self.files.get(self.ws.marts / "item_content.parquet", "catalogue", read)

    def interactions(self) -> tuple[pl.DataFrame, pl.Series] | None:
        """The interactions mart sorted by (user_id, event_timestamp), and its user_id column (for a
        binary search to one user's rows)."""
        def read(path: Path):
            columns = ["user_id", "item_id", "domain", "author_id", "event_timestamp"]
            rows = pl.read_parquet(path, columns=columns).sort("user_id", "event_timestamp")
            return rows, rows["user_id"]

        return self.files.get(self.ws.marts / "user_item_interactions.parquet", "by_user", read)

    def user_rows(self, user_id: int) -> pl.DataFrame:
        """One user's interactions, oldest first (empty when the mart is absent or has none)."""
        found = self.interactions()
        if found is None:
            return pl.DataFrame(schema={"user_id": pl.Int64, "item_id": pl.String, "domain": pl.String,
                                        "author_id": pl.Int64, "event_timestamp": pl.Datetime("us", "UTC")})
        rows, users = found
        lo = int(users.search_sorted(user_id, side="left"))
        hi = int(users.search_sorted(user_id, side="right"))
        return rows.slice(lo, hi - lo)

    def describe(self, ids: list[str]) -> dict[str, dict]:
        """Per item id: title, categories, domain and author from the catalogue ({} for an unknown id)."""
        cat = self.catalogue()
        if cat is None or not ids:
            return {}
        found = cat.filter(pl.col("item_id").is_in(ids))
        return {r["item_id"]: r for r in found.to_dicts()}

    def knowledge(self, ids: list[str]) -> dict[str, dict]:
        """Per item id: the teacher's knowledge as the online store holds it (one online read of the
        item_reasoning fields that retrieval_item serves, without the vectors)."""
        if not ids:
            return {}
        rows = self.retriever.online([f"item_reasoning:{f}" for f in KNOWLEDGE], "item_id", ids)
        return {i: {f: r.get(f"item_reasoning__{f}") for f in KNOWLEDGE}
                for i, r in zip(ids, rows, strict=True)}

    def training_cut(self, version: str) -> datetime | None:
        """The event time of `version`'s vectors (stage 2's training cut), from item_embeddings."""
        def read(path: Path) -> dict:
            cuts = (pl.scan_parquet(path).group_by("model_version").agg(pl.col("event_timestamp").max())
                    .collect())
            return dict(cuts.iter_rows())

        cuts = self.files.get(self.ws.feature_data / "item_embeddings.parquet", "cuts", read)
        return (cuts or {}).get(version)

    # -- the views' answers ----------------------------------------------------------------------

    def overview(self) -> dict:
        """The published version, the cut, and users and short videos worth a look (each with a time)."""
        published = self.retriever.published()
        cut = self.training_cut(published.model_version)
        default_at = cut or datetime.now(UTC)
        return {"model_version": published.model_version, "collection": published.collection,
                "cut": iso(cut), "default_at": iso(default_at), "users": self._suggested_users(default_at),
                "videos": self._suggested_videos(published.model_version),
                "k": min(self.settings.retrieval.default_k, 20)}

    def _suggested_users(self, default_at: datetime) -> list[dict]:
        """Users of the live-room test split at their first request (half cold-start) when the mart
        exists, else users with a vector at the cut."""
        def read(path: Path) -> list[dict]:
            test = pl.read_parquet(path).filter(pl.col("split") == "test")
            if test.height == 0:
                return []
            first = (test.group_by("user_id").agg(pl.col("request_timestamp").min().alias("at"),
                                                  pl.col("is_cold_start_user").first().alias("cold_start"),
                                                  pl.len().alias("requests"))
                     .sort(["requests", "user_id"], descending=[True, False]))
            half = SUGGESTED_USERS // 2
            picked = pl.concat([first.filter(pl.col("cold_start")).head(half),
                                first.filter(~pl.col("cold_start")).head(SUGGESTED_USERS - half)])
            return [{"user_id": r["user_id"], "at": iso(r["at"]), "cold_start": r["cold_start"],
                     "why": f"{r['requests']} live-room test requests"} for r in picked.to_dicts()]

        users = self.files.get(self.ws.marts / "eval_live_room.parquet", "users", read)
        if users:
            return users
        path = self.ws.feature_data / "user_embeddings.parquet"
        ids = self.files.get(path, "user_ids", lambda p: pl.read_parquet(p, columns=["user_id"])["user_id"]
                             .unique().sort().head(SUGGESTED_USERS).to_list()) or []
        return [{"user_id": u, "at": iso(default_at), "cold_start": None, "why": "has a user vector"}
                for u in ids]

    def _suggested_videos(self, version: str) -> list[str]:
        path = self.ws.feature_data / "item_embeddings.parquet"
        return self.files.get(path, f"videos_{version}", lambda p: (
            pl.scan_parquet(p).filter((pl.col("model_version") == version) & (pl.col("domain") == "photo"))
            .select("item_id").head(SUGGESTED_VIDEOS).collect()["item_id"].to_list())) or []

    def user(self, user_id: int, at: datetime, window_h: float) -> dict:
        """A user at `at`: recent short videos as retrieval reads them, live history, cold start, the
        rooms entered in [at, at + window_h)."""
        user_id = parse_id(user_id, "user_id")
        if not 0 < window_h <= 24 * 30:
            raise BadQuery(f"window_h={window_h} is out of range: give 0 < window_h <= 720 hours")
        (row,) = self.retriever.online(USER_SERVICE, "user_id", [user_id])
        recent_ids = list(row["user_recent_videos__recent_photo_ids"] or [])
        rows = self.user_rows(user_id)
        if row["user_embeddings__user_vector"] is None and not recent_ids and rows.height == 0 \
                and row["user_features_daily__sv_plays_30d"] is None:
            raise UnknownQuery(f"user {user_id} is not in the online store nor in the interactions mart: "
                               "check the id")
        before = rows.filter(pl.col("event_timestamp") < at)
        live_before = before.filter(pl.col("domain") == "live")
        end = at + timedelta(hours=window_h)
        entered = rows.filter((pl.col("domain") == "live") & (pl.col("event_timestamp") >= at)
                              & (pl.col("event_timestamp") < end))
        history = live_before.tail(HISTORY_ROWS).reverse()
        shown = recent_ids + history["item_id"].to_list() + entered["item_id"].to_list()
        facts = self.describe(shown)
        recent = [{"item_id": p, **_facts(facts.get(p)), **k}
                  for p, k in recent_evidence(row, recent_ids)]
        return {"user_id": user_id, "at": iso(at), "window_h": window_h,
                "has_vector": row["user_embeddings__user_vector"] is not None,
                "vector_version": row["user_embeddings__model_version"],
                "cold_start": live_before.height == 0, "live_sessions_before": live_before.height,
                "short_video_plays_before": before.height - live_before.height,
                "recent_videos": recent,
                "live_history": [{"item_id": r["item_id"], "author_id": r["author_id"],
                                  "at": iso(r["event_timestamp"]), **_facts(facts.get(r["item_id"]))}
                                 for r in history.to_dicts()],
                "entered": [{"item_id": r["item_id"], "author_id": r["author_id"],
                             "at": iso(r["event_timestamp"]), **_facts(facts.get(r["item_id"]))}
                            for r in entered.to_dicts()]}

    def popular(self, at: datetime, k: int | None) -> dict:
        """The popularity baseline: the k most popular rooms on air at `at` (popularity = the author's live
        sessions in the days before the cut), ties by item id, in the shape of a retrieval answer: what
        RoomVectors.popular answers, from the rooms' scalars kept in memory (see `_room_scalars`)."""
        r = self.retriever
        k = r._k(k)
        published = r.published()
        r.check_time(at, published)
        at_ms = to_ms(at)
        partitions, _ = r.rooms._window(published, at_ms)
        kept = [self._room_scalars(published.collection, p) for p in partitions]
        if any(frame is None for frame in kept):  # a partition too large to keep: Milvus sorts them
            top = [(h.item_id, h.author_id, h.popularity) for h in r.rooms.popular(at, k)]
        else:
            rooms = pl.concat(kept)  # type: ignore[arg-type]
            top = (rooms.filter((pl.col("start_ms") <= at_ms)
                                & (pl.col("end_ms").is_null() | (pl.col("end_ms") > at_ms)))
                   .unique("item_id", keep="first")
                   .sort(["popularity", "item_id"], descending=[True, False]).head(k)
                   .select("item_id", "author_id", "popularity").rows())
        return {"model_version": published.model_version, "at": iso(at), "source": "popular_on_air",
                "candidates": [{"item_id": i, "author_id": a, "score": p} for i, a, p in top]}

    def _room_scalars(self, collection: str, partition: str) -> pl.DataFrame | None:
        """item_id, author_id, start_ms, end_ms, popularity of one partition's rooms. An `ended_<n>`
        partition is written once by publish and never changes: read once. The on-air partition changes
        as rooms start and end: read again after ON_AIR_SNAPSHOT_S (the baseline may lag that long).
        None for a partition of QUERY_WINDOW rooms or more (a query returns at most that many)."""
        import time

        key = (collection, partition)
        kept = self._partitions.get(key)
        if kept and (partition != ON_AIR or time.monotonic() - kept[0] < ON_AIR_SNAPSHOT_S):
            return kept[1]
        rooms = self.retriever.rooms
        rows = rooms.client.query(collection, filter="start_ms >= 0", partition_names=[partition],
                                  output_fields=ROOM_SCALARS, limit=QUERY_WINDOW, **rooms.dialect.read)
        if len(rows) >= QUERY_WINDOW:  # perhaps cut short: not a whole partition, keep nothing
            return None
        frame = pl.DataFrame([rooms._read(row) for row in rows],
                             schema={"item_id": pl.String, "author_id": pl.Int64, "start_ms": pl.Int64,
                                     "end_ms": pl.Int64, "popularity": pl.Float64})
        self._partitions[key] = (time.monotonic(), frame)
        return frame

    def items(self, ids: list[str]) -> dict:
        """Facts and teacher knowledge of up to MAX_ITEMS items, by id."""
        if len(ids) > MAX_ITEMS:
            raise BadQuery(f"{len(ids)} ids: ask for at most {MAX_ITEMS} per request")
        bad = [i for i in ids if not _ITEM.fullmatch(i)]
        if bad:
            raise BadQuery(f"item {echo(bad[0])} is not an item id: give photo:<id> or live:<id>")
        facts, known = self.describe(ids), self.knowledge(ids)
        return {"items": {i: {**_facts(facts.get(i)), **known.get(i, {})} for i in ids}}

    def item(self, item_id: str) -> dict:
        """One item's facts, teacher knowledge, and whether the published model has a vector of it."""
        if not _ITEM.fullmatch(item_id):
            raise BadQuery(f"item {echo(item_id)} is not an item id: give photo:<id> or live:<id>")
        (row,) = self.retriever.online(ITEM_SERVICE, "item_id", [item_id])
        facts = self.describe([item_id]).get(item_id)
        if facts is None and row["item_embeddings__transferable"] is None:
            raise UnknownQuery(f"item {item_id} is in neither the item_content mart nor the online store")
        return {"item_id": item_id, **_facts(facts),
                **{f: row.get(f"item_reasoning__{f}") for f in KNOWLEDGE},
                "model_version": row["item_embeddings__model_version"],
                "has_vector": row["item_embeddings__transferable"] is not None}

    def projection(self) -> dict:
        """The 2-D projection of the published version's vectors (computed once, then read from disk)."""
        version = self.retriever.published().model_version
        path = self.ws.root / "explorer" / f"projection_{re.sub(r'[^A-Za-z0-9_.-]', '_', version)}.json"
        kept = self.files.get(path, "projection", lambda p: json.loads(p.read_text()))
        if kept is None:
            write_json_atomic(self.compute_projection(version), path, indent=None)
            kept = self.files.get(path, "projection", lambda p: json.loads(p.read_text()))
        return kept  # type: ignore[return-value]

    def compute_projection(self, version: str) -> dict:
        """PCA to 2-D (numpy SVD) of `version`'s transferable and residual vectors, rooms and short videos,
        with each item's domain, level-1 category and the world's latent topic where one exists."""
        import numpy as np

        from rgcd.training.projection import pca_2d

        path = self.ws.feature_data / "item_embeddings.parquet"
        if not path.exists():
            raise NotPublished("no item vectors yet (feature_data/item_embeddings.parquet): "
                               "run `rgcd transfer`")
        of_version = pl.scan_parquet(path).filter(pl.col("model_version") == version)
        ids = of_version.select("item_id", "domain").unique("item_id").sort("item_id").collect()
        rooms = ids.filter(pl.col("domain") == "live")
        rooms = rooms.sample(min(rooms.height, PROJECTION_POINTS // 2), seed=0) if rooms.height else rooms
        videos = ids.filter(pl.col("domain") != "live")
        n = min(videos.height, PROJECTION_POINTS - rooms.height)
        videos = videos.sample(n, seed=0) if n else videos.head(0)
        wanted = pl.concat([rooms, videos])["item_id"].implode()
        # the vectors of the sample only (the whole version's would be ~100 MB at the demo size)
        picked = (of_version.filter(pl.col("item_id").is_in(wanted))
                  .select("item_id", "domain", "transferable", "residual").collect()
                  .unique("item_id", keep="last").sort("item_id"))
        out: dict = {"model_version": version, "method": "PCA (numpy SVD), per space", "n": picked.height,
                     "item_id": picked["item_id"].to_list(), "domain": picked["domain"].to_list()}
        for space in ("transferable", "residual"):
            vectors = picked[space]
            if picked.height < 3 or vectors.null_count():
                out[space] = None
                continue
            x = np.asarray(vectors.to_list(), dtype=np.float64)
            xy, ratio = pca_2d(x)
            out[space] = {"x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
                          "variance": np.round(ratio, 4).tolist()}
        facts = self.describe(out["item_id"])
        out["category"] = [(facts.get(i) or {}).get("category_l1") for i in out["item_id"]]
        latent = self.ws.root / "latent" / "items.parquet"
        if latent.exists():
            topics = dict(pl.read_parquet(latent, columns=["item_id", "topic"])
                          .filter(pl.col("item_id").is_in(out["item_id"])).iter_rows())
            out["topic"] = [topics.get(i) for i in out["item_id"]]
        else:
            out["topic"] = None
        return out

    def report_folder(self) -> Path | None:
        """The newest evaluation report's folder (by metrics.json's modification time)."""
        runs = sorted(self.ws.reports.glob("*/metrics.json"), key=lambda p: p.stat().st_mtime)
        return runs[-1].parent if runs else None

    def report(self) -> dict:
        """The newest report's tables (the metrics.json keys the page shows) and its plots' names."""
        folder = self.report_folder()
        if folder is None:
            return {"run": None, "message": "no evaluation report yet: run `rgcd evaluate`"}
        doc = self.files.get(folder / "metrics.json", "report", lambda p: json.loads(p.read_text()))
        assert isinstance(doc, dict)
        return {**{k: doc.get(k) for k in REPORT_KEYS}, "run": doc.get("run", folder.name),
                "plots": sorted(p.name for p in folder.glob("*.png"))}

    def plot(self, name: str) -> Path:
        """A PNG of the newest report, by file name (a name outside that folder's listing is unknown)."""
        folder = self.report_folder()
        if folder is None or not _PLOT.fullmatch(name) or not (folder / name).is_file():
            raise UnknownQuery(f"no plot {echo(name)} in the newest report: GET /explore/api/report "
                               "lists them")
        return folder / name

    def platform(self) -> dict:
        """Model versions, the alias and its history, the last run, quarantine counts, feature services."""
        return {"models": self._models(), "alias_history": read_switches(self.ws),
                "last_run": last_run(self.ws.root), "quarantine": self._quarantine(),
                "feature_services": self._feature_services()}

    def _models(self) -> dict:
        rooms = self.retriever.rooms
        target = rooms.alias_target()
        return {"alias": rooms.alias, "target": target,
                "collections": [{"collection": p.collection, "model_version": p.model_version,
                                 "rows": p.published_rows, "validated": p.validated,
                                 "published_at": iso(datetime.fromtimestamp(p.published_at, tz=UTC))
                                 if p.published_at else None, "serving": p.collection == target}
                                for p in rooms.published()]}

    def _quarantine(self) -> list[dict]:
        """Per raw file: rows quarantined and the count per reason (ingest's quarantine tables)."""
        out = []
        for path in sorted(self.ws.quarantine.glob("*.parquet")):
            counts = self.files.get(path, "reasons", lambda p: pl.read_parquet(p, columns=["reason"])
                                    ["reason"].value_counts(sort=True).rows())
            out.append({"file": path.stem, "rows": sum(c for _, c in counts or []),
                        "reasons": [{"reason": r, "rows": c} for r, c in counts or []]})
        return out

    def _feature_services(self) -> dict:
        """Feature services with their views, and per view its TTL and how far it is materialized online."""
        store = self.retriever.store
        views = {}
        for view in store.list_feature_views():
            intervals = view.materialization_intervals or []
            until = max((end for _, end in intervals), default=None)
            views[view.name] = {"name": view.name, "online": bool(view.online),
                                "ttl_s": view.ttl.total_seconds() if view.ttl else None,
                                "features": len(view.features), "materialized_until": iso(until),
                                "entities": list(view.entities)}
        services = [{"name": s.name, "description": s.description,
                     "views": [{"name": p.name_to_use(), "view": p.name, "features": len(p.features)}
                               for p in s.feature_view_projections]}
                    for s in sorted(store.list_feature_services(), key=lambda s: s.name)]
        return {"services": services, "views": sorted(views.values(), key=lambda v: v["name"]),
                "now": iso(datetime.now(UTC))}


def _facts(row: dict | None) -> dict:
    """The catalogue's facts of an item as the page shows them (nulls when the mart lacks it)."""
    row = row or {}
    category = " / ".join(c for c in (row.get("category_l1"), row.get("category_l2")) if c) or None
    return {"title": row.get("title"), "category": category,
            "domain": row.get("domain"), "author_id": row.get("author_id")}


def mount(app, ws: Workspace, settings: Settings, retriever: Callable[[], Retriever]) -> Explorer:
    """Add the explorer's page and read-only routes to the service's app (every route a GET)."""
    from fastapi import Query
    from fastapi.responses import FileResponse, RedirectResponse, Response

    from rgcd.embeddings.retrieval import parse_at

    explorer = Explorer(ws, settings, retriever)

    def answer(body: dict) -> Response:
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    page_files = {"": ("index.html", "text/html; charset=utf-8"),
                  "explorer.js": ("explorer.js", "text/javascript; charset=utf-8"),
                  "explorer.css": ("explorer.css", "text/css; charset=utf-8")}

    @app.get("/", include_in_schema=False)
    async def root():
        return RedirectResponse("/explore/")

    @app.get("/explore", include_in_schema=False)
    async def explore_bare():
        return RedirectResponse("/explore/")

    @app.get("/explore/{asset}", include_in_schema=False)
    async def explore_page(asset: str = ""):
        if asset not in page_files:
            raise UnknownQuery(f"no page asset {echo(asset)}: the explorer is at /explore/")
        name, media = page_files[asset]
        return FileResponse(STATIC / name, media_type=media, headers={"Cache-Control": "no-cache"})

    @app.get("/explore/", include_in_schema=False)
    async def explore_index():
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    @app.get("/explore/api/overview")
    async def overview():
        return answer(explorer.overview())

    @app.get("/explore/api/user/{user_id}")
    async def user(user_id: int, at: str | None = None,
                   window_h: float = Query(1.0, description="hours after `at` in which rooms entered count")):
        return answer(explorer.user(user_id, parse_at(at), window_h))

    @app.get("/explore/api/popular")
    async def popular(at: str | None = None, k: int | None = None):
        return answer(explorer.popular(parse_at(at), k))

    @app.get("/explore/api/items")
    async def items(ids: str = Query("", description="comma-separated item ids (photo:<id>, live:<id>)")):
        return answer(explorer.items([i for i in ids.split(",") if i]))

    @app.get("/explore/api/item/{item_id}")
    async def item(item_id: str):
        return answer(explorer.item(item_id))

    @app.get("/explore/api/projection")
    async def projection():
        return answer(explorer.projection())

    @app.get("/explore/api/report")
    async def report():
        return answer(explorer.report())

    @app.get("/explore/api/report/plot/{name}")
    async def report_plot(name: str):
        return FileResponse(explorer.plot(name), media_type="image/png")

    @app.get("/explore/api/platform")
    async def platform():
        return answer(explorer.platform())

    return explorer
