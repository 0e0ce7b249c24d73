"""`fix_untrained_tokens`: listed rows of the input embeddings and the output head become the mean
of the trained rows (rows that are themselves all zero are left out of the mean and left alone)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from axolotl.models.model import load_model
from axolotl.models.tokenizer import load_tokenizer
from axolotl.models.tokens import fix_untrained_tokens
from axolotl.testing.configs import config_error, load

UNTRAINED = [5, 6]
PADDING = 7
"""A zero row that is not listed: excluded from the mean, and not changed."""


@pytest.fixture(scope="module")
def untrained_dir(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with rows 5, 6 (reserved tokens) and 7 (padding) zeroed in both matrices."""
    from transformers import AutoModelForCausalLM

    directory = tmp_path_factory.mktemp("untrained")
    shutil.copytree(tiny_llama_dir, directory, dirs_exist_ok=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    with torch.no_grad():
        for weight in (model.get_input_embeddings().weight, model.get_output_embeddings().weight):
            weight[[*UNTRAINED, PADDING]] = 0
    model.save_pretrained(directory)
    return directory


def _load(model_dir: Path, extra: str) -> torch.nn.Module:
    cfg = load(f"base_model: {model_dir}\nlearning_rate: 1e-4\n{extra}").cfg
    return load_model(cfg, load_tokenizer(cfg))


def _trained_mean(weight: torch.Tensor) -> torch.Tensor:
    keep = torch.ones(weight.shape[0], dtype=torch.bool)
    keep[[*UNTRAINED, PADDING]] = False
    return weight[keep].float().mean(dim=0)


def test_listed_rows_become_the_trained_mean(untrained_dir: Path) -> None:
    before = _load(untrained_dir, "")
    model = _load(untrained_dir, "fix_untrained_tokens: [5, 6]\n")
    for name in ("get_input_embeddings", "get_output_embeddings"):
        old, new = getattr(before, name)().weight, getattr(model, name)().weight
        mean = _trained_mean(old)
        assert mean.abs().max() > 0
        for row in UNTRAINED:
            torch.testing.assert_close(new[row], mean)
        assert torch.count_nonzero(new[PADDING]) == 0
        others = [i for i in range(old.shape[0]) if i not in UNTRAINED]
        assert torch.equal(new[others], old[others])


def test_a_single_id(untrained_dir: Path) -> None:
    model = _load(untrained_dir, "fix_untrained_tokens: 5\n")
    weight = model.get_input_embeddings().weight
    assert weight[5].abs().max() > 0 and torch.count_nonzero(weight[6]) == 0


def test_tied_weights_are_fixed_once(untrained_dir: Path) -> None:
    model = _load(untrained_dir, "")
    model.get_output_embeddings().weight = model.get_input_embeddings().weight
    mean = _trained_mean(model.get_input_embeddings().weight.detach().clone())
    assert fix_untrained_tokens(model, [6, 5]) == [5, 6]
    torch.testing.assert_close(model.get_output_embeddings().weight[5], mean)


def test_bad_ids_are_refused(untrained_dir: Path, tiny_llama_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"`fix_untrained_tokens`: \[100000\] are not token ids"):
        _load(untrained_dir, "fix_untrained_tokens: [5, 100000]\n")
    # `true` is not an id (pydantic alone would read it as token 1).
    error = config_error(f"base_model: {tiny_llama_dir}\nlearning_rate: 1e-4\nfix_untrained_tokens: true\n")
    assert "fix_untrained_tokens" in str(error) and "not true/false" in str(error)
