"""The stages of ``lima run``, each a function of the run config writing into one folder:

    data/ -> train/ -> select/ -> answers/ (model, then each baseline) -> judge/ -> report/

Stage keys hold run-relative paths only, so the same stage in another run directory (an ablation
arm) has the same key and can take its outputs from the shared cache.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
from pathlib import Path

from limakit.core.console import note
from limakit.core.errors import LimaError
from limakit.core.files import read_json, read_jsonl_records, write_json
from limakit.core.steps import Step as Stage  # a run's stage is a resumable step
from limakit.records.example import Example, read_examples, write_examples
from limakit.run.caps import LENGTHS, cap_check
from limakit.run.config import RunConfig, prompts_path, training_data
from limakit.sources.registry import input_paths


def _local(paths: list[str | None]) -> list[str]:
    """The entries that are files or folders here (hub ids and aliases are hashed by name)."""
    return [p for p in paths if p and Path(p).exists()]


def _dump(model) -> dict:
    return model.model_dump(mode="json")


def epochs_in(ckpts: Path) -> list[int]:
    return sorted(int(p.name.split("-")[1]) for p in ckpts.glob("epoch-*") if p.is_dir())


def prompts_in(path: Path) -> list[Example]:
    """The prompts of a file, a trailing reference answer dropped; an empty file is an error."""
    prompts = []
    for ex in read_examples(path, require_answer=None):
        if ex.messages[-1].role == "assistant":
            ex = Example(ex.messages[:-1], ex.source, ex.id, dict(ex.meta))
        prompts.append(ex)
    if not prompts:
        raise LimaError(f"{path}: no test prompts")
    return prompts


def sampled_prompts(cfg: RunConfig, root: Path) -> list[Example]:
    """The test prompts (a trailing reference answer is dropped), the first ``limit`` of them."""
    prompts = prompts_in(prompts_path(cfg, root))
    return prompts[: cfg.sample.limit] if cfg.sample.limit else prompts


def subset_file(name: str, subset: str) -> str:
    """Where a system's answers to a prompt subset go: ``answers/NAME.SUBSET.jsonl``."""
    return f"answers/{name}.{subset}.jsonl"


# --- data --------------------------------------------------------------------------------------


def data_stage(cfg: RunConfig) -> Stage:
    d = cfg.data
    if d.examples is not None:

        def copy(root: Path) -> str:
            rows = list(read_examples(d.examples, require_answer=True))
            write_examples(root / "data" / "examples.jsonl", rows)
            return f"{len(rows)} ready examples from {d.examples} -> data/"

        return Stage("data", ["data"], copy, {"examples": "ready"}, inputs=[d.examples],
                     help="ready examples file")  # fmt: skip

    cur = d.curate
    assert cur is not None
    # every registered source's inputs (and the files its options name), then the eval prompts
    sources = [*input_paths(cur), *cur.decontaminate.against]

    def curate_data(root: Path) -> str:
        from limakit.curation import curate

        out = root / "data"
        if d.prompt_filter is None:
            s = curate(cur.model_copy(update={"out": str(out)}))
            return _curate_line(s) + " -> data/"
        # A homogeneous arm: everything that passes the rules, then only the matching prompts.
        s = curate(cur.model_copy(update={"out": str(out / "pool"), "n": 10**9}))
        rx = re.compile(d.prompt_filter, re.IGNORECASE)
        pool = list(read_examples(out / "pool" / "examples.jsonl", require_answer=True))
        match = [ex for ex in pool if rx.search(ex.prompt)]
        picked = random.Random(f"{cur.seed}:prompt-filter").sample(match, min(cur.n, len(match)))
        order = {id(e): i for i, e in enumerate(pool)}
        picked.sort(key=lambda e: order[id(e)])
        write_examples(out / "examples.jsonl", picked)
        for split in ("dev.jsonl", "test.jsonl"):
            if (out / "pool" / split).exists():
                write_examples(
                    out / split, list(read_examples(out / "pool" / split, require_answer=None))
                )
        write_json(out / "prompt_filter.json", {"regex": d.prompt_filter, "pool": len(pool),
                                                   "matched": len(match), "kept": len(picked)})  # fmt: skip
        if len(picked) < cur.n:
            note(f"note: only {len(picked)} prompts match {d.prompt_filter!r} (asked for {cur.n})")
        return (
            f"{len(picked)} of {len(match)} examples whose prompt matches {d.prompt_filter!r} "
            f"({s.examples} passed the rules) -> data/"
        )

    config = {"curate": _dump(cur) | {"out": None, "progress": None}, "filter": d.prompt_filter}
    return Stage("data", ["data"], curate_data, config, inputs=_local(sources),
                 help="curation: LIMA's rules, sampling, dedup, card")  # fmt: skip


def _curate_line(s: dict) -> str:
    mix = ", ".join(f"{k} {v}" for k, v in sorted(s.by_source.items()))
    read = sum(s.read.values())
    return (
        f"{s.examples} examples ({mix}) from {read} records read; "
        f"{s.rejected} rejected, each with its rule"
    )


# --- backtranslate ------------------------------------------------------------------------------


def backtranslate_config(cfg: RunConfig, root: Path | None):
    """``data.backtranslate`` with the run's seed and folder, and the run's training by default.

    With ``root`` None the paths are run-relative: the form that goes into the stage's key.
    """
    bt = cfg.data.backtranslate
    assert bt is not None
    base = Path(".") if root is None else root
    update = {"seed": str(base / "data" / "examples.jsonl"), "out": str(base / "backtranslate")}
    if "train" not in bt.model_fields_set:
        update["train"] = cfg.train
    return bt.model_copy(update=update)


def backtranslate_stage(cfg: RunConfig) -> Stage:
    bt = cfg.data.backtranslate
    assert bt is not None

    def run(root: Path) -> str:
        from limakit.backtranslate import backtranslate

        s = backtranslate(backtranslate_config(cfg, root))
        return (
            f"{s['augmented']} back-translated pairs kept over {bt.rounds} round(s); "
            f"{s['examples']} examples -> backtranslate/"
        )

    keyed = backtranslate_config(cfg, None)
    inputs = _local([*bt.texts, keyed.train.model, *bt.hygiene.decontaminate.against])
    return Stage("backtranslate", ["backtranslate"], run, {"backtranslate": _dump(keyed) | {"progress": None}},
                 inputs=inputs, reads=["data/examples.jsonl"], resumable=True,
                 help="instruction back-translation: write, rate and keep new pairs")  # fmt: skip


# --- train -------------------------------------------------------------------------------------


def train_stage(cfg: RunConfig) -> Stage:
    data = training_data(cfg)
    keyed = cfg.train.model_copy(update={"data": data})

    def run(root: Path) -> str:
        (root / LENGTHS).unlink(missing_ok=True)  # measured anew on this stage's data
        # Before the expensive part: a run that cannot sample stops here.
        cap_check(cfg, root, keep=True)
        out = root / "train"
        resume = (out / "checkpoints").exists()  # a killed run's checkpoints (same key)
        real = cfg.train.model_copy(update={"data": str(root / data)})
        if cfg.launch:
            path = root / "stages" / "train-config.yaml"
            real.save(path)
            cmd = [*cfg.launch, "-m", "limakit", "train", str(path), "--out", str(out)]
            cmd += ["--resume"] if resume else []
            note("$ " + " ".join(cmd))
            rc = subprocess.run(cmd).returncode
            if rc != 0:
                raise LimaError(f"training command failed (exit {rc}): {' '.join(cmd)}")
        else:
            from limakit.training import train

            train(real, out, resume=resume)
        rows = [row for _, row in read_jsonl_records(out / "metrics.jsonl", resumable=True)]
        if not rows:
            raise LimaError(f"{out / 'metrics.jsonl'}: training logged no step")
        return train_line(rows) + " -> train/"

    config = {"train": _dump(keyed), "launch": cfg.launch}
    return Stage("train", ["train"], run, config, inputs=_local([cfg.train.model]),
                 reads=[data], resumable=True,
                 help="fine-tune: EOT template, prompt masking, packing, residual dropout")  # fmt: skip


def train_line(rows: list[dict]) -> str:
    """The train stage's summary: steps, the mean loss of each epoch, speed."""
    from limakit.run.run_report import epoch_loss_text

    tps = sum(r["real_tokens"] for r in rows) / max(sum(r["step_time_s"] for r in rows), 1e-9)
    return f"{len(rows)} steps, {epoch_loss_text(rows)}, {tps:.0f} real tokens/s"


# --- select ------------------------------------------------------------------------------------


def _dev_path(cfg: RunConfig, root: Path) -> Path:
    return root / "data" / "dev.jsonl" if cfg.select.dev == "curated" else Path(cfg.select.dev)


def _decode(cfg: RunConfig, max_new_tokens: int | None = None):
    if max_new_tokens is None:
        return cfg.sample.decode
    return cfg.sample.decode.model_copy(update={"max_new_tokens": max_new_tokens})


def select_stage(cfg: RunConfig) -> Stage:
    sel = cfg.select
    judge = sel.judge or cfg.judge

    def run(root: Path) -> str:
        cap_check(cfg, root)
        ckpts = root / "train" / "checkpoints"
        link = root / "checkpoints"  # `lima select` reads RUN/checkpoints and writes RUN/select
        if link.is_symlink() or link.exists():
            link.unlink()
        os.symlink(os.path.join("train", "checkpoints"), link)
        epochs = [e for e in epochs_in(ckpts) if sel.epochs is None or e in sel.epochs]
        if not sel.enabled or not epochs:
            chosen = f"epoch-{epochs[-1]}" if epochs else "latest"
            if not (ckpts / chosen).is_dir():
                raise LimaError(f"{ckpts}: no checkpoint to sample from")
            how = "selection off: the last checkpoint" if sel.enabled is False else (
                "no epoch checkpoint among the configured epochs: the last checkpoint")  # fmt: skip
            write_json(root / "select" / "choice.json", {"checkpoint": chosen, "how": how})
            return f"{chosen} ({how}) -> select/"
        from limakit.evaluation import select_checkpoint

        result = select_checkpoint(
            root,
            _dev_path(cfg, root),
            judge,
            epochs=epochs,
            reference=sel.reference,
            protocol=sel.protocol,
            samples=sel.samples,
            seed=cfg.sample.seed,
            decode=_decode(cfg, sel.max_new_tokens),
            device=cfg.sample.device,
        )
        if result["chosen"] is None:
            raise LimaError(f"{root / 'select'}: no epoch could be judged")
        from limakit.evaluation.checkpoint_choice import rule_words

        rule = rule_words(result["decided_by"])
        how = f"chosen by {rule} among epochs {epochs} ({sel.protocol} on the dev set)"
        if result["decided_by"] == "undecided":
            how = (
                f"undecided among epochs {epochs} ({sel.protocol} on the dev set): {result['why']}"
            )
        write_json(root / "select" / "choice.json",
                    {"checkpoint": f"epoch-{result['chosen']}", "how": how,
                     "decided_by": result["decided_by"], "why": result["why"]})  # fmt: skip
        row = next(r for r in result["table"] if r["epoch"] == result["chosen"])
        if result["decided_by"] == "undecided":
            return f"epoch {result['chosen']} kept by default (undecided) -> select/"
        return (f"epoch {result['chosen']} chosen by {rule}; judge score {row['score']:.3f} "
                "-> select/")  # fmt: skip

    reads = ["train/checkpoints"] + (
        ["data/dev.jsonl"] if sel.enabled and sel.dev == "curated" else []
    )
    inputs = (
        _local([sel.dev if sel.dev != "curated" else None, sel.reference]) if sel.enabled else []
    )
    config = {
        "select": _dump(sel) | {"judge": None},  # the judge actually used is the next entry
        "judge": _dump(judge) if judge and sel.enabled else None,
        "decode": _dump(_decode(cfg, sel.max_new_tokens)),
        "seed": cfg.sample.seed,
        "device": cfg.sample.device,
    }
    return Stage("select", ["select", "checkpoints"], run, config, inputs=inputs, reads=reads,
                 help="checkpoint choice: dev answers per epoch, judged")  # fmt: skip


# --- answers -----------------------------------------------------------------------------------


def _sample_key(cfg: RunConfig) -> tuple[dict, list[str]]:
    """The sampling settings and the prompts themselves (or the curated test file, read)."""
    s = cfg.sample
    if s.prompts == "curated":
        return {"sample": _dump(s), **_subsets_key(cfg)}, ["data/test.jsonl"]
    prompts = [p.to_dict() for p in sampled_prompts(cfg, Path("."))]
    return {"sample": _dump(s) | {"prompts": None}, "prompts": prompts, **_subsets_key(cfg)}, []


def _subsets_key(cfg: RunConfig) -> dict:
    """The subsets' prompts themselves (a packaged file's path moves with the install)."""
    subsets = {k: [p.to_dict() for p in prompts_in(Path(v))] for k, v in cfg.sample.subsets.items()}
    return {"subsets": subsets} if subsets else {}


def _generate(
    cfg: RunConfig, root: Path, model: str, out: Path, name: str, template: str | None = None,
    shots: str | None = None,
) -> int:  # fmt: skip
    from limakit.generation import generate_answers
    from limakit.generation.batch import model_for_answers

    s = cfg.sample
    decode = s.decode if template is None else s.decode.model_copy(update={"template": template})
    if shots is not None:
        decode = decode.model_copy(update={"shots": shots})
    out.parent.mkdir(parents=True, exist_ok=True)
    sets = [(out, sampled_prompts(cfg, root))]
    sets += [(root / subset_file(out.stem, k), prompts_in(Path(v)))
             for k, v in s.subsets.items()]  # fmt: skip
    # Decided once for the stage: the test prompts and every subset share one load.
    load = model_for_answers(model, device=s.device, dtype=s.dtype, template=decode.template,
                             backend=s.backend)  # fmt: skip
    counts = [
        len(generate_answers(
            load, prompts, samples=s.samples, seed=s.seed, config=decode, out=path,
            batch_size=s.batch_size, model_name=name, backend=s.backend,
        ))
        for path, prompts in sets
    ]  # fmt: skip
    return counts[0]  # the test prompts' answers (the subsets' are counted in their checks)


def sample_stage(cfg: RunConfig) -> Stage:
    def run(root: Path) -> str:
        cap_check(cfg, root)
        choice = read_json(root / "select" / "choice.json")
        ckpt = root / "train" / "checkpoints" / choice["checkpoint"]
        n = _generate(cfg, root, str(ckpt), root / "answers" / "model.jsonl", cfg.name)
        return f"{n} answers from {choice['checkpoint']} -> answers/model.jsonl"

    config, reads = _sample_key(cfg)
    outputs = ["answers/model.jsonl", *(subset_file("model", k) for k in cfg.sample.subsets)]
    return Stage("sample", outputs, run, config | {"name": cfg.name},
                 reads=["select/choice.json", "train/checkpoints", *reads], resumable=True,
                 help="test prompts, LIMA decoding, chosen checkpoint")  # fmt: skip


def baseline_stages(cfg: RunConfig) -> list[Stage]:
    stages = []
    for b in cfg.baselines:
        out = f"answers/{b.name}.jsonl"

        def run(root: Path, b=b, out=out) -> str:
            if b.kind == "in-context":
                shots = _write_shots(cfg, root, b)
                n = _generate(cfg, root, b.model, root / out, b.name, b.kind, str(root / shots))
                return f"{n} answers from {b.model}, in context of {shots} -> {out}"
            if b.model is not None:
                n = _generate(cfg, root, b.model, root / out, b.name, b.kind or b.template)
                return f"{n} answers from {b.model} -> {out}"
            src = Path(b.answers) if b.answers else Path(b.run) / "answers" / "model.jsonl"
            rows = list(read_examples(src, require_answer=True))
            ids = {p.id for p in sampled_prompts(cfg, root)}
            missing = ids - {r.id for r in rows}
            if missing:
                raise LimaError(f"{src}: no answer for {len(missing)} test prompt(s), e.g. "
                                f"{sorted(missing)[:3]}")  # fmt: skip
            write_examples(root / out, [r for r in rows if r.id in ids])
            return f"{len(rows)} answers copied from {src} -> {out}"

        config, reads = _sample_key(cfg)
        outputs = [out]
        if b.model is not None:
            outputs += [subset_file(b.name, k) for k in cfg.sample.subsets]
        if b.kind == "in-context":
            outputs.append(_shots_file(b))
            reads = [*reads, training_data(cfg)]
        if b.model is not None:
            config, inputs = config | {"baseline": _dump(b)}, _local([b.model])
        else:
            src = b.answers or str(Path(b.run or "") / "answers" / "model.jsonl")
            config, inputs = config | {"baseline": b.name}, [src]
        stages.append(Stage(f"baseline-{b.name}", outputs, run, config, inputs=inputs, reads=reads,
                            resumable=b.model is not None, help=f"baseline {b.name}"))  # fmt: skip
    return stages


def _shots_file(b) -> str:
    return f"answers/{b.name}.shots.jsonl"


def _write_shots(cfg: RunConfig, root: Path, b) -> str:
    """The in-context baseline's example exchanges, drawn (seeded) from the training examples."""
    from limakit.generation.layouts import pick_shots

    examples = list(read_examples(root / training_data(cfg), require_answer=True))
    shots = pick_shots(examples, k=b.shots, seed=cfg.sample.seed)
    if not shots:
        raise LimaError(f"{training_data(cfg)}: no single-turn example short enough to show "
                        f"in context (baseline {b.name})")  # fmt: skip
    write_examples(root / _shots_file(b), shots)
    return _shots_file(b)


# --- judge -------------------------------------------------------------------------------------


def judge_stage(cfg: RunConfig) -> Stage:
    ev = cfg.evaluate
    names = ["model", *(b.name for b in cfg.baselines)]

    def run(root: Path) -> str:
        from limakit.evaluation import auto_checks, judge_likert, judge_pairwise, judge_rate

        ans, out = root / "answers", root / "judge"
        out.mkdir(parents=True, exist_ok=True)
        parts = []
        if ev.checks:
            refs = prompts_path(cfg, root)  # held-out curated answers are references
            checks = {n: auto_checks(ans / f"{n}.jsonl", references=refs) for n in names}
            write_json(out / "checks.json", checks)
            for k in cfg.sample.subsets:  # each system that answered the subset
                sub = {n: auto_checks(root / subset_file(n, k))
                       for n in names if (root / subset_file(n, k)).exists()}  # fmt: skip
                write_json(out / f"checks-{k}.json", sub)
            parts.append("ends its turn: " + ", ".join(
                f"{n} {c['measures']['ends_turn']['value']:.0%}" for n, c in checks.items()))  # fmt: skip
        for b in names[1:] if ev.pairwise else []:
            s = judge_pairwise(
                ans / "model.jsonl", ans / f"{b}.jsonl", cfg.judge, out / f"pairwise-{b}"
            )
            parts.append(f"vs {b}: win {s['win']:.0%} tie {s['tie']:.0%} lose {s['lose']:.0%}, "
                         f"consistency {s['consistency'] or 0:.0%}")  # fmt: skip
        for n in names if ev.likert else []:
            s = judge_likert(ans / f"{n}.jsonl", cfg.judge, out / f"likert-{n}", samples=None)
            parts.append(f"{n} Likert {s['mean'] if s['mean'] is not None else '-'}")
        for n in names if ev.rate else []:
            s = judge_rate(ans / f"{n}.jsonl", cfg.judge, out / f"rate-{n}")
            parts.append(f"{n} excellent {s.get('excellent', 0):.0%}")
        if not parts:
            raise LimaError("evaluate: every judgement is off (pairwise needs a baseline)")
        return "; ".join(parts) + " -> judge/"

    config = {"evaluate": _dump(ev), "judge": _dump(cfg.judge) if cfg.judge else None,
              "answers": names}  # fmt: skip
    reads = [f"answers/{n}.jsonl" for n in names]
    reads += ["data/test.jsonl"] if cfg.sample.prompts == "curated" and ev.checks else []
    sampled = ["model", *(b.name for b in cfg.baselines if b.model is not None)]
    reads += [subset_file(n, k) for k in cfg.sample.subsets for n in sampled] if ev.checks else []
    return Stage("judge", ["judge"], run, config, reads=reads,
                 help="pairwise in both orders, Likert, rating, automatic checks")  # fmt: skip


def report_stage(cfg: RunConfig) -> Stage:
    def run(root: Path) -> str:
        from limakit.run.run_report import write_run_report

        path = write_run_report(cfg, root)
        return f"report -> {path.relative_to(root)}"

    reads = ["data/examples.jsonl", "train/metrics.jsonl", "select/choice.json", "judge"]
    reads += ["shift"] if cfg.shift_base() else []
    config = {"notes": cfg.notes, "name": cfg.name, "baselines": [b.name for b in cfg.baselines],
              "caps": cfg.sampling_caps(), "allow_short_cap": cfg.allow_short_cap}  # fmt: skip
    return Stage("report", ["report"], run, config, reads=reads,
                 help="Markdown + HTML: data card, training curve, choice, verdicts, checks")  # fmt: skip


def stages(cfg: RunConfig) -> list[Stage]:
    from limakit.run.shift_stage import shift_stage

    grow = [backtranslate_stage(cfg)] if cfg.data.backtranslate else []
    shift = [s] if (s := shift_stage(cfg)) is not None else []
    return [data_stage(cfg), *grow, train_stage(cfg), select_stage(cfg), sample_stage(cfg),
            *baseline_stages(cfg), judge_stage(cfg), *shift, report_stage(cfg)]  # fmt: skip
