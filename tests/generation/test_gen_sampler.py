"""The sampler and the text stream, as pure functions on hand-made logits."""

from __future__ import annotations

import torch

from limakit.generation.config import DecodeConfig
from limakit.generation.sampler import apply_repetition_penalty, generator_for, sample_next
from limakit.generation.streaming import TextStream


def _sample(logits, seen=None, temperature=0.7, top_p=0.9, penalty=1.0, seed=0):
    b, v = logits.shape
    seen = torch.zeros(b, v, dtype=torch.bool) if seen is None else seen
    return sample_next(
        logits,
        seen,
        torch.full((b,), temperature),
        torch.full((b,), top_p),
        torch.full((b,), penalty),
        [generator_for(seed, i) for i in range(b)],
    )


def test_defaults_are_the_papers():
    c = DecodeConfig()
    assert (c.temperature, c.top_p, c.repetition_penalty, c.max_new_tokens) == (0.7, 0.9, 1.2, 2048)


def test_penalty_only_touches_seen_tokens_and_pushes_them_down():
    logits = torch.tensor([[2.0, -2.0, 2.0, -2.0]])
    seen = torch.tensor([[True, True, False, False]])
    out = apply_repetition_penalty(logits, seen, torch.tensor([1.2]))
    assert torch.allclose(out, torch.tensor([[2.0 / 1.2, -2.4, 2.0, -2.0]]))


def test_penalty_changes_greedy_choice():
    logits = torch.tensor([[3.0, 2.8, 0.0]])
    seen = torch.tensor([[True, False, False]])
    assert _sample(logits, temperature=0.0).item() == 0
    assert _sample(logits, seen, temperature=0.0, penalty=1.2).item() == 1


def test_top_p_never_samples_outside_the_nucleus():
    # Token 0 holds ~95% of the mass: with top_p 0.9 it is the whole nucleus.
    logits = torch.tensor([[5.0, 2.0, 1.0, 0.5]]).repeat(64, 1)
    picks = _sample(logits, temperature=1.0, top_p=0.9)
    assert picks.eq(0).all()
    # With top_p 1.0 the same distribution yields other tokens across 64 independent rows.
    assert (_sample(logits, temperature=1.0, top_p=1.0) != 0).any()


def test_same_seed_same_draws_and_rows_are_independent_of_batch():
    torch.manual_seed(0)
    logits = torch.randn(8, 1000)
    a = _sample(logits, temperature=1.0, top_p=1.0, seed=3)
    b = _sample(logits, temperature=1.0, top_p=1.0, seed=3)
    assert a.tolist() == b.tolist()
    # Row 5 alone, with row 5's generator, draws the same token as inside the batch.
    alone = sample_next(
        logits[5:6],
        torch.zeros(1, 1000, dtype=torch.bool),
        torch.tensor([1.0]),
        torch.tensor([1.0]),
        torch.tensor([1.0]),
        [generator_for(3, 5)],
    )
    assert alone.item() == a[5].item()


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(4000, 1)
    picks = _sample(logits, temperature=1.0, top_p=1.0)
    freq = torch.bincount(picks, minlength=3).float() / len(picks)
    assert torch.allclose(freq, torch.tensor([0.5, 0.3, 0.2]), atol=0.04)


class _CharTok:
    """A tokenizer whose tokens are single characters (ids are code points)."""

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


def test_text_stream_stops_before_the_stop_string_and_never_leaks_it():
    s = TextStream(_CharTok(), stop=["END", "\n\n"])
    out = "".join(s.push(ord(c)) for c in "hello wEND and more")
    assert s.stopped and out + s.finish() == "hello w"


def test_text_stream_without_stop_emits_everything():
    s = TextStream(_CharTok(), stop=["zz"])
    out = "".join(s.push(ord(c)) for c in "abcz")
    assert out + s.finish() == "abcz" and not s.stopped


def test_top_p_zero_is_greedy_in_the_sampler_and_the_config():
    # A large vocabulary (the CPU path looks at the top 512 first) with one clear favourite.
    logits = torch.randn(3, 2000, generator=torch.Generator().manual_seed(0))
    logits[:, 7] += 10.0
    for seed in range(5):
        assert _sample(logits, top_p=0.0, temperature=1.0, seed=seed).tolist() == [7, 7, 7]
    # A mixed batch: the top_p=0 row is greedy whatever its neighbours do.
    picks = sample_next(
        logits,
        torch.zeros(3, 2000, dtype=torch.bool),
        torch.tensor([1.0, 1.0, 1.0]),
        torch.tensor([1.0, 0.0, 0.9]),
        torch.ones(3),
        [generator_for(1, i) for i in range(3)],
    )
    assert picks[1].item() == 7
    c = DecodeConfig(top_p=0)
    assert c.greedy and (c.temperature, c.top_p) == (0.0, 1.0)
