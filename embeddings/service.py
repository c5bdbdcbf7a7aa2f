"""`rgcd serve`: retrieval over HTTP (FastAPI + uvicorn, 127.0.0.1 by default).

GET  /health                       {"status", "model_version", "collection"} (503 before a publish)
GET  /version                      {"model_version", "collection"}
GET  /retrieve/user/{user_id}      ?at=ISO-or-epoch-ms&k=K  -> the JSON of `rgcd retrieve --json`
GET  /retrieve/item/{item_id}      item_id = photo:<id>, same parameters and answer
POST /rooms/start                  a room, a list of rooms, or {"rooms": [...]} (see embeddings/rooms.py)
POST /rooms/{item_id}/end          ?at=...
GET  /openapi.json                 the routes (no /docs or /redoc: those pages load from a CDN)
GET  /explore/                     the explorer page and its read-only routes (embeddings/explorer.py)
The POST routes write: they need 'Authorization: Bearer <token>' (rgcd.access; 401 without it, 403
while no token is configured). Errors are JSON {"error", "message"} everywhere: unknown user, item or
route 404, bad parameters 422, model version mismatch 409, nothing published 503, anything
unexpected 500; messages carry no path, URI or traceback (`public_message`). Each worker process
takes its requests one at a time, on its event loop's thread: the Feast SQLite store is not for
several threads, and a request is CPU-bound Python, so a thread pool (FastAPI's default for plain
functions) only adds hand-offs and GIL contention. Only the Milvus search leaves the loop, with a
server: concurrent requests' searches go to Milvus as one (embeddings/search_batcher.py). With the embedded
Milvus Lite file there is one worker (a Lite file allows one process); with `retrieval.milvus_uri`
naming a server, `retrieval.serve_workers` (or --workers) processes share it.
"""

from __future__ import annotations

import json
import os
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Request  # at module level: FastAPI resolves the routes' annotations here

from rgcd.access import BodyLimit, WriteGuard, write_token
from rgcd.config import Settings, Workspace
from rgcd.embeddings.explorer import mount as mount_explorer
from rgcd.embeddings.milvus_store import NotPublished, VectorStoreError, is_server
from rgcd.embeddings.retrieval import BadQuery, RetrievalError, Retriever, echo, parse_at
from rgcd.embeddings.rooms import RoomEncoder, end_room, parse_rooms_payload, start_rooms
from rgcd.embeddings.search_batcher import SearchBatcher
from rgcd.errors import RgcdError
from rgcd.redaction import UNEXPECTED, public_message

WRITE_ROUTES = ("/rooms/",)  # POST under /rooms/ writes (start, end); every GET only reads


def is_write(method: str, path: str) -> bool:
    """Whether a request writes (and so needs the write token): POST /rooms/..."""
    return method != "GET" and path.startswith(WRITE_ROUTES)



def create_app(ws: Workspace, settings: Settings, token: str | None = None,
               retriever: Retriever | None = None, freeze_heap: bool = False):
    """The FastAPI app over one workspace; the retriever opens at start-up and closes at shutdown.

    Write routes need `token` (rgcd.access); without one they answer 403. No /docs or /redoc page
    (they load their scripts from a CDN); /openapi.json describes every route. `retriever`: one
    `serve` opened already (so that a workspace it cannot open is an error before the server starts).
    `freeze_heap`: a serving process (not a test's) freezes what start-up loaded (`freeze_startup_heap`).
    """
    from fastapi import FastAPI, Query
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException

    state: dict = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["retriever"] = retriever or Retriever(ws, settings)
        r = settings.retrieval
        state["searches"] = SearchBatcher(state["retriever"], is_server(r.milvus_uri) and r.search_batch > 0,
                                          r.search_batch)
        try:  # loaded once, so that a room going on air is encoded in milliseconds, not seconds
            state["encoder"] = RoomEncoder(ws, settings)
        except RetrievalError:  # no student / stage-2 model yet: rooms must bring their vectors
            state["encoder"] = None
        if freeze_heap:  # a serving process: full collections would otherwise scan all loaded above
            from rgcd.featurestore.online import freeze_startup_heap

            freeze_startup_heap()
        try:
            yield
        finally:
            state.pop("searches").close()
            state.pop("retriever").close()

    app = FastAPI(title="rgcd retrieval", version="1", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="Live rooms on air for a user (U2I) or a short video (I2I). Writes (POST "
                              "/rooms/...) need 'Authorization: Bearer <token>' (docs/security.md).")

    def error(status: int, kind: str, message: str) -> JSONResponse:
        return JSONResponse(status_code=status,
                            content={"error": kind, "message": public_message(message, ws, settings)})

    @app.exception_handler(RetrievalError)
    async def _retrieval_error(request: Request, err: RetrievalError) -> JSONResponse:
        return error(err.http_status, type(err).__name__, str(err))

    @app.exception_handler(NotPublished)
    async def _not_published(request: Request, err: NotPublished) -> JSONResponse:
        return error(503, "NotPublished", str(err))

    @app.exception_handler(VectorStoreError)
    async def _store_error(request: Request, err: VectorStoreError) -> JSONResponse:
        return error(503, "VectorStoreError", str(err))

    @app.exception_handler(RgcdError)
    async def _rgcd_error(request: Request, err: RgcdError) -> JSONResponse:  # e.g. the feature store
        return error(503, type(err).__name__, str(err))

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}"
                             for e in err.errors())
        return error(422, "BadQuery", f"{problems} (see GET /openapi.json for the parameters)")

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
        kinds = {404: "NotFound", 405: "MethodNotAllowed"}
        message = (f"no route {request.method} {echo(request.url.path)}; the routes are in GET /openapi.json"
                   if err.status_code in (404, 405) else str(err.detail))
        return error(err.status_code, kinds.get(err.status_code, "HTTPError"), message)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        # the traceback goes to the server's log (uvicorn prints it), never to the client
        return error(500, "InternalError", UNEXPECTED)

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
        plan = call(lambda: state["retriever"].plan_user(user_id, parse_at(at), k))
        return answer((await state["searches"].complete(plan)).as_json())

    @app.get("/retrieve/item/{item_id}")
    async def retrieve_item(item_id: str, at: str | None = None, k: int | None = None):
        plan = call(lambda: state["retriever"].plan_item(item_id, parse_at(at), k))
        return answer((await state["searches"].complete(plan)).as_json())

    rooms_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
        "description": 'a room, a list of rooms or {"rooms": [...]} (embeddings/rooms.py)'}}}}}

    @app.post("/rooms/start", openapi_extra=rooms_body)
    async def rooms_start(request: Request):
        try:
            payload = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:  # nesting: RecursionError
            raise BadQuery(f"the body is not JSON ({type(err).__name__}: {echo(str(err))})") from None
        rooms = parse_rooms_payload(payload)
        report = call(lambda: start_rooms(state["retriever"], rooms, state["encoder"]))
        return {"started": list(report.item_ids), "model_version": report.model_version,
                "vectors": report.vectors, "seconds": round(report.seconds, 4)}

    @app.post("/rooms/{item_id}/end")
    async def rooms_end(item_id: str, at: str | None = None):
        ended = call(lambda: end_room(state["retriever"], item_id, parse_at(at) if at else None))
        return {"item_id": item_id, "ended": ended}

    mount_explorer(app, ws, settings, lambda: state["retriever"])  # the page at /explore/, GET routes only
    app.add_middleware(WriteGuard, token=token, is_write=is_write, token_env=settings.serving.write_token_env)
    app.add_middleware(BodyLimit, max_bytes=settings.serving.max_body_kib * 1024)
    return app


# How `serve` hands the workspace and settings to worker processes (uvicorn imports the app anew).
_WORKSPACE_ENV, _SETTINGS_ENV = "RGCD_SERVE_WORKSPACE", "RGCD_SERVE_SETTINGS"


class ServeError(RetrievalError):
    """The service cannot start as asked."""


def app_from_environment():
    """The app of a worker process started by `serve` with several workers (uvicorn's factory)."""
    ws = Workspace(Path(os.environ[_WORKSPACE_ENV]))
    settings = Settings.model_validate_json(os.environ[_SETTINGS_ENV])
    return create_app(ws, settings, write_token(ws, settings), freeze_heap=True)


def workers_for(settings: Settings, workers: int | None) -> int:
    """Worker processes: `workers`, else retrieval.serve_workers; more than one needs a Milvus server."""
    n = settings.retrieval.serve_workers if workers is None else workers
    if n < 1:
        raise ServeError(f"workers={n}: give 1 or more")
    if n > 1 and not is_server(settings.retrieval.milvus_uri):
        raise ServeError(f"{n} workers need a Milvus server: the embedded Milvus Lite file allows one "
                         "process; set retrieval.milvus_uri (e.g. `rgcd milvus start` and http://127.0.0.1:19530,"
                         " or `milvus-lite server --data-dir D --port P`) or serve with --workers 1")
    return n


def _check_can_bind(host: str, port: int) -> None:
    """ServeError (one line) when host:port cannot be bound, instead of uvicorn's log and exit 1."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise ServeError(f"cannot bind {host}:{port} ({err.strerror}): give an address of this machine "
                         "with --host (default 127.0.0.1)") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as err:
            raise ServeError(f"cannot bind {host}:{port} ({err.strerror}): another server holds the port? "
                             "stop it, or give --port") from None


def quiet_third_party_logs() -> None:
    """What a server's log should not carry: weight-loading progress bars (transformers, the hub) and
    gRPC's own chatter (e.g. "GOAWAY ... too_many_pings" between pymilvus and Milvus Lite's server);
    errors still reach the caller as exceptions. Set before those libraries start."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    os.environ.setdefault("GRPC_TRACE", "")
    import logging

    for name in ("grpc", "grpc._server", "pymilvus", "milvus_lite", "transformers", "huggingface_hub"):
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import transformers.utils.logging as tf_logging
    except ImportError:
        return
    tf_logging.disable_progress_bar()


def serve(ws: Workspace, settings: Settings, host: str, port: int, workers: int | None = None) -> None:
    """Run the service in the foreground until SIGTERM / Ctrl-C.

    Everything that can stop it is checked before the server starts (RgcdError, one line at the
    command line): the workers asked for, the write token, the feature store (applied, and this
    workspace's own) and, with one worker, Milvus.
    """
    import uvicorn

    from rgcd.featurestore.store import feature_store

    n = workers_for(settings, workers)
    token = write_token(ws, settings)
    _check_can_bind(host, port)
    quiet_third_party_logs()
    if n == 1:
        retriever = Retriever(ws, settings)
        try:
            retriever.published()
        except NotPublished:
            pass  # /health answers 503 until the first publish
        except RgcdError:
            retriever.close()
            raise
        uvicorn.run(create_app(ws, settings, token, retriever, freeze_heap=True), host=host, port=port,
                    log_level="warning", access_log=False)
        return
    feature_store(ws, settings)  # applied, and this workspace's own: else an error before workers start
    os.environ[_WORKSPACE_ENV] = str(ws.root.resolve())
    os.environ[_SETTINGS_ENV] = settings.model_dump_json()
    uvicorn.run("rgcd.embeddings.service:app_from_environment", factory=True, workers=n, host=host, port=port,
                log_level="warning", access_log=False)
