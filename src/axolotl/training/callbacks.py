"""Trainer callbacks: stop cleanly on SIGINT/SIGTERM, stop on a diverging loss, save step 1, collect garbage.

They only set flags on `TrainerControl` (or free memory); the Trainer does the saving and stopping,
so a stopped run leaves the same checkpoint layout (and resumes the same way) as a scheduled save.
"""

from __future__ import annotations

import gc
import signal
import threading
from types import FrameType
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignal(TrainerCallback):
    """On SIGINT/SIGTERM finish the current optimizer step, save a checkpoint and stop.

    A second signal restores the previous handlers and raises `KeyboardInterrupt`, so an
    impatient user can still abort (without a checkpoint).
    """

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            self._restore()
            raise KeyboardInterrupt(f"second signal {signal.Signals(signum).name}: aborting without a checkpoint")
        self.received = signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       **kwargs: Any) -> None:
        # Handlers can only be installed from the main thread (e.g. not inside a notebook worker).
        if threading.current_thread() is threading.main_thread():
            for signum in HANDLED_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self.received is not None:
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        self._restore()

    @property
    def signal_name(self) -> str | None:
        """Name of the signal that stopped the run, if any."""
        return None if self.received is None else signal.Signals(self.received).name


class LossWatchdog(TrainerCallback):
    """Stop when the logged training loss stays above `threshold` for `patience` logs in a row.

    A diverged run wastes GPU hours; `tripped` records (step, loss) so the caller can fail loudly
    instead of saving a broken model.
    """

    def __init__(self, threshold: float, patience: int = 3) -> None:
        self.threshold = threshold
        self.patience = patience
        self.strikes = 0
        self.tripped: tuple[int, float] | None = None

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        self.strikes = self.strikes + 1 if loss > self.threshold else 0
        if self.strikes >= self.patience:
            self.tripped = (state.global_step, float(loss))
            control.should_training_stop = True


class SaveFirstStep(TrainerCallback):
    """`save_first_step: true`: a checkpoint after step 1 proves saving works before hours pass."""

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if state.global_step == 1:
            control.should_save = True


class GarbageCollect(TrainerCallback):
    """`gc_steps: N`: `gc.collect()` (and `torch.cuda.empty_cache()` on CUDA) after every N optimizer
    steps; `gc_steps: -1`: at the end of each epoch and before each evaluation instead."""

    def __init__(self, every: int) -> None:
        if every == 0 or every < -1:
            raise ValueError(f"gc_steps must be a positive number of steps or -1 (got {every})")
        self.every = every
        self.collections = 0

    def collect(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        self.collections += 1

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        # The Trainer's own flow callback runs first, so `should_evaluate` already says whether an
        # evaluation follows this step.
        if (self.every > 0 and state.global_step % self.every == 0) or (self.every == -1 and control.should_evaluate):
            self.collect()

    def on_epoch_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self.every == -1:
            self.collect()


class StepClock(TrainerCallback):
    """Wall-clock time and tokens seen at the end of every optimizer step, for the benchmarks.

    The device is synchronised first, so a step's time includes its queued GPU work."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[int] = []

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        import time

        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.tokens.append(int(state.num_input_tokens_seen))
