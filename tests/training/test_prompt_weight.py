"""Instruction Modelling (a loss weight on prompt tokens) and Response Tuning (prompts dropped):
the weighted loss is exact, reaches the trainer unchanged, and both options train end to end."""

from __future__ import annotations

import json

import pytest
import torch
from torch.nn import functional as F
from training.helpers import write_data

from limakit.core.config import load_config
from limakit.core.errors import LimaError
from limakit.records.example import Example, Message
from limakit.records.template import IGNORE, Rendered, render
from limakit.training import TrainConfig, train
from limakit.training.batching import Encoded, collate, encoded
from limakit.training.loss import Workspace, chunked_lm_loss


@pytest.mark.parametrize(("chunk", "softcap"), [(3, None), (1024, None), (4, 30.0)])
def test_weighted_chunked_loss_and_gradients_match_the_weighted_reference(chunk, softcap):
    torch.manual_seed(0)
    h = torch.randn(2, 7, 16, requires_grad=True)
    w = torch.randn(50, 16, requires_grad=True)
    y = torch.randint(0, 50, (2, 7))
    y[0, :2] = IGNORE
    index = (y.reshape(-1) != IGNORE).nonzero().squeeze(1)
    weights = torch.rand(index.numel())
    weights[:3] = torch.tensor([0.1, 1.0, 0.0])
    loss = chunked_lm_loss(h, w, y, chunk=chunk, scale=0.5, workspace=Workspace(), index=index,
                           target_weight=weights, softcap=softcap)  # fmt: skip
    loss.backward()
    got = (h.grad.clone(), w.grad.clone())
    h.grad = w.grad = None
    logits = F.linear(h, w).reshape(-1, 50)[index]
    if softcap is not None:
        logits = softcap * torch.tanh(logits / softcap)
    ref = 0.5 * (F.cross_entropy(logits, y.reshape(-1)[index], reduction="none") * weights).sum()
    ref.backward()
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    for g, r in zip(got, (h.grad, w.grad), strict=True):
        assert torch.allclose(g, r, atol=1e-5)


def test_encoded_shifts_the_weights_with_the_labels_and_keeps_them_only_when_needed():
    r = Rendered([7, 8, 9, 10], [IGNORE, 8, 9, 10], [0.0, 0.1, 1.0, 1.0])
    e = encoded(3, r)
    assert e.targets == [8, 9, 10, IGNORE] and e.weights == [0.1, 1.0, 1.0, 0.0]
    assert e.weight == pytest.approx(2.1) and e.n_trained == 3
    plain = encoded(0, Rendered([7, 8, 9], [IGNORE, 8, 9], [0.0, 1.0, 1.0]))
    assert plain.weights is None and plain.weight == 2  # LIMA's path: no weights at all


def test_collate_puts_each_targets_weight_beside_its_index():
    a = Encoded(0, [1, 2, 3], [2, 3, IGNORE], [0.25, 1.0, 0.0])
    b = Encoded(1, [4, 5], [5, IGNORE])  # no weights: every target weighs 1
    batch = collate([[a, b], [b]], pad_id=0)
    flat = batch["targets"].reshape(-1)
    assert flat[batch["target_index"]].tolist() == [2, 3, 5, 5]
    assert batch["target_weight"].tolist() == [0.25, 1.0, 1.0, 1.0]
    assert collate([[b]], pad_id=0)["target_weight"] is None


def test_prompt_weight_reaches_the_loss_the_trainer_computes(smollm2_tokenizer, tiny_model_dir):
    """The trainer's loss with a prompt weight is the weighted mean over the rendered tokens."""
    from limakit.models import load_model_for
    from limakit.training.model import LossModel

    model, tok = load_model_for(tiny_model_dir, "cpu", "float32").pair
    ex = Example([Message("user", "Name a colour."), Message("assistant", "Blue, like the sea.")])
    r = render(ex, tok, prompt_weight=0.1)
    item = encoded(0, r)
    batch = collate([[item]], tok.pad_token_id)
    with torch.no_grad():
        got = LossModel(model)(batch["input_ids"], batch["targets"],
                               position_ids=batch["position_ids"], scale=1 / item.weight,
                               target_index=batch["target_index"],
                               target_weight=batch["target_weight"])  # fmt: skip
        logits = model(torch.tensor([r.input_ids])).logits[0, :-1]
    targets = torch.tensor(r.input_ids[1:])
    w = torch.tensor(r.weights[1:])
    ce = F.cross_entropy(logits, targets, reduction="none")
    assert got.item() == pytest.approx(((ce * w).sum() / w.sum()).item(), rel=1e-5)


def _train(tmp_path, model_dir, name, *extra):
    data = write_data(tmp_path / "d.jsonl", 8)
    cfg = load_config(TrainConfig, None, [f"model={model_dir}", f"data={data}", "epochs=1",
                                          "global_batch=4", "micro_batch=2", "max_len=64",
                                          "threads=1", *extra])  # fmt: skip
    run = train(cfg, tmp_path / name)
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_both_options_train_and_prompt_weight_one_is_train_on_all(tmp_path, tiny_model_dir):
    lima = _train(tmp_path, tiny_model_dir, "lima")
    rt = _train(tmp_path, tiny_model_dir, "rt", "prompt_loss_weight=0.1", "drop_prompts=true")
    assert len(rt) == len(lima) == 2
    assert all(r["loss"] > 0 for r in rt)
    # Prompts dropped: fewer real tokens; weighted: the denominator holds the prompt's tenth.
    assert sum(r["real_tokens"] for r in rt) < sum(r["real_tokens"] for r in lima)
    assert [r["target_tokens"] for r in rt] != [r["target_tokens"] for r in lima]
    every = _train(tmp_path, tiny_model_dir, "all", "train_on=all")
    one = _train(tmp_path, tiny_model_dir, "one", "prompt_loss_weight=1")
    for a, b in zip(every, one, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["target_tokens"] == b["target_tokens"]


def test_prompt_loss_weight_is_checked_at_load():
    with pytest.raises(LimaError, match="prompt_loss_weight"):
        load_config(TrainConfig, None, ["prompt_loss_weight=1.5"])
    with pytest.raises(LimaError, match="train_on=all trains prompts at weight 1"):
        load_config(TrainConfig, None, ["train_on=all", "prompt_loss_weight=0.3"])
    cfg = load_config(TrainConfig, None, ["prompt_loss_weight=0.1", "drop_prompts=true"])
    assert cfg.loss_options() == {"train_on": "assistant", "prompt_weight": 0.1,
                                  "drop_prompts": True}  # fmt: skip


def test_lima_inspect_shows_each_tokens_weight(tmp_path, tiny_model_dir, smollm2_tokenizer, capsys):
    from limakit.cli import main

    data = tmp_path / "one.jsonl"
    row = {"id": "c1", "messages": [{"role": "user", "content": "Say yes."},
                                    {"role": "assistant", "content": "Yes."}]}  # fmt: skip
    data.write_text(json.dumps(row) + "\n")
    args = ["inspect", "--model", tiny_model_dir, "--data", str(data)]
    assert main([*args, "--prompt-loss-weight", "0.1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out.strip())
    want = render(Example.from_dict(row), smollm2_tokenizer, prompt_weight=0.1)
    assert shown["input_ids"] == want.input_ids and shown["weights"] == want.weights
    assert shown["weight"] == pytest.approx(sum(want.weights))
    assert main([*args, "--prompt-loss-weight", "0.1"]) == 0
    out = capsys.readouterr().out
    assert "⟦w=0.1 <|user|>\nSay yes.<|eot|><|assistant|>\n⟧⟦Yes.<|eot|>⟧" in out
    assert main([*args, "--drop-prompts"]) == 0
    out = capsys.readouterr().out
    assert "<|user|>\n<|eot|><|assistant|>\n⟦Yes.<|eot|>⟧" in out and "Say yes." not in out
