"""Verbs whose implementation has not landed yet exist, but refuse clearly: exit code 2 and
"not implemented yet" on stderr, both as `axolotl VERB` and as the legacy
`python -m axolotl.cli.VERB` entry points."""

from __future__ import annotations

import pytest

from axolotl.cli.pending import NOT_IMPLEMENTED_EXIT_CODE, PENDING_VERBS

PENDING = ("delinearize-llama4",)


def test_pending_table_matches_the_issue() -> None:
    assert set(PENDING_VERBS) == set(PENDING)
    assert NOT_IMPLEMENTED_EXIT_CODE == 2


def _assert_refused(result, verb: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "not implemented yet" in result.stderr
    assert f"axolotl {verb}" in result.stderr
    assert "Traceback" not in result.stderr
    assert "not implemented" not in result.stdout


@pytest.mark.parametrize("verb", PENDING)
def test_pending_verb_refuses(cli, verb: str, tmp_path) -> None:
    # A config argument plus unknown options (e.g. the launcher pass-through after `--`) must
    # still reach the refusal, not a usage error.
    result = cli([verb, "cfg.yml", "--learning-rate", "1e-4", "--launcher", "torchrun", "--",
                  "--nproc_per_node=2"], cwd=tmp_path)
    _assert_refused(result, verb)


def test_pending_verb_without_config_refuses(cli, tmp_path) -> None:
    _assert_refused(cli(["delinearize-llama4"], cwd=tmp_path), "delinearize-llama4")


@pytest.mark.parametrize(("module", "args", "verb"), [
    ("axolotl.cli.delinearize_llama4", [], "delinearize-llama4"),
])
def test_legacy_entry_points_refuse(cli, module: str, args: list[str], verb: str, tmp_path) -> None:
    _assert_refused(cli(args, module=module, cwd=tmp_path), verb)
