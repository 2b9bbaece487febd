"""Per-step reporting: ``metrics.jsonl``, a progress bar, and TensorBoard when installed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from limakit.core.console import progress
from limakit.core.files import append_jsonl, read_jsonl_records, write_jsonl


class Reporter:
    """Writes one JSON row per optimizer step and drives the progress bar (main process only)."""

    def __init__(self, run: Path, total: int, done: int, enabled: bool = True):
        self.enabled = enabled
        if not enabled:
            return
        path = run / "metrics.jsonl"
        if path.exists():  # on resume, drop rows of steps the checkpoint does not contain
            rows = read_jsonl_records(path, resumable=True)  # a kill may have cut the last row
            write_jsonl(path, [row for _, row in rows if row.get("step", 0) <= done])
        self.file = path.open("a", encoding="utf-8")
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run / "tensorboard"))
        except ImportError:  # tensorboard is optional
            pass
        self.bar = progress("train", total, completed=done, status="loss - - tok/s", eta=True)
        self.bar.start()

    def step(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        append_jsonl(self.file, row)
        if self.tb is not None:
            for k in ("loss", "lr", "tokens_per_s", "padding"):
                self.tb.add_scalar(f"train/{k}", row[k], row["step"])
        self.bar.advance()
        self.bar.update(status=f"loss {row['loss']:.4f} {row['tokens_per_s']:.0f} tok/s")

    def close(self) -> None:
        if not self.enabled:
            return
        self.bar.stop()
        self.file.close()
        if self.tb is not None:
            self.tb.close()
