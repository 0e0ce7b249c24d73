"""Config -> TrainingArguments mapping, trainer refusals, and the callbacks' flag logic (no model)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from transformers import TrainerControl, TrainerState

from axolotl.testing.configs import load
from axolotl.training.args import TrainingConfigError, build_training_args, gc_interval, optimizer_name, scheduler
from axolotl.training.callbacks import GarbageCollect, LossWatchdog, SaveFirstStep, StopOnSignal
from axolotl.training.support import REFUSED, NotSupportedYet, check_trainer_support, trainer_refusals

BASE = "base_model: some/model\nlearning_rate: 2e-4\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"


def cfg_of(extra: str = "") -> Any:
    return load(BASE + extra).cfg


def args_of(extra: str = "", has_eval: bool = False, tmp: Path | None = None) -> Any:
    cfg = cfg_of(extra + (f"output_dir: {tmp}\n" if tmp else ""))
    return build_training_args(cfg, has_eval=has_eval)


def test_core_mapping(tmp_path: Path) -> None:
    args = args_of("micro_batch_size: 3\ngradient_accumulation_steps: 5\nnum_epochs: 2\neval_batch_size: 7\n"
                   "weight_decay: 0.1\nmax_grad_norm: 0.5\nadam_beta1: 0.8\nadam_beta2: 0.95\n"
                   "adam_epsilon: 1e-6\nseed: 7\nwarmup_steps: 4\noptimizer: adamw_torch\n"
                   "save_total_limit: 2\nsave_only_model: true\nneftune_noise_alpha: 5\n", tmp=tmp_path)
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.num_train_epochs) == (3, 5, 2)
    assert args.per_device_eval_batch_size == 7 and args.max_steps == -1
    assert (args.learning_rate, args.weight_decay, args.max_grad_norm) == (2e-4, 0.1, 0.5)
    assert (args.adam_beta1, args.adam_beta2, args.adam_epsilon) == (0.8, 0.95, 1e-6)
    assert (args.seed, args.warmup_steps, args.optim.value) == (7, 4, "adamw_torch")
    assert (args.save_total_limit, args.save_only_model, args.neftune_noise_alpha) == (2, True, 5)
    assert args.logging_steps == 1 and args.report_to in ([], ["none"])
    assert args.output_dir == str(tmp_path)
    assert args.lr_scheduler_type.value == "cosine"
    assert args.average_tokens_across_devices is True


def test_defaults(tmp_path: Path) -> None:
    args = args_of(tmp=tmp_path)
    assert (args.seed, args.max_grad_norm, args.eval_strategy.value, args.save_strategy.value) == (42, 1.0, "no", "epoch")
    assert not args.bf16 and not args.fp16


def test_max_steps_and_warmup_ratio(tmp_path: Path) -> None:
    args = args_of("max_steps: 30\nwarmup_ratio: 0.1\n", tmp=tmp_path)
    assert (args.max_steps, args.warmup_steps) == (30, 0.1)


@pytest.mark.parametrize(("extra", "name", "kwargs"), [
    ("lr_scheduler: linear\n", "linear", {}),
    ("lr_scheduler: constant\n", "constant", {}),
    ("lr_scheduler: constant_with_warmup\n", "constant_with_warmup", {}),
    ("cosine_min_lr_ratio: 0.1\n", "cosine_with_min_lr", {"min_lr_rate": 0.1}),
])
def test_schedulers(extra: str, name: str, kwargs: dict[str, Any]) -> None:
    schedule = scheduler(cfg_of(extra))
    assert (schedule.hf_type, schedule.kwargs) == (name, kwargs)


def test_unsupported_optimizer() -> None:
    # more names, packages and schedules: tests/training/test_optimizer_groups.py, test_schedulers.py
    with pytest.raises(TrainingConfigError, match="optimizer: came_pytorch.*not supported yet"):
        optimizer_name(cfg_of("optimizer: came_pytorch\n"))


def test_bnb_optimizer_needs_bitsandbytes() -> None:
    pytest.importorskip("torch")
    from axolotl.models.precision import package_available

    if package_available("bitsandbytes"):
        assert optimizer_name(cfg_of("optimizer: adamw_8bit\n")) == "adamw_8bit"
    else:
        with pytest.raises(TrainingConfigError, match="needs bitsandbytes"):
            optimizer_name(cfg_of("optimizer: paged_adamw_8bit\n"))


def test_precision_flags(tmp_path: Path) -> None:
    assert args_of("bf16: true\n", tmp=tmp_path).bf16
    full = args_of("bf16: full\n", tmp=tmp_path)
    assert full.bf16 and full.bf16_full_eval
    pure = args_of("bfloat16: true\n", tmp=tmp_path)  # weights already bf16: no autocast
    assert not pure.bf16 and not pure.fp16


def test_eval_and_save_intervals(tmp_path: Path) -> None:
    args = args_of("eval_steps: 5\nsave_steps: 10\nval_set_size: 0.1\n", has_eval=True, tmp=tmp_path)
    assert (args.eval_strategy.value, args.eval_steps, args.save_strategy.value, args.save_steps) == \
        ("steps", 5, "steps", 10)
    per_epoch = args_of("evals_per_epoch: 4\nsaves_per_epoch: 2\nnum_epochs: 2\nval_set_size: 0.1\n",
                        has_eval=True, tmp=tmp_path)
    assert (per_epoch.eval_steps, per_epoch.save_steps) == (0.125, 0.25)
    assert args_of("val_set_size: 0.1\n", has_eval=True, tmp=tmp_path).eval_strategy.value == "epoch"


def test_evaluation_without_eval_data_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(TrainingConfigError, match="no eval data"):
        args_of("eval_strategy: steps\neval_steps: 2\n", has_eval=False, tmp=tmp_path)


def test_report_to_missing_tracker_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import axolotl.training.args as args_module

    monkeypatch.setattr(args_module, "_available", lambda package: package != "wandb")
    with pytest.raises(TrainingConfigError, match="use_wandb.*wandb"):
        args_of("use_wandb: true\n", tmp=tmp_path)


def test_group_by_length(tmp_path: Path) -> None:
    assert args_of("group_by_length: true\n", tmp=tmp_path).train_sampling_strategy == "group_by_length"


@pytest.mark.parametrize(("dataset_type", "extra"), [
    ("alpaca", "adam_beta3: 0.9999\n"), ("alpaca", "adam_epsilon2: 1e-16\n"),
    ("alpaca", "eval_causal_lm_metrics: [sacrebleu]\n"),
    ("alpaca", "do_causal_lm_eval: true\n"), ("alpaca", "save_safetensors: false\n"),
    ("alpaca", "flex_attn_compile_kwargs: {mode: max-autotune}\n"),
])
def test_refused_keys(dataset_type: str, extra: str) -> None:
    cfg = load(BASE.replace("type: alpaca", f"type: {dataset_type}") + extra).cfg
    key = extra.split(":")[0]
    with pytest.raises(NotSupportedYet, match=f"`{key}` is not supported yet"):
        check_trainer_support(cfg)


def test_default_config_has_no_refusals() -> None:
    assert trainer_refusals(cfg_of()) == []


@pytest.mark.parametrize("extra", [
    "lr_groups:\n  - name: x\n    modules: [q_proj]\n    lr: 1e-5\n", "embedding_lr: 1e-5\n",
    "embedding_lr_scale: 0.5\n", "adapter: lora\nloraplus_lr_ratio: 16\n", "gc_steps: 10\n",
    "gc_collect_steps: -1\n", "lr_scheduler: one_cycle\nlr_div_factor: 10\n", "lr_quadratic_warmup: true\n",
    "cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.8\n",
    "optimizer: galore_adamw\noptim_target_modules: [q_proj]\n",
])
def test_implemented_optimizer_and_schedule_keys_are_not_refused(extra: str) -> None:
    assert trainer_refusals(cfg_of(extra)) == []


def test_every_refused_key_is_a_config_key() -> None:
    from axolotl.config.schema import full_config_class  # plugin keys included

    assert set(REFUSED) <= set(full_config_class().model_fields)


# --------------------------------------------------------------------------------------------
# callbacks: flag logic only (the e2e tests run them inside a Trainer)
# --------------------------------------------------------------------------------------------

def test_signal_requests_save_and_stop() -> None:
    callback, state, control = StopOnSignal(), TrainerState(), TrainerControl()
    before = signal.getsignal(signal.SIGTERM)
    callback.on_train_begin(None, state, control)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        callback.on_step_end(None, state, control)
    finally:
        callback.on_train_end(None, state, control)
    assert control.should_save and control.should_training_stop
    assert callback.signal_name == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_no_signal_no_stop() -> None:
    callback, state, control = StopOnSignal(), TrainerState(), TrainerControl()
    callback.on_train_begin(None, state, control)
    callback.on_step_end(None, state, control)
    callback.on_train_end(None, state, control)
    assert not control.should_save and not control.should_training_stop


def test_loss_watchdog_needs_consecutive_strikes() -> None:
    watchdog, state, control = LossWatchdog(threshold=5.0, patience=2), TrainerState(), TrainerControl()
    for step, loss in enumerate([6.0, 4.0, 6.0], start=1):
        state.global_step = step
        watchdog.on_log(None, state, control, logs={"loss": loss})
    assert not control.should_training_stop
    state.global_step = 4
    watchdog.on_log(None, state, control, logs={"loss": 7.0})
    assert control.should_training_stop and watchdog.tripped == (4, 7.0)


def test_gc_interval_and_its_other_spelling() -> None:
    assert gc_interval(cfg_of()) == 0
    assert gc_interval(cfg_of("gc_steps: 5\n")) == 5
    assert gc_interval(cfg_of("gc_collect_steps: -1\n")) == -1
    assert gc_interval(cfg_of("gc_steps: 5\ngc_collect_steps: 5\n")) == 5
    with pytest.raises(TrainingConfigError, match="disagree"):
        gc_interval(cfg_of("gc_steps: 5\ngc_collect_steps: 10\n"))


def test_garbage_collect_every_n_steps() -> None:
    callback, state, control = GarbageCollect(every=2), TrainerState(), TrainerControl()
    steps = []
    for step in range(1, 7):
        state.global_step = step
        before = callback.collections
        callback.on_step_end(None, state, control)
        if callback.collections > before:
            steps.append(step)
    callback.on_epoch_end(None, state, control)
    assert steps == [2, 4, 6] and callback.collections == 3


def test_garbage_collect_at_epoch_ends_and_before_evaluations() -> None:
    callback, state, control = GarbageCollect(every=-1), TrainerState(), TrainerControl()
    state.global_step = 1
    callback.on_step_end(None, state, control)
    assert callback.collections == 0
    control.should_evaluate = True  # set by the Trainer's flow callback before ours runs
    callback.on_step_end(None, state, control)
    callback.on_epoch_end(None, state, control)
    assert callback.collections == 2
    with pytest.raises(ValueError, match="positive number of steps or -1"):
        GarbageCollect(every=0)


def test_save_first_step() -> None:
    state, control = TrainerState(), TrainerControl()
    state.global_step = 1
    SaveFirstStep().on_step_end(None, state, control)
    assert control.should_save


def test_custom_trainer_class_is_refused() -> None:
    from axolotl.testing.configs import load
    from axolotl.training.support import NotSupportedYet, check_trainer_support

    cfg = load("base_model: m\nlearning_rate: 1e-4\ntrainer_cls: my.Trainer\n").cfg
    with pytest.raises(NotSupportedYet, match="`trainer_cls` is not supported yet"):
        check_trainer_support(cfg)
