"""Learning-rate schedules: our factors against hand-computed values, the schedule a config resolves to,
and the curve `AxolotlTrainer.create_scheduler` really runs (warmup included)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from axolotl.testing.configs import load
from axolotl.training import schedulers
from axolotl.training.args import TrainingConfigError, build_training_args, scheduler

BASE = "base_model: some/model\nlearning_rate: 1.0\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"


def cfg_of(extra: str = "") -> Any:
    return load(BASE + extra).cfg


# --------------------------------------------------------------------------------------------
# the factor functions, value by value
# --------------------------------------------------------------------------------------------

def test_cosine_holds_the_floor_after_the_constant_ratio() -> None:
    # W=2, T=10, floor 0.1, constant from floor(10 * 0.8) = step 8 on
    f = [schedulers.cosine(s, warmup=2, total=10, min_ratio=0.1, constant_ratio=0.8) for s in range(11)]
    assert f[:3] == pytest.approx([0.0, 0.5, 1.0])
    # step 5: progress (5 - 2) / (8 - 2) = 0.5 -> 0.1 + 0.9 * 0.5
    assert f[5] == pytest.approx(0.55)
    # step 4: progress 1/3 -> 0.1 + 0.9 * (1 + cos(pi/3)) / 2 = 0.1 + 0.9 * 0.75
    assert f[4] == pytest.approx(0.775)
    assert f[8:] == pytest.approx([0.1, 0.1, 0.1])


def test_cosine_without_constant_ratio_reaches_the_floor_at_the_last_step() -> None:
    f = [schedulers.cosine(s, warmup=0, total=4, min_ratio=0.2) for s in range(5)]
    # progress s/4: 0.2 + 0.8 * (1 + cos(pi s / 4)) / 2
    assert f == pytest.approx([1.0, 0.2 + 0.4 * (1 + math.sqrt(0.5)), 0.6, 0.2 + 0.4 * (1 - math.sqrt(0.5)), 0.2])


def test_quadratic_warmup() -> None:
    f = [schedulers.cosine(s, warmup=4, total=8, quadratic_warmup=True) for s in range(5)]
    assert f == pytest.approx([0.0, 1 / 16, 1 / 4, 9 / 16, 1.0])


def test_rex() -> None:
    # p = s / 10: (1 - p) / (1 - p / 2)
    f = [schedulers.rex(s, warmup=0, total=10) for s in range(11)]
    assert f[0] == 1.0 and f[10] == 0.0
    assert f[5] == pytest.approx(0.5 / 0.75)
    assert f[8] == pytest.approx(0.2 / 0.6)
    assert all(a > b for a, b in zip(f, f[1:]))
    assert all(r >= 1 - s / 10 for s, r in enumerate(f)), "REX stays above the linear decay"
    floored = schedulers.rex(5, warmup=2, total=12, min_ratio=0.1)  # p = 0.3
    assert floored == pytest.approx(0.1 + 0.9 * 0.7 / 0.85)
    assert schedulers.rex(1, warmup=2, total=12) == pytest.approx(0.5)


def test_one_cycle() -> None:
    # div 10: starts at 0.1, peaks at the end of the 4 warmup steps, anneals to 0.1 / 1e4 at step 12
    f = [schedulers.one_cycle(s, warmup=4, total=12, div_factor=10) for s in range(13)]
    assert f[0] == pytest.approx(0.1)
    assert f[2] == pytest.approx(0.55)  # half-way up the half cosine
    assert f[4] == pytest.approx(1.0)
    assert f[8] == pytest.approx(1e-5 + (1 - 1e-5) * 0.5)
    assert f[12] == pytest.approx(1e-5)


# --------------------------------------------------------------------------------------------
# config -> schedule
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "name", "hf_type", "kwargs"), [
    ("", "cosine", "cosine", {}),
    ("lr_scheduler: linear\n", "linear", "linear", {}),
    ("cosine_min_lr_ratio: 0.1\n", "cosine_with_min_lr", "cosine_with_min_lr", {"min_lr_rate": 0.1}),
    ("lr_scheduler: cosine_warmup_with_min_lr\ncosine_min_lr_ratio: 0.2\n", "cosine_warmup_with_min_lr",
     "cosine_warmup_with_min_lr", {"min_lr_rate": 0.2}),
    ("lr_scheduler: polynomial\nlr_scheduler_kwargs: {power: 2.0}\n", "polynomial", "polynomial", {"power": 2.0}),
    ("lr_scheduler: inverse_sqrt\n", "inverse_sqrt", "inverse_sqrt", {}),
    ("lr_scheduler: warmup_stable_decay\nlr_scheduler_kwargs: {num_decay_steps: 3}\ncosine_min_lr_ratio: 0.1\n",
     "warmup_stable_decay", "warmup_stable_decay", {"num_decay_steps": 3, "min_lr_ratio": 0.1}),
    ("cosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.8\n", "cosine", None,
     {"min_ratio": 0.1, "constant_ratio": 0.8, "quadratic_warmup": False}),
    ("lr_quadratic_warmup: true\n", "cosine", None, {"min_ratio": 0.0, "constant_ratio": None,
                                                      "quadratic_warmup": True}),
    ("lr_scheduler: rex\ncosine_min_lr_ratio: 0.05\n", "rex", None, {"min_ratio": 0.05}),
    ("lr_scheduler: one_cycle\nlr_div_factor: 6\n", "one_cycle", None, {"div_factor": 6.0}),
    ("lr_scheduler: one_cycle\n", "one_cycle", None, {"div_factor": 25.0}),
    ("lr_scheduler: one_cycle\nlr_scheduler_kwargs: {final_div_factor: 100}\n", "one_cycle", None,
     {"div_factor": 25.0, "final_div_factor": 100}),
])
def test_config_to_schedule(extra: str, name: str, hf_type: str | None, kwargs: dict[str, Any]) -> None:
    schedule = scheduler(cfg_of(extra))
    assert (schedule.name, schedule.hf_type, schedule.kwargs) == (name, hf_type, kwargs)


def test_training_arguments_hold_a_placeholder_for_our_schedules(tmp_path: Any) -> None:
    args = build_training_args(cfg_of(f"lr_scheduler: rex\noutput_dir: {tmp_path}\n"), has_eval=False)
    assert args.lr_scheduler_type.value == "constant" and args.lr_scheduler_kwargs == {}
    args = build_training_args(cfg_of(f"cosine_min_lr_ratio: 0.1\noutput_dir: {tmp_path}\n"), has_eval=False)
    assert args.lr_scheduler_type.value == "cosine_with_min_lr" and args.lr_scheduler_kwargs == {"min_lr_rate": 0.1}


@pytest.mark.parametrize(("extra", "message"), [
    ("lr_scheduler: linear\nlr_div_factor: 10\n", "`lr_div_factor` only applies to `lr_scheduler: one_cycle`"),
    ("lr_scheduler: linear\ncosine_constant_lr_ratio: 0.8\n", "`cosine_constant_lr_ratio` only applies"),
    ("lr_scheduler: one_cycle\ncosine_min_lr_ratio: 0.1\n", "`cosine_min_lr_ratio` only applies"),
    ("lr_scheduler: linear\nlr_quadratic_warmup: true\n", "`lr_quadratic_warmup` only applies"),
    ("cosine_constant_lr_ratio: 0.8\n", "set `cosine_min_lr_ratio` too"),
    ("lr_scheduler: cosine_with_min_lr\n", "needs `cosine_min_lr_ratio`"),
    ("lr_scheduler: warmup_stable_decay\n", "needs `lr_scheduler_kwargs.num_decay_steps`"),
    ("lr_scheduler: rex\nlr_scheduler_kwargs: {num_cycles: 2}\n", r"\['num_cycles'\] are not options of `lr_schedu"),
    ("lr_scheduler: one_cycle\nlr_scheduler_kwargs: {div_factor: 2}\n", r"accepts \['final_div_factor'\] there"),
])
def test_schedule_errors(extra: str, message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        scheduler(cfg_of(extra))


def test_unknown_scheduler_lists_the_valid_names() -> None:
    # the config layer already refuses unknown names; the trainer says the same for a config built otherwise
    cfg = cfg_of().model_copy(update={"lr_scheduler": "cosine_annealing"})
    with pytest.raises(TrainingConfigError, match=r"`lr_scheduler: cosine_annealing` is not a schedule.*"
                                                  r"constant.*one_cycle.*rex.*warmup_stable_decay"):
        scheduler(cfg)


def test_reduce_on_plateau_needs_evaluation(tmp_path: Any) -> None:
    with pytest.raises(TrainingConfigError, match="reduce_lr_on_plateau.*needs evaluation"):
        build_training_args(cfg_of(f"lr_scheduler: reduce_lr_on_plateau\noutput_dir: {tmp_path}\n"), has_eval=False)


# --------------------------------------------------------------------------------------------
# the curve the trainer runs
# --------------------------------------------------------------------------------------------

def scheduled_lrs(extra: str, steps: int, tmp_path: Any) -> list[float]:
    """The lr of every step 0..steps of `AxolotlTrainer`'s scheduler for a one-parameter model."""
    from axolotl.training.sft import AxolotlTrainer

    cfg = cfg_of(extra + f"output_dir: {tmp_path}\noptimizer: sgd\n")
    trainer = AxolotlTrainer(model=torch.nn.Linear(2, 1), args=build_training_args(cfg, has_eval=False),
                             axolotl_cfg=cfg)
    trainer.create_optimizer_and_scheduler(num_training_steps=steps)
    lrs = []
    for _ in range(steps + 1):
        lrs.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    return lrs


def test_trainer_runs_our_cosine_with_constant_phase(tmp_path: Any) -> None:
    lrs = scheduled_lrs("warmup_steps: 2\ncosine_min_lr_ratio: 0.1\ncosine_constant_lr_ratio: 0.8\n", 10, tmp_path)
    assert lrs == pytest.approx([0.0, 0.5, 1.0, 0.1 + 0.9 * (1 + math.cos(math.pi / 6)) / 2, 0.775, 0.55,
                                 0.325, 0.1 + 0.9 * (1 + math.cos(5 * math.pi / 6)) / 2, 0.1, 0.1, 0.1])


def test_trainer_runs_rex_with_warmup_ratio(tmp_path: Any) -> None:
    # warmup_ratio 0.2 of 10 steps = 2 warmup steps; then p = (s - 2) / 8
    lrs = scheduled_lrs("warmup_ratio: 0.2\nlr_scheduler: rex\n", 10, tmp_path)
    expected = [0.0, 0.5] + [(1 - p) / (1 - p / 2) for p in (i / 8 for i in range(9))]
    assert lrs == pytest.approx(expected)


def test_trainer_runs_one_cycle(tmp_path: Any) -> None:
    lrs = scheduled_lrs("warmup_steps: 4\nlr_scheduler: one_cycle\nlr_div_factor: 10\n", 12, tmp_path)
    assert lrs[0] == pytest.approx(0.1) and lrs[4] == pytest.approx(1.0) and lrs[12] == pytest.approx(1e-5)
    assert lrs == sorted(lrs[:5]) + sorted(lrs[5:], reverse=True)


def test_trainer_keeps_transformers_schedules(tmp_path: Any) -> None:
    # linear: warmup 2 then (10 - s) / 8
    lrs = scheduled_lrs("warmup_steps: 2\nlr_scheduler: linear\n", 10, tmp_path)
    assert lrs == pytest.approx([0.0, 0.5] + [(10 - s) / 8 for s in range(2, 11)])
    floor = scheduled_lrs("cosine_min_lr_ratio: 0.25\n", 4, tmp_path)
    assert floor == pytest.approx([1.0, 0.25 + 0.375 * (1 + math.sqrt(0.5)), 0.625,
                                   0.25 + 0.375 * (1 - math.sqrt(0.5)), 0.25])
