"""README.md for a run's output: what was trained, from what, on what, how, and how it ended.

Written by `axolotl train` next to the weights (replacing PEFT's placeholder card for adapters).
Everything in it comes from the validated config and the run's metrics; the full config is the
`axolotl_config.yml` written beside it, which the card links rather than repeats. The YAML header
is the Hugging Face Hub's model-card metadata: base model and datasets are listed there only
when they are Hub ids (a local path is meaningless on the Hub; the body names it anyway).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from axolotl import __version__
from axolotl.config.locations import REMOTE_FS_PREFIXES, looks_local
from axolotl.config.render import RESOLVED_CONFIG_NAME, atomic_write_text

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

CARD_NAME = "README.md"


def write_model_card(directory: Path, cfg: AxolotlConfig, metrics: dict[str, Any], world_size: int = 1) -> Path:
    """Write `directory/README.md` (atomically) and return its path."""
    return atomic_write_text(Path(directory) / CARD_NAME, model_card(cfg, metrics, world_size))


def model_card(cfg: AxolotlConfig, metrics: dict[str, Any], world_size: int = 1) -> str:
    """The card's text (see the module docstring)."""
    title = Path(cfg.output_dir).resolve().name
    base = f"[{cfg.base_model}](https://huggingface.co/{cfg.base_model})" if _hub_id(cfg.base_model) \
        else f"`{cfg.base_model}`"
    sections = [
        _front_matter(cfg),
        f"# {title}\n\n{method_name(cfg)} of {base} with Axolotl {_version('axolotl')}; objective: "
        f"{objective(cfg)}.",
        "## Method\n\n" + _method_details(cfg),
        "## Datasets\n\n" + _datasets(cfg),
        "## Hyperparameters\n\n" + _table(["key", "value"], _hyperparameters(cfg, world_size)),
        "## Results\n\n" + _results(metrics),
        "## Framework versions\n\n" + "\n".join(f"- {name} {_version(module)}" for name, module in _frameworks(cfg)),
        f"## Config\n\nThe complete resolved config of this run is [`{RESOLVED_CONFIG_NAME}`]({RESOLVED_CONFIG_NAME}) "
        f"in this folder; `axolotl train {RESOLVED_CONFIG_NAME}` repeats the run.",
    ]
    return "\n\n".join(sections) + "\n"


def method_name(cfg: AxolotlConfig) -> str:
    """"Full fine-tuning", "LoRA" (or "DoRA") or "QLoRA"."""
    if not cfg.adapter:
        return "Full fine-tuning"
    if cfg.adapter == "qlora":
        return "QLoRA"
    return "DoRA" if cfg.peft_use_dora else "LoRA"


def objective(cfg: AxolotlConfig) -> str:
    """What the run optimised: SFT, a preference method (`rl`), or a reward model."""
    if cfg.rl:
        return f"{str(cfg.rl).upper()} (`rl: {cfg.rl}`)"
    if cfg.reward_model:
        return "reward model (`reward_model: true`)"
    if cfg.process_reward_model:
        return "process reward model (`process_reward_model: true`)"
    return "supervised fine-tuning (SFT)"


def _front_matter(cfg: AxolotlConfig) -> str:
    meta: dict[str, Any] = {}
    if _hub_id(cfg.base_model):
        meta["base_model"] = cfg.base_model
    meta["library_name"] = "peft" if cfg.adapter else "transformers"
    meta["tags"] = ["axolotl", "generated_from_trainer", str(cfg.rl) if cfg.rl else "sft",
                    *([cfg.adapter] if cfg.adapter else ["full-fine-tune"])]
    hub_datasets = [d.path for d in (cfg.datasets or []) if getattr(d, "path", None) and _hub_id(d.path)]
    if hub_datasets:
        meta["datasets"] = list(dict.fromkeys(hub_datasets))
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---"


def _method_details(cfg: AxolotlConfig) -> str:
    if not cfg.adapter:
        trained = f"parameters matching {cfg.unfrozen_parameters}" if cfg.unfrozen_parameters else "all parameters"
        return f"Full fine-tuning: {trained} trained."
    targets = "every linear layer" if cfg.lora_target_linear else (cfg.lora_target_modules or "PEFT's defaults")
    lines = [f"- rank `lora_r`: {cfg.lora_r}, `lora_alpha`: {cfg.lora_alpha}, `lora_dropout`: {cfg.lora_dropout}",
             f"- target modules: {targets}"]
    if cfg.adapter == "qlora":
        lines.append("- base weights quantised to 4 bits (bitsandbytes NF4) while training")
    lines.append(f"- this folder holds the adapter; `axolotl merge-lora {RESOLVED_CONFIG_NAME}` merges it into "
                 "the base model")
    return "\n".join(lines)


def _datasets(cfg: AxolotlConfig) -> str:
    rows = [[_dataset_source(d), _dataset_type(d), getattr(d, "split", None) or "", role]
            for role, entries in (("train", cfg.datasets), ("eval", cfg.test_datasets))
            for d in entries or []]
    text = _table(["dataset", "type", "split", "used for"], rows)
    if cfg.val_set_size:
        text += f"\n\n{cfg.val_set_size} of the training rows were held out for evaluation (`val_set_size`)."
    return text


def _dataset_source(entry: Any) -> str:
    source = entry.path or entry.data_files
    name = getattr(entry, "name", None)
    return f"`{source}`" + (f" ({name})" if name else "")


def _dataset_type(entry: Any) -> str:
    kind = getattr(entry, "type", None)
    if kind is None:
        return "pre-tokenized"
    return kind if isinstance(kind, str) else "custom format"


def _hyperparameters(cfg: AxolotlConfig, world_size: int) -> list[list[Any]]:
    from axolotl.models.precision import resolve_precision

    micro, accumulation = cfg.micro_batch_size or 1, cfg.gradient_accumulation_steps or 1
    warmup = cfg.warmup_steps if cfg.warmup_steps is not None else cfg.warmup_ratio
    rows: list[list[Any]] = [
        ["learning_rate", cfg.learning_rate],
        ["optimizer", cfg.optimizer],
        ["lr_scheduler", cfg.lr_scheduler],
        ["warmup (steps or ratio)", warmup if warmup is not None else 0],
        ["weight_decay", cfg.weight_decay],
        ["micro_batch_size", micro],
        ["gradient_accumulation_steps", accumulation],
        ["processes", world_size],
        ["effective batch size", micro * accumulation * world_size],
        ["max_steps" if cfg.max_steps else "num_epochs", cfg.max_steps or cfg.num_epochs],
        ["sequence_len", cfg.sequence_len],
        ["sample_packing", bool(cfg.sample_packing)],
        ["precision", str(resolve_precision(cfg).compute).removeprefix("torch.")],
        ["gradient_checkpointing", cfg.gradient_checkpointing or False],
        ["seed", cfg.seed],
    ]
    if cfg.max_grad_norm is not None:
        rows.append(["max_grad_norm", cfg.max_grad_norm])
    return [row for row in rows if row[1] is not None]


def _results(metrics: dict[str, Any]) -> str:
    train = metrics.get("train_loss_history") or []
    evals = metrics.get("eval_history") or []
    final = metrics.get("final") or {}
    rows: list[list[Any]] = []
    if train:
        rows.append(["final train loss (last logged step)", _num(train[-1]["loss"])])
        rows.append(["steps", train[-1].get("step", "")])
    if "train_loss" in final:
        rows.append(["mean train loss over the run", _num(final["train_loss"])])
    if evals:
        rows.append(["final eval loss", _num(evals[-1]["eval_loss"])])
    if "epoch" in final:
        rows.append(["epochs", _num(final["epoch"])])
    if metrics.get("num_input_tokens_seen"):
        rows.append(["tokens seen", metrics["num_input_tokens_seen"]])
    if not rows:
        return "No metrics were recorded."
    return _table(["metric", "value"], rows) + "\n\nEvery logged value is in `metrics.json`."


def _frameworks(cfg: AxolotlConfig) -> list[tuple[str, str]]:
    names = [("Axolotl", "axolotl"), ("Transformers", "transformers"), ("PyTorch", "torch")]
    if cfg.adapter:
        names.append(("PEFT", "peft"))
    return [*names, ("Datasets", "datasets"), ("Tokenizers", "tokenizers")]


def _version(module: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    if module == "axolotl":
        return __version__
    try:
        return version(module)
    except PackageNotFoundError:
        return "(not installed)"


def _hub_id(path: str) -> bool:
    """Whether `path` reads as a Hub repository id rather than a local or remote location."""
    if looks_local(path) or path.startswith((*REMOTE_FS_PREFIXES, "http://", "https://")) or Path(path).exists():
        return False
    return path.count("/") <= 1


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
