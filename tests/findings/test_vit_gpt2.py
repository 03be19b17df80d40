"""The third model: transformers' VisionEncoderDecoderModel (ViT → GPT-2), from config or a local snapshot."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from transformers import GPT2Config, VisionEncoderDecoderConfig, VisionEncoderDecoderModel, ViTConfig

from gateway.cli import findings as findings_cli
from gateway.findings.checkpoint import load_checkpoint
from gateway.findings.decoding import beam_search, greedy
from gateway.findings.models import PRESETS, ModelConfig, VitGpt2, build_model
from gateway.settings import Settings


def _run(*argv: str) -> int:
    common = argparse.ArgumentParser(add_help=False)
    parser = argparse.ArgumentParser(prog="gateway")
    findings_cli.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["findings", *argv])
    code: int = args.func(args, Settings())
    return code


def test_built_from_config_and_decodes() -> None:
    config = ModelConfig(
        architecture="vit-gpt2", vocab_size=40, max_tokens=8, **{**PRESETS["tiny"], "image_size": 32}
    )
    model = build_model(config).eval()
    assert isinstance(model, VitGpt2) and isinstance(model.model, VisionEncoderDecoderModel)
    images = torch.rand(3, 2, 1, 32, 32)
    assert model(images, torch.randint(0, 40, (3, 5))).shape == (3, 5, 40)
    with torch.no_grad():
        assert beam_search(model, images, 8, 1) == greedy(model, images, 8)
    # two views: the memory holds both views' patch states
    assert model.encode(images).shape[1] == 2 * ((32 // 8) ** 2 + 1)


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local VisionEncoderDecoderModel folder, as `save_pretrained` writes it (no download involved)."""
    folder = tmp_path_factory.mktemp("ved")
    encoder = ViTConfig(
        image_size=32,
        patch_size=8,
        hidden_size=48,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=96,
    )
    decoder = GPT2Config(
        vocab_size=100,
        n_positions=64,
        n_embd=48,
        n_layer=1,
        n_head=4,
        add_cross_attention=True,
        is_decoder=True,
    )
    torch.manual_seed(3)
    VisionEncoderDecoderModel(
        config=VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    ).save_pretrained(folder)
    return folder


def test_train_eval_generate_from_local_pretrained_weights(
    snapshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        _run(
            "synthesize",
            "--out",
            str(tmp_path / "data"),
            "--format",
            "r2gen",
            "--count",
            "30",
            "--size",
            "32",
        )
        == 0
    )
    data = capsys.readouterr().out.split("--data ")[1].split()[0]
    out = tmp_path / "run"
    assert (
        _run(
            *("train", "--data", data, "--format", "r2gen", "--model", "vit-gpt2", "--preset", "tiny"),
            *("--out", str(out), "--image-size", "32", "--batch-size", "8", "--epochs", "1"),
            *("--pretrained", str(snapshot), "--device", "cpu"),
        )
        == 0
    )
    checkpoint = load_checkpoint(out / "best")
    model = checkpoint.model
    assert isinstance(model, VitGpt2) and checkpoint.model_name == "findings-vit-gpt2"
    assert model.config.encoder_config is not None and model.config.encoder_config["hidden_size"] == 48
    # the encoder started from the snapshot's weights (one epoch moves them only a little)
    original = VisionEncoderDecoderModel.from_pretrained(str(snapshot), local_files_only=True)
    start = original.encoder.embeddings.patch_embeddings.projection.weight
    trained = model.model.encoder.embeddings.patch_embeddings.projection.weight
    fresh = build_model(model.config).model.encoder.embeddings.patch_embeddings.projection.weight
    assert (trained - start).abs().mean() < (fresh - start).abs().mean() / 4
    assert (
        _run(
            "eval",
            "--checkpoint",
            str(out),
            "--data",
            data,
            "--format",
            "r2gen",
            "--no-meteor",
            "--beam-size",
            "2",
            "--device",
            "cpu",
        )
        == 0
    )
    assert "CheXpert micro-F1" in capsys.readouterr().out
    image = next((tmp_path / "data").rglob("*.png"))
    assert _run("generate", "--checkpoint", str(out), str(image), "--beam-size", "2", "--device", "cpu") == 0
    assert "findings-vit-gpt2" in capsys.readouterr().out


def test_a_missing_snapshot_is_an_error_not_a_download(tmp_path: Path) -> None:
    config = ModelConfig(architecture="vit-gpt2", vocab_size=40, **PRESETS["tiny"])
    with pytest.raises(OSError):
        build_model(config, tmp_path / "nothing-here")
