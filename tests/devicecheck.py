"""Detectors of what breaks or stalls only on a GPU, caught on a CPU.

On a CPU a tensor created without ``device=`` lands where the model is, so a forgotten device only
fails on a GPU. :class:`DevicelessFactories` records every tensor factory call (``torch.zeros``,
``arange``...) that names no device, with the first calling function outside torch.
:class:`HostSyncs` records every operator that would make the host wait for a GPU (a scalar read,
a data-dependent shape), with the limakit function that asked for it.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

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


# Operators whose result the host must wait for on a GPU: a scalar read (``.item()``, ``float(t)``,
# ``if t:``), or an output whose size depends on the data.
SYNC_OPS = {
    "aten::_local_scalar_dense",
    "aten::item",  # what inference mode dispatches instead of the line above
    "aten::is_nonzero",
    "aten::equal",
    "aten::nonzero",
    "aten::masked_select",
    "aten::_unique2",
    "aten::unique_consecutive",
    "aten::unique_dim",
}
INDEX_OPS = {"aten::index", "aten::index_put", "aten::index_put_", "aten::_index_put_impl_"}


class HostSyncs(TorchDispatchMode):
    """Records, for every operator that makes the host wait for the device, its name and the
    limakit function that asked for it (the innermost limakit frame; "" if none).

    Boolean-mask indexing counts too (it runs ``nonzero`` inside the kernel, out of sight here).
    On a CPU nothing waits, but the same code on a GPU would: so a sync is caught without one.
    """

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[str, str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func._schema.name
        boolean_index = name in INDEX_OPS and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ())
        )
        if name in SYNC_OPS or boolean_index:
            frame = sys._getframe(1)
            while frame is not None and not frame.f_code.co_filename.startswith(PACKAGE):
                frame = frame.f_back
            self.calls.append((name, frame.f_code.co_name if frame is not None else ""))
        return func(*args, **(kwargs or {}))
