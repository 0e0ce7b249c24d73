"""`training_curves.png`: loss (and eval loss), learning rate and gradient norm against step.

Drawn from log entries (`trainer.state.log_history`, or the histories of metrics.json) with
matplotlib's Agg canvas directly: no pyplot, so no global backend is chosen or changed and no
display is needed. The PNG is written next to its final name and renamed into place, so a
reader (or a failed plot) never leaves half an image behind.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

CURVES_NAME = "training_curves.png"
PANELS: tuple[tuple[str, str], ...] = (("loss", "loss"), ("learning_rate", "learning rate"), ("grad_norm", "grad norm"))
"""Log key -> panel title, top to bottom."""


def _series(entries: list[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    points = [(entry["step"], entry[key]) for entry in entries
              if entry.get(key) is not None and entry.get("step") is not None]
    return [float(step) for step, _ in points], [float(value) for _, value in points]


def write_training_curves(log_history: Iterable[Mapping[str, Any]], path: Path) -> Path | None:
    """Plot the training log entries (those with `loss`) and evaluations (`eval_loss`) to `path`.

    Returns the path, or None (writing nothing) when there is no training loss to plot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    entries = list(log_history)
    train = [entry for entry in entries if "loss" in entry]
    evals = [entry for entry in entries if "eval_loss" in entry]
    if not any(entry.get("loss") is not None for entry in train):
        return None
    figure = Figure(figsize=(8, 9), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(PANELS), 1, sharex=True)
    for ax, (key, title) in zip(axes, PANELS):
        steps, values = _series(train, key)
        if steps:  # markers while there are few points, so a single log still shows
            ax.plot(steps, values, label=f"train {title}" if key == "loss" else title, linewidth=1.2,
                    marker="o" if len(steps) <= 30 else None, markersize=3)
        if key == "loss":
            eval_steps, eval_values = _series(evals, "eval_loss")
            if eval_steps:
                ax.plot(eval_steps, eval_values, "o-", label="eval loss", linewidth=1.2, markersize=3)
            ax.legend(loc="upper right")
        if key == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            figure.savefig(handle, format="png", dpi=100)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
