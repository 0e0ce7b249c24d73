"""Cheaper versions of the module-tree walks HF Trainer makes at every step.

The Trainer walks the whole module tree several times per optimizer step: `model.train()` at
each micro-step, `model.zero_grad()` after the step, `model.parameters()` to clip the gradients
and `model.num_parameters()` to count FLOPs. LoRA on every linear layer of a 1B Llama gives the
tree about 6,700 modules; on one H100 those walks took about a third of the CPU time of a step
(cProfile, benchmarks/RESULTS.md), and the compiled LoRA step is launch-bound, so the GPU waited
for them.

Two of the walks are Trainer methods, overridden in `CachedModuleWalks`: `floating_point_ops`
(the parameter count is taken once) and `_clip_grad_norm` (the parameter list is taken once).
The other two are calls on the model object itself, so that object gets instance-level `train`
and `zero_grad` that go over a module and parameter list taken when training starts. That is
the only monkeypatching here, on our model instance, not on a library class; both do what the
originals do (tests compare them). They are installed only where the tree cannot change under
them: one process or DDP (FSDP and DeepSpeed replace parameters and wrap modules, and
`nn.DataParallel` copies the model per step), and no module in the tree overrides `train`
(PEFT's DoRA layers do; transformers' `PreTrainedModel.train` only adds hub-kernel handling,
so a model with `use_kernels` on keeps the stock walk).

Targets transformers 5.17-5.23 (`Trainer._clip_grad_norm`, `Trainer.floating_point_ops`) and
torch 2.11-2.13 (`nn.Module.train` / `zero_grad`); where a method is renamed, the override is
simply not called and the stock walk runs.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

from torch import nn


def _stock_train(module: nn.Module) -> bool:
    """Whether `module.train` is nn.Module's (or transformers' thin wrapper of it, kernels off)."""
    method = type(module).train
    if method is nn.Module.train:
        return True
    from transformers import PreTrainedModel

    return method is PreTrainedModel.train and not getattr(module, "use_kernels", False)


def install_cached_walks(model: nn.Module) -> bool:
    """Give `model` walk-free `train` and `zero_grad` (see the module docstring) -> whether it did.

    They are methods bound to `model` reading lists kept on it, so a deep copy of the model gets
    its own lists and methods bound to the copy."""
    modules = list(model.modules())
    if not all(_stock_train(module) for module in modules):
        return False
    model._walk_modules = modules  # type: ignore[assignment]
    model._walk_parameters = list(model.parameters())  # type: ignore[assignment]
    model.train = MethodType(_cached_train, model)  # type: ignore[method-assign]
    model.zero_grad = MethodType(_cached_zero_grad, model)  # type: ignore[method-assign]
    return True


def _cached_train(self: nn.Module, mode: bool = True) -> nn.Module:
    if not isinstance(mode, bool):
        raise ValueError("training mode is expected to be boolean")
    for module in self._walk_modules:  # type: ignore[union-attr]
        if module.training is not mode:
            module.training = mode
    return self


def _cached_zero_grad(self: nn.Module, set_to_none: bool = True) -> None:
    if not set_to_none:
        type(self).zero_grad(self, set_to_none)
        return
    for parameter in self._walk_parameters:  # type: ignore[union-attr]
        if parameter.grad is not None:
            parameter.grad = None


class CachedModuleWalks:
    """Trainer mixin: the walks of the module docstring, done once instead of at every step."""

    _flop_parameters: int | None = None
    _walks_checked = False

    def prepare_cached_walks(self) -> None:
        """Called at the first training step, when the model is in its final (prepared) form."""
        trainer: Any = self
        if self._walks_checked:
            return
        self._walks_checked = True
        sharded = getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)
        if sharded or trainer.args.n_gpu > 1:
            return
        install_cached_walks(trainer.model)

    def floating_point_ops(self, inputs: dict[str, Any]) -> int:
        """The Trainer's estimate (6 x tokens x non-embedding parameters), counting parameters once."""
        model: Any = getattr(self, "model")
        main_input = getattr(model, "main_input_name", "input_ids")
        if main_input not in inputs or not hasattr(model, "num_parameters"):
            return 0
        if self._flop_parameters is None:
            self._flop_parameters = int(model.num_parameters(exclude_embeddings=True))
        return 6 * inputs[main_input].numel() * self._flop_parameters

    def _clip_grad_norm(self, model: nn.Module) -> Any:
        trainer: Any = self
        parameters = getattr(trainer.model, "_walk_parameters", None)  # the list `install_cached_walks` kept
        if parameters is None:  # not installed (FSDP, DeepSpeed, ...): the stock walk
            return super()._clip_grad_norm(model)  # type: ignore[misc]
        return trainer.accelerator.clip_grad_norm_(parameters, trainer.args.max_grad_norm)
