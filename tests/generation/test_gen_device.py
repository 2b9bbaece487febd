"""Where models run: --device on every command that loads one, and dtype=auto."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from limakit.core.errors import LimaError
from limakit.models import bf16_is_fast, parse_dtype, resolve_device
from limakit.records.example import Example, Message, write_examples

from .serving import free_port


def test_auto_device_and_clear_errors_for_missing_ones():
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(LimaError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    missing = f"cuda:{torch.cuda.device_count()}"  # one past the last GPU (cuda:0 without any)
    with pytest.raises(LimaError, match=f"device '{missing}' asked for"):
        resolve_device(missing)


def test_host_data_reaches_the_device_as_one_tensor():
    from limakit.models import host_to_device

    t = host_to_device([[1, 2], [3, 4]], resolve_device("auto"), torch.long)
    assert t.device.type == resolve_device("auto").type and t.tolist() == [[1, 2], [3, 4]]
    assert t.dtype == torch.long
    src = torch.arange(3)
    assert torch.equal(host_to_device(src, "cpu"), src)


def test_auto_dtype_is_bf16_only_where_it_is_fast():
    expected = torch.bfloat16 if bf16_is_fast("cpu") else torch.float32
    assert parse_dtype("auto", "cpu") == expected
    assert parse_dtype("float32", "cpu") == torch.float32
    with pytest.raises(LimaError, match="unknown dtype 'fp8'"):
        parse_dtype("fp8")


def _answers(path, model):
    rows = [
        Example([Message("user", "Hi"), Message("assistant", f"Hello {i}")], id=f"p{i}",
                meta={"model": model})
        for i in range(2)
    ]  # fmt: skip
    write_examples(path, rows)
    return str(path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a device this machine lacks")
@pytest.mark.parametrize("command", ["generate", "chat", "serve", "judge", "select"])
def test_every_model_command_refuses_a_device_it_does_not_have(command, tmp_path, tiny_model_dir):
    prompts = tmp_path / "prompts.jsonl"
    write_examples(prompts, [Example([Message("user", "Hi")], id="p0")])
    judge = tmp_path / "judge.yaml"
    judge.write_text(f"backend: local\nmodel: {tiny_model_dir}\n")
    args = {
        "generate": ["generate", "--model", tiny_model_dir, "--prompts", str(prompts),
                     "--out", str(tmp_path / "out.jsonl")],
        "chat": ["chat", "--model", tiny_model_dir],
        "serve": ["serve", "--model", tiny_model_dir, "--port", str(free_port())],
        "judge": ["judge", "pairwise", "--a", _answers(tmp_path / "a.jsonl", "a"),
                  "--b", _answers(tmp_path / "b.jsonl", "b"), "--judge", str(judge),
                  "--out", str(tmp_path / "j")],
        "select": ["select", str(tmp_path / "run"), "--dev", _answers(tmp_path / "d.jsonl", "d"),
                   "--judge", str(judge), "--epochs", "1"],
    }[command]  # fmt: skip
    if command == "select":  # a checkpoint to generate from
        (tmp_path / "run" / "checkpoints").mkdir(parents=True)
        (tmp_path / "run" / "checkpoints" / "epoch-1").symlink_to(tiny_model_dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "limakit", *args, "--device", "cuda"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2, (r.stdout[-500:], r.stderr[-1500:])
    assert "device 'cuda' asked for, but this machine has no CUDA device" in r.stderr
    assert "Traceback" not in r.stderr
