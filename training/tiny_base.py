"""A tiny causal LM built from a config plus a byte-level BPE tokenizer trained offline.

This stands in for a real pretrained base (the paper's student is a ~2B MLLM): it has the same
interfaces (`AutoModelForCausalLM`, `AutoTokenizer`, a chat template, `save_pretrained`) but
random initial weights, so tests, the demo and `transformers serve` run with no download.
Everything built here is named `tiny-*-from-config` in configs, logs and reports.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

TINY_BASE_NAME = "tiny-qwen2-from-config (untrained base, not a pretrained LM)"

# The ChatML template Qwen2 models ship; `transformers serve` needs one in the tokenizer config.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def train_tokenizer(texts: Iterable[str], out_dir: Path, vocab_size: int = 2_000):
    """Train a byte-level BPE tokenizer on `texts` offline and save it (with a chat template) to `out_dir`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>", bos_token=None, unk_token=None
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out_dir)
    return fast


def build_tiny_causal_lm(
    texts: Iterable[str],
    out_dir: Path,
    *,
    hidden: int = 64,
    layers: int = 2,
    heads: int = 4,
    vocab_size: int = 2_000,
    max_positions: int = 512,
    seed: int = 0,
) -> Path:
    """Write a tiny Qwen2 causal LM (random weights, safetensors) and its tokenizer to `out_dir`.

    Returns `out_dir`, loadable with `AutoModelForCausalLM.from_pretrained` / `AutoTokenizer`
    and servable with `transformers serve`.
    """
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2Config

    out_dir = Path(out_dir)
    tok = train_tokenizer(texts, out_dir, vocab_size=vocab_size)
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=hidden * 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    model = AutoModelForCausalLM.from_config(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, max_new_tokens=64, do_sample=False
    )
    model.save_pretrained(out_dir)
    (out_dir / "README.md").write_text(
        f"# {TINY_BASE_NAME}\n\nBuilt from a Qwen2 config (hidden {hidden}, {layers} layers) with a "
        "byte-level BPE tokenizer trained offline on the item-text corpus. Random weights: it stands "
        "in for a real pretrained base in tests and the demo.\n"
    )
    return out_dir
