"""A source added by registration only: its flag, config fields, funnel and card rows."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from limakit.core.errors import LimaError
from limakit.curation.config import DEFAULT_RULES, PAPER_QUOTAS, CurateConfig
from limakit.curation.rules import RULES
from limakit.sources import registry

FIX = Path(__file__).parent.parent / "fixtures"

# A toy source: a CSV of question,answer rows, with one option. Nothing else in the project
# knows about it; the script registers it, then runs the `lima` command line.
TOY = textwrap.dedent(
    """
    import csv
    import sys

    from pydantic import Field

    from limakit.core.config import Config
    from limakit.records.example import Example, Message
    from limakit.sources.registry import Rejection, Source, register


    class QAOptions(Config):
        prefix: str = Field("", description="Put in front of every question.")


    def read_qa(paths, ctx):
        for path in paths:
            with open(path, newline="", encoding="utf-8") as f:
                for i, row in enumerate(csv.DictReader(f), start=1):
                    if not row["question"].strip():
                        yield Rejection(f"qa-{i}", "no_question", "blank question")
                        continue
                    prompt = ctx.options.prefix + row["question"]
                    yield Example(
                        [Message("user", prompt), Message("assistant", row["answer"])],
                        source="qa_csv",
                        id=f"qa-{i}",
                        meta={"row": i},
                    )


    register(
        Source(
            "qa_csv",
            field="qa_csv",
            read=read_qa,
            help="a CSV of question,answer rows",
            options=QAOptions,
            rules={"qa_csv": ["empty", "encoding", "first_person"]},
            buckets={"qa_csv": 100},
            priority=5,
        )
    )

    from limakit.cli import main

    sys.exit(main(sys.argv[1:]))
    """
)


def _lima(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    script = tmp_path / "lima_with_qa.py"
    script.write_text(TOY, encoding="utf-8")
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=300
    )


def test_registered_source_flows_through_curation(tmp_path):
    data = tmp_path / "qa.csv"
    data.write_text(
        "question,answer\n"
        "What is a roux?,Flour cooked in fat; it thickens sauces.\n"
        ",An answer without a question.\n"
        "Why rest dough?,I always rest it because my teacher did.\n"
        "How long to boil an egg?,\n"
        "What is brining?,Soaking meat in salted water before cooking.\n",
        encoding="utf-8",
    )
    helped = _lima(tmp_path, "curate", "--help")
    assert helped.returncode == 0 and "--qa-csv" in helped.stdout

    out = tmp_path / "out"
    r = _lima(
        tmp_path,
        "curate",
        "--qa-csv",
        str(data),
        "--manual",
        str(FIX / "manual" / "handwritten.yaml"),
        "--n",
        "50",
        "--no-progress",
        "--out",
        str(out),
        "--set",
        "qa_csv_options.prefix='Q: '",
    )
    assert r.returncode == 0, r.stderr

    examples = [json.loads(x) for x in (out / "examples.jsonl").read_text().splitlines()]
    toy = [e for e in examples if e["source"] == "qa_csv"]
    assert sorted(e["id"] for e in toy) == ["qa-1", "qa-5"]
    assert all(e["messages"][0]["content"].startswith("Q: ") for e in toy)
    assert any(e["source"] == "manual" for e in examples)

    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    by_id = {row["id"]: (row["source"], row["rule"]) for row in rejected}
    assert by_id["qa-2"] == ("qa_csv", "no_question")  # the reader's own rejection
    assert by_id["qa-3"] == ("qa_csv", "first_person")  # the rules it registered
    assert by_id["qa-4"] == ("qa_csv", "empty")

    card = (out / "card.md").read_text()
    assert "| qa_csv | 5 | 2 | 2 |" in card  # read, passed, selected
    assert "| qa_csv | first_person | 1 |" in card and "| qa_csv | no_question | 1 |" in card

    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["qa_csv"] == [str(data)] and saved["qa_csv_options"] == {"prefix": "Q: "}
    assert saved["quotas"]["qa_csv"] == 100 and saved["rules_by_source"]["qa_csv"][-1] == (
        "first_person"
    )


def test_builtin_sources_make_the_config():
    fields = list(CurateConfig.model_fields)
    for src in registry.sources():
        assert src.field in fields
        assert src.options_key is None or src.options_key in fields
    assert registry.ALL_RULES == list(RULES)
    assert PAPER_QUOTAS == {
        "stackexchange_stem": 200,
        "stackexchange_other": 200,
        "wikihow": 200,
        "writingprompts": 150,
        "natural_instructions": 50,
        "manual": 200,
        "pool": 1000,
    }
    assert list(DEFAULT_RULES) == [
        "stackexchange",
        "wikihow",
        "writingprompts",
        "natural_instructions",
        "manual",
        "pool",
        "hygiene",
    ]


def test_registering_after_the_config_is_built_is_an_error():
    late = registry.Source("late", field="late", read=lambda paths, ctx: iter(()))
    with pytest.raises(LimaError, match="before importing limakit.curation"):
        registry.register(late)
    assert "late" not in [s.name for s in registry.sources()]
