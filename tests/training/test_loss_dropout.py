"""Chunked loss equals the plain loss; residual dropout drops at each layer's rate, only in train."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from limakit.training.dropout import add_residual_dropout, decoder_layers, layer_rates
from limakit.training.loss import Workspace, chunked_lm_loss


@pytest.mark.parametrize(("chunk", "scale", "with_bias"), [(3, 1.0, False), (1024, 0.25, True)])
def test_chunked_loss_and_gradients_match_full_cross_entropy(chunk, scale, with_bias):
    torch.manual_seed(0)
    h = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    b = torch.randn(50, requires_grad=True) if with_bias else None
    y = torch.randint(0, 50, (2, 7))
    y[0, :2] = -100
    ws = Workspace()
    for _ in range(2):  # the second call reuses the first one's buffers
        loss = chunked_lm_loss(h, w, y, bias=b, chunk=chunk, scale=scale, workspace=ws)
        loss.backward()
        got = [t.grad.clone() for t in (h, w, b) if t is not None]
        for t in (h, w, b):
            if t is not None:
                t.grad = None
        ref = scale * F.cross_entropy(
            F.linear(h, w, b).reshape(-1, 50), y.reshape(-1), reduction="sum"
        )
        ref.backward()
        want = [t.grad for t in (h, w, b) if t is not None]
        assert torch.allclose(loss, ref, atol=1e-4)
        for g, r in zip(got, want, strict=True):
            assert torch.allclose(g, r, atol=1e-5)
        for t in (h, w, b):
            if t is not None:
                t.grad = None


def test_chunked_loss_in_bf16_follows_the_fp32_reference():
    torch.manual_seed(0)
    h = torch.randn(40, 32)
    w = torch.randn(300, 32) * 0.2
    y = torch.randint(0, 300, (1, 40))
    ref_h, ref_w = h.clone().requires_grad_(), w.clone().requires_grad_()
    ref = F.cross_entropy(ref_h @ ref_w.T, y[0], reduction="sum") / 40
    ref.backward()
    lh, lw = h.bfloat16().requires_grad_(), w.bfloat16().requires_grad_()
    loss = chunked_lm_loss(lh[None], lw, y, chunk=16, scale=1 / 40)
    loss.backward()
    assert loss.dtype == torch.float32 and lh.grad.dtype == lw.grad.dtype == torch.bfloat16
    assert loss.item() == pytest.approx(ref.item(), rel=2e-2)
    for got, want in ((lh.grad, ref_h.grad), (lw.grad, ref_w.grad)):
        cos = F.cosine_similarity(got.float().flatten(), want.flatten(), dim=0)
        assert cos > 0.99


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
