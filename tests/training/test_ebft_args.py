"""EBFT config rules (`axolotl.config.ebft_rules`) and trainer refusals (`axolotl.training.ebft_args`):
each ignored or incompatible key is named, and the shipped examples pass both."""

from __future__ import annotations

from pathlib import Path

import pytest

from axolotl.testing.configs import config_error, load
from axolotl.training import ebft_args
from axolotl.training.support import NotSupportedYet, check_trainer_support, trainer_refusals

REPO = Path(__file__).resolve().parents[2]
BASE = "base_model: m\nlearning_rate: 1e-5\nrl: ebft\ndatasets:\n  - path: d.jsonl\n    type: ebft_opencode.transform\n"
STRIDED = BASE.replace("ebft_opencode", "ebft_pretrain") + "ebft:\n  mode: strided\n"


def messages(text: str) -> list[str]:
    return [issue.message for issue in config_error(text).issues]


def paths(text: str) -> list[str]:
    from axolotl.config.errors import format_path

    return [format_path(issue.path) for issue in config_error(text).issues]


@pytest.mark.parametrize("name", ["llama-1b-ebft-strided.yaml", "qwen3-4b-ebft-structured.yaml"])
def test_examples_validate_and_train_on_a_gpu_machine(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ebft_args, "_has_cuda", lambda: True)
    monkeypatch.setattr("axolotl.training.grpo_args.importlib.util.find_spec", lambda name: object())
    cfg = load((REPO / "examples" / "ebft" / name).read_text()).cfg
    assert trainer_refusals(cfg) == []
    ebft_args.check_ebft_config(cfg)  # structured: micro-batch divisible, vLLM "installed"


def test_the_other_modes_keys_are_errors() -> None:
    assert paths(BASE + "ebft:\n  stride: 4\n  n_samples_per_prompt: 2\n") == ["ebft.stride", "ebft.n_samples_per_prompt"]
    assert paths(STRIDED + "  gt_length_multiplier: 2.0\ntrl:\n  num_generations: 4\n  temperature: 0.5\n") == \
        ["ebft.gt_length_multiplier", "trl.num_generations", "trl.temperature"]
    assert "feature-matching reward" in messages(BASE + "trl:\n  reward_funcs: [r.f]\n")[0]


def test_strided_constraints() -> None:
    flex = STRIDED + "flex_attention: true\n"
    assert paths(STRIDED + "torch_compile: true\n") == ["torch_compile"]
    assert paths(flex + "gradient_checkpointing: true\n") == ["gradient_checkpointing_kwargs"]
    assert "strided EBFT with flex attention cannot offload activations" in \
        messages(flex + "gradient_checkpointing: true\ngradient_checkpointing_kwargs:\n  use_reentrant: true\n"
                 "activation_offloading: true\n")
    reentrant = load(flex + "gradient_checkpointing: true\ngradient_checkpointing_kwargs:\n  use_reentrant: true\n")
    assert not [w for w in reentrant.warnings if "flex_attention" in w.message]
    warned = load(STRIDED + "  n_samples_per_prompt: 1\n")
    assert [format_path(w.path) for w in warned.warnings] == ["flex_attention", "ebft.n_samples_per_prompt"]


def format_path(path: tuple) -> str:
    from axolotl.config.errors import format_path as fmt

    return fmt(path)


@pytest.mark.parametrize(("extra", "text"), [
    ("ebft:\n  ce_coef: 0.1\n", "`ebft.ce_coef` > 0 is not supported yet in structured mode"),
    ("trl:\n  use_data_producer: true\n", "`trl.use_data_producer` is not supported yet with `rl: ebft`"),
    ("sample_packing: true\n", "`sample_packing` is not supported yet with `rl: ebft`"),
    ("deepspeed: ds.json\n", "`deepspeed` / `fsdp_config` are not supported yet with `rl: ebft`"),
])
def test_structured_refusals(extra: str, text: str) -> None:
    with pytest.raises(NotSupportedYet, match=text.replace("(", r"\(").replace(")", r"\)")):
        check_trainer_support(load(BASE + extra).cfg)


@pytest.mark.parametrize(("extra", "text"), [
    ("val_set_size: 0.1\n", "evaluation (`val_set_size` / `test_datasets`) is not supported yet"),
    ("sample_packing: true\n", "`sample_packing` is not supported yet with strided `rl: ebft`"),
    ("flex_attention: true\n", "`flex_attention: true` is not supported yet with strided `rl: ebft` without a GPU"),
])
def test_strided_refusals(extra: str, text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ebft_args, "_has_cuda", lambda: False)
    with pytest.raises(NotSupportedYet, match=text.replace("(", r"\(").replace(")", r"\)")):
        check_trainer_support(load(STRIDED + extra).cfg)


def test_strided_mode_runs_in_one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(NotSupportedYet, match="strided `rl: ebft` on several processes is not supported yet"):
        check_trainer_support(load(STRIDED).cfg)
    check_trainer_support(load(BASE).cfg)  # structured mode runs on the GRPO trainer, under DDP too


def test_plain_configs_of_both_modes_are_not_refused() -> None:
    check_trainer_support(load(BASE).cfg)
    check_trainer_support(load(STRIDED).cfg)
