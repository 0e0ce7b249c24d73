"""The plugin interface: loading by import path (built-in and users' own), the keys a plugin
adds, its config rules, and the refusals of the Liger and Cut Cross Entropy plugins where they
cannot run (on this CPU machine: no kernels package, no CUDA)."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from axolotl.config.schema.integrations import PLUGIN_ARGS
from axolotl.integrations.base import PluginError, overridden_hooks
from axolotl.integrations.cut_cross_entropy import CutCrossEntropyPlugin
from axolotl.integrations.liger import LigerPlugin
from axolotl.integrations.loading import check_plugins, import_plugin, plugin_loss
from axolotl.testing.configs import config_error, load

BASE = "base_model: m\nlearning_rate: 1.0e-4\ndatasets: [{path: d.jsonl, type: alpaca}]\n"
LIGER = "axolotl.integrations.liger.LigerPlugin"
CCE = "axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin"
REFERENCE_LIGER_BLOCK = f"""plugins:
  - {LIGER}
liger_rope: true
liger_rms_norm: true
liger_glu_activation: true
liger_layer_norm: true
liger_fused_linear_cross_entropy: true
"""
"""The block of the reference's docs (custom_integrations.md), verbatim."""


def test_the_reference_liger_block_parses_unchanged() -> None:
    loaded = load(BASE + REFERENCE_LIGER_BLOCK)
    assert loaded.warnings == []
    cfg = loaded.cfg
    assert cfg.plugins == [LIGER]
    assert (cfg.liger_rope, cfg.liger_rms_norm, cfg.liger_glu_activation, cfg.liger_layer_norm,
            cfg.liger_fused_linear_cross_entropy) == (True,) * 5


def test_the_reference_cce_block_parses_and_turns_cce_on() -> None:
    cfg = load(BASE + f"plugins:\n  - {CCE}\n").cfg
    assert plugin_loss(cfg) is not None
    off = load(BASE + f"plugins:\n  - {CCE}\ncut_cross_entropy: false\n").cfg
    assert plugin_loss(off) is None


def test_liger_keys_need_the_plugin() -> None:
    error = config_error(BASE + "liger_rms_norm: true\n")
    assert f"this key belongs to the plugin `{LIGER}`" in str(error)


def test_a_listed_plugin_that_does_nothing_is_a_warning() -> None:
    warnings = load(BASE + f"plugins: [{LIGER}]\nliger_rms_norm: false\n").warnings
    assert [w.path for w in warnings] == [("plugins",)] and "changes nothing" in warnings[0].message


@pytest.mark.parametrize(("keys", "message"), [
    ("liger_fused_linear_cross_entropy: true\nchunked_cross_entropy: true\n", "`chunked_cross_entropy`: both replace"),
    ("liger_cross_entropy: true\nchunked_cross_entropy: true\n", "`chunked_cross_entropy`: both replace"),
    ("liger_fused_linear_cross_entropy: true\nliger_cross_entropy: true\n", "already computes the cross-entropy"),
    ("liger_glu_activation: true\nadapter: lora\nlora_target_linear: true\nlora_mlp_kernel: true\n",
     "both replace the MLP"),
    ("liger_fused_linear_cross_entropy: true\nadapter: lora\nlora_target_modules: [q_proj, lm_head]\n",
     "LoRA adapter on the output head"),
    ("liger_rms_norm: true\nliger_use_token_scaling: true\n", "`liger_use_token_scaling` is not supported yet"),
    ("liger_rms_norm: true\nliger_kernel_impl: cutile\n", "`liger_kernel_impl` is not supported yet"),
])
def test_liger_config_rules(keys: str, message: str) -> None:
    assert message in str(config_error(BASE + f"plugins: [{LIGER}]\n" + keys))


@pytest.mark.parametrize(("keys", "message"), [
    ("chunked_cross_entropy: true\n", "and `chunked_cross_entropy` both replace the loss"),
    (f"  - {LIGER}\nliger_fused_linear_cross_entropy: true\n", "and `liger_fused_linear_cross_entropy` both replace"),
    ("cut_cross_entropy_accum_c_fp32: true\n", "`cut_cross_entropy_accum_c_fp32` is not supported yet"),
])
def test_cce_config_rules(keys: str, message: str) -> None:
    assert message in str(config_error(BASE + f"plugins:\n  - {CCE}\n" + keys))


@pytest.mark.skipif(importlib.util.find_spec("liger_kernel") is not None, reason="checks the message when absent")
def test_liger_without_its_package_says_what_to_install() -> None:
    with pytest.raises(PluginError, match=r"needs liger_kernel.*pip install 'axolotl\[liger\]'"):
        check_plugins(load(BASE + REFERENCE_LIGER_BLOCK).cfg)


@pytest.mark.skipif(importlib.util.find_spec("cut_cross_entropy") is not None, reason="checks the message when absent")
def test_cce_without_its_package_says_what_to_install() -> None:
    with pytest.raises(PluginError, match=r"needs cut_cross_entropy.*pip install 'axolotl\[cce\]'"):
        check_plugins(load(BASE + f"plugins: [{CCE}]\n").cfg)


@pytest.mark.parametrize("block", [REFERENCE_LIGER_BLOCK, f"plugins: [{CCE}]\n"])
def test_kernel_plugins_are_refused_without_cuda(monkeypatch: pytest.MonkeyPatch, block: str) -> None:
    """With the packages installed (simulated) but no GPU: refused, not silently skipped."""
    import torch

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(PluginError, match="need a CUDA GPU; none is visible here"):
        check_plugins(load(BASE + block).cfg)


def test_model_changing_plugins_are_refused_for_other_methods() -> None:
    cfg = load(BASE.replace("type: alpaca", "type: chatml.intel") + "rl: dpo\n" + REFERENCE_LIGER_BLOCK).cfg
    with pytest.raises(PluginError, match="not supported yet with `dpo`"):
        check_plugins(cfg)


def test_keys_only_plugins_have_no_runtime_hooks() -> None:
    assert overridden_hooks(import_plugin("axolotl.integrations.lm_eval.LMEvalPlugin")) == []
    assert overridden_hooks(LigerPlugin) == ["preflight", "post_model_load"]
    assert overridden_hooks(CutCrossEntropyPlugin) == ["preflight", "linear_cross_entropy"]


# users' own plugins


def _write_plugin(directory: Path, module: str, body: str) -> None:
    (directory / f"{module}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A working directory that is not on sys.path (as under the `axolotl` console script); the
    keys the test's plugins register are removed afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    registered = dict(PLUGIN_ARGS)
    yield tmp_path
    PLUGIN_ARGS.clear()
    PLUGIN_ARGS.update(registered)


CUSTOM = """
    from axolotl.config.schema.base import ConfigModel
    from axolotl.integrations.base import Plugin


    class ScaleArgs(ConfigModel):
        my_scale: float | None = None


    class ScalePlugin(Plugin):
        args = ScaleArgs

        def check_config(self, cfg):
            from axolotl.config.errors import ConfigIssue
            return [ConfigIssue(("my_scale",), "must be positive")] if (cfg.my_scale or 0) < 0 else []


    class NotAPlugin:
        pass
"""


def test_a_custom_plugin_is_imported_from_the_working_directory_with_its_keys(workdir: Path) -> None:
    _write_plugin(workdir, "scale_plugin_a", CUSTOM)
    cfg = load(BASE + "plugins: [scale_plugin_a.ScalePlugin]\nmy_scale: 2.5\n").cfg
    assert cfg.my_scale == 2.5
    assert "must be positive" in str(config_error(BASE + "plugins: [scale_plugin_a.ScalePlugin]\nmy_scale: -1\n"))


@pytest.mark.parametrize(("name", "message"), [
    ("scale_plugin_b.NotAPlugin", "is not a subclass of axolotl.integrations.base.Plugin"),
    ("scale_plugin_b.Missing", "module `scale_plugin_b` has no `Missing`"),
    ("no_such_module.Plugin", "no module `no_such_module` is installed or in the working directory"),
    ("NoDots", "is not an import path"),
])
def test_custom_plugin_errors_say_what_is_wrong(workdir: Path, name: str, message: str) -> None:
    _write_plugin(workdir, "scale_plugin_b", CUSTOM)
    assert message in str(config_error(BASE + f"plugins: [{name}]\n"))


def test_a_plugin_may_not_redefine_core_keys(workdir: Path) -> None:
    _write_plugin(workdir, "clash_plugin", """
        from axolotl.config.schema.base import ConfigModel
        from axolotl.integrations.base import Plugin

        class Args(ConfigModel):
            learning_rate: float | None = None

        class ClashPlugin(Plugin):
            args = Args
    """)
    assert "declares keys that already exist in the config: learning_rate" in str(
        config_error(BASE + "plugins: [clash_plugin.ClashPlugin]\n"))


def test_a_plugin_module_that_raises_is_reported(workdir: Path) -> None:
    _write_plugin(workdir, "broken_plugin", "raise RuntimeError('boom')\n")
    assert "RuntimeError: boom" in str(config_error(BASE + "plugins: [broken_plugin.Broken]\n"))


def test_cut_cross_entropy_can_read_the_matmul_precision_after_the_new_api() -> None:
    """cut-cross-entropy reads the legacy getter, which raises once the per-backend API was used."""
    import torch

    from axolotl.integrations.cut_cross_entropy import _restore_legacy_matmul_precision

    before = torch.backends.cuda.matmul.fp32_precision
    try:
        torch.backends.cuda.matmul.fp32_precision = "tf32"
        _restore_legacy_matmul_precision()
        assert torch.get_float32_matmul_precision() == "high"
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"
    finally:
        torch.set_float32_matmul_precision("highest")
        torch.backends.cuda.matmul.fp32_precision = before
