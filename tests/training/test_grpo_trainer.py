"""What our GRPO trainer adds to TRL's, one step at a time on the tiny model: `vllm_sync_interval`
(with a stand-in for the vLLM client, since vLLM cannot run here), the reference model of a full
fine-tune, `rollout_func`, and the zero-advantage skip's conditions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .grpo_harness import grpo_cfg, grpo_trainer


def length(completions: list[Any], **kwargs: Any) -> list[float]:
    return [float(len(c)) for c in completions]


class FakeVLLM:
    """Counts weight pushes; generates two fixed tokens per completion (what TRL's client returns)."""

    def __init__(self) -> None:
        self.pushed_at: list[int] = []
        self.trainer: Any = None

    def sync_weights(self) -> None:
        self.pushed_at.append(self.trainer.state.global_step)

    def generate(self, prompts: list[Any], images: Any, num_generations: int, profiler: Any) -> tuple[Any, ...]:
        ids = [[5, 6] for _ in range(len(prompts) * num_generations)]
        return None, ids, [[[-0.5], [-0.5]] for _ in ids], None


def test_vllm_weights_are_pushed_every_sync_interval_steps(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = grpo_cfg(tiny_llama_dir, tmp_path, trl={"use_vllm": True, "vllm_sync_interval": 3})
    cfg.trl.use_vllm = False  # build without the vLLM client (not installable here), then plug in the stand-in
    trainer = grpo_trainer(cfg, [length])
    assert trainer.sync_interval == 3
    fake = FakeVLLM()
    fake.trainer, trainer.vllm_generation, trainer.use_vllm, trainer._last_loaded_step = trainer, fake, True, -1
    trainer.model.train()
    for step in (0, 0, 1, 2, 3, 4, 5, 6, 6, 7):  # two generations in steps 0 and 6 (gradient accumulation)
        trainer.state.global_step = step
        trainer._generate(["Question 1:"])
    assert fake.pushed_at == [0, 3, 6]


def test_sync_interval_one_pushes_after_every_step(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = grpo_cfg(tiny_llama_dir, tmp_path, trl={"use_vllm": True})
    cfg.trl.use_vllm = False
    trainer = grpo_trainer(cfg, [length])
    fake = FakeVLLM()
    fake.trainer, trainer.vllm_generation, trainer.use_vllm, trainer._last_loaded_step = trainer, fake, True, -1
    trainer.model.train()
    for step in (0, 0, 1, 2, 2):
        trainer.state.global_step = step
        trainer._generate(["Question 1:"])
    assert fake.pushed_at == [0, 1, 2]


def test_full_fine_tune_reference_is_a_frozen_copy_of_the_loaded_model(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """An added token resizes the embeddings: TRL 1.16 would reload the checkpoint (the old vocabulary)."""
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, {"rl_beta": 0.1, "tokens": ["<think>"]}), [length])
    policy, reference = trainer.model, trainer.ref_model
    assert reference is not None and reference is not policy
    assert reference.get_input_embeddings().weight.shape == policy.get_input_embeddings().weight.shape
    assert all(not p.requires_grad for p in reference.parameters())
    for (name, p), (_, r) in zip(policy.named_parameters(), reference.named_parameters()):
        assert torch.equal(p, r), name
    with torch.no_grad():
        next(policy.parameters()).add_(1.0)  # a training step moves the policy, not the reference
    assert not torch.equal(next(policy.parameters()), next(reference.parameters()))


def test_adapter_reference_is_the_base(tiny_llama_dir: Path, tmp_path: Path) -> None:
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, {"rl_beta": 0.1, "adapter": "lora", "lora_r": 4,
                                                               "lora_alpha": 8, "lora_target_linear": True}), [length])
    assert trainer.ref_model is None and list(trainer.model.peft_config) == ["default"]


def test_rollout_func_is_imported_and_used(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: Any) -> None:
    name = f"rollout_{tmp_path.name}"
    (tmp_path / f"{name}.py").write_text(
        "def fixed(prompts, trainer):\n"
        "    n = len(prompts) * trainer.num_generations\n"
        "    return {'prompt_ids': [[1, 4]] * n, 'completion_ids': [[7, 8, 2]] * n, 'logprobs': [[-1.0] * 3] * n,\n"
        "            'env_reward': [0.25] * n}\n")
    monkeypatch.chdir(tmp_path)
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={"rollout_func": f"{name}.fixed"}), [length])
    assert trainer.rollout_func.__name__ == "fixed"
    trainer.model.train()
    _prompt_ids, completion_ids, *_rest = trainer._generate(["Question 1:"])
    assert completion_ids == [[7, 8, 2]] * 4


def test_skip_needs_zero_advantages_no_kl_and_training_mode(tiny_llama_dir: Path, tmp_path: Path) -> None:
    zero = {"advantages": torch.zeros(4)}
    trainer = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path), [length])
    trainer.model.train()
    assert trainer.can_skip(zero) and not trainer.can_skip({"advantages": torch.tensor([0.0, 0.0, 1e-7, 0.0])})
    trainer.model.eval()
    assert not trainer.can_skip(zero)
    with_kl = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, {"rl_beta": 0.1}), [length])
    with_kl.model.train()
    assert not with_kl.can_skip(zero)  # the KL term still has a gradient
    off = grpo_trainer(grpo_cfg(tiny_llama_dir, tmp_path, trl={"skip_zero_advantage_batches": False}), [length])
    off.model.train()
    assert not off.can_skip(zero)
