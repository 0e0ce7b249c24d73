"""Parameter groups with their own learning rates: `lr_groups`, `embedding_lr`, LoRA+.

Without these keys the Trainer builds its optimizer as usual. With any of them, every trainable
parameter gets a base learning rate from the first rule that applies:

1. `lr_groups`: the group whose `modules` contain a substring of the parameter's name. With an
   adapter, a pattern also matches the name of the base weight the parameter adapts, so
   `self_attn.o_proj.weight` selects the LoRA A and B matrices of every `o_proj`. A parameter
   matched by two groups, or a group that matches no trainable parameter, is an error.
2. `embedding_lr` (an absolute lr) or `embedding_lr_scale` (times `learning_rate`): the input
   embeddings and the output head (`get_input_embeddings()` / `get_output_embeddings()`; one
   tensor when tied), including their adapter copies (`lora_modules_to_save`, LoRA factors on an
   embedding, trainable tokens).
3. LoRA+ (`loraplus_lr_ratio`): the LoRA factors of an embedding layer get `loraplus_lr_embedding`.
4. `learning_rate`.

Then LoRA+ multiplies the rate of every LoRA B matrix (`lora_B`, bias included) by
`loraplus_lr_ratio`, so it composes with `lr_groups`. Weight decay is the Trainer's choice
(`get_decay_parameter_names`: none for biases and norm weights). Parameters sharing a rate and a
weight decay form one `torch.optim` param group, named in its `"name"` entry; the
`learning_rate` groups come first, so the logged `learning_rate` stays the base one. The schedule
multiplies every group's rate by the same factor.

`OptimizationMixin` puts this, our schedules (`axolotl.training.schedulers`) and the schedule-free
save into a Trainer subclass (`AxolotlTrainer`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import nn

from axolotl.training.args import TrainingConfigError, param_group_keys, scheduler
from axolotl.training.schedulers import build_scheduler

if TYPE_CHECKING:
    import torch
    from transformers import Trainer

    from axolotl.config.schema import AxolotlConfig

WRAPPER_SEGMENTS = frozenset({
    "lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector", "modules_to_save",
    "original_module", "base_layer",
})
"""PEFT's name segments between an adapted module and its parameters."""

LORA_B_SEGMENTS = frozenset({"lora_B"})
LORA_EMBEDDING_SEGMENTS = frozenset({"lora_embedding_A", "lora_embedding_B"})


@dataclass(frozen=True)
class Rates:
    """The learning rates the config gives; `embedding` None = embeddings follow `learning_rate`."""

    base: float
    groups: tuple[tuple[str, tuple[str, ...], float], ...] = ()
    embedding: float | None = None
    loraplus_ratio: float | None = None
    loraplus_embedding: float | None = None


def uses_param_groups(cfg: AxolotlConfig) -> bool:
    """Whether the config needs our parameter groups (else the Trainer's own optimizer is built)."""
    return bool(param_group_keys(cfg))


def rates(cfg: AxolotlConfig, learning_rate: float) -> Rates:
    """The config's rates, refusing contradictory ones."""
    if cfg.embedding_lr is not None and cfg.embedding_lr_scale is not None:
        raise TrainingConfigError("`embedding_lr` and `embedding_lr_scale` both set the embedding learning rate; "
                                  "set only one")
    names = [group.name for group in cfg.lr_groups or []]
    if len(set(names)) != len(names):
        raise TrainingConfigError(f"`lr_groups` names must be unique (got {names})")
    embedding = cfg.embedding_lr
    if cfg.embedding_lr_scale is not None:
        embedding = learning_rate * cfg.embedding_lr_scale
    return Rates(
        base=learning_rate,
        groups=tuple((group.name, tuple(group.modules), group.lr) for group in cfg.lr_groups or []),
        embedding=embedding,
        loraplus_ratio=cfg.loraplus_lr_ratio,
        loraplus_embedding=cfg.loraplus_lr_embedding if cfg.loraplus_lr_ratio is not None else None,
    )


def base_weight_name(name: str) -> str:
    """The name of the base-model parameter that `name` belongs to or adapts (PEFT wrappers removed):
    `base_model.model.model.layers.0.self_attn.o_proj.lora_A.default.weight` ->
    `model.layers.0.self_attn.o_proj.weight`."""
    parts = name.split(".")
    if parts[:2] == ["base_model", "model"]:
        parts = parts[2:]
    kept: list[str] = []
    skip_adapter_name = False
    for part in parts:
        if skip_adapter_name:
            skip_adapter_name = False
            continue
        if part in WRAPPER_SEGMENTS:
            skip_adapter_name = part != "base_layer"  # the adapter's name ("default") follows the others
            continue
        kept.append(part)
    if len(kept) < len(parts) and kept[-1] not in ("weight", "bias"):
        kept.append("weight")  # LoRA embedding factors are parameters without a `.weight`
    return ".".join(kept)


def _module_prefixes(model: nn.Module) -> list[str]:
    """Qualified names of the input embedding and output head modules (either may be missing)."""
    found = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        try:
            module = getattr(model, getter)()
        except (AttributeError, NotImplementedError):
            continue
        if module is not None:
            found.extend(name for name, candidate in model.named_modules() if candidate is module)
    return found


def _segments(name: str) -> set[str]:
    return set(name.split("."))


def assign_rates(model: nn.Module, spec: Rates) -> dict[str, tuple[str, float]]:
    """Trainable parameter name -> (group label, learning rate), by the rules in the module docstring."""
    embeddings = _module_prefixes(model) if spec.embedding is not None else []
    assigned: dict[str, tuple[str, float]] = {}
    matched: dict[str, int] = {group: 0 for group, _, _ in spec.groups}
    seen: set[int] = set()
    for name, param in model.named_parameters():
        if not param.requires_grad or id(param) in seen:
            continue
        seen.add(id(param))
        plain = base_weight_name(name)
        hits = [(group, lr) for group, patterns, lr in spec.groups
                if any(pattern in name or pattern in plain for pattern in patterns)]
        if len(hits) > 1:
            raise TrainingConfigError(f"`lr_groups`: parameter `{name}` matches groups "
                                      f"{[group for group, _ in hits]}; make their `modules` disjoint")
        segments = _segments(name)
        if hits:
            label, lr = hits[0]
            matched[label] += 1
        elif embeddings and any(name == p or name.startswith(p + ".") for p in embeddings):
            label, lr = "embeddings", spec.embedding
        elif spec.loraplus_embedding is not None and segments & LORA_EMBEDDING_SEGMENTS:
            label, lr = "loraplus_embedding", spec.loraplus_embedding
        else:
            label, lr = "default", spec.base
        if spec.loraplus_ratio is not None and segments & LORA_B_SEGMENTS:
            label, lr = "lora_B" if label == "default" else f"{label}/lora_B", lr * spec.loraplus_ratio
        assigned[name] = (label, float(lr))
    _check_every_rule_applied(spec, assigned, matched, embeddings)
    return assigned


def _check_every_rule_applied(spec: Rates, assigned: dict[str, tuple[str, float]], matched: dict[str, int],
                              embeddings: list[str]) -> None:
    """A key that changes no parameter's rate is a mistake worth stopping for, not a no-op."""
    for (group, patterns, _), count in zip(spec.groups, matched.values()):
        if count == 0:
            raise TrainingConfigError(f"`lr_groups` group `{group}`: modules {list(patterns)} match no trainable "
                                      "parameter (names are matched as substrings; frozen parameters, e.g. base "
                                      "weights under an adapter, are not trained)")
    labels = {label for label, _ in assigned.values()}
    if spec.embedding is not None and "embeddings" not in labels and "embeddings/lora_B" not in labels:
        where = "this model has no input/output embedding modules" if not embeddings else \
            "they are frozen (with an adapter, add them to `lora_modules_to_save` or `lora_target_modules`)"
        raise TrainingConfigError(f"`embedding_lr`/`embedding_lr_scale` set but no embedding is trained: {where}")
    if spec.loraplus_ratio is not None and not any(label.endswith("lora_B") for label in labels):
        raise TrainingConfigError("`loraplus_lr_ratio` set but the model has no trainable LoRA B matrices "
                                  "(LoRA+ needs `adapter: lora` or `qlora`)")


def param_groups(model: nn.Module, spec: Rates, decay_names: set[str] | list[str],
                 weight_decay: float) -> list[dict[str, Any]]:
    """`torch.optim` param groups: one per (label, lr, weight decay), `learning_rate` ones first."""
    decay = set(decay_names)
    params = dict(model.named_parameters())
    buckets: dict[tuple[str, float, float], list[nn.Parameter]] = {}
    for key in (("default", spec.base, weight_decay), ("default", spec.base, 0.0)):
        buckets[key] = []
    for name, (label, lr) in assign_rates(model, spec).items():
        buckets.setdefault((label, lr, weight_decay if name in decay else 0.0), []).append(params[name])
    return [{"params": group, "lr": lr, "weight_decay": wd, "name": label}
            for (label, lr, wd), group in buckets.items() if group]


def grouped_optimizer(trainer: Trainer, model: nn.Module, cfg: AxolotlConfig) -> torch.optim.Optimizer:
    """The optimizer `trainer.args.optim` names, over our parameter groups."""
    spec = rates(cfg, trainer.args.learning_rate)
    groups = param_groups(model, spec, trainer.get_decay_parameter_names(model), trainer.args.weight_decay)
    optimizer_cls, kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, model)
    if {"params", "model", "optimizer_dict"} & kwargs.keys() or not isinstance(optimizer_cls, type):
        raise TrainingConfigError(f"`optimizer: {trainer.args.optim.value}` builds its own parameter groups; "
                                  "`lr_groups`, `embedding_lr` and LoRA+ cannot apply")
    optimizer = optimizer_cls(groups, **kwargs)
    if "bitsandbytes" in optimizer_cls.__module__ and kwargs.get("optim_bits") == 8:
        _embeddings_in_32bit(model)
    return optimizer


def _embeddings_in_32bit(model: nn.Module) -> None:
    """As the Trainer does for 8-bit bitsandbytes optimizers: embedding states stay in 32 bits."""
    import bitsandbytes

    manager = bitsandbytes.optim.GlobalOptimManager.get_instance()
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            manager.register_module_override(module, "weight", {"optim_bits": 32})


class OptimizationMixin:
    """For a `Trainer` subclass holding `axolotl_cfg` (AxolotlTrainer; TRL-based trainers can add it
    the same way): our parameter groups and schedules, and the schedule-free average on save."""

    axolotl_cfg: AxolotlConfig

    def create_optimizer(self, model: Any = None) -> Any:
        """Our parameter groups when `lr_groups`, `embedding_lr(_scale)` or LoRA+ ask for them; the
        Trainer's own otherwise."""
        if self.optimizer is None and uses_param_groups(self.axolotl_cfg):
            self.optimizer = grouped_optimizer(self, self.model if model is None else model, self.axolotl_cfg)
        return super().create_optimizer(model)  # type: ignore[misc]

    def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
        """Our schedules (`axolotl.training.schedulers`: rex, one_cycle, cosine with a constant phase or
        quadratic warmup); transformers' for its own names."""
        schedule = scheduler(self.axolotl_cfg)
        if self.lr_scheduler is None and schedule.hf_type is None:
            self.lr_scheduler = build_scheduler(schedule.name, optimizer or self.optimizer,
                                                self.args.get_warmup_steps(num_training_steps), num_training_steps,
                                                **schedule.kwargs)
            self._created_lr_scheduler = True  # rebuilt, like the Trainer's, when training starts again
        return super().create_scheduler(num_training_steps, optimizer)  # type: ignore[misc]

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Schedule-free optimizers train on an interpolation of the weights and keep their average apart:
        save the average (`optimizer.eval()`). The next training step switches back, and a checkpoint's
        optimizer state (saved after the model) records the switch, so resuming starts from the same point."""
        if callable(getattr(self.optimizer, "eval", None)):
            self.optimizer.eval()
        super().save_model(output_dir, _internal_call)  # type: ignore[misc]
