"""Model preparation for training: loading, residual dropout, LoRA, and the loss wrapper.

:class:`LossModel` runs the backbone to the final hidden states and computes the chunked loss
inside its own ``forward``, so DDP/FSDP/DeepSpeed wrappers see one module whose forward returns
the (summed) loss, and no full-vocabulary logits are ever built.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn

from limakit.training.attention import NAME as PACKED
from limakit.training.attention import register as register_packed
from limakit.training.config import TrainConfig
from limakit.training.dropout import add_residual_dropout
from limakit.training.loss import Workspace, chunked_lm_loss


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class LossModel(nn.Module):
    """``forward(batch, scale) -> scale x summed CE over the batch's target tokens``."""

    def __init__(self, lm: nn.Module, chunk: int = 1024):
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        self.workspace = Workspace()  # the loss's logits buffers, reused from step to step

    def forward(
        self,
        input_ids,
        targets,
        position_ids=None,
        attention_mask=None,
        segments=None,
        scale: float = 1.0,
    ):
        causal = inner_model(self.lm)
        backbone = getattr(causal, causal.base_model_prefix)
        extra = {}
        if segments is not None and causal.config._attn_implementation == PACKED:
            extra["limakit_segments"] = segments  # per-example causal attention, no dense mask
            attention_mask = None
        hidden = backbone(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=False,
            **extra,
        ).last_hidden_state  # (B, T, H)
        head = causal.get_output_embeddings()
        if not (targets != -100).any():  # an empty micro-batch still joins the gradient sync
            return hidden.sum() * 0.0 + head.weight.sum() * 0.0
        return chunked_lm_loss(
            hidden,
            head.weight,
            targets,
            bias=getattr(head, "bias", None),
            chunk=self.chunk,
            softcap=getattr(causal.config, "final_logit_softcapping", None),
            scale=scale,
            workspace=self.workspace,
        )


def attn_implementation(config: TrainConfig) -> str:
    if config.attn_implementation:
        return config.attn_implementation
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"  # varlen kernels read example boundaries from position ids
    return register_packed()  # causal SDPA per example: fast kernels, no dense block mask


def prepare_model(config: TrainConfig):
    """(model, tokenizer): loaded with the EOT format, dropout hooked, LoRA and checkpointing set."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from limakit.models import load_tokenizer, parse_dtype, resolve

    hf_logging.disable_progress_bar()  # our own bar reports; load/save bars would interleave
    from limakit.template import Template, attach

    tokenizer = load_tokenizer(config.model)
    model = AutoModelForCausalLM.from_pretrained(
        resolve(config.model),
        dtype=parse_dtype(config.dtype),
        attn_implementation=attn_implementation(config),
    )
    attach(tokenizer, model, Template.from_tokenizer(tokenizer))
    if config.dropout_top > 0:
        add_residual_dropout(model, config.dropout_top, config.dropout_bottom)
    if config.grad_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    if config.lora.enabled:
        from peft import LoraConfig, get_peft_model

        if config.grad_checkpointing:
            model.enable_input_require_grads()
        model = get_peft_model(
            model,
            LoraConfig(
                r=config.lora.r,
                lora_alpha=config.lora.alpha,
                lora_dropout=config.lora.dropout,
                target_modules=config.lora.target_modules,
                task_type="CAUSAL_LM",
            ),
        )
    return model, tokenizer


def lr_factor(step: int, total: int, lr: float, final_lr: float, warmup: int = 0) -> float:
    """Multiplier of ``lr`` for optimizer step ``step`` (0-based): warmup, then linear to final_lr.

    >>> [round(lr_factor(s, 3, 1e-5, 1e-6), 3) for s in range(3)]
    [1.0, 0.55, 0.1]
    """
    if step < warmup:
        return (step + 1) / (warmup + 1)
    span = max(1, total - 1 - warmup)
    frac = min(1.0, (step - warmup) / span)
    return 1.0 + (final_lr / lr - 1.0) * frac
