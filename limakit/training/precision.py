"""bf16 weights with float32 master copies: the model computes in bf16, AdamW steps in float32.

With ``dtype: bfloat16`` every matmul runs on bf16 weights directly (no per-matmul casts as under
autocast). Updating those weights in place would lose LIMA's small steps: at lr 1e-5 most updates
are below half a bf16 ulp and round away. So each bf16 parameter gets a float32 master copy; the
gradients of each micro-batch are added into the masters' float32 gradients, the optimizer steps
the masters (its state is float32 too) and the result is copied back into the bf16 weights.
Parameters that are already float32 (LoRA adapters, for instance) train as they are.

>>> master = MasterWeights(model)  # doctest: +SKIP
>>> optimizer = torch.optim.AdamW(master.param_groups(0.1))  # doctest: +SKIP
>>> loss.backward(); master.collect(); optimizer.step(); master.publish()  # doctest: +SKIP
>>> master.zero_grad()  # doctest: +SKIP
"""

from __future__ import annotations

import torch
from torch import nn


def param_groups(params, weight_decay: float) -> list[dict]:
    """Decay matrices only: norms and biases (1-D) are not decayed, as is usual for AdamW."""
    decay, no_decay = [], []
    for p in params:
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


class MasterWeights:
    """Float32 masters for the low-precision trainable parameters of ``model``.

    With ``enabled=False`` there are no masters: the optimizer updates the parameters themselves
    and every method is a no-op, so the training loop has one path for every precision.
    """

    def __init__(self, model: nn.Module, enabled: bool = True):
        self.pairs: list[tuple[nn.Parameter, nn.Parameter]] = []
        self.params: list[nn.Parameter] = []  # what the optimizer updates
        self._fresh = True
        for p in model.parameters():  # tied weights appear once
            if not p.requires_grad:
                continue
            if p.dtype == torch.float32 or not enabled:
                self.params.append(p)
                continue
            m = nn.Parameter(p.detach().float().clone())
            self.pairs.append((p, m))
            self.params.append(m)

    def param_groups(self, weight_decay: float) -> list[dict]:
        return param_groups(self.params, weight_decay)

    @torch.no_grad()
    def collect(self) -> None:
        """Add the low-precision gradients into the masters' float32 gradients.

        Gradient buffers stay allocated from step to step (overwritten or zeroed, never freed):
        allocating fresh vocabulary-sized buffers on every micro-batch costs more than the
        arithmetic on a CPU.
        """
        for p, m in self.pairs:
            if p.grad is None:
                if self._fresh and m.grad is not None:
                    m.grad.zero_()  # no gradient this step (an unused parameter)
                continue
            if m.grad is None:
                m.grad = p.grad.float()
            elif self._fresh:
                m.grad.copy_(p.grad)
            else:
                m.grad.add_(p.grad)
            p.grad.zero_()
        self._fresh = False

    @torch.no_grad()
    def zero_grad(self) -> None:
        """Start a new step, keeping every gradient buffer allocated."""
        self._fresh = True  # the masters' next collect() overwrites instead of adding
        masters = {id(m) for _, m in self.pairs}
        for p in self.params:
            if id(p) not in masters and p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def publish(self) -> None:
        """Copy the masters into the model's weights (rounded to their dtype)."""
        for p, m in self.pairs:
            p.copy_(m)

    @torch.no_grad()
    def pull(self) -> None:
        """Reset the masters from the model's weights (after loading weights without masters)."""
        for p, m in self.pairs:
            m.copy_(p)

    def state_dict(self) -> list[torch.Tensor]:
        return [m.detach().clone() for _, m in self.pairs]

    @torch.no_grad()
    def load_state_dict(self, tensors: list[torch.Tensor]) -> None:
        if len(tensors) != len(self.pairs):
            raise ValueError(f"{len(tensors)} master tensors for {len(self.pairs)} parameters")
        for (_, m), t in zip(self.pairs, tensors, strict=True):
            m.copy_(t)
        self.publish()
