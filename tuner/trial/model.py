"""The transformers causal LM and tokenizer a trial trains: built from config, or loaded from a local directory.

Nothing is ever downloaded: from-config models use the byte-level ``ByT5Tokenizer`` (it needs no files), and
``model.pretrained`` must be a local directory with weights and tokenizer.
"""

from __future__ import annotations

from typing import Any

from tuner.spec import ModelSpec

# Every from-config family here has PyTorch's fused scaled-dot-product attention; named, not left to defaults.
ATTENTION = "sdpa"
# The backend of train.compile. Tests that only check the compiled path set "eager" (inductor's C++ code generation
# costs ~40 s per trial on a CPU).
COMPILE_BACKEND = "inductor"

# Config attributes that carry dropout, per family; a pretrained model gets model.dropout on those it has.
_DROPOUT_ATTRS = ("attention_dropout", "hidden_dropout", "resid_pdrop", "embd_pdrop", "attn_pdrop", "dropout")


def build_tokenizer(m: ModelSpec) -> Any:
    if m.pretrained:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(m.pretrained, local_files_only=True)
    from transformers import ByT5Tokenizer

    return ByT5Tokenizer()


def model_config(m: ModelSpec, *, vocab_size: int, seq_len: int, tokenizer: Any) -> Any:
    """A transformers config for a from-config model."""
    from transformers import AutoConfig

    ids = {"bos_token_id": tokenizer.eos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    inner = m.intermediate_size or 4 * m.hidden_size
    dropout = m.dropout or 0.0
    if m.family == "gpt2":
        return AutoConfig.for_model(
            "gpt2", vocab_size=vocab_size, n_embd=m.hidden_size, n_layer=m.num_layers, n_head=m.num_heads,
            n_inner=inner, n_positions=seq_len, resid_pdrop=dropout, embd_pdrop=dropout,
            attn_pdrop=dropout, tie_word_embeddings=True, **ids)
    # llama, mistral, qwen2 share these names; their only dropout is on attention.
    return AutoConfig.for_model(
        m.family, vocab_size=vocab_size, hidden_size=m.hidden_size, intermediate_size=inner,
        num_hidden_layers=m.num_layers, num_attention_heads=m.num_heads, num_key_value_heads=m.num_heads,
        max_position_embeddings=seq_len, attention_dropout=dropout, tie_word_embeddings=True, **ids)


def build_model(m: ModelSpec, *, seq_len: int, tokenizer: Any) -> Any:
    """The model in float32 (mixed precision is Accelerate's job). Seed torch first for a reproducible init."""
    from transformers import AutoModelForCausalLM

    if m.pretrained:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(m.pretrained, local_files_only=True)
        given = m.dropout is not None
        overrides = {a: m.dropout for a in _DROPOUT_ATTRS if given and hasattr(config, a)}
        return AutoModelForCausalLM.from_pretrained(m.pretrained, local_files_only=True, dtype="float32",
                                                    **overrides)
    config = model_config(m, vocab_size=len(tokenizer), seq_len=seq_len, tokenizer=tokenizer)
    return AutoModelForCausalLM.from_config(config, attn_implementation=ATTENTION)


def compile_model(model: Any) -> Any:
    """Compile the model's forward in place: its parameters and state-dict keys stay as they are, so checkpoints
    of compiled and plain trials are the same."""
    model.compile(backend=COMPILE_BACKEND)
    return model
