"""`--launcher python|torchrun|accelerate`: run `train`/`evaluate` in one process or re-run them
as N processes under a launcher.

    axolotl train cfg.yml --launcher torchrun -- --nproc_per_node 2
    axolotl train cfg.yml --launcher accelerate -- --config_file accel.yml --num_processes 4
    axolotl train cfg.yml                     # several visible GPUs: torchrun, one process each

The parent process checks the config first (loading, schema and trainer refusals), so a refused
run exits with its own code in a second instead of N tracebacks collected by the launcher, and
then starts `<launcher> ... -m axolotl.cli.<verb> CONFIG OVERRIDES` and waits for it. Every child
sees the launcher's environment (`LOCAL_RANK`, `WORLD_SIZE`), which is how it knows it is a child
and runs in-process instead of launching again.

Arguments after `--` go to the launcher verbatim (multi-node: `--nnodes`, `--node_rank`,
`--rdzv_backend`, `--rdzv_endpoint`, `--rdzv_id`; the launcher's own docs list them). Without
rendezvous arguments, torchrun gets `--standalone` (a free local port, so two runs on one machine
do not collide) and, without `--nproc_per_node`, one process per visible GPU (1 on a CPU machine).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from axolotl.config.loader import LoadedConfig

LAUNCHERS = ("python", "torchrun", "accelerate")
LAUNCHABLE_VERBS = ("train", "evaluate")
LAUNCHED_ENV = ("LOCAL_RANK", "WORLD_SIZE", "ACCELERATE_USE_CPU", "AXOLOTL_LAUNCHED")
"""Variables only a started process has: torchrun's and accelerate's multi-process launchers set
the first two, accelerate's one-process launcher the third, and `run_launch` the last (so a
launcher that sets none of them still never leads to a second launch)."""

RENDEZVOUS_OPTIONS = ("standalone", "nnodes", "node_rank", "rdzv_backend", "rdzv_endpoint", "rdzv_id", "rdzv_conf",
                      "master_addr", "master_port", "rdzv_timeout")
"""torchrun options that place the run; with any of them, `--standalone` is not added."""


class LaunchError(ValueError):
    """The launcher choice or its arguments cannot work (named in the message)."""


@dataclass(frozen=True)
class Launch:
    """A multi-process launch: which launcher, and the arguments the user gave it after `--`."""

    launcher: str
    args: tuple[str, ...] = ()


def split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """`axolotl VERB ... -- LAUNCHER ARGS` -> (the arguments before `--`, those after).

    click drops a `--` and appends what follows to the other extra arguments, which would mix the
    launcher's arguments with the config overrides; so the split happens before click parses.
    Only the verbs that launch are split; for the others `--` keeps click's meaning."""
    argv = list(argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    verb = next((arg for arg in argv[:cut] if not arg.startswith("-")), None)
    if verb not in LAUNCHABLE_VERBS:
        return argv, []
    return argv[:cut], argv[cut + 1:]


def inside_launched_process(environ: dict[str, str] | None = None) -> bool:
    """True in a process that torchrun/accelerate started (it must run the verb, not launch again)."""
    environ = os.environ if environ is None else environ
    return any(key in environ for key in LAUNCHED_ENV)


def visible_gpu_count() -> int:
    """CUDA devices this process may use; `CUDA_VISIBLE_DEVICES=""` answers without importing torch."""
    if os.environ.get("CUDA_VISIBLE_DEVICES") == "":
        return 0
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def plan_launch(launcher: str | None, launcher_args: Sequence[str], *, gpus: int | None = None,
                environ: dict[str, str] | None = None) -> Launch | None:
    """The launch to perform, or None to run in this process.

    `launcher` None means "choose": torchrun when several GPUs are visible (or launcher arguments
    were given), else this process. In a launched child the answer is always this process."""
    if launcher is not None and launcher not in LAUNCHERS:
        raise LaunchError(f"`--launcher {launcher}` is not a launcher axolotl knows; use one of {', '.join(LAUNCHERS)}")
    if inside_launched_process(environ):
        return None
    if launcher == "python":
        if launcher_args:
            raise LaunchError(f"arguments after `--` ({' '.join(launcher_args)}) are for a launcher, but "
                              "`--launcher python` runs one process; use `--launcher torchrun` or `accelerate`")
        return None
    if launcher is None:
        if not launcher_args and (visible_gpu_count() if gpus is None else gpus) <= 1:
            return None
        launcher = "torchrun"
    return Launch(launcher, tuple(launcher_args))


def one_process_note(launcher: str | None, environ: dict[str, str] | None = None) -> str | None:
    """A note for `--launcher python` on a machine with several GPUs: transformers then splits every
    batch over all of them with `torch.nn.DataParallel` in this one process (slow, and not the data
    parallelism the rest of these docs describe)."""
    if launcher != "python" or inside_launched_process(environ):
        return None
    gpus = visible_gpu_count()
    if gpus <= 1:
        return None
    return (f"note: {gpus} GPUs are visible and `--launcher python` runs one process, which transformers spreads "
            "over all of them with DataParallel; set CUDA_VISIBLE_DEVICES=0 for one GPU, or drop `--launcher "
            "python` for one process per GPU")


def _given(args: Sequence[str], names: Sequence[str]) -> bool:
    """Whether any option of `names` appears in `args` (`--a_b`, `--a-b`, with or without `=value`)."""
    spelled = {f"--{name}" for name in names} | {f"--{name.replace('_', '-')}" for name in names}
    return any(arg.split("=", 1)[0] in spelled for arg in args)


def launch_command(launch: Launch, verb: str, config: str, verb_args: Sequence[str], *,
                   gpus: int | None = None) -> list[str]:
    """The command line that starts the processes; each runs `python -m axolotl.cli.<verb>`."""
    if verb not in LAUNCHABLE_VERBS:
        raise LaunchError(f"`axolotl {verb}` runs in one process; only {', '.join(LAUNCHABLE_VERBS)} take a launcher")
    target = ["-m", f"axolotl.cli.{verb}", config, *verb_args]
    args = list(launch.args)
    if launch.launcher == "torchrun":
        defaults: list[str] = []
        if not _given(args, RENDEZVOUS_OPTIONS):
            defaults.append("--standalone")
        if not _given(args, ("nproc_per_node",)):
            count = visible_gpu_count() if gpus is None else gpus
            defaults += ["--nproc_per_node", str(max(count, 1))]
        return [sys.executable, "-m", "torch.distributed.run", *defaults, *args, *target]
    if launch.launcher == "accelerate":
        return [sys.executable, "-m", "accelerate.commands.launch", *args, *target]
    raise LaunchError(f"`--launcher {launch.launcher}` does not start processes")


def run_launch(launch: Launch, verb: str, config: str, verb_args: Sequence[str]) -> int:
    """Start the launcher and wait; its exit code is the command's (torchrun reports 1 when any
    process failed; the failing rank's error is printed above). Ctrl-C reaches the launcher
    too (same process group), which stops its processes; we wait for that and exit 130."""
    command = launch_command(launch, verb, config, verb_args)
    print(f"launching: {' '.join(command)}", file=sys.stderr, flush=True)
    process = subprocess.Popen(command, env={**os.environ, "AXOLOTL_LAUNCHED": "1"})
    try:
        return process.wait()
    except KeyboardInterrupt:
        from axolotl.cli.output import EXIT_INTERRUPTED  # not at import: `--help` stays light

        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
        return EXIT_INTERRUPTED


def is_main_rank() -> bool:
    """Whether this process prints the run's summary lines (rank 0, or not launched at all)."""
    return os.environ.get("RANK", "0") == "0"


def plan_and_load(config: str, overrides: Sequence[str], launcher: str | None,
                  launcher_args: Sequence[str]) -> tuple[Launch | None, LoadedConfig] | int:
    """The launch a launchable verb will make (None: run here) and its loaded config, or the exit
    code when either is refused (the problem is printed: 2 for the launcher, 1 for the config)."""
    from axolotl.cli.output import EXIT_NOT_SUPPORTED, load_or_report

    try:
        launch = plan_launch(launcher, launcher_args)
    except LaunchError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_NOT_SUPPORTED
    note = one_process_note(launcher)
    if note:
        print(note, file=sys.stderr)
    loaded = load_or_report(config, overrides)
    return 1 if loaded is None else (launch, loaded)
