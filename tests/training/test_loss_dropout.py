"""Chunked loss equals the plain loss; residual dropout drops at each layer's rate, only in train."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from limakit.training.dropout import add_residual_dropout, decoder_layers, layer_rates
from limakit.training.loss import chunked_lm_loss


@pytest.mark.parametrize("chunk", [3, 1024])
def test_chunked_loss_and_gradients_match_full_cross_entropy(chunk):
    torch.manual_seed(0)
    h = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    y = torch.randint(0, 50, (2, 7))
    y[0, :2] = -100
    loss = chunked_lm_loss(h, w, y, chunk=chunk)
    loss.backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = F.cross_entropy((h @ w.T).reshape(-1, 50), y.reshape(-1), reduction="sum")
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-4)
    assert torch.allclose(gh, h.grad, atol=1e-5)
    assert torch.allclose(gw, w.grad, atol=1e-5)


def test_layer_rates_rise_linearly():
    assert layer_rates(4, 0.0, 0.3) == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_residual_dropout_rate_per_layer_and_off_in_eval(smollm2_tokenizer):
    from conftest import make_tiny_model

    model = make_tiny_model(smollm2_tokenizer, layers=3, hidden=64)
    add_residual_dropout(model, top=0.4)
    seen: dict[str, float] = {}

    def spy(name):
        def hook(module, args, out):
            out = out[0] if isinstance(out, tuple) else out
            seen[name] = (out == 0).float().mean().item()

        return hook

    for i, layer in enumerate(decoder_layers(model)):
        layer.self_attn.register_forward_hook(spy(f"attn{i}"))
        layer.mlp.register_forward_hook(spy(f"mlp{i}"))
    ids = torch.randint(0, 1000, (4, 256))
    model.train()
    model(input_ids=ids)
    for i, p in enumerate([0.0, 0.2, 0.4]):
        for kind in ("attn", "mlp"):
            assert seen[f"{kind}{i}"] == pytest.approx(p, abs=0.02), (kind, i)
    model.eval()
    model(input_ids=ids)
    assert max(seen.values()) < 0.001
