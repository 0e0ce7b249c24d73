"""Kernel options through `train()` on CPU: the LoRA kernels, tiled MLP and a user's plugin that
replaces the loss train exactly like the stock run (fp32: per-step losses within relative 1e-5,
final weights within 1e-5), and the GPU-only plugins are refused before any data is prepared."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from axolotl.training.args import TrainingConfigError
from axolotl.training.sft import train

from .test_train_e2e import make_cfg, state_dict

STEPS = "max_steps: 3\nmicro_batch_size: 2\ngradient_accumulation_steps: 2\nlogging_steps: 1\nsample_packing: true\n"
LORA = "adapter: lora\nlora_r: 4\nlora_alpha: 8\nlora_target_linear: true\n"
KERNELS = "lora_mlp_kernel: true\nlora_qkv_kernel: true\nlora_o_kernel: true\n"


def _run(model_dir: Path, tmp: Path, name: str, extra: str) -> tuple[list[float], dict[str, torch.Tensor]]:
    cfg = make_cfg(model_dir, tmp, name, rows=16, extra=STEPS + extra)
    result = train(cfg)
    out = Path(cfg.output_dir)
    weights = load_file(str(out / "adapter_model.safetensors")) if cfg.adapter else state_dict(out)
    return result.losses, weights


def _same(got: tuple[list[float], dict[str, torch.Tensor]], want: tuple[list[float], dict[str, torch.Tensor]]) -> None:
    assert len(got[0]) == len(want[0]) == 3
    assert got[0] == pytest.approx(want[0], rel=1e-5)
    assert set(got[1]) == set(want[1])
    for name, tensor in want[1].items():
        torch.testing.assert_close(got[1][name], tensor, atol=1e-5, rtol=0, msg=name)


@pytest.mark.parametrize("fixture", ["tiny_llama_dir", "tiny_qwen2_dir"])
def test_lora_kernels_train_like_peft(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    model_dir = request.getfixturevalue(fixture)
    _same(_run(model_dir, tmp_path, "kernels", LORA + KERNELS), _run(model_dir, tmp_path, "stock", LORA))


def test_lora_kernels_with_checkpointing_and_tiled_mlp(tiny_llama_dir: Path, tmp_path: Path) -> None:
    extra = LORA + "gradient_checkpointing: true\n"
    _same(_run(tiny_llama_dir, tmp_path, "all", extra + KERNELS + "tiled_mlp: true\ntiled_mlp_num_shards: 3\n"),
          _run(tiny_llama_dir, tmp_path, "stock", extra))


def test_lora_kernels_compiled(tiny_llama_dir: Path, tmp_path: Path) -> None:
    """Per-layer torch.compile traces the fused autograd functions (`aot_eager`: no C++ compiler needed)."""
    compiled = "torch_compile: true\ntorch_compile_backend: aot_eager\n"
    _same(_run(tiny_llama_dir, tmp_path, "compiled", LORA + KERNELS + compiled),
          _run(tiny_llama_dir, tmp_path, "stock", LORA))


def test_tiled_mlp_full_finetune(tiny_llama_dir: Path, tmp_path: Path) -> None:
    _same(_run(tiny_llama_dir, tmp_path, "tiled", "tiled_mlp: true\ntiled_mlp_num_shards: 4\n"),
          _run(tiny_llama_dir, tmp_path, "stock", ""))


USER_PLUGIN = """
    from axolotl.integrations.base import Plugin
    from axolotl.kernels.chunked_ce import linear_cross_entropy_reference
    from transformers import TrainerCallback

    EVENTS = []


    class Steps(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            EVENTS.append("step")


    class RecordingPlugin(Plugin):
        def preflight(self, cfg):
            EVENTS.append("preflight")

        def pre_model_load(self, cfg):
            EVENTS.append("pre_model_load")

        def post_model_load(self, cfg, model):
            EVENTS.append("post_model_load:" + type(model).__name__)

        def linear_cross_entropy(self, cfg):
            def loss(hidden, weight, labels):
                EVENTS.append("loss")
                return linear_cross_entropy_reference(hidden, weight, labels)
            return loss

        def callbacks(self, cfg):
            return [Steps()]
"""


def test_a_users_plugin_runs_its_hooks_and_its_loss(tiny_llama_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "recording_plugin.py").write_text(textwrap.dedent(USER_PLUGIN))
    monkeypatch.chdir(work)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(work))])
    with_plugin = _run(tiny_llama_dir, tmp_path, "plugin", "plugins: [recording_plugin.RecordingPlugin]\n")
    events = sys.modules["recording_plugin"].EVENTS
    assert events[:3] == ["preflight", "pre_model_load", "post_model_load:LlamaForCausalLM"]
    assert events.count("step") == 3 and events.count("loss") == 3 * 2  # 2 micro-batches per step
    _same(with_plugin, _run(tiny_llama_dir, tmp_path, "stock", ""))


def test_the_reference_liger_block_is_refused_on_cpu_before_data(tiny_llama_dir: Path, tmp_path: Path) -> None:
    block = ("plugins: [axolotl.integrations.liger.LigerPlugin]\nliger_rope: true\nliger_rms_norm: true\n"
             "liger_glu_activation: true\nliger_layer_norm: true\nliger_fused_linear_cross_entropy: true\n")
    cfg = make_cfg(tiny_llama_dir, tmp_path, "liger", extra=STEPS + block)
    with pytest.raises(TrainingConfigError, match="LigerPlugin"):
        train(cfg)
    assert not (tmp_path / "prep-liger").exists()
