"""`axolotl lm-eval config.yml [--key value ...]` (legacy: `python -m axolotl.cli.lm_eval config.yml`).

Runs lm-evaluation-harness on the trained model (or `lm_eval_model`) for `lm_eval_tasks`,
prints the results table and writes `output_dir/lm_eval_results.json`. Needs the `lm-eval`
extra. Exit codes: 0 evaluated; 1 bad config or tasks, a model that does not load, or lm-eval
missing; 2 a key not supported yet.
"""

from __future__ import annotations

from typing import Sequence

from axolotl.cli.output import legacy_main, load_or_report, run_or_report


def run(config: str, overrides: Sequence[str] = ()) -> int:
    """Evaluate as the config describes; problems are printed, never raised as tracebacks."""
    loaded = load_or_report(config, overrides)
    if loaded is None:
        return 1
    from axolotl.models.lm_eval import lm_eval

    result, code = run_or_report(config, lambda: lm_eval(loaded.cfg))  # LMEvalError is a ValueError
    if result is None:
        return code
    print(f"evaluated {result.source}")
    print(result.table)
    print(f"results written to {result.path}")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.lm_eval CONFIG [--key value ...]")
    raise SystemExit(run(args[0], args[1:]))


if __name__ == "__main__":
    main()
