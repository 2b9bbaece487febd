"""bench/gpu.py's dry run: every GPU benchmark setting runs on a toy on the CPU, same losses,
and the sampling part (engine with and without fixed-shape steps, transformers, ``lima serve``)
produces its tokens."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # nine processes, one per setting, each starting torch: over a minute
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
    rows_all = dict(rows)
    rows.pop("decode profile", None)
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
    # Each sampling row says which decode path ran and how long its steps took.
    assert sampling["sampling limakit"]["decode"] == "fixed-shape steps (eager: no CUDA here)"
    assert sampling["sampling limakit-eager"]["decode"] == "dynamic steps (eager)"
    assert sampling["sampling hf"]["decode"] == "transformers generate"
    fixed, dynamic = sampling["sampling limakit"], sampling["sampling limakit-eager"]
    assert fixed["ms_per_step"] > 0 and dynamic["ms_per_step"] > 0
    assert fixed["decode_steps"] == dynamic["decode_steps"] >= 1  # the same answers, step by step
    assert "| decode steps ran as |" in res.stdout
    # The decode-step profile (run on a GPU when the engine misses 5x) works on the toy.
    prof = rows_all["decode profile"]
    assert "error" not in prof, prof.get("error")
    assert prof["batch"] == 8 and prof["ms_per_step"] > 0 and prof["host_ms_per_step"] > 0
    trace = json.loads(Path(prof["trace"]).read_text())
    assert any(e.get("name") == "aten::mm" for e in trace["traceEvents"])
    assert f"at batch 8: {prof['ms_per_step']:.2f} ms a step" in res.stdout


def _bench_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "bench" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bench_says_when_decode_steps_fell_back_from_cuda_graphs(tiny_model_dir):
    """A capture that fails must show in the table, never pass for a graph run: here capturing
    is forced on a machine without CUDA, fails, and the engine goes on eagerly."""

    from limakit.generation.engine import Engine, Request
    from limakit.models import LoadedModel, load_model_for

    bench = _bench_module()
    model, tok = load_model_for(tiny_model_dir, "cpu", "float32").pair

    def run(**kw):
        with bench.EngineWatch() as watch:
            engine = Engine(LoadedModel.of(model, tok), max_batch=2, **kw)
            if kw.get("cuda_graphs"):
                engine.static.use_graphs = True  # as on a GPU: the capture is tried
            engine.run([Request(tok("hi")["input_ids"], max_new_tokens=3) for _ in range(2)])
        return watch

    forced = run(cuda_graphs=True)
    assert forced.mode().startswith("fixed-shape steps, EAGER: decode steps run without CUDA")
    assert len(forced.step_s) >= 2 and all(t > 0 for t in forced.step_s)  # steps were timed
    assert run(cuda_graphs=False).mode() == "dynamic steps (eager)"
    # the watch leaves the engine as it found it
    assert (Engine.__init__, Engine._decode) == forced._orig


def test_prepare_writes_what_a_bare_gpu_machine_needs_and_the_toy_builds_from_it(tmp_path):
    """--prepare: the examples and the tokenizer folder (no weights), from which the bench builds
    its model and reads its data without the packaged pool or models."""

    bench = _bench_module()
    dest = tmp_path / "inputs"
    bench.prepare(dest, "smollm2-135m")
    rows = [json.loads(x) for x in (dest / "examples.jsonl").read_text().splitlines()]
    assert len(rows) == 256 and len({r["id"] for r in rows}) == 256
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]
    tok = dest / "tokenizer"
    assert {"config.json", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in tok.iterdir()
    }
    assert (
        not list(tok.glob("*.safetensors")) and sum(p.stat().st_size for p in tok.iterdir()) < 8e6
    )
    params = bench.build_model(str(tok), tmp_path / "model", dry=True)
    assert params > 0 and (tmp_path / "model" / "config.json").exists()
    from limakit.models import load_model_for

    model, t = load_model_for(str(tmp_path / "model"), "cpu", "float32").pair
    eot = t.convert_tokens_to_ids(t.eos_token)  # the limakit EOT, added to the vocabulary
    assert eot >= 49152 and eot < model.get_input_embeddings().weight.shape[0]
