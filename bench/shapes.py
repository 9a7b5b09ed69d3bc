"""Random-init models of named shapes for the benchmarks (nothing is downloaded).

tiny        4 layers, d=256, 4 heads (2 KV, head_dim 64), MLP 768, vocab 261 (the tiny tokenizer's)
qwen-vocab  the same body with Qwen's 151,936-token vocabulary, untied output layer
qwen3-0.6b / qwen3-1.7b / qwen3-8b   Qwen3's published shapes (28 / 28 / 36 layers; d=1024 / 2048 /
            4096; 16 / 16 / 32 heads, 8 KV heads, head_dim 128; tied / tied / untied embeddings)
"""

import torch
import transformers

import models

SHAPES = {
    "tiny": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        vocab_size=261,
        tie_word_embeddings=True,
    ),
    "qwen-vocab": dict(
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        vocab_size=151936,
        tie_word_embeddings=False,
    ),
    "qwen3-0.6b": dict(
        hidden_size=1024,
        intermediate_size=3072,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen3-1.7b": dict(
        hidden_size=2048,
        intermediate_size=6144,
        num_hidden_layers=28,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "qwen3-8b": dict(
        hidden_size=4096,
        intermediate_size=12288,
        num_hidden_layers=36,
        num_attention_heads=32,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        tie_word_embeddings=False,
    ),
}


def build(shape: str, device, dtype, max_positions: int = 4096) -> transformers.Qwen3ForCausalLM:
    """A Qwen3 model of SHAPES[shape] with random weights (seed 0), built on `device`, in eval mode.
    Its EOS ids are the tiny tokenizer's, which a random model rarely emits: rows run to the cap."""
    if shape not in SHAPES:
        raise SystemExit(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    config = models.tiny_config(
        **SHAPES[shape],
        max_position_embeddings=max_positions,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
    )
    with torch.device(device):
        torch.manual_seed(0)
        model = transformers.Qwen3ForCausalLM(config).to(dtype).eval()
    return model
