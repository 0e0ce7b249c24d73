"""Importing the user's own Python named in a config by a dotted path (`rewards.accuracy`).

GRPO configs point at dataset transforms, reward functions and rollout functions that live in a
file beside the config (`rewards.py`). Users launch from that folder, or from the repository root
with the config somewhere below it, so both the working directory and the config file's folder
are put on `sys.path` before importing. Errors name the config key and say what to do.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig


class UserCodeError(ImportError):
    """A dotted path in the config does not name an importable callable."""


def search_folders(cfg: AxolotlConfig | None) -> list[Path]:
    """The working directory, then the folder of the config file (when it is a local file)."""
    folders = [Path.cwd()]
    source = getattr(cfg, "axolotl_config_path", None) if cfg is not None else None
    if source and "://" not in str(source):
        folder = Path(str(source)).expanduser().resolve().parent
        if folder.is_dir() and folder not in folders:
            folders.append(folder)
    return folders


def add_search_folders(cfg: AxolotlConfig | None) -> list[str]:
    """Put `search_folders(cfg)` on `sys.path` (once each); returns them as strings, for workers."""
    paths = [str(folder) for folder in search_folders(cfg)]
    for path in reversed(paths):
        if path not in sys.path:
            sys.path.insert(0, path)
    return paths


def import_dotted(dotted: str, key: str, cfg: AxolotlConfig | None = None) -> Any:
    """The callable `module.attr` names; `key` is the config key that holds it (for the message)."""
    module_name, _, attr = dotted.rpartition(".")
    if not module_name or not attr:
        raise UserCodeError(f"`{key}: {dotted}` must be a dotted path `module.function` (e.g. rewards.accuracy)")
    folders = add_search_folders(cfg)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserCodeError(f"`{key}: {dotted}`: cannot import `{module_name}` ({exc}); put `{module_name}.py` "
                            f"in the working directory or beside the config (searched {', '.join(folders)})") from None
    except Exception as exc:
        raise UserCodeError(f"`{key}: {dotted}`: importing `{module_name}` failed: {type(exc).__name__}: {exc}") \
            from exc
    found = getattr(module, attr, None)
    if found is None:
        raise UserCodeError(f"`{key}: {dotted}`: module `{module_name}` ({getattr(module, '__file__', '?')}) has no "
                            f"`{attr}`")
    if not callable(found):
        raise UserCodeError(f"`{key}: {dotted}` is a {type(found).__name__}, not a function")
    return found
