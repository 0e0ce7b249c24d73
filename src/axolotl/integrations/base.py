"""The plugin interface: what a plugin listed under `plugins:` may change in a run, and when.

A plugin is a class named in the config by its import path (`package.module.ClassName`). Every
hook has a default that does nothing, so a plugin overrides only what it needs. The hooks are
the points where the reference's integrations (Liger, Cut Cross Entropy) and users' own plugins
actually change a run; each is called at one fixed place:

| hook               | called by                          | why it exists                                  |
|--------------------|------------------------------------|------------------------------------------------|
| `args`             | the config loader                  | a plugin's keys are validated like core keys   |
| `check_config`     | the config loader, after the rules | conflicts are reported with file and line      |
| `preflight`        | `axolotl train` before any loading | missing packages / no GPU fail in a second     |
| `pre_model_load`   | SFT training, before the weights   | patch a model class before it is instantiated  |
| `post_model_load`  | SFT training, before the adapter   | patch the loaded instance (kernels, forwards)  |
| `linear_cross_entropy` | the trainer's loss             | replace the logits + cross-entropy computation |
| `callbacks`        | the trainer                        | observe or steer the loop without subclassing  |

Hooks run in the order the plugins are listed. Plugins apply to SFT training (`axolotl train`
without `rl:` or a reward head); a plugin that overrides any runtime hook is refused for the
other methods instead of being silently skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, TrainerCallback

    from axolotl.config.errors import ConfigIssue
    from axolotl.config.schema import AxolotlConfig
    from axolotl.config.schema.base import ConfigModel

LinearCrossEntropy = Callable[["torch.Tensor", "torch.Tensor", "torch.Tensor"], "torch.Tensor"]
"""(hidden (tokens, dim), output weight (vocab, dim), labels (tokens,), -100 ignored) -> the fp32
sum of the token losses. The trainer shifts the labels and divides by the supervised-token count."""

RUNTIME_HOOKS = ("preflight", "pre_model_load", "post_model_load", "linear_cross_entropy", "callbacks")
"""Hooks that change or observe a training run (`args` and `check_config` only touch the config)."""


class PluginError(ValueError):
    """A plugin cannot run here (package missing, no GPU, unsupported architecture). A ValueError,
    so the CLI reports it as a problem of the config/setup rather than a crash."""


class Plugin:
    """Base class of plugins; subclass it and override only the hooks you need.

    Instances are created with no arguments each time a run needs them and hold no state
    between hooks, so the hooks must read everything they need from the config or the model.
    """

    args: ClassVar[type[ConfigModel] | None] = None
    """The keys this plugin adds to the config (a `ConfigModel` subclass), valid only while the
    plugin is listed under `plugins:`. Keys that clash with core keys are refused."""

    def check_config(self, cfg: AxolotlConfig) -> list[ConfigIssue]:
        """Conflicts among the run's keys that only this plugin knows about; reported together
        with every other config problem, located at the offending key."""
        return []

    def preflight(self, cfg: AxolotlConfig) -> None:
        """Raise `PluginError` when this machine cannot run the plugin (a package or the GPU is
        missing, the architecture is not supported); called before data or weights load."""

    def pre_model_load(self, cfg: AxolotlConfig) -> None:
        """Called right before the model is instantiated."""

    def post_model_load(self, cfg: AxolotlConfig, model: PreTrainedModel) -> None:
        """Called with the loaded model (in place), before the LoRA adapter is applied, so
        replaced modules are wrapped by the adapter like the originals."""

    def linear_cross_entropy(self, cfg: AxolotlConfig) -> LinearCrossEntropy | None:
        """A loss that takes the decoder's hidden states and the output projection instead of
        logits (so full-vocabulary logits never exist), or None to keep the model's own loss."""
        return None

    def callbacks(self, cfg: AxolotlConfig) -> list[TrainerCallback]:
        """Trainer callbacks to add to the run."""
        return []


def overridden_hooks(plugin: type[Plugin]) -> list[str]:
    """The runtime hooks `plugin` overrides (used to refuse it where hooks would not run)."""
    return [name for name in RUNTIME_HOOKS if getattr(plugin, name) is not getattr(Plugin, name)]


def describe(plugin: type[Any]) -> str:
    return f"{plugin.__module__}.{plugin.__qualname__}"
