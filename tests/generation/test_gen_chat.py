"""`lima chat`: a real subprocess fed through stdin, and the history it keeps."""

from __future__ import annotations

import io
import os
import subprocess
import sys

from limakit.generation import chat as chat_mod
from limakit.generation.config import DecodeConfig


def test_chat_subprocess_streams_resets_and_exits(tiny_model_dir):
    cmd = [
        sys.executable,
        "-m",
        "limakit",
        "chat",
        "--model",
        tiny_model_dir,
        "--max-new-tokens",
        "5",
        "--dtype",
        "float32",
    ]
    r = subprocess.run(
        cmd,
        input="Hello there\n/reset\nSecond question\n/exit\nnever read\n",
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("assistant:") == 2
    assert "(conversation cleared)" in r.stdout


def test_chat_keeps_history_until_reset(tiny, monkeypatch):
    tok = tiny.tokenizer
    seen_prompts = []
    real_run = chat_mod.Engine.run

    def spy(self, reqs=None):
        seen_prompts.append(tok.decode(reqs[0].prompt_ids))
        return real_run(self, reqs)

    monkeypatch.setattr(chat_mod.Engine, "run", spy)
    out = io.StringIO()
    turns = chat_mod.chat_loop(
        tiny,
        config=DecodeConfig(max_new_tokens=4),
        stdin=io.StringIO("first q\nsecond q\n/reset\nthird q\n"),
        stdout=out,
    )
    assert turns == 3
    assert "first q" not in seen_prompts[0].split("first q", 1)[1]
    assert "first q" in seen_prompts[1] and "second q" in seen_prompts[1]
    assert "<|assistant|>" in seen_prompts[1].split("second q")[0]  # the first answer is there
    assert "first q" not in seen_prompts[2] and "third q" in seen_prompts[2]
