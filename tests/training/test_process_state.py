"""Training leaves the process as it found it: torch's thread count comes back, the CPU allocator
policy is the ``lima`` command's to set, not the library's. The run records the thread count it
trained with, and a resume on another count says so."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from training.helpers import write_data

from limakit.core.config import load_config
from limakit.core.files import read_json
from limakit.training import TrainConfig, train

ROOT = Path(__file__).resolve().parents[2]


def _overrides(model: str, data: Path, *extra: str) -> list[str]:
    return [
        f"model={model}",
        f"data={data}",
        "epochs=1",
        "global_batch=4",
        "micro_batch=2",
        "max_len=64",
        "dropout_top=0",
        *extra,
    ]


@pytest.fixture
def three_threads():
    """The process runs on 3 threads (not 1, so a training's threads=1 left behind shows)."""
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield
    torch.set_num_threads(before)


def test_training_gives_the_thread_count_back_and_records_its_own(
    tmp_path, tiny_model_dir, three_threads
):
    data = write_data(tmp_path / "d.jsonl", 8)
    cfg = load_config(TrainConfig, None, _overrides(tiny_model_dir, data, "threads=1"))
    run = train(cfg, tmp_path / "run")
    assert torch.get_num_threads() == 3
    assert read_json(run / "summary.json")["threads"] == 1
    state = torch.load(run / "checkpoints" / "epoch-1" / "trainer_state.pt", weights_only=False)
    assert state["threads"] == 1
    # threads unset: the process's own count, recorded as such
    run = train(load_config(TrainConfig, None, _overrides(tiny_model_dir, data)), tmp_path / "r2")
    assert read_json(run / "summary.json")["threads"] == 3
    assert torch.get_num_threads() == 3


def test_training_that_fails_still_gives_the_thread_count_back(tmp_path, three_threads):
    from limakit.core.errors import LimaError

    cfg = load_config(TrainConfig, None, [f"data={tmp_path / 'missing.jsonl'}", "threads=1"])
    with pytest.raises(LimaError, match="not found"):
        train(cfg, tmp_path / "run")
    assert torch.get_num_threads() == 3


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU thread count matters on the CPU")
def test_resume_on_another_thread_count_says_so(tmp_path, tiny_model_dir, capfd, three_threads):
    data = write_data(tmp_path / "d.jsonl", 8)
    first = _overrides(tiny_model_dir, data, "threads=1", "max_steps=1")
    run = train(load_config(TrainConfig, None, first), tmp_path / "run")
    assert read_json(run / "checkpoints" / "latest" / "checkpoint.json")["global_step"] == 1
    capfd.readouterr()
    train(load_config(TrainConfig, None, _overrides(tiny_model_dir, data, "threads=2")), run, True)
    err = capfd.readouterr().err
    latest = run / "checkpoints" / "latest"
    assert f"warning: {latest} was trained with threads=1, this run uses threads=2" in err
    assert read_json(run / "summary.json")["threads"] == 2


CODE = """
import sys
from limakit.cli import main
from limakit.core.config import load_config
from limakit.training import TrainConfig, allocator, train

overrides = sys.argv[2:]
train(load_config(TrainConfig, None, overrides), sys.argv[1] + "/library")
print("library", allocator._done)
assert main(["train", sys.argv[1] + "/empty.yaml", *overrides, "--out", sys.argv[1] + "/cli"]) == 0
print("cli", allocator._done)
"""


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or torch.cuda.is_available(),
    reason="the allocator policy is for CPU training on glibc",
)
def test_the_allocator_policy_is_set_by_the_command_not_by_the_library(tmp_path, tiny_model_dir):
    data = write_data(tmp_path / "d.jsonl", 4)
    (tmp_path / "empty.yaml").write_text("{}\n")
    env = {k: v for k, v in os.environ.items() if k != "LIMAKIT_MALLOC"}
    env["PYTHONPATH"] = str(ROOT)
    args = _overrides(tiny_model_dir, data, "threads=1", "save_epochs=[]")
    out = subprocess.run(
        [sys.executable, "-c", CODE, str(tmp_path), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    said = [line for line in out.stdout.splitlines() if line.startswith(("library ", "cli "))]
    assert said == ["library False", "cli True"]
