"""MT-Bench's judge tasks, typed as FastChat types them (``MatchSingle``, ``MatchPair``).

A match is one judge call: which of FastChat's judge prompts, filled with which question, answers
and reference, for which model(s) and turn. Turn 2 is judged only for two-turn questions, as
FastChat does; math, reasoning and coding (and arena-hard-200) are graded against a reference
answer with the ``-math-`` prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

from limakit.core.errors import LimaError

NEED_REFERENCE = ("math", "reasoning", "coding", "arena-hard-200")  # graded against a reference
SINGLE_PROMPTS = {  # (needs a reference, turn) -> FastChat's prompt
    (False, 1): "single-v1",
    (False, 2): "single-v1-multi-turn",
    (True, 1): "single-math-v1",
    (True, 2): "single-math-v1-multi-turn",
}
PAIR_PROMPTS = {
    (False, 1): "pair-v2",
    (False, 2): "pair-v2-multi-turn",
    (True, 1): "pair-math-v1",
    (True, 2): "pair-math-v1-multi-turn",
}


@dataclass
class Match:
    """One judge call: FastChat's ``prompt`` (a judge_prompts.jsonl record with its ``version``)
    with its template filled in as ``user_prompt``."""

    question_id: object
    category: str
    prompt: dict
    user_prompt: str
    turn: int

    @property
    def messages(self) -> list[dict]:
        return [
            {"role": "system", "content": self.prompt["system_prompt"]},
            {"role": "user", "content": self.user_prompt},
        ]


@dataclass
class MatchSingle(Match):
    model: str


@dataclass
class MatchPair(Match):
    model_1: str
    model_2: str
    game: int  # 1: model_1 is shown as assistant A; 2: model_2 is


def reference_turns(q: dict, refs: dict) -> list[str] | None:
    """The reference answer's turns for a question (the reference file first, then the question's
    own ``reference`` field), or None."""
    if q["question_id"] in refs:
        return refs[q["question_id"]]["choices"][0]["turns"]
    return q.get("reference")


def check_references(questions: list[dict], refs: dict) -> None:
    """Every question of a reference-graded category has a reference answer, or an error."""
    missing = [
        q["question_id"]
        for q in questions
        if q["category"] in NEED_REFERENCE and not reference_turns(q, refs)
    ]
    if missing:
        raise LimaError(
            f"no reference answer for questions {missing[:10]} (categories "
            f"{', '.join(NEED_REFERENCE)} are graded against one); give a --reference file"
        )


def _turns_to_judge(q: dict, *answers: list[str]) -> list[int]:
    """Turn 1, and turn 2 of a two-turn question (as FastChat), where every answer has it."""
    last = min(len(q["turns"]), *(len(a) for a in answers))
    return [t for t in (1, 2) if t <= last and (t == 1 or len(q["turns"]) == 2)]


def _prompt(prompts: dict[str, dict], names: dict, q: dict, turn: int) -> dict:
    name = names[(q["category"] in NEED_REFERENCE, turn)]
    if name not in prompts:
        raise LimaError(f"judge prompts have no {name!r}")
    return prompts[name]


def _with_reference(fields: dict, ref: list[str] | None, turn: int) -> dict:
    if ref:
        fields["ref_answer_1"] = ref[0]
        if turn == 2:
            fields["ref_answer_2"] = ref[1] if len(ref) > 1 else ""
    return fields


def _fill(prompt: dict, fields: dict) -> str:
    # str.format fills the template once: braces inside answers are never expanded.
    return prompt["prompt_template"].format(**fields)


def single_matches(
    questions: list[dict], answers: dict[str, dict], prompts: dict[str, dict], refs: dict
) -> list[MatchSingle]:
    """One match per (model, question, turn) the model answered."""
    check_references(questions, refs)
    out = []
    for q in questions:
        ref = reference_turns(q, refs) if q["category"] in NEED_REFERENCE else None
        for model, by_q in answers.items():
            rec = by_q.get(q["question_id"])
            if rec is None:
                continue
            a = rec["choices"][0]["turns"]
            for turn in _turns_to_judge(q, a):
                prompt = _prompt(prompts, SINGLE_PROMPTS, q, turn)
                fields = {"question": q["turns"][0], "answer": a[0]}
                if turn == 2:
                    fields = {"question_1": q["turns"][0], "question_2": q["turns"][1],
                              "answer_1": a[0], "answer_2": a[1]}  # fmt: skip
                user = _fill(prompt, _with_reference(fields, ref, turn))
                out.append(MatchSingle(q["question_id"], q["category"], prompt, user, turn, model))
    return out


def pair_matches(
    questions: list[dict],
    answers: dict[str, dict],
    prompts: dict[str, dict],
    refs: dict,
    pairs: list[tuple[str, str]],
) -> list[MatchPair]:
    """Two matches (games 1 and 2) per (question, pair, turn) both models answered."""
    check_references(questions, refs)
    out = []
    for q in questions:
        ref = reference_turns(q, refs) if q["category"] in NEED_REFERENCE else None
        for m1, m2 in pairs:
            r1, r2 = answers[m1].get(q["question_id"]), answers[m2].get(q["question_id"])
            if r1 is None or r2 is None:
                continue
            t1, t2 = r1["choices"][0]["turns"], r2["choices"][0]["turns"]
            for turn in _turns_to_judge(q, t1, t2):
                prompt = _prompt(prompts, PAIR_PROMPTS, q, turn)
                for game, (a, b) in ((1, (t1, t2)), (2, (t2, t1))):
                    if turn == 1:
                        fields = {"question": q["turns"][0], "answer_a": a[0], "answer_b": b[0]}
                    else:
                        fields = {"question_1": q["turns"][0], "question_2": q["turns"][1],
                                  "answer_a_1": a[0], "answer_a_2": a[1],
                                  "answer_b_1": b[0], "answer_b_2": b[1]}  # fmt: skip
                    user = _fill(prompt, _with_reference(fields, ref, turn))
                    out.append(
                        MatchPair(q["question_id"], q["category"], prompt, user, turn, m1, m2, game)
                    )
    return out
