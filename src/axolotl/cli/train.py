"""`axolotl train config.yml [--key value ...] [--launcher python|torchrun|accelerate [-- LAUNCHER ARGS]]`
(legacy: `python -m axolotl.cli.train config.yml`).

Several visible GPUs (or `--launcher torchrun|accelerate`) re-run this command as one process per
GPU (`axolotl.cli.launch`); each of them runs `run` in-process. `use_ray: true` makes this process
Ray Train's driver instead (`axolotl.cli.ray_launch`); each Ray worker runs `train_here`.

Exit codes: 0 trained and saved; 1 the config or the data is wrong, or training failed;
2 the config asks for something not supported yet (checked before anything is loaded);
130 stopped by SIGINT/SIGTERM after saving a checkpoint.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from axolotl.cli.launch import inside_launched_process, is_main_rank, plan_and_load, run_launch
from axolotl.cli.output import EXIT_INTERRUPTED, EXIT_NOT_SUPPORTED, legacy_main, releases_process_group

if TYPE_CHECKING:
    from axolotl.config.schema import AxolotlConfig



@releases_process_group
def run(config: str, overrides: Sequence[str] = (), launcher: str | None = None,
        launcher_args: Sequence[str] = ()) -> int:
    """Train as the config describes; problems are printed, never raised as tracebacks.

    `launcher` None chooses (several GPUs: torchrun); `launcher_args` are what followed `--`."""
    planned = plan_and_load(config, overrides, launcher, launcher_args)
    if isinstance(planned, int):
        return planned
    launch, loaded = planned
    from axolotl.config.render import resolved_yaml
    from axolotl.training.args import TrainingConfigError
    from axolotl.training.distributed import RanksDisagree, check_ranks_agree
    from axolotl.training.sft import preflight
    from axolotl.training.support import NotSupportedYet

    cfg = loaded.cfg
    if cfg.use_ray:
        from axolotl.cli.ray_launch import ray_refusals

        refused = ray_refusals(cfg, launcher, launcher_args, inside_launched_process())
        if refused:
            print(f"error: {config}: " + "; ".join(refused), file=sys.stderr)
            return EXIT_NOT_SUPPORTED
        launch = None  # Ray starts the processes, even where several GPUs would choose torchrun
    in_process = launch is None and not cfg.use_ray
    if in_process and is_main_rank():
        print(f"# resolved config ({loaded.environment.describe()}); also saved as "
              f"{cfg.output_dir}/axolotl_config.yml\n{resolved_yaml(cfg)}", file=sys.stderr)
    try:
        if in_process:
            check_ranks_agree(cfg)  # before any refusal, so no rank waits for one that already stopped
        preflight(cfg)
    except RanksDisagree as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    except (NotSupportedYet, TrainingConfigError) as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return EXIT_NOT_SUPPORTED if "not supported yet" in str(error) else 1
    # checked here, so a refused config fails once and fast; the processes load it again
    if cfg.use_ray:
        from axolotl.cli.ray_launch import run_with_ray

        return run_with_ray(loaded, config, overrides)
    if launch is not None:
        return run_launch(launch, "train", config, overrides)
    code, message = train_here(config, cfg)
    if code != 0:
        print(message, file=sys.stderr)
    elif is_main_rank():
        print(message)
    return code


def train_here(config: str, cfg: AxolotlConfig) -> tuple[int, str]:
    """Train in this process -> (exit code, the line to print: where the model went, or what stopped it).

    Returned rather than printed so a Ray worker can hand the line to its driver."""
    from axolotl.data.errors import DataError
    from axolotl.training.args import TrainingConfigError
    from axolotl.training.sft import TrainingError, train

    try:
        result = train(cfg)
    except NotImplementedError as error:  # refusals of the model/adapter layers
        return EXIT_NOT_SUPPORTED, f"error: {config}: {error}"
    except (DataError, TrainingError, TrainingConfigError, ValueError, ImportError, FileNotFoundError) as error:
        return 1, f"error: {config}: {error}"
    if result.interrupted:
        return EXIT_INTERRUPTED, (f"stopped by {result.interrupted}; the last checkpoint is in {result.output_dir}; "
                                  f"resume with `--resume-from-checkpoint {result.output_dir}/checkpoint-<step>`")
    return 0, f"model saved to {result.output_dir}"


def split_launcher(args: Sequence[str]) -> tuple[list[str], str | None, list[str]]:
    """Legacy entry points: pull `--launcher X` / `--launcher=X` and everything after `--` out of
    the override list -> (overrides, launcher, launcher arguments)."""
    args = list(args)
    passthrough: list[str] = []
    if "--" in args:
        cut = args.index("--")
        args, passthrough = args[:cut], args[cut + 1:]
    rest: list[str] = []
    launcher: str | None = None
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
        elif arg == "--launcher" and i + 1 < len(args):
            launcher, skip = args[i + 1], True
        elif arg.startswith("--launcher="):
            launcher = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, launcher, passthrough


def main(argv: Sequence[str] | None = None) -> None:
    args = legacy_main(argv, "python -m axolotl.cli.train CONFIG [--key value ...] [--launcher L [-- ARGS]]")
    rest, launcher, passthrough = split_launcher(args[1:])
    raise SystemExit(run(args[0], rest, launcher=launcher, launcher_args=passthrough))


if __name__ == "__main__":
    main()
