"""The array functions the blind noise estimate's clipped-model likelihood runs on: torch here, NumPy where the
training data supplies them (``denoise.dataset.estimate_grid.NUMPY_OPS``). Torch and the standard library only, so
a submission's ``network.py`` carries it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor


def to_float64(x: Any) -> Tensor:
    """``x`` (numpy array, tensor or number) as a float64 CPU tensor."""
    return torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)


def _interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation of (xp, fp) at x, xp non-decreasing; constant beyond either end (np.interp)."""
    i = torch.searchsorted(xp, x, right=True).clamp(1, len(xp) - 1)
    x0, span = xp[i - 1], xp[i] - xp[i - 1]
    t = torch.where(span > 0, (x - x0) / torch.where(span > 0, span, 1.0), 0.0).clamp(0.0, 1.0)
    return torch.where(x >= xp[-1], fp[-1], fp[i - 1] + t * (fp[i] - fp[i - 1]))


class ArrayOps(NamedTuple):
    """The array functions the clipped model's likelihood needs, so that one implementation runs on torch tensors
    (inference; network.py has nothing else) or on NumPy arrays, whose calls cost a fifth as much on the thousand
    values the likelihood takes a few hundred times per estimate: the training data's grids run thousands."""

    asarray: Callable[[Any], Any]  # to a float64 array of this kind
    sqrt: Callable[[Any], Any]
    exp: Callable[[Any], Any]
    log: Callable[[Any], Any]
    ndtr: Callable[[Any], Any]  # the standard normal CDF
    maximum: Callable[[Any, float], Any]  # elementwise max(x, value)
    interp: Callable[[Any, Any, Any], Any]  # interp(x, xp, fp) as np.interp: xp non-decreasing, constant beyond
    cummax: Callable[[Any], Any]  # running maximum of a 1-D array


TORCH_OPS = ArrayOps(
    asarray=to_float64, sqrt=torch.sqrt, exp=torch.exp, log=torch.log, ndtr=torch.special.ndtr,
    maximum=lambda x, value: x.clamp(min=value), interp=_interp, cummax=lambda x: torch.cummax(x, 0).values,
)  # fmt: skip
