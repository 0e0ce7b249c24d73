"""`axolotl evaluate config.yml [--model auto|trained|base] [--include-train] [--key value ...]`
(legacy: `python -m axolotl.cli.evaluate config.yml`).

Loss and perplexity on the eval split (and the train split with `--include-train`), through the
data path and Trainer of `train`; writes `output_dir/eval_metrics.json`.

Exit codes: 0 evaluated; 1 the config, the data or the model is wrong (e.g. no eval split);
2 the config or the launcher asks for something not supported yet.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence

from axolotl.cli.launch import is_main_rank, plan_and_load, run_launch
from axolotl.cli.output import EXIT_NOT_SUPPORTED, legacy_main, releases_process_group


@releases_process_group
def run(config: str, overrides: Sequence[str] = (), *, launcher: str | None = None, model: str = "auto",
        include_train: bool = False, launcher_args: Sequence[str] = ()) -> int:
    """Evaluate as the config describes; problems are printed, never raised as tracebacks.

    Several visible GPUs (or `--launcher torchrun|accelerate`) evaluate in one process per GPU
    (`axolotl.cli.launch`), each with its share of the eval batches."""
    planned = plan_and_load(config, overrides, launcher, launcher_args)
    if isinstance(planned, int):
        return planned
    launch, loaded = planned
    from axolotl.training.evaluate import EvaluationError, check_evaluation, evaluate

    try:
        if launch is not None:  # refusals once and fast, before the processes start
            check_evaluation(loaded.cfg, model)
            verb_args = [*overrides, "--model", model, *(["--include-train"] if include_train else [])]
            return run_launch(launch, "evaluate", config, verb_args)
        result = evaluate(loaded.cfg, model=model, include_train=include_train)
    except EvaluationError as error:  # checked before torch is imported: reported in a second
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        code = _exit_code(error)
        if code is None:
            raise
        print(f"error: {config}: {error}", file=sys.stderr)
        return code
    if is_main_rank():
        print(f"evaluated the {result.source.describe()}")
        print(summary_table(result.metrics))
        print(f"metrics written to {result.path}")
    return 0


def _exit_code(error: Exception) -> int | None:
    """2 for what is not supported yet, 1 for a wrong config, data or model; None: a bug, raise it."""
    from axolotl.data.errors import DataError
    from axolotl.training.args import TrainingConfigError

    if isinstance(error, NotImplementedError):  # the trainer's and the model/adapter layers' refusals
        return EXIT_NOT_SUPPORTED
    if isinstance(error, TrainingConfigError):
        return EXIT_NOT_SUPPORTED if "not supported yet" in str(error) else 1
    if isinstance(error, (DataError, ValueError, ImportError, OSError)):
        return 1
    return None


def summary_table(metrics: dict[str, float]) -> str:
    """One line per split: rows, tokens, supervised tokens, loss and perplexity."""
    lines = [f"{'split':<6} {'rows':>8} {'tokens':>10} {'supervised':>10} {'loss':>9} {'perplexity':>11}"]
    for split in ("eval", "train"):
        if f"{split}_loss" not in metrics:
            continue
        ppl = metrics[f"{split}_perplexity"]
        lines.append(f"{split:<6} {metrics[f'{split}_rows']:>8} {metrics[f'{split}_tokens']:>10} "
                     f"{metrics[f'{split}_supervised_tokens']:>10} {metrics[f'{split}_loss']:>9.4f} "
                     f"{ppl if math.isinf(ppl) else round(ppl, 4):>11}")
    return "\n".join(lines)


def _options(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Pull `--launcher X`, `--model X` (or `=X`) and `--include-train` out of the override list."""
    rest: list[str] = []
    options: dict[str, str] = {}
    values = ("launcher", "model")
    skip = False
    for i, arg in enumerate(args):
        name, has_value, value = arg.lstrip("-").replace("_", "-").partition("=")
        if skip:
            skip = False
        elif arg.startswith("--") and name in values and has_value:
            options[name] = value
        elif arg.startswith("--") and name in values and i + 1 < len(args):
            options[name], skip = args[i + 1], True
        elif arg.startswith("--") and name == "include-train":
            options[name] = "1"
        else:
            rest.append(arg)
    return rest, options


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.evaluate CONFIG [--model auto|trained|base] "
                             "[--include-train] [--key value ...]")
    passthrough: list[str] = []
    if "--" in args:
        args, passthrough = args[:args.index("--")], args[args.index("--") + 1:]
    rest, options = _options(args[1:])
    raise SystemExit(run(args[0], rest, launcher=options.get("launcher"), model=options.get("model", "auto"),
                         include_train="include-train" in options, launcher_args=passthrough))


if __name__ == "__main__":
    main()
