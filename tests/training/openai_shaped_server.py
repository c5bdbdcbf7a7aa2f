"""A SCRIPTED OpenAI-shaped chat server for tests (stands in for vLLM/SGLang's structured output).

Not a model: it answers every `POST /v1/chat/completions` with one fixed, schema-valid pair answer
whose `reason` says which path the request took, and appends every request body to a JSON-lines
file so a test can see exactly what the `openai` backend sent (response_format, image parts).
With `--refuse-response-format` it answers a request carrying `response_format` with HTTP 400, as
servers without structured output do.

    python openai_shaped_server.py --port P --record requests.jsonl [--refuse-response-format]
"""

from __future__ import annotations

import argparse
import json
import time

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

ITEM = {"vertical_domain": "scripted", "key_subject": "scripted", "content_theme": "scripted"}


def answer(structured: bool) -> str:
    """The fixed answer; its reason names the path (json_schema honoured, or prompt only)."""
    path = "response_format json_schema received" if structured else "prompt only"
    return json.dumps({"photo": ITEM, "live": ITEM, "match": True, "reason": f"scripted server: {path}",
                       "semantic_transferability": 0.5})


def make_app(record: str, refuse: bool) -> FastAPI:
    app = FastAPI()

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        with open(record, "a") as f:
            f.write(json.dumps(body) + "\n")
        structured = body.get("response_format", {}).get("type") == "json_schema"
        if structured and refuse:
            return JSONResponse(
                {"error": {"message": "response_format json_schema is not supported by this server",
                           "type": "invalid_request_error", "code": 400}},
                status_code=400,
            )
        return {
            "id": "scripted", "object": "chat.completion", "created": int(time.time()),
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": answer(structured)}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
        }

    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--refuse-response-format", action="store_true")
    args = parser.parse_args()
    uvicorn.run(make_app(args.record, args.refuse_response_format), host="127.0.0.1", port=args.port,
                log_level="warning")
