"""FSDP2 / DeepSpeed / accelerate settings: config -> TrainingArguments -> accelerate's plugin, and the
combinations refused before anything loads. FSDP and DeepSpeed need CUDA GPUs, so what runs here is
the mapping and the checks; benchmarks/multi_gpu.py trains with both on GPUs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from axolotl.testing.configs import load
from axolotl.training import parallel
from axolotl.training.args import TrainingConfigError, build_training_args
from axolotl.training.parallel import (
    FSDPPlan,
    check_engine,
    distributed_environment,
    distributed_kwargs,
    distributed_problems,
    fsdp_plan,
)
from axolotl.training.support import NotSupportedYet, trainer_refusals

BASE = "base_model: some/model\nlearning_rate: 2e-4\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"
FSDP = "fsdp_config:\n  reshard_after_forward: true\n"


def cfg_of(extra: str = "") -> Any:
    return load(BASE + extra).cfg


@pytest.fixture
def gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pretend CUDA is there, so the checks after the GPU check are reached."""
    monkeypatch.setattr(parallel, "_cuda", lambda: True)


# --------------------------------------------------------------------------------------------
# FSDP2 mapping
# --------------------------------------------------------------------------------------------

def test_fsdp_reaches_accelerates_plugin(tmp_path: Path) -> None:
    """The whole chain: our keys -> TrainingArguments.fsdp_config -> the kwargs transformers gives
    accelerate's FullyShardedDataParallelPlugin, which accepts them."""
    from accelerate.utils import FullyShardedDataParallelPlugin

    cfg = cfg_of(f"output_dir: {tmp_path}\nfsdp_version: 2\nfsdp_config:\n  offload_params: true\n"
                 "  transformer_layer_cls_to_wrap: LlamaDecoderLayer\n  state_dict_type: SHARDED_STATE_DICT\n"
                 "  reshard_after_forward: false\n  activation_checkpointing: true\n"
                 "  cpu_ram_efficient_loading: true\n")
    args = build_training_args(cfg, has_eval=False)
    assert args.fsdp_plugin_args == {
        "fsdp_version": 2, "cpu_offload": True, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_cls_names_to_wrap": "LlamaDecoderLayer", "cpu_ram_efficient_loading": True,
        "state_dict_type": "SHARDED_STATE_DICT", "activation_checkpointing": True, "reshard_after_forward": False}
    plugin = FullyShardedDataParallelPlugin(**args.fsdp_plugin_args)
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is False
    assert type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy"
    assert distributed_environment(cfg) == {"ACCELERATE_USE_FSDP": "true"}


def test_fsdp_defaults_wrap_the_models_own_layers() -> None:
    """No `transformer_layer_cls_to_wrap`: the key is left out, so accelerate wraps the classes of the
    model's `_no_split_modules` (its decoder layers)."""
    kwargs = distributed_kwargs(cfg_of(FSDP))
    assert kwargs["fsdp"] is True
    assert kwargs["fsdp_config"] == {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                                     "reshard_after_forward": True, "state_dict_type": "FULL_STATE_DICT",
                                     "activation_checkpointing": False, "cpu_ram_efficient_loading": False}
    assert distributed_environment(cfg_of(FSDP)) == {}
    assert distributed_kwargs(cfg_of()) == {}


@pytest.mark.parametrize(("extra", "expected"), [
    ("fsdp: [full_shard, auto_wrap]\n", FSDPPlan(reshard_after_forward=True)),
    ("fsdp: [shard_grad_op, offload]\n", FSDPPlan(reshard_after_forward=False, offload_params=True)),
    ("fsdp_config:\n  fsdp_sharding_strategy: SHARD_GRAD_OP\n", FSDPPlan(reshard_after_forward=False)),
    ("fsdp_config:\n  fsdp_final_state_dict_type: SHARDED_STATE_DICT\n",
     FSDPPlan(final_state_dict_type="SHARDED_STATE_DICT")),
    ("fsdp_final_state_dict_type: SHARDED_STATE_DICT\nfsdp_config:\n  offload_params: true\n  cpu_offload_pin_memory: false\n",
     FSDPPlan(final_state_dict_type="SHARDED_STATE_DICT", offload_params=True, pin_memory=False)),
    ("fsdp_config:\n  auto_wrap_policy: SIZE_BASED_WRAP\n  min_num_params: 1000\n",
     FSDPPlan(auto_wrap_policy="SIZE_BASED_WRAP", min_num_params=1000)),
    ("fsdp_config:\n  transformer_layer_cls_to_wrap: A, B\n", FSDPPlan(layer_classes=("A", "B"))),
    ("fsdp_config:\n  mixed_precision_policy: bf16\n", FSDPPlan(mixed_precision="bf16")),
])
def test_fsdp1_spellings_and_options_resolve(extra: str, expected: FSDPPlan) -> None:
    assert fsdp_plan(cfg_of(extra)) == expected


@pytest.mark.parametrize(("extra", "message"), [
    ("fsdp_config:\n  fsdp_use_orig_params: true\n  fsdp_sync_module_states: true\n",
     "`sync_module_states`, `use_orig_params`: FSDP1 options"),
    ("fsdp_config:\n  sharding_strategy: HYBRID_SHARD\n", "dp_shard_size"),
    ("fsdp_config:\n  sharding_strategy: FULL_SHARD\n  reshard_after_forward: false\n",
     "reshard_after_forward is set differently"),
    ("fsdp: [shard_grad_op, full_shard]\n", "both full_shard and shard_grad_op"),
    ("fsdp: [hybrid_shard]\n", "hybrid sharding"),
    ("fsdp_final_state_dict_type: FULL_STATE_DICT\nfsdp_config:\n  final_state_dict_type: SHARDED_STATE_DICT\n",
     "final state dict type is set differently"),
    ("fsdp_config:\n  state_dict_type: LOCAL_STATE_DICT\n", "does not exist in FSDP2"),
    ("fsdp_config:\n  cpu_offload_pin_memory: false\n", "only applies with `offload_params: true`"),
    ("fsdp_config:\n  min_num_params: 100\n", "only applies with `auto_wrap_policy: SIZE_BASED_WRAP`"),
    ("fsdp_config:\n  mixed_precision_policy: bfloat16\n", "`fsdp_config.mixed_precision_policy: bfloat16`: use one of "
     "bf16, fp16, fp32"),
])
def test_fsdp_settings_that_cannot_work_are_errors(extra: str, message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fsdp_plan(cfg_of(extra))


@pytest.mark.parametrize(("extra", "message"), [
    ("fsdp_version: 1\n" + FSDP, "`fsdp_version: 1` is not supported yet"),
])
def test_fsdp_features_not_supported_yet(extra: str, message: str) -> None:
    with pytest.raises(NotSupportedYet, match=message):
        fsdp_plan(cfg_of(extra))


# --------------------------------------------------------------------------------------------
# DeepSpeed, accelerator_config, device mesh
# --------------------------------------------------------------------------------------------

def test_deepspeed_path_and_dict_are_passed_through(tmp_path: Path) -> None:
    assert distributed_kwargs(cfg_of("deepspeed: deepspeed_configs/zero3_bf16.json\n")) == \
        {"deepspeed": "deepspeed_configs/zero3_bf16.json"}
    inline = distributed_kwargs(cfg_of("deepspeed:\n  zero_optimization:\n    stage: 2\n"))
    assert inline == {"deepspeed": {"zero_optimization": {"stage": 2}}}


def test_the_engines_and_ray_are_no_longer_refused() -> None:
    """`use_ray` is the command's business (axolotl.cli.ray_launch): `train` runs inside each Ray worker."""
    for extra in (FSDP, "deepspeed: ds.json\n", "accelerator_config:\n  even_batches: false\n",
                  "use_ray: true\nray_num_workers: 2\n"):
        assert trainer_refusals(cfg_of(extra)) == []


def test_accelerator_config_is_passed_and_checked(tmp_path: Path) -> None:
    args = build_training_args(cfg_of(f"output_dir: {tmp_path}\naccelerator_config:\n  non_blocking: true\n"),
                               has_eval=False)
    assert args.accelerator_config.non_blocking is True
    assert distributed_problems(cfg_of("accelerator_config:\n  non_blocking: true\n")) == []
    [problem] = distributed_problems(cfg_of("accelerator_config:\n  nonblocking: true\n"))
    assert "['nonblocking']" in problem and "non_blocking" in problem
    [problem] = distributed_problems(cfg_of("sample_packing: true\naccelerator_config:\n  even_batches: false\n"))
    assert "packing sampler" in problem


def test_hybrid_sharding_maps_to_accelerates_device_mesh(monkeypatch: pytest.MonkeyPatch) -> None:
    kwargs = distributed_kwargs(cfg_of(FSDP + "dp_shard_size: 4\ndp_replicate_size: 2\n"))
    mesh = kwargs["parallelism_config"]
    assert (mesh.dp_shard_size, mesh.dp_replicate_size, mesh.total_size) == (4, 2, 8)
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(TrainingConfigError, match="but the run has 4 processes"):
        distributed_kwargs(cfg_of(FSDP + "dp_shard_size: 4\ndp_replicate_size: 2\n"))


@pytest.mark.parametrize(("extra", "message"), [
    ("dp_shard_size: 2\n", "set `fsdp_config`"),
    (FSDP + "dp_replicate_size: 2\n", "needs `dp_shard_size` > 1"),
])
def test_mesh_sizes_need_fsdp(extra: str, message: str) -> None:
    with pytest.raises(TrainingConfigError, match=message):
        distributed_kwargs(cfg_of(extra))


# --------------------------------------------------------------------------------------------
# combinations refused before loading
# --------------------------------------------------------------------------------------------

def test_sharding_on_cpu_is_refused_instead_of_silently_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "_cuda", lambda: False)
    assert any("FSDP needs CUDA GPUs" in p for p in distributed_problems(cfg_of(FSDP)))


def test_deepspeed_without_the_package_names_the_extra(gpus: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel.importlib.util, "find_spec", lambda name: None)
    [problem] = distributed_problems(cfg_of("deepspeed: ds.json\n"))
    assert "pip install 'axolotl[deepspeed]'" in problem


@pytest.mark.parametrize(("extra", "message"), [
    (FSDP + "gradient_checkpointing: true\nactivation_offloading: true\n", "`activation_offloading` is not supported yet with FSDP"),
    (FSDP + "chunked_cross_entropy: true\n", "`chunked_cross_entropy` is not supported yet with FSDP"),
    (FSDP + "torch_compile: true\n", "`torch_compile: true` is not supported yet with FSDP"),
    ("fsdp_config:\n  activation_checkpointing: true\ngradient_checkpointing: true\n", "both checkpoint the layers"),
    (FSDP + "load_in_8bit: true\nadapter: lora\n", "`load_in_8bit` is not supported with FSDP"),
    (FSDP + "load_in_4bit: true\nadapter: qlora\n", "FSDP + QLoRA"),
    (FSDP + "load_in_4bit: true\nadapter: qlora\nbf16: true\nbnb_config_kwargs:\n  bnb_4bit_quant_storage: uint8\n",
     "FSDP + QLoRA"),
    ("deepspeed: ds.json\nload_in_4bit: true\nadapter: qlora\n", "not supported yet with DeepSpeed"),
    ("deepspeed: ds.json\ngradient_checkpointing: true\nactivation_offloading: true\n", "`activation_offloading` is not supported yet with DeepSpeed"),
])
def test_incompatible_combinations(gpus: None, monkeypatch: pytest.MonkeyPatch, extra: str, message: str) -> None:
    monkeypatch.setattr(parallel.importlib.util, "find_spec", lambda name: object())  # deepspeed "installed"
    problems = distributed_problems(cfg_of(extra))
    assert any(message in p for p in problems), problems


def test_sharding_preference_training_is_refused(gpus: None) -> None:
    cfg = load(BASE.replace("type: alpaca", "type: chatml.intel") + FSDP + "rl: dpo\n").cfg
    assert any("FSDP is not supported yet for preference" in p for p in distributed_problems(cfg))


def test_fsdp_qlora_with_matching_storage_is_accepted(gpus: None) -> None:
    """bf16 weights and the default bf16 quant storage: the two dtypes FSDP shards together agree."""
    assert distributed_problems(cfg_of(FSDP + "load_in_4bit: true\nadapter: qlora\nbf16: true\n")) == []
    assert distributed_problems(cfg_of(FSDP + "bf16: true\ngradient_checkpointing: true\n")) == []


def test_ddp_false_with_several_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert any("`ddp: false`" in p for p in distributed_problems(cfg_of("ddp: false\n")))
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert distributed_problems(cfg_of("ddp: false\n")) == []


def test_torch_compile_auto_is_off_under_sharding() -> None:
    from axolotl.config.environment import Environment
    from axolotl.config.loader import load_config_text

    gpu = Environment(cuda_available=True, bf16_supported=True, tf32_supported=True)
    assert load_config_text(BASE + "torch_compile: auto\n", source="c.yml", env=gpu).cfg.torch_compile is True
    sharded = load_config_text(BASE + FSDP + "torch_compile: auto\n", source="c.yml", env=gpu).cfg
    assert sharded.torch_compile is False


# --------------------------------------------------------------------------------------------
# after the Trainer is built
# --------------------------------------------------------------------------------------------

def _trainer(plugin: Any = None, deepspeed: bool = False, mixed_precision: str = "bf16") -> Any:
    return SimpleNamespace(accelerator=SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin),
                                                       mixed_precision=mixed_precision),
                           is_deepspeed_enabled=deepspeed)


def test_an_engine_accelerate_dropped_is_an_error() -> None:
    with pytest.raises(TrainingConfigError, match="did not enable FSDP"):
        check_engine(_trainer(), cfg_of(FSDP))
    with pytest.raises(TrainingConfigError, match="did not enable DeepSpeed"):
        check_engine(_trainer(), cfg_of("deepspeed: ds.json\n"))
    check_engine(_trainer(), cfg_of())


def test_unpinned_offload_is_set_on_the_plugin() -> None:
    plugin = SimpleNamespace(cpu_offload=True)
    check_engine(_trainer(plugin), cfg_of("fsdp_config:\n  offload_params: true\n  cpu_offload_pin_memory: false\n"))
    assert type(plugin.cpu_offload).__name__ == "CPUOffloadPolicy" and plugin.cpu_offload.pin_memory is False


@pytest.mark.parametrize(("extra", "mixed_precision", "expected"), [
    # unset: compute in the training dtype, reduce gradients in fp32, the returned loss left in fp32
    ("", "bf16", ("bfloat16", "float32", None)),
    ("", "fp16", ("float16", "float32", None)),
    ("", "no", None),  # no mixed precision: accelerate's (no) policy stays
    # set: accelerate's (and the reference's) meaning, everything in that dtype
    ("  mixed_precision_policy: bf16\n", "bf16", ("bfloat16", "bfloat16", "bfloat16")),
    ("  mixed_precision_policy: fp32\n", "bf16", ("float32", "float32", "float32")),
])
def test_the_fsdp2_mixed_precision_policy_is_set_on_the_plugin(extra: str, mixed_precision: str,
                                                                expected: tuple | None) -> None:
    plugin = SimpleNamespace(cpu_offload=None, mixed_precision_policy="accelerate's")
    check_engine(_trainer(plugin, mixed_precision=mixed_precision), cfg_of("fsdp_config:\n  reshard_after_forward: true\n"
                                                                           + extra))
    policy = plugin.mixed_precision_policy
    if expected is None:
        assert policy == "accelerate's"
        return
    assert type(policy).__name__ == "MixedPrecisionPolicy"
    names = tuple(None if dtype is None else str(dtype).removeprefix("torch.")
                  for dtype in (policy.param_dtype, policy.reduce_dtype, policy.output_dtype))
    assert names == expected
