"""Derived values and the resolved config: what every later stage reads."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from axolotl.config.environment import Environment
from axolotl.config.loader import load_config, load_config_text
from axolotl.config.render import RESOLVED_CONFIG_NAME, resolved_yaml, save_resolved_config
from axolotl.config.schema import (
    DPODataset,
    KTODataset,
    PretrainingDataset,
    SFTDataset,
    StepwiseSupervisedDataset,
)

CPU = Environment()
H100 = Environment(cuda_available=True, bf16_supported=True, tf32_supported=True)
T4 = Environment(cuda_available=True, bf16_supported=False, tf32_supported=False)
BASE = "base_model: org/model\nlearning_rate: 2e-4\n"
REPO = Path(__file__).resolve().parents[2]


def load(extra: str = "", env: Environment = CPU, overrides=()):
    return load_config_text(BASE + extra, "cfg.yml", overrides=overrides, env=env).cfg


def test_learning_rate_string_from_yaml_becomes_a_float() -> None:
    assert load().learning_rate == pytest.approx(2e-4)


@pytest.mark.parametrize(("env", "bf16", "fp16", "tf32"), [(CPU, False, None, False), (H100, True, None, True),
                                                            (T4, False, True, False)])
def test_bf16_auto_follows_the_hardware(env: Environment, bf16: bool, fp16: bool | None, tf32: bool) -> None:
    cfg = load(env=env)
    assert (cfg.bf16, cfg.fp16, cfg.tf32) == (bf16, fp16, tf32)


def test_explicit_bf16_on_a_gpu_without_bf16_is_a_warning_not_an_error() -> None:
    loaded = load_config_text(BASE + "bf16: true\n", "cfg.yml", env=T4)
    assert loaded.cfg.bf16 is True
    assert [w.path for w in loaded.warnings] == [("bf16",)]


@pytest.mark.parametrize(("mbs", "ga", "world", "expected"), [(1, 1, 1, 1), (2, 4, 1, 8), (2, 4, 8, 64)])
def test_batch_size_is_derived(mbs: int, ga: int, world: int, expected: int) -> None:
    env = Environment(world_size=world)
    cfg = load(f"micro_batch_size: {mbs}\ngradient_accumulation_steps: {ga}\n", env=env)
    assert (cfg.batch_size, cfg.world_size, cfg.eval_batch_size) == (expected, world, mbs)


def test_batch_size_alone_derives_gradient_accumulation() -> None:
    cfg = load("micro_batch_size: 2\nbatch_size: 16\n", env=Environment(world_size=2))
    assert cfg.gradient_accumulation_steps == 4


@pytest.mark.parametrize(("flag", "expected"), [("", "sdpa"), ("flash_attention: true\n", "flash_attention_2"),
                                                ("flex_attention: true\n", "flex_attention"),
                                                ("sdp_attention: true\n", "sdpa"), ("eager_attention: true\n", "eager"),
                                                ("attn_implementation: flex_attention\n", "flex_attention")])
def test_attention_flags_resolve_to_one_implementation(flag: str, expected: str) -> None:
    assert load(flag).attn_implementation == expected


def test_packing_defaults() -> None:
    cfg = load("sample_packing: true\nsequence_len: 1024\n")
    assert (cfg.eval_sample_packing, cfg.pad_to_sequence_len, cfg.eval_sequence_len) == (True, True, 1024)


def test_pretraining_dataset_turns_on_streaming_and_accepts_a_bare_string() -> None:
    cfg = load("pretraining_dataset: allenai/c4\nmax_steps: 10\n")
    assert cfg.streaming is True
    assert isinstance(cfg.pretraining_dataset[0], PretrainingDataset)
    assert cfg.pretraining_dataset[0].path == "allenai/c4"


def test_rl_beta_and_trl_beta_are_one_value() -> None:
    cfg = load("rl: grpo\ntrl:\n  beta: 0.04\n  reward_funcs: [r.f]\n")
    assert cfg.rl_beta == cfg.trl.beta == pytest.approx(0.04)


def test_jinja_template_implies_chat_template_jinja() -> None:
    assert load("chat_template_jinja: '{{ messages }}'\n").chat_template == "jinja"


@pytest.mark.parametrize(("method", "cls"), [
    ("", SFTDataset), ("rl: dpo\n", DPODataset), ("rl: orpo\n", DPODataset), ("rl: simpo\n", DPODataset),
    ("rl: kto\nmicro_batch_size: 2\n", KTODataset), ("process_reward_model: true\n", StepwiseSupervisedDataset),
    ("rl: grpo\ntrl: {reward_funcs: [r.f]}\n", SFTDataset),
])
def test_dataset_entry_shape_follows_the_method(method: str, cls: type) -> None:
    cfg = load(method + "datasets:\n  - path: org/data\n")
    assert type(cfg.datasets[0]) is cls


def test_overrides_are_typed_through_the_schema() -> None:
    cfg = load(overrides=["--micro-batch-size", "4", "--learning_rate=1e-5", "--sample_packing",
                          "--trl.beta", "0.5", "--lora-target-modules", "[q_proj, v_proj]", "--adapter", "lora"])
    assert (cfg.micro_batch_size, cfg.learning_rate, cfg.sample_packing, cfg.trl.beta) == (4, 1e-5, True, 0.5)
    assert cfg.lora_target_modules == ["q_proj", "v_proj"]


def test_blank_values_mean_unset() -> None:
    cfg = load("trl:\nsequence_len:\nspecial_tokens:\nwandb_project:\n")
    assert cfg.sequence_len == 512 and cfg.special_tokens is None and cfg.trl.use_vllm is False


@pytest.mark.parametrize("example", sorted(p.relative_to(REPO) for p in (REPO / "examples").rglob("*.y*ml")),
                         ids=str)
def test_resolved_config_reloads_to_the_same_config(example: Path, tmp_path: Path) -> None:
    first = load_config(REPO / example, env=CPU).cfg
    saved = save_resolved_config(first, tmp_path)
    assert saved.name == RESOLVED_CONFIG_NAME and not list(tmp_path.glob(".*"))
    second = load_config(saved, env=CPU).cfg
    strip = lambda c: {k: v for k, v in yaml.safe_load(resolved_yaml(c)).items() if k != "axolotl_config_path"}  # noqa: E731
    assert strip(first) == strip(second)
