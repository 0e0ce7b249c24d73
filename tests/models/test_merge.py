"""Merging a LoRA adapter into its base (`axolotl.models.merge`).

The invariant: the merged model computes what base + adapter computes (LoRA, DoRA, rsLoRA,
`modules_to_save`, trainable tokens, and an adapter trained on a real 4-bit base), and is a
plain transformers model saved with its tokenizer. Plus which adapter is picked, what is
refused before any weight is read, and that the output is written all at once or not at all.
Adapters get random non-zero weights (B included), so an ignored adapter cannot pass.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase

from axolotl.models import merge
from axolotl.models.adapters import apply_adapter
from axolotl.models.merge import (
    PROVENANCE_FILE,
    load_merged,
    memory_limits,
    merge_config,
    merge_lora,
    placement,
    plan_merge,
)
from axolotl.testing.configs import load

INPUT_IDS = torch.tensor([[1, 5, 9, 13, 17, 21, 25, 29], [2, 4, 6, 8, 10, 12, 14, 16]])
HAS_BNB = importlib.util.find_spec("bitsandbytes") is not None


def _cfg(base: Path, output_dir: Path, **keys: Any) -> Any:
    text = yaml.safe_dump({"base_model": str(base), "learning_rate": 1e-4, "output_dir": str(output_dir),
                           "adapter": "lora", **keys})
    return load(text).cfg


def _logits(model: torch.nn.Module) -> torch.Tensor:
    """On CPU in fp32, wherever the model is (a 4-bit base is placed on the GPU when there is one)."""
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(input_ids=INPUT_IDS.to(device)).logits.float().cpu()


def _perturb(model: torch.nn.Module, seed: int) -> None:
    """Random non-zero values for every adapter tensor (LoRA B starts at zero, module copies
    start equal to the originals): an adapter that were dropped would then show in the logits."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                noise = torch.randn(param.shape, generator=generator) * 0.05
                param.add_(noise.to(param.dtype))


def _train_adapter(cfg: Any, base: Path, directory: Path, seed: int = 0, **load_kwargs: Any) -> torch.Tensor:
    """Save an adapter with random weights and the base's tokenizer to `directory`, as a LoRA
    training run leaves its output_dir; returns base + adapter logits."""
    peft_model = apply_adapter(cfg, AutoModelForCausalLM.from_pretrained(base, **load_kwargs))
    _perturb(peft_model, seed)
    peft_model.eval()
    peft_model.save_pretrained(directory)
    AutoTokenizer.from_pretrained(base).save_pretrained(directory)
    return _logits(peft_model)


def _no_adapter_left(directory: Path) -> bool:
    from safetensors import safe_open

    names = []
    for shard in directory.glob("*.safetensors"):
        with safe_open(str(shard), framework="pt") as handle:
            names += list(handle.keys())
    return bool(names) and not any("lora" in n or "modules_to_save" in n or "trainable_tokens" in n for n in names)


ADAPTERS = {
    "lora": {"lora_target_linear": True},
    "dora": {"lora_target_linear": True, "peft_use_dora": True},
    "dora_rslora": {"lora_target_modules": ["q_proj", "v_proj"], "peft_use_dora": True, "peft_use_rslora": True},
    "modules_to_save": {"lora_target_modules": ["q_proj"], "lora_modules_to_save": ["lm_head"]},
    "trainable_tokens": {"lora_target_modules": ["v_proj"], "peft_trainable_token_indices": [1, 5]},
}


# the merged model computes base + adapter


@pytest.mark.parametrize("setup", ADAPTERS, ids=list(ADAPTERS))
def test_merged_logits_equal_base_plus_adapter(tiny_llama_dir: Path, tmp_path: Path, setup: str) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_r=4, lora_alpha=8, peft_init_lora_weights=False,
               **ADAPTERS[setup])
    expected = _train_adapter(cfg, tiny_llama_dir, tmp_path / "out")
    assert not torch.allclose(expected, _logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir)), atol=1e-3)
    target = merge_lora(cfg)
    assert target == tmp_path / "out" / "merged"
    merged = AutoModelForCausalLM.from_pretrained(target)
    assert type(merged).__name__ == "LlamaForCausalLM"
    torch.testing.assert_close(_logits(merged), expected, rtol=0, atol=1e-5)
    assert _no_adapter_left(target)


def test_output_is_a_standalone_sharded_model_with_its_tokenizer(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_linear=True)
    expected = _train_adapter(cfg, tiny_llama_dir, tmp_path / "out")
    target = merge_lora(cfg, max_shard_size="100KB")
    shards = sorted(p.name for p in target.glob("*.safetensors"))
    assert len(shards) > 1 and (target / "model.safetensors.index.json").is_file()
    assert not list(target.glob("*.bin")) and not (target / "adapter_config.json").exists()
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(target)), expected, rtol=0, atol=1e-5)
    tokenizer = AutoTokenizer.from_pretrained(target)
    original = AutoTokenizer.from_pretrained(tiny_llama_dir)
    assert tokenizer.chat_template and tokenizer.chat_template == original.chat_template
    assert tokenizer("Hello there")["input_ids"] == original("Hello there")["input_ids"]
    provenance = json.loads((target / PROVENANCE_FILE).read_text())
    assert provenance["base_model"] == str(tiny_llama_dir) and provenance["dtype"] == "float32"
    assert not [p for p in target.parent.iterdir() if ".staging-" in p.name or ".old-" in p.name]


def test_bf16_training_gives_bf16_merged_weights(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """`bf16: true` trains on bf16 base weights; the merged model keeps that dtype."""
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", bf16=True, lora_target_linear=True)
    expected = _train_adapter(cfg, tiny_llama_dir, tmp_path / "out", dtype=torch.bfloat16)
    target = merge_lora(cfg)
    merged = AutoModelForCausalLM.from_pretrained(target, dtype="auto")
    assert {p.dtype for p in merged.parameters()} == {torch.bfloat16}
    assert json.loads((target / "config.json").read_text())["dtype"] == "bfloat16"
    # bf16 rounds each merged weight once (a few 1e-3 relative); logits here are ~0.5.
    torch.testing.assert_close(_logits(merged), expected, rtol=0, atol=0.05)


def test_added_tokens_and_resized_embeddings_survive(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Training grew the embeddings for an added token; the merge must load the base the same way."""
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", tokens=["<extra_token>"], lora_target_modules=["q_proj"],
               lora_modules_to_save=["embed_tokens", "lm_head"])
    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(cfg)
    peft_model = apply_adapter(cfg, load_model(cfg, tokenizer))
    _perturb(peft_model, seed=1)
    peft_model.eval()
    peft_model.save_pretrained(tmp_path / "out")
    tokenizer.save_pretrained(tmp_path / "out")
    target = merge_lora(cfg)
    merged = AutoModelForCausalLM.from_pretrained(target)
    assert merged.get_input_embeddings().num_embeddings == len(tokenizer)
    assert "<extra_token>" in AutoTokenizer.from_pretrained(target).get_vocab()
    torch.testing.assert_close(_logits(merged), _logits(peft_model), rtol=0, atol=1e-5)


# QLoRA


def _qlora_cfg(base: Path, output_dir: Path) -> Any:
    return _cfg(base, output_dir, adapter="qlora", load_in_4bit=True, lora_r=4, lora_alpha=8,
                lora_target_linear=True, peft_init_lora_weights=False)


def test_qlora_config_merges_into_the_unquantised_base(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Needs no bitsandbytes: the base is loaded without quantisation whatever the config says."""
    cfg = _qlora_cfg(tiny_llama_dir, tmp_path / "out")
    plain = _cfg(tiny_llama_dir, tmp_path / "out", lora_r=4, lora_alpha=8, lora_target_linear=True,
                 peft_init_lora_weights=False)
    expected = _train_adapter(plain, tiny_llama_dir, tmp_path / "out")
    plan = plan_merge(cfg)
    assert any("quantised base" in note for note in plan.notes)
    merging = merge_config(cfg, plan.adapter_dir)
    assert not merging.load_in_4bit and not merging.load_in_8bit
    target = merge_lora(cfg)
    assert "quantization_config" not in json.loads((target / "config.json").read_text())
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(target)), expected, rtol=0, atol=1e-5)


@pytest.mark.skipif(not HAS_BNB, reason="training on a real 4-bit base needs bitsandbytes (0.50.2's CPU backend "
                                        "does 4-bit); install the `qlora` extra")
def test_adapter_trained_on_a_4bit_base_merges(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Train two steps on the 4-bit base (bitsandbytes' CPU backend), merge into the unquantised
    base, compare with the same adapter applied unmerged to the unquantised base."""
    from peft import PeftModel

    from axolotl.models.model import load_model
    from axolotl.models.tokenizer import load_tokenizer

    cfg = _qlora_cfg(tiny_llama_dir, tmp_path / "out")
    quantised = load_model(cfg, load_tokenizer(cfg))
    assert quantised.is_loaded_in_4bit
    base_logits = _logits(AutoModelForCausalLM.from_pretrained(tiny_llama_dir))
    rounding = (_logits(quantised) - base_logits).abs().max()  # what 4-bit storage does to the outputs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        peft_model = apply_adapter(cfg, quantised)
    optimizer = torch.optim.SGD([p for p in peft_model.parameters() if p.requires_grad], lr=0.1)
    peft_model.train()
    batch = INPUT_IDS.to(quantised.device)  # bitsandbytes places a 4-bit base on the GPU when there is one
    for _ in range(2):
        optimizer.zero_grad()
        peft_model(input_ids=batch, labels=batch).loss.backward()
        optimizer.step()
    peft_model.save_pretrained(tmp_path / "out")
    quantised_logits = _logits(peft_model.eval())

    unmerged = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_llama_dir), tmp_path / "out")
    expected = _logits(unmerged.eval())
    merged = _logits(AutoModelForCausalLM.from_pretrained(merge_lora(cfg)))
    torch.testing.assert_close(merged, expected, rtol=0, atol=1e-5)
    # The adapter moves the outputs far more than 4-bit rounding does (measured ~9x), and what the
    # 4-bit model computed differs from the merged model by about that rounding (measured 0.4-1.2x).
    assert (merged - base_logits).abs().max() > 3 * rounding
    assert (merged - quantised_logits).abs().max() < 2 * rounding


# which adapter


def _stub_adapter(directory: Path, **saved: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, **saved}))
    return directory


def test_adapter_dir_precedence(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """--lora-model-dir, else the config's lora_model_dir, else output_dir."""
    output, from_config, from_flag = (_stub_adapter(tmp_path / name) for name in ("out", "cfg_dir", "flag_dir"))
    plan = plan_merge(_cfg(tiny_llama_dir, output))
    assert (plan.adapter_dir, plan.adapter_source, plan.target) == (output, "output_dir", output / "merged")
    cfg = _cfg(tiny_llama_dir, output, lora_model_dir=str(from_config))
    plan = plan_merge(cfg)
    assert (plan.adapter_dir, plan.adapter_source) == (from_config, "lora_model_dir")
    assert any(f"--lora-model-dir {output}" in note for note in plan.notes)  # the other adapter is pointed out
    plan = plan_merge(cfg, lora_model_dir=str(from_flag))
    assert (plan.adapter_dir, plan.adapter_source, plan.target) == (from_flag, "--lora-model-dir", output / "merged")
    assert plan.notes == ()


def test_a_different_named_base_is_a_note(tiny_llama_dir: Path, tmp_path: Path) -> None:
    _stub_adapter(tmp_path / "out", base_model_name_or_path="org/some-other-model")
    plan = plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"))
    assert any("org/some-other-model" in note for note in plan.notes)


# refusals before any weight is loaded


def test_missing_adapter_dir_names_the_path(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'nowhere'} \(from --lora-model-dir\) does not exist"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"), lora_model_dir=str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'out'} \(from output_dir\)"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"))


def test_a_full_model_or_other_folder_is_not_an_adapter(tiny_llama_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=rf"{tiny_llama_dir} \(from --lora-model-dir\) holds a full model"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"), lora_model_dir=str(tiny_llama_dir))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match=rf"{tmp_path / 'out'} \(from output_dir\) is not a LoRA adapter"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"))


def test_unmergeable_adapters_are_refused(tiny_llama_dir: Path, tmp_path: Path) -> None:
    _stub_adapter(tmp_path / "ia3", peft_type="IA3")
    with pytest.raises(ValueError, match=r"ia3 holds a IA3 adapter; only LoRA"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"), lora_model_dir=str(tmp_path / "ia3"))
    _stub_adapter(tmp_path / "replicated", layer_replication=[[0, 2], [1, 2]])
    with pytest.raises(NotImplementedError, match="peft_layer_replication.*not supported yet"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"), lora_model_dir=str(tmp_path / "replicated"))


def test_the_target_must_not_be_an_input(tiny_llama_dir: Path, tmp_path: Path) -> None:
    adapter = _stub_adapter(tmp_path / "out" / "merged")
    with pytest.raises(ValueError, match="holds the input"):
        plan_merge(_cfg(tiny_llama_dir, tmp_path / "out"), lora_model_dir=str(adapter))


def test_adapter_from_another_base_is_refused_with_its_path(tiny_llama_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other_base"
    AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(tiny_llama_dir, hidden_size=32,
                                                                intermediate_size=64)).save_pretrained(other)
    AutoTokenizer.from_pretrained(tiny_llama_dir).save_pretrained(other)
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_linear=True)
    _train_adapter(_cfg(other, tmp_path / "out", lora_target_linear=True), other, tmp_path / "out")
    with pytest.raises(ValueError, match=rf"adapter in {tmp_path / 'out'} was not trained on this base model"):
        merge_lora(cfg)
    assert not (tmp_path / "out" / "merged").exists()


# overwriting and atomicity


def test_existing_different_model_needs_force(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_linear=True)
    first = _train_adapter(cfg, tiny_llama_dir, tmp_path / "out", seed=0)
    target = merge_lora(cfg)
    merge_lora(cfg)  # the same merge again may replace its own output
    second = _train_adapter(cfg, tiny_llama_dir, tmp_path / "out", seed=1)
    with pytest.raises(FileExistsError, match=rf"{target} already holds a model merged from a different adapter"):
        plan_merge(cfg)
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(target)), first, rtol=0, atol=1e-5)
    merge_lora(cfg, force=True)
    torch.testing.assert_close(_logits(AutoModelForCausalLM.from_pretrained(target)), second, rtol=0, atol=1e-5)


def test_unknown_files_in_the_target_need_force(tiny_llama_dir: Path, tmp_path: Path) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_modules=["q_proj"])
    _train_adapter(cfg, tiny_llama_dir, tmp_path / "out")
    (tmp_path / "out" / "merged").mkdir()
    (tmp_path / "out" / "merged" / "model.safetensors").write_bytes(b"somebody's model")
    with pytest.raises(FileExistsError, match="already holds other files; pass --force"):
        plan_merge(cfg)
    (tmp_path / "out" / "merged" / "model.safetensors").unlink()
    plan_merge(cfg)  # an empty folder is fine


def test_a_failed_save_leaves_the_previous_model_untouched(tiny_llama_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_modules=["q_proj"])
    _train_adapter(cfg, tiny_llama_dir, tmp_path / "out", seed=0)
    target = merge_lora(cfg)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    _train_adapter(cfg, tiny_llama_dir, tmp_path / "out", seed=1)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", disk_full)
    with pytest.raises(OSError, match="No space left"):
        merge_lora(cfg, force=True)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert sorted(p.name for p in target.parent.iterdir() if p.name.startswith(".merged")) == []


def test_a_failed_first_save_leaves_nothing(tiny_llama_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _cfg(tiny_llama_dir, tmp_path / "out", lora_target_modules=["q_proj"])
    _train_adapter(cfg, tiny_llama_dir, tmp_path / "out")
    model, tokenizer = load_merged(cfg, tmp_path / "out")

    def broken_save(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("interrupted")

    monkeypatch.setattr(merge, "load_merged", lambda *args: (model, tokenizer))
    monkeypatch.setattr(model, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="interrupted"):
        merge_lora(cfg)
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if "merged" in p.name) == []


# devices


def test_cpu_placement(tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert placement(_cfg(tiny_llama_dir, tmp_path, gpu_memory_limit=20)) == ({"": "cpu"}, None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert placement(_cfg(tiny_llama_dir, tmp_path, lora_on_cpu=True)) == ({"": "cpu"}, None)
    assert placement(_cfg(tiny_llama_dir, tmp_path))[0] == "auto"


def test_gpu_memory_limit_caps_every_gpu(tiny_llama_dir: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import accelerate.utils

    available = {0: 80 * 2**30, 1: 80 * 2**30, "cpu": 500 * 2**30}
    assert memory_limits(20, available, None) == {0: "20GiB", 1: "20GiB", "cpu": 500 * 2**30}
    assert memory_limits("12000MiB", available, {"cpu": "64GiB"}) == {0: "12000MiB", 1: "12000MiB", "cpu": "64GiB"}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(accelerate.utils, "get_max_memory", lambda: dict(available))
    device_map, max_memory = placement(_cfg(tiny_llama_dir, tmp_path, gpu_memory_limit="10GiB"))
    assert device_map == "auto" and max_memory == {0: "10GiB", 1: "10GiB", "cpu": 500 * 2**30}


def test_merge_config_drops_what_only_training_needs(tiny_llama_dir: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _cfg(tiny_llama_dir, tmp_path, gradient_checkpointing=True, sample_packing=True,
               flash_attention=True, gpu_memory_limit=20, lora_on_cpu=True, unfrozen_parameters=["lm_head"])
    _stub_adapter(tmp_path / "adapter")
    merging = merge_config(cfg, tmp_path / "adapter")
    assert not merging.gradient_checkpointing and not merging.sample_packing
    assert merging.attn_implementation is None and merging.gpu_memory_limit is None
    assert merging.unfrozen_parameters is None and merging.device_map == {"": "cpu"}
    assert merging.tokenizer_config is None  # no tokenizer saved beside this adapter: the config's
    assert cfg.gradient_checkpointing  # the caller's config is untouched
