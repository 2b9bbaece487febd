"""End-to-end training on a tiny random model: checkpoints, exact resume after SIGKILL, 2 processes,
and the errors people meet."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from training.helpers import write_data

from limakit.core.config import load_config
from limakit.core.errors import LimaError
from limakit.records.template import Template
from limakit.training import TrainConfig, train
from limakit.training.checkpoint import latest_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _cfg(model: str, data: Path, *extra: str) -> list[str]:
    return [
        f"model={model}",
        f"data={data}",
        "epochs=3",
        "global_batch=4",
        "micro_batch=2",
        "max_len=64",
        "dropout_top=0.3",
        "threads=1",
        *extra,
    ]


def _empty_yaml(tmp_path: Path) -> Path:
    """A config file holding no field: the defaults plus the command-line overrides apply."""
    path = tmp_path / "empty.yaml"
    path.write_text("{}\n")
    return path


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(ckpt / "model.safetensors")


def _env() -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONPATH=str(ROOT))
    return env


def test_train_writes_loadable_checkpoints_and_metrics(tmp_path, tiny_model_dir):
    from limakit.models import load_model_for

    data = write_data(tmp_path / "d.jsonl", 12)
    cfg = load_config(TrainConfig, None, _cfg(tiny_model_dir, data, "epochs=2"))
    run = train(cfg, tmp_path / "run")
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 7))
    assert rows[0]["lr"] == pytest.approx(1e-5) and rows[-1]["lr"] == pytest.approx(1e-6)
    assert all(r["real_tokens"] > 0 and 0 <= r["padding"] < 1 for r in rows)
    ckpt = run / "checkpoints" / "epoch-2"
    for name in ("model.safetensors", "tokenizer.json", "train_config.yaml", "trainer_state.pt"):
        assert (ckpt / name).exists(), name
    model, tok = load_model_for(str(ckpt), "cpu", "float32").pair
    assert tok.eos_token == "<|eot|>" and "limakit" in tok.chat_template
    assert model.generation_config.eos_token_id == tok.convert_tokens_to_ids("<|eot|>")
    with pytest.raises(LimaError, match="--resume"):
        train(cfg, run)


def test_sigkill_mid_epoch_then_resume_gives_the_same_weights(tmp_path, tiny_model_dir, capfd):
    from limakit.cli import main

    data = write_data(tmp_path / "d.jsonl", 12)
    overrides = _cfg(tiny_model_dir, data, "epochs=2")  # 3 steps an epoch
    args = ["train", str(_empty_yaml(tmp_path)), *overrides, "save_every_steps=1", "--out"]

    def killed_at(point: str, run: Path) -> subprocess.Popen:
        """A real `lima train` process, killed at ``point``: started now, waited for by `killed`."""
        cmd = [sys.executable, "-m", "limakit", *args, str(run)]
        env = {**_env(), "LIMAKIT_CRASH_AT": point}
        with open(tmp_path / f"{run.name}.err", "wb") as err:
            return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=err)

    def killed(proc: subprocess.Popen, run: Path) -> None:
        code = proc.wait(timeout=300)
        assert code == -signal.SIGKILL, (tmp_path / f"{run.name}.err").read_text()[-2000:]

    # Both killed runs (each in its own folder) start at once, while the uninterrupted one trains
    # here: most of a process's time goes to starting.
    run, late = tmp_path / "killed", tmp_path / "between-renames"
    after_step = killed_at("train:checkpoint:4", run)  # SIGKILL after step 4's checkpoint
    between = killed_at("checkpoint:5:between-renames", late)
    full = train(load_config(TrainConfig, None, overrides), tmp_path / "full")
    killed(after_step, run)
    state = torch.load(run / "checkpoints" / "latest" / "trainer_state.pt", weights_only=False)
    assert state["global_step"] == 4
    assert not (run / "checkpoints" / "epoch-2").exists()

    resumed = train(load_config(TrainConfig, None, overrides), run, resume=True)
    a = _weights(full / "checkpoints" / "epoch-2")
    b = _weights(resumed / "checkpoints" / "epoch-2")
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # no step lost or repeated in the log

    # Killed between a checkpoint replacement's two renames: `latest` is missing, the old one
    # (step 4) and the complete new one (step 5) lie beside it. `lima train --resume` takes the
    # new one.
    killed(between, late)
    ckpts = late / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == [".latest.old", ".latest.tmp", "epoch-1"]
    capfd.readouterr()
    assert main([*args, str(late), "--resume"]) == 0
    assert "restored checkpoints/latest from .latest.tmp" in capfd.readouterr().err
    steps = [json.loads(x)["step"] for x in (late / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 7))  # resumed after step 5, not from scratch
    b = _weights(late / "checkpoints" / "epoch-2")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6
    assert not list(ckpts.glob(".*"))


def test_latest_checkpoint_reads_only_the_small_metadata(tmp_path, tiny_model_dir, monkeypatch):
    data = write_data(tmp_path / "d.jsonl", 8)
    run = train(
        load_config(TrainConfig, None, _cfg(tiny_model_dir, data, "epochs=2")), tmp_path / "r"
    )
    loads = []
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(a) or {})
    assert latest_checkpoint(run) == run / "checkpoints" / "epoch-2"
    assert loads == []  # the optimizer state (GBs for a 7B model) is never read to find it
    # A folder without checkpoint.json (something half-copied by hand) is never chosen.
    (run / "checkpoints" / "epoch-9").mkdir()
    (run / "checkpoints" / "epoch-9" / "model.safetensors").write_bytes(b"cut")
    assert latest_checkpoint(run) == run / "checkpoints" / "epoch-2"


def test_two_processes_match_one(tmp_path, tiny_model_dir):
    data = write_data(tmp_path / "d.jsonl", 8)
    # No dropout: each process has its own RNG stream, the trajectories must match exactly.
    overrides = _cfg(tiny_model_dir, data, "dropout_top=0", "epochs=2", "micro_batch=1")
    one = train(load_config(TrainConfig, None, overrides), tmp_path / "one")
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher), "launch", "--cpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "limakit", "train"]
    cmd += [str(_empty_yaml(tmp_path)), *overrides, "--out", str(tmp_path / "two")]
    res = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    load_rows = lambda p: [json.loads(x) for x in (p / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    r1, r2 = load_rows(one), load_rows(tmp_path / "two")
    assert len(r1) == len(r2) == 4
    for x, y in zip(r1, r2, strict=True):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-4)
        assert x["real_tokens"] == y["real_tokens"]
    a = _weights(one / "checkpoints" / "epoch-2")
    b = _weights(tmp_path / "two" / "checkpoints" / "epoch-2")
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_clear_errors(tmp_path, tiny_model_dir, smollm2_tokenizer):
    from conftest import make_tiny_model

    from limakit.models import attach

    data = write_data(tmp_path / "d.jsonl", 4)
    with pytest.raises(LimaError, match="unknown field 'epoch'"):
        load_config(TrainConfig, None, ["epoch=3"])
    # An example whose answer is trimmed away has no trained token: counted and named.
    bad = tmp_path / "bad.jsonl"
    long_q = " ".join(["word"] * 200)
    row = {
        "messages": [{"role": "user", "content": long_q}, {"role": "assistant", "content": "ok"}]
    }
    bad.write_text(data.read_text() + json.dumps(row) + "\n")
    with pytest.raises(LimaError, match=r"1 example\(s\) have no trained token.*record 5"):
        train(load_config(TrainConfig, None, _cfg(tiny_model_dir, bad)), tmp_path / "r0")
    # A checkpoint of another model is refused on resume.
    run = train(
        load_config(TrainConfig, None, _cfg(tiny_model_dir, data, "epochs=1")), tmp_path / "r1"
    )
    other = tmp_path / "other"
    m = make_tiny_model(smollm2_tokenizer, layers=3)
    attach(smollm2_tokenizer, m)
    m.save_pretrained(other)
    smollm2_tokenizer.save_pretrained(other)
    with pytest.raises(LimaError, match="different model"):
        train(load_config(TrainConfig, None, _cfg(str(other), data, "epochs=2")), run, resume=True)


def test_sharded_optimizer_state_is_saved_per_process_and_refused_at_another_size(tmp_path):
    """Under FSDP each process saves its own optimizer shard; resuming needs the same world size."""
    from types import SimpleNamespace

    from limakit.training.checkpoint import load_sharded_optimizer, save_checkpoint

    class Tok:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_text("{}")

    dest = tmp_path / "checkpoints" / "epoch-1"
    cfg = load_config(TrainConfig, None, [])
    shards = {r: {"state": {0: {"exp_avg": torch.full((3,), float(r))}}} for r in (0, 1)}
    barrier = threading.Barrier(2, timeout=30)  # two "processes" as threads, with real barriers

    def process(rank: int) -> None:
        acc = SimpleNamespace(
            process_index=rank,
            num_processes=2,
            is_main_process=rank == 0,
            wait_for_everyone=barrier.wait,
        )
        save_checkpoint(dest, acc, lambda f: None, Tok(), cfg, {"global_step": 1}, shards[rank],
                        template=Template())  # fmt: skip

    threads = [threading.Thread(target=process, args=(r,)) for r in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(p.name for p in dest.glob("optimizer-*")) == [
        "optimizer-rank0-of-2.pt",
        "optimizer-rank1-of-2.pt",
    ]
    for rank in (0, 1):
        got = load_sharded_optimizer(dest, rank, 2)
        assert torch.equal(got["state"][0]["exp_avg"], shards[rank]["state"][0]["exp_avg"])
    with pytest.raises(LimaError, match="process 0 of 4.*optimizer-rank0-of-2.pt"):
        load_sharded_optimizer(dest, 0, 4)


class _Recording:
    """A tokenizer that notes the longest text it was asked to tokenise."""

    def __init__(self, tokenizer) -> None:
        self.inner, self.longest = tokenizer, 0

    def __call__(self, text, *args, **kwargs):
        self.longest = max(self.longest, len(text))
        return self.inner(text, *args, **kwargs)

    def __len__(self) -> int:
        return len(self.inner)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_huge_answer_is_cut_before_tokenising_and_the_trim_is_counted(
    tmp_path, tiny_model_dir, smollm2_tokenizer, capsys
):
    from limakit.records.example import Example, Message
    from limakit.records.template import char_cap, render
    from limakit.training.loop import DataStats, encode

    data = write_data(tmp_path / "d.jsonl", 4)
    huge = " ".join(f"word{i % 97}" for i in range(150_000))  # ~1 MB, far past max_len tokens
    row = {
        "messages": [{"role": "user", "content": "Go on?"}, {"role": "assistant", "content": huge}]
    }
    data.write_text(data.read_text() + json.dumps(row) + "\n")
    cfg = load_config(TrainConfig, None, _cfg(tiny_model_dir, data, "epochs=1"))
    tok, stats = _Recording(smollm2_tokenizer), DataStats()
    items = encode(cfg, tok, stats)
    assert (stats.examples, stats.trimmed) == (5, 1)
    assert tok.longest <= char_cap(smollm2_tokenizer, cfg.max_len) + 100 < len(huge)
    # The cut changes nothing: the same tokens and labels as tokenising the whole answer.
    whole = render(  # no cap can bite at this max_len: every character is tokenised
        Example([Message("user", "Go on?"), Message("assistant", huge)]),
        smollm2_tokenizer,
        Template(),
        max_len=10**9,
    )
    assert len(items[4].ids) == cfg.max_len and items[4].ids == whole.input_ids[: cfg.max_len]
    short = encode(
        load_config(TrainConfig, None, _cfg(tiny_model_dir, write_data(tmp_path / "s.jsonl", 4))),
        smollm2_tokenizer,
    )
    assert [x.ids for x in items[:4]] == [x.ids for x in short]
    # The run says so, and its summary counts it.
    capsys.readouterr()
    run = train(cfg, tmp_path / "run")
    assert "trimmed 1 of 5 example(s) to max_len=64" in capsys.readouterr().err
    summary = json.loads((run / "summary.json").read_text())
    assert (summary["examples"], summary["trimmed"], summary["max_len"]) == (5, 1, 64)


def test_data_that_is_empty_a_folder_or_not_text_is_one_clear_error(
    tmp_path, tiny_model_dir, capsys
):
    from limakit.cli import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    folder = tmp_path / "data"
    folder.mkdir()
    surrogate = tmp_path / "surrogate.jsonl"
    surrogate.write_text(
        '{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "\\ud800"}]}\n'
    )
    for data, says in (
        (empty, f"{empty}: empty file"),
        (folder, f"{folder}: is a folder"),
        (surrogate, f"{surrogate}:1: a lone surrogate (\\ud800) in messages[1].content"),
    ):
        args = [str(_empty_yaml(tmp_path)), f"model={tiny_model_dir}", f"data={data}"]
        assert main(["train", *args, "--out", str(tmp_path / "run")]) == 2
        assert "".join(says.split()) in "".join(capsys.readouterr().err.split())  # rich wraps
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_checkpoint_files_follow_the_umask(tmp_path, mask):
    """safetensors writes its files private (0600); a checkpoint's files get 0666 less the umask."""
    import stat
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from limakit.training.checkpoint import save_checkpoint

    class Tok:
        def save_pretrained(self, folder):
            (Path(folder) / "tokenizer.json").write_text("{}")

    acc = SimpleNamespace(
        process_index=0, num_processes=1, is_main_process=True, wait_for_everyone=lambda: None
    )
    dest = tmp_path / "checkpoints" / "epoch-1"
    old = os.umask(mask)
    try:
        save_checkpoint(
            dest,
            acc,
            lambda f: save_file({"w": torch.zeros(2)}, f / "model.safetensors"),
            Tok(),
            load_config(TrainConfig, None, []),
            {"global_step": 1},
            template=Template(),
        )
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in dest.iterdir()}
    assert "model.safetensors" in modes and "trainer_state.pt" in modes
    assert modes == dict.fromkeys(modes, 0o666 & ~mask)
