"""`use_ray`: what the driver asks Ray for, what it refuses before Ray starts, and how a worker's
failure becomes the command's error line. The real 2-worker run is in tests/training/test_ray_train.py."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest

from axolotl.cli.ray_launch import (
    WorkerFailed,
    capacity_warning,
    failure_report,
    ray_refusals,
    resource_problems,
    run_kwargs,
    scaling_kwargs,
    train_worker,
    worker_payload,
)
from axolotl.testing.configs import load

BASE = ("base_model: some/model\nlearning_rate: 2e-4\ndatasets:\n  - path: data.jsonl\n    type: alpaca\n"
        "use_ray: true\n")


def cfg_of(extra: str = "") -> object:
    return load(BASE + extra).cfg


# --------------------------------------------------------------------------------------------
# refusals
# --------------------------------------------------------------------------------------------

def test_plain_supervised_run_is_not_refused() -> None:
    assert ray_refusals(cfg_of("adapter: lora\n"), None, (), inside_launched=False) == []


@pytest.mark.parametrize(("launcher", "args", "named"), [
    ("torchrun", (), "--launcher torchrun"), ("accelerate", (), "--launcher accelerate"),
    ("python", (), "--launcher python"), (None, ("--nproc_per_node", "2"), "arguments after `--`"),
])
def test_a_launcher_together_with_ray_is_refused(launcher: str | None, args: tuple[str, ...], named: str) -> None:
    [message] = ray_refusals(cfg_of(), launcher, args, inside_launched=False)
    assert f"`use_ray` together with `{named}` is not supported yet" in message


def test_ray_inside_a_torchrun_process_is_refused() -> None:
    [message] = ray_refusals(cfg_of(), None, (), inside_launched=True)
    assert "process that torchrun/accelerate started is not supported yet" in message


@pytest.mark.parametrize(("extra", "named", "dataset_type"), [
    ("fsdp_config:\n  reshard_after_forward: true\n", "FSDP", "alpaca"),
    ("deepspeed: ds.json\n", "`deepspeed`", "alpaca"),
    ("rl: dpo\n", "`rl: dpo`", "chatml.intel"),
    ("reward_model: true\n", "`reward_model`", "bradley_terry.chat_template"),
])
def test_untested_engines_and_methods_are_refused(extra: str, named: str, dataset_type: str) -> None:
    cfg = load(BASE.replace("alpaca", dataset_type) + extra).cfg
    messages = ray_refusals(cfg, None, (), inside_launched=False)
    assert any(f"`use_ray` with {named}" in m and "not supported yet" in m for m in messages), messages


@pytest.mark.parametrize(("resources", "message"), [
    ({"gpu": 1}, "`resources_per_worker.gpu`: Ray's resource names are case-sensitive; write `GPU`"),
    ({"CPU": "two"}, "`resources_per_worker.CPU`: 'two' is not an amount"),
    ({"GPU": -1}, "`resources_per_worker.GPU`: -1 is not an amount"),
])
def test_resource_requests_ray_would_never_satisfy(resources: dict[str, object], message: str) -> None:
    assert message in resource_problems(resources)[0]


def test_resource_requests_that_are_fine() -> None:
    assert resource_problems({"CPU": 4, "GPU": 0.5, "accelerator_type:L40S": 0.001, "memory": 1e9}) == []


def _cli_config(tmp_path: Path, model_dir: Path, extra: str = "") -> Path:
    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    path = tmp_path / "cfg.yml"
    path.write_text(f"base_model: {model_dir}\nlearning_rate: 2e-4\ndatasets:\n  - path: {tmp_path}/data.jsonl\n"
                    f"    type: alpaca\noutput_dir: {tmp_path}/out\nuse_ray: true\n{extra}")
    return path


def test_the_command_refuses_a_launcher_with_ray_before_ray_starts(
        tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.cli.train import EXIT_NOT_SUPPORTED, run

    monkeypatch.setitem(sys.modules, "ray", None)  # would fail to import if it got that far
    for name in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "AXOLOTL_LAUNCHED", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    code = run(str(_cli_config(tmp_path, tiny_llama_dir)), [], launcher="torchrun", launcher_args=["--nproc_per_node", "2"])
    assert code == EXIT_NOT_SUPPORTED
    assert "`use_ray` together with `--launcher torchrun` is not supported yet" in capsys.readouterr().err


def test_without_ray_installed_the_command_names_the_extra(
        tiny_llama_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.cli.train import run

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, installed or not
    for name in ("LOCAL_RANK", "WORLD_SIZE", "RANK", "AXOLOTL_LAUNCHED", "ACCELERATE_USE_CPU"):
        monkeypatch.delenv(name, raising=False)
    code = run(str(_cli_config(tmp_path, tiny_llama_dir, "resources_per_worker:\n  CPU: 1\n")), ["--use-ray"])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "`use_ray: true` needs Ray Train" in err and "pip install 'axolotl[ray]'" in err


# --------------------------------------------------------------------------------------------
# ScalingConfig / RunConfig
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("extra", "expected"), [
    ("", {"num_workers": 1, "use_gpu": True, "resources_per_worker": {"GPU": 1}}),  # the schema's default
    ("ray_num_workers: 4\nresources_per_worker:\n  CPU: 1\n",
     {"num_workers": 4, "use_gpu": False, "resources_per_worker": {"CPU": 1}}),
    ("ray_num_workers: 8\nresources_per_worker:\n  GPU: 1\n  CPU: 8\n",
     {"num_workers": 8, "use_gpu": True, "resources_per_worker": {"GPU": 1, "CPU": 8}}),
    ("resources_per_worker:\n  GPU: 0\n  accelerator_type:L40S: 0.001\n",
     {"num_workers": 1, "use_gpu": False, "resources_per_worker": {"GPU": 0, "accelerator_type:L40S": 0.001}}),
])
def test_scaling_config_arguments(extra: str, expected: dict[str, object]) -> None:
    assert scaling_kwargs(cfg_of(extra)) == expected


def test_run_config_arguments_put_rays_records_beside_output_dir(tmp_path: Path) -> None:
    assert run_kwargs(cfg_of(f"output_dir: {tmp_path}/runs/out\nray_run_name: lora-1b\n")) == \
        {"name": "lora-1b", "storage_path": str(tmp_path / "runs" / "ray_results")}
    assert run_kwargs(cfg_of(f"output_dir: {tmp_path}/out\n"))["name"] is None  # Ray names the run by date


@pytest.mark.parametrize("extra", ["resources_per_worker:\n  CPU: 2\n", "ray_num_workers: 2\n"])
def test_rays_own_config_classes_accept_the_arguments(extra: str, tmp_path: Path) -> None:
    train_api = pytest.importorskip("ray.train", reason="Ray Train is an optional extra")
    cfg = cfg_of(f"output_dir: {tmp_path}/out\nray_run_name: tiny\n" + extra)
    scaling = train_api.ScalingConfig(**scaling_kwargs(cfg))
    run = train_api.RunConfig(**run_kwargs(cfg))
    assert (scaling.num_workers, scaling.use_gpu) == (cfg.ray_num_workers, "GPU" in cfg.resources_per_worker)
    assert scaling.resources_per_worker == cfg.resources_per_worker
    assert (run.name, run.storage_path) == ("tiny", str(tmp_path / "ray_results"))


# --------------------------------------------------------------------------------------------
# cluster capacity
# --------------------------------------------------------------------------------------------

NODE_CPU = {"Alive": True, "Resources": {"CPU": 2.0, "memory": 8e9}}
NODE_GPU = {"Alive": True, "Resources": {"CPU": 48.0, "GPU": 4.0}}


def test_no_warning_when_every_worker_fits() -> None:
    assert capacity_warning({"CPU": 1}, 2, [NODE_CPU]) is None
    assert capacity_warning({"GPU": 1}, 8, [NODE_CPU, NODE_GPU, NODE_GPU]) is None


def test_a_cluster_without_gpus_is_named_with_the_cpu_setting() -> None:
    warning = capacity_warning({"GPU": 1}, 2, [NODE_CPU])
    assert warning is not None
    assert "room for 0 of the 2 workers" in warning and "GPU 0" in warning and "{CPU: 1}" in warning


def test_dead_nodes_and_partial_fits_count_as_missing() -> None:
    dead = {**NODE_GPU, "Alive": False}
    assert "room for 4 of the 5 workers" in capacity_warning({"GPU": 1}, 5, [NODE_GPU, dead])


# --------------------------------------------------------------------------------------------
# failures
# --------------------------------------------------------------------------------------------

class FakeGroupError(Exception):
    """The shape of Ray Train's WorkerGroupError: rank -> the exception of that worker."""

    def __init__(self, failures: dict[int, BaseException]) -> None:
        super().__init__("Training failed due to worker errors")
        self.worker_failures = failures


class Wrapped(Exception):
    """Ray's task errors keep the user's exception as `.cause`."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__("wrapped")
        self.cause = cause


def test_worker_failed_survives_pickling() -> None:
    copy = pickle.loads(pickle.dumps(WorkerFailed("error: c.yml: bad", 2)))
    assert (copy.message, copy.exit_code, str(copy)) == ("error: c.yml: bad", 2, "error: c.yml: bad")


def test_the_lowest_ranks_own_error_is_reported() -> None:
    error = FakeGroupError({1: Wrapped(WorkerFailed("error: c.yml: rank one", 2)),
                            0: RuntimeError("NCCL timeout"), 3: WorkerFailed("error: c.yml: rank three", 1)})
    assert failure_report(error) == (2, "error: c.yml: rank one (Ray worker rank 1)")


def test_an_unexpected_failure_keeps_rays_description() -> None:
    code, message = failure_report(FakeGroupError({0: RuntimeError("boom")}))
    assert code == 1 and message.startswith("error: the Ray Train run failed:")


def test_rays_real_worker_group_error_is_understood() -> None:
    exceptions = pytest.importorskip("ray.train.v2.api.exceptions", reason="Ray Train is an optional extra")
    error = exceptions.WorkerGroupError("snippet", {0: WorkerFailed("error: c.yml: no data", 1)})
    assert failure_report(pickle.loads(pickle.dumps(error))) == (1, "error: c.yml: no data (Ray worker rank 0)")


def test_a_worker_with_a_bad_config_raises_the_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.config.sources import parse_yaml

    monkeypatch.setenv("AXOLOTL_LAUNCHED", "0")  # restored afterwards; the worker sets it to 1
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    payload = worker_payload(parse_yaml(BASE + "learning_rat: 1\n", "cfg.yml"), "cfg.yml", ["--seed", "1"])
    monkeypatch.chdir(tmp_path / "elsewhere")  # Ray Train moves workers into its own directory
    with pytest.raises(WorkerFailed) as raised:
        train_worker(payload)
    assert raised.value.exit_code == 1 and "learning_rat" in raised.value.message
    assert Path.cwd() == tmp_path  # back where the command started, for the config's relative paths
    import os

    assert os.environ["AXOLOTL_LAUNCHED"] == "1"
