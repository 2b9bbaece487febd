"""`lima demo` is `lima run` on the packaged config; `--quick` runs the whole loop offline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from limakit.cli import main
from limakit.core.config import load_config
from limakit.records.example import load_examples
from limakit.run import load_run_config
from limakit.run.demo import demo_config
from limakit.training import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_config_is_the_one_in_configs():
    """One source of truth: the packaged run config is the file under configs/, its training
    section is configs/demo-train.yaml, and --quick changes only what its file lists."""
    full = demo_config()
    assert full == load_run_config(ROOT / "configs" / "run-demo-cpu.yaml")
    assert full.train == load_config(TrainConfig, ROOT / "configs" / "demo-train.yaml")
    assert full.train.lr == 1e-4 and full.train.final_lr == 1e-5
    quick = demo_config(quick=True)
    assert (quick.data.curate.n, quick.train.epochs, quick.sample.limit) == (8, 1, 2)
    assert quick.train.lr == full.train.lr and quick.judge == full.judge
    assert all(Path(p).exists() for p in full.data.curate.manual)  # packaged, not configs/
    assert any("1e-4" in note for note in full.notes)  # the departures are stated


def test_the_demo_baseline_is_sampled_in_its_own_chat_format(smollm2_dir, tmp_path, monkeypatch):
    """SmolLM2-Instruct answers in its own ChatML format, ending at its own <|im_end|>, not in
    limakit's format, where it has never seen the EOT and runs to the token cap."""
    import limakit.generation as generation
    from limakit.generation.chat_format import choose_template
    from limakit.models import load_tokenizer
    from limakit.run.stages import baseline_stages

    cfg = demo_config(
        overrides=["sample.decode.template=limakit"]
    )  # the baseline's own choice wins
    (base,) = cfg.baselines
    assert base.template == "auto"
    assert choose_template(load_tokenizer(base.model), base.template) == "own"
    got = {}

    def fake_generate(model, prompts, **kw):
        got.update(kw, model=model)
        return prompts

    monkeypatch.setattr(generation, "generate_answers", fake_generate)
    (stage,) = baseline_stages(cfg)
    stage.run(tmp_path)
    assert got["config"].template == "auto"
    loaded = got["model"]()  # the stage's loader: the model it names, in its own format
    assert loaded.name == "smollm2-135m" and loaded.template is None
    assert got["config"].max_new_tokens == cfg.sample.decode.max_new_tokens


@pytest.mark.slow
def test_demo_runs_end_to_end_and_resumes(tmp_path, smollm2_dir, capsys):
    out = tmp_path / "run"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    examples = load_examples(out / "data" / "examples.jsonl")
    assert len(examples) == 8 and {e.source for e in examples} <= {"manual", "sharegpt"}
    assert (out / "data" / "card.md").exists()
    assert list((out / "train" / "checkpoints").glob("epoch-1"))
    assert json.loads((out / "select" / "choice.json").read_text())["checkpoint"] == "epoch-1"
    for name in ("model", "base"):
        answers = load_examples(out / "answers" / f"{name}.jsonl")
        assert len(answers) == 2 and all(a.meta["stop"] in ("eot", "length") for a in answers)
    summary = json.loads((out / "judge" / "pairwise-base" / "summary.json").read_text())
    assert summary["n"] + summary["invalid"] == 2
    assert abs(summary["win"] + summary["tie"] + summary["lose"] - 1) < 1e-9 or summary["n"] == 0
    checks = json.loads((out / "judge" / "checks.json").read_text())
    assert set(checks) == {"model", "base"}
    report = (out / "report" / "report.md").read_text()
    for part in ("winrates.png", "Automatic checks", "Checkpoint choice", "train_loss.png",
                 "Data card", "1e-4", "What the fine-tuning changed, token by token"):  # fmt: skip
        assert part in report, part

    # run.json records the limakit commit of each invocation, which moves while the suite runs.
    def stamps():
        return {
            p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "run.json"
        }

    before = stamps()
    capsys.readouterr()
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    assert capsys.readouterr().err.count("done earlier") == 8  # shift too: the base is in the run
    assert stamps() == before
