"""`train(cfg)`: supervised fine-tuning, read top to bottom.

config -> refusals (and plugin preflight) -> tokenizer -> prepared data -> TrainingArguments ->
model (plugin hooks, adapter, LoRA kernels, tiled MLP) -> Trainer -> train -> final
model/adapter + tokenizer + resolved config + metrics.json.

The loss is transformers' causal-LM loss summed over every supervised token of the optimizer
step and divided by their count (`num_items_in_batch`, counted over the whole accumulation
window and all ranks), so `micro_batch_size` x `gradient_accumulation_steps` splits of one
batch train identically (pinned by tests/training/test_train_e2e.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import torch
from transformers import EarlyStoppingCallback, Trainer, TrainerCallback, set_seed
from transformers.trainer_utils import get_last_checkpoint

from axolotl.config.render import atomic_write_text, save_resolved_config
from axolotl.data.pipeline import prepare_datasets_once_per_node
from axolotl.integrations.base import PluginError
from axolotl.integrations.loading import (
    after_model_load,
    before_model_load,
    check_plugins,
    load_plugins,
    plugin_callbacks,
)
from axolotl.models.adapters import apply_adapter
from axolotl.models.compile import compile_layers
from axolotl.models.model import load_model
from axolotl.models.offload import ActivationOffload, offload_mode
from axolotl.models.qat import apply_qat, convert_qat, qat_plan
from axolotl.models.quantize import QuantizationError
from axolotl.models.tiled_mlp import apply_tiled_mlp
from axolotl.models.tokenizer import load_tokenizer
from axolotl.training.args import (
    TrainingConfigError,
    build_training_args,
    gc_interval,
    optimizer_name,
    report_to,
    scheduler,
    tracker_environment,
)
from axolotl.training.callbacks import GarbageCollect, LossWatchdog, SaveFirstStep, StopOnSignal
from axolotl.training.data import packed_loader, padded_collator
from axolotl.training.distributed import check_ranks_agree
from axolotl.training.loss import causal_lm_loss_from_hidden, check_fused_loss_support, fused_loss
from axolotl.training.model_card import write_model_card
from axolotl.training.module_walks import CachedModuleWalks
from axolotl.training.optimizer import OptimizationMixin
from axolotl.training.parallel import check_engine, distributed_environment, distributed_problems, save_final_model
from axolotl.training.plots import CURVES_NAME, write_training_curves
from axolotl.training.progress import TrainingProgress, use_progress
from axolotl.training.reward import (
    REWARD_LOG_KEYS,
    build_reward_trainer,
    head_problems,
    process_reward_trainer_kwargs,
)
from axolotl.training.support import NotSupportedYet, check_trainer_support

if TYPE_CHECKING:
    from torch.utils.data import DataLoader
    from transformers import TrainingArguments

    from axolotl.config.schema import AxolotlConfig
    from axolotl.data.pipeline import PreparedData

LOG = logging.getLogger(__name__)
METRICS_NAME = "metrics.json"


class TrainingError(RuntimeError):
    """The run started but could not produce a usable model (e.g. the loss watchdog tripped)."""


@dataclass
class TrainResult:
    """What a run produced: where, its metrics, and whether it stopped early on a signal."""

    output_dir: Path
    metrics: dict[str, Any]
    losses: list[float] = field(default_factory=list)
    interrupted: str | None = None
    """Name of the signal that stopped the run (a checkpoint was saved), else None."""


class AxolotlTrainer(CachedModuleWalks, OptimizationMixin, Trainer):
    """`Trainer` whose dataloaders pack rows when the config asks for sample packing.

    Unpacked data uses the stock loaders (with `PaddedCollator` as the data collator).
    """

    def __init__(self, *args: Any, axolotl_cfg: AxolotlConfig, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.axolotl_cfg = axolotl_cfg
        self.progress = use_progress(self)
        mode = offload_mode(axolotl_cfg)
        self.offload = ActivationOffload(self.model, mode) if mode is not None else None
        self.fused_loss = fused_loss(axolotl_cfg)
        self.marks_graph_steps = bool(axolotl_cfg.torch_compile) and axolotl_cfg.torch_compile_mode in (
            "reduce-overhead", "max-autotune") and torch.cuda.is_available()

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self.progress is not None:  # throughput keys, before log_history and the trackers see the log
            self.progress.annotate(logs, self.state, self.args.world_size)
        super().log(logs, start_time)

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        """With activation offloading, what the forward saves for backward waits in CPU RAM.

        Under CUDA graphs (`torch_compile_mode: reduce-overhead` / `max-autotune`) each micro-step
        is marked as a new iteration: the layers are graphed one by one, so without the mark the
        graph trees see the previous step's backward as pending and replay on their slow path."""
        self.prepare_cached_walks()
        if self.marks_graph_steps:
            torch.compiler.cudagraph_mark_step_begin()
        if self.offload is None:
            return super().training_step(*args, **kwargs)
        with self.offload:
            return super().training_step(*args, **kwargs)

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        """The loss from hidden states (chunked, or a plugin's) when configured; it returns no
        logits, so evaluation that wants outputs (and any other caller asking for them) takes the
        stock path."""
        if self.fused_loss is not None and not return_outputs and "labels" in inputs:
            return causal_lm_loss_from_hidden(model, inputs, num_items_in_batch, self.fused_loss[1],
                                              decoder_context=self.accelerator.autocast())
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def get_train_dataloader(self) -> DataLoader:
        if not self.axolotl_cfg.sample_packing:
            return super().get_train_dataloader()
        return packed_loader(self.train_dataset, self.axolotl_cfg, self.processing_class, self.args,
                             rank=self.accelerator.process_index, world_size=self.accelerator.num_processes,
                             training=True)

    def get_eval_dataloader(self, eval_dataset: Any = None) -> DataLoader:
        if not self.axolotl_cfg.eval_sample_packing or isinstance(eval_dataset, str):
            return super().get_eval_dataloader(eval_dataset)
        return packed_loader(eval_dataset if eval_dataset is not None else self.eval_dataset, self.axolotl_cfg,
                             self.processing_class, self.args, rank=self.accelerator.process_index,
                             world_size=self.accelerator.num_processes, training=False)


def build_trainer(cfg: AxolotlConfig, model: Any, tokenizer: Any, prepared: PreparedData,
                  args: TrainingArguments, callbacks: Sequence[TrainerCallback] = ()) -> Trainer:
    """The Trainer `train` runs; `axolotl evaluate` builds the same one, so its eval batches (packed
    or padded, collator, batch size) are exactly those of the trainer's own evaluation.

    Reward models: TRL's RewardTrainer for `reward_model`, and this Trainer with a token-classification
    loss and step accuracy for `process_reward_model` (`axolotl.training.reward`)."""
    if cfg.reward_model:
        return build_reward_trainer(cfg, model, tokenizer, prepared, args, callbacks)
    trainer = AxolotlTrainer(
        model=model, args=args, train_dataset=prepared.train,
        eval_dataset=prepared.eval if args.eval_strategy != "no" else None,
        data_collator=padded_collator(cfg, tokenizer, cfg.sequence_len),
        processing_class=tokenizer, callbacks=list(callbacks), axolotl_cfg=cfg,
        **(process_reward_trainer_kwargs(model) if cfg.process_reward_model else {}),
    )
    check_engine(trainer, cfg)  # FSDP/DeepSpeed really on (accelerate can drop them silently)
    return trainer


def preflight(cfg: AxolotlConfig) -> None:
    """Every refusal that needs no model or data, so a bad config fails in milliseconds."""
    check_trainer_support(cfg)
    try:
        check_plugins(cfg)
    except PluginError as error:
        raise TrainingConfigError(str(error)) from None
    problems = head_problems(cfg) + distributed_problems(cfg)
    if problems:
        raise TrainingConfigError("; ".join(problems))
    if cfg.rl and str(cfg.rl) == "grpo":
        from axolotl.training.grpo_args import check_grpo_config

        check_grpo_config(cfg)
    if cfg.rl and str(cfg.rl) == "ebft":
        from axolotl.training.ebft_args import check_ebft_config

        check_ebft_config(cfg)
    optimizer_name(cfg)
    scheduler(cfg)
    gc_interval(cfg)
    report_to(cfg)
    try:
        qat_plan(cfg)
    except NotImplementedError as error:
        raise NotSupportedYet(str(error)) from None
    except QuantizationError as error:
        raise TrainingConfigError(str(error)) from None


def _callbacks(cfg: AxolotlConfig) -> tuple[list[TrainerCallback], StopOnSignal, LossWatchdog | None]:
    stopper = StopOnSignal()
    callbacks: list[TrainerCallback] = [stopper]
    watchdog = None
    if cfg.loss_watchdog_threshold is not None:
        watchdog = LossWatchdog(cfg.loss_watchdog_threshold, cfg.loss_watchdog_patience or 3)
        callbacks.append(watchdog)
    if cfg.early_stopping_patience:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience))
    if cfg.save_first_step:
        callbacks.append(SaveFirstStep())
    if gc_interval(cfg):
        callbacks.append(GarbageCollect(gc_interval(cfg)))
    callbacks.append(TrainingProgress(log_throughput=cfg.include_tkps is not False,
                                      log_final_tokens_per_second=bool(cfg.include_tokens_per_second)))
    return callbacks, stopper, watchdog


def _resume_checkpoint(cfg: AxolotlConfig) -> str | None:
    """`resume_from_checkpoint`, or the newest checkpoint in output_dir with `auto_resume_from_checkpoints`."""
    if cfg.resume_from_checkpoint:
        if not Path(cfg.resume_from_checkpoint).is_dir():
            raise FileNotFoundError(f"`resume_from_checkpoint`: {cfg.resume_from_checkpoint} is not a directory")
        return cfg.resume_from_checkpoint
    if cfg.auto_resume_from_checkpoints and Path(cfg.output_dir).is_dir():
        return get_last_checkpoint(cfg.output_dir)
    return None


def _metrics(trainer: Trainer, final: dict[str, Any], extra_keys: Sequence[str] = ()) -> dict[str, Any]:
    """Loss history (with `extra_keys` of the training logs), eval history, the Trainer's final
    metrics and measured throughput."""
    history = trainer.state.log_history
    keys = ("step", "epoch", "loss", "learning_rate", "grad_norm", "tokens_per_second_per_gpu", "mfu",
            *REWARD_LOG_KEYS, *extra_keys)
    train = [{k: entry[k] for k in keys if k in entry}
             for entry in history if "loss" in entry]
    evals = [entry for entry in history if "eval_loss" in entry]
    runtime = final.get("train_runtime") or 0.0
    tokens = trainer.state.num_input_tokens_seen
    return {"train_loss_history": train, "eval_history": evals, "final": final,
            "num_input_tokens_seen": tokens,
            "tokens_per_second": tokens / runtime if runtime else None}


def _write_metrics(directory: Path, metrics: dict[str, Any]) -> None:
    """metrics.json and the loss / lr / grad-norm plot (a failed plot only warns)."""
    atomic_write_text(directory / METRICS_NAME, json.dumps(metrics, indent=2, default=str) + "\n")
    try:
        write_training_curves(metrics["train_loss_history"] + metrics["eval_history"], directory / CURVES_NAME)
    except Exception as error:  # noqa: BLE001 - the plot is a convenience, never worth the trained model
        LOG.warning("could not write %s: %s", directory / CURVES_NAME, error)


def _publish(trainer: Trainer, cfg: AxolotlConfig, metrics: dict[str, Any]) -> Path:
    """Write model/adapter, tokenizer, config and metrics to a sibling folder, then swap it in.

    Readers of output_dir see either the previous contents or the complete new ones, never a
    half-written model. Checkpoints and logs already in output_dir are moved (renamed) across.
    Every rank calls this (FSDP and ZeRO-3 gather the weights collectively); the main process writes.
    """
    final = Path(cfg.output_dir).resolve()
    run_id = _shared_run_id(trainer)
    staging = final.parent / f".{final.name}.staging-{run_id}"
    old = final.parent / f".{final.name}.old-{run_id}"
    main = trainer.is_world_process_zero()
    if main:
        shutil.rmtree(staging, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()
    save_final_model(trainer, cfg, staging)
    trainer.accelerator.wait_for_everyone()
    if main:
        save_resolved_config(cfg, staging)
        _write_metrics(staging, metrics)
        write_model_card(staging, cfg, metrics, trainer.args.world_size)
        if final.exists():
            for entry in final.iterdir():
                if not (staging / entry.name).exists():
                    entry.rename(staging / entry.name)
            final.rename(old)
        staging.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    trainer.accelerator.wait_for_everyone()  # no rank returns before the outputs are in place
    return final


def _shared_run_id(trainer: Trainer) -> int:
    """The main process's pid on every rank: the staging folder's name all ranks save into."""
    if trainer.accelerator.num_processes == 1:
        return os.getpid()
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([os.getpid()])[0])


def train(cfg: AxolotlConfig, extra_callbacks: Sequence[TrainerCallback] = ()) -> TrainResult:
    """Fine-tune as `cfg` describes and write the outputs to `cfg.output_dir`.

    `extra_callbacks` lets tools observe the run (the throughput benchmark times each step)."""
    check_ranks_agree(cfg)  # several processes: all resolved the same config (before any refusal)
    preflight(cfg)
    if cfg.rl and str(cfg.rl) == "grpo":  # online RL: prompts, reward functions and TRL's GRPOTrainer
        from axolotl.training.grpo import train_grpo

        return train_grpo(cfg, extra_callbacks)
    if cfg.rl and str(cfg.rl) == "ebft":  # feature-matching RL: structured on TRL's GRPOTrainer, strided our loop
        from axolotl.training.ebft_args import train_ebft

        return train_ebft(cfg, extra_callbacks)
    if cfg.rl:  # DPO, KTO, ORPO, SimPO: preference data and TRL's trainers, the same outputs
        from axolotl.training.preference import train_preference

        return train_preference(cfg, extra_callbacks)
    os.environ.update(tracker_environment(cfg))
    os.environ.update(distributed_environment(cfg))
    tokenizer = load_tokenizer(cfg)
    prepared = prepare_datasets_once_per_node(cfg, tokenizer)
    args = build_training_args(cfg, has_eval=prepared.eval is not None and len(prepared.eval) > 0)
    set_seed(args.seed)  # adapter initialisation and re-initialised weights draw from it
    plugins = load_plugins(cfg)
    before_model_load(cfg, plugins)
    model = load_model(cfg, tokenizer)
    after_model_load(cfg, plugins, model)  # e.g. Liger's kernels, wrapped by the adapter like the originals
    model = apply_adapter(cfg, model)
    apply_tiled_mlp(model, cfg)  # after the adapter (and its LoRA kernels): it wraps the final MLP forward
    qat_callbacks = apply_qat(model, qat_plan(cfg))  # fake quantisation, before compiling
    loss = fused_loss(cfg)
    if loss is not None:
        check_fused_loss_support(loss[0], model, args.world_size)
    compile_layers(model, cfg)
    callbacks, stopper, watchdog = _callbacks(cfg)
    callbacks.extend([*qat_callbacks, *plugin_callbacks(cfg), *extra_callbacks])
    trainer = build_trainer(cfg, model, tokenizer, prepared, args, callbacks)
    before_publish = (lambda: convert_qat(model)) if cfg.qat is not None else None  # a plain checkpoint;
    # `axolotl quantize` applies the same scheme to it
    return run_and_publish(trainer, cfg, stopper, watchdog, before_publish=before_publish)


def run_and_publish(trainer: Trainer, cfg: AxolotlConfig, stopper: StopOnSignal, watchdog: LossWatchdog | None,
                    extra_keys: Sequence[str] = (), before_publish: Callable[[], None] | None = None) -> TrainResult:
    """Train, then either publish the outputs or explain why not: a tripped loss watchdog raises
    (metrics written, no model), a signal returns early (its checkpoint already saved). Every
    method's trainer ends through here, so they share outputs and failure behaviour."""
    output = trainer.train(resume_from_checkpoint=_resume_checkpoint(cfg))
    metrics = _metrics(trainer, dict(output.metrics), extra_keys=extra_keys)
    losses = [entry["loss"] for entry in metrics["train_loss_history"]]
    output_dir = Path(cfg.output_dir)
    if watchdog is not None and watchdog.tripped is not None:
        step, loss = watchdog.tripped
        if trainer.is_world_process_zero():
            _write_metrics(output_dir, metrics)
        raise TrainingError(f"loss {loss:.4g} at step {step} stayed above `loss_watchdog_threshold` "
                            f"{cfg.loss_watchdog_threshold} for {watchdog.patience} logged steps; the run was "
                            f"stopped and no final model was saved (metrics in {output_dir / METRICS_NAME})")
    if stopper.received is not None:
        LOG.warning("stopped by %s after step %d; checkpoint saved in %s", stopper.signal_name,
                    trainer.state.global_step, output_dir)
        if trainer.is_world_process_zero():
            _write_metrics(output_dir, metrics)
        return TrainResult(output_dir, metrics, losses, interrupted=stopper.signal_name)
    if before_publish is not None:
        before_publish()
    _publish(trainer, cfg, metrics)
    return TrainResult(output_dir, metrics, losses)
