"""`rl: grpo` config -> TRL's GRPOConfig, the refusals, the config rules and the up-front checks
(no model, no data)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from axolotl.testing.configs import config_error, load
from axolotl.training.args import TrainingConfigError
from axolotl.training.grpo_args import ASYNC_REFUSED, build_grpo_args, check_grpo_config, grpo_refusals
from axolotl.training.support import NotSupportedYet, check_trainer_support

REPO = Path(__file__).resolve().parents[2]


def text(trl: dict[str, Any] | None = None, **top: Any) -> str:
    keys: dict[str, Any] = {"base_model": "some/model", "learning_rate": 1e-5, "rl": "grpo", "micro_batch_size": 4,
                            "datasets": [{"path": "prompts.jsonl", "type": "rewards.to_prompt"}],
                            "trl": {"num_generations": 4, "reward_funcs": ["rewards.accuracy"], **(trl or {})}}
    keys.update(top)
    return yaml.safe_dump(keys)


def cfg_of(trl: dict[str, Any] | None = None, **top: Any) -> Any:
    return load(text(trl, **top)).cfg


def args_of(tmp: Path, trl: dict[str, Any] | None = None, **top: Any) -> Any:
    return build_grpo_args(cfg_of(trl, output_dir=str(tmp), **top), has_eval=False)


def test_every_trl_key_reaches_grpo_config(tmp_path: Path) -> None:
    args = args_of(tmp_path, {
        "num_generations": 4, "generation_batch_size": 16, "max_completion_length": 64, "beta": 0.04,
        "epsilon": 0.1, "epsilon_high": 0.28, "loss_type": "dr_grpo", "scale_rewards": "batch",
        "mask_truncated_completions": True, "importance_sampling_level": "sequence", "num_iterations": 2,
        "temperature": 0.7, "top_p": 0.9, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
        "reward_funcs": ["rewards.a", "rewards.b"], "reward_weights": [1.0, 0.5],
        "multi_objective_aggregation": "normalize_then_sum", "sync_ref_model": True, "ref_model_mixup_alpha": 0.5,
        "ref_model_sync_steps": 10, "log_completions": True, "num_completions_to_print": 2,
        "generation_kwargs": {"stop_strings": ["</answer>"]}, "chat_template_kwargs": {"enable_thinking": False},
        "off_policy_mask_threshold": 0.5}, gradient_accumulation_steps=2)
    assert (args.num_generations, args.generation_batch_size, args.steps_per_generation) == (4, 16, 4)
    assert (args.max_completion_length, args.beta, args.epsilon, args.epsilon_high) == (64, 0.04, 0.1, 0.28)
    assert (args.loss_type, args.scale_rewards, args.mask_truncated_completions) == ("dr_grpo", "batch", True)
    assert (args.importance_sampling_level, args.num_iterations) == ("sequence", 2)
    assert (args.temperature, args.top_p, args.top_k, args.min_p, args.repetition_penalty) == (0.7, 0.9, 20, 0.05, 1.1)
    assert (args.reward_weights, args.multi_objective_aggregation) == ([1.0, 0.5], "normalize_then_sum")
    assert (args.sync_ref_model, args.ref_model_mixup_alpha, args.ref_model_sync_steps) == (True, 0.5, 10)
    assert (args.log_completions, args.num_completions_to_print) == (True, 2)
    assert args.generation_kwargs == {"stop_strings": ["</answer>"]}
    assert args.chat_template_kwargs == {"enable_thinking": False}
    assert args.off_policy_mask_threshold == 0.5
    # the SFT mapping underneath, and what we fix
    assert (args.per_device_train_batch_size, args.gradient_accumulation_steps, args.learning_rate) == (4, 2, 1e-5)
    assert args.gradient_checkpointing is False and args.include_num_input_tokens_seen == "no"
    assert args.use_vllm is False and args.remove_unused_columns is False


def test_unset_keys_keep_trl_defaults(tmp_path: Path) -> None:
    args = args_of(tmp_path, {"num_generations": None}, micro_batch_size=8)
    assert (args.num_generations, args.beta, args.loss_type, args.max_completion_length) == (8, 0.0, "dapo", 512)
    assert (args.scale_rewards, args.importance_sampling_level, args.epsilon_high) == ("group", "token", None)
    assert args.generation_batch_size == 8 and args.steps_per_generation == 1


@pytest.mark.parametrize(("value", "expected"), [(True, "group"), (False, "none"), ("group", "group"),
                                                 ("batch", "batch"), ("none", "none")])
def test_scale_rewards(value: Any, expected: str, tmp_path: Path) -> None:
    assert args_of(tmp_path, {"scale_rewards": value}).scale_rewards == expected


def test_rl_beta_is_the_kl_coefficient(tmp_path: Path) -> None:
    assert args_of(tmp_path, rl_beta=0.02).beta == 0.02


def test_vllm_server_mode(tmp_path: Path) -> None:
    args = args_of(tmp_path, {"use_vllm": True, "vllm_server_host": "10.0.0.2", "vllm_server_port": 8011,
                              "vllm_server_timeout": 120, "vllm_guided_decoding_regex": "[0-9]+",
                              "vllm_importance_sampling_correction": True,
                              "vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_cap": 2.5,
                              "use_bias_correction_kl": False, "vllm_sync_interval": 2})
    assert (args.use_vllm, args.vllm_mode) == (True, "server")  # server unless colocate is asked for
    assert (args.vllm_server_host, args.vllm_server_port, args.vllm_server_timeout) == ("10.0.0.2", 8011, 120)
    assert args.vllm_structured_outputs_regex == "[0-9]+"
    assert (args.vllm_importance_sampling_correction, args.vllm_importance_sampling_mode) == (True, "token_truncate")
    assert args.vllm_importance_sampling_clip_max == 2.5 and args.use_bias_correction_kl is False


def test_vllm_colocate_mode_takes_the_engine_sizes(tmp_path: Path) -> None:
    args = args_of(tmp_path, {"use_vllm": True, "vllm_mode": "colocate", "vllm_enable_sleep_mode": True},
                   vllm={"gpu_memory_utilization": 0.4, "max_model_len": 2048, "tensor_parallel_size": 2})
    assert (args.vllm_mode, args.vllm_enable_sleep_mode) == ("colocate", True)
    assert (args.vllm_gpu_memory_utilization, args.vllm_max_model_length, args.vllm_tensor_parallel_size) == (
        0.4, 2048, 2)
    # without an explicit utilisation TRL's colocate default (0.3) stays: the schema's 0.9 is the server's
    assert args_of(tmp_path, {"use_vllm": True, "vllm_mode": "colocate"}).vllm_gpu_memory_utilization == 0.3


@pytest.mark.parametrize("key", sorted(ASYNC_REFUSED))
def test_unbuilt_trl_features_are_refused_by_name(key: str) -> None:
    trl: dict[str, Any] = {key: {"prefetch_depth": 2}.get(key, True)}
    extra = {"adapter": "lora"} if key == "vllm_lora_sync" else {}
    if key == "vllm_lora_sync":
        trl["use_vllm"] = True
    cfg = cfg_of(trl, **extra)
    with pytest.raises(NotSupportedYet, match=rf"`trl\.{key}` is not supported yet with `rl: grpo`"):
        check_trainer_support(cfg)


def test_defaults_refuse_nothing() -> None:
    """skip_zero_advantage_batches (default true), reward_num_workers 1, reroll 1.0/1, replay 0/true."""
    assert grpo_refusals(cfg_of()) == []
    check_trainer_support(cfg_of())


@pytest.mark.parametrize(("top", "fragment"), [
    ({"sample_packing": True}, "`sample_packing`"), ({"chat_template_kwargs": {"a": 1}}, "`chat_template_kwargs`"),
    ({"auto_find_batch_size": True}, "`auto_find_batch_size`"), ({"neftune_noise_alpha": 5}, "`neftune_noise_alpha`"),
    ({"eval_sequence_len": 64, "sequence_len": 128}, "`eval_sequence_len`"),
])
def test_top_level_keys_refused_with_grpo(top: dict[str, Any], fragment: str) -> None:
    messages = grpo_refusals(cfg_of(**top))
    assert any(fragment in m and "not supported yet" in m for m in messages), messages


def test_sync_ref_model_with_adapter_is_refused() -> None:
    cfg = cfg_of({"sync_ref_model": True, "beta": 0.1}, adapter="lora")
    assert any("sync_ref_model" in m for m in grpo_refusals(cfg))


def test_colocate_refuses_server_only_vllm_keys() -> None:
    cfg = cfg_of({"use_vllm": True, "vllm_mode": "colocate"}, vllm={"port": 9000, "max_model_len": 512})
    assert any("vllm.port" in m and "colocate" in m for m in grpo_refusals(cfg))


def test_example_configs_train_without_refusals() -> None:
    cfg = load((REPO / "examples/grpo/qwen2.5-0.5b-grpo.yaml").read_text()).cfg
    assert grpo_refusals(cfg) == []


@pytest.mark.parametrize(("trl", "top", "fragment"), [
    ({"num_generations": None}, {"micro_batch_size": 4}, "not a multiple of trl.num_generations (8, TRL default)"),
    ({"num_generations": 3}, {"micro_batch_size": 6, "gradient_accumulation_steps": 1, "eval_batch_size": 4,
                              "val_set_size": 0.1}, "eval batch"),
    ({"generation_batch_size": 12}, {"micro_batch_size": 8}, "multiple of micro_batch_size"),
    ({"sync_ref_model": True}, {}, "needs a KL term"),
])
def test_combinations_trl_would_reject_after_loading(trl: dict[str, Any], top: dict[str, Any], fragment: str) -> None:
    with pytest.raises(TrainingConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        check_grpo_config(cfg_of(trl, **top))


def test_use_vllm_without_vllm_names_the_extra() -> None:
    with pytest.raises(ImportError, match=r"pip install axolotl\[vllm\]"):
        check_grpo_config(cfg_of({"use_vllm": True}))


@pytest.mark.parametrize(("trl", "path"), [
    ({"vllm_sync_interval": 2}, "trl.vllm_sync_interval"),
    ({"vllm_importance_sampling_correction": True}, "trl.vllm_importance_sampling_correction"),
    ({"vllm_server_port": 9000}, "trl.vllm_server_port"),
    ({"use_vllm": True, "vllm_enable_sleep_mode": True}, "trl.vllm_enable_sleep_mode"),
    ({"use_vllm": True, "vllm_mode": "colocate", "vllm_enable_sleep_mode": True, "vllm_sync_interval": 4},
     "trl.vllm_sync_interval"),
])
def test_vllm_keys_that_would_be_ignored_are_config_errors(trl: dict[str, Any], path: str) -> None:
    error = config_error(text(trl))
    assert path in str(error)


def test_data_producer_keys_are_accepted_with_the_transformers_backend(tmp_path: Path) -> None:
    trl = {"use_data_producer": True, "async_prefetch": True, "prefetch_depth": 2, "vllm_sync_interval": 2,
           "vllm_importance_sampling_mode": "token_truncate", "vllm_importance_sampling_cap": 2.0}
    cfg = cfg_of(trl)
    assert grpo_refusals(cfg) == []
    args = build_grpo_args(cfg.model_copy(update={"output_dir": str(tmp_path)}), has_eval=False)
    assert (args.vllm_importance_sampling_mode, args.vllm_importance_sampling_clip_max) == ("token_truncate", 2.0)
    assert args.use_vllm is False


@pytest.mark.parametrize(("trl", "top", "fragment"), [
    ({"use_vllm": True}, {}, "`trl.use_vllm`"),
    ({"rollout_func": "rollouts.mine"}, {}, "`trl.rollout_func`"),
    ({}, {"deepspeed": "zero2.json"}, "`deepspeed / fsdp`"),
])
def test_data_producer_refuses_what_it_cannot_drive(trl: dict[str, Any], top: dict[str, Any], fragment: str) -> None:
    messages = grpo_refusals(cfg_of({"use_data_producer": True, **trl}, **top))
    assert any(fragment in m and "use_data_producer" in m for m in messages), messages


def test_prefetch_depth_needs_async_prefetch() -> None:
    assert "trl.prefetch_depth" in str(config_error(text({"use_data_producer": True, "prefetch_depth": 1})))
    assert load(text({"use_data_producer": True, "async_prefetch": True, "prefetch_depth": 0})).cfg.trl.prefetch_depth == 0


def test_streaming_reroll_and_replay_are_accepted_with_their_companions() -> None:
    trl = {"use_data_producer": True, "streaming_partial_batch": True, "streaming_min_groups": 2,
           "replay_buffer_size": 8, "replay_recompute_logps": False, "reroll_start_fraction": 0.5,
           "reroll_max_groups": 2}
    assert grpo_refusals(cfg_of(trl)) == []


@pytest.mark.parametrize("key", ["streaming_min_groups", "replay_recompute_logps", "reroll_max_groups"])
def test_companion_keys_without_their_feature_are_config_errors(key: str) -> None:
    value = {"streaming_min_groups": 2, "replay_recompute_logps": False, "reroll_max_groups": 3}[key]
    error = str(config_error(text({key: value})))
    assert f"trl.{key}" in error and "has no effect without" in error


@pytest.mark.parametrize("feature", [{"streaming_partial_batch": True, "use_data_producer": True},
                                     {"reroll_start_fraction": 0.0}])
@pytest.mark.parametrize("batch_wide", [{"scale_rewards": "batch"}, {"multi_objective_aggregation": "normalize_then_sum"}])
def test_partial_scoring_refuses_batch_wide_reward_statistics(feature: dict[str, Any], batch_wide: dict[str, Any]) -> None:
    messages = grpo_refusals(cfg_of({**feature, **batch_wide}))
    key, setting = next(iter(feature)), next(iter(batch_wide))
    assert len(messages) == 1 and f"`trl.{key}`" in messages[0] and setting in messages[0], messages
