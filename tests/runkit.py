"""A tiny `lima run` setting: a random-weight model, a handful of examples, a stand-in judge.

The judge is a real OpenAI-compatible HTTP server on loopback (tests/evaluation/fake_server.py)
whose verdicts are a pure function of the answers, so every run of the same answers gets the same
verdicts: pairwise prefers the longer answer, Likert scores 1-6 from the answer's length.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from limakit.core.files import write_jsonl
from tests.evaluation.fake_server import Act, answers_in

TOPICS = (
    "bread gardens tides python chess rivers sql violins glaciers javascript owls kites".split()
)


def judge_behaviour(body: dict, n: int) -> Act:
    user = body["messages"][-1]["content"]
    if "[Answer A]" in user or "Assistant A's Answer" in user:
        first, second = answers_in(body)
        if len(first) == len(second):
            return Act("[[C]]")
        return Act("[[A]]" if len(first) > len(second) else "[[B]]")
    answer = re.search(r"\[Answer\]\n(.*?)\n\[End of Answer\]", user, re.S)
    assert answer, "neither a pairwise nor a single-answer prompt"
    return Act(f"Helpful enough.\n[[{1 + len(answer.group(1)) % 6}]]")


def _pair(i: int, topic: str, answer: str, source: str = "pool") -> dict:
    return {
        "id": f"{source}-{i}",
        "source": source,
        "messages": [
            {"role": "user", "content": f"How do {topic} work, in a few plain sentences? ({i})"},
            {"role": "assistant", "content": answer},
        ],
    }


def write_inputs(root: Path) -> dict[str, Path]:
    """A pool of 24 pairs (16 pass LIMA's rules; 8 speak in the first person), 3 hand-written
    pairs (one held out as the dev set) and 3 test prompts."""
    root.mkdir(parents=True, exist_ok=True)
    pool = []
    for i in range(24):
        topic = TOPICS[i % len(TOPICS)]
        body = (
            f"{topic.capitalize()} follow a few simple rules. First, the parts settle into place. "
            f"Then they repeat the pattern {i + 2} times, and the result is stable. "
        ) * (1 + i % 3)
        if i % 3 == 2:
            body = "I think, in my experience, " + body  # rejected by the first_person rule
        pool.append(_pair(i, topic, body))
    manual = [
        _pair(
            i,
            t,
            f"A careful answer about {t}: short, direct and complete, in plain words." * 3,
            "manual",
        )
        for i, t in enumerate(("maps", "clocks", "bees"))
    ]
    tests = [
        {"id": f"t{i}", "source": "test", "messages": [{"role": "user", "content": q}]}
        for i, q in enumerate(("Name a river.", "Why is the sky blue?", "Say hello in French."))
    ]
    paths = {
        "pool": root / "pool.jsonl",
        "manual": root / "manual.jsonl",
        "tests": root / "tests.jsonl",
    }
    write_jsonl(paths["pool"], pool)
    write_jsonl(paths["manual"], manual)
    write_jsonl(paths["tests"], tests)
    return paths


def tiny_config(root: Path, model_dir: str, judge_url: str, **evaluate) -> Path:
    """A run config file for the tiny setting; returns its path."""
    inputs = write_inputs(root / "inputs")
    cfg = {
        "name": "tiny",
        "data": {
            "curate": {
                "pool": [str(inputs["pool"])],
                "manual": [str(inputs["manual"])],
                "select": "lima-rules",
                "n": 6,
                "seed": 0,
                "splits": True,
                "dev": 1,
                "progress": False,
                "rules": {"min_answer_chars": 80, "max_answer_chars": 2000},
                "dedup": {"near": False},
            }
        },
        "train": {
            "model": model_dir,
            "epochs": 2,
            "lr": 1e-3,
            "final_lr": 1e-4,
            "global_batch": 4,
            "micro_batch": 4,
            "max_len": 128,
            "dropout_top": 0.0,
            "dtype": "float32",
            "drop_untrained": True,
            "seed": 0,
        },
        "select": {"dev": "curated", "protocol": "pairwise", "max_new_tokens": 6},  # judge: below
        "sample": {
            "prompts": str(inputs["tests"]),
            "decode": {"max_new_tokens": 8},
            "device": "cpu",
            "dtype": "float32",
        },
        "baselines": [{"name": "base", "model": model_dir}],
        "judge": {
            "backend": "openai",
            "model": "stand-in",
            "base_url": judge_url,
            "api_key_env": "LIMAKIT_TEST_JUDGE_KEY",
            "concurrency": 4,
            "max_retries": 0,
            "bootstrap": 200,
        },
        "evaluate": {"pairwise": True, "likert": True, "checks": True, **evaluate},
        "notes": ["a tiny random-weight model: mechanics only"],
        "allow_short_cap": True,  # answers of a few tokens: mechanics only
    }
    cfg["select"]["judge"] = dict(cfg["judge"])  # its own judge: see test_run's judge tests
    path = root / "run.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def statuses(results) -> dict[str, str]:
    return {r.name: r.status for r in results}


def report_body(run_dir: Path) -> str:
    """The report without its provenance section (the commit moves while the suite runs)."""
    text = (run_dir / "report" / "report.md").read_text()
    return text.split("## Provenance")[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())
