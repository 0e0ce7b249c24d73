"""How the Liger plugin calls liger-kernel: every switch explicit (false unless its key is true),
the GLU key mapped to the architecture's swiglu/geglu switch, and errors for kernels or
architectures Liger does not have. liger-kernel needs triton and CUDA, so here its
`MODEL_TYPE_TO_APPLY_LIGER_FN` is replaced by recorders with the signatures of liger 0.8.5;
tests/integrations/test_liger_gpu.py runs the real kernels."""

from __future__ import annotations

import inspect
import logging
import sys
import types
from typing import Any

import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM

from axolotl.integrations.base import PluginError
from axolotl.integrations.liger import LIGER_ARCHITECTURES, LigerPlugin
from axolotl.testing.configs import load

CALLS: list[tuple[str, dict[str, Any]]] = []


def _recorder(name: str, switches: tuple[str, ...]) -> Any:
    """A function with liger's signature: keyword switches defaulting to True, and `model`."""
    def apply(model: Any = None, **kwargs: Any) -> None:
        unknown = set(kwargs) - set(switches)
        assert not unknown, f"liger's {name} has no switch {unknown}"
        CALLS.append((name, kwargs))
    apply.__signature__ = inspect.Signature(
        [inspect.Parameter(s, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=True) for s in switches]
        + [inspect.Parameter("model", inspect.Parameter.POSITIONAL_OR_KEYWORD, default=None)])
    apply.__name__ = name
    return apply


@pytest.fixture
def fake_liger(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, Any]]]:
    llama = ("rope", "cross_entropy", "fused_linear_cross_entropy", "rms_norm", "swiglu")
    gemma = ("rope", "cross_entropy", "fused_linear_cross_entropy", "rms_norm", "geglu")
    mapping = {"llama": _recorder("apply_liger_kernel_to_llama", llama),
               "gemma": _recorder("apply_liger_kernel_to_gemma", gemma),
               "llava": _recorder("apply_liger_kernel_to_llava", ("cross_entropy", "fused_linear_cross_entropy"))}
    for name in ("liger_kernel", "liger_kernel.transformers"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    patch = types.ModuleType("liger_kernel.transformers.monkey_patch")
    patch.MODEL_TYPE_TO_APPLY_LIGER_FN = mapping  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "liger_kernel.transformers.monkey_patch", patch)
    CALLS.clear()
    return CALLS


def _cfg(**keys: Any) -> Any:
    return load(yaml.safe_dump({"base_model": "m", "learning_rate": 1e-4, "datasets": [{"path": "d.jsonl",
                                "type": "alpaca"}], "plugins": ["axolotl.integrations.liger.LigerPlugin"],
                                **keys})).cfg


def _model(kind: str, **overrides: Any) -> Any:
    shape = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, head_dim=8)
    return AutoModelForCausalLM.from_config(AutoConfig.for_model(kind, **{**shape, **overrides}))


def test_only_the_requested_kernels_are_switched_on(fake_liger: list) -> None:
    model = _model("llama")
    LigerPlugin().post_model_load(_cfg(liger_rms_norm=True), model)
    assert fake_liger == [("apply_liger_kernel_to_llama", {"rope": False, "cross_entropy": False,
                                                           "fused_linear_cross_entropy": False, "rms_norm": True,
                                                           "swiglu": False})]


def test_the_reference_block_on_llama(fake_liger: list, caplog: pytest.LogCaptureFixture) -> None:
    """`liger_layer_norm` has nothing to replace in Llama: logged, and the rest applies."""
    cfg = _cfg(liger_rope=True, liger_rms_norm=True, liger_glu_activation=True, liger_layer_norm=True,
               liger_fused_linear_cross_entropy=True)
    with caplog.at_level(logging.WARNING, logger="axolotl.integrations.liger"):
        LigerPlugin().post_model_load(cfg, _model("llama"))
    assert fake_liger[0][1] == {"rope": True, "cross_entropy": False, "fused_linear_cross_entropy": True,
                                "rms_norm": True, "swiglu": True}
    assert "`liger_layer_norm: true` does nothing for llama" in caplog.text


def test_glu_maps_to_geglu_where_the_architecture_has_it(fake_liger: list) -> None:
    LigerPlugin().post_model_load(_cfg(liger_glu_activation=True), _model("gemma"))
    assert fake_liger[0][1]["geglu"] is True and "swiglu" not in fake_liger[0][1]


def test_a_kernel_the_architecture_lacks_is_an_error(fake_liger: list) -> None:
    model = types.SimpleNamespace(config=types.SimpleNamespace(model_type="llava"), modules=list)
    with pytest.raises(PluginError, match="`liger_rope`: Liger has no rope kernel for `llava`"):
        LigerPlugin().post_model_load(_cfg(liger_rope=True), model)
    assert fake_liger == []


def test_an_unsupported_architecture_is_an_error() -> None:
    """Checked before liger-kernel is imported, so this runs without it."""
    model = _model("gpt2", n_embd=32, n_layer=1, n_head=2)
    with pytest.raises(PluginError, match="Liger has no kernels for the architecture `gpt2`; supported: .*llama"):
        LigerPlugin().post_model_load(_cfg(liger_rms_norm=True), model)


def test_the_registry_lists_the_reference_docs_models() -> None:
    """Every model the reference's docs list for Liger (custom_integrations.md) except jamba, which
    liger-kernel 0.8.5 no longer patches."""
    documented = {"deepseek_v2", "gemma", "gemma2", "gemma3", "granite", "llama", "mistral", "mixtral", "mllama",
                  "mllama_text_model", "olmo2", "paligemma", "phi3", "qwen2", "qwen2_5_vl", "qwen2_vl"}
    assert documented <= set(LIGER_ARCHITECTURES)
    assert all(kernels for kernels in LIGER_ARCHITECTURES.values())


def test_no_kernel_requested_touches_nothing(fake_liger: list) -> None:
    LigerPlugin().post_model_load(_cfg(), torch.nn.Linear(1, 1))
    assert fake_liger == []
