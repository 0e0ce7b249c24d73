"""Learning-rate schedules that transformers does not have, as `LambdaLR` factories.

Every schedule here is a function `factor(step, *, warmup, total, ...) -> float`: the multiplier
applied to each parameter group's own learning rate after `step` optimizer steps. Being a
multiplier (not an absolute lr), it keeps the ratios between groups (`lr_groups`,
`embedding_lr`, LoRA+) for the whole run. `warmup` and `total` are the Trainer's warmup and
training steps (`warmup_ratio` already turned into steps).

With `W = warmup`, `T = total`, `s = step` and `m` the floor (`cosine_min_lr_ratio`):

- warmup (all three): `s / W` while `s < W` (`(s / W) ** 2` with `lr_quadratic_warmup`), as in
  transformers' schedules; one-cycle's rise is its own (below).
- `cosine`: `m + (1 - m) * (1 + cos(pi * p)) / 2` with `p = (s - W) / (D - W)`, where `D = T`,
  or `D = floor(T * cosine_constant_lr_ratio)` (not before `W`): from step `D` on the factor stays
  at `m` ("hold the minimum for the last part of training").
- `rex` (REX, arXiv 2107.04197): `m + (1 - m) * (1 - p) / (1 - p / 2)` with
  `p = (s - W) / (T - W)`: decays more slowly than linear early, reaches `m` at the last step.
- `one_cycle`: rises from `1 / div_factor` to 1 over the warmup steps along a half cosine, then
  anneals along a half cosine to `1 / (div_factor * final_div_factor)` at step `T`.
  `div_factor` is `lr_div_factor` (default 25, and `final_div_factor` 1e4, torch's OneCycleLR
  defaults).
"""

from __future__ import annotations

import inspect
import math
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LambdaLR

Factor = Callable[..., float]


def _progress(step: int, start: int, end: int) -> float:
    """Where `step` lies between `start` and `end`, clipped to [0, 1]."""
    return min(1.0, max(0.0, (step - start) / max(1, end - start)))


def _half_cosine(start: float, end: float, progress: float) -> float:
    """`start` at progress 0 to `end` at progress 1 along half a cosine period."""
    return end + (start - end) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _warmup(step: int, warmup: int, quadratic: bool) -> float:
    ramp = step / warmup
    return ramp * ramp if quadratic else ramp


def cosine(step: int, *, warmup: int, total: int, min_ratio: float = 0.0,
           constant_ratio: float | None = None, quadratic_warmup: bool = False) -> float:
    """Cosine decay to `min_ratio`, optionally held from `constant_ratio * total` on."""
    if step < warmup:
        return _warmup(step, warmup, quadratic_warmup)
    decay_end = total if constant_ratio is None else max(warmup, math.floor(total * constant_ratio))
    if step >= decay_end:
        return min_ratio
    return _half_cosine(1.0, min_ratio, _progress(step, warmup, decay_end))


def rex(step: int, *, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """Reflected-exponential decay to `min_ratio` at the last step."""
    if step < warmup:
        return _warmup(step, warmup, False)
    progress = _progress(step, warmup, total)
    return min_ratio + (1.0 - min_ratio) * (1.0 - progress) / (1.0 - progress / 2.0)


def one_cycle(step: int, *, warmup: int, total: int, div_factor: float = 25.0,
              final_div_factor: float = 1e4) -> float:
    """Rise from `1 / div_factor` over the warmup, then anneal to `1 / (div_factor * final_div_factor)`."""
    start = 1.0 / div_factor
    if step < warmup:
        return _half_cosine(start, 1.0, step / warmup)
    return _half_cosine(1.0, start / final_div_factor, _progress(step, warmup, total))


SCHEDULES: dict[str, Factor] = {"cosine": cosine, "rex": rex, "one_cycle": one_cycle}
"""Our schedule name -> its factor function (`AxolotlTrainer.create_scheduler` builds them)."""


def options(name: str) -> list[str]:
    """The keyword options a schedule accepts beyond `warmup` and `total`."""
    params = inspect.signature(SCHEDULES[name]).parameters.values()
    return [p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name not in ("warmup", "total")]


def build_scheduler(name: str, optimizer: Optimizer, num_warmup_steps: int, num_training_steps: int,
                    **kwargs: Any) -> LambdaLR:
    """`LambdaLR` running schedule `name` over `num_training_steps` steps."""
    from torch.optim.lr_scheduler import LambdaLR

    factor = partial(SCHEDULES[name], warmup=num_warmup_steps, total=num_training_steps, **kwargs)
    return LambdaLR(optimizer, factor)
