"""Every tensor the training step makes is made on the model's device, checked without a GPU.

On a CPU a tensor created without ``device=`` lands where the model is, so a forgotten device only
breaks on a GPU. This test records every tensor factory call (``torch.zeros``, ``arange``...) that
names no device while training runs, and which limakit function made it. Only the host-side batch
builders may do so (their tensors are then moved once, pinned and non-blocking); everything else
must take its device from the tensor or model it feeds.
"""

from __future__ import annotations

from pathlib import Path

import torch
from devicecheck import PACKAGE, DevicelessFactories, HostSyncs
from training.helpers import write_data

from limakit.core.config import load_config
from limakit.training import TrainConfig, train

# Made on the host by design: batches (moved by to_device), segment boundaries (moved once per
# micro-batch), the data order's generator, the setup before the model moves, checkpoints' RNG.
HOST_SIDE = {
    "collate",
    "epoch_order",
    "cu_seqlens",
    "segment_ids",
    "rng_state",
    "attach",
    "encode",
    "host_to_device",
}


def test_no_tensor_of_the_training_step_is_made_off_the_model_device(tmp_path, tiny_model_dir):
    data = write_data(tmp_path / "data.jsonl", n=8)
    overrides = [f"model={tiny_model_dir}", f"data={data}", "epochs=1", "global_batch=4"]
    overrides += ["micro_batch=2", "max_len=64", "dropout_top=0.3", "threads=1", "save_epochs=[]"]
    recorder = DevicelessFactories()
    with recorder:
        torch.zeros(2)  # the detector itself: a device-less call from here is recorded
        train(load_config(TrainConfig, None, overrides), tmp_path / "run")
    assert recorder.calls[0] == (
        __file__,
        test_no_tensor_of_the_training_step_is_made_off_the_model_device.__name__,
    )
    ours = [(Path(f).name, fn) for f, fn in recorder.calls if f.startswith(PACKAGE)]
    assert ours, "the batch builders make host tensors: the recorder must see them"
    off_device = sorted({c for c in ours if c[1] not in HOST_SIDE})
    assert not off_device, f"tensors made without a device in the training step: {off_device}"


def test_the_training_step_waits_for_the_device_once_per_step(tmp_path, tiny_model_dir):
    """On a GPU the host must run ahead of the device: the only read back is each step's loss.

    Every operator that would make the host wait for a GPU (a scalar read, a data-dependent
    shape) is recorded with the limakit function that asked for it, through bf16 masters,
    dropout, packing and gradient clipping.
    """
    data = write_data(tmp_path / "data.jsonl", n=8)
    overrides = [f"model={tiny_model_dir}", f"data={data}", "epochs=1", "global_batch=4"]
    overrides += ["micro_batch=2", "max_len=64", "dropout_top=0.3", "threads=1", "save_epochs=[]"]
    overrides += ["dtype=bfloat16", "grad_clip=1.0"]
    syncs = HostSyncs()
    with syncs:
        torch.ones(1).item()  # the detector itself: a scalar read from here is recorded
        train(load_config(TrainConfig, None, overrides), tmp_path / "run")
    assert syncs.calls[0] == ("aten::_local_scalar_dense", "")
    by_function = {}
    for op, fn in syncs.calls[1:]:
        by_function.setdefault(fn, []).append(op)
    # Host-side by design: collate finds the trained positions on the host batch before it moves;
    # the loss's backward reads its incoming gradient only on a CPU (a shortcut for the usual 1.0).
    # (the loop itself is loop._train, which train() runs with the run's thread count)
    assert set(by_function) - {"collate", "backward"} == {"_train"}, by_function
    steps = 2  # 8 examples, 4 per step
    assert by_function["_train"] == ["aten::_local_scalar_dense"] * steps  # the loss, once a step
