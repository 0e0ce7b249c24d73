"""Plugins listed under `plugins:` by import path: the interface (`base`), how they are found
and called (`loading`), and the built-in ones (`liger`, `cut_cross_entropy`, `lm_eval`)."""

from axolotl.integrations.base import Plugin, PluginError

__all__ = ["Plugin", "PluginError"]
