"""Printing config problems and results the same way in every verb."""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Callable, Iterable, ParamSpec, Sequence, TypeVar

from axolotl.config.errors import ConfigError, ConfigIssue

T = TypeVar("T")
P = ParamSpec("P")

EXIT_NOT_SUPPORTED = 2
"""Exit code of a verb refusing a feature that is not implemented yet (1 is a bad input)."""
EXIT_INTERRUPTED = 130
"""Exit code of a run stopped by Ctrl-C / SIGTERM (the shell's 128 + SIGINT)."""

if TYPE_CHECKING:
    from axolotl.config.loader import LoadedConfig


def print_warnings(warnings: Iterable[ConfigIssue]) -> None:
    for issue in warnings:
        print("warning: " + issue.render(), file=sys.stderr)


def print_config_error(error: ConfigError) -> None:
    print(str(error), file=sys.stderr)


def load_or_report(config: str, overrides: Sequence[str]) -> LoadedConfig | None:
    """Load and check a config (files included), printing problems; None when it is unusable."""
    from axolotl.config.loader import load_config

    try:
        loaded = load_config(config, overrides, check_files=True)
    except ConfigError as error:
        print_config_error(error)
        return None
    print_warnings(loaded.warnings)
    for note in loaded.skipped_checks:
        print(f"note: {note}", file=sys.stderr)
    return loaded


def legacy_main(argv: Sequence[str] | None, usage: str) -> list[str]:
    """Arguments of a `python -m axolotl.cli.<verb>` entry point; exits 2 with usage when empty."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(f"usage: {usage}", file=sys.stderr)
        raise SystemExit(2)
    return args


def run_or_report(config: str, action: Callable[[], T],
                  errors: tuple[type[Exception], ...] = (ValueError, ImportError, OSError)) -> tuple[T | None, int]:
    """Run a verb's library call; expected failures become one `error: CONFIG: ...` line and an
    exit code (2 for not-supported-yet, 1 for the rest) instead of a traceback."""
    try:
        return action(), 0
    except NotImplementedError as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return None, EXIT_NOT_SUPPORTED
    except errors as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return None, 1


def releases_process_group(verb_run: Callable[P, T]) -> Callable[P, T]:
    """Wrap a launchable verb so its process leaves the process group it joined before exiting.

    Without the explicit destroy, a launched process that exits with its gloo group open can
    abort in the group's threads (SIGABRT), and torchrun then reports a finished run as failed."""

    @functools.wraps(verb_run)
    def run_then_release(*args: P.args, **kwargs: P.kwargs) -> T:
        from axolotl.process_group import release_process_group

        try:
            return verb_run(*args, **kwargs)
        finally:
            release_process_group()

    return run_then_release
