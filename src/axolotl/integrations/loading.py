"""Finding the plugins a config lists, and running their hooks at the fixed points of a run.

A plugin is named by its import path, `package.module.ClassName`, exactly as in the reference
(`axolotl.integrations.liger.LigerPlugin`). Users' own plugins are imported the same way: from
the installed packages, or else from the working directory (the console script `axolotl` does
not put the working directory on `sys.path`, unlike `python -m`).
"""

from __future__ import annotations

import functools
import importlib
import os
import sys
from typing import TYPE_CHECKING

from axolotl.config.errors import ConfigIssue
from axolotl.config.schema.integrations import PLUGIN_ARGS
from axolotl.config.support import UNSUPPORTED_PLUGINS
from axolotl.integrations.base import LinearCrossEntropy, Plugin, PluginError, overridden_hooks

if TYPE_CHECKING:
    from transformers import PreTrainedModel, TrainerCallback

    from axolotl.config.schema import AxolotlConfig

SFT_ONLY_NOTE = ("plugins that change the model or the loss run in SFT training only so far (`axolotl train` "
                 "without `rl:`, `reward_model` or `process_reward_model`)")


@functools.cache
def import_plugin(name: str) -> type[Plugin]:
    """The plugin class at `name`, or a `PluginError` saying what is wrong with the path."""
    module_name, _, class_name = name.rpartition(".")
    if not module_name or not class_name:
        raise PluginError(f"plugin `{name}` is not an import path; write it as `package.module.ClassName`")
    module = _import_module(module_name, name)
    cls = getattr(module, class_name, None)
    if cls is None:
        raise PluginError(f"plugin `{name}`: module `{module_name}` has no `{class_name}`")
    if not (isinstance(cls, type) and issubclass(cls, Plugin)):
        raise PluginError(f"plugin `{name}` is not a subclass of axolotl.integrations.base.Plugin; "
                          "subclass it and override the hooks you need (docs/kernels.md)")
    return cls


def _import_module(module_name: str, name: str) -> object:
    cwd = os.getcwd()
    try:
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if not _is_missing(error, module_name) or cwd in sys.path:
                raise
        sys.path.append(cwd)  # kept when it works: the plugin may import its own modules later
        try:
            return importlib.import_module(module_name)
        except BaseException:
            sys.path.remove(cwd)
            raise
    except ModuleNotFoundError as error:
        if _is_missing(error, module_name):
            raise PluginError(f"plugin `{name}`: no module `{module_name}` is installed or in the working directory "
                              f"{cwd} ({error}); install the package that provides it or run from the directory "
                              "that holds it") from error
        raise PluginError(f"plugin `{name}`: importing `{module_name}` failed: {error}") from error
    except Exception as error:  # a user's module can fail in any way; report which
        raise PluginError(f"plugin `{name}`: importing `{module_name}` failed: "
                          f"{type(error).__name__}: {error}") from error


def _is_missing(error: ModuleNotFoundError, module_name: str) -> bool:
    """The plugin's own module (or a parent package) is missing, not something it imports."""
    return error.name is not None and (module_name == error.name or module_name.startswith(error.name + "."))


def register_custom_plugin(name: str) -> str | None:
    """Import a plugin the config layer does not know, and register its keys; returns why it
    cannot be used, or None. Called by the config loader for every unknown `plugins:` entry."""
    try:
        cls = import_plugin(name)
    except PluginError as error:
        if name.startswith("axolotl.integrations."):
            available = ", ".join(sorted(n for n in PLUGIN_ARGS if n not in UNSUPPORTED_PLUGINS))
            return f"`{name}` (a plugin of the reference Axolotl) is not supported yet; available: {available}"
        return str(error)
    if cls.args is not None:
        from axolotl.config.schema import AxolotlConfig

        clashes = sorted(set(cls.args.model_fields) & set(AxolotlConfig.model_fields))
        if clashes:
            return f"plugin `{name}` declares keys that already exist in the config: {', '.join(clashes)}; rename them"
        PLUGIN_ARGS[name] = cls.args
    return None


def plugin_classes(names: list[str] | None) -> list[tuple[str, type[Plugin]]]:
    """The classes of the listed plugins (refused built-ins are skipped: the config refuses them)."""
    return [(name, import_plugin(name)) for name in names or [] if name not in UNSUPPORTED_PLUGINS]


def load_plugins(cfg: AxolotlConfig) -> list[Plugin]:
    """Fresh instances of the plugins `cfg` lists, in order."""
    return [cls() for _, cls in plugin_classes(cfg.plugins)]


def plugin_config_issues(cfg: AxolotlConfig) -> list[ConfigIssue]:
    """Every listed plugin's `check_config`; a plugin that fails to import was reported already."""
    issues: list[ConfigIssue] = []
    for name in cfg.plugins or []:
        if name in UNSUPPORTED_PLUGINS:
            continue
        try:
            plugin = import_plugin(name)()
        except PluginError:
            continue
        issues.extend(plugin.check_config(cfg))
    return issues


def check_plugins(cfg: AxolotlConfig) -> None:
    """Before anything loads: refuse hooks that the run's method would skip, then each plugin's
    own `preflight` (packages, GPU, architecture)."""
    method = cfg.rl or ("reward_model" if cfg.reward_model else
                        "process_reward_model" if cfg.process_reward_model else None)
    for name, cls in plugin_classes(cfg.plugins):
        hooks = overridden_hooks(cls)
        if method and hooks:
            raise PluginError(f"plugin `{name}` is not supported yet with `{method}`: {SFT_ONLY_NOTE}; "
                              "remove it from `plugins:`")
        cls().preflight(cfg)


def before_model_load(cfg: AxolotlConfig, plugins: list[Plugin]) -> None:
    for plugin in plugins:
        plugin.pre_model_load(cfg)


def after_model_load(cfg: AxolotlConfig, plugins: list[Plugin], model: PreTrainedModel) -> None:
    for plugin in plugins:
        plugin.post_model_load(cfg, model)


def plugin_loss(cfg: AxolotlConfig) -> tuple[str, LinearCrossEntropy] | None:
    """(plugin name, loss) of the plugin that replaces the loss; two such plugins are refused."""
    found = [(name, loss) for name, cls in plugin_classes(cfg.plugins)
             if (loss := cls().linear_cross_entropy(cfg)) is not None]
    if len(found) > 1:
        raise PluginError(f"plugins {found[0][0]} and {found[1][0]} both replace the loss; keep one")
    return found[0] if found else None


def plugin_callbacks(cfg: AxolotlConfig) -> list[TrainerCallback]:
    return [callback for plugin in load_plugins(cfg) for callback in plugin.callbacks(cfg)]
