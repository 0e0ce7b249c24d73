"""Parameter groups (`lr_groups`, `embedding_lr`, LoRA+), optimizer names and packages, end to end.

Every test that builds an optimizer inspects `trainer.optimizer.param_groups` after
`AxolotlTrainer.create_optimizer` on a tiny model loaded through the real model/adapter path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from axolotl.testing.configs import load
from axolotl.training import args as args_module
from axolotl.training.args import TrainingConfigError, build_training_args, optimizer_name
from axolotl.training.optimizer import base_weight_name

from .test_train_e2e import make_cfg, state_dict

LR = 1e-3
BASE = "base_model: some/model\nlearning_rate: 2e-4\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"
LORA = "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n"


def trainer_for(model_dir: Path, tmp: Path, extra: str) -> Any:
    """An AxolotlTrainer (no data) over the model and adapter `extra` describes."""
    from axolotl.models.adapters import apply_adapter
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer
    from axolotl.training.sft import AxolotlTrainer

    cfg = make_cfg(model_dir, tmp, "groups", rows=4, extra=extra)
    model = apply_adapter(cfg, load_model(cfg, load_tokenizer(cfg)))
    return AxolotlTrainer(model=model, args=build_training_args(cfg, has_eval=False), axolotl_cfg=cfg)


def groups_by_name(trainer: Any) -> dict[str, dict[str, Any]]:
    """Trainable parameter name -> the optimizer param group holding it (each exactly once)."""
    optimizer = trainer.create_optimizer()
    owner: dict[int, dict[str, Any]] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in owner, "a parameter is in two groups"
            owner[id(param)] = group
    named = {name: owner[id(p)] for name, p in trainer.model.named_parameters() if p.requires_grad}
    assert len(named) == len(owner), "every group member is a trainable parameter of the model"
    return named


def test_base_weight_name() -> None:
    assert base_weight_name("base_model.model.model.layers.0.self_attn.o_proj.lora_A.default.weight") == \
        "model.layers.0.self_attn.o_proj.weight"
    assert base_weight_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"
    assert base_weight_name("base_model.model.model.embed_tokens.lora_embedding_B.default") == \
        "model.embed_tokens.weight"
    assert base_weight_name("base_model.model.model.layers.0.mlp.up_proj.base_layer.bias") == \
        "model.layers.0.mlp.up_proj.bias"
    assert base_weight_name("model.norm.weight") == "model.norm.weight"


# --------------------------------------------------------------------------------------------
# which parameter lands in which group
# --------------------------------------------------------------------------------------------

def test_lr_groups_full_finetune(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = trainer_for(tiny_llama_dir, tmp_path, "weight_decay: 0.1\nlr_groups:\n"
                          "  - {name: o_proj, modules: [self_attn.o_proj.weight], lr: 1.0e-6}\n"
                          "  - {name: q_proj, modules: [model.layers.1.self_attn.q_proj.weight], lr: 1.0e-5}\n")
    groups = groups_by_name(trainer)
    for name, group in groups.items():
        if "o_proj" in name:
            expected = ("o_proj", 1e-6)
        elif name == "model.layers.1.self_attn.q_proj.weight":
            expected = ("q_proj", 1e-5)
        else:
            expected = ("default", LR)
        assert (group["name"], group["lr"]) == expected, name
        no_decay = "norm" in name
        assert group["weight_decay"] == (0.0 if no_decay else 0.1), name
    assert groups["model.layers.0.self_attn.q_proj.weight"]["lr"] == LR
    # the base groups come first: the Trainer logs the first group's rate as `learning_rate`
    assert trainer.optimizer.param_groups[0]["name"] == "default"
    assert type(trainer.optimizer).__name__ == "AdamW"


@pytest.mark.parametrize(("key", "expected"), [("embedding_lr: 5.0e-5", 5e-5), ("embedding_lr_scale: 0.5", LR * 0.5)])
def test_embedding_lr_covers_input_embeddings_and_output_head(tiny_llama_dir: Path, tmp_path: Path, key: str,
                                                              expected: float) -> None:
    groups = groups_by_name(trainer_for(tiny_llama_dir, tmp_path, key + "\n"))
    assert groups["model.embed_tokens.weight"]["lr"] == pytest.approx(expected)
    assert groups["lm_head.weight"]["lr"] == pytest.approx(expected)
    assert groups["model.embed_tokens.weight"]["name"] == "embeddings"
    others = {g["lr"] for n, g in groups.items() if n not in ("model.embed_tokens.weight", "lm_head.weight")}
    assert others == {LR}


def test_loraplus_b_matrices_get_the_ratio(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    trainer = trainer_for(tiny_qwen2_dir, tmp_path, LORA + "loraplus_lr_ratio: 16\nweight_decay: 0.01\n")
    groups = groups_by_name(trainer)
    lora_b = [n for n in groups if ".lora_B." in n]
    lora_a = [n for n in groups if ".lora_A." in n]
    assert lora_b and len(lora_b) == len(lora_a) == len(groups) // 2
    assert all(groups[n]["lr"] == pytest.approx(16 * LR) for n in lora_b)
    assert {groups[n]["lr"] for n in lora_a} == {LR}
    assert {groups[n]["name"] for n in lora_b} == {"lora_B"}
    assert {groups[n]["weight_decay"] for n in groups} == {0.01}
    # the schedule scales every group by the same factor: the ratio survives warmup and decay
    trainer.create_scheduler(num_training_steps=10)
    for _ in range(3):
        trainer.optimizer.step()
        trainer.lr_scheduler.step()
    rates = {g["name"]: g["lr"] for g in trainer.optimizer.param_groups}
    assert rates["lora_B"] == pytest.approx(16 * rates["default"]) and rates["default"] < LR


def test_loraplus_embedding_factors_and_lr_groups_compose(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    trainer = trainer_for(tiny_qwen2_dir, tmp_path, "adapter: lora\nlora_r: 4\nlora_alpha: 8\n"
                          "lora_target_modules: [q_proj, v_proj, embed_tokens]\nloraplus_lr_ratio: 4\n"
                          "lr_groups:\n  - {name: q, modules: [self_attn.q_proj.weight], lr: 1.0e-5}\n")
    groups = groups_by_name(trainer)
    for name, group in groups.items():
        if "lora_embedding" in name:
            expected = ("loraplus_embedding", 1e-6)  # loraplus_lr_embedding's default
        elif "q_proj.lora_B" in name:
            expected = ("q/lora_B", 4e-5)
        elif "q_proj.lora_A" in name:
            expected = ("q", 1e-5)
        elif "lora_B" in name:
            expected = ("lora_B", 4 * LR)
        else:
            expected = ("default", LR)
        assert (group["name"], group["lr"]) == (expected[0], pytest.approx(expected[1])), name
    assert any("lora_embedding_A" in n for n in groups)


def test_embedding_lr_applies_to_saved_embedding_copies(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    trainer = trainer_for(tiny_qwen2_dir, tmp_path, LORA + "lora_modules_to_save: [embed_tokens, lm_head]\n"
                          "embedding_lr_scale: 0.1\n")
    groups = groups_by_name(trainer)
    embedding = {n for n, g in groups.items() if g["name"] == "embeddings"}
    assert embedding == {"base_model.model.model.embed_tokens.modules_to_save.default.weight",
                         "base_model.model.lm_head.modules_to_save.default.weight"}
    assert all(groups[n]["lr"] == pytest.approx(LR * 0.1) for n in embedding)


@pytest.mark.parametrize(("extra", "message"), [
    ("lr_groups:\n  - {name: typo, modules: [self_attn.o_prj], lr: 1.0e-6}\n",
     "group `typo`: modules \\['self_attn.o_prj'\\] match no trainable parameter"),
    ("lr_groups:\n  - {name: a, modules: [o_proj], lr: 1.0e-6}\n  - {name: b, modules: [layers.0.self_attn], lr: 1.0}\n",
     "parameter `model.layers.0.self_attn.o_proj.weight` matches groups \\['a', 'b'\\]"),
    ("lr_groups:\n  - {name: a, modules: [o_proj], lr: 1.0e-6}\n  - {name: a, modules: [q_proj], lr: 1.0}\n",
     "names must be unique"),
    ("embedding_lr: 1.0e-5\nembedding_lr_scale: 0.5\n", "set only one"),
])
def test_group_errors(tiny_llama_dir: Path, tmp_path: Path, extra: str, message: str) -> None:
    trainer = trainer_for(tiny_llama_dir, tmp_path, extra)
    with pytest.raises(TrainingConfigError, match=message):
        trainer.create_optimizer()


def test_embedding_lr_with_frozen_embeddings_is_an_error(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    trainer = trainer_for(tiny_qwen2_dir, tmp_path, LORA + "embedding_lr: 1.0e-5\n")
    with pytest.raises(TrainingConfigError, match="no embedding is trained: they are frozen"):
        trainer.create_optimizer()


# --------------------------------------------------------------------------------------------
# optimizer names, packages and the keys that only some optimizers take (no model needed)
# --------------------------------------------------------------------------------------------

def cfg_of(extra: str = "") -> Any:
    return load(BASE + extra).cfg


def test_unknown_and_unsupported_optimizer_names() -> None:
    with pytest.raises(TrainingConfigError, match="`optimizer: muon` .*reference's own optimizers.*not supported "
                                                  "yet.*adamw_torch_fused"):
        optimizer_name(cfg_of("optimizer: muon\n"))
    # adamw_apex_fused was in transformers 4's list (and the config layer accepts it), not in 5's
    with pytest.raises(TrainingConfigError, match="`optimizer: adamw_apex_fused` is not an optimizer transformers"):
        optimizer_name(cfg_of("optimizer: adamw_apex_fused\n"))
    with pytest.raises(TrainingConfigError, match="not an optimizer transformers .*adafactor, adagrad"):
        optimizer_name(cfg_of().model_copy(update={"optimizer": "adamw_torch_fast"}))


@pytest.mark.parametrize(("name", "package", "extra"), [
    ("schedule_free_adamw", "schedulefree", "the `schedulefree` extra"),
    ("schedule_free_sgd", "schedulefree", "the `schedulefree` extra"),
    ("adamw_torch_4bit", "torchao", "the `torchao` extra"),
    ("galore_adamw", "galore_torch", "the `galore` extra"),
    ("apollo_adamw", "apollo_torch", "the `apollo` extra"),
    ("lomo", "lomo_optim", "the `lomo` extra"),
    ("grokadamw", "grokadamw", "the `grokadamw` extra"),
    ("stable_adamw", "optimi", "the `optimi` extra"),
    ("paged_adamw_8bit", "bitsandbytes", "the `qlora` extra"),
])
def test_missing_optimizer_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, name: str, package: str,
                                                   extra: str) -> None:
    monkeypatch.setattr(args_module, "_available", lambda module: module != package)
    with pytest.raises(TrainingConfigError, match=f"`optimizer: {name}` needs the `{package}` package.*{extra}"):
        optimizer_name(cfg_of(f"optimizer: {name}\n"))


def test_installed_optional_optimizers_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(args_module, "_available", lambda module: True)
    assert optimizer_name(cfg_of("optimizer: schedule_free_adamw\nwarmup_steps: 3\n")) == "schedule_free_adamw"
    assert optimizer_name(cfg_of("optimizer: galore_adamw\noptim_target_modules: all_linear\n")) == "galore_adamw"
    assert optimizer_name(cfg_of("optimizer: adamw_torch_8bit\n")) == "adamw_torch_8bit"


@pytest.mark.parametrize(("extra", "message"), [
    ("optimizer: galore_adamw\n", "needs `optim_target_modules`"),
    ("optimizer: apollo_adamw_layerwise\noptim_target_modules: [q_proj]\ngradient_accumulation_steps: 2\n",
     "cannot accumulate gradients"),
    ("optimizer: adamw_torch\noptim_target_modules: [q_proj]\n", "only used by the GaLore/APOLLO optimizers"),
    ("optimizer: lomo\nlr_groups:\n  - {name: a, modules: [q_proj], lr: 1.0e-5}\n",
     "builds its own parameter groups, so `lr_groups` cannot apply"),
    ("optimizer: schedule_free_adamw\nlr_scheduler: cosine\n", "use `lr_scheduler: constant`"),
    ("optimizer: schedule_free_adamw\nwarmup_ratio: 0.1\n", "`warmup_steps` instead of `warmup_ratio`"),
])
def test_optimizer_specific_keys(monkeypatch: pytest.MonkeyPatch, extra: str, message: str) -> None:
    monkeypatch.setattr(args_module, "_available", lambda module: True)
    with pytest.raises(TrainingConfigError, match=message):
        optimizer_name(cfg_of(extra))


def test_schedule_free_defaults_to_a_constant_schedule(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(args_module, "_available", lambda module: True)
    args = build_training_args(cfg_of(f"optimizer: schedule_free_sgd\noutput_dir: {tmp_path}\n"), has_eval=False)
    assert (args.optim.value, args.lr_scheduler_type.value) == ("schedule_free_sgd", "constant")


def test_optim_args_and_target_modules_reach_the_trainer(tmp_path: Path) -> None:
    args = build_training_args(cfg_of(f"optimizer: sgd\noptim_args: {{momentum: 0.9, nesterov: true}}\n"
                                      f"output_dir: {tmp_path}\n"), has_eval=False)
    assert args.optim_args == "momentum=0.9,nesterov=True"
    from transformers import Trainer

    _, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    assert (kwargs["momentum"], kwargs["nesterov"]) == (0.9, True)
    with pytest.raises(TrainingConfigError, match="cannot contain"):
        build_training_args(cfg_of(f"optim_args: {{betas: '0.9,0.95'}}\noutput_dir: {tmp_path}\n"), has_eval=False)


# --------------------------------------------------------------------------------------------
# end to end
# --------------------------------------------------------------------------------------------

def test_train_with_lr_groups_freezes_a_zero_lr_group(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`lr: 0` for every o_proj: after training those weights are bit-identical, all others moved
    (weight decay 0, so a zero rate means no update at all); `gc_steps` runs alongside."""
    from axolotl.training.sft import train

    cfg = make_cfg(tiny_llama_dir, tmp_path, "lr-groups", rows=8,
                   extra="max_steps: 3\nmicro_batch_size: 2\nlr_scheduler: rex\ngc_steps: 1\n"
                         "lr_groups:\n  - {name: frozen_o, modules: [self_attn.o_proj], lr: 0.0}\n"
                         "  - {name: slow_mlp, modules: [mlp.], lr: 1.0e-5}\n")
    result = train(cfg)
    assert len(result.losses) == 3
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    trained = state_dict(Path(cfg.output_dir))
    for name, tensor in trained.items():
        changed = not torch.equal(tensor, base[name])
        assert changed == ("o_proj" not in name), name
    logged = result.metrics["train_loss_history"]
    assert logged[0]["learning_rate"] == pytest.approx(1e-3), "the logged lr is the base group's"


def test_train_with_loraplus_updates_both_factors(tiny_qwen2_dir: Path, tmp_path: Path) -> None:
    """LoRA B starts at zero; with LoRA+ it moves and the saved adapter differs from a plain LoRA run."""
    from safetensors.torch import load_file

    from axolotl.training.sft import train

    runs = {}
    for name, extra in (("plain", ""), ("plus", "loraplus_lr_ratio: 16\n")):
        cfg = make_cfg(tiny_qwen2_dir, tmp_path, name, rows=8,
                       extra=LORA + "max_steps: 2\nlr_scheduler: constant\n" + extra)
        train(cfg)
        runs[name] = load_file(str(Path(cfg.output_dir) / "adapter_model.safetensors"))
    plus, plain = runs["plus"], runs["plain"]
    lora_b = [n for n in plus if "lora_B" in n]
    assert lora_b and all(plus[n].abs().sum() > 0 for n in lora_b)
    # Adam's first steps move every weight by about lr regardless of the gradient's size, so the B
    # matrices (zero at init) end about 16x further from zero than without LoRA+
    ratio = sum(plus[n].abs().sum() for n in lora_b) / sum(plain[n].abs().sum() for n in lora_b)
    assert 14 < ratio < 18, ratio


def test_save_model_saves_the_schedule_free_average(tmp_path: Path) -> None:
    """Schedule-free optimizers expose `eval()` (switch the weights to their average): saving calls it."""
    from axolotl.training.sft import AxolotlTrainer

    class Averaging(torch.optim.SGD):
        modes: list[str] = []

        def eval(self) -> None:
            self.modes.append("eval")

        def train(self) -> None:
            self.modes.append("train")

    cfg = cfg_of(f"output_dir: {tmp_path}\n")
    model = torch.nn.Linear(2, 1)
    trainer = AxolotlTrainer(model=model, args=build_training_args(cfg, has_eval=False), axolotl_cfg=cfg)
    trainer.optimizer = Averaging(model.parameters(), lr=0.1)
    trainer.save_model(str(tmp_path / "out"))
    assert trainer.optimizer.modes == ["eval"] and (tmp_path / "out" / "model.safetensors").is_file()
