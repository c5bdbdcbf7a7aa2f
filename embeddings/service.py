"""`rgcd serve`: retrieval over HTTP (FastAPI + uvicorn, 127.0.0.1 by default).

GET  /health                       {"status", "model_version", "collection"} (503 before a publish)
GET  /version                      {"model_version", "collection"}
GET  /retrieve/user/{user_id}      ?at=ISO-or-epoch-ms&k=K  -> the JSON of `rgcd retrieve --json`
GET  /retrieve/item/{item_id}      item_id = photo:<id>, same parameters and answer
POST /rooms/start                  a room, a list of rooms, or {"rooms": [...]} (see embeddings/rooms.py)
POST /rooms/{item_id}/end          ?at=...
Errors are JSON {"error", "message"}: unknown user or item 404, bad parameters 422, model version
mismatch 409, nothing published 503. Each worker process answers its requests one at a time, on
its event loop's thread: the Feast SQLite store and the Milvus client are not for several threads,
and a request is CPU-bound Python, so a thread pool (FastAPI's default for plain functions) only
adds hand-offs and GIL contention. With the
embedded Milvus Lite file there is one worker (a Lite file allows one process); with
`retrieval.milvus_uri` naming a server, `retrieval.serve_workers` (or --workers) processes share it.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from rgcd.config import Settings, Workspace
from rgcd.embeddings.milvus_store import NotPublished, VectorStoreError, is_server
from rgcd.embeddings.retrieval import RetrievalError, Retriever, parse_at
from rgcd.embeddings.rooms import RoomEncoder, end_room, parse_rooms_payload, start_rooms


def create_app(ws: Workspace, settings: Settings):
    """The FastAPI app over one workspace; the retriever opens at start-up and closes at shutdown."""
    from fastapi import Body, FastAPI, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response

    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["retriever"] = Retriever(ws, settings)
        try:  # loaded once, so that a room going on air is encoded in milliseconds, not seconds
            state["encoder"] = RoomEncoder(ws, settings)
        except RetrievalError:  # no student / stage-2 model yet: rooms must bring their vectors
            state["encoder"] = None
        try:
            yield
        finally:
            state.pop("retriever").close()

    app = FastAPI(title="rgcd retrieval", version="1", lifespan=lifespan,
                  description="Live rooms on air for a user (U2I) or a short video (I2I).")

    def error(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status, content={"error": kind, "message": message})

    @app.exception_handler(RetrievalError)
    async def _retrieval_error(request: Request, err: RetrievalError) -> JSONResponse:
        return error(err.http_status, type(err).__name__, str(err))

    @app.exception_handler(NotPublished)
    async def _not_published(request: Request, err: NotPublished) -> JSONResponse:
        return error(503, "NotPublished", str(err))

    @app.exception_handler(VectorStoreError)
    async def _store_error(request: Request, err: VectorStoreError) -> JSONResponse:
        return error(503, "VectorStoreError", str(err))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in err.errors())
        return error(422, "BadQuery", f"{problems} (see GET /docs for the parameters)")

    def call(fn, *args):
        # on the loop's thread, one request at a time (module docstring)
        return fn(*args)

    def answer(body: dict) -> Response:
        # the answer is plain JSON already: skip FastAPI's per-field encoder (a few ms at k = 50)
        return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")

    @app.get("/health")
    async def health() -> dict:
        published = call(lambda: state["retriever"].published())
        return {"status": "ok", "model_version": published.model_version, "collection": published.collection}

    @app.get("/version")
    async def version() -> dict:
        published = call(lambda: state["retriever"].published())
        return {"model_version": published.model_version, "collection": published.collection}

    @app.get("/retrieve/user/{user_id}")
    async def retrieve_user(user_id: int, at: str | None = None,
                      k: int | None = Query(None, description="candidates (default retrieval.default_k)")):
        return answer(call(lambda: state["retriever"].for_user(user_id, parse_at(at), k).as_json()))

    @app.get("/retrieve/item/{item_id}")
    async def retrieve_item(item_id: str, at: str | None = None, k: int | None = None):
        return answer(call(lambda: state["retriever"].for_item(item_id, parse_at(at), k).as_json()))

    @app.post("/rooms/start")
    async def rooms_start(payload: dict | list = Body(...)):  # noqa: B008 (FastAPI's idiom)
        rooms = parse_rooms_payload(payload)
        report = call(lambda: start_rooms(state["retriever"], rooms, state["encoder"]))
        return {"started": list(report.item_ids), "model_version": report.model_version,
                "vectors": report.vectors, "seconds": round(report.seconds, 4)}

    @app.post("/rooms/{item_id}/end")
    async def rooms_end(item_id: str, at: str | None = None):
        ended = call(lambda: end_room(state["retriever"], item_id, parse_at(at) if at else None))
        return {"item_id": item_id, "ended": ended}

    return app


# How `serve` hands the workspace and settings to worker processes (uvicorn imports the app anew).
_WORKSPACE_ENV, _SETTINGS_ENV = "RGCD_SERVE_WORKSPACE", "RGCD_SERVE_SETTINGS"


class ServeError(RetrievalError):
    """The service cannot start as asked."""


def app_from_environment():
    """The app of a worker process started by `serve` with several workers (uvicorn's factory)."""
    return create_app(Workspace(Path(os.environ[_WORKSPACE_ENV])),
                      Settings.model_validate_json(os.environ[_SETTINGS_ENV]))


def workers_for(settings: Settings, workers: int | None) -> int:
    """Worker processes: `workers`, else retrieval.serve_workers; more than one needs a Milvus server."""
    n = settings.retrieval.serve_workers if workers is None else workers
    if n < 1:
        raise ServeError(f"workers={n}: give 1 or more")
    if n > 1 and not is_server(settings.retrieval.milvus_uri):
        raise ServeError(f"{n} workers need a Milvus server: the embedded Milvus Lite file allows one "
                         "process; set retrieval.milvus_uri (e.g. `milvus-lite server --data-dir D --port P`"
                         " and http://127.0.0.1:P) or serve with --workers 1")
    return n


def serve(ws: Workspace, settings: Settings, host: str, port: int, workers: int | None = None) -> None:
    """Run the service in the foreground until SIGTERM / Ctrl-C."""
    import uvicorn

    n = workers_for(settings, workers)
    if n == 1:
        uvicorn.run(create_app(ws, settings), host=host, port=port, log_level="warning", access_log=False)
        return
    os.environ[_WORKSPACE_ENV] = str(ws.root.resolve())
    os.environ[_SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run("rgcd.embeddings.service:app_from_environment", factory=True, workers=n, host=host, port=port,
                log_level="warning", access_log=False)
