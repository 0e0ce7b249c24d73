"""`axolotl quantize`: a quantised checkpoint that `axolotl inference` and transformers load, and
clear refusals (exit 1, the key named, no traceback) for what this machine cannot run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from .conftest import cli_env, run_cli

pytest.importorskip("torchao", reason="the `torchao` extra is not installed")


def write_config(tmp_path: Path, model_dir: Path, block: dict | None) -> Path:
    keys = {"base_model": str(model_dir), "learning_rate": 1e-4, "output_dir": str(tmp_path / "out")}
    if block is not None:
        keys["quantization"] = block
    config = tmp_path / "cfg.yml"
    config.write_text(yaml.safe_dump(keys))
    return config


@pytest.mark.slow
def test_quantize_then_chat_with_the_result(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import subprocess

    from .conftest import AXOLOTL_SCRIPT

    config = write_config(tmp_path, tiny_llama_dir, {"weight_dtype": "int4", "activation_dtype": "int8"})
    result = run_cli(["quantize", str(config)], cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    target = (tmp_path / "out" / "quantized").resolve()
    assert f"saved to {target}" in result.stdout
    assert "int8 dynamic activations, int4 weights, groups of 32" in result.stdout
    assert "Traceback" not in result.stderr and "Failed to load" not in result.stderr

    chat = subprocess.run([str(AXOLOTL_SCRIPT), "inference", str(config), "--base-model", str(target),
                           "--max-new-tokens", "4"], input="Hello", capture_output=True, text=True,
                          env=cli_env(), timeout=300)
    assert chat.returncode == 0, chat.stderr

    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(target)
    assert type(model.model.layers[0].mlp.gate_proj.weight).__name__ == "IntxUnpackedToInt8Tensor"


@pytest.mark.parametrize(("block", "message"), [
    ({"weight_dtype": "int4"}, "`quantization`: int4 weight-only (packed, for GPU kernels) needs a CUDA GPU"),
    ({"weight_dtype": "int8", "activation_dtype": "float8"},
     "`quantization.weight_dtype: int8` with `quantization.activation_dtype: float8` is not a supported"),
    (None, "no `quantization:` block"),
])
def test_refusals_exit_1_and_name_the_key(block: dict | None, message: str, tiny_llama_dir: Path,
                                          tmp_path: Path) -> None:
    # the legacy entry point, with the --base_model=... spelling
    result = run_cli([str(write_config(tmp_path, tiny_llama_dir, block)), f"--base_model={tiny_llama_dir}"],
                     module="axolotl.cli.quantize", cwd=tmp_path)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()
