"""Merging a trained LoRA adapter into its base model: what `axolotl merge-lora` runs.

Two steps, so every mistake that needs no weights fails in milliseconds:

1. `plan_merge(cfg, lora_model_dir, force)` picks the adapter (`--lora-model-dir`, else the
   config's `lora_model_dir`, else `output_dir`), reads its adapter_config.json, and checks the
   target `output_dir/merged` (an existing different model there is only replaced with `force`).
2. `run_merge(cfg, plan)` loads the base *unquantised* in the dtype training loaded it in, wraps
   it in the adapter, merges, and saves model (safetensors, sharded) and tokenizer (with its chat
   template) to a staging folder beside the target, which is then renamed into place, so a failed
   merge never leaves a half-written model.

QLoRA adapters are merged into the full-precision base: the adapter was trained against the
dequantised 4-bit weights, but its low-rank delta is tiny next to 4-bit rounding, so merging it
into re-quantised weights would lose most of it. This matches what the 4-bit training computed
up to the quantisation error of the base.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Mapping

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from axolotl.config.schema import AxolotlConfig

MERGED_DIR_NAME: Final = "merged"
DEFAULT_MAX_SHARD_SIZE: Final = "5GB"
"""Shard size of the saved weights: the hub's usual size, small enough to download and load one
file at a time (transformers 5 defaults to 50GB, i.e. one file for most models)."""
PROVENANCE_FILE: Final = "axolotl_merge.json"
"""Written beside the merged weights: which adapter and base they came from. A re-run of the
same merge may replace its own output without `--force`; anything else there is protected."""

TRAINING_ONLY: Final[dict[str, Any]] = {
    "gradient_checkpointing": False, "activation_offloading": False, "torch_compile": False,
    "sample_packing": False, "tiled_mlp": None, "use_kernels": None, "fp32_norm_classes": None,
    "unfrozen_parameters": None, "nf4_backend": "bitsandbytes", "load_in_4bit": False, "load_in_8bit": False,
    "gpu_memory_limit": None, "attn_implementation": None,
}
"""Config values reset for merging: they shape the training run (or its quantised base, or the
attention kernel, which never runs here), not the weights, and some would be refused by the
loader or need packages (flash-attn, bitsandbytes) a CPU merge machine lacks."""


@dataclass(frozen=True)
class MergePlan:
    """What `run_merge` will do, decided and checked before any weight is loaded."""

    adapter_dir: Path
    adapter_source: str
    """The setting that chose `adapter_dir`: `--lora-model-dir`, `lora_model_dir` or `output_dir`."""
    target: Path
    saved: dict[str, Any]
    """The adapter's adapter_config.json."""
    fingerprint: dict[str, str]
    notes: tuple[str, ...] = ()


def merged_dir(cfg: AxolotlConfig) -> Path:
    return Path(cfg.output_dir) / MERGED_DIR_NAME


def plan_merge(cfg: AxolotlConfig, lora_model_dir: str | None = None, force: bool = False) -> MergePlan:
    """Check everything that needs no weights; raise with the offending path otherwise."""
    from axolotl.models.adapters import read_adapter_config

    adapter_dir, source = _choose_adapter_dir(cfg, lora_model_dir)
    _check_is_adapter(adapter_dir, source)
    saved = read_adapter_config(adapter_dir)
    _check_mergeable(saved, adapter_dir)
    target = merged_dir(cfg)
    _check_not_an_input(target, adapter_dir, cfg.base_model)
    fingerprint = _fingerprint(cfg, adapter_dir)
    _check_may_write(target, fingerprint, force)
    notes = _notes(cfg, adapter_dir, source, saved)
    return MergePlan(adapter_dir, source, target, saved, fingerprint, tuple(notes))


def run_merge(cfg: AxolotlConfig, plan: MergePlan, max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Load, merge and publish as `plan` says; returns the folder the merged model is in."""
    model, tokenizer = load_merged(cfg, plan.adapter_dir)
    return _publish(model, tokenizer, plan, max_shard_size)


def merge_lora(cfg: AxolotlConfig, lora_model_dir: str | None = None, force: bool = False,
               max_shard_size: int | str = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """`plan_merge` then `run_merge`: the library form of `axolotl merge-lora`."""
    return run_merge(cfg, plan_merge(cfg, lora_model_dir, force), max_shard_size)


# choosing and checking the adapter


def _choose_adapter_dir(cfg: AxolotlConfig, lora_model_dir: str | None) -> tuple[Path, str]:
    """The command line wins over the config's `lora_model_dir`, which wins over `output_dir`
    (the spec: set `lora_model_dir` to the output_dir to use a trained adapter)."""
    if lora_model_dir:
        return Path(lora_model_dir), "--lora-model-dir"
    if cfg.lora_model_dir:
        return Path(cfg.lora_model_dir), "lora_model_dir"
    return Path(cfg.output_dir), "output_dir"


def _check_is_adapter(directory: Path, source: str) -> None:
    """Tell a missing folder, a full model and an unrelated folder apart: each needs a different fix."""
    from axolotl.models.inference import is_adapter_dir, is_model_dir

    if not directory.is_dir():
        raise FileNotFoundError(f"no adapter to merge: {directory} (from {source}) does not exist; train with "
                                "`adapter: lora` first, or pass --lora-model-dir DIR")
    if is_adapter_dir(directory):
        return
    if is_model_dir(directory):
        raise ValueError(f"{directory} (from {source}) holds a full model, not a LoRA adapter: there is "
                         "nothing to merge, use it directly (e.g. `axolotl inference --base-model`)")
    raise ValueError(f"{directory} (from {source}) is not a LoRA adapter (no adapter_config.json); pass "
                     "--lora-model-dir with the output_dir or a checkpoint-N folder of a LoRA run")


def _check_mergeable(saved: Mapping[str, Any], directory: Path) -> None:
    if saved.get("peft_type") != "LORA":
        raise ValueError(f"{directory} holds a {saved.get('peft_type')} adapter; only LoRA adapters can be merged")
    if saved.get("layer_replication"):
        # The replicated layers share their base weights, so merging each copy's own LoRA into
        # them would silently mix the copies (measured: logits off by ~50%).
        raise NotImplementedError(f"merging an adapter trained with `peft_layer_replication` ({directory}) is not "
                                  "supported yet; use the adapter unmerged")


def _check_not_an_input(target: Path, adapter_dir: Path, base_model: str) -> None:
    """Publishing renames the target away: it must not be (or contain) what is being read."""
    inputs = [adapter_dir] + ([Path(base_model)] if Path(base_model).exists() else [])
    for path in inputs:
        if path.resolve() == target.resolve() or target.resolve() in path.resolve().parents:
            raise ValueError(f"the merged model would be written to {target}, which holds the input {path}; "
                             "set a different `output_dir` (the model goes to output_dir/merged)")


# protecting an existing merged model


def _fingerprint(cfg: AxolotlConfig, adapter_dir: Path) -> dict[str, str]:
    """What determines the merged weights: adapter files (by content), base and dtype."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        path = adapter_dir / name
        if path.is_file():
            digest.update(name.encode())
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
    return {"adapter_sha256": digest.hexdigest(), "base_model": cfg.base_model, "dtype": weights_dtype(cfg)}


def _check_may_write(target: Path, fingerprint: Mapping[str, str], force: bool) -> None:
    """An empty or absent target, or the output of this same merge, may be (re)written; anything
    else only with `force`, because it may be a model someone still needs."""
    if force or not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    previous = _read_fingerprint(target)
    if previous is not None and all(previous.get(key) == value for key, value in fingerprint.items()):
        return
    what = "a model merged from a different adapter or base" if previous is not None else "other files"
    raise FileExistsError(f"{target} already holds {what}; pass --force to replace it, or move it away")


def _read_fingerprint(target: Path) -> dict[str, Any] | None:
    try:
        return json.loads((target / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        return None


def _notes(cfg: AxolotlConfig, adapter_dir: Path, source: str, saved: Mapping[str, Any]) -> list[str]:
    """Things worth a line before a long merge: a likely wrong choice is not always an error."""
    from axolotl.models.inference import is_adapter_dir

    notes = []
    output = Path(cfg.output_dir)
    if source == "lora_model_dir" and is_adapter_dir(output) and output.resolve() != adapter_dir.resolve():
        notes.append(f"merging the adapter in `lora_model_dir` ({adapter_dir}); output_dir ({output}) holds "
                     f"another one: pass --lora-model-dir {output} to merge that")
    trained_on = saved.get("base_model_name_or_path")
    if trained_on and not _same_model(trained_on, cfg.base_model):
        notes.append(f"the adapter in {adapter_dir} names `{trained_on}` as its base, the config loads "
                     f"`{cfg.base_model}`; merging anyway because the shapes are checked")
    if cfg.load_in_4bit or cfg.load_in_8bit:
        notes.append("the adapter was trained on a quantised base; it is merged into the unquantised "
                     f"{weights_dtype(cfg)} weights")
    return notes


def weights_dtype(cfg: AxolotlConfig) -> str:
    """The dtype the merged weights are saved in: the one training loaded the base in."""
    from axolotl.models.precision import resolve_precision

    return str(resolve_precision(cfg).weights).removeprefix("torch.")


def _same_model(a: str, b: str) -> bool:
    """Local paths compare resolved (relative vs absolute spellings); hub ids as strings."""
    if Path(a).exists() and Path(b).exists():
        return Path(a).resolve() == Path(b).resolve()
    return a == b


# loading and merging


def merge_config(cfg: AxolotlConfig, adapter_dir: Path) -> AxolotlConfig:
    """The config to load the base with: unquantised, training-only settings off, the tokenizer
    training saved beside the adapter (it has the added tokens and chat template), and the
    device placement of `lora_on_cpu` / `gpu_memory_limit`."""
    merged = cfg.model_copy(deep=True)
    for key, value in TRAINING_ONLY.items():
        setattr(merged, key, value)
    merged.device_map, merged.max_memory = placement(cfg)
    if (adapter_dir / "tokenizer_config.json").is_file():
        merged.tokenizer_config = str(adapter_dir)
    return merged


def placement(cfg: AxolotlConfig) -> tuple[Any, dict[int | str, int | str] | None]:
    """`device_map` and `max_memory` for the base. CPU with `lora_on_cpu` or without a GPU (also
    `CUDA_VISIBLE_DEVICES=""`); otherwise spread over the GPUs, each capped at `gpu_memory_limit`,
    with what does not fit kept in CPU RAM (merging works on offloaded layers too)."""
    import torch

    if cfg.lora_on_cpu or not torch.cuda.is_available():
        return {"": "cpu"}, None
    if cfg.gpu_memory_limit is None:
        return cfg.device_map or "auto", cfg.max_memory
    from accelerate.utils import get_max_memory

    return cfg.device_map or "auto", memory_limits(cfg.gpu_memory_limit, get_max_memory(), cfg.max_memory)


def memory_limits(limit: int | str, available: Mapping[int | str, int | str],
                  configured: Mapping[int | str, int | str] | None) -> dict[int | str, int | str]:
    """`max_memory` for `gpu_memory_limit`: every GPU (integer key) capped at the limit (an integer
    means GiB), CPU and disk entries from `max_memory` where set, else what is available."""
    cap = f"{limit}GiB" if isinstance(limit, int) else limit
    merged = {**available, **(configured or {})}
    return {key: cap if isinstance(key, int) else value for key, value in merged.items()}


def load_merged(cfg: AxolotlConfig, adapter_dir: Path) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base with the adapter merged in, as a plain transformers model, and its tokenizer."""
    from axolotl.models.adapters import load_saved_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    merging = merge_config(cfg, adapter_dir)
    tokenizer = load_tokenizer(merging)
    base = load_model(merging, tokenizer)
    peft_model = load_saved_adapter(merging, base, adapter_dir, trainable=False)
    # safe_merge checks each merged weight for NaN/inf before it replaces the original.
    model = peft_model.merge_and_unload(safe_merge=True)
    model.eval()
    return model, tokenizer


# publishing


def _publish(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, plan: MergePlan,
             max_shard_size: int | str) -> Path:
    """Save into a sibling staging folder, then swap it in (readers never see half a model)."""
    target = plan.target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        model.save_pretrained(staging, max_shard_size=max_shard_size)
        tokenizer.save_pretrained(staging)
        record = {**plan.fingerprint, "adapter_dir": str(plan.adapter_dir.resolve())}
        (staging / PROVENANCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        _swap_in(staging, target, old)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _swap_in(staging: Path, target: Path, old: Path) -> None:
    """Rename `staging` to `target`; a previous target is moved aside first and put back if the
    rename fails, then deleted."""
    if target.is_dir():
        target.rename(old)
    elif target.exists():
        target.replace(old)
    try:
        staging.rename(target)
    except OSError:
        if old.exists():
            old.rename(target)
        raise
    if old.is_dir():
        shutil.rmtree(old, ignore_errors=True)
    elif old.exists():
        old.unlink()
