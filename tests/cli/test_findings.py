"""`gateway findings` end to end on the synthetic set written in the IU formats."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from gateway.cli import findings as findings_cli
from gateway.settings import Settings


def _run(*argv: str) -> int:
    common = argparse.ArgumentParser(add_help=False)
    parser = argparse.ArgumentParser(prog="gateway")
    findings_cli.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["findings", *argv])
    code: int = args.func(args, Settings())
    return code


@pytest.mark.parametrize(
    ("fmt", "model"),
    [("iu-xml", "cnn-lstm"), ("kaggle", "attention"), ("r2gen", "cnn-lstm"), ("archive", "attention")],
)
def test_train_eval_generate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, model: str
) -> None:
    assert (
        _run("synthesize", "--out", str(tmp_path / "data"), "--format", fmt, "--count", "40", "--size", "32")
        == 0
    )
    data = capsys.readouterr().out.split("--data ")[1].split()[0]
    out = tmp_path / "run"
    common = [
        "--data",
        data,
        "--format",
        fmt,
        "--model",
        model,
        "--preset",
        "tiny",
        "--out",
        str(out),
        "--image-size",
        "32",
        "--batch-size",
        "8",
    ]
    assert _run("train", *common, "--epochs", "1") == 0
    assert (out / "best" / "model.safetensors").is_file() and (out / "last" / "training_state.pt").is_file()
    assert _run("train", *common, "--epochs", "2", "--resume") == 0
    assert "epoch 2:" in capsys.readouterr().out
    assert (
        _run(
            "eval",
            "--checkpoint",
            str(out),
            "--data",
            data,
            "--format",
            fmt,
            "--beam-size",
            "2",
            *([] if fmt == "iu-xml" else ["--no-meteor"]),
        )
        == 0
    )
    report = capsys.readouterr().out
    for metric in ("BLEU-1", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr", "fixed report", "CheXpert micro-F1"):
        assert metric in report
    image = next(p for p in (tmp_path / "data").rglob("*") if p.suffix in (".png", ".dcm"))
    assert _run("generate", "--checkpoint", str(out), str(image), "--beam-size", "1") == 0
    assert f"# {image}" in capsys.readouterr().out


def test_generate_without_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run("generate", str(tmp_path / "x.png")) == 2
    assert "no checkpoint" in capsys.readouterr().err
