"""FLOPs of one pass of a tower, counted on the module the graph was exported from.

torch's FlopCounterMode counts the matrix products, convolutions and attention the module
runs (2 per multiply-add), which is what the exported graph computes: elementwise work is left
out, as it is of a GEMM rate. Divided by the batch, it turns items/s into achieved FLOP/s.
"""

from __future__ import annotations

from typing import Any

import torch


def flops_per_item(module: torch.nn.Module, args: tuple[Any, ...]) -> float:
    """Counted FLOPs of `module(*args)` per row of its batch."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(*args)
    return counter.get_total_flops() / len(args[0])
