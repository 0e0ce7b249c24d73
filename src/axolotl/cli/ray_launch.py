"""`use_ray: true`: `axolotl train` runs the training on `ray_num_workers` Ray Train workers.

    axolotl train config.yml --use-ray          # or `use_ray: true` in the config

The command becomes Ray Train's driver: it checks the config (as before a torchrun launch), then
hands `train_worker` to `ray.train.torch.TorchTrainer`. Ray places the workers on the cluster
(`ray_num_workers` x `resources_per_worker`), sets `RANK`, `LOCAL_RANK`, `WORLD_SIZE`,
`MASTER_ADDR`/`MASTER_PORT` in each and joins them in one torch process group (gloo on CPU,
NCCL with GPUs) before our code runs. From there a worker is exactly a torchrun child: it
resolves the config itself (its node's GPUs decide `auto` values), compares it with rank 0's,
prepares the data once per node and trains with DDP; rank 0 writes the outputs.

Why the driver ships the parsed YAML instead of the file name: on a cluster the workers run on
other machines, where the config file (or its URL's answer) need not exist. Paths inside the
config are read on the workers, relative to the directory `axolotl train` was started in
(Ray Train moves its workers into a scratch directory; we move them back).

Ray is an optional extra (`pip install 'axolotl[ray]'`); nothing here imports it before a run
asks for it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from axolotl.cli.output import EXIT_INTERRUPTED

if TYPE_CHECKING:
    from axolotl.config.loader import LoadedConfig
    from axolotl.config.schema import AxolotlConfig
    from axolotl.config.sources import RawConfig

INSTALL_HINT = "pip install 'axolotl[ray]'"
RAY_STORAGE_DIR = "ray_results"
"""Folder (beside `output_dir`) where Ray Train keeps its run records."""
LOWERCASE_RESOURCES = {"cpu": "CPU", "gpu": "GPU", "tpu": "TPU"}


class RayMissing(ImportError):
    """`use_ray: true` without Ray Train installed."""


class WorkerFailed(RuntimeError):
    """What a worker reports to the driver: the error line `axolotl train` would print, and its exit code.

    Raised (not printed) because Ray forwards worker output asynchronously, while an exception
    reaches the driver's `fit()` with the run's failure."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message, exit_code)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


def ray_refusals(cfg: AxolotlConfig, launcher: str | None, launcher_args: Sequence[str],
                 inside_launched: bool) -> list[str]:
    """Combinations with `use_ray` that this build does not run (exit code 2), and why."""
    problems = []
    if launcher is not None or launcher_args:
        given = f"--launcher {launcher}" if launcher is not None else "arguments after `--`"
        problems.append(f"`use_ray` together with `{given}` is not supported yet: Ray Train starts the "
                        "processes itself; drop the launcher option, or set `use_ray: false` to use the launcher")
    if inside_launched:
        problems.append("`use_ray` in a process that torchrun/accelerate started is not supported yet: run "
                        "`axolotl train CONFIG` directly (Ray starts the workers), or set `use_ray: false`")
    if cfg.fsdp or cfg.fsdp_config is not None:
        problems.append("`use_ray` with FSDP (`fsdp_config`) is not supported yet (untested under Ray Train): "
                        "launch FSDP with `--launcher torchrun` (docs/multi_gpu.md)")
    if cfg.deepspeed:
        problems.append("`use_ray` with `deepspeed` is not supported yet (untested under Ray Train): launch "
                        "DeepSpeed with `--launcher torchrun` (docs/multi_gpu.md)")
    if cfg.rl or cfg.reward_model or cfg.process_reward_model:
        method = f"rl: {cfg.rl}" if cfg.rl else ("reward_model" if cfg.reward_model else "process_reward_model")
        problems.append(f"`use_ray` with `{method}` is not supported yet (Ray Train is tested with supervised "
                        "fine-tuning only): launch it with `--launcher torchrun`")
    return problems


def resource_problems(resources: dict[str, Any]) -> list[str]:
    """Resource requests Ray would accept but never satisfy (wrong case) or reject late (not a number)."""
    problems = []
    for key, value in resources.items():
        if key in LOWERCASE_RESOURCES:
            problems.append(f"`resources_per_worker.{key}`: Ray's resource names are case-sensitive; write "
                            f"`{LOWERCASE_RESOURCES[key]}` (a lowercase name is a custom resource no node has, "
                            "and the workers would wait forever)")
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            problems.append(f"`resources_per_worker.{key}`: {value!r} is not an amount; use a number >= 0 "
                            "(e.g. `GPU: 1`, `CPU: 4`)")
    return problems


def scaling_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    """`ScalingConfig` arguments: one worker per `ray_num_workers`, GPUs exactly when requested.

    Ray insists that `use_gpu` agrees with a `GPU` entry of `resources_per_worker`, so it is
    derived from it rather than configured twice."""
    resources = dict(cfg.resources_per_worker)
    return {"num_workers": cfg.ray_num_workers, "use_gpu": float(resources.get("GPU", 0) or 0) > 0,
            "resources_per_worker": resources}


def run_kwargs(cfg: AxolotlConfig) -> dict[str, Any]:
    """`RunConfig` arguments: the run's name (None: Ray names it by date) and where Ray keeps its records.

    The records go to `ray_results/` beside `output_dir`, not inside it: the final save replaces
    `output_dir` by a renamed staging folder while Ray may still write there."""
    storage = Path(cfg.output_dir).resolve().parent / RAY_STORAGE_DIR
    return {"name": cfg.ray_run_name, "storage_path": str(storage)}


def workers_that_fit(resources: dict[str, Any], nodes: Sequence[dict[str, Any]]) -> int:
    """How many workers asking `resources` each the alive nodes (`ray.nodes()` entries) hold in total."""
    wanted = {key: float(value) for key, value in resources.items() if float(value) > 0}
    total = 0
    for node in nodes:
        if not node.get("Alive", True):
            continue
        have = node.get("Resources", {})
        total += int(min((have.get(key, 0.0) // amount for key, amount in wanted.items()), default=1 << 30))
    return total


def capacity_warning(resources: dict[str, Any], num_workers: int, nodes: Sequence[dict[str, Any]]) -> str | None:
    """A warning when the cluster, as it is now, cannot place every worker.

    Not an error: an autoscaling cluster adds the nodes while Ray waits. But on a fixed cluster
    (a laptop, one GPU-less machine with the schema's default `{GPU: 1}`) Ray would wait forever,
    so the user should know why nothing happens."""
    fit = workers_that_fit(resources, nodes)
    if fit >= num_workers:
        return None
    have: dict[str, float] = {}
    for node in nodes:
        if node.get("Alive", True):
            for key in ("CPU", "GPU", *resources):
                have[key] = have.get(key, 0.0) + float(node.get("Resources", {}).get(key, 0.0))
    summary = ", ".join(f"{key} {value:g}" for key, value in have.items())
    return (f"warning: the Ray cluster has room for {fit} of the {num_workers} workers (`ray_num_workers`) asking "
            f"{resources} each (`resources_per_worker`; the cluster has {summary}); Ray waits until an autoscaler "
            "adds nodes. On a fixed cluster stop with Ctrl-C and lower `ray_num_workers` or `resources_per_worker` "
            "(a machine without GPUs needs `resources_per_worker: {CPU: 1}`)")


def import_ray_train() -> Any:
    """`ray.train` with its torch integration, or `RayMissing` saying how to install it."""
    try:
        import ray.train
        import ray.train.torch  # TorchTrainer lives here; import it now to fail early
    except ImportError as error:
        raise RayMissing(f"`use_ray: true` needs Ray Train, which is not installed ({error}); install it with "
                         f"`{INSTALL_HINT}`") from None
    return ray.train


def worker_payload(raw: RawConfig, config: str, overrides: Sequence[str]) -> dict[str, Any]:
    """What every worker needs to resolve the same config: the parsed YAML, the overrides and the
    directory relative paths are meant from (all picklable)."""
    return {"raw": raw, "config": config, "overrides": list(overrides), "cwd": os.getcwd()}


def train_worker(payload: dict[str, Any]) -> None:
    """The training function of each Ray Train worker (Ray has already set the rank variables and
    joined the process group). Failures are raised as `WorkerFailed` for the driver to print."""
    if os.path.isdir(payload["cwd"]):
        os.chdir(payload["cwd"])
    os.environ["AXOLOTL_LAUNCHED"] = "1"  # nothing below may start processes of its own
    from axolotl.cli.train import train_here
    from axolotl.config.errors import ConfigError
    from axolotl.config.loader import validate_raw

    try:
        loaded = validate_raw(payload["raw"], payload["overrides"], check_files=True)
    except ConfigError as error:
        raise WorkerFailed(f"error: {error}", 1) from None
    if os.environ.get("RANK", "0") == "0":  # as rank 0 of a torchrun launch does
        from axolotl.config.render import resolved_yaml

        # written, not printed: Ray Train replaces `print` in workers by a logger that also echoes
        # to a wrapped stderr, which showed the config twice
        sys.stderr.write(f"# resolved config ({loaded.environment.describe()}); also saved as "
                         f"{loaded.cfg.output_dir}/axolotl_config.yml\n{resolved_yaml(loaded.cfg)}\n")
    code, message = train_here(payload["config"], loaded.cfg)
    if code != 0:
        raise WorkerFailed(message, code)


def failure_report(error: BaseException) -> tuple[int, str]:
    """(exit code, message) for a failed `fit()`: the lowest rank's `WorkerFailed` when there is one,
    else Ray's own description (an unexpected error, with its traceback)."""
    failures = getattr(error, "worker_failures", None) or {}
    for rank in sorted(failures):
        found = _worker_failed(failures[rank])
        if found is not None:
            return found.exit_code, f"{found.message} (Ray worker rank {rank})"
    found = _worker_failed(error)
    if found is not None:
        return found.exit_code, found.message
    return 1, f"error: the Ray Train run failed: {error}"


def _worker_failed(error: BaseException | None) -> WorkerFailed | None:
    """The `WorkerFailed` in `error`'s chain (Ray wraps worker exceptions in its own task errors)."""
    seen = 0
    while error is not None and seen < 10:
        if isinstance(error, WorkerFailed):
            return error
        error = getattr(error, "cause", None) or error.__cause__
        seen += 1
    return None


def run_with_ray(loaded: LoadedConfig, config: str, overrides: Sequence[str]) -> int:
    """Be the Ray Train driver of one `axolotl train`; the return value is the command's exit code."""
    cfg = loaded.cfg
    problems = resource_problems(cfg.resources_per_worker)
    if problems:
        print(f"error: {config}: " + "; ".join(problems), file=sys.stderr)
        return 1
    try:
        train_api = import_ray_train()
    except RayMissing as error:
        print(f"error: {config}: {error}", file=sys.stderr)
        return 1
    scaling = scaling_kwargs(cfg)
    import ray

    if not ray.is_initialized():  # what fit() would do; done first to look at the cluster
        ray.init()
    warning = capacity_warning(scaling["resources_per_worker"], scaling["num_workers"], ray.nodes())
    if warning:
        print(warning, file=sys.stderr, flush=True)
    trainer = train_api.torch.TorchTrainer(
        train_worker, train_loop_config=worker_payload(loaded.raw, config, overrides),
        scaling_config=train_api.ScalingConfig(**scaling), run_config=train_api.RunConfig(**run_kwargs(cfg)))
    print(f"launching: Ray Train, {scaling['num_workers']} workers x {scaling['resources_per_worker']}",
          file=sys.stderr, flush=True)
    try:
        trainer.fit()
    except KeyboardInterrupt:
        print("stopped: Ray ended the workers (no checkpoint is saved on Ctrl-C under Ray; resume from the "
              "last `save_steps` checkpoint)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - Ray's failure types differ between its Train versions
        code, message = failure_report(error)
        print(message, file=sys.stderr)
        return code
    print(f"model saved to {cfg.output_dir}")
    return 0
