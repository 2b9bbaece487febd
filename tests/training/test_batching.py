"""Data order, packing plan and the block-diagonal mask."""

from __future__ import annotations

import torch

from limakit.training.batching import (
    Encoded,
    collate,
    epoch_order,
    pack_rows,
    plan_micro_batches,
    shift_labels,
    step_groups,
)


def enc(i: int, n: int) -> Encoded:
    return Encoded(i, list(range(1, n + 1)), shift_labels(list(range(1, n + 1))))


def test_order_is_a_pure_function_of_seed_and_epoch():
    assert epoch_order(50, 3, 2) == epoch_order(50, 3, 2)
    assert sorted(epoch_order(50, 3, 2)) == list(range(50))
    assert epoch_order(50, 3, 2) != epoch_order(50, 3, 3)
    assert epoch_order(50, 3, 2) != epoch_order(50, 4, 2)
    assert [len(g) for g in step_groups(list(range(10)), 4)] == [4, 4, 2]


def test_packing_keeps_every_example_once_within_capacity():
    items = [enc(i, n) for i, n in enumerate([30, 5, 17, 64, 12, 40, 3, 25])]
    rows = pack_rows(items, 64)
    assert sorted(x.index for row in rows for x in row) == list(range(8))
    assert all(sum(len(x) for x in row) <= 64 for row in rows)
    assert len(rows) < len(items)
    micro = plan_micro_batches(items, 2, 64, packing=True)
    assert all(len(mb) <= 2 for mb in micro)
    unpacked = plan_micro_batches(items, 3, 64, packing=False)
    lengths = [len(row[0]) for mb in unpacked for row in mb]
    assert lengths == sorted(lengths, reverse=True)  # length-grouped


def test_collate_mask_is_block_diagonal_causal_with_restarting_positions():
    b = collate([[enc(0, 3), enc(1, 2)], [enc(2, 4)]], pad_id=0)  # packed + padded
    assert b["position_ids"][0].tolist() == [0, 1, 2, 0, 1]
    assert b["n_real"] == 9 and b["n_tokens"] == 10
    m = b["attention_mask"][0, 0]
    expected = torch.zeros(5, 5, dtype=torch.bool)
    expected[:3, :3] = torch.ones(3, 3).tril().bool()
    expected[3:, 3:] = torch.ones(2, 2).tril().bool()
    assert torch.equal(m, expected)
    # Targets are shifted within each example: its last token predicts nothing.
    assert b["targets"][0].tolist() == [2, 3, -100, 2, -100]
    assert b["targets"][1, -1].item() == -100  # padding
    assert b["attention_mask"][1, 0, 4, 4]  # a padding row still sees itself (no empty softmax)


def test_collate_skips_the_mask_when_plain_causal_is_exact():
    b = collate([[enc(0, 4)], [enc(1, 2)]], pad_id=0)
    assert b["attention_mask"] is None  # one example per row; padding only follows it
