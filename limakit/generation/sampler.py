"""Next-token sampling with torch ops: repetition penalty, temperature, nucleus (top-p).

Every row has its own settings and its own ``torch.Generator``, so a sequence's random draws do not
depend on which other sequences share its batch: the same seed gives the same text whether a prompt
runs alone or among others (up to floating-point differences in the logits themselves).
"""

from __future__ import annotations

import torch

from limakit.models import host_to_device


def generator_for(seed: int, *keys: object) -> torch.Generator:
    """A CPU generator seeded from ``seed`` and any keys (prompt id, sample index), stably.

    >>> a = generator_for(0, "p1", 0); b = generator_for(0, "p1", 0)
    >>> torch.rand(1, generator=a).item() == torch.rand(1, generator=b).item()
    True
    """
    import hashlib

    digest = hashlib.sha256(repr((seed, *keys)).encode()).digest()
    g = torch.Generator()
    g.manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))
    return g


def cpu_draws(generators: list[torch.Generator | None]) -> torch.Tensor:
    """One uniform number per row, each from its row's own CPU generator (the same on any device)."""
    return torch.stack([torch.rand((), generator=g) for g in generators])


def apply_repetition_penalty(
    logits: torch.Tensor, seen: torch.Tensor, penalty: torch.Tensor
) -> torch.Tensor:
    """CTRL-style penalty on tokens marked in ``seen`` (B, V): positive logits / p, negative * p."""
    p = penalty[:, None]
    penalised = torch.where(logits < 0, logits * p, logits / p)
    return torch.where(seen, penalised, logits)


def sample_next(
    logits: torch.Tensor,
    seen: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    penalty: torch.Tensor,
    generators: list[torch.Generator | None],
    *,
    all_greedy: bool | None = None,
) -> torch.Tensor:
    """One token per row. ``logits`` (B, V) float; ``seen`` (B, V) bool; settings (B,) floats.

    Rows with temperature 0 or top_p 0 take the argmax (after the penalty): a nucleus of no mass
    keeps only the most likely token, which is greedy decoding. Everything
    runs on the logits' device; the random numbers come from each row's CPU generator (so a seed
    gives the same draws on any device). ``all_greedy`` (known on the host) saves reading
    ``temperature`` back from the device.

    >>> logits = torch.tensor([[0.0, 5.0, 1.0]])
    >>> sample_next(logits, torch.zeros(1, 3, dtype=torch.bool), torch.tensor([0.0]),
    ...             torch.tensor([0.9]), torch.tensor([1.0]), [None]).tolist()
    [1]
    """
    logits = apply_repetition_penalty(logits.float(), seen, penalty)
    greedy = (temperature <= 0) | (top_p <= 0)
    argmax = logits.argmax(dim=-1)
    if all_greedy if all_greedy is not None else bool(greedy.all()):
        return argmax
    probs = torch.softmax(logits / temperature.clamp_min(1e-5)[:, None], dim=-1)
    if probs.device.type == "cpu":
        # A nucleus of 0.9 at temperature 0.7 almost always sits in the top few hundred tokens:
        # try a partial top-k first and fall back to a full sort only for rows that need it.
        k = min(probs.shape[-1], 512)
        sorted_p, order = probs.topk(k, dim=-1)
        if bool((sorted_p.sum(-1) < top_p).any()):
            sorted_p, order = probs.sort(dim=-1, descending=True)
    else:  # a full sort is cheap on an accelerator and needs no round trip to the host
        sorted_p, order = probs.sort(dim=-1, descending=True)
    cum = sorted_p.cumsum(-1)
    # Keep a token while the mass before it is below top_p (the first token is always kept).
    keep = (cum - sorted_p) < top_p[:, None]
    kept = sorted_p * keep
    kept_cum = kept.cumsum(-1)
    u = host_to_device(cpu_draws(generators), probs.device) * kept_cum[:, -1]
    pick = torch.searchsorted(kept_cum, u[:, None].contiguous(), right=True)
    pick = pick.clamp_max(kept_cum.shape[-1] - 1)
    sampled = order.gather(1, pick).squeeze(1)
    return torch.where(greedy, argmax, sampled)
