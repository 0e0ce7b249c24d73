"""Verbs whose implementation has not landed yet: they exist (with help) and refuse clearly."""

from __future__ import annotations

import sys
from typing import Callable, Sequence

PENDING_VERBS: dict[str, str] = {
    "delinearize-llama4": "Llama 4 support",
}
"""Verb -> the piece of work that implements it."""

NOT_IMPLEMENTED_EXIT_CODE = 2


def refuse(verb: str) -> None:
    print(f"error: `axolotl {verb}` is not implemented yet in this version "
          f"(it arrives with {PENDING_VERBS[verb]}). `axolotl validate CONFIG` checks a config today.",
          file=sys.stderr)
    raise SystemExit(NOT_IMPLEMENTED_EXIT_CODE)


def legacy_entry(verb: str) -> Callable[[Sequence[str] | None], None]:
    """`python -m axolotl.cli.<verb>` entry point for a pending verb."""

    def main(argv: Sequence[str] | None = None) -> None:
        refuse(verb)

    return main
