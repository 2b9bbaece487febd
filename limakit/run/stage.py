"""A run directory and its stages, in order; a stage is skipped when its marker still matches.

Each stage declares what it depends on: its resolved config (a JSON-able value), the files it reads
from outside the run (raw data, a model folder) and the files earlier stages wrote that it reads
(``reads``, relative to the run directory). The hash of those is the stage's **key**. After a stage
has written its outputs, a completion marker ``stages/NAME.json`` is written atomically with the
key and the SHA-256 of every output file. On a rerun a stage is skipped only when its marker's key
equals the key computed now *and* every output file still has its recorded hash; otherwise it runs
again (a changed config or input, or an output damaged on disk). Whatever an earlier stage rewrote
with other content changes the key of every stage that reads it, so a changed stage reruns with
everything after it, and nothing else.

A stage killed mid-way left a ``running`` marker with its key: the next run lets it resume from its
partial outputs (a training run from its last checkpoint, answers from the last line written). A
stage whose key changed, or whose finished outputs were damaged, starts from empty outputs.

With a ``cache`` folder, finished outputs are also kept there (hard links) under their key, and a
stage with the same key in another run (an ablation arm) takes them instead of running.

>>> Pipeline(Path("run"), [Stage("hello", ["hello.txt"], write_hello, config={"n": 1})]).run()  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from limakit.core.errors import LimaError
from limakit.core.files import digest, sha256_file, write_json

MARKERS = "stages"  # folder of the run directory holding one marker per stage


@dataclass
class Stage:
    name: str
    outputs: list[str]  # files or folders relative to the run dir, written only by this stage
    run: Callable[[Path], str]  # does the work in the run dir; returns a one-line summary
    config: Any = None  # the stage's resolved config (JSON-able), part of its key
    inputs: list[str] = field(default_factory=list)  # files/folders outside the run, hashed
    reads: list[str] = field(default_factory=list)  # outputs of earlier stages it reads
    help: str = ""
    resumable: bool = False  # may continue from partial outputs after a kill (same key)


@dataclass
class StageResult:
    name: str
    status: str  # "ran", "skipped" (marker matched), "cached" (outputs from the shared cache)
    summary: str
    seconds: float
    why: str = ""  # why it ran: no marker, changed key, damaged output...


# --- hashing -----------------------------------------------------------------------------------


def tree_files(root: Path, rel: str) -> list[str]:
    """Every file under ``root/rel`` (or ``rel`` itself), as sorted run-relative paths."""
    p = root / rel
    if p.is_symlink() or p.is_file():
        return [rel]
    if not p.is_dir():
        return []
    out = []
    for dirpath, dirnames, filenames in os.walk(p):
        dirnames.sort()
        for name in filenames:
            out.append((Path(dirpath) / name).relative_to(root).as_posix())
    return sorted(out)


def hash_entry(path: Path) -> str:
    """A file's SHA-256; a symlink is recorded by its target, not followed."""
    if path.is_symlink():
        return "link:" + os.readlink(path)
    return sha256_file(path)


def hash_outputs(root: Path, outputs: list[str]) -> dict[str, str]:
    return {rel: hash_entry(root / rel) for out in outputs for rel in tree_files(root, out)}


class InputHasher:
    """Content hashes of files outside the run, remembered by (size, mtime, inode) in a small
    JSON file so that a multi-gigabyte dump or model folder is read once, not on every rerun."""

    def __init__(self, path: Path):
        self.path = path
        self.known: dict[str, list] = {}
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.known = loaded if isinstance(loaded, dict) else {}
        self.dirty = False

    def file(self, p: Path) -> str:
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(p.resolve())
        hit = self.known.get(key)
        if hit and hit[:3] == stamp:
            return hit[3]
        h = sha256_file(p)
        self.known[key] = [*stamp, h]
        self.dirty = True
        return h

    def entry(self, ref: str) -> Any:
        """A file's hash, a folder's hashes by relative path, or the plain string when ``ref``
        is not a local path (a hub id, a packaged alias: the name is all there is to hash)."""
        p = Path(ref)
        if p.is_file():
            return self.file(p)
        if p.is_dir():
            return {rel: self.file(p / rel) for rel in tree_files(p, ".")}
        return {"name": ref}

    def save(self) -> None:
        if self.dirty:
            write_json(self.path, self.known)
            self.dirty = False


# --- markers -----------------------------------------------------------------------------------


def read_marker(path: Path) -> dict | None:
    try:
        m = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return m if isinstance(m, dict) else None


def damaged(root: Path, marker: dict) -> str | None:
    """The first output that is missing or no longer has its recorded hash, else None."""
    recorded: dict[str, str] = marker.get("outputs") or {}
    now = set()
    for out in marker.get("declared", []):
        now.update(tree_files(root, out))
    extra = sorted(now - set(recorded))
    if extra:
        return f"{extra[0]} was not among the outputs recorded"
    for rel, h in recorded.items():
        p = root / rel
        if not (p.exists() or p.is_symlink()):
            return f"{rel} is missing"
        if hash_entry(p) != h:
            return f"{rel} does not match its recorded hash"
    return None


def clear(root: Path, outputs: list[str]) -> None:
    for out in outputs:
        p = root / out
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


def _fmt_time(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --- the pipeline ------------------------------------------------------------------------------


@dataclass
class Pipeline:
    run_dir: Path
    stages: list[Stage] = field(default_factory=list)
    console: Console = field(default_factory=lambda: Console(stderr=True, highlight=False))
    cache: Path | None = None  # shared stage cache (hard links), e.g. across ablation arms

    def _key(self, stage: Stage, hasher: InputHasher, produced: dict[str, str]) -> str:
        reads = {}
        for r in stage.reads:
            files = tree_files(self.run_dir, r)
            if not files:
                raise LimaError(f"stage {stage.name}: reads {r}, which no earlier stage wrote")
            reads.update({f: produced.get(f) or hash_entry(self.run_dir / f) for f in files})
        return digest(
            {
                "stage": stage.name,
                "config": stage.config,
                "inputs": {i: hasher.entry(i) for i in stage.inputs},
                "reads": reads,
            }
        )

    def run(self, only: list[str] | None = None) -> list[StageResult]:
        from limakit.core.faults import crash_point

        root = self.run_dir
        root.mkdir(parents=True, exist_ok=True)
        (root / MARKERS).mkdir(exist_ok=True)
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise LimaError(f"stage names repeat: {names}")
        hasher = InputHasher(root / MARKERS / "input-hashes.json")
        produced: dict[str, str] = {}  # run-relative file -> hash, from the markers of this run
        results: list[StageResult] = []
        total = len(self.stages)
        t_run = time.perf_counter()
        for i, stage in enumerate(self.stages, start=1):
            if only and stage.name not in only:
                continue
            marker_path = root / MARKERS / f"{stage.name}.json"
            key = self._key(stage, hasher, produced)
            hasher.save()
            marker = read_marker(marker_path)
            head = f"[bold cyan][{i}/{total}] {stage.name}[/bold cyan]"
            elapsed = f"elapsed {_fmt_time(time.perf_counter() - t_run)}"
            why = self._why(marker, key)
            if why is None:
                produced.update(marker["outputs"])
                self.console.print(f"{head} [dim]done earlier, inputs unchanged[/dim]")
                results.append(StageResult(stage.name, "skipped", marker.get("summary", ""), 0.0))
                continue
            if self._from_cache(stage, key, marker_path):
                marker = read_marker(marker_path)
                produced.update(marker["outputs"])
                self.console.print(f"{head} [dim]same key in the cache: outputs linked[/dim]")
                results.append(StageResult(stage.name, "cached", marker["summary"], 0.0, why))
                continue
            resume = (
                stage.resumable
                and marker is not None
                and marker.get("state") == "running"
                and marker.get("key") == key
            )
            if not resume:
                clear(root, stage.outputs)
            last = (marker or {}).get("seconds") or (marker or {}).get("seconds_before")
            running = {"state": "running", "key": key, "stage": stage.name, "seconds_before": last}
            write_json(marker_path, running)
            note = "resuming its partial outputs" if resume else why
            left = self._remaining(i - 1)
            timing = f"[dim]{elapsed}{f', about {_fmt_time(left)} left' if left else ''}[/dim]"
            self.console.print(f"{head} {stage.help} [dim]({note})[/dim] {timing}")
            start = time.perf_counter()
            summary = stage.run(root)
            seconds = time.perf_counter() - start
            outputs = hash_outputs(root, stage.outputs)
            if not outputs:
                raise LimaError(f"stage {stage.name}: wrote none of its outputs {stage.outputs}")
            marker = {
                "state": "done",
                "stage": stage.name,
                "key": key,
                "declared": stage.outputs,
                "outputs": outputs,
                "summary": summary,
                "seconds": round(seconds, 3),
            }
            write_json(marker_path, marker)
            produced.update(outputs)
            self._to_cache(stage, marker)
            self.console.print(f"    {summary} [dim]({_fmt_time(seconds)})[/dim]")
            results.append(StageResult(stage.name, "ran", summary, seconds, why))
            crash_point(f"run:after:{stage.name}")  # crash tests: a kill right after a marker
        self.console.print(
            f"[bold]run finished[/bold] in {_fmt_time(time.perf_counter() - t_run)}: "
            + ", ".join(f"{r.name} {r.status}" for r in results)
        )
        return results

    def _why(self, marker: dict | None, key: str) -> str | None:
        """None when the stage can be skipped, else the reason it runs."""
        if marker is None:
            return "first run"
        if marker.get("state") != "done":
            return "not finished last time"
        if marker.get("key") != key:
            return "its config or inputs changed"
        bad = damaged(self.run_dir, marker)
        if bad:
            self.console.print(
                f"    [yellow]output damaged: {bad}; running the stage again[/yellow]"
            )
            return f"output damaged: {bad}"
        return None

    def _remaining(self, done: int) -> float | None:
        """Seconds left, from the times the remaining stages took when they last ran."""
        left = 0.0
        for stage in self.stages[done:]:
            m = read_marker(self.run_dir / MARKERS / f"{stage.name}.json") or {}
            seconds = m.get("seconds") or m.get("seconds_before")
            if seconds is None:
                return None
            left += seconds
        return left or None

    # --- the shared cache ----------------------------------------------------------------------

    def _cache_dir(self, stage: Stage, key: str) -> Path | None:
        return self.cache / f"{stage.name}-{key[:24]}" if self.cache else None

    def _to_cache(self, stage: Stage, marker: dict) -> None:
        where = self._cache_dir(stage, marker["key"])
        if where is None or (where / "marker.json").exists():
            return
        tmp = where.with_name(where.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in marker["outputs"]:
            _link_or_copy(self.run_dir / rel, tmp / "files" / rel)
        write_json(tmp / "marker.json", marker)
        shutil.rmtree(where, ignore_errors=True)
        os.replace(tmp, where)

    def _from_cache(self, stage: Stage, key: str, marker_path: Path) -> bool:
        where = self._cache_dir(stage, key)
        if where is None:
            return False
        marker = read_marker(where / "marker.json")
        if marker is None or marker.get("key") != key or damaged(where / "files", marker):
            return False
        clear(self.run_dir, stage.outputs)
        for rel in marker["outputs"]:
            _link_or_copy(where / "files" / rel, self.run_dir / rel)
        write_json(marker_path, marker)
        return True


def _link_or_copy(src: Path, dst: Path) -> None:
    """A hard link (no extra space; outputs are replaced, never edited, after their marker)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dst)
        return
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
