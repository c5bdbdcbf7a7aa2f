"""A tiny causal LM taught (in seconds) to answer a handful of teacher prompts with valid JSON.

It stands in for a real teacher LLM in tests: served by `transformers serve` it makes the
`openai` backend's accepted path run against a real OpenAI-compatible server, offline.
"""

from __future__ import annotations

from pathlib import Path

import torch

from rgcd.training.reasoning.backends import MetadataTeacher
from rgcd.training.reasoning.prompts import PairFacts, pair_messages
from rgcd.training.tiny_base import build_tiny_causal_lm


def build_tiny_teacher(pairs: list[PairFacts], out_dir: Path, steps: int = 150, lr: float = 5e-3) -> Path:
    """Write a tiny model that answers each of `pairs`' prompts with the metadata baseline's JSON."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    answers = [MetadataTeacher().answer(p) for p in pairs]
    prompts = [pair_messages(p) for p in pairs]
    corpus = [m["content"] for ms in prompts for m in ms] + answers
    build_tiny_causal_lm(
        corpus * 4, out_dir, hidden=64, layers=2, heads=4, vocab_size=1500, max_positions=1024
    )
    tok = AutoTokenizer.from_pretrained(out_dir)
    model = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    seqs, labels = [], []
    for messages, answer in zip(prompts, answers, strict=True):
        prompt = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        a_ids = tok(answer + "<|im_end|>", add_special_tokens=False)["input_ids"]
        seqs.append(p_ids + a_ids)
        labels.append([-100] * len(p_ids) + a_ids)
    width = max(map(len, seqs))
    ids = torch.tensor([s + [tok.pad_token_id] * (width - len(s)) for s in seqs])
    lab = torch.tensor([s + [-100] * (width - len(s)) for s in labels])
    att = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs])
    torch.manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = model(input_ids=ids, attention_mask=att, labels=lab).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.02:
            break
    model.eval()
    model.save_pretrained(out_dir)
    return out_dir
