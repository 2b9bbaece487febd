"""Residual dropout (LIMA section 2): dropout on each attention and MLP sublayer output, before it
is added to the residual stream, at a rate rising linearly with depth.

Implemented with forward hooks on the sublayer modules, so the model's own code is untouched and
the same function covers Llama-family (Llama, Mistral, Qwen, SmolLM), Gemma, GPT-2 and GPT-NeoX.
The hooks honour ``module.training``: nothing is dropped in eval mode.

>>> handles = add_residual_dropout(model, top=0.3)  # doctest: +SKIP
>>> [round(p, 2) for p in layer_rates(4, 0.0, 0.3)]
[0.0, 0.1, 0.2, 0.3]
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from limakit.core.errors import LimaError

# (path to the decoder layer list, attention sublayer names, MLP sublayer names)
_LAYER_LISTS = ("model.layers", "model.model.layers", "transformer.h", "gpt_neox.layers", "layers")
_ATTN = ("self_attn", "attn", "attention", "self_attention")
_MLP = ("mlp", "feed_forward", "ffn")


def layer_rates(n_layers: int, bottom: float, top: float) -> list[float]:
    """Dropout rate of each layer: ``bottom`` at layer 0 rising linearly to ``top`` at the last."""
    if n_layers == 1:
        return [top]
    return [bottom + (top - bottom) * i / (n_layers - 1) for i in range(n_layers)]


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The list of transformer blocks of a causal LM (peft-wrapped or not)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    for path in _LAYER_LISTS:
        node: object = base
        for part in path.split("."):
            node = getattr(node, part, None)
            if node is None:
                break
        if isinstance(node, nn.ModuleList) and len(node) > 0:
            return node
    raise LimaError(
        f"residual dropout: cannot find the decoder layers of {type(base).__name__} "
        f"(looked for {', '.join(_LAYER_LISTS)}); set dropout_top=0 to train without it"
    )


def _sublayer(layer: nn.Module, names: tuple[str, ...], kind: str) -> nn.Module:
    for name in names:
        mod = getattr(layer, name, None)
        if isinstance(mod, nn.Module):
            return mod
    raise LimaError(f"residual dropout: no {kind} sublayer in {type(layer).__name__}")


def _hook(p: float):
    def hook(module: nn.Module, args, output):
        if not module.training or p == 0.0:
            return None
        if isinstance(output, tuple):  # attention returns (output, weights, ...)
            return (F.dropout(output[0], p, True), *output[1:])
        return F.dropout(output, p, True)

    return hook


def add_residual_dropout(
    model: nn.Module, top: float, bottom: float = 0.0
) -> list[torch.utils.hooks.RemovableHandle]:
    """Hook dropout onto every attention and MLP sublayer output; returns the hook handles."""
    layers = decoder_layers(model)
    handles = []
    for layer, p in zip(layers, layer_rates(len(layers), bottom, top), strict=True):
        for names, kind in ((_ATTN, "attention"), (_MLP, "MLP")):
            sub = _sublayer(layer, names, kind)
            sub.residual_dropout = p  # visible to tests and to people inspecting the model
            handles.append(sub.register_forward_hook(_hook(p)))
    return handles
