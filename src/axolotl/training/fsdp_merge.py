"""A sharded FSDP checkpoint -> one loadable safetensors model: what `axolotl merge-sharded-fsdp-weights`
runs.

FSDP with `state_dict_type: SHARDED_STATE_DICT` (or `fsdp_final_state_dict_type: SHARDED_STATE_DICT`)
saves each rank's shard with torch.distributed.checkpoint (DCP) into a `pytorch_model_fsdp_0/`
folder: a `.metadata` file plus one `__<rank>_0.distcp` file per rank, keys prefixed by `model.`
(accelerate saves `{"model": state_dict}`). That is fast to write at scale but loads only into the
same sharded model. Merging reads the metadata for every tensor's full shape and dtype, allocates
them in this process, lets DCP fill them from all shard files (`no_dist`: no process group, no GPU),
and writes the result with the model's config and tokenizer to `output_dir/merged`: a staging
folder beside it is renamed into place, so a failed merge never leaves half a model.

Which checkpoint: `--checkpoint-dir` (a `pytorch_model_fsdp_0` folder or the folder holding it),
else the final sharded save in `output_dir`, else the newest `output_dir/checkpoint-N` that has one.
The config (and tokenizer) come from beside the shards when the save put them there, else from
`output_dir`, else from `base_model` (with `vocab_size` set from the merged embeddings).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    import torch

    from axolotl.config.schema import AxolotlConfig

SHARDED_MODEL_DIR: Final = "pytorch_model_fsdp_0"
"""accelerate's folder name for the first (only) model's DCP checkpoint."""
MODEL_PREFIX: Final = "model."
MERGED_DIR_NAME: Final = "merged"
PROVENANCE_FILE: Final = "axolotl_merge.json"
DEFAULT_MAX_SHARD_SIZE: Final = "5GB"
ADAPTER_KEY = re.compile(r"(^|\.)lora_[AB]\.|(^|\.)base_model\.model\.")


class MergeError(ValueError):
    """The checkpoint cannot be merged as asked (names the path and what to do)."""


@dataclass(frozen=True)
class ShardedMergePlan:
    """What `merge_sharded_checkpoint` will read and write, checked before any tensor is read."""

    checkpoint: Path
    """The DCP folder (with `.metadata`)."""
    target: Path
    metadata_sources: tuple[Path, ...]
    """Folders to take config.json / tokenizer files from, in order of preference."""


def find_sharded_checkpoint(output_dir: Path, checkpoint_dir: Path | None = None) -> Path:
    """The DCP folder to merge (see the module docstring for the order)."""
    if checkpoint_dir is not None:
        for candidate in (checkpoint_dir, checkpoint_dir / SHARDED_MODEL_DIR):
            if (candidate / ".metadata").is_file():
                return candidate
        raise MergeError(f"{checkpoint_dir} is not a sharded FSDP checkpoint (no .metadata in it or in its "
                         f"{SHARDED_MODEL_DIR}/); pass the checkpoint-N folder of an FSDP run saved with "
                         "`state_dict_type: SHARDED_STATE_DICT`")
    if (output_dir / SHARDED_MODEL_DIR / ".metadata").is_file():
        return output_dir / SHARDED_MODEL_DIR
    checkpoints = sorted((p for p in output_dir.glob("checkpoint-*") if p.name.split("-")[-1].isdigit()),
                         key=lambda p: int(p.name.split("-")[-1]), reverse=True)
    for checkpoint in checkpoints:
        if (checkpoint / SHARDED_MODEL_DIR / ".metadata").is_file():
            return checkpoint / SHARDED_MODEL_DIR
    raise MergeError(f"no sharded FSDP checkpoint in {output_dir}: neither {SHARDED_MODEL_DIR}/ nor a checkpoint-N/"
                     f"{SHARDED_MODEL_DIR}/ (runs save sharded with `fsdp_config.state_dict_type: SHARDED_STATE_DICT` "
                     "or `fsdp_final_state_dict_type: SHARDED_STATE_DICT`); pass --checkpoint-dir to choose one")


def plan_sharded_merge(cfg: AxolotlConfig, checkpoint_dir: str | None = None, force: bool = False) -> ShardedMergePlan:
    output_dir = Path(cfg.output_dir)
    checkpoint = find_sharded_checkpoint(output_dir, Path(checkpoint_dir) if checkpoint_dir else None)
    target = output_dir / MERGED_DIR_NAME
    if target.resolve() == checkpoint.resolve() or target.resolve() in checkpoint.resolve().parents:
        raise MergeError(f"the merged model would replace its own input {checkpoint}; move the checkpoint first")
    provenance = {"source": "fsdp_sharded", "checkpoint": str(checkpoint.resolve())}
    _check_may_write(target, provenance, force)
    return ShardedMergePlan(checkpoint, target, (checkpoint.parent, output_dir))


def _check_may_write(target: Path, provenance: dict[str, str], force: bool) -> None:
    """An empty or absent target, or an earlier merge of the same checkpoint, may be (re)written;
    anything else only with `force`."""
    if force or not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return
    try:
        previous = json.loads((target / PROVENANCE_FILE).read_text())
    except (OSError, ValueError):
        previous = None
    if previous == provenance:
        return
    raise FileExistsError(f"{target} already holds another model; pass --force to replace it, or move it away")


def load_sharded_state_dict(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Every tensor of a DCP checkpoint, whole, on the CPU; the `model.` wrapper key removed."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    reader = dcp.FileSystemReader(str(checkpoint))
    metadata = reader.read_metadata()
    state: dict[str, torch.Tensor] = {}
    skipped = []
    for key, item in metadata.state_dict_metadata.items():
        if isinstance(item, TensorStorageMetadata):
            state[key] = torch.empty(item.size, dtype=item.properties.dtype)
        else:
            skipped.append(key)  # non-tensor entries (e.g. saved Python objects): no weights in them
    if not state:
        raise MergeError(f"{checkpoint} holds no tensors; is it an optimizer checkpoint (optimizer_0/)? "
                         f"merge the {SHARDED_MODEL_DIR}/ folder")
    dcp.load(state, storage_reader=reader, no_dist=True)
    prefixed = all(key.startswith(MODEL_PREFIX) for key in state)
    return {key.removeprefix(MODEL_PREFIX) if prefixed else key: value for key, value in state.items()}


def _check_not_adapter(state: dict[str, torch.Tensor], checkpoint: Path) -> None:
    if any(ADAPTER_KEY.search(key) for key in state):
        raise NotImplementedError(f"{checkpoint} holds a LoRA model (base + adapter weights); merging sharded "
                                  "adapter checkpoints is not supported yet. LoRA runs under FSDP save the final "
                                  "adapter in full (the default `fsdp_final_state_dict_type: FULL_STATE_DICT`)")


def _model_config(plan: ShardedMergePlan, cfg: AxolotlConfig, state: dict[str, torch.Tensor]) -> Any:
    """The model's config from beside the shards, output_dir, or the base model; vocab size from the
    merged embeddings (added tokens grow them during training)."""
    from transformers import AutoConfig

    source = next((str(d) for d in plan.metadata_sources if (d / "config.json").is_file()),
                  cfg.base_model_config or cfg.base_model)
    config = AutoConfig.from_pretrained(source, trust_remote_code=bool(cfg.trust_remote_code))
    embeddings = [value for key, value in state.items() if key.endswith("embed_tokens.weight")]
    text = config.get_text_config()
    if embeddings and getattr(text, "vocab_size", None) not in (None, embeddings[0].shape[0]):
        text.vocab_size = embeddings[0].shape[0]
    return config


def _save_tokenizer(plan: ShardedMergePlan, cfg: AxolotlConfig, directory: Path) -> None:
    from transformers import AutoTokenizer

    source = next((d for d in plan.metadata_sources
                   if (d / "tokenizer_config.json").is_file() or (d / "tokenizer.json").is_file()), None)
    if source is not None:
        AutoTokenizer.from_pretrained(str(source), trust_remote_code=bool(cfg.trust_remote_code)) \
            .save_pretrained(directory)
        return
    from axolotl.models.tokenizer import load_tokenizer

    load_tokenizer(cfg).save_pretrained(directory)


def merge_sharded_checkpoint(cfg: AxolotlConfig, plan: ShardedMergePlan,
                             max_shard_size: str = DEFAULT_MAX_SHARD_SIZE) -> Path:
    """Read the shards, write model + config + tokenizer to `plan.target` (atomically)."""
    from huggingface_hub import save_torch_state_dict

    state = load_sharded_state_dict(plan.checkpoint)
    _check_not_adapter(state, plan.checkpoint)
    config = _model_config(plan, cfg, state)
    target = plan.target
    staging = target.parent / f".{target.name}.staging-{os.getpid()}"
    old = target.parent / f".{target.name}.old-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        save_torch_state_dict(state, staging, max_shard_size=max_shard_size)
        config.save_pretrained(staging)
        _save_tokenizer(plan, cfg, staging)
        (staging / PROVENANCE_FILE).write_text(json.dumps(
            {"source": "fsdp_sharded", "checkpoint": str(plan.checkpoint.resolve())}, indent=2) + "\n")
        if target.exists():
            target.rename(old)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return target
