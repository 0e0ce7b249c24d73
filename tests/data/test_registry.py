"""The dataset types the config accepts and the strategies that exist stay in step."""

from __future__ import annotations

import pytest

from axolotl.config.dataset_shapes import SFT_TYPES, STEPWISE_TYPES
from axolotl.config.support import DATASET_TYPES_NOT_SUPPORTED_YET
from axolotl.data.strategies.registry import STRATEGIES, load_builtin_strategies
from axolotl.testing.configs import config_error


def test_every_sft_type_has_a_strategy_or_is_refused_as_not_supported() -> None:
    load_builtin_strategies()
    # process-reward rows (input_ids + per-token labels) go through the same pipeline as SFT rows
    registered = {name for name in STRATEGIES if not name.startswith("__")} - STEPWISE_TYPES
    assert registered | set(DATASET_TYPES_NOT_SUPPORTED_YET) == set(SFT_TYPES)
    assert not registered & set(DATASET_TYPES_NOT_SUPPORTED_YET)


@pytest.mark.parametrize("kind", sorted(DATASET_TYPES_NOT_SUPPORTED_YET))
def test_unimplemented_types_fail_validation(kind: str) -> None:
    err = config_error(f"base_model: m\nlearning_rate: 1e-4\ndatasets:\n  - path: d\n    type: {kind}\n")
    assert [i.path for i in err.issues] == [("datasets", 0, "type")]
    assert "not supported yet" in err.issues[0].message and err.issues[0].location == "cfg.yml:5"
