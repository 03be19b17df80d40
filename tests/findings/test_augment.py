"""Augmentation, and the GPU-minded training path (bf16 autocast, torch.compile, decoding workers, cache)
run on the CPU so that it is exercised where no GPU is lent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gateway.findings.augment import Augment, augment
from gateway.findings.checkpoint import load_checkpoint
from gateway.findings.data import DataFormat, load_studies
from gateway.findings.synthetic import generate, write_dataset
from gateway.findings.text import TextRules
from gateway.findings.training import TrainOptions, evaluate, prepare, split_studies, train


def _images() -> torch.Tensor:
    images = torch.zeros(3, 2, 1, 32, 32)
    images[..., 12:20, 12:20] = 1.0
    return images


def test_augment_is_seeded_bounded_and_changes_the_image() -> None:
    images = _images()
    a = augment(images, torch.Generator().manual_seed(1))
    b = augment(images, torch.Generator().manual_seed(1))
    c = augment(images, torch.Generator().manual_seed(2))
    assert a.shape == images.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert (a - images).abs().mean() > 0.01
    # views and studies draw their own parameters
    assert not torch.equal(a[0, 0], a[0, 1]) and not torch.equal(a[0, 0], a[1, 0])


def test_augment_with_nothing_to_do_is_the_identity() -> None:
    images = torch.rand(2, 2, 1, 16, 16)
    none = Augment(scale=(1.0, 1.0), ratio=(1.0, 1.0), degrees=0.0, brightness=0.0, contrast=0.0)
    assert torch.allclose(augment(images, torch.Generator().manual_seed(0), none), images, atol=1e-5)


def test_a_crop_enlarges_the_content() -> None:
    zoom = Augment(scale=(0.25, 0.25), ratio=(1.0, 1.0), degrees=0.0, brightness=0.0, contrast=0.0)
    out = augment(_images(), torch.Generator().manual_seed(0), zoom)
    # a quarter of the area, shown at full size: the square covers more pixels, or left the crop entirely
    lit = (out > 0.5).sum(dim=(-1, -2)).flatten()
    assert all(int(n) == 0 or int(n) > 64 for n in lit)


@pytest.mark.parametrize(("fmt", "context"), [("r2gen", False), ("iu-xml", True)])
def test_training_with_augmentation_bf16_compile_workers_and_cache(
    tmp_path: Path, fmt: DataFormat, context: bool
) -> None:
    """The GPU-minded path on the CPU, with and without the clinical-context prefix (OpenI's INDICATION)."""
    records = load_studies(write_dataset(generate(30, seed=5, size=32), tmp_path / "data", fmt), fmt)
    assert all(r.context for r in records) == context
    cache = tmp_path / "cache"
    options = TrainOptions(
        architecture="attention",
        preset="tiny",
        epochs=1,
        batch_size=8,
        image_size=32,
        device="cpu",
        progress=False,
        augment=True,
        precision="bf16",
        compile=True,
        compile_backend="eager",  # dynamo capture without inductor's C++ build (minutes on this CPU)
        workers=2,
        image_cache=cache,
        context=context,
    )
    result = train(records, tmp_path / "run", options, {"format": fmt})
    assert result.epochs == 1 and result.history[0]["loss"] > 0
    data = json.loads((tmp_path / "run" / "best" / "data.json").read_text())
    assert data["augment"] is True and data["precision"] == "bf16" and data["compile"] is True
    assert data["context"] is context
    split = split_studies(records, (0.7, 0.1, 0.2), 42)
    assert len(list(cache.glob("*.npy"))) == len(split.train) + len(split.val)
    # the cache gives what decoding gives
    rules = TextRules.for_protocol("r2gen")
    cached = prepare(records, split.train, rules, 32, workers=0, cache=cache)
    fresh = prepare(records, split.train, rules, 32)
    assert torch.equal(cached.images, fresh.images)
    # evaluation never augments: two runs agree
    checkpoint = load_checkpoint(tmp_path / "run" / "best")
    first = evaluate(checkpoint, records, "test", beam_size=2, meteor=False)
    second = evaluate(checkpoint, records, "test", beam_size=2, meteor=False)
    assert first.samples == second.samples and first.model.values == second.model.values
