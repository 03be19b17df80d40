"""The models learn the synthetic set far beyond the fixed-report floor, on a CPU, in about a minute."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.findings.checkpoint import load_checkpoint
from gateway.findings.data import StudyRecord, load_studies
from gateway.findings.synthetic import generate, write_dataset
from gateway.findings.training import TrainOptions, TrainResult, evaluate, train


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[StudyRecord]:
    folder = tmp_path_factory.mktemp("synthetic")
    return load_studies(write_dataset(generate(500, seed=0), folder, "r2gen"), "r2gen")


def _train(records: list[StudyRecord], out: Path, architecture: str, epochs: int, lr: float) -> TrainResult:
    options = TrainOptions(
        architecture=architecture,
        preset="tiny",
        epochs=epochs,
        lr=lr,  # type: ignore[arg-type]
        batch_size=16,
        patience=epochs,
        progress=False,
    )
    return train(records, out, options, {"format": "r2gen"})


@pytest.mark.slow
def test_both_models_beat_the_fixed_report(records: list[StudyRecord], tmp_path: Path) -> None:
    a = _train(records, tmp_path / "a", "cnn-lstm", 12, 2e-3)
    b = _train(records, tmp_path / "b", "attention", 8, 1e-3)
    test_a = evaluate(load_checkpoint(tmp_path / "a"), records, "test", beam_size=3, meteor=False)
    test_b = evaluate(load_checkpoint(tmp_path / "b"), records, "test", beam_size=3, meteor=False)
    print(
        f"\nval BLEU-4: cnn-lstm {a.best_bleu4:.3f}, attention {b.best_bleu4:.3f}, "
        f"fixed report {a.baseline_bleu4:.3f}"
    )
    print(
        f"test BLEU-4 (beam 3): cnn-lstm {test_a.model.values['BLEU-4']:.3f}, "
        f"attention {test_b.model.values['BLEU-4']:.3f}, fixed report {test_a.baseline.values['BLEU-4']:.3f}"
    )
    assert a.baseline_bleu4 == b.baseline_bleu4  # the same split, the same floor
    assert a.best_bleu4 >= a.baseline_bleu4 + 0.2
    assert b.best_bleu4 >= a.best_bleu4
    assert test_a.model.values["BLEU-4"] >= test_a.baseline.values["BLEU-4"] + 0.2
    assert test_b.model.values["BLEU-4"] >= test_a.model.values["BLEU-4"]


def test_training_is_deterministic_and_resumes(records: list[StudyRecord], tmp_path: Path) -> None:
    few = [r for r in records if r.split == "train"][:90] + [r for r in records if r.split == "val"][:20]
    first = _train(few, tmp_path / "one", "cnn-lstm", 2, 2e-3)
    second = _train(few, tmp_path / "two", "cnn-lstm", 2, 2e-3)
    assert first.history == second.history
    one = load_checkpoint(tmp_path / "one" / "last")
    assert one.model_version == load_checkpoint(tmp_path / "two" / "last").model_version
    # Resuming goes on from the saved epoch with the saved optimiser, split and vocabulary.
    options = TrainOptions(
        architecture="cnn-lstm",
        preset="tiny",
        epochs=3,
        lr=2e-3,
        batch_size=16,
        patience=3,
        progress=False,
        resume=True,
    )
    resumed = train(few, tmp_path / "one", options)
    assert [h["epoch"] for h in resumed.history] == [1.0, 2.0, 3.0]
    assert resumed.history[:2] == first.history
    assert load_checkpoint(tmp_path / "one" / "last").split == one.split
