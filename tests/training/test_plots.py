"""training_curves.png: written from log entries, atomically, never half a file."""

from __future__ import annotations

from pathlib import Path

import pytest

from axolotl.training.plots import write_training_curves

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def synthetic_history(steps: int = 20, eval_every: int = 5) -> list[dict[str, float]]:
    """A log_history as the Trainer records it: training logs, evaluations and the final summary."""
    history: list[dict[str, float]] = []
    for step in range(1, steps + 1):
        history.append({"loss": 3.0 / step, "grad_norm": 1.0 + 0.1 * step, "learning_rate": 1e-3 * (1 - step / steps),
                        "epoch": step / steps, "num_input_tokens_seen": 100 * step, "step": step})
        if step % eval_every == 0:
            history.append({"eval_loss": 3.5 / step, "eval_runtime": 0.1, "epoch": step / steps, "step": step})
    history.append({"train_runtime": 4.2, "train_loss": 1.2, "total_flos": 0.0, "epoch": 1.0, "step": steps})
    return history


def test_png_written_from_a_synthetic_log_history(tmp_path: Path) -> None:
    path = write_training_curves(synthetic_history(), tmp_path / "out" / "training_curves.png")
    assert path == tmp_path / "out" / "training_curves.png"
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    assert [p.name for p in path.parent.iterdir()] == ["training_curves.png"], "no temp file left behind"


def test_single_log_and_missing_grad_norm_still_plot(tmp_path: Path) -> None:
    history = [{"loss": 2.0, "learning_rate": 1e-4, "step": 1}]
    path = write_training_curves(history, tmp_path / "curves.png")
    assert path is not None and path.read_bytes().startswith(PNG_SIGNATURE)


def test_nothing_to_plot_writes_nothing(tmp_path: Path) -> None:
    assert write_training_curves([{"eval_loss": 1.0, "step": 3}], tmp_path / "curves.png") is None
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_no_partial_file_and_keeps_the_old_one(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from matplotlib.figure import Figure

    target = tmp_path / "training_curves.png"
    target.write_bytes(b"previous")

    def broken_savefig(self: Figure, handle: object, **kwargs: object) -> None:
        handle.write(PNG_SIGNATURE + b"half an image")  # type: ignore[attr-defined]
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        write_training_curves(synthetic_history(), target)
    assert target.read_bytes() == b"previous", "the old plot stays until a complete new one replaces it"
    assert [p.name for p in tmp_path.iterdir()] == ["training_curves.png"], "the temp file is removed"


def test_a_failed_plot_does_not_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             caplog: pytest.LogCaptureFixture) -> None:
    """sft writes metrics.json first; a broken plot is a warning, not a lost model."""
    from axolotl.training import sft

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no fonts")

    monkeypatch.setattr(sft, "write_training_curves", broken)
    metrics = {"train_loss_history": [{"step": 1, "loss": 1.0}], "eval_history": []}
    with caplog.at_level("WARNING", logger=sft.__name__):
        sft._write_metrics(tmp_path, metrics)
    assert (tmp_path / sft.METRICS_NAME).is_file()
    assert "no fonts" in caplog.text
