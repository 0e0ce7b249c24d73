"""EBFT's logged metrics and its console line, shared by the structured and strided trainers.

Per logging interval (averaged over the batches scored in it): `ebft/alignment` (cosine between
generated and reference features), `ebft/diversity` (mean dot product between samples of the
same prompt or anchor), `ebft/cfm_loss` (|mean generated feature - reference feature|^2) and
`ebft/reward` (the combined reward). After each training log line the console shows

    ebft reward | align +0.412 ^ | divers +0.023 v | cfm 4.231 v | reward +0.389 ^

where the arrows give the direction a healthy run moves in (they are fixed, not trends).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from typing import Any

from axolotl.training.ebft_reward import RewardBreakdown

ALIGNMENT, DIVERSITY, CFM, REWARD = "ebft/alignment", "ebft/diversity", "ebft/cfm_loss", "ebft/reward"
EBFT_METRICS = (ALIGNMENT, DIVERSITY, CFM, REWARD)


def breakdown_metrics(breakdown: RewardBreakdown) -> dict[str, float]:
    """The four metrics of one scored batch."""
    return {ALIGNMENT: breakdown.alignment.mean().item(), DIVERSITY: breakdown.diversity.mean().item(),
            CFM: breakdown.cfm_loss.mean().item(), REWARD: breakdown.rewards.mean().item()}


def format_ebft_line(logs: dict[str, Any]) -> str | None:
    """The console line for a training log holding the EBFT metrics, else None."""
    if not all(key in logs for key in EBFT_METRICS):
        return None
    return (f"ebft reward | align {logs[ALIGNMENT]:+.3f} ^ | divers {logs[DIVERSITY]:+.3f} v | "
            f"cfm {logs[CFM]:.3f} v | reward {logs[REWARD]:+.3f} ^")


def print_ebft_line(logs: dict[str, Any], is_main: bool) -> None:
    """Write the line below the step line (through tqdm, so an open progress bar stays intact)."""
    line = format_ebft_line(logs) if is_main else None
    if line is not None:
        from tqdm import tqdm

        tqdm.write(line, file=sys.stderr)


class MetricBuffer:
    """Values recorded during a logging interval, averaged into the next training log."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)

    def add(self, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.values[key].append(value)

    def flush_into(self, logs: dict[str, Any]) -> None:
        for key, values in self.values.items():
            if values:
                logs[key] = sum(values) / len(values)
        self.values.clear()
