"""Packing gives the same loss as unpacked training and no example sees another in its row."""

from __future__ import annotations

import pytest
import torch

from limakit.core.errors import LimaError
from limakit.training.batching import Encoded, collate, shift_labels, to_device
from limakit.training.model import LossModel


def _examples(tokenizer, texts):
    from limakit.records.example import Example, Message
    from limakit.records.template import render

    out = []
    for i, (q, a) in enumerate(texts):
        ex = Example([Message("user", q), Message("assistant", a)])
        r = render(ex, tokenizer, max_len=256)
        out.append(Encoded(i, r.input_ids, shift_labels(r.labels)))
    return out


TEXTS = [
    ("What is a cat?", "A small domesticated carnivorous mammal."),
    ("Name three colours.", "Red, green and blue."),
    ("Say hi", "Hi there! How can I help you today? I am happy to help."),
]


def _loss(model, rows, pad):
    b = collate(rows, pad)
    return LossModel(model)(b["input_ids"], b["targets"], b["position_ids"], b["attention_mask"])


def test_packed_and_unpacked_losses_are_equal(smollm2_tokenizer):
    from conftest import make_tiny_model

    model = make_tiny_model(smollm2_tokenizer, layers=2).eval()
    items = _examples(smollm2_tokenizer, TEXTS)
    pad = smollm2_tokenizer.pad_token_id
    with torch.no_grad():
        packed = _loss(model, [items], pad)  # one row holding all three
        padded = _loss(model, [[x] for x in items], pad)  # three padded rows
        alone = sum(_loss(model, [[x]], pad) for x in items)  # one at a time, no padding
    assert torch.allclose(packed, alone, rtol=1e-5), (packed, alone)
    assert torch.allclose(padded, alone, rtol=1e-5), (padded, alone)


def test_changing_one_example_leaves_its_row_neighbours_logits_unchanged(smollm2_tokenizer):
    from conftest import make_tiny_model

    model = make_tiny_model(smollm2_tokenizer, layers=2).eval()
    a, b, c = _examples(smollm2_tokenizer, TEXTS)
    b2 = _examples(smollm2_tokenizer, [("Name four animals!", "Dog, cat, cow, and a horse.")])[0]
    pad = smollm2_tokenizer.pad_token_id

    def logits(row, plain_causal=False):
        batch = collate([row], pad)
        mask = batch["attention_mask"]
        if plain_causal:  # what a packer without a block mask would do
            mask = torch.ones_like(mask).tril_()
        with torch.no_grad():
            return model(
                input_ids=batch["input_ids"],
                position_ids=batch["position_ids"],
                attention_mask=mask,
            ).logits[0]

    x, y = logits([a, b, c]), logits([a, b2, c])
    n_a = len(a)
    assert torch.equal(x[:n_a], y[:n_a])  # before the change: identical
    # after the change (c follows b, whose length also changed): still the same values
    assert torch.allclose(x[-len(c) :], y[-len(c) :], atol=1e-5)
    k = min(len(b), len(b2))
    assert not torch.allclose(x[n_a : n_a + k], y[n_a : n_a + k])  # the changed one did change
    # and c's logits equal c run alone
    alone = logits([c])
    assert torch.allclose(x[-len(c) :], alone, atol=1e-5)
    # The test can fail: without the block-diagonal mask, c does see b.
    leaky_x, leaky_y = logits([a, b, c], True), logits([a, b2, c], True)
    assert not torch.allclose(leaky_x[-len(c) :], leaky_y[-len(c) :], atol=1e-5)


def test_per_example_attention_matches_the_block_mask(smollm2_tokenizer):
    """The fast path (causal SDPA per example) computes what the dense block-diagonal mask does."""
    from conftest import make_tiny_model

    from limakit.training.attention import register

    model = make_tiny_model(smollm2_tokenizer, layers=2).eval()
    items = _examples(smollm2_tokenizer, TEXTS)
    pad = smollm2_tokenizer.pad_token_id
    rows = [[items[0], items[2]], [items[1]]]  # packed + padded
    b = collate(rows, pad)
    assert b["attention_mask"] is not None
    with torch.no_grad():
        dense = LossModel(model)(
            b["input_ids"], b["targets"], b["position_ids"], b["attention_mask"]
        )
        model.config._attn_implementation = register()
        fast = LossModel(model)(
            b["input_ids"], b["targets"], b["position_ids"], None, segments=b["segments"]
        )
        # Without segments the same implementation is plain causal attention: the rows leak.
        leaky = LossModel(model)(b["input_ids"], b["targets"], b["position_ids"], None)
    n0, n1, n2 = (len(x) for x in items)
    T = b["input_ids"].shape[1]
    assert T == max(n0 + n2, n1)
    pad0, pad1 = [T - n0 - n2] if T > n0 + n2 else [], [T - n1] if T > n1 else []
    assert b["segments"] == [[n0, n2, *pad0], [n1, *pad1]]
    assert torch.allclose(fast, dense, rtol=1e-5), (fast, dense)
    assert not torch.allclose(leaky, dense, rtol=1e-5)


def test_direct_embedding_gradient_equals_autograd(smollm2_tokenizer):
    from conftest import make_tiny_model

    model = make_tiny_model(smollm2_tokenizer, layers=2)
    assert model.get_input_embeddings().weight is model.get_output_embeddings().weight  # tied
    items = _examples(smollm2_tokenizer, TEXTS)
    b = collate([items[:2], items[2:]], smollm2_tokenizer.pad_token_id, with_mask=False)
    grads = []
    for direct in (False, True):
        model.zero_grad(set_to_none=True)
        loss = LossModel(model, direct_embedding_grad=direct)(
            b["input_ids"], b["targets"], b["position_ids"], b["attention_mask"]
        )
        loss.backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    plain, direct = grads
    assert plain.keys() == direct.keys()
    for name in plain:
        assert torch.allclose(plain[name], direct[name], atol=1e-6), name
    embedding = "model.embed_tokens.weight"
    used = b["input_ids"].unique()
    assert direct[embedding][used].abs().sum() > 0


@pytest.mark.parametrize("kernel", ["segments", "sdpa-mask", "flex", "varlen"])
def test_every_packed_kernel_gives_the_unpacked_loss_and_gradients(smollm2_tokenizer, kernel):
    """Each packed-row kernel the machine has computes what one example at a time computes."""
    from conftest import make_tiny_model

    from limakit.training.attention import register, varlen_available

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if kernel == "varlen" and not varlen_available(device):
        pytest.skip("PyTorch's variable-length flash kernel needs a CUDA device")
    dtype = torch.bfloat16 if kernel == "varlen" else torch.float32
    model = make_tiny_model(smollm2_tokenizer, layers=2).to(device, dtype)
    items = _examples(smollm2_tokenizer, TEXTS)
    pad = smollm2_tokenizer.pad_token_id
    rows = [[items[0], items[2]], [items[1]]]  # a packed row and a padded one
    alone = []
    for x in items:  # the reference: each example in its own row, stock attention
        b = to_device(collate([[x]], pad), device)
        model.zero_grad(set_to_none=True)
        LossModel(model)(b["input_ids"], b["targets"], b["position_ids"], None).backward()
        alone.append(model.model.layers[0].self_attn.q_proj.weight.grad.float().clone())
    with torch.no_grad():
        ref = sum(LossModel(model)(**_args(to_device(collate([[x]], pad), device))) for x in items)
    model.config._attn_implementation = register()
    b = to_device(collate(rows, pad, with_mask=False), device)
    assert b["attention_mask"] is None
    model.zero_grad(set_to_none=True)
    tol = 2e-2 if dtype == torch.bfloat16 else 1e-5
    if kernel == "flex" and device.type == "cpu":  # FlexAttention has no backward on a CPU
        with torch.no_grad():
            packed = LossModel(model, kernel=kernel)(**_args(b), segments=b["segments"])
        with pytest.raises(LimaError, match="flex"):
            LossModel(model, kernel=kernel)(**_args(b), segments=b["segments"])
    else:
        packed = LossModel(model, kernel=kernel)(**_args(b), segments=b["segments"])
        packed.backward()
        grad = model.model.layers[0].self_attn.q_proj.weight.grad.float()
        assert torch.allclose(grad, sum(alone), rtol=tol * 10, atol=tol / 10)
    assert torch.allclose(packed.float(), ref.float(), rtol=tol), (packed, ref)
    # The same kernel without the boundaries lets the rows' examples see each other: it differs.
    with torch.no_grad():
        leaky = LossModel(model, kernel=kernel)(**_args(b))
    assert not torch.allclose(leaky.float(), ref.float(), rtol=tol)


def _args(b: dict) -> dict:
    return {
        "input_ids": b["input_ids"],
        "targets": b["targets"],
        "position_ids": b["position_ids"],
        "target_index": b["target_index"],
    }


@pytest.mark.parametrize("kernel", ["segments", "sdpa-mask"])
def test_packed_rows_keep_a_sliding_window_and_the_example_boundaries(smollm2_tokenizer, kernel):
    """Gemma 3's local layers see the last `sliding_window` keys: a packed row longer than the
    window still gives each example alone's loss and gradients (neither the window nor the
    boundaries are lost), and the window changes the loss (it is really in play)."""
    from conftest import make_tiny_gemma3

    from limakit.training.attention import register

    model = make_tiny_gemma3(smollm2_tokenizer, window=4).float().train()
    items = _examples(smollm2_tokenizer, TEXTS)
    assert min(len(x.ids) for x in items) > 4
    pad = smollm2_tokenizer.pad_token_id
    alone, ref = [], 0.0
    for x in items:  # the reference: each example in its own row, transformers' own masks
        b = collate([[x]], pad)
        model.zero_grad(set_to_none=True)
        loss = LossModel(model)(b["input_ids"], b["targets"], b["position_ids"], None)
        loss.backward()
        ref += loss.item()
        alone.append(model.model.layers[0].self_attn.q_proj.weight.grad.clone())
    model.config._attn_implementation = register()
    b = collate([[items[0], items[2]], [items[1]]], pad, with_mask=False)
    model.zero_grad(set_to_none=True)
    packed = LossModel(model, kernel=kernel)(**_args(b), segments=b["segments"])
    packed.backward()
    assert packed.item() == pytest.approx(ref, rel=1e-5)
    grad = model.model.layers[0].self_attn.q_proj.weight.grad
    gap = (grad - sum(alone)).abs().max()
    assert gap < 1e-5 * grad.abs().max(), gap
    model.config.sliding_window = 10_000  # the same weights with no effective window: differs
    for layer in model.model.layers:
        if layer.self_attn.sliding_window:
            layer.self_attn.sliding_window = 10_000
    with torch.no_grad():
        wide = LossModel(model, kernel=kernel)(**_args(b), segments=b["segments"])
    assert wide.item() != pytest.approx(ref, rel=1e-4)
