"""Memory options through `axolotl train`: activation offloading (`activation_offloading`,
`gradient_checkpointing: offload`) runs every training step under the offloading hooks and trains
exactly what the plain checkpointed run trains."""

from __future__ import annotations

from pathlib import Path

import pytest

from axolotl.models.offload import ActivationOffload
from axolotl.training.sft import train

from .test_train_e2e import make_cfg

KEYS = "micro_batch_size: 2\nmax_steps: 3\nlr_scheduler: constant\n"


@pytest.mark.parametrize("extra", ["gradient_checkpointing: true\nactivation_offloading: true\n",
                                   "gradient_checkpointing: true\nactivation_offloading: legacy\n",
                                   "gradient_checkpointing: offload\n"])
def test_training_with_offloading_matches_plain_training(tiny_llama_dir: Path, tmp_path: Path, extra: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    entered: list[ActivationOffload] = []
    enter = ActivationOffload.__enter__

    def spy(self: ActivationOffload) -> ActivationOffload:
        entered.append(self)
        return enter(self)

    monkeypatch.setattr(ActivationOffload, "__enter__", spy)
    plain = train(make_cfg(tiny_llama_dir, tmp_path, "plain", rows=8, extra=KEYS + "gradient_checkpointing: true\n"))
    assert not entered
    offloaded = train(make_cfg(tiny_llama_dir, tmp_path, "offloaded", rows=8, extra=KEYS + extra))
    assert len(entered) == 3 and entered[0].stats.saved > 0  # every training step ran under the hooks
    assert offloaded.losses == pytest.approx(plain.losses, rel=1e-6)
