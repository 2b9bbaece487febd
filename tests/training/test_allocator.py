"""The CPU allocator policy: applied on glibc, idempotent, and switched off by LIMAKIT_MALLOC."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

CODE = (
    "from limakit.training.allocator import keep_freed_memory as k; "
    "print(k(), k())"  # the second call must agree with the first
)


def _run(env_value: str | None) -> str:
    env = dict(os.environ)
    env.pop("LIMAKIT_MALLOC", None)
    if env_value is not None:
        env["LIMAKIT_MALLOC"] = env_value
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc mallopt only"
)
def test_policy_applies_on_glibc_and_can_be_switched_off():
    assert _run(None) == "True True"
    assert _run("default") == "False False"
