"""A detector of tensors made without a device: what breaks only on a GPU, caught on a CPU.

On a CPU a tensor created without ``device=`` lands where the model is, so a forgotten device only
fails on a GPU. :class:`DevicelessFactories` records every tensor factory call (``torch.zeros``,
``arange``...) that names no device, with the first calling function outside torch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode

import limakit

FACTORIES = {
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.arange,
    torch.tensor,
    torch.as_tensor,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.eye,
    torch.linspace,
}
PACKAGE = str(Path(limakit.__file__).parent)
TORCH = str(Path(torch.__file__).parent)
COMPREHENSIONS = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}


class DevicelessFactories(TorchFunctionMode):
    """Records (file, function) of the first caller outside torch for each device-less factory."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None:
            frame = sys._getframe(1)
            # Past torch's own frames and comprehensions (their own frames before Python 3.12),
            # to the function that asked for the tensor.
            while frame is not None and (
                frame.f_code.co_filename.startswith(TORCH) or frame.f_code.co_name in COMPREHENSIONS
            ):
                frame = frame.f_back
            if frame is not None:
                self.calls.append((frame.f_code.co_filename, frame.f_code.co_name))
        return func(*args, **kwargs)
