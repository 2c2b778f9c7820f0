"""One way to make an ``accelerate.Accelerator`` for every trainer (policy, world model, reward)."""

from __future__ import annotations


def make_accelerator(mixed_precision: str):
    """An ``Accelerator`` with this precision, even when an earlier one in this process used another.

    accelerate keeps its settings in a process-wide singleton that refuses a second precision; one process may
    train several models in turn (the nightly pipeline, notebooks, tests), so a mismatching setting is cleared.
    The distributed setup (accelerate's PartialState) is kept.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    previous = AcceleratorState._shared_state.get("_mixed_precision")
    if previous is not None and previous != mixed_precision:
        AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())
