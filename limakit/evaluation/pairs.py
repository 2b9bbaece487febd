"""Two answer files matched into pairs: the one pairing the LLM judge and the human study share.

Both files are read as answers keyed by prompt id and sample; the pairs are the keys of A that B
also holds, in A's order; the prompt is ``question_text`` of the conversation before the answer,
and the two files must agree on it. Unmatched answers are counted, never dropped in silence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from limakit.core.errors import LimaError
from limakit.evaluation.answers import category_of, model_name, read_answers
from limakit.judging.prompt import question_text


@dataclass(frozen=True)
class Pair:
    id: str  # the prompt's id
    sample: int
    category: str
    prompt: str
    answer_a: str
    answer_b: str


@dataclass
class PairSet:
    a_path: str
    b_path: str
    a_model: str
    b_model: str
    pairs: list[Pair]
    only_a: list[tuple[str, int]] = field(default_factory=list)
    only_b: list[tuple[str, int]] = field(default_factory=list)


def pair_answers(a_path: str | os.PathLike, b_path: str | os.PathLike) -> PairSet:
    """Every (id, sample) the two answer files share, with the prompt both were asked.

    >>> ps = pair_answers("lima.jsonl", "gpt4.jsonl")  # doctest: +SKIP
    >>> ps.pairs[0].prompt, len(ps.only_a)  # doctest: +SKIP
    """
    a, b = read_answers(a_path), read_answers(b_path)
    keys = [k for k in a if k in b]
    if not keys:
        raise LimaError(f"{a_path} and {b_path} share no (id, sample) pair to compare")
    pairs = []
    for key in keys:
        qa, qb = question_text(a[key].messages[:-1]), question_text(b[key].messages[:-1])
        if qa.strip() != qb.strip():
            raise LimaError(
                f"{a_path} / {b_path}: id {key[0]!r} has different prompts in the two files"
            )
        pairs.append(
            Pair(key[0], key[1], category_of(a[key]), qa, a[key].answer or "", b[key].answer or "")
        )
    return PairSet(
        a_path=str(a_path),
        b_path=str(b_path),
        a_model=model_name(a, a_path),
        b_model=model_name(b, b_path),
        pairs=pairs,
        only_a=[k for k in a if k not in b],
        only_b=[k for k in b if k not in a],
    )
