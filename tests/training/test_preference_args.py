"""Config -> TRL config of each preference method, and the refusals (no model, no data)."""

from __future__ import annotations

from typing import Any

import pytest

from axolotl.testing.configs import load
from axolotl.training.preference_args import PREFERENCE_REFUSED, build_preference_args, preference_refusals
from axolotl.training.support import NotSupportedYet, check_trainer_support, trainer_refusals

TYPES = {"dpo": "chatml.intel", "ipo": "chatml.intel", "kto": "chatml.intel", "orpo": "chat_template.argilla",
         "simpo": "chatml.intel"}


def cfg_of(rl: str, extra: str = "") -> Any:
    return load(f"base_model: some/model\nlearning_rate: 2e-4\nrl: {rl}\nmicro_batch_size: 2\n"
                f"datasets:\n  - path: prefs.jsonl\n    type: {TYPES[rl]}\n" + extra).cfg


def args_of(rl: str, extra: str = "", tmp: Any = None) -> Any:
    return build_preference_args(cfg_of(rl, extra + (f"output_dir: {tmp}\n" if tmp else "")), has_eval=False)


def test_common_mapping_is_the_sft_mapping(tmp_path: Any) -> None:
    from trl import DPOConfig

    args = args_of("dpo", "sequence_len: 300\ngradient_accumulation_steps: 3\nmax_steps: 7\nwarmup_steps: 2\n"
                   "weight_decay: 0.1\ndataset_num_proc: 3\nseed: 5\n", tmp_path)
    assert isinstance(args, DPOConfig)
    assert (args.max_length, args.per_device_train_batch_size, args.gradient_accumulation_steps) == (300, 2, 3)
    assert (args.max_steps, args.warmup_steps, args.weight_decay, args.seed) == (7, 2, 0.1, 5)
    assert (args.learning_rate, args.logging_steps, args.dataset_num_proc) == (2e-4, 1, 3)
    # TRL's own defaults that would change the run are pinned to ours
    assert args.gradient_checkpointing is False and args.bf16 is False
    assert args.disable_dropout is True


def test_dpo_defaults_are_trl_defaults(tmp_path: Any) -> None:
    args = args_of("dpo", tmp=tmp_path)
    assert (args.beta, args.loss_type, args.loss_weights, args.label_smoothing) == (0.1, ["sigmoid"], None, 0.0)
    assert (args.use_weighting, args.ld_alpha, args.precompute_ref_log_probs) == (False, None, False)
    assert args.sync_ref_model is False


@pytest.mark.parametrize(("extra", "expected"), [
    ("rl_beta: 0.3\n", {"beta": 0.3}),
    ("trl:\n  beta: 0.4\n", {"beta": 0.4}),
    ("dpo_loss_type: [ipo]\n", {"loss_type": ["ipo"]}),
    ("dpo_loss_type: [aot_pair, sigmoid]\ndpo_loss_weights: [0.5, 2.0]\n",
     {"loss_type": ["aot_unpaired", "sigmoid"], "loss_weights": [0.5, 2.0]}),
    ("dpo_loss_type: [robust]\ndpo_label_smoothing: 0.1\n", {"loss_type": ["robust"], "label_smoothing": 0.1}),
    ("dpo_norm_loss: true\n", {"loss_type": ["sigmoid_norm"]}),
    ("dpo_loss_type: [sigmoid, ipo]\ndpo_norm_loss: true\n", {"loss_type": ["sigmoid_norm", "ipo"]}),
    ("rpo_alpha: 0.5\n", {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}),
    ("dpo_loss_type: [ipo, hinge]\ndpo_loss_weights: [1.0, 0.2]\nrpo_alpha: 1.0\n",
     {"loss_type": ["ipo", "hinge", "sft"], "loss_weights": [1.0, 0.2, 1.0]}),
    ("dpo_use_weighting: true\n", {"use_weighting": True}),
    ("dpo_ld_alpha: 0.5\n", {"ld_alpha": 0.5}),
    ("precompute_ref_log_probs: true\n", {"precompute_ref_log_probs": True}),
    ("pad_to_multiple_of: 8\n", {"pad_to_multiple_of": 8}),
    ("remove_unused_columns: false\n", {"remove_unused_columns": False}),
    ("trl:\n  sync_ref_model: true\n", {"sync_ref_model": True, "ref_model_mixup_alpha": 0.9,
                                        "ref_model_sync_steps": 64}),
    ("trl:\n  sync_ref_model: true\n  ref_model_mixup_alpha: 0.5\n  ref_model_sync_steps: 10\n",
     {"sync_ref_model": True, "ref_model_mixup_alpha": 0.5, "ref_model_sync_steps": 10}),
    ("gradient_checkpointing: true\n", {"gradient_checkpointing": False,
                                        "gradient_checkpointing_kwargs": {"use_reentrant": False}}),
])
def test_dpo_mapping(extra: str, expected: dict[str, Any], tmp_path: Any) -> None:
    args = args_of("dpo", extra, tmp_path)
    assert {key: getattr(args, key) for key in expected} == expected


def test_rl_ipo_is_dpo_with_the_ipo_loss(tmp_path: Any) -> None:
    from trl import DPOConfig

    args = args_of("ipo", tmp=tmp_path)
    assert isinstance(args, DPOConfig) and args.loss_type == ["ipo"]


def test_kto_mapping(tmp_path: Any) -> None:
    from trl import KTOConfig

    args = args_of("kto", "rl_beta: 0.2\nkto_desirable_weight: 1.3\nkto_undesirable_weight: 0.6\n", tmp_path)
    assert isinstance(args, KTOConfig)
    assert (args.beta, args.desirable_weight, args.undesirable_weight) == (0.2, 1.3, 0.6)
    assert args.loss_type == "kto"
    assert args.train_sampling_strategy == "sequential", "the KL term pairs each row with its batch neighbour"
    defaults = args_of("kto", tmp=tmp_path)
    assert (defaults.beta, defaults.desirable_weight, defaults.undesirable_weight) == (0.1, 1.0, 1.0)


def test_orpo_alpha_is_orpo_beta(tmp_path: Any) -> None:
    from trl.experimental.orpo import ORPOConfig

    args = args_of("orpo", "orpo_alpha: 0.05\n", tmp_path)
    assert isinstance(args, ORPOConfig) and args.beta == 0.05 and args.max_length == 512
    assert args_of("orpo", tmp=tmp_path).beta == 0.1


def test_simpo_is_cpo_with_the_simpo_loss(tmp_path: Any) -> None:
    from trl.experimental.cpo import CPOConfig

    args = args_of("simpo", "rl_beta: 2.5\ncpo_alpha: 0.0\nsimpo_gamma: 1.2\n", tmp_path)
    assert isinstance(args, CPOConfig)
    assert (args.loss_type, args.beta, args.cpo_alpha, args.simpo_gamma) == ("simpo", 2.5, 0.0, 1.2)
    defaults = args_of("simpo", tmp=tmp_path)
    assert (defaults.loss_type, defaults.beta, defaults.cpo_alpha, defaults.simpo_gamma) == ("simpo", 0.1, 1.0, 0.5)


# --------------------------------------------------------------------------------------------
# refusals: what TRL 1.16 cannot honour fails before anything loads, never silently
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rl", ["dpo", "kto", "orpo", "simpo"])
def test_plain_preference_configs_have_no_refusals(rl: str) -> None:
    assert trainer_refusals(cfg_of(rl)) == []


@pytest.mark.parametrize(("rl", "extra", "key"), [
    ("dpo", "sample_packing: true\n", "sample_packing"),
    ("kto", "pad_to_sequence_len: true\n", "pad_to_sequence_len"),
    ("dpo", "eval_sample_packing: true\n", "eval_sample_packing"),
    ("dpo", "group_by_length: true\n", "group_by_length"),
    ("simpo", "chunked_cross_entropy: true\n", "chunked_cross_entropy"),
    ("dpo", "neftune_noise_alpha: 5\n", "neftune_noise_alpha"),
    ("orpo", "qat:\n  weight_dtype: int8\n", "qat"),
    ("dpo", "train_on_inputs: true\n", "train_on_inputs"),
    ("dpo", "activation_offloading: true\ngradient_checkpointing: true\n", "activation_offloading"),
    ("dpo", "dpo_padding_free: true\n", "dpo_padding_free"),
    ("dpo", "dpo_use_logits_to_keep: true\n", "dpo_use_logits_to_keep"),
    ("dpo", "dpo_generate_during_eval: true\n", "dpo_generate_during_eval"),
    ("dpo", "dpo_use_liger_kernel: true\n", "dpo_use_liger_kernel"),
    ("dpo", "eval_sequence_len: 64\n", "eval_sequence_len"),
    ("orpo", "pad_to_multiple_of: 8\n", "pad_to_multiple_of"),
    ("dpo", "dpo_label_smoothing: 0.1\n", "dpo_label_smoothing"),
    ("dpo", "dpo_loss_type: [hinge]\ndpo_norm_loss: true\n", "dpo_norm_loss"),
    ("dpo", "dpo_loss_type: [aot]\ndpo_use_weighting: true\ndpo_label_smoothing: 0.1\n", "dpo_use_weighting"),
    ("dpo", "adapter: lora\nlora_r: 4\ntrl:\n  sync_ref_model: true\n", "trl.sync_ref_model"),
])
def test_refused_combinations(rl: str, extra: str, key: str) -> None:
    cfg = cfg_of(rl, extra)
    messages = preference_refusals(cfg)
    assert len(messages) == 1 and messages[0].startswith(f"`{key}` is not supported yet"), messages
    with pytest.raises(NotSupportedYet, match=f"`{key}` is not supported yet"):
        check_trainer_support(cfg)


def test_false_values_are_not_refused() -> None:
    assert preference_refusals(cfg_of("dpo", "dpo_padding_free: false\ndpo_use_logits_to_keep: false\n"
                                             "sample_packing: false\ntrain_on_inputs: false\n")) == []


def test_label_smoothing_is_accepted_by_the_losses_that_read_it() -> None:
    for losses in ("[robust]", "[exo_pair]", "[aot]", "[aot_pair, sigmoid]"):
        assert preference_refusals(cfg_of("dpo", f"dpo_loss_type: {losses}\ndpo_label_smoothing: 0.01\n")) == []


def test_ebft_and_grpo_are_trained() -> None:
    cfg = load("base_model: m\nlearning_rate: 1e-5\nrl: ebft\n"
               "datasets:\n  - path: d.jsonl\n    type: rewards.t\n").cfg
    check_trainer_support(cfg)
    grpo = load("base_model: m\nlearning_rate: 1e-5\nrl: grpo\ntrl:\n  reward_funcs: [rewards.f]\n"
                "datasets:\n  - path: d.jsonl\n    type: rewards.t\n").cfg
    check_trainer_support(grpo)


def test_every_refused_key_is_a_config_key() -> None:
    from axolotl.config.schema import full_config_class

    assert set(PREFERENCE_REFUSED) <= set(full_config_class().model_fields)
