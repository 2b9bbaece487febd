"""bench/gpu.py's dry run: every GPU benchmark setting runs on a toy on the CPU, same losses,
and the sampling part (engine with and without fixed-shape steps, transformers, ``lima serve``)
produces its tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_bench_dry_run_runs_every_setting_with_the_same_losses(tmp_path):
    rows_file = tmp_path / "rows.jsonl"
    res = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--cpu-dry-run", "--json", str(rows_file)],
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    rows = {r["setting"]: r for r in map(json.loads, rows_file.read_text().splitlines())}
    expected = {"bf16-packed", "bf16-packed-sdpa-mask", "bf16-grouped", "autocast-packed"}
    assert {k.removeprefix("limakit ") for k in rows if k.startswith("limakit")} == expected
    sampling = {k: v for k, v in rows.items() if k.startswith("sampling")}
    names = {"sampling limakit", "sampling limakit-eager", "sampling hf", "sampling serve"}
    assert set(sampling) == names
    for name, r in sampling.items():
        assert "error" not in r, (name, r.get("error"))
        assert 0 < r["tokens"] <= 8 * 16 and r["tokens_per_s"] > 0  # 8 prompts, 16 new tokens
    assert sampling["sampling hf"]["tokens"] == 8 * 16  # transformers is forced to the length
    # Fixed-shape steps (CUDA graphs on a GPU) sample what the dynamic steps sample.
    assert sampling["sampling limakit"]["tokens"] == sampling["sampling limakit-eager"]["tokens"]
    rows = {k: v for k, v in rows.items() if k not in sampling}
    for name, r in rows.items():
        assert "error" not in r, (name, r.get("error"))
        assert r["tokens_per_s"] > 0 and 0 <= r["padding"] < 1
        assert len(r["losses"]) == 2  # the first epoch's steps (16 examples, 8 per step)
    # Same examples in the same steps: packing, its kernel and grouping do not change the loss.
    first = rows["limakit bf16-packed"]["losses"]
    for name, r in rows.items():
        if name.startswith("limakit"):
            assert all(abs(a - b) < 2e-3 for a, b in zip(r["losses"], first)), (name, r["losses"])
    assert "| limakit bf16-packed |" in res.stdout  # the table people read
