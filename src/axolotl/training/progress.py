"""The console view of a run, and the throughput figures it shares with the trackers.

`TrainingProgress` replaces transformers' progress bar and its printed log dicts with one line
per logging step:

    step 12/40 | epoch 0.30 | loss 2.3412 | lr 1.000e-03 | grad_norm 0.8123 | 12,345 tok/s | MFU 41.2% | ETA 0:01:23

under a tqdm bar when the stream is a terminal (a log file gets the lines alone). Evaluations
and the end of training print a line each.

Throughput is measured per logging interval: non-padding tokens (the Trainer's
`num_input_tokens_seen` with `include_num_input_tokens_seen="non_padding"`: the attention mask
where the batch has one, else tokens other than the pad token; summed over all ranks) over the
wall-clock time since the previous log. Time spent evaluating or saving is left out of the
interval it falls in. MFU (`axolotl.training.flops`) is shown on CUDA devices whose peak is
known; its attention term uses this rank's real document lengths, read from each training
batch by a forward pre-hook (the `position_ids` of packed rows restart at every document).

What reaches the logs, and with them log_history, metrics.json and every tracker:
* `include_tkps` (default true): `tokens_per_second_per_gpu` (and `mfu` where shown) with every
  training log;
* `include_tokens_per_second`: `train_tokens_per_second` in the end-of-training metrics.
The Trainer itself adds `num_input_tokens_seen` and a run-average `train_tokens_per_second` to
each training log (transformers >= 5).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from transformers import (
    PrinterCallback,
    ProgressCallback,
    TrainerCallback,
    TrainerControl,
    TrainerState,
    TrainingArguments,
)

from axolotl.training.flops import ModelShape, peak_bf16_flops, training_flops

if TYPE_CHECKING:
    import torch
    from transformers import Trainer

AUTO = "auto"
HIDDEN_KEYS = frozenset({"epoch", "step", "total_flos", "num_input_tokens_seen", "train_runtime",
                         "train_tokens_per_second", "tokens_per_second_per_gpu", "mfu", "num_tokens"})
"""Keys the console line shows in its own way or leaves to the trackers (`num_tokens`: the TRL
trainers' running token count, a repeat of `num_input_tokens_seen`)."""


@dataclass(frozen=True)
class Interval:
    """Throughput over the steps since the previous training log."""

    tokens_per_second: float
    """Non-padding tokens per second, all ranks together."""
    tokens_per_second_per_gpu: float
    mfu: float | None
    """Model FLOPs utilisation of this rank; None off CUDA or on a device of unknown peak."""


def format_duration(seconds: float) -> str:
    """`H:MM:SS` (a day or more reads `1d 2:03:04`)."""
    seconds = max(0, int(round(seconds)))
    days, seconds = divmod(seconds, 86400)
    hours, seconds = divmod(seconds, 3600)
    minutes, seconds = divmod(seconds, 60)
    clock = f"{hours}:{minutes:02d}:{seconds:02d}"
    return f"{days}d {clock}" if days else clock


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def format_train_line(step: int, max_steps: int, logs: dict[str, Any], interval: Interval | None,
                      eta_seconds: float | None, world_size: int = 1) -> str:
    """One training log as a console line (pure, for tests)."""
    parts = [f"step {step}/{max_steps}"]
    if "epoch" in logs:
        parts.append(f"epoch {logs['epoch']:.2f}")
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.3e}")
    if logs.get("grad_norm") is not None:
        parts.append(f"grad_norm {logs['grad_norm']:.4g}")
    parts.extend(f"{key} {_number(value)}" for key, value in logs.items()
                 if key not in HIDDEN_KEYS and key not in ("loss", "learning_rate", "grad_norm"))
    if interval is not None:
        rate = f"{interval.tokens_per_second:,.0f} tok/s"
        if world_size > 1:
            rate += f" ({interval.tokens_per_second_per_gpu:,.0f}/gpu)"
        parts.append(rate)
        if interval.mfu is not None:
            parts.append(f"MFU {interval.mfu:.1%}")
    if eta_seconds is not None:
        parts.append(f"ETA {format_duration(eta_seconds)}")
    return " | ".join(parts)


def format_other_line(step: int, max_steps: int, logs: dict[str, Any]) -> str:
    """An evaluation, the end-of-training summary or any other log as one line."""
    if "train_loss" in logs:
        head = f"done: {step} steps in {format_duration(logs.get('train_runtime', 0.0))}"
    elif any(key.startswith("eval_") for key in logs):
        head = f"eval at step {step}/{max_steps}"
    else:
        head = f"step {step}/{max_steps}"
    hidden = {"epoch", "step", "total_flos", "train_runtime"} | (set() if "train_loss" in logs else {"num_input_tokens_seen"})
    shown = {key: value for key, value in logs.items() if key not in hidden}
    return " | ".join([head] + [f"{key} {_number(value)}" for key, value in shown.items()])


class TrainingProgress(TrainerCallback):
    """Console progress and per-interval throughput (see the module docstring).

    `peak_flops` is the device's dense bf16 peak in FLOP/s; `"auto"` looks it up for CUDA
    devices (`flops.peak_bf16_flops`) and gives None (no MFU) elsewhere. `bar`: None shows the
    tqdm bar only when `stream` is a terminal.
    """

    def __init__(self, *, log_throughput: bool = True, log_final_tokens_per_second: bool = False,
                 stream: TextIO | None = None, peak_flops: float | None | str = AUTO, bar: bool | None = None) -> None:
        self.log_throughput = log_throughput
        self.log_final_tokens_per_second = log_final_tokens_per_second
        self.stream = stream
        self.peak_flops_setting = peak_flops
        self.bar_setting = bar
        self.last: Interval | None = None
        self._bar: Any = None
        self._eval_bar: Any = None
        self._hook: Any = None
        self._started: float | None = None
        self._first_step = 0
        self._first_tokens = 0
        self._mark: tuple[float, int] | None = None
        self._shape: ModelShape | None = None
        self._peak: float | None = None
        self._pad_token_id: int | None = None
        self._local_tokens: int | torch.Tensor = 0
        self._local_pairs: int | torch.Tensor = 0

    # ---- measuring -------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                       model: Any = None, processing_class: Any = None, **kwargs: Any) -> None:
        now = time.perf_counter()
        self._started, self._first_step = now, state.global_step
        self._first_tokens = state.num_input_tokens_seen
        self._mark = (now, state.num_input_tokens_seen)
        self._peak = self._resolve_peak(args)
        self._shape = ModelShape.from_config(getattr(model, "config", None)) if model is not None else None
        self._pad_token_id = getattr(processing_class, "pad_token_id", None)
        if self._peak is not None and self._shape is not None and model is not None:
            self._hook = model.register_forward_pre_hook(self._count_batch, with_kwargs=True)
        if state.is_world_process_zero:
            self._open_bar(args, state)

    def _resolve_peak(self, args: TrainingArguments) -> float | None:
        if self.peak_flops_setting != AUTO:
            return self.peak_flops_setting  # type: ignore[return-value]
        return peak_bf16_flops() if args.device.type == "cuda" else None

    def _count_batch(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Forward pre-hook: non-padding tokens and causal (query, key) pairs of a training batch.

        Stays on the device (no synchronisation); read at the next log, after the Trainer's own sync."""
        if not module.training:
            return
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is None:
            return
        mask, positions = kwargs.get("attention_mask"), kwargs.get("position_ids")
        if mask is not None and mask.dim() == 2:  # padded rows: one document per row
            lengths = mask.sum(dim=-1)
            tokens, pairs = lengths.sum(), (lengths * (lengths + 1) // 2).sum()
        elif positions is not None:  # packed rows: a token at position p attends p + 1 keys
            real = ids != self._pad_token_id if self._pad_token_id is not None else ids >= 0
            tokens, pairs = real.sum(), ((positions + 1) * real).sum()
        else:
            rows, width = ids.shape[0], ids.shape[-1]
            tokens, pairs = rows * width, rows * width * (width + 1) // 2
        self._local_tokens = self._local_tokens + tokens
        self._local_pairs = self._local_pairs + pairs

    def measure(self, state: TrainerState, world_size: int = 1) -> Interval | None:
        """Close the current interval at `state` and start the next."""
        if self._mark is None:
            return None
        now, seen = time.perf_counter(), state.num_input_tokens_seen
        seconds, tokens = now - self._mark[0], seen - self._mark[1]
        self._mark = (now, seen)
        local_tokens, local_pairs = int(self._local_tokens), int(self._local_pairs)
        self._local_tokens = self._local_pairs = 0
        if seconds <= 0:
            return None
        mfu = None
        if self._peak and self._shape is not None and local_tokens:
            mfu = training_flops(self._shape, local_tokens, local_pairs) / seconds / self._peak
        rate = tokens / seconds
        self.last = Interval(tokens_per_second=rate, tokens_per_second_per_gpu=rate / max(world_size, 1), mfu=mfu)
        return self.last

    def annotate(self, logs: dict[str, Any], state: TrainerState, world_size: int = 1) -> None:
        """Add the throughput keys to a log before the Trainer records and dispatches it.

        Called from `AxolotlTrainer.log`: callbacks see a log only after it entered
        `log_history`, and trackers before this callback, so they could not pick up keys added here."""
        if "loss" in logs and "train_loss" not in logs:
            interval = self.measure(state, world_size)
            if interval is not None and self.log_throughput:
                logs["tokens_per_second_per_gpu"] = round(interval.tokens_per_second_per_gpu, 2)
                if interval.mfu is not None:
                    logs["mfu"] = round(interval.mfu, 4)
        elif "train_loss" in logs and self.log_final_tokens_per_second and logs.get("train_runtime"):
            tokens = state.num_input_tokens_seen - self._first_tokens
            logs["train_tokens_per_second"] = round(tokens / logs["train_runtime"], 3)

    def _restart_interval(self, state: TrainerState) -> None:
        """Evaluation and checkpoint saving are no training throughput: start the interval afresh."""
        if self._mark is not None:
            self._mark = (time.perf_counter(), state.num_input_tokens_seen)

    def eta_seconds(self, state: TrainerState) -> float | None:
        """Remaining steps at the mean pace since training (re)started, evaluations included."""
        done = state.global_step - self._first_step
        if self._started is None or done <= 0 or not state.max_steps:
            return None
        return (time.perf_counter() - self._started) / done * max(state.max_steps - state.global_step, 0)

    # ---- display ---------------------------------------------------------------------------

    def _out(self) -> TextIO:
        return self.stream if self.stream is not None else sys.stderr

    def _open_bar(self, args: TrainingArguments, state: TrainerState) -> None:
        from tqdm import tqdm

        disable = (None if self.bar_setting is None else not self.bar_setting) if not args.disable_tqdm else True
        self._bar = tqdm(total=state.max_steps, initial=state.global_step, file=self._out(), disable=disable,
                         dynamic_ncols=True, unit="step", leave=True)

    def _write(self, line: str) -> None:
        from tqdm import tqdm

        tqdm.write(line, file=self._out())

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        if self._bar is not None:
            self._bar.update(state.global_step - self._bar.n)

    def on_log(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
               logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        if "loss" in logs and "train_loss" not in logs:
            line = format_train_line(state.global_step, state.max_steps, logs, self.last, self.eta_seconds(state),
                                     args.world_size)
            if self._bar is not None and self.last is not None:
                self._bar.set_postfix_str(f"loss {logs['loss']:.4f}, {self.last.tokens_per_second:,.0f} tok/s",
                                          refresh=False)
        else:
            line = format_other_line(state.global_step, state.max_steps, logs)
        self._write(line)

    def on_prediction_step(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                           eval_dataloader: Any = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or eval_dataloader is None:
            return
        if self._eval_bar is None:
            from tqdm import tqdm

            try:
                total = len(eval_dataloader)
            except TypeError:
                total = None
            disable = (None if self.bar_setting is None else not self.bar_setting) if not args.disable_tqdm else True
            self._eval_bar = tqdm(total=total, file=self._out(), disable=disable, leave=False, dynamic_ncols=True,
                                  desc="eval")
        self._eval_bar.update(1)

    def _close_eval_bar(self) -> None:
        if self._eval_bar is not None:
            self._eval_bar.close()
            self._eval_bar = None

    def on_evaluate(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                    **kwargs: Any) -> None:
        self._close_eval_bar()
        self._restart_interval(state)

    def on_predict(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                   **kwargs: Any) -> None:
        self._close_eval_bar()

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        self._restart_interval(state)

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                     **kwargs: Any) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def use_progress(trainer: Trainer) -> TrainingProgress | None:
    """If `trainer` has a `TrainingProgress`, drop transformers' own bar and log printer (which
    would print every log a second time) and return it."""
    progress = next((c for c in trainer.callback_handler.callbacks if isinstance(c, TrainingProgress)), None)
    if progress is not None:
        for callback in list(trainer.callback_handler.callbacks):
            if isinstance(callback, (ProgressCallback, PrinterCallback)) \
                    or type(callback).__name__ == "NotebookProgressCallback":
                trainer.remove_callback(callback)
    return progress
