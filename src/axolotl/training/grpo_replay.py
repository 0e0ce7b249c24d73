"""The two stores behind `trl.replay_buffer_size` and `trl.reroll_start_fraction` /
`reroll_max_groups`: which groups they keep and which they hand back. Pure bookkeeping; the
trainer side (`axolotl.training.grpo_mixing`) decides when to call them.

* `ReplayBuffer`: scored groups that had a learning signal (some non-zero advantage), newest
  last, at most `size` of them (the oldest is dropped first). A group handed out is removed, so
  each cached group is trained on at most once more; the newest go first, being the least stale.
* `RerollQueue`: prompts whose whole group got zero reward ("failed"), oldest first, each prompt
  waiting at most once (a prompt failing again while queued is not queued twice). From
  `start_fraction` of the run's optimizer steps on, up to `max_groups` of them per generation
  batch are generated again.
"""

from __future__ import annotations

import copy
from collections import deque
from typing import Any

from axolotl.training.grpo_groups import Group


class ReplayBuffer:
    """Groups with a learning signal from past batches (see the module docstring)."""

    def __init__(self, size: int) -> None:
        if size <= 0:
            raise ValueError(f"a replay buffer needs a positive size, got {size}")
        self.groups: deque[Group] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self.groups)

    def add(self, groups: list[Group]) -> None:
        """Cache groups (in batch order; beyond `size` the oldest fall out). Tensors are detached
        so the buffer holds no autograd graph."""
        self.groups.extend({key: value.detach() for key, value in group.items()} for group in groups)

    def take(self, count: int) -> list[Group]:
        """Up to `count` groups, newest first, removed from the buffer."""
        return [self.groups.pop() for _ in range(min(count, len(self.groups)))]


class RerollQueue:
    """Failed prompts waiting to be generated again (see the module docstring)."""

    def __init__(self, start_fraction: float, max_groups: int) -> None:
        self.start_fraction = start_fraction
        self.max_groups = max_groups
        self.rows: deque[dict[str, Any]] = deque()

    def __len__(self) -> int:
        return len(self.rows)

    def add(self, row: dict[str, Any]) -> None:
        """Queue a failed prompt's dataset row (copied), unless an equal prompt is already waiting."""
        if any(waiting["prompt"] == row["prompt"] for waiting in self.rows):
            return
        self.rows.append(copy.deepcopy(row))

    def started(self, step: int, max_steps: int) -> bool:
        """Re-rolling runs once `step` has reached `start_fraction` of `max_steps` (never at 1.0)."""
        return self.start_fraction < 1.0 and step >= self.start_fraction * max_steps

    def take(self, step: int, max_steps: int, room: int) -> list[dict[str, Any]]:
        """The rows to generate again now: none before the start, else up to `max_groups` (and at most
        `room`, the groups without signal they can replace), oldest first, removed from the queue."""
        if not self.started(step, max_steps):
            return []
        return [self.rows.popleft() for _ in range(min(self.max_groups, room, len(self.rows)))]
