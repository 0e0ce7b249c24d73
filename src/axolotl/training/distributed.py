"""Checks that only make sense with several processes: do all ranks run the same config?

Every rank loads the YAML itself (the launcher only starts `python -m axolotl.cli.train CONFIG`),
so a file edited between node starts, different overrides on one node, or a different library
default on one machine gives ranks different settings. Some differences deadlock (a different
number of steps), others silently train something else (a different learning rate on one rank),
so each rank's resolved config is compared with rank 0's before anything is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from axolotl.process_group import init_process_group, launched_world_size, release_process_group

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

RANK_LOCAL_KEYS = frozenset({"local_rank", "dataset_num_proc", "dataset_processes"})
"""Keys that may differ between ranks: the rank itself and the number of preprocessing workers
(a per-machine default, and only the first rank of a node prepares data)."""


class RanksDisagree(ValueError):
    """Ranks resolved different configs (names the ranks and keys)."""


def comparable_config(cfg: AxolotlConfig) -> dict[str, Any]:
    """The resolved config without the keys that may differ between ranks."""
    from axolotl.config.render import resolved_dict

    return {key: value for key, value in resolved_dict(cfg).items() if key not in RANK_LOCAL_KEYS}


def disagreements(configs: list[dict[str, Any]]) -> dict[int, list[str]]:
    """Rank -> the keys where its config differs from rank 0's (ranks that agree are left out)."""
    reference = configs[0]
    found: dict[int, list[str]] = {}
    for rank, config in enumerate(configs[1:], start=1):
        keys = sorted(key for key in reference.keys() | config.keys() if reference.get(key) != config.get(key))
        if keys:
            found[rank] = keys
    return found


def describe_disagreements(found: dict[int, list[str]], world_size: int) -> str:
    lines = [f"rank {rank}: {', '.join(f'`{key}`' for key in keys)}" for rank, keys in sorted(found.items())]
    return (f"the {world_size} processes of this run resolved different configs, compared with rank 0 ("
            + "; ".join(lines) + "). Every rank reads the config file itself: give all nodes the same file, "
            "overrides and library versions")


def check_ranks_agree(cfg: AxolotlConfig) -> None:
    """Raise `RanksDisagree` on every rank when any rank's config differs from rank 0's.

    A no-op in a single process. Every rank gets the same answer from the same gathered list, so
    either all continue or all stop (none is left waiting in a collective)."""
    world_size = launched_world_size()
    if world_size <= 1:
        return
    import torch.distributed as dist

    init_process_group(cfg)
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, comparable_config(cfg))
    found = disagreements(gathered)
    if found:
        release_process_group()  # every rank stops here: leave no gloo/NCCL threads behind at exit
        raise RanksDisagree(describe_disagreements(found, len(gathered)))
