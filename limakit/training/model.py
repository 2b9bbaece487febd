"""Model preparation for training: loading, residual dropout, LoRA, and the loss wrapper.

:class:`LossModel` runs the backbone to the final hidden states and computes the chunked loss
inside its own ``forward``, so DDP/FSDP/DeepSpeed wrappers see one module whose forward returns
the (summed) loss, and no full-vocabulary logits are ever built.
"""

from __future__ import annotations

import dataclasses
import importlib.util

import torch
from torch import nn
from torch.nn import functional as F

from limakit.training.attention import NAME as PACKED
from limakit.training.attention import PackedRows
from limakit.training.attention import register as register_packed
from limakit.training.config import TrainConfig
from limakit.training.dropout import add_residual_dropout, decoder_layers
from limakit.training.loss import Workspace, chunked_lm_loss, compute_dtype


def inner_model(model: nn.Module) -> nn.Module:
    """The transformers causal LM inside a peft wrapper (or the model itself)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


class LossModel(nn.Module):
    """``forward(batch, scale) -> scale x summed CE over the batch's target tokens``."""

    def __init__(
        self,
        lm: nn.Module,
        chunk: int = 1024,
        direct_embedding_grad: bool = False,
        kernel: str = "auto",
    ):
        super().__init__()
        self.lm = lm
        self.chunk = chunk
        self.kernel = kernel  # packed attention kernel (see limakit.training.attention)
        self.workspace = Workspace()  # the loss's logits buffers, reused from step to step
        # Add the input embedding's gradient rows straight into its weight's .grad (index_add),
        # instead of autograd building a dense vocabulary-sized gradient per micro-batch. The
        # rows are added after DDP's hooks have fired, so the trainer enables it for one process.
        self.direct_embedding_grad = direct_embedding_grad

    def _embed(self, causal: nn.Module, input_ids: torch.Tensor) -> dict:
        emb = causal.get_input_embeddings()
        direct = (
            self.direct_embedding_grad
            and type(emb) is nn.Embedding  # a scaled embedding (Gemma) goes the usual way
            and emb.weight.requires_grad
            and torch.is_grad_enabled()
        )
        if not direct:
            return {"input_ids": input_ids}
        weight, pad = emb.weight, emb.padding_idx
        x = F.embedding(input_ids, weight.detach()).requires_grad_()

        def add_rows(grad: torch.Tensor) -> None:
            ids, rows = input_ids.reshape(-1), grad.reshape(-1, grad.shape[-1])
            if pad is not None:  # nn.Embedding never trains its padding row (masked: no host sync)
                rows = rows.masked_fill((ids == pad)[:, None], 0)
            with torch.no_grad():
                if weight.grad is None:
                    weight.grad = torch.zeros_like(weight)
                weight.grad.index_add_(0, ids, rows.to(weight.grad.dtype))

        x.register_hook(add_rows)
        return {"inputs_embeds": x}

    def forward(
        self,
        input_ids,
        targets,
        position_ids=None,
        attention_mask=None,
        segments=None,
        scale: float = 1.0,
        target_index: torch.Tensor | None = None,
        target_weight: torch.Tensor | None = None,
    ):
        """``segments``: per row, its segment lengths (from ``collate``), or a :class:`PackedRows`.

        ``target_index`` (the flat positions that have a target, as ``collate`` returns them) lets
        the loss pick its rows without a host sync; without it they are found from ``targets``.
        ``target_weight``: each of those targets' loss weight (None: all 1).
        """
        causal = inner_model(self.lm)
        backbone = getattr(causal, causal.base_model_prefix)
        extra = {}
        if segments is not None and causal.config._attn_implementation == PACKED:
            if not isinstance(segments, PackedRows):
                segments = PackedRows(segments, input_ids.device, self.kernel)
            # per-example causal attention in the dtype the attention inputs will have
            weights = causal.get_input_embeddings().weight.dtype
            extra["limakit_packed"] = segments.prepare(compute_dtype(weights, input_ids.device))
            attention_mask = None
        hidden = backbone(
            **self._embed(causal, input_ids),
            position_ids=position_ids,
            attention_mask=attention_mask,
            use_cache=False,
            **extra,
        ).last_hidden_state  # (B, T, H)
        head = causal.get_output_embeddings()
        empty = (
            target_index.numel() == 0 if target_index is not None else not (targets != -100).any()
        )
        if empty:  # an empty micro-batch still joins the gradient sync
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
            index=target_index,
            target_weight=target_weight,
        )


def attn_implementation(config: TrainConfig) -> str:
    if config.attn_implementation:
        return config.attn_implementation
    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"  # varlen kernels read example boundaries from position ids
    return register_packed()  # causal SDPA per example: fast kernels, no dense block mask


def prepare_model(config: TrainConfig):
    """The :class:`~limakit.models.LoadedModel` to train: loaded with the EOT format, dropout
    hooked, LoRA and checkpointing set (``.model`` is the model to train, LoRA-wrapped or not).

    The weights are read on the host (the accelerator places them); the tokenizer carries the
    template (the checkpoint's own, whole, when it has one), saved beside every checkpoint.
    """
    from limakit.models import load_model_for

    loaded = load_model_for(
        config.model,
        "cpu",
        config.dtype,
        eot_init=config.eot_init,
        attn_implementation=attn_implementation(config),
    )
    model = loaded.model
    if config.dropout_top > 0:
        add_residual_dropout(model, config.dropout_top, config.dropout_bottom)
    if config.compile is True:  # "auto" is decided by the loop, on the run's device
        for layer in decoder_layers(model):
            layer.compile()  # one graph shared by every layer; recompiled per new row length
    if config.grad_checkpointing:
        # transformers' current name; older releases have only gradient_checkpointing_enable
        enable = getattr(model, "activation_checkpointing_enable", None)
        if enable is not None:
            enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
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
    return dataclasses.replace(loaded, model=model)


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
