"""Resumable, content-keyed steps in one folder: what `lima run` and `lima backtranslate` share.

A step declares what it depends on: its settings (``config``, any JSON-able value), the files it
reads from outside the folder (``inputs``: raw dumps, a model folder) and the files earlier steps
wrote that it reads (``reads``, relative to the folder). The hash of those is the step's **key**.

One marker per step, ``MARKERS/NAME.json``, written atomically, in one format:

* before the work: ``{"name", "state": "running", "key", "seconds_before"}``;
* after it: ``{"name", "state": "done", "key", "declared", "outputs", "summary", "seconds"}``,
  where ``outputs`` holds the SHA-256 of every file under the declared outputs (a symlink by its
  target) and ``summary`` is what the step's work returned.

A step is skipped only when its marker is ``done`` with the key computed now *and* every output
still has its recorded hash (no file missing, changed or added); otherwise it runs again, so an
output damaged on disk is found and redone. A resumable step killed mid-way (``running``, same
key) continues from its partial outputs; any other step starts from cleared outputs. Whatever an
earlier step rewrote with other content changes the key of every step that ``reads`` it.

With a ``cache`` folder, finished outputs are also kept there (hard links) under their key, and a
step with the same key in another folder (an ablation arm) takes them instead of running.

>>> steps = StepFolder(Path("out"), markers="steps")  # doctest: +SKIP
>>> steps.run(Step("hello", ["hello.txt"], write_hello, config={"n": 1})).status  # doctest: +SKIP
'ran'
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

from limakit.core.errors import LimaError
from limakit.core.faults import crash_point
from limakit.core.files import digest, sha256_file, write_json

DAMAGED = "output damaged"  # how the reason to rerun a step with a damaged output begins


@dataclass
class Step:
    name: str
    outputs: list[str]  # files or folders relative to the folder, written only by this step
    run: Callable[[Path], Any]  # does the work in the folder; returns a JSON-able summary
    config: Any = None  # the step's resolved settings (JSON-able), part of its key
    inputs: list[str] = field(default_factory=list)  # files/folders outside the folder, hashed
    reads: list[str] = field(default_factory=list)  # outputs of earlier steps it reads
    help: str = ""
    resumable: bool = False  # may continue from partial outputs after a kill (same key)
    scratch: list[str] = field(default_factory=list)  # cleared with the outputs, never hashed


@dataclass
class StepResult:
    name: str
    status: str  # "ran", "skipped" (marker matched), "cached" (outputs from the shared cache)
    summary: Any  # what the work returned, now or when it ran
    seconds: float  # how long the work took (for a skipped or cached step: when it ran)
    why: str = ""  # why it ran: first run, changed key, damaged output...
    key: str = ""


# --- hashing -----------------------------------------------------------------------------------


def tree_files(root: Path, rel: str) -> list[str]:
    """Every file under ``root/rel`` (or ``rel`` itself), as sorted ``root``-relative paths."""
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
    """Content hashes of files outside the folder, remembered by (size, mtime, inode) in a small
    JSON file so that a multi-gigabyte dump or model folder is read once, not on every rerun."""

    def __init__(self, path: Path):
        self.path = path
        # path -> [size, mtime_ns, inode, sha256]
        self.known: dict[str, list[int | str]] = {}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError, ValueError):  # start afresh
            loaded = json.loads(path.read_text(encoding="utf-8"))
            self.known = loaded if isinstance(loaded, dict) else {}
        self.dirty = False

    def file(self, p: Path) -> str:
        st = p.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = str(p.resolve())
        hit = self.known.get(key)
        if hit and hit[:3] == stamp:
            return str(hit[3])
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
    except (FileNotFoundError, NotADirectoryError, ValueError):  # JSON and UTF-8 errors too
        return None
    return m if isinstance(m, dict) else None


def damaged(root: Path, marker: dict) -> str | None:
    """The first output that is missing, added or no longer has its recorded hash, else None."""
    recorded: dict[str, str] = marker.get("outputs") or {}
    now = set()
    for out in marker.get("declared", []):
        now.update(tree_files(root, out))
    extra = sorted(now - set(recorded))
    if extra:
        return f"{extra[0]} was not among the outputs recorded"
    for rel, h in recorded.items():
        p = root / rel
        if not _exists(p):
            return f"{rel} is missing"
        if hash_entry(p) != h:
            return f"{rel} does not match its recorded hash"
    return None


def clear(root: Path, paths: list[str]) -> None:
    for rel in paths:
        p = root / rel
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p)


# --- a folder of steps -------------------------------------------------------------------------


class StepFolder:
    """The steps of one folder, their markers under ``root/markers``; :meth:`run` runs one.

    ``label`` names the crash point after each marker (``LABEL:after:NAME``), where the resume
    tests kill the process.
    """

    def __init__(self, root: Path, markers: str, *, label: str, cache: Path | None = None):
        self.root = Path(root)
        self.markers = self.root / markers
        self.label = label
        self.cache = cache
        self.hasher = InputHasher(self.markers / "input-hashes.json")
        self.produced: dict[str, str] = {}  # file -> hash, from the markers of the steps seen

    def marker_path(self, name: str) -> Path:
        return self.markers / f"{name}.json"

    def read(self, name: str) -> dict | None:
        return read_marker(self.marker_path(name))

    def last_seconds(self, name: str) -> float | None:
        """How long the step took when it last ran, if known."""
        return _seconds(self.read(name))

    def key(self, step: Step) -> str:
        reads = {}
        for r in step.reads:
            files = tree_files(self.root, r)
            if not files:
                raise LimaError(f"{step.name}: reads {r}, which no earlier step wrote")
            reads.update({f: self.produced.get(f) or hash_entry(self.root / f) for f in files})
        key = digest(
            {
                # "stage": the name keys were first made under; renaming it reruns every step.
                "stage": step.name,
                "config": step.config,
                "inputs": {i: self.hasher.entry(i) for i in step.inputs},
                "reads": reads,
            }
        )
        self.hasher.save()
        return key

    def why(self, marker: dict | None, key: str) -> str | None:
        """None when the step can be skipped, else the reason it runs."""
        if marker is None:
            return "first run"
        if marker.get("state") != "done":
            return "not finished last time"
        if marker.get("key") != key:
            return "its config or inputs changed"
        bad = damaged(self.root, marker)
        return f"{DAMAGED}: {bad}" if bad else None

    def run(
        self, step: Step, on_start: Callable[[Step, str, bool], None] | None = None
    ) -> StepResult:
        """Skip ``step``, take it from the cache, or run it; ``on_start(step, why, resuming)`` is
        called just before the work starts."""
        key = self.key(step)
        marker = self.read(step.name)
        why = self.why(marker, key)
        if why is None:
            assert marker is not None
            self.produced.update(marker["outputs"])
            took = _seconds(marker) or 0.0
            return StepResult(step.name, "skipped", marker.get("summary"), took, "", key)
        cached = self._from_cache(step, key)
        if cached is not None:
            self.produced.update(cached["outputs"])
            took = _seconds(cached) or 0.0
            return StepResult(step.name, "cached", cached["summary"], took, why, key)
        resuming = (
            step.resumable
            and marker is not None
            and marker.get("state") == "running"
            and marker.get("key") == key
        )
        if not resuming:
            clear(self.root, [*step.outputs, *step.scratch])
        running = {"name": step.name, "state": "running", "key": key}
        write_json(self.marker_path(step.name), running | {"seconds_before": _seconds(marker)})
        if on_start is not None:
            on_start(step, why, resuming)
        start = time.perf_counter()
        summary = step.run(self.root)
        seconds = time.perf_counter() - start
        missing = [o for o in step.outputs if not _exists(self.root / o)]
        if missing:
            raise LimaError(f"{step.name}: did not write its output {missing[0]}")
        done = {
            "name": step.name,
            "state": "done",
            "key": key,
            "declared": step.outputs,
            "outputs": hash_outputs(self.root, step.outputs),
            "summary": summary,
            "seconds": round(seconds, 3),
        }
        write_json(self.marker_path(step.name), done)
        self.produced.update(done["outputs"])
        self._to_cache(step, done)
        crash_point(f"{self.label}:after:{step.name}")  # resume tests: a kill right after a marker
        return StepResult(step.name, "ran", summary, seconds, why, key)

    # --- the shared cache ----------------------------------------------------------------------

    def _cache_dir(self, step: Step, key: str) -> Path | None:
        return self.cache / f"{step.name}-{key[:24]}" if self.cache else None

    def _to_cache(self, step: Step, marker: dict) -> None:
        where = self._cache_dir(step, marker["key"])
        if where is None or (where / "marker.json").exists():
            return
        tmp = where.with_name(where.name + f".tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        for rel in marker["outputs"]:
            _link_or_copy(self.root / rel, tmp / "files" / rel)
        write_json(tmp / "marker.json", marker)
        shutil.rmtree(where, ignore_errors=True)
        os.replace(tmp, where)

    def _from_cache(self, step: Step, key: str) -> dict | None:
        """The cached marker, its outputs linked into place; None when the cache lacks them."""
        where = self._cache_dir(step, key)
        if where is None:
            return None
        marker = read_marker(where / "marker.json")
        if marker is None or marker.get("key") != key or damaged(where / "files", marker):
            return None
        clear(self.root, [*step.outputs, *step.scratch])
        for rel in marker["outputs"]:
            _link_or_copy(where / "files" / rel, self.root / rel)
        write_json(self.marker_path(step.name), marker)
        return marker


def _exists(p: Path) -> bool:
    return p.exists() or p.is_symlink()


def _seconds(marker: dict | None) -> float | None:
    """How long the step took when it last ran (a killed run: the run before it), if known."""
    m = marker or {}
    return m.get("seconds") or m.get("seconds_before")


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
