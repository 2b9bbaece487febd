"""`lima run` on a tiny setting: every stage, resume after SIGKILL, precise reruns, damage found."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.errors import LimaError
from limakit.example import read_examples
from limakit.pipeline import sha256_file
from limakit.run import execute, load_run_config
from tests.evaluation.fake_server import FakeServer
from tests.runkit import judge_behaviour, read_json, report_body, statuses, tiny_config

STAGES = ["data", "train", "select", "sample", "baseline-base", "judge", "report"]


@pytest.fixture(scope="module")
def judge_url():
    with FakeServer(judge_behaviour) as srv:
        yield srv.url


@pytest.fixture(scope="module")
def config_path(tmp_path_factory, tiny_model_dir, judge_url) -> Path:
    return tiny_config(tmp_path_factory.mktemp("setting"), tiny_model_dir, judge_url)


@pytest.fixture(scope="module")
def run_a(tmp_path_factory, config_path) -> Path:
    """One uninterrupted run, through the command line."""
    out = tmp_path_factory.mktemp("runs") / "a"
    assert main(["run", str(config_path), "--out", str(out)]) == 0
    return out


def test_every_stage_writes_its_outputs_and_a_report(run_a):
    for name in STAGES:
        marker = read_json(run_a / "stages" / f"{name}.json")
        assert marker["state"] == "done" and marker["outputs"], name
    assert len(list(read_examples(run_a / "data" / "examples.jsonl"))) == 6
    assert (run_a / "train" / "checkpoints" / "epoch-2" / "model.safetensors").exists()
    choice = read_json(run_a / "select" / "choice.json")
    assert choice["checkpoint"] in ("epoch-1", "epoch-2")
    assert [r["epoch"] for r in read_json(run_a / "select" / "selection.json")["table"]] == [1, 2]
    for name in ("model", "base"):
        answers = list(read_examples(run_a / "answers" / f"{name}.jsonl"))
        assert sorted(a.id for a in answers) == ["t0", "t1", "t2"]
    pair = read_json(run_a / "judge" / "pairwise-base" / "summary.json")
    assert pair["n"] + pair["invalid"] == 3 and pair["consistency"] is not None
    assert read_json(run_a / "judge" / "likert-model" / "summary.json")["mean"] is not None
    report = (run_a / "report" / "report.md").read_text()
    for part in ("## Data", "train_loss.png", "## Checkpoint choice", "winrates.png",
                 "Automatic checks", "a tiny random-weight model", "## Provenance"):  # fmt: skip
        assert part in report, part
    # Figures name their sources; nothing points outside the run directory.
    assert "(../train/metrics.jsonl)" in report and str(run_a) not in report
    assert (run_a / "report" / "train_loss.png").stat().st_size > 0
    assert "<table>" in (run_a / "report" / "report.html").read_text()
    run_info = read_json(run_a / "run.json")
    assert run_info["versions"]["torch"] and "commit" in run_info
    assert load_run_config(run_a / "config.yaml").train.epochs == 2  # the resolved config


def test_rerun_skips_everything_and_touches_nothing(run_a, config_path):
    def stamps():  # run.json records each invocation's commit, which moves as others commit
        return {
            p: p.stat().st_mtime_ns
            for p in run_a.rglob("*")
            if p.is_file() and p.name != "run.json"
        }

    before = stamps()
    results = execute(load_run_config(config_path), run_a)
    assert statuses(results) == dict.fromkeys(STAGES, "skipped")
    assert stamps() == before


def test_killed_after_training_resumes_there_with_the_same_report(tmp_path, config_path, run_a):
    out = tmp_path / "b"
    env = {**os.environ, "LIMAKIT_CRASH_AT": "run:after:train"}
    proc = subprocess.run(
        [sys.executable, "-m", "limakit", "run", str(config_path), "--out", str(out)],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert read_json(out / "stages" / "train.json")["state"] == "done"
    assert not (out / "stages" / "select.json").exists()
    results = execute(load_run_config(config_path), out)
    assert statuses(results) == {"data": "skipped", "train": "skipped",
                                 **dict.fromkeys(STAGES[2:], "ran")}  # fmt: skip
    assert report_body(out) == report_body(run_a)


def test_changed_judge_setting_reruns_only_judging_and_reporting(tmp_path, config_path, run_a):
    out = tmp_path / "c"
    shutil.copytree(run_a, out, symlinks=True)
    cfg = load_run_config(config_path, ["judge.temperature=0.5"])
    results = execute(cfg, out)
    assert statuses(results) == {**dict.fromkeys(STAGES[:5], "skipped"), "judge": "ran",
                                 "report": "ran"}  # fmt: skip
    assert read_json(out / "judge" / "pairwise-base" / "summary.json")["n"] >= 1


def test_the_choice_judged_by_the_run_judge_reruns_but_keeps_the_answers(
    tmp_path, config_path, run_a
):
    out = tmp_path / "c2"
    shutil.copytree(run_a, out, symlinks=True)
    # The same judge as before, named once: nothing changes.
    same = load_run_config(config_path, ["select.judge=null"])
    assert statuses(execute(same, out)) == dict.fromkeys(STAGES, "skipped")
    # Now the judge also chooses the checkpoint, so the choice is judged again; it picks the same
    # epoch, so the answers are not sampled again.
    cfg = load_run_config(config_path, ["select.judge=null", "judge.temperature=0.5"])
    assert statuses(execute(cfg, out)) == {"data": "skipped", "train": "skipped", "select": "ran",
                                           "sample": "skipped", "baseline-base": "skipped",
                                           "judge": "ran", "report": "ran"}  # fmt: skip


def test_damaged_outputs_are_found_and_redone(tmp_path, config_path, run_a):
    out = tmp_path / "d"
    shutil.copytree(run_a, out, symlinks=True)
    answers = out / "answers" / "model.jsonl"
    good = answers.read_bytes()
    answers.write_bytes(good.replace(b'"t1"', b'"tX"'))  # same size, other content
    results = {r.name: r for r in execute(load_run_config(config_path), out)}
    assert results["sample"].status == "ran" and "damaged" in results["sample"].why
    assert answers.read_bytes() == good  # the same seeds give the same answers back
    # ...so nothing that reads them has to run again
    assert results["judge"].status == "skipped" and results["report"].status == "skipped"

    chosen = read_json(out / "select" / "choice.json")["checkpoint"]
    weights = out / "train" / "checkpoints" / chosen / "model.safetensors"
    recorded = read_json(out / "stages" / "train.json")["outputs"]
    rel = weights.relative_to(out).as_posix()
    with open(weights, "r+b") as f:  # flip bytes in the middle of the tensor data
        f.seek(weights.stat().st_size // 2)
        f.write(b"\xff\xff\xff\xff")
    assert sha256_file(weights) != recorded[rel]
    results = {r.name: r for r in execute(load_run_config(config_path), out)}
    assert results["data"].status == "skipped"
    assert results["train"].status == "ran" and rel in results["train"].why
    assert read_json(out / "stages" / "train.json")["outputs"][rel] == sha256_file(weights)
    assert (out / "report" / "report.md").exists()


def test_a_stage_reading_nothing_written_is_an_error(tmp_path, config_path):
    with pytest.raises(LimaError, match="reads data/examples.jsonl"):
        execute(load_run_config(config_path), tmp_path / "e", only=["train"])


def test_config_errors_name_the_field(tmp_path, config_path):
    with pytest.raises(LimaError, match="unknown field 'sample.decode.top_k'"):
        load_run_config(config_path, ["sample.decode.top_k=5"])
    with pytest.raises(LimaError, match="exactly one of model, answers, run"):
        load_run_config(config_path, ["baselines=[{name: x}]"])
    assert main(["run", str(tmp_path / "missing.yaml"), "--out", str(tmp_path / "r")]) == 2


def test_baselines_from_another_run_and_from_a_file(tmp_path, config_path, run_a):
    out = tmp_path / "f"
    shutil.copytree(run_a, out, symlinks=True)
    extra = [
        f"baselines=[{{name: base, model: {load_run_config(config_path).train.model}}}, "
        f"{{name: earlier, run: {run_a}}}, {{name: file, answers: {run_a}/answers/base.jsonl}}]"
    ]
    results = statuses(execute(load_run_config(config_path, extra), out))
    assert results == {**dict.fromkeys(STAGES[:5], "skipped"), "baseline-earlier": "ran",
                       "baseline-file": "ran", "judge": "ran", "report": "ran"}  # fmt: skip
    assert (out / "answers" / "earlier.jsonl").read_bytes() == (
        run_a / "answers" / "model.jsonl"
    ).read_bytes()
    same = read_json(out / "judge" / "pairwise-earlier" / "summary.json")
    assert same["tie"] == 1.0  # the model against its own answers
    assert "tiny vs base" in (out / "report" / "report.md").read_text()


def test_ready_examples_and_training_in_launched_processes(tmp_path, config_path, run_a):
    """data.examples instead of curation; `launch` runs `-m limakit train` as a command."""
    out = tmp_path / "g"
    shutil.copytree(run_a, out, symlinks=True)
    ready = ["data.curate=null", f"data.examples={run_a}/data/examples.jsonl",
             "select.enabled=false", f"launch=[{sys.executable}]"]  # fmt: skip
    results = execute(load_run_config(config_path, ready), out, only=["data", "train", "select"])
    assert statuses(results) == {"data": "ran", "train": "ran", "select": "ran"}
    assert (out / "data" / "examples.jsonl").read_bytes() == (
        run_a / "data" / "examples.jsonl"
    ).read_bytes()
    assert (out / "stages" / "train-config.yaml").exists()  # what the launched command read
    assert read_json(out / "stages" / "train.json")["state"] == "done"
    assert read_json(out / "select" / "choice.json")["checkpoint"] == "epoch-2"
