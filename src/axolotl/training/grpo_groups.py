"""A scored GRPO generation batch cut into prompt groups and put back together.

Replay, re-rolling and streaming (`axolotl.training.grpo_mixing`) all swap whole prompt groups
between scored batches: TRL's output dict (one row per completion, `num_generations` consecutive
rows per prompt) is cut into one dict per group, and groups from different batches are joined
again. Batches are padded to their own longest prompt (on the left) and longest completion (on
the right), so joining re-pads every tensor to the new widths: prompt-side tensors on the left,
completion-side tensors on the right, with the values TRL pads with. `num_items_in_batch` (the
loss normaliser: completion tokens in the whole batch) is recomputed for the joined batch.

Kept as plain functions on dicts of tensors so the unit tests can check them on hand-built rows.
"""

from __future__ import annotations

from typing import Any

import torch

PROMPT_SIDE = ("prompt_ids", "prompt_mask")
"""Row tensors aligned with the (left-padded) prompt."""

TOOL_MASK_PAD = 1
"""TRL pads `tool_mask` with 1 (padding is masked by `completion_mask` anyway)."""

Group = dict[str, torch.Tensor]


def split_groups(output: dict[str, Any], group_size: int) -> list[Group]:
    """One dict of row tensors per prompt group, in batch order. Keys that are not row tensors
    (images, per-row lists) are refused: these features cannot move them between batches yet."""
    rows = output["prompt_ids"].size(0)
    if rows % group_size:
        raise ValueError(f"a GRPO batch of {rows} completions is not whole groups of {group_size}")
    unsupported = [key for key, value in output.items()
                   if key != "num_items_in_batch" and not (isinstance(value, torch.Tensor) and value.dim() >= 1
                                                           and value.size(0) == rows)]
    if unsupported:
        raise NotImplementedError(f"GRPO replay, re-rolling and streaming cannot regroup {', '.join(sorted(unsupported))} "
                                  "(image inputs); remove those trl keys for this dataset")
    return [{key: value[start:start + group_size] for key, value in output.items() if key != "num_items_in_batch"}
            for start in range(0, rows, group_size)]


def _pad_to(tensor: torch.Tensor, width: int, value: float, left: bool) -> torch.Tensor:
    missing = width - tensor.size(1)
    if missing <= 0:
        return tensor
    filler = torch.full((tensor.size(0), missing, *tensor.shape[2:]), value, dtype=tensor.dtype, device=tensor.device)
    return torch.cat([filler, tensor] if left else [tensor, filler], dim=1)


def merge_groups(groups: list[Group], pad_token_id: int) -> dict[str, Any]:
    """Groups (from one or several batches) joined into one batch dict, re-padded, with
    `num_items_in_batch` recounted (this process's completion tokens; the features using this run
    on one process). Every group must carry the same keys."""
    if not groups:
        raise ValueError("no GRPO groups to merge")
    keys = list(groups[0])
    for group in groups[1:]:
        if set(group) != set(keys):
            raise ValueError(f"GRPO groups with different fields cannot be merged: {sorted(keys)} vs {sorted(group)}")
    prompt_width = max(group["prompt_ids"].size(1) for group in groups)
    completion_width = max(group["completion_ids"].size(1) for group in groups)
    merged: dict[str, Any] = {}
    for key in keys:
        parts = [group[key] for group in groups]
        left = key in PROMPT_SIDE
        per_token = left or (parts[0].dim() > 1 and all(group[key].size(1) == group["completion_ids"].size(1)
                                                         for group in groups))
        if not per_token:  # one value per row: advantages, sequence-level ratios
            merged[key] = torch.cat(parts)
            continue
        width = prompt_width if left else completion_width
        value = pad_token_id if key in ("prompt_ids", "completion_ids") else (TOOL_MASK_PAD if key == "tool_mask" else 0)
        merged[key] = torch.cat([_pad_to(part, width, value, left) for part in parts])
    loss_mask = merged["completion_mask"] * merged.get("tool_mask", 1)
    merged["num_items_in_batch"] = loss_mask.sum()
    return merged


def has_signal(advantages: torch.Tensor, group_size: int) -> list[bool]:
    """Per group: does any completion have a non-zero advantage (a learning signal)?"""
    per_row = advantages.reshape(advantages.size(0), -1).abs().amax(dim=1)
    return (per_row.view(-1, group_size).amax(dim=1) > 0).tolist()


def all_zero_reward(rewards: torch.Tensor, group_size: int) -> list[bool]:
    """Per group: did every completion get a total reward of exactly zero (a failed prompt)?
    `rewards` is (completions,) or (completions, reward functions); NaN (unscored) counts as zero."""
    total = torch.nan_to_num(rewards.reshape(rewards.size(0), -1), nan=0.0).abs().sum(dim=1)
    return (total.view(-1, group_size).amax(dim=1) == 0).tolist()
