"""A tiny Idefics3 (the SmolVLM architecture) vision-language model with RANDOM weights, built from
config with a tokenizer trained offline and the PIL image processor (no torchvision, no download).

It stands in for a real VLM teacher in tests: it proves that covers reach a vision tower through the
`hf` backend, not that anything is seen in them.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>",
           "<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>"]
# ChatML over content parts; an image part becomes the processor's <image> placeholder.
TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_vlm(texts: Iterable[str], out_dir: Path, vocab_size: int = 1200, seed: int = 0) -> Path:
    """Write the tiny Idefics3 (28x28 images, one image token each) and its processor to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Idefics3Config,
        Idefics3ForConditionalGeneration,
        Idefics3Processor,
        PreTrainedTokenizerFast,
    )
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(texts, trainer=trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|pad|>")
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": 28}, max_image_size={"longest_edge": 28}
    )
    Idefics3Processor(image_processor=images, tokenizer=fast, image_seq_len=1,
                      chat_template=TEMPLATE).save_pretrained(out_dir)
    ids = {t: fast.convert_tokens_to_ids(t) for t in SPECIAL}
    config = Idefics3Config(
        text_config={"model_type": "llama", "vocab_size": len(fast), "hidden_size": 64,
                     "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                     "num_key_value_heads": 4, "max_position_embeddings": 2048,
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|pad|>"],
                     "tie_word_embeddings": True},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 28, "patch_size": 14},
        scale_factor=2, image_token_id=ids["<image>"], pad_token_id=ids["<|pad|>"], tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    Idefics3ForConditionalGeneration(config).save_pretrained(out_dir)
    (out_dir / "README.md").write_text("# tiny-idefics3-from-config (random weights, not a pretrained VLM)\n")
    return out_dir
