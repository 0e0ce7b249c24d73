"""What a kernel plugin needs from the machine, checked before anything loads.

Both kernel packages are optional extras and both run Triton kernels on a CUDA GPU. A plugin
that cannot run is refused with the install command or the reason, never skipped: a run
without the kernels trains the same model but needs more memory, which is exactly the
difference the user listed the plugin for.
"""

from __future__ import annotations

import importlib.util

from axolotl.integrations.base import PluginError


def require_packages(plugin: str, packages: dict[str, str]) -> None:
    """`packages`: import name -> the axolotl extra that installs it."""
    missing = {name: extra for name, extra in packages.items() if importlib.util.find_spec(name) is None}
    if missing:
        extras = sorted(set(missing.values()))
        names = " and ".join(sorted(missing))
        verb = "is" if len(missing) == 1 else "are"
        raise PluginError(f"`{plugin}` needs {names}, which {verb} not installed; install with "
                          f"`pip install 'axolotl[{','.join(extras)}]'` (on a machine with a CUDA GPU), or remove "
                          "the plugin from `plugins:`")


def require_cuda(plugin: str, why: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise PluginError(f"`{plugin}`: {why} and need a CUDA GPU; none is visible here. Train on a GPU "
                          "machine, or remove the plugin (the run is then the same, with more memory and time)")
