"""Typed summaries: the writers write the very JSON they wrote before the types, and a summary
that is not of its kind's shape is one clear error naming the file and the field."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.core.errors import LimaError
from limakit.evaluation import write_report
from limakit.evaluation.summaries import (
    load_checks,
    load_judge_summary,
    load_mtbench,
    load_mtbench_pair,
)
from tests.evaluation.summary_cases import FILES, FIXTURES, write_all

LOADERS = {
    "pairwise": load_judge_summary,
    "rate": load_judge_summary,
    "likert": load_judge_summary,
    "checks": load_checks,
    "mtbench": load_mtbench,
    "mtbench_pair": load_mtbench_pair,
}


def fixture(kind: str) -> dict:
    return json.loads((FIXTURES / f"{kind}.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> Path:
    """Every writer run once on the fixed inputs, in a folder of its own (relative paths)."""
    d = tmp_path_factory.mktemp("summaries")
    here = Path.cwd()
    os.chdir(d)
    try:
        write_all()
    finally:
        os.chdir(here)
    return d


@pytest.mark.parametrize("kind", sorted(FILES))
def test_writers_write_the_same_json_as_before(written, kind):
    assert (written / FILES[kind]).read_bytes() == (FIXTURES / f"{kind}.json").read_bytes()


@pytest.mark.parametrize("kind", sorted(FILES))
def test_each_loader_reads_back_what_its_writer_wrote(written, kind):
    assert LOADERS[kind](written / FILES[kind]) == fixture(kind)


def _without(data: dict, *keys: str) -> dict:
    data = copy.deepcopy(data)
    inner = data
    for k in keys[:-1]:
        inner = inner[k]
    del inner[keys[-1]]
    return data


def _with(data: dict, value, *keys: str) -> dict:
    data = copy.deepcopy(data)
    inner = data
    for k in keys[:-1]:
        inner = inner[k]
    inner[keys[-1]] = value
    return data


BAD = [
    ("pairwise", _without(fixture("pairwise"), "win"), "field 'win' is missing"),
    ("pairwise", _without(fixture("pairwise"), "a", "model"), "field 'a.model' is missing"),
    ("pairwise", _with(fixture("pairwise"), "high", "score"), "field 'score' must be a number"),
    (
        "pairwise",
        _with(fixture("pairwise"), [0.2, None], "win_ci"),
        "field 'win_ci[1]' must be a number, got None",
    ),
    (
        "pairwise",
        _with(fixture("pairwise"), 3, "categories", "cat-odd"),
        "field 'categories.cat-odd' must be an object, got 3",
    ),
    ("likert", _without(fixture("likert"), "mean_ci"), "field 'mean_ci' is missing"),
    ("likert", _with(fixture("likert"), "4.5", "mean"), "field 'mean' must be a number or null"),
    ("rate", _without(fixture("rate"), "pass"), "field 'pass' is missing"),
    (
        "checks",
        _without(fixture("checks"), "model", "measures", "ends_turn", "ci"),
        "field 'model.measures.ends_turn.ci' is missing",
    ),
    ("checks", _with(fixture("checks"), True, "model", "n"), "field 'model.n' must be a whole"),
    (
        "mtbench",
        _without(fixture("mtbench"), "models", "good-model", "overall"),
        "field 'models.good-model.overall' is missing",
    ),
    (
        "mtbench_pair",
        _with(fixture("mtbench_pair"), "3", "pairwise", "bad-model", "loss"),
        "field 'pairwise.bad-model.loss' must be a whole number, got '3'",
    ),
]


@pytest.mark.parametrize("kind, data, says", BAD, ids=[f"{k}-{s[:30]}" for k, _d, s in BAD])
def test_a_summary_of_the_wrong_shape_names_the_file_and_the_field(tmp_path, kind, data, says):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LimaError) as e:
        LOADERS[kind](path)
    assert str(e.value).startswith(f"{path}: {says}")


def test_the_error_says_what_the_file_should_have_been(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(_without(fixture("rate"), "usage", "cost")), encoding="utf-8")
    with pytest.raises(LimaError) as e:
        load_judge_summary(path)
    assert str(e.value) == f"{path}: field 'usage.cost' is missing (expected a rate summary)"


def test_a_cut_off_summary_is_a_clear_error(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text((FIXTURES / "pairwise.json").read_text(encoding="utf-8")[:300])
    with pytest.raises(LimaError, match="invalid JSON") as e:
        load_judge_summary(path)
    assert str(path) in str(e.value)


@pytest.mark.parametrize(
    "data, says",
    [
        ([1, 2], "the file must be an object, got [1, 2]"),
        ({"a": 1}, "field 'protocol' is missing"),
        ({"protocol": "safety"}, "unknown protocol 'safety' (one of pairwise, rate, likert)"),
    ],
)
def test_a_judge_summary_says_what_it_is_not(tmp_path, data, says):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(LimaError) as e:
        load_judge_summary(path)
    assert str(e.value).startswith(f"{path}: {says}")


def test_optional_fields_may_be_absent_and_extra_ones_are_kept(tmp_path):
    # An LC fit that could not be made has only its reason; people's verdicts add fields.
    data = fixture("pairwise")
    data["lc"] = {"reason": "too few pairs (3 valid verdicts, 20 needed)", "min_pairs": 20}
    data["lc_win_rate"] = data["lc_win_rate_ci"] = None
    data["annotators"] = {"ann": 3}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    assert load_judge_summary(path) == data


def test_the_report_of_a_damaged_summary_is_the_loaders_error(tmp_path, capsys):
    folder = tmp_path / "lima-vs-base"
    folder.mkdir()
    path = folder / "summary.json"
    path.write_text(json.dumps(_without(fixture("pairwise"), "b", "model")), encoding="utf-8")
    with pytest.raises(LimaError, match=r"field 'b\.model' is missing"):
        write_report([folder], tmp_path / "report")
    assert main(["report", str(folder), "--out", str(tmp_path / "r")]) == 2
    err = "".join(capsys.readouterr().err.split())  # rich wraps long error lines
    assert "".join(f"{path}: field 'b.model' is missing".split()) in err


def test_an_arms_checks_are_read_through_the_loader(tmp_path):
    from limakit.run.ablate import arm_checks

    (tmp_path / "judge").mkdir()
    damaged = _without(fixture("checks"), "model", "prompts")
    (tmp_path / "judge" / "checks.json").write_text(json.dumps(damaged), encoding="utf-8")
    with pytest.raises(LimaError, match=r"checks\.json: field 'model\.prompts' is missing"):
        arm_checks(tmp_path)
    (tmp_path / "judge" / "checks.json").write_text(json.dumps(fixture("checks")))
    assert arm_checks(tmp_path)["measures"] == fixture("checks")["model"]["measures"]
