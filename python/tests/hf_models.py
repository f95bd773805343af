"""Tiny random transformers models of each family ffnjit.patch serves (and one it refuses),
built by transformers itself. Shared by the CPU tests and tests/gpu/test_python_hf.py."""
from __future__ import annotations

import torch

FAMILIES = ("llama", "mistral", "qwen2", "opt")


def config(family: str, *, hidden_act: str = "relu", layers: int = 2, d_model: int = 64, d_ff: int = 128,
           vocab: int = 128, mlp_bias: bool = False):
    import transformers as tf
    common = dict(vocab_size=vocab, hidden_size=d_model, num_hidden_layers=layers, num_attention_heads=4,
                  max_position_embeddings=256)
    if family == "opt":
        return tf.OPTConfig(ffn_dim=d_ff, word_embed_proj_dim=d_model, activation_function=hidden_act,
                            enable_bias=True, do_layer_norm_before=True, **common)
    cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config}[family]
    extra = {"mlp_bias": mlp_bias} if family == "llama" else {}
    return cls(intermediate_size=d_ff, num_key_value_heads=2, hidden_act=hidden_act, **common, **extra)


def model(family: str, *, seed: int = 0, nonzero_biases: bool = True, **kw):
    """A causal LM in bf16 (eval mode). Biases (OPT, Llama mlp_bias) are made non-zero:
    transformers initializes them to zero, which would test nothing."""
    import transformers as tf
    torch.manual_seed(seed)
    cfg = config(family, **kw)
    m = tf.AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16).eval()
    if nonzero_biases:
        with torch.no_grad():
            for name, p in m.named_parameters():
                if name.endswith(".bias") and (".fc1." in name or ".fc2." in name or ".mlp." in name):
                    p.normal_(0.0, 0.1)
    return m


def batches(vocab: int = 128, seed: int = 1, device="cpu"):
    """Two batches: a padded tokenizer-style dict (one pad position) and a plain id tensor.
    Non-padding tokens: 2 * 7 - 1 + 5 = 18."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (2, 7), generator=g)
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 0] = 0  # left padding
    return [{"input_ids": ids.to(device), "attention_mask": mask.to(device)},
            torch.randint(3, vocab, (1, 5), generator=g).to(device)]


CAPTURED_ROWS = 18
