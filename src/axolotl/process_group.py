"""Joining and leaving the launcher's process group, shared by the data layer (each node's first
rank prepares the data while the others wait) and the trainer (ranks compare configs, then train).

torchrun and accelerate start the processes and set RANK/WORLD_SIZE/MASTER_ADDR; this module only
joins their group (NCCL on GPUs, gloo on CPU) and tears it down before the process exits.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig

DEFAULT_DDP_TIMEOUT_S = 1800
"""transformers' default `ddp_timeout`."""


def launched_world_size() -> int:
    """Processes of this run as the launcher announced them (1 when not launched)."""
    return int(os.environ.get("WORLD_SIZE", "1") or 1)


def init_process_group(cfg: AxolotlConfig) -> None:
    """Join the launcher's process group unless joined already (the Trainer reuses it): NCCL on
    GPUs, gloo on CPU; `ddp_timeout` bounds every wait, as the Trainer's would."""
    import torch
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                            timeout=timedelta(seconds=cfg.ddp_timeout or DEFAULT_DDP_TIMEOUT_S))


def release_process_group() -> None:
    """Tear down this process's group, if it joined one.

    A process that exits with a gloo group still open can abort in the group's background threads
    ("terminate called without an active exception", SIGABRT), which the launcher reports as a
    failed rank even when the run succeeded; torch asks for an explicit destroy before exit."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
