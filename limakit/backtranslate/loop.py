"""The back-translation loop, one resumable step at a time (see :mod:`limakit.core.steps`).

Folder layout of ``out``::

    texts/texts.jsonl, texts/dropped.jsonl       hygiene: the texts kept, and each drop with its rule
    backward/examples.jsonl, backward/run/       the reversed seed, and the backward model
    augment/instructions.jsonl                   one written instruction per text (resumable)
    augment/pairs.jsonl, augment/dropped.jsonl   the candidate (instruction, text) pairs
    forward-0/ ... forward-K/                    forward models (rater=forward): seed, then seed + kept
    round-K/ratings.jsonl, round-K/kept.jsonl, round-K/dropped.jsonl
    examples.jsonl, augmented.jsonl              seed + the last round's kept pairs; those pairs alone
    summary.json, card.md, *.png                 counts, times and the card
    steps/NAME.json                              each step's marker (key, output hashes)
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from limakit.backtranslate.config import BacktranslateConfig
from limakit.core.console import note
from limakit.core.errors import LimaError
from limakit.core.files import (
    make_folder,
    read_jsonl_records,
    sha256_file,
    write_json,
    write_jsonl,
)
from limakit.core.steps import Step, StepFolder
from limakit.records.example import Example, Message, load_examples, write_examples


def _rows(path: Path) -> list[dict]:
    return [row for _, row in read_jsonl_records(path)] if path.exists() else []


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class Loop:
    """One back-translation run in ``cfg.out``; :meth:`run` does every step not done yet."""

    def __init__(self, cfg: BacktranslateConfig) -> None:
        self.cfg = cfg
        self.root = Path(cfg.out)
        self.steps = StepFolder(self.root, "steps", label="backtranslate")
        self.ran: list[str] = []
        self.skipped: list[str] = []
        if cfg.seed is None:
            raise LimaError("seed: give the seed pairs (--seed SEED.jsonl)")
        seed_path = Path(cfg.seed)
        if not seed_path.is_file():
            raise LimaError(f"{seed_path}: seed pairs not found")
        self.seed = load_examples(seed_path, require_answer=True)
        if not self.seed:
            raise LimaError(f"{seed_path}: no seed pairs")
        self.seed_hash = sha256_file(seed_path)
        self.keys: dict[str, str] = {}
        self.info: dict[str, dict] = {}

    # --- helpers ------------------------------------------------------------------------------

    def _step(self, name, config, outputs, work, scratch=(), inputs=()):
        """Run ``work()`` unless done; returns what it counted, with its seconds.

        ``outputs``: the files whose hashes make the marker (small files; a model folder is
        represented by its summary). ``scratch``: files and folders removed before a fresh start.
        """
        step = Step(name, outputs, lambda root: work(), config, inputs=list(inputs),
                    resumable=True, scratch=list(scratch))  # fmt: skip
        result = self.steps.run(step, self._starting)
        self.keys[name] = result.key
        if result.status == "skipped":
            self.skipped.append(name)
            self._say(f"{name}: done earlier, skipped")
        else:
            self.ran.append(name)
        self.info[name] = {**(result.summary or {}), "seconds": round(result.seconds, 2)}
        return self.info[name]

    def _starting(self, step: Step, why: str, resuming: bool) -> None:
        self._say(f"{step.name}: {'resuming' if resuming else 'running'}")

    def _say(self, text: str) -> None:
        if self.cfg.progress:
            note(f"[backtranslate] {text}")

    def _train(self, name: str, examples: list[Example], key_parts: dict) -> Path:
        from limakit.backtranslate.training import train_model

        folder = self.root / name

        def work() -> dict:
            data = folder / "examples.jsonl"
            if not data.exists():  # a fresh start cleared the folder; a resumed one keeps it
                write_examples(data, examples)
            ckpt = train_model(self.cfg.train, data, folder / "run")
            return {"examples": len(examples), "checkpoint": _rel(ckpt, self.root)}

        info = self._step(
            name,
            {**key_parts, "train": self.cfg.train.model_dump(mode="json")},
            [f"{name}/run/summary.json"],
            work,
            scratch=[name],
        )
        return self.root / info["checkpoint"]

    # --- steps --------------------------------------------------------------------------------

    def texts(self) -> list[dict]:
        from limakit.backtranslate.texts import gather, hygiene

        cfg = self.cfg

        def work() -> dict:
            drops: list[dict] = []
            read = gather(cfg.texts, cfg.hygiene, drops)
            kept = hygiene(read, self.seed, cfg.hygiene, cfg.random_seed, drops)
            dropped = write_jsonl(self.root / "texts/dropped.jsonl", drops)
            if not kept:
                raise LimaError(
                    f"{cfg.out}: no text passed hygiene ({len(read)} read, {dropped} drops with "
                    f"their rule in {self.root / 'texts/dropped.jsonl'})"
                )
            write_jsonl(self.root / "texts/texts.jsonl", kept)
            return {
                "read": len(read),
                "kept": len(kept),
                "dropped": dict(Counter(d["rule"] for d in drops)),
            }

        for p in cfg.texts:
            if not Path(p).exists():
                raise LimaError(f"{p}: texts not found")
        key = {
            "hygiene": cfg.hygiene.model_dump(mode="json"),
            "seed": self.seed_hash,
            "random_seed": cfg.random_seed,
        }
        outputs = ["texts/texts.jsonl", "texts/dropped.jsonl"]
        self._step("texts", key, outputs, work, inputs=cfg.texts)
        return _rows(self.root / "texts/texts.jsonl")

    def backward(self) -> Path:
        from limakit.backtranslate.training import reversed_example

        return self._train(
            "backward", [reversed_example(ex) for ex in self.seed], {"seed": self.seed_hash}
        )

    def augment(self, texts: list[dict], backward: Path) -> list[dict]:
        from limakit.generation import generate_answers
        from limakit.generation.batch import model_for_answers

        cfg = self.cfg.augment
        folder = self.root / "augment"

        def work() -> dict:
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(backward)
            prompts = []
            for t in texts:
                ids = tok(t["text"], add_special_tokens=False)["input_ids"]
                shown = (
                    t["text"]
                    if len(ids) <= cfg.max_text_tokens
                    else tok.decode(ids[: cfg.max_text_tokens])
                )
                prompts.append(Example([Message("user", shown)], source=t["source"], id=t["id"]))
            folder.mkdir(parents=True, exist_ok=True)
            load = model_for_answers(backward, device=cfg.device, dtype=cfg.dtype,
                                     template=cfg.decode.template, backend=cfg.backend)  # fmt: skip
            answers = generate_answers(
                load,
                prompts,
                samples=1,
                seed=self.cfg.random_seed,
                config=cfg.decode,
                out=folder / "instructions.jsonl",
                batch_size=cfg.batch_size,
                model_name=_rel(backward, self.root),
                progress=self.cfg.progress,
                backend=cfg.backend,
            )
            by_id = {t["id"]: t for t in texts}
            pairs, drops = [], []
            tokens = 0
            for ex in answers:
                t = by_id[ex.id]
                instruction = (ex.answer or "").strip()
                tokens += int(ex.meta.get("new_tokens") or 0)
                row = {
                    "id": t["id"],
                    "rule": "",
                    "reason": "",
                    "step": "augment",
                    "chars": len(t["text"]),
                }
                if not instruction:
                    drops.append({**row, "rule": "empty_instruction", "reason": "nothing written"})
                elif cfg.drop_cut_off and ex.meta.get("stop") == "length":
                    drops.append(
                        {
                            **row,
                            "rule": "instruction_cut_off",
                            "reason": f"stopped at max_new_tokens={cfg.decode.max_new_tokens}",
                            "instruction": instruction,
                        }
                    )
                else:
                    pairs.append(
                        {
                            "id": t["id"],
                            "instruction": instruction,
                            "text": t["text"],
                            "source": t["source"],
                            "meta": t["meta"],
                            "stop": ex.meta.get("stop"),
                        }
                    )
            write_jsonl(folder / "dropped.jsonl", drops)
            write_jsonl(folder / "pairs.jsonl", pairs)
            return {
                "texts": len(texts),
                "pairs": len(pairs),
                "new_tokens": tokens,
                "dropped": dict(Counter(d["rule"] for d in drops)),
            }

        key = {
            "texts": self.keys["texts"],
            "backward": self.keys["backward"],
            "augment": cfg.model_dump(mode="json"),
            "random_seed": self.cfg.random_seed,
        }
        self._step(
            "augment",
            key,
            ["augment/pairs.jsonl", "augment/dropped.jsonl"],
            work,
            scratch=["augment/instructions.jsonl"],
        )
        return _rows(folder / "pairs.jsonl")

    def rate(self, k: int, pairs: list[dict], forward: Path | None) -> list[dict]:
        from limakit.backtranslate.rating import forward_judge, rate_pairs, rating_prompt

        rc = self.cfg.rate
        name = f"round-{k}"
        if forward is not None:
            judge = forward_judge(str(forward), rc)
            cache = self.root / name / "cache.sqlite"
            rater = {"forward": self.keys[f"forward-{k - 1}"]}
        else:
            judge = rc.judge
            cache = Path(judge.cache) if judge.cache else self.root / "judge-cache.sqlite"
            rater = {"judge": judge.model_dump(mode="json", exclude={"cache"})}

        def work() -> dict:
            rows = rate_pairs(pairs, judge, cache, f"round {k}: rating")
            write_jsonl(self.root / name / "ratings.jsonl", rows)
            return {
                "rated": len(rows),
                "scores": dict(Counter(str(r["score"]) for r in rows)),
                "calls": sum(r["calls"] for r in rows),
            }

        key = {
            "pairs": self.keys["augment"],
            "rater": rater,
            "prompt": rating_prompt().version,
        }
        cache_files = [
            f"{name}/cache.sqlite",
            f"{name}/cache.sqlite-wal",
            f"{name}/cache.sqlite-shm",
        ]
        scratch = cache_files if forward else []
        self._step(f"rate-{k}", key, [f"{name}/ratings.jsonl"], work, scratch)
        return _rows(self.root / name / "ratings.jsonl")

    def keep(
        self, k: int, pairs: list[dict], ratings: list[dict], backward: Path, forward: Path | None
    ) -> list[Example]:
        rc = self.cfg.rate
        name = f"round-{k}"
        forward_name = _rel(forward, self.root) if forward else f"judge:{rc.judge.model}"

        def work() -> dict:
            by_id = {r["id"]: r for r in ratings}
            kept, drops = [], []
            for p in pairs:
                r = by_id[p["id"]]
                row = {"id": p["id"], "step": name, "chars": len(p["text"]), "score": r["score"]}
                if r["score"] is None:
                    rule = "judge_error" if r.get("error") else "unparsable"
                    reason = r.get("error") or f"no single score 1-5 in: {(r['raw'] or [''])[-1]!r}"
                    drops.append({**row, "rule": rule, "reason": reason[:300]})
                elif r["score"] < rc.threshold:
                    drops.append(
                        {
                            **row,
                            "rule": "below_threshold",
                            "reason": f"score {r['score']} < {rc.threshold}",
                        }
                    )
                else:
                    meta = {
                        **p["meta"],
                        "backtranslation": {
                            "text_id": p["id"],
                            "round": k,
                            "score": r["score"],
                            "backward_model": _rel(backward, self.root),
                            "forward_model": forward_name,
                        },
                    }
                    kept.append(
                        Example(
                            [Message("user", p["instruction"]), Message("assistant", p["text"])],
                            source=p["source"],
                            id=f"bt-{p['id']}",
                            meta=meta,
                        )
                    )
            write_jsonl(self.root / name / "dropped.jsonl", drops)
            write_examples(self.root / name / "kept.jsonl", kept)
            return {"kept": len(kept), "dropped": dict(Counter(d["rule"] for d in drops))}

        key = {"ratings": self.keys[f"rate-{k}"], "threshold": rc.threshold}
        self._step(f"keep-{k}", key, [f"{name}/kept.jsonl", f"{name}/dropped.jsonl"], work)
        return load_examples(self.root / name / "kept.jsonl")

    def forward(self, k: int, kept: list[Example]) -> Path:
        from limakit.backtranslate.training import forward_example, tagged

        tags = self.cfg.system_tags
        data = [forward_example(ex, tags) for ex in self.seed]
        data += [tagged(ex, augmented=True) if tags else ex for ex in kept]
        key = {"seed": self.seed_hash, "tags": tags}
        if k > 0:
            key["kept"] = self.keys[f"keep-{k}"]
        return self._train(f"forward-{k}", data, key)

    def final(self, kept: list[Example]) -> dict:
        from limakit.backtranslate.training import forward_example, tagged

        tags = self.cfg.system_tags

        def work() -> dict:
            out = [tagged(ex, augmented=True) if tags else ex for ex in kept]
            write_examples(self.root / "augmented.jsonl", out)
            seed = [forward_example(ex, tags) for ex in self.seed]
            write_examples(self.root / "examples.jsonl", seed + out)
            return {"seed": len(seed), "augmented": len(out)}

        key = {"kept": self.keys[f"keep-{self.cfg.rounds}"], "tags": tags, "seed": self.seed_hash}
        return self._step("final", key, ["examples.jsonl", "augmented.jsonl"], work)

    def card(self) -> dict:
        from limakit.backtranslate.card import write_card

        def work() -> dict:
            return write_card(self.root, self.cfg, self.info)

        key = {
            "final": self.keys["final"],
            "steps": {k: v for k, v in self.keys.items()},
            "embedder": self.cfg.embedder,
            "random_seed": self.cfg.random_seed,
            "card": 1,
        }
        return self._step("card", key, ["card.md"], work)

    # --- the loop -----------------------------------------------------------------------------

    def run(self) -> dict:
        cfg = self.cfg
        make_folder(self.root, "output folder (--out)")
        cfg.save(self.root / "config.yaml")
        texts = self.texts()
        backward = self.backward()
        pairs = self.augment(texts, backward)
        if not pairs:
            raise LimaError(
                f"{cfg.out}: the backward model wrote no usable instruction; see "
                "augment/dropped.jsonl"
            )
        by_forward = cfg.rate.rater == "forward"
        forward = self.forward(0, []) if by_forward else None
        kept: list[Example] = []
        for k in range(1, cfg.rounds + 1):
            if k > 1 and by_forward:
                forward = self.forward(k - 1, kept)
            ratings = self.rate(k, pairs, forward)
            kept = self.keep(k, pairs, ratings, backward, forward)
        self.final(kept)
        self.card()
        summary = {
            "out": str(self.root),
            "steps": self.info,
            "ran": self.ran,
            "skipped": self.skipped,
            "examples": len(self.seed) + len(kept),
            "augmented": len(kept),
        }
        write_json(self.root / "summary.json", summary)
        return summary


def backtranslate(cfg: BacktranslateConfig) -> dict:
    """Run (or resume) instruction back-translation into ``cfg.out``; returns the summary
    (per step: its counts and seconds; which steps ran and which were skipped)."""
    summary = Loop(cfg).run()
    note(f"[backtranslate] done: {cfg.out}/examples.jsonl")
    return summary
