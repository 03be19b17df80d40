"""`gateway read` (read one report document) and `gateway inference` (serve reading over HTTP)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from gateway.settings import Settings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    read = sub.add_parser("read", parents=[common], help="read a report (PDF, image, DICOM PDF/SR/SC)")
    read.add_argument("file", type=Path, metavar="FILE")
    read.add_argument(
        "--engine", default=None, help="OCR engine: rapidocr (default), tesseract, transformers"
    )
    read.add_argument("--json", action="store_true", help="print the document JSON")
    read.add_argument("--out-dir", type=Path, default=None, help="write figure images here")
    read.set_defaults(func=_read)

    inference = sub.add_parser("inference", parents=[common], help="serve report reading over HTTP")
    inference.add_argument("--host", default="127.0.0.1")
    inference.add_argument("--port", type=int, default=8090)
    inference.set_defaults(func=_inference)


def _read(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.errors import GatewayError
    from gateway.reading import read_path

    reading = settings.reading
    if args.engine:
        reading = reading.model_copy(update={"engine": args.engine})
    try:
        result = read_path(args.file, reading)
    except GatewayError as exc:
        print(f"gateway read: {args.file}: {exc}", file=sys.stderr)
        return 1
    doc = result.document
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        for name, (_media, data) in result.figure_images.items():
            (args.out_dir / Path(name).name).write_bytes(data)
    if args.json:
        print(json.dumps(doc.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return 0
    print(f"# {args.file} ({doc.source_kind}, {doc.engine.name} {doc.engine.version}, status {doc.status})")
    for para in doc.paragraphs:
        section = f"[{para.section}] " if para.section else ""
        print(f"{section}{para.text}")
    for fig in doc.figures:
        print(f"figure {fig.label or '?'} page {fig.page}: {fig.caption or ''} -> {fig.artifact}")
    for warning in doc.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _inference(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.inference.service import serve

    serve(settings.reading, host=args.host, port=args.port, findings=settings.findings)
    return 0
