"""The stage 1 student: a causal LM that reads an item and writes teacher knowledge via 16 chorus tokens.

One file, in reading order: the config, the module, the loss (nanoGPT style).

Sequence layout of one item (left to right):

    [soft tokens] [item text tokens] [chorus tokens x16] [knowledge tokens ... <eos>]
     projected       title, text,      learnable            "vertical_domain: ...\\n
     multimodal      categories        embeddings            key_subject: ...\\n content_theme: ..."
     vector

- The multimodal vector (128-d for short videos, 64-d for live rooms: KuaiLive-M3's precomputed
  embeddings) goes through a per-domain linear projector into `n_soft_tokens` input embeddings.
- The chorus tokens are `n_chorus` learnable input embeddings appended after the item inputs.
- The loss is next-token prediction on the knowledge tokens, plus (`mm_distill_weight`) a
  multimodal distillation term: a linear head per domain reads the mean chorus state and must
  point where the item's multimodal vector points (cosine). The teacher's knowledge follows from
  the text, so without this term nothing makes the chorus states keep what only the vector
  carries.
- With `mask_direct_path` (the default) the attention mask forbids knowledge tokens to attend to the
  soft and text tokens: they see the item ONLY through the chorus tokens (and each other). Every
  bit the knowledge needs must therefore be gathered into the chorus tokens' hidden states, which is
  what makes those states (16 x d, last layer) a representation of the item. Without the mask the
  knowledge could copy from the item text directly and the chorus tokens would learn little.

Any `AutoModelForCausalLM` works as the base; the student only uses its input embeddings, its
base model (the decoder stack, with a 4-D additive attention mask) and its output embeddings.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HEAD_FILE = "chorus_head.safetensors"
CONFIG_FILE = "chorus_config.json"


# ------------------------------------------------------------------------------------------------ config
@dataclass
class ChorusStudentConfig:
    """Shape of the student beyond its base LM."""

    base_path: str = ""
    n_chorus: int = 16
    n_soft_tokens: int = 2
    mm_dims: dict[str, int] = field(default_factory=lambda: {"photo": 128, "live": 64})
    mask_direct_path: bool = True
    max_item_tokens: int = 64
    max_knowledge_tokens: int = 40
    mm_distill_weight: float = 1.0


def item_text(item: dict) -> str:
    """The text of an item the student reads: domain, title, text and category path."""
    cats = " > ".join(c for c in (item.get(f"category_l{i}") or "" for i in range(1, 5)) if c)
    title = (item.get("title") or "").strip() or "(untitled)"
    body = (item.get("body_text") or "").strip()
    return f"{item['domain']}: {title}\n{body[:300]}\ncategories: {cats or '(none)'}\n"


@dataclass
class ItemBatch:
    """A batch of items as tensors (see `ChorusStudent.collate`)."""

    item_ids: torch.Tensor  # (B, L) left-padded text tokens
    item_valid: torch.Tensor  # (B, L) bool
    mm: dict[str, torch.Tensor]  # domain -> (B, dim) vectors (zeros where absent)
    mm_valid: torch.Tensor  # (B,) bool: the item has a multimodal vector
    domains: list[str]
    knowledge_ids: torch.Tensor | None = None  # (B, K) right-padded, ends with eos
    knowledge_valid: torch.Tensor | None = None  # (B, K) bool


# ------------------------------------------------------------------------------------------------ module
class ChorusStudent(nn.Module):
    """Base causal LM + per-domain multimodal projector + learnable chorus tokens."""

    def __init__(self, cfg: ChorusStudentConfig, lm: nn.Module, tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.lm = lm
        self.tokenizer = tokenizer
        d = lm.get_input_embeddings().embedding_dim
        self.hidden_size = d
        self.projector = nn.ModuleDict(
            {domain: nn.Linear(dim, cfg.n_soft_tokens * d) for domain, dim in cfg.mm_dims.items()}
        )
        # Chorus tokens start at the scale of the base's word embeddings so they are neither ignored
        # nor dominant in the first steps.
        scale = float(lm.get_input_embeddings().weight.detach().std())
        self.chorus = nn.Parameter(torch.randn(cfg.n_chorus, d) * scale)
        # The multimodal distillation head: mean chorus state -> the item's multimodal vector.
        self.mm_head = nn.ModuleDict({domain: nn.Linear(d, dim) for domain, dim in cfg.mm_dims.items()})

    # -- inputs
    def collate(self, items: list[dict], knowledge: list[str] | None = None) -> ItemBatch:
        """Tokenise items (and, for training, their knowledge texts) into one batch."""
        tok = self.tokenizer
        pad = tok.pad_token_id
        L, K = self.cfg.max_item_tokens, self.cfg.max_knowledge_tokens
        texts = [t[:L] for t in tok([item_text(it) for it in items], add_special_tokens=False)["input_ids"]]
        width = max(len(t) for t in texts)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        valid = torch.zeros((len(items), width), dtype=torch.bool)
        for b, t in enumerate(texts):  # left padding keeps the chorus tokens at one position per batch
            ids[b, width - len(t) :] = torch.tensor(t, dtype=torch.long)
            valid[b, width - len(t) :] = True
        mm = {d: torch.zeros(len(items), dim) for d, dim in self.cfg.mm_dims.items()}
        mm_valid = torch.zeros(len(items), dtype=torch.bool)
        for b, it in enumerate(items):
            vec = it.get("mm_embedding")
            if vec is not None and it["domain"] in mm and len(vec) == self.cfg.mm_dims[it["domain"]]:
                mm[it["domain"]][b] = torch.as_tensor(list(vec), dtype=torch.float32)
                mm_valid[b] = True
        batch = ItemBatch(ids, valid, mm, mm_valid, [it["domain"] for it in items])
        if knowledge is not None:
            kn = [k[: K - 1] + [tok.eos_token_id]
                  for k in tok(list(knowledge), add_special_tokens=False)["input_ids"]]
            kw = max(len(k) for k in kn)
            batch.knowledge_ids = torch.full((len(items), kw), pad, dtype=torch.long)
            batch.knowledge_valid = torch.zeros((len(items), kw), dtype=torch.bool)
            for b, k in enumerate(kn):
                batch.knowledge_ids[b, : len(k)] = torch.tensor(k, dtype=torch.long)
                batch.knowledge_valid[b, : len(k)] = True
        return batch

    def _soft_tokens(self, batch: ItemBatch) -> torch.Tensor:
        B, S, d = len(batch.domains), self.cfg.n_soft_tokens, self.hidden_size
        soft = torch.zeros(B, S, d, dtype=self.chorus.dtype, device=self.chorus.device)
        for domain, proj in self.projector.items():
            rows = [b for b, dom in enumerate(batch.domains) if dom == domain]
            if rows:
                idx = torch.tensor(rows, device=self.chorus.device)
                vectors = batch.mm[domain][idx].to(self.chorus.device, self.chorus.dtype)
                soft[idx] = proj(vectors).view(len(rows), S, d)
        return soft

    def _inputs(
        self, batch: ItemBatch, knowledge_ids: torch.Tensor | None, knowledge_valid: torch.Tensor | None
    ):
        """Input embeddings, 4-D additive attention mask and position ids of the whole sequence."""
        dev = self.chorus.device
        B = len(batch.domains)
        S, C = self.cfg.n_soft_tokens, self.cfg.n_chorus
        embed = self.lm.get_input_embeddings()
        parts = [self._soft_tokens(batch), embed(batch.item_ids.to(dev)), self.chorus.expand(B, -1, -1)]
        valid = [
            batch.mm_valid.to(dev)[:, None].expand(B, S),
            batch.item_valid.to(dev),
            torch.ones(B, C, dtype=torch.bool, device=dev),
        ]
        kinds = [torch.zeros(S + batch.item_ids.shape[1], dtype=torch.long), torch.ones(C, dtype=torch.long)]
        if knowledge_ids is not None:
            parts.append(embed(knowledge_ids.to(dev)))
            valid.append(knowledge_valid.to(dev))
            kinds.append(torch.full((knowledge_ids.shape[1],), 2, dtype=torch.long))
        x = torch.cat(parts, dim=1)
        valid_t = torch.cat(valid, dim=1)
        kind = torch.cat(kinds).to(dev)  # 0 item (soft + text), 1 chorus, 2 knowledge
        T = x.shape[1]
        allowed = torch.tril(torch.ones(T, T, dtype=torch.bool, device=dev))[None] & valid_t[:, None, :]
        if self.cfg.mask_direct_path:
            # The heart of the method: knowledge rows may not look at item columns.
            allowed = allowed & ~((kind[:, None] == 2) & (kind[None, :] == 0))[None]
        # Every row sees itself, so padded rows never softmax over nothing (NaN).
        allowed = allowed | torch.eye(T, dtype=torch.bool, device=dev)[None]
        mask = torch.zeros(B, 1, T, T, dtype=x.dtype, device=dev)
        mask.masked_fill_(~allowed[:, None], torch.finfo(x.dtype).min)
        positions = (valid_t.long().cumsum(-1) - 1).clamp(min=0)
        return x, mask, positions

    def _hidden(self, batch: ItemBatch, knowledge_ids=None, knowledge_valid=None) -> torch.Tensor:
        x, mask, positions = self._inputs(batch, knowledge_ids, knowledge_valid)
        out = self.lm.base_model(
            inputs_embeds=x, attention_mask=mask, position_ids=positions, use_cache=False
        )
        return out.last_hidden_state

    def chorus_start(self, batch: ItemBatch) -> int:
        """Index of the first chorus token in this batch's sequences."""
        return self.cfg.n_soft_tokens + batch.item_ids.shape[1]

    @torch.no_grad()
    def chorus_states(self, batch: ItemBatch) -> torch.Tensor:
        """The item representations: last-layer hidden states at the chorus tokens, (B, n_chorus, d)."""
        h = self._hidden(batch)
        start = self.chorus_start(batch)
        return h[:, start : start + self.cfg.n_chorus]

    # -- loss
    def forward(self, batch: ItemBatch) -> torch.Tensor:
        """Mean next-token cross-entropy over the knowledge tokens (written after the chorus tokens)."""
        assert batch.knowledge_ids is not None, "training batches need knowledge (collate(items, knowledge))"
        h = self._hidden(batch, batch.knowledge_ids, batch.knowledge_valid)
        first = self.chorus_start(batch) + self.cfg.n_chorus  # first knowledge position
        K = batch.knowledge_ids.shape[1]
        # The last chorus token predicts the first knowledge token, and so on.
        logits = self.lm.get_output_embeddings()(h[:, first - 1 : first - 1 + K])
        target = batch.knowledge_ids.to(logits.device).masked_fill(
            ~batch.knowledge_valid.to(logits.device), -100
        )
        loss = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]).float(), target.reshape(-1), ignore_index=-100
        )
        if self.cfg.mm_distill_weight:
            start = self.chorus_start(batch)
            loss = loss + self.cfg.mm_distill_weight * self.mm_distill_loss(
                batch, h[:, start : start + self.cfg.n_chorus].mean(dim=1))
        return loss

    def mm_distill_loss(self, batch: ItemBatch, pooled: torch.Tensor) -> torch.Tensor:
        """Mean cosine distance between each item's multimodal vector and the head's reading of its
        mean chorus state (items without a vector take no part)."""
        total, count = pooled.new_zeros(()), 0
        for domain, head in self.mm_head.items():
            rows = [b for b, dom in enumerate(batch.domains) if dom == domain and bool(batch.mm_valid[b])]
            if rows:
                idx = torch.tensor(rows, device=pooled.device)
                target = batch.mm[domain][idx].to(pooled.device, pooled.dtype)
                total = total + (1 - F.cosine_similarity(head(pooled[idx]), target, dim=-1)).sum()
                count += len(rows)
        return total / max(1, count)

    @torch.no_grad()
    def generate_knowledge(self, batch: ItemBatch, max_new_tokens: int | None = None) -> list[str]:
        """Greedy decoding after the chorus tokens, under the same mask as training."""
        n = max_new_tokens or self.cfg.max_knowledge_tokens
        B = len(batch.domains)
        dev = self.chorus.device
        eos, pad = self.tokenizer.eos_token_id, self.tokenizer.pad_token_id
        out = torch.empty(B, 0, dtype=torch.long, device=dev)
        done = torch.zeros(B, dtype=torch.bool, device=dev)
        head = self.lm.get_output_embeddings()
        for _ in range(n):
            # Recomputing the whole (short) sequence each step keeps decoding under exactly the
            # training mask without a custom KV-cache mask; fine at these lengths. Rows already done
            # carry pads whose values are never read.
            if out.shape[1]:
                h = self._hidden(batch, out, torch.ones_like(out, dtype=torch.bool))
            else:
                h = self._hidden(batch)
            nxt = head(h[:, -1]).argmax(-1)
            nxt = torch.where(done, torch.full_like(nxt, pad), nxt)
            out = torch.cat([out, nxt[:, None]], dim=1)
            done = done | (nxt == eos)
            if bool(done.all()):
                break
        texts = []
        for row in out.tolist():
            row = row[: row.index(eos)] if eos in row else row
            texts.append(self.tokenizer.decode([t for t in row if t != pad], skip_special_tokens=True))
        return texts

    # -- persistence
    def save_pretrained(self, out_dir: Path) -> None:
        """Write the base LM and tokenizer (`save_pretrained`, safetensors) plus the chorus head."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.lm.save_pretrained(out_dir)
        self.tokenizer.save_pretrained(out_dir)
        head = {f"projector.{k}": v.detach().contiguous() for k, v in self.projector.state_dict().items()}
        head["chorus"] = self.chorus.detach().contiguous()
        head.update({f"mm_head.{k}": v.detach().contiguous() for k, v in self.mm_head.state_dict().items()})
        save_file(head, out_dir / HEAD_FILE)
        (out_dir / CONFIG_FILE).write_text(json.dumps(asdict(self.cfg), indent=2))

    @classmethod
    def from_pretrained(cls, path: Path) -> ChorusStudent:
        """Load a student written by `save_pretrained`."""
        from safetensors.torch import load_file

        path = Path(path)
        cfg = ChorusStudentConfig(**json.loads((path / CONFIG_FILE).read_text()))
        student = cls.from_base(cfg, path)
        head = load_file(path / HEAD_FILE)
        student.chorus.data.copy_(head.pop("chorus"))
        mm = {k.removeprefix("mm_head."): head.pop(k) for k in [k for k in head if k.startswith("mm_head.")]}
        if mm:  # a student saved before the distillation head has none
            student.mm_head.load_state_dict(mm)
        student.projector.load_state_dict({k.removeprefix("projector."): v for k, v in head.items()})
        return student

    @classmethod
    def from_base(cls, cfg: ChorusStudentConfig, base_path: Path | str | None = None) -> ChorusStudent:
        """A fresh student around the causal LM at `base_path` (default `cfg.base_path`)."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        where = str(base_path or cfg.base_path)
        tokenizer = AutoTokenizer.from_pretrained(where)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        lm = AutoModelForCausalLM.from_pretrained(where, dtype=torch.float32)
        return cls(cfg, lm, tokenizer)


def n_parameters(module: nn.Module) -> int:
    """Number of parameters (for logs)."""
    return sum(p.numel() for p in module.parameters())


def cosine_lr(step: int, total: int, peak: float, warmup: int = 10) -> float:
    """Linear warm-up then cosine decay to 10% of `peak`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def encode_items(student: ChorusStudent, items: list[dict], batch_size: int) -> torch.Tensor:
    """Chorus states of `items`, (N, n_chorus, d), in batches.

    Items are batched in order of text length, so a batch pads to its own longest text: the many
    short live-room texts cost what they are, not the width of the longest short-video text.
    """
    order = sorted(range(len(items)), key=lambda i: len(item_text(items[i])))
    out = []
    for start in range(0, len(items), batch_size):
        chunk = [items[i] for i in order[start : start + batch_size]]
        out.append(student.chorus_states(student.collate(chunk)).float().cpu())
    if not out:
        return torch.empty(0, student.cfg.n_chorus, student.hidden_size)
    merged = torch.cat(out)
    states = torch.empty_like(merged)
    states[torch.tensor(order, dtype=torch.long)] = merged
    return states
