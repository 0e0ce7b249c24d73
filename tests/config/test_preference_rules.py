"""Preference-method settings that cannot work together fail validation, naming the key and the fix."""

from __future__ import annotations

import pytest

from axolotl.config.errors import format_path
from axolotl.testing.configs import SOURCE, config_error, load


def base(rl: str | None, dataset_type: str = "chatml.intel") -> str:
    return ("base_model: HuggingFaceTB/SmolLM2-135M\n"  # line 1
            "learning_rate: 0.0002\n"  # line 2
            + (f"rl: {rl}\n" if rl else "sequence_len: 512\n")  # line 3
            + "micro_batch_size: 2\n"  # line 4
            "datasets:\n"  # line 5
            "  - path: prefs.jsonl\n"  # line 6
            f"    type: {dataset_type}\n")  # line 7; anything appended starts at line 8


SFT, DPO, KTO, ORPO, SIMPO = base(None, "alpaca"), base("dpo"), base("kto"), base("orpo", "chat_template.argilla"), \
    base("simpo")


@pytest.mark.parametrize(("text", "path", "line", "says"), [
    pytest.param(SFT + "dpo_label_smoothing: 0.1\n", ("dpo_label_smoothing",), 8, "set `rl: dpo`", id="dpo-key-sft"),
    pytest.param(KTO + "dpo_norm_loss: true\n", ("dpo_norm_loss",), 8, "this config trains kto", id="dpo-key-kto"),
    pytest.param(KTO + "dpo_loss_type: [sigmoid]\n", ("dpo_loss_type",), 8, "set `rl: dpo`", id="loss-type-kto"),
    pytest.param(SIMPO + "rpo_alpha: 1.0\n", ("rpo_alpha",), 8, "set `rl: dpo`", id="rpo-simpo"),
    pytest.param(ORPO + "precompute_ref_log_probs: true\n", ("precompute_ref_log_probs",), 8, "`rl:` dpo / kto",
                 id="precompute-orpo"),
    pytest.param(SFT + "max_prompt_len: 128\n", ("max_prompt_len",), 8, "only valid with `rl:`", id="max-prompt-sft"),
    pytest.param(ORPO + "rl_beta: 0.1\n", ("rl_beta",), 8, "write `orpo_alpha: 0.1`", id="beta-orpo"),
    pytest.param(ORPO + "trl:\n  beta: 0.2\n", ("rl_beta",), 9, "orpo_alpha", id="trl-beta-orpo"),
    pytest.param(KTO.replace("micro_batch_size: 2", "micro_batch_size: 1"), ("micro_batch_size",), 4,
                 "micro_batch_size: 2", id="kto-one-row"),
    pytest.param(DPO + "trl:\n  use_vllm: true\n", ("trl", "use_vllm"), 9, "online methods", id="trl-vllm-dpo"),
    pytest.param(SIMPO + "trl:\n  sync_ref_model: true\n", ("trl", "sync_ref_model"), 9, "reads only `trl.beta`",
                 id="sync-ref-simpo"),
    pytest.param(DPO + "dpo_loss_type: [exo_pair]\n", ("dpo_loss_type",), 8, "dpo_label_smoothing: 0.001",
                 id="exo-needs-smoothing"),
    pytest.param(DPO + "dpo_loss_type: [robust]\ndpo_label_smoothing: 0.5\n", ("dpo_label_smoothing",), 9,
                 "below 0.5", id="robust-half"),
    pytest.param(DPO + "dpo_loss_type: [sigmoid, sft]\nrpo_alpha: 1.0\n", ("rpo_alpha",), 9, "keep one",
                 id="rpo-and-sft"),
    pytest.param(DPO + "dpo_ld_alpha: 1.5\n", ("dpo_ld_alpha",), 8, "between 0 and 1", id="ld-alpha-range"),
    pytest.param(DPO + "dpo_loss_type: [sigmoid, ipo]\ndpo_loss_weights: [1.0, 0.5, 0.2]\n", ("dpo_loss_weights",),
                 9, "one weight per entry", id="weights-too-many"),
])
def test_preference_conflicts(text: str, path: tuple[str, ...], line: int, says: str) -> None:
    err = config_error(text)
    assert [tuple(issue.path) for issue in err.issues] == [path], str(err)
    issue = err.issues[0]
    assert issue.severity == "error" and issue.location == f"{SOURCE}:{line}", str(err)
    assert says in f"{issue.message} {issue.hint or ''}", issue.render()
    assert f"`{format_path(path)}`" in str(err)


@pytest.mark.parametrize("text", [
    pytest.param(DPO + "dpo_loss_type: [exo_pair]\ndpo_label_smoothing: 0.001\n", id="exo"),
    pytest.param(DPO + "dpo_loss_type: [robust]\ndpo_label_smoothing: 0.1\n", id="robust"),
    pytest.param(DPO + "dpo_loss_type: [sigmoid, sft]\ndpo_loss_weights: [1.0, 0.5]\n", id="rpo-as-sft"),
    pytest.param(DPO + "rpo_alpha: 1.0\nmax_prompt_len: 256\nprecompute_ref_log_probs: true\n", id="dpo-keys"),
    pytest.param(DPO + "trl:\n  beta: 0.2\n  sync_ref_model: true\n  ref_model_sync_steps: 8\n", id="dpo-trl"),
    pytest.param(KTO + "kto_desirable_weight: 1.2\nmax_prompt_len: 128\n", id="kto"),
    pytest.param(ORPO + "orpo_alpha: 0.1\n", id="orpo"),
    pytest.param(SIMPO + "rl_beta: 2.0\ncpo_alpha: 0.0\nsimpo_gamma: 1.0\ntrl:\n  beta: 2.0\n", id="simpo"),
    pytest.param(base("ipo") + "dpo_label_smoothing: 0.0\n", id="rl-ipo"),
    pytest.param(SFT + "dpo_padding_free: false\n", id="false-is-unset"),
])
def test_valid_preference_settings_load(text: str) -> None:
    load(text)
