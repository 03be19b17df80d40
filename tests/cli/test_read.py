from __future__ import annotations

import argparse
import json
from pathlib import Path

import pymupdf
import pytest

from gateway.cli import read as read_cli
from gateway.settings import Settings


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser()
    sub = root.add_subparsers(dest="command", required=True)
    read_cli.register(sub, argparse.ArgumentParser(add_help=False))
    return root


def report(path: Path) -> Path:
    doc = pymupdf.open()
    page = doc.new_page()
    page.insert_text((72, 100), "印象：右肺结节，见图1。", fontname="china-s", fontsize=11)
    page.insert_image(
        pymupdf.Rect(72, 120, 172, 220), pixmap=pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 64, 64), 0)
    )
    page.insert_text((72, 234), "图1 结节", fontname="china-s", fontsize=9)
    doc.save(path)
    return path


def test_read_json_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(
        ["read", str(report(tmp_path / "r.pdf")), "--json", "--out-dir", str(tmp_path / "f")]
    )
    assert args.func(args, Settings()) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["paragraphs"][0]["section"] == "impression"
    assert doc["figures"][0]["label"] == "figure:1"
    assert (tmp_path / "f" / doc["figures"][0]["artifact"]).is_file()


def test_read_error_exit_code(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"not a pdf")
    args = parser().parse_args(["read", str(bad), "--engine", "tesseract"])
    assert args.func(args, Settings()) == 1
    assert "unknown document type" in capsys.readouterr().err


def test_inference_defaults() -> None:
    args = parser().parse_args(["inference"])
    assert (args.host, args.port) == ("127.0.0.1", 8090)
