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
from limakit.core.errors import LimaError
from limakit.core.files import sha256_file
from limakit.records.example import read_examples
from limakit.run import RunConfig, execute, load_run_config
from tests.evaluation.fake_server import FakeServer
from tests.runkit import judge_behaviour, read_json, report_body, statuses, tiny_config

STAGES = ["data", "train", "select", "sample", "baseline-base", "judge", "shift", "report"]


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
    # Three pairs are too few for the length-controlled fit: said, not guessed.
    assert pair["score"] == pytest.approx(pair["win"] + pair["tie"] / 2, abs=1e-6)
    assert pair["lc_win_rate"] is None and pair["lc"]["reason"].startswith("too few pairs")
    assert read_json(run_a / "judge" / "likert-model" / "summary.json")["mean"] is not None
    report = (run_a / "report" / "report.md").read_text()
    for part in ("## Data", "train_loss.png", "## Checkpoint choice", "winrates.png",
                 "Automatic checks", "a tiny random-weight model", "## Provenance"):  # fmt: skip
        assert part in report, part
    for part in ("score (win + tie/2) [95% CI]", "LC win rate [95% CI]", "n/a (too few pairs",
                 "the win rate the judge would give if both answers had the same length"):  # fmt: skip
        assert part in report, part
    assert "| LC win rate [95% CI] |" in (run_a / "select" / "selection.md").read_text()
    # Figures name their sources; nothing points outside the run directory.
    assert "(../train/metrics.jsonl)" in report and str(run_a) not in report
    assert (run_a / "report" / "train_loss.png").stat().st_size > 0
    assert "<table>" in (run_a / "report" / "report.html").read_text()
    run_info = read_json(run_a / "run.json")
    assert run_info["versions"]["torch"] and "commit" in run_info
    assert load_run_config(run_a / "config.yaml").train.epochs == 2  # the resolved config


def test_the_report_says_which_rule_chose_the_checkpoint(run_a):
    choice = read_json(run_a / "select" / "choice.json")
    # One dev example per epoch: too few to choose on, so the last epoch is kept, and said.
    assert choice["decided_by"] == "undecided" and choice["checkpoint"] == "epoch-2"
    assert choice["how"].startswith("undecided among epochs [1, 2]")
    assert "1 dev answers per epoch, fewer than the 20" in choice["why"]
    table = read_json(run_a / "select" / "selection.json")["table"]
    assert all("ends_turn" in r["checks"] and len(r["score_ci"]) == 2 for r in table)
    report = report_body(run_a)
    assert (
        "Decided by nothing (undecided)" in report
        and "| ends turn [95% CI] | repetition |" in report
    )
    train = read_json(run_a / "stages" / "train.json")["summary"]
    assert "2 epochs, mean loss per epoch " in train and " -> train/" in train


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
                                 "shift": "skipped", "report": "ran"}  # fmt: skip
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
                                           "judge": "ran", "shift": "skipped",
                                           "report": "ran"}  # fmt: skip


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
                       "baseline-file": "ran", "judge": "ran", "shift": "skipped",
                       "report": "ran"}  # fmt: skip
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


# --- what the run prints and reports, on small inputs -------------------------------------------


def _steps(losses_by_epoch: list[list[float]]) -> list[dict]:
    rows, step = [], 0
    for e, losses in enumerate(losses_by_epoch):
        for s, loss in enumerate(losses):
            step += 1
            rows.append({"step": step, "epoch": e + (s + 1) / len(losses), "loss": loss,
                         "target_tokens": 100, "real_tokens": 500, "step_time_s": 1.0})  # fmt: skip
    return rows


def test_the_train_line_gives_epoch_means_not_the_first_and_last_step():
    from limakit.run.stages import train_line

    # The demo's curve: the first step is low and the last high, while the epochs improve.
    rows = _steps([[3.64, 4.1, 4.38], [3.3, 3.1, 3.17], [2.6, 3.4, 4.116]])
    line = train_line(rows)
    assert line == "9 steps, 3 epochs, mean loss per epoch 4.04 -> 3.19 -> 3.37, 500 real tokens/s"
    assert "3.640" not in line and "4.116" not in line
    rows[1]["target_tokens"] = 300  # a step with more trained tokens weighs more
    assert "mean loss per epoch 4.06 ->" in train_line(rows)  # (364 + 1230 + 438) / 500
    assert "1 epoch, mean loss per epoch 3.50 (partial)," in train_line(_steps([[4, 3, 0]])[:2])


def _mini_run(root: Path, prompts: Path, limit: int | None, curated_tests: int = 0) -> RunConfig:
    """A run directory with just what the report reads, and its config."""
    from limakit.core.files import write_json, write_jsonl

    (root / "data").mkdir(parents=True)
    pair = {"id": "m1", "source": "manual", "messages": [
        {"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]}  # fmt: skip
    write_jsonl(root / "data" / "examples.jsonl", [pair])
    (root / "data" / "card.md").write_text("# Data card\n\n## Splits\n\ntest.jsonl: empty.\n")
    write_jsonl(root / "data" / "test.jsonl", [])
    write_jsonl(root / "train" / "metrics.jsonl", _steps([[3.64, 4.1, 4.38], [3.3, 3.1, 3.17]]))
    write_json(root / "select" / "choice.json", {"checkpoint": "epoch-2", "how": "by hand"})
    (root / "judge").mkdir()
    return RunConfig.model_validate({
        "name": "mini", "data": {"examples": str(root / "data" / "examples.jsonl")},
        "train": {"model": "m"}, "select": {"enabled": False},
        "sample": {"prompts": str(prompts), "limit": limit},
    })  # fmt: skip


def test_the_report_names_the_test_prompts_sampled_and_the_epoch_means(tmp_path):
    from limakit.core.files import write_jsonl
    from limakit.run.run_report import write_run_report

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, [{"id": f"t{i}", "source": "x", "messages": [
        {"role": "user", "content": f"q{i}"}]} for i in range(10)])  # fmt: skip
    cfg = _mini_run(tmp_path / "run", prompts, limit=8)
    report = (write_run_report(cfg, tmp_path / "run")).read_text()
    assert f"Test prompts: 8 from `{prompts}` (`sample.prompts`; the first 8 of its 10)" in report
    assert "not from the curated split" in report
    assert "| 1 | 3 | 4.040 |" in report and "| 2 | 3 | 3.190 |" in report
    assert "Sampled:" not in report  # no answers yet: nothing to say


def test_the_report_says_which_chat_format_each_model_was_sampled_in(tmp_path):
    from limakit.core.files import write_jsonl
    from limakit.run.run_report import format_lines

    def answer(template: str) -> dict:
        return {"id": "t0", "source": "x", "meta": {"template": template}, "messages": [
            {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}  # fmt: skip

    write_jsonl(tmp_path / "answers" / "model.jsonl", [answer("limakit")])
    write_jsonl(tmp_path / "answers" / "base.jsonl", [answer("own")])
    line = format_lines(tmp_path)[0]
    assert line.startswith("Sampled: `base` in its own chat format")
    assert "`model` in limakit's format" in line


def test_the_report_names_a_packaged_prompts_file_by_its_packaged_name(tmp_path):
    from limakit.run.config import packaged_path
    from limakit.run.run_report import write_run_report

    prompts = packaged_path("demo/dev_prompts.jsonl")
    report = write_run_report(_mini_run(tmp_path, prompts, limit=None), tmp_path).read_text()
    assert (
        "Test prompts: 8 from `packaged:demo/dev_prompts.jsonl` (`sample.prompts`; all 8)" in report
    )
    assert str(prompts.parent) not in report


def test_one_runtime_section_reaches_every_model_loading_stage(config_path):
    from limakit.cli import build_parser
    from limakit.cli.run import runtime_overrides

    plain = load_run_config(config_path, [])
    assert plain.judge.dtype == "float32" and plain.judge.device == "auto"  # defaults kept
    cfg = load_run_config(config_path, ["runtime.device=cuda:3", "runtime.dtype=bfloat16"])
    assert (cfg.judge.device, cfg.judge.dtype) == ("cuda:3", "bfloat16")
    assert (cfg.select.judge.device, cfg.select.judge.dtype) == ("cuda:3", "bfloat16")
    sel = cfg.data.curate.selection
    assert (sel.device, sel.dtype) == ("cuda:3", "bfloat16")
    # a stage's own setting still wins: the tiny config samples on the CPU in float32
    assert (cfg.sample.device, cfg.sample.dtype) == ("cpu", "float32")
    for command in (["run", "x.yaml", "--out", "o"], ["demo"]):
        args = build_parser().parse_args([*command, "--device", "cpu", "--dtype", "float32"])
        assert runtime_overrides(args) == ["runtime.device=cpu", "runtime.dtype=float32"]
