"""`--launcher`: which launch is chosen, the command line it runs, and the refusals that happen before
any process starts. The real 2-process run is in tests/training/test_multi_process.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from axolotl.cli.launch import (
    Launch,
    LaunchError,
    launch_command,
    plan_launch,
    split_passthrough,
)
from axolotl.cli.train import split_launcher

CHILD = {"LOCAL_RANK": "0", "WORLD_SIZE": "2"}


# --------------------------------------------------------------------------------------------
# `--` splitting
# --------------------------------------------------------------------------------------------

def test_arguments_after_double_dash_are_the_launchers() -> None:
    before, after = split_passthrough(["train", "cfg.yml", "--learning-rate", "1e-4", "--launcher", "torchrun", "--",
                                       "--nproc_per_node", "2", "--learning-rate", "x"])
    assert before == ["train", "cfg.yml", "--learning-rate", "1e-4", "--launcher", "torchrun"]
    assert after == ["--nproc_per_node", "2", "--learning-rate", "x"]


@pytest.mark.parametrize("argv", [["merge-lora", "cfg.yml", "--", "--x"], ["train", "cfg.yml"], []])
def test_other_verbs_and_no_double_dash_are_left_alone(argv: list[str]) -> None:
    assert split_passthrough(argv) == (argv, [])


def test_legacy_entry_point_splits_the_same_way() -> None:
    rest, launcher, passthrough = split_launcher(["--lr", "1", "--launcher=accelerate", "--", "--num_processes", "2"])
    assert (rest, launcher, passthrough) == (["--lr", "1"], "accelerate", ["--num_processes", "2"])
    assert split_launcher(["--lr", "1"]) == (["--lr", "1"], None, [])


# --------------------------------------------------------------------------------------------
# choosing
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("launcher", "args", "gpus", "expected"), [
    (None, (), 0, None), (None, (), 1, None), (None, (), 2, Launch("torchrun")), (None, (), 8, Launch("torchrun")),
    (None, ("--nproc_per_node", "2"), 0, Launch("torchrun", ("--nproc_per_node", "2"))),
    ("python", (), 8, None), ("torchrun", (), 0, Launch("torchrun")),
    ("accelerate", ("--num_processes", "4"), 4, Launch("accelerate", ("--num_processes", "4"))),
])
def test_plan(launcher: str | None, args: tuple[str, ...], gpus: int, expected: Launch | None) -> None:
    assert plan_launch(launcher, args, gpus=gpus, environ={}) == expected


@pytest.mark.parametrize("environ", [CHILD, {"ACCELERATE_USE_CPU": "False"}, {"AXOLOTL_LAUNCHED": "1"}],
                         ids=["torchrun", "accelerate-one-process", "ours"])
@pytest.mark.parametrize("launcher", [None, "torchrun", "accelerate", "python"])
def test_a_launched_process_never_launches_again(launcher: str | None, environ: dict[str, str]) -> None:
    assert plan_launch(launcher, ("--nproc_per_node", "2"), gpus=8, environ=environ) is None


def test_python_with_launcher_arguments_is_an_error() -> None:
    with pytest.raises(LaunchError, match="runs one process"):
        plan_launch("python", ["--nproc_per_node", "2"], gpus=0, environ={})


def test_unknown_launcher_names_the_known_ones() -> None:
    with pytest.raises(LaunchError, match="python, torchrun, accelerate"):
        plan_launch("mpirun", [], gpus=0, environ={})


# --------------------------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------------------------

def test_torchrun_defaults_to_a_standalone_run_on_every_gpu() -> None:
    command = launch_command(Launch("torchrun"), "train", "cfg.yml", ["--learning-rate", "1e-4"], gpus=4)
    assert command == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "4",
                       "-m", "axolotl.cli.train", "cfg.yml", "--learning-rate", "1e-4"]


def test_torchrun_on_cpu_defaults_to_one_process() -> None:
    command = launch_command(Launch("torchrun"), "train", "cfg.yml", [], gpus=0)
    assert command[command.index("--nproc_per_node") + 1] == "1"


def test_multi_node_arguments_replace_the_defaults() -> None:
    args = ("--nnodes", "2", "--nproc-per-node=8", "--rdzv_id", "job", "--rdzv_backend", "c10d",
            "--rdzv_endpoint", "10.0.0.1:29400")
    command = launch_command(Launch("torchrun", args), "train", "cfg.yml", [], gpus=8)
    assert "--standalone" not in command and command.count("--nproc_per_node") == 0
    assert command[3:3 + len(args)] == list(args)
    assert command[-3:] == ["-m", "axolotl.cli.train", "cfg.yml"]


def test_accelerate_gets_the_arguments_verbatim() -> None:
    command = launch_command(Launch("accelerate", ("--config_file", "a.yml")), "evaluate", "cfg.yml",
                             ["--model", "base", "--include-train"], gpus=2)
    assert command == [sys.executable, "-m", "accelerate.commands.launch", "--config_file", "a.yml", "-m",
                       "axolotl.cli.evaluate", "cfg.yml", "--model", "base", "--include-train"]


def test_only_train_and_evaluate_launch() -> None:
    with pytest.raises(LaunchError, match="one process"):
        launch_command(Launch("torchrun"), "merge_lora", "cfg.yml", [], gpus=2)


# --------------------------------------------------------------------------------------------
# refusals through the real command, before any process starts
# --------------------------------------------------------------------------------------------

def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "cfg.yml"
    path.write_text(f"base_model: nobody/no-such-model\nlearning_rate: 1e-4\noutput_dir: {tmp_path / 'out'}\n"
                    f"datasets:\n  - path: {tmp_path / 'data.jsonl'}\n    type: alpaca\n{extra}")
    (tmp_path / "data.jsonl").write_text('{"instruction": "a", "input": "", "output": "b"}\n')
    return path


@pytest.mark.parametrize("verb", ["train", "evaluate"])
def test_python_launcher_with_arguments_is_refused(cli, tmp_path: Path, verb: str) -> None:
    result = cli([verb, str(_config(tmp_path)), "--launcher", "python", "--", "--nproc_per_node", "2"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "`--launcher python` runs one process" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("module", [None, "axolotl.cli.train"], ids=["axolotl", "legacy"])
def test_unknown_launcher_is_refused(cli, tmp_path: Path, module: str | None) -> None:
    args = [str(_config(tmp_path)), "--launcher", "mpirun"]
    result = cli(args if module else ["train", *args], module=module, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "`--launcher mpirun` is not a launcher" in result.stderr


def test_a_refused_config_fails_once_before_launching(cli, tmp_path: Path) -> None:
    """The parent checks the config: exit 2 and one message, not N tracebacks from the launcher."""
    result = cli(["train", str(_config(tmp_path, "adam_beta3: 0.9999\n")), "--launcher", "torchrun", "--",
                  "--nproc_per_node", "2"], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("`adam_beta3` is not supported yet") == 1
    assert "launching:" not in result.stderr and "Traceback" not in result.stderr


def test_fsdp_on_cpu_is_refused_before_launching(cli, tmp_path: Path) -> None:
    result = cli(["train", str(_config(tmp_path, "fsdp_config:\n  reshard_after_forward: true\n")), "--launcher",
                  "torchrun", "--", "--nproc_per_node", "2"], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "FSDP needs CUDA GPUs" in result.stderr and "launching:" not in result.stderr


def test_python_launcher_on_several_gpus_says_what_happens(monkeypatch: pytest.MonkeyPatch) -> None:
    from axolotl.cli import launch

    monkeypatch.setattr(launch, "visible_gpu_count", lambda: 4)
    assert "DataParallel" in launch.one_process_note("python", environ={})
    assert launch.one_process_note(None, environ={}) is None  # chooses torchrun instead
    assert launch.one_process_note("python", environ=CHILD) is None
    monkeypatch.setattr(launch, "visible_gpu_count", lambda: 1)
    assert launch.one_process_note("python", environ={}) is None
