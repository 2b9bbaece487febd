"""Done markers for the back-translation steps, in the manner of ``lima run``'s stages.

A step's **key** is the hash of what it depends on (its settings and the keys of the steps it
reads). Before it works, ``steps/NAME.json`` says ``running`` with the key; after its outputs are
written (each atomically), the marker is rewritten atomically as ``done`` with the key and the
SHA-256 of every listed output file. A rerun skips a step whose marker is ``done`` with the same
key and intact outputs; a step killed mid-way (``running``, same key) resumes from its partial
outputs (a training run from its checkpoint, instructions and ratings from what was written); a
step whose key changed starts from empty outputs.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from limakit.core.faults import crash_point
from limakit.core.files import sha256_file, write_json


@dataclass
class StepLog:
    """The markers of one output folder, and what each step did in this run."""

    root: Path
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    quiet: bool = False

    def marker(self, name: str) -> Path:
        return self.root / "steps" / f"{name}.json"

    def read(self, name: str) -> dict | None:
        try:
            obj = json.loads(self.marker(name).read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
            return None
        return obj if isinstance(obj, dict) else None

    def is_done(self, name: str, key: str, outputs: list[str]) -> bool:
        m = self.read(name)
        if not m or m.get("status") != "done" or m.get("key") != key:
            return False
        hashes = m.get("outputs") or {}
        if set(hashes) != set(outputs):
            return False
        for rel in outputs:
            p = self.root / rel
            if not p.is_file() or sha256_file(p) != hashes[rel]:
                return False
        return True

    def run(
        self,
        name: str,
        key: str,
        outputs: list[str],
        work: Callable[[bool], dict | None],
        clear: list[str] = (),
    ) -> dict:
        """Run ``work(resuming)`` unless done; returns the step's recorded info.

        ``outputs``: the files whose hashes make the marker (small files; a model folder is
        represented by its summary). ``clear``: files and folders removed before a fresh start.
        """
        if self.is_done(name, key, outputs):
            self.skipped.append(name)
            self._say(f"{name}: done earlier, skipped")
            return self.read(name).get("info") or {}
        m = self.read(name)
        resuming = bool(m and m.get("status") == "running" and m.get("key") == key)
        if not resuming:
            for rel in [*outputs, *clear]:
                p = self.root / rel
                if p.is_dir():
                    shutil.rmtree(p)
                elif p.exists():
                    p.unlink()
        write_json(self.marker(name), {"status": "running", "key": key})
        self._say(f"{name}: {'resuming' if resuming else 'running'}")
        info = work(resuming) or {}
        hashes = {rel: sha256_file(self.root / rel) for rel in outputs}
        write_json(
            self.marker(name), {"status": "done", "key": key, "outputs": hashes, "info": info}
        )
        self.ran.append(name)
        crash_point(f"backtranslate:{name}")  # resume tests kill the run right after a step
        return info

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(f"[backtranslate] {text}", file=sys.stderr)
