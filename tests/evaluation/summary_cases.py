"""Every kind of summary limakit writes, made from fixed inputs in the current folder.

``tests/fixtures/eval/summaries/`` keeps what the writers wrote for these inputs before the
summaries were typed; the round-trip test writes them again and compares the files byte for
byte, so the on-disk format cannot drift. Paths are relative (the caller changes into an empty
folder first), so the files hold no machine's paths.
"""

from __future__ import annotations

import json
from pathlib import Path

from limakit.core.files import write_json, write_jsonl
from limakit.evaluation import JudgeConfig, auto_checks, judge_likert, judge_pairwise, judge_rate
from tests.evaluation.fake_server import Act, FakeServer, answers_in
from tests.evaluation.helpers import answer

# The summary files the cases write, by kind (fixture name -> path under the folder).
FILES = {
    "pairwise": "pairwise/summary.json",
    "rate": "rate/summary.json",
    "likert": "likert/summary.json",
    "checks": "checks.json",
    "mtbench": "mt/summary.json",
    "mtbench_pair": "mt-pair/summary_pair.json",
}


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "eval" / "summaries"


def answer_checks(measures: dict) -> dict:
    """One system's entry of a ``checks.json`` as ``auto_checks`` writes it, with ``measures``."""
    entry = json.loads((FIXTURES / "checks.json").read_text(encoding="utf-8"))["model"]
    return {**entry, "measures": measures}


def _pair_judge(body: dict, n: int) -> Act:
    """Prefers the answer saying GOOD; no verdict at all when an answer says MUTE."""
    first, second = answers_in(body)
    if "MUTE" in first + second:
        return Act("I will not say.")
    if "BROKEN" in first + second:
        return Act("quota exceeded", status=400)
    g1, g2 = "GOOD" in first, "GOOD" in second
    return Act("Why.\n[[A]]" if g1 and not g2 else "Why.\n[[B]]" if g2 and not g1 else "[[C]]")


def _single_judge(body: dict, n: int) -> Act:
    text = body["messages"][-1]["content"]
    if "Excellent" in body["messages"][0]["content"] + text:  # the rate prompt names its labels
        if "MUTE" in text:
            return Act("No label.")
        return Act(
            "[[Excellent]]" if "GOOD" in text else "[[Pass]]" if "fair" in text else "[[Fail]]"
        )
    return Act("[[6]]" if "GOOD" in text else "Rating: [[3]]" if "fair" in text else "[[1]]")


def _mt_judge(body: dict, n: int) -> Act:
    text = body["messages"][-1]["content"]
    if "Assistant B" in text:  # a pair prompt: the side whose answer says GOOD wins
        a, b = text.index("Assistant A"), text.index("Assistant B")
        ga, gb = "GOOD" in text[a:b], "GOOD" in text[b:]
        return Act("[[A]]" if ga and not gb else "[[B]]" if gb and not ga else "[[C]]")
    return Act("No idea." if "MUTE" in text else "Rating: [[8]]" if "GOOD" in text else "[[4]]")


def _judge(server: FakeServer, **kw) -> JudgeConfig:
    # One call at a time: MT-Bench grades are appended as they arrive, and their intervals
    # resample them in file order.
    return JudgeConfig(
        backend="openai", model="judge-x", base_url=server.url, bootstrap=50, concurrency=1, **kw
    )


def pairwise_inputs() -> tuple[Path, Path]:
    """24 matched pairs of varied lengths (enough for the LC fit), one answer only in A, one
    pair the judge gives no verdict on."""
    a_rows, b_rows = [], []
    for i in range(24):
        good_a, good_b = i % 3 != 0, i % 3 == 0 or i % 4 == 0  # both GOOD: a tie
        a_rows.append(answer(i, ("GOOD " if good_a else "weak ") + "x" * (5 * i), "model-a"))
        b_rows.append(answer(i, ("GOOD " if good_b else "weak ") + "y" * (7 * (i % 5)), "model-b"))
    a_rows[5]["messages"][1]["content"] = "MUTE"
    a_rows[7]["messages"][1]["content"] = "BROKEN"
    a_rows.append(answer(30, "GOOD alone", "model-a"))
    write_jsonl("a.jsonl", a_rows)
    write_jsonl("b.jsonl", b_rows)
    return Path("a.jsonl"), Path("b.jsonl")


def single_inputs() -> Path:
    """Six prompts, two of them sampled three times, in two categories; one unlabelled answer."""
    rows = []
    for i, text in enumerate(["GOOD one", "fair two", "bad three", "GOOD four", "MUTE", "fair"]):
        for k in range(3 if i < 2 else 1):
            rows.append(answer(i, f"{text} {k}", "model-s", sample=k))
    write_jsonl("single.jsonl", rows)
    return Path("single.jsonl")


def checks_inputs() -> Path:
    rows = [
        answer(0, "A clear answer that ends.", "model-c", new_tokens=5),
        answer(1, "the cat sat on the mat the cat sat on the mat", "model-c", new_tokens=12),
        answer(2, "Cut short", "model-c", stop="length", new_tokens=64),
        answer(3, "Answer.\nUser: and then I ask again", "model-c", new_tokens=9),
        answer(3, "Another sample of it.", "model-c", sample=1, new_tokens=4),
    ]
    write_jsonl("checks.jsonl", rows)
    return Path("checks.jsonl")


QUESTIONS = [
    {"question_id": 81, "category": "writing", "turns": ["Write a poem.", "Now shorter."]},
    {"question_id": 111, "category": "math", "turns": ["What is 2+2?", "And 3+3?"]},
    {"question_id": 131, "category": "extraction", "turns": ["List the names."]},
]
REFERENCE = [
    {
        "question_id": 111,
        "answer_id": "r",
        "model_id": "gpt-4",
        "choices": [{"index": 0, "turns": ["REF-ONE 4", "REF-TWO 6"]}],
        "tstamp": 0,
    }
]
# Which (question, turn) of each model's answers say GOOD (or MUTE: the grader gives no rating).
MT_ANSWERS = {
    "good-model": {(81, 1): "GOOD", (81, 2): "GOOD", (111, 1): "GOOD", (131, 1): "MUTE"},
    "gpt-3.5-turbo": {(81, 1): "GOOD", (111, 2): "GOOD"},
    "bad-model": {},
}


def mtbench_inputs() -> tuple[Path, Path, list[Path]]:
    write_jsonl("question.jsonl", QUESTIONS)
    write_jsonl("ref.jsonl", REFERENCE)
    files = []
    for model, marks in MT_ANSWERS.items():
        rows = [
            {
                "question_id": q["question_id"],
                "answer_id": "a",
                "model_id": model,
                "choices": [
                    {
                        "index": 0,
                        "turns": [
                            f"{model} answer {t} {marks.get((q['question_id'], t), '')}"
                            for t in range(1, len(q["turns"]) + 1)
                        ],
                    }
                ],
                "tstamp": 0,
            }
            for q in QUESTIONS
            if not (model == "bad-model" and q["question_id"] == 131)  # one unanswered
        ]
        path = Path("answers") / f"{model}.jsonl"
        write_jsonl(path, rows)
        files.append(path)
    return Path("question.jsonl"), Path("ref.jsonl"), files


def write_all() -> dict[str, Path]:
    """Run every writer on the fixed inputs in the current folder; the summary files by kind."""
    from limakit.evaluation.mtbench.pairwise import run_mtbench_pairwise
    from limakit.evaluation.mtbench.single import run_mtbench

    a, b = pairwise_inputs()
    single = single_inputs()
    checks = checks_inputs()
    q, ref, mt_files = mtbench_inputs()
    with FakeServer(_pair_judge) as server:
        judge_pairwise(a, b, _judge(server, cost_per_input_token=1e-6), "pairwise")
    with FakeServer(_single_judge) as server:
        judge_rate(single, _judge(server), "rate")
        judge_likert(single, _judge(server), "likert", samples=2)
    write_json("checks.json", {"model": auto_checks(checks, ifbench=False)})
    with FakeServer(_mt_judge) as server:
        common = {"questions_path": q, "reference_path": ref, "progress": False}
        judge = _judge(server)
        run_mtbench("mt", judge=judge, other_answers=mt_files, **common)
        run_mtbench_pairwise(
            "mt-pair", judge=judge, mode="pairwise-baseline", other_answers=mt_files, **common
        )
    return {kind: Path(p) for kind, p in FILES.items()}
