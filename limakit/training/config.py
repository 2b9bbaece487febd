"""The training config: the LIMA protocol's values are the defaults, one documented field each.

>>> from limakit.core.config import load_config
>>> cfg = load_config(TrainConfig, None, ["epochs=3", "data=examples.jsonl"])
>>> cfg.epochs, cfg.lr, cfg.final_lr
(3, 1e-05, 1e-06)
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from limakit.core.config import Config


class LoraConfig(Config):
    """Optional low-rank adapters (through peft); merged into the weights of exported checkpoints."""

    enabled: bool = Field(False, description="train LoRA adapters instead of all weights")
    r: int = Field(16, ge=1, description="adapter rank")
    alpha: int = Field(32, ge=1, description="adapter scaling numerator (scale = alpha / r)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter input")
    target_modules: list[str] | str = Field(
        "all-linear", description="module names to adapt, or 'all-linear'"
    )


class TrainConfig(Config):
    """LIMA fine-tuning (paper section 2). Every default is the paper's value for a 65B model."""

    model: str = Field(
        "smollm2-135m", description="alias, local folder or hub id of the base model"
    )
    data: str = Field("examples.jsonl", description="training examples (limakit JSONL)")
    epochs: int = Field(15, ge=1, description="passes over the data")
    lr: float = Field(1e-5, gt=0, description="initial learning rate")
    final_lr: float = Field(
        1e-6, ge=0, description="learning rate reached linearly at the last step"
    )
    warmup: int = Field(0, ge=0, description="linear warmup steps (the paper uses none)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW beta1, beta2")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay")
    grad_clip: float | None = Field(
        None, description="clip the global gradient norm to this (the paper states none)"
    )
    global_batch: int = Field(
        32, ge=1, description="examples per optimizer step (64 for small models)"
    )
    micro_batch: int = Field(
        8, ge=1, description="rows per forward pass (packed rows of max_len tokens, or examples)"
    )
    max_len: int = Field(2048, ge=8, description="texts longer than this many tokens are trimmed")
    dropout_top: float = Field(
        0.3,
        ge=0.0,
        lt=1.0,
        description="residual dropout of the top layer; rises linearly from 0.0 at the bottom",
    )
    dropout_bottom: float = Field(0.0, ge=0.0, lt=1.0, description="residual dropout of layer 0")
    eot_init: Literal["mean", "eos"] = Field(
        "mean",
        description="row of the new EOT token: the mean embedding, or a copy of the base "
        "model's EOS (starts as likely as end-of-text: short runs learn to stop)",
    )
    train_on: Literal["assistant", "last", "all"] = Field(
        "assistant",
        description="answers with loss: every assistant turn, or the last one; all = every "
        "token (the same as prompt_loss_weight=1)",
    )
    prompt_loss_weight: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="loss weight of every token that is not an answer (system and user turns, "
        "role headers): 0 = LIMA (answers only), 1 = Instruction Modelling (Shi et al. 2024); "
        "the loss is the weighted mean",
    )
    drop_prompts: bool = Field(
        False,
        description="Response Tuning (An et al. 2024): train on answers without their "
        "instructions; user turns are rendered empty, the turn structure kept",
    )
    packing: bool = Field(
        True,
        description="pack several examples per row (block-diagonal attention, per-example "
        "positions); false = length-grouped padded rows",
    )
    dtype: Literal["float32", "bfloat16", "auto"] = Field(
        "float32",
        description="dtype the weights compute in (bfloat16: see master_weights; auto = "
        "bfloat16 where the device has fast bf16 matmuls, else float32)",
    )
    master_weights: bool = Field(
        True,
        description="with dtype=bfloat16: keep float32 master weights, gradients and optimizer "
        "state (false = update the bf16 weights in place, which rounds small steps away)",
    )
    autocast: bool = Field(
        False, description="bf16 autocast for matmuls (CUDA and CPU) with fp32 weights"
    )
    grad_checkpointing: bool = Field(False, description="recompute activations in backward")
    loss_chunk: int | None = Field(
        None,
        ge=16,
        description="tokens per lm_head + cross-entropy chunk (logits never whole); "
        "None = 1024 on a CPU, 8192 on a GPU",
    )
    packed_attention: Literal["auto", "segments", "varlen", "flex", "sdpa-mask"] = Field(
        "auto",
        description="kernel for packed rows: auto = per-example SDPA on a CPU, PyTorch's "
        "flash variable-length kernel on CUDA in bf16 (SDPA with a block mask otherwise)",
    )
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile each decoder layer: auto = on CUDA (1.34x the tokens/s of the "
        "uncompiled step on an H200, a minute to start), off on a CPU",
    )
    attn_implementation: str | None = Field(
        None,
        description="'sdpa', 'eager', 'flash_attention_2'...; None = sdpa (flash on CUDA if installed)",
    )
    lora: LoraConfig = Field(default_factory=LoraConfig, description="optional LoRA adapters")
    seed: int = Field(
        0, description="seed of the data order (a pure function of seed and epoch) and init"
    )
    save_every_steps: int = Field(
        0, ge=0, description="also keep checkpoints/latest every N steps (0 = only per epoch)"
    )
    save_epochs: list[int] | None = Field(
        None, description="epochs whose checkpoint is kept (None = every epoch)"
    )
    max_steps: int | None = Field(
        None, ge=1, description="stop after this many optimizer steps (demos, benchmarks)"
    )
    drop_untrained: bool = Field(
        False,
        description="skip (and report) examples with no trained token instead of failing",
    )
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None = torch default)")

    @field_validator("betas")
    @classmethod
    def _betas(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError("each beta must be in [0, 1)")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.final_lr > self.lr:
            raise ValueError("final_lr must not exceed lr")
        if self.dropout_bottom > self.dropout_top:
            raise ValueError("dropout_bottom must not exceed dropout_top")
        if self.train_on == "all" and self.prompt_loss_weight not in (0.0, 1.0):
            raise ValueError(
                "train_on=all trains prompts at weight 1; for a weight of "
                f"{self.prompt_loss_weight} use train_on=assistant with prompt_loss_weight"
            )
        return self

    def loss_options(self) -> dict:
        """Which tokens the loss sees and how much, as :func:`~limakit.records.template.render`
        takes them.

        >>> TrainConfig(prompt_loss_weight=0.1, drop_prompts=True).loss_options()
        {'train_on': 'assistant', 'prompt_weight': 0.1, 'drop_prompts': True}
        """
        return {
            "train_on": self.train_on,
            "prompt_weight": self.prompt_loss_weight,
            "drop_prompts": self.drop_prompts,
        }
