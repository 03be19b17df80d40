from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from gateway.findings.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from gateway.findings.data import Split
from gateway.findings.decoding import beam_search, greedy
from gateway.findings.models import PRESETS, CaptionModel, ModelConfig, build_model
from gateway.findings.text import TextRules, Vocabulary

VOCAB = Vocabulary(["<pad>", "<start>", "<end>", "<unk>", ".", "a", "b", "c", "d", "e"])


def _model(architecture: str, seed: int = 0) -> CaptionModel:
    torch.manual_seed(seed)
    config = ModelConfig(
        architecture=architecture,
        vocab_size=len(VOCAB),
        max_tokens=12,  # type: ignore[arg-type]
        **{**PRESETS["tiny"], "image_size": 32},
    )
    return build_model(config).eval()


def _images(batch: int = 3, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 2, 1, 32, 32, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("architecture", ["cnn-lstm", "attention"])
def test_teacher_forcing_shapes(architecture: str) -> None:
    model = _model(architecture)
    logits = model(_images(), torch.randint(0, len(VOCAB), (3, 7)))
    assert logits.shape == (3, 7, len(VOCAB))


@pytest.mark.parametrize("architecture", ["cnn-lstm", "attention"])
def test_beam_size_one_equals_greedy(architecture: str) -> None:
    for seed in range(3):
        model = _model(architecture, seed)
        images = _images(4, seed)
        assert beam_search(model, images, 12, beam_size=1) == greedy(model, images, 12)


@pytest.mark.parametrize("architecture", ["cnn-lstm", "attention"])
def test_beam_search_is_batched_and_deterministic(architecture: str) -> None:
    model = _model(architecture)
    images = _images(3)
    together = beam_search(model, images, 12, beam_size=3)
    alone = [beam_search(model, images[i : i + 1], 12, beam_size=3)[0] for i in range(3)]
    assert together == alone
    assert together == beam_search(_model(architecture), images, 12, beam_size=3)
    assert all(len(seq) <= 12 for seq in together)


def test_beam_search_finds_a_better_sequence_than_greedy_or_equal() -> None:
    model = _model("cnn-lstm", 5)
    images = _images(4, 5)

    def logp(seq: list[int], row: int) -> float:
        memory = model.encode(images[row : row + 1])
        state = model.start(memory)
        tokens, total = torch.tensor([VOCAB.start]), 0.0
        for token in [*seq, VOCAB.end][:12]:
            out, state = model.step(tokens, memory, state)
            total += float(out[0, token])
            tokens = torch.tensor([token])
        return total

    with torch.no_grad():
        for row, (g, b) in enumerate(
            zip(greedy(model, images, 12), beam_search(model, images, 12, 5, length_penalty=0.0), strict=True)
        ):
            if len(g) < 12 and len(b) < 12:
                assert logp(b, row) >= logp(g, row) - 1e-5


@pytest.mark.parametrize("architecture", ["cnn-lstm", "attention"])
def test_checkpoint_round_trip_gives_identical_output(tmp_path: Path, architecture: str) -> None:
    model = _model(architecture)
    split = Split(["s1"], ["s2"], ["s3"])
    version = save_checkpoint(tmp_path / "ck", model, VOCAB, TextRules(), split, {"format": "test"}, epoch=2)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.model_version == version and loaded.epoch == 2 and loaded.split == split
    assert loaded.vocab.tokens == VOCAB.tokens and loaded.model_name == f"findings-{architecture}"
    images = _images()
    assert beam_search(loaded.model, images, 12, 3) == beam_search(model, images, 12, 3)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded.model(images, torch.ones(3, 4, dtype=torch.long)),
            model(images, torch.ones(3, 4, dtype=torch.long)),
            rtol=0,
            atol=0,
        )


def _saved(tmp_path: Path) -> Path:
    save_checkpoint(tmp_path / "ck", _model("cnn-lstm"), VOCAB, TextRules(), Split(), {})
    return tmp_path / "ck"


def _edit_config(folder: Path, change: dict[str, object]) -> None:
    config = json.loads((folder / "config.json").read_text())
    for dotted, value in change.items():
        node = config
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    (folder / "config.json").write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda f: (f / "vocab.json").unlink(), "missing vocab.json"),
        (lambda f: _edit_config(f, {"schema_version": 99}), "schema version 99"),
        (lambda f: _edit_config(f, {"model.hidden_size": 50}), "shapes"),
        (lambda f: _edit_config(f, {"model.vocab_size": 11}), "vocab.json has 10 tokens"),
        (lambda f: _edit_config(f, {"model.architecture": "gpt"}), "config.json is invalid"),
        (
            lambda f: (f / "model.safetensors").write_bytes(
                (f / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0"
            ),
            "sha256",
        ),
        (lambda f: (f / "vocab.json").write_text('{"tokens": ["a"]}'), "vocab.json is invalid"),
    ],
)
def test_a_mismatched_checkpoint_is_refused(tmp_path: Path, damage: object, message: str) -> None:
    folder = _saved(tmp_path)
    damage(folder)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(folder)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
