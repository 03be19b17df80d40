"""`gateway findings` sub-commands: train, eval and generate drafting models, and write a synthetic set."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path
from typing import Any

from gateway.settings import Settings

_FORMATS = ("iu-xml", "r2gen", "kaggle", "archive")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("findings", help="draft findings from chest X-rays")
    commands = parser.add_subparsers(dest="findings_command", required=True, metavar="SUBCOMMAND")

    train = commands.add_parser("train", parents=[common], help="train a drafting model")
    train.add_argument("--data", type=Path, required=True, help="data set folder or file")
    train.add_argument("--format", choices=_FORMATS, required=True)
    train.add_argument("--model", choices=("cnn-lstm", "attention", "vit-gpt2"), default="cnn-lstm")
    train.add_argument("--out", type=Path, required=True, help="run folder: OUT/last and OUT/best")
    train.add_argument("--epochs", type=int, default=30)
    train.add_argument("--resume", action="store_true", help="continue from OUT/last")
    train.add_argument(
        "--preset",
        choices=("full", "tiny"),
        default="full",
        help="full = ResNet-101 at 224 px; tiny = a small net at 64 px (synthetic set)",
    )
    train.add_argument(
        "--protocol",
        choices=("r2gen", "seed"),
        default="r2gen",
        help="text rules and split: R2Gen's (comparable with published scores) or the seed's",
    )
    train.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="local microsoft/resnet-101 snapshot folder for ImageNet weights",
    )
    train.add_argument("--batch-size", type=int, default=16)
    train.add_argument("--lr", type=float, default=None, help="default 1e-3 (cnn-lstm) or 3e-4 (attention)")
    train.add_argument("--patience", type=int, default=5, help="epochs without a better val BLEU-4")
    train.add_argument("--image-size", type=int, default=None)
    train.add_argument("--seed", type=int, default=42)
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    train.add_argument(
        "--augment",
        action="store_true",
        help="random resized crop, ±5° rotation, brightness/contrast (train only)",
    )
    train.add_argument(
        "--precision", choices=("auto", "fp32", "bf16"), default="auto", help="bf16 autocast; auto = on a GPU"
    )
    train.add_argument("--compile", action="store_true", help="torch.compile the training step")
    train.add_argument("--compile-backend", default="inductor")
    train.add_argument("--workers", type=int, default=0, help="image-decoding worker processes")
    train.add_argument("--image-cache", type=Path, default=None, help="folder for decoded images")
    train.add_argument(
        "--context",
        action="store_true",
        help="condition the decoder on age, sex and indication (a text prefix; kept in the checkpoint)",
    )
    train.add_argument("--context-tokens", type=int, default=8, help="indication words in the context prefix")
    train.set_defaults(func=_train)

    evaluate = commands.add_parser(
        "eval", parents=[common], help="score a checkpoint beside the fixed report"
    )
    evaluate.add_argument("--checkpoint", type=Path, required=True)
    evaluate.add_argument("--data", type=Path, required=True)
    evaluate.add_argument("--format", choices=_FORMATS, required=True)
    evaluate.add_argument("--split", choices=("train", "val", "test"), default="test")
    evaluate.add_argument("--beam-size", type=int, default=None, help="default: findings.beam_size")
    evaluate.add_argument("--no-meteor", action="store_true", help="skip METEOR (it needs Java)")
    evaluate.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    evaluate.set_defaults(func=_eval)

    generate = commands.add_parser("generate", parents=[common], help="draft findings for image files")
    generate.add_argument("--checkpoint", type=Path, default=None, help="default: findings.checkpoint")
    generate.add_argument("files", type=Path, nargs="+", metavar="FILE", help="DICOM or PNG files")
    generate.add_argument(
        "--study",
        action="store_true",
        help="treat all files as one study (default: DICOM by StudyInstanceUID, PNG alone)",
    )
    generate.add_argument("--beam-size", type=int, default=None)
    generate.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    generate.set_defaults(func=_generate)

    export = commands.add_parser(
        "export", parents=[common], help="write the archive manifest of read CR/DX studies from the index"
    )
    export.add_argument("--out", type=Path, required=True, help="folder for archive.jsonl")
    export.add_argument("--since", type=_date, default=None, help="first study date, YYYY-MM-DD")
    export.add_argument(
        "--deidentify",
        action="store_true",
        help="pseudonymous IDs, names/IDs/dates stripped from text, pixels written as PNG",
    )
    export.set_defaults(func=_export)

    label = commands.add_parser(
        "label", parents=[common], help="label a report's 14 CheXpert observations, or validate the labeller"
    )
    label.add_argument("text", nargs="*", help="report text (default: standard input)")
    label.add_argument("--mapping", type=Path, default=None, help="default: mappings/chexpert.yaml")
    label.add_argument(
        "--validate", type=Path, default=None, help="a labelled sentence set (TSV) to score against"
    )
    label.add_argument("--show-errors", action="store_true")
    label.set_defaults(func=_label)

    synth = commands.add_parser("synthesize", parents=[common], help="write the synthetic data set")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument(
        "--format",
        choices=(*_FORMATS, "dicom"),
        required=True,
        help="dicom = DX images and SR reports to push into the gateway (storescu), for `export`",
    )
    synth.add_argument("--count", type=int, default=500)
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.set_defaults(func=_synthesize)


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from exc


def _export(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.findings.export import ExportOptions, export_archive
    from gateway.index.db import open_index

    sessions = open_index(settings.index_url)
    summary = export_archive(sessions, args.out, ExportOptions(since=args.since, deidentify=args.deidentify))
    splits = ", ".join(f"{k} {v}" for k, v in summary.splits.items())
    print(f"{summary.studies} studies ({summary.reviewed} with a reviewed draft as target): {splits}")
    for why, count in sorted(summary.skipped.items()):
        print(f"skipped {count}: {why}")
    print(f"manifest: {summary.manifest}; use --data {args.out} --format archive")
    return 0 if summary.studies else 1


def _threads() -> None:
    import torch

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 8)))


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.findings.data import load_studies
    from gateway.findings.training import TrainOptions, train

    _threads()
    records = load_studies(args.data, args.format)
    lr = args.lr if args.lr is not None else (1e-3 if args.model == "cnn-lstm" else 3e-4)
    options = TrainOptions(
        architecture=args.model,
        preset=args.preset,
        protocol=args.protocol,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        patience=args.patience,
        seed=args.seed,
        image_size=args.image_size,
        pretrained=args.pretrained,
        device=args.device,
        resume=args.resume,
        augment=args.augment,
        precision=args.precision,
        compile=args.compile,
        compile_backend=args.compile_backend,
        workers=args.workers,
        image_cache=args.image_cache,
        context=args.context,
        context_tokens=args.context_tokens,
    )
    source = {"format": args.format, "path": str(args.data)}
    print(f"{len(records)} studies from {args.data} ({args.format})")
    result = train(
        records,
        args.out,
        options,
        source,
        on_epoch=lambda h: print(
            f"epoch {int(h['epoch'])}: loss {h['loss']:.4f} val BLEU-4 {h['val_bleu4']:.4f}", flush=True
        ),
    )
    print(f"best val BLEU-4 {result.best_bleu4:.4f}; fixed-report baseline {result.baseline_bleu4:.4f}")
    print(f"checkpoint: {args.out / 'best'}")
    return 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.findings.checkpoint import load_checkpoint
    from gateway.findings.data import load_studies
    from gateway.findings.metrics import METRICS
    from gateway.findings.training import evaluate, pick_device

    _threads()
    checkpoint = load_checkpoint(args.checkpoint, pick_device(args.device or settings.findings.device))
    records = load_studies(args.data, args.format)
    beam = args.beam_size or settings.findings.beam_size
    result = evaluate(
        checkpoint,
        records,
        args.split,
        beam_size=beam,
        length_penalty=settings.findings.length_penalty,
        meteor=not args.no_meteor,
    )
    context = "with the context prefix" if checkpoint.model.config.context else "without context"
    print(
        f"{checkpoint.model_name} {checkpoint.model_version}: {result.studies} {args.split} studies, "
        f"beam {beam}, {context}"
    )
    print(f"{'metric':<8} {'model':>8} {'fixed report':>13}")
    for name in METRICS:
        row = [result.model.values.get(name), result.baseline.values.get(name)]
        cells = [f"{v:8.4f}" if v is not None else f"{'n/a':>8}" for v in row]
        print(f"{name:<8} {cells[0]} {cells[1]:>13}")
    for name, why in result.model.unavailable.items():
        print(f"{name} unavailable: {why}")
    if result.clinical is not None and result.baseline_clinical is not None:
        model_c, fixed_c = result.clinical, result.baseline_clinical
        print(f"{'CheXpert micro-F1':<18} {model_c.micro_f1:8.4f} {fixed_c.micro_f1:13.4f}")
        print(f"{'CheXpert macro-F1':<18} {model_c.macro_f1:8.4f} {fixed_c.macro_f1:13.4f}")
        print(
            f"(rule labeller, mappings/chexpert.yaml; present vs not; macro over the "
            f"{model_c.observations_scored} observations positive in a reference or a draft)"
        )
    print(f"fixed report: {result.baseline_report!r}")
    return 0


def _label(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.findings.chexpert import format_validation, labeller, read_validation_set, validate

    lab = labeller(args.mapping)
    if args.validate is not None:
        rows = read_validation_set(args.validate)
        table, wrong = validate(rows, lab)
        print(
            f"{len(rows)} sentences ({sum(r.lang == 'zh' for r in rows)} Chinese); "
            f"{len(wrong)} labelled otherwise"
        )
        print(format_validation(table))
        for row, predicted in wrong if args.show_errors else []:
            print(f"line {row.line}: {row.text}\n  expected {row.labels}\n  labelled {predicted}")
        return 0
    text = " ".join(args.text) if args.text else sys.stdin.read()
    for name, status in lab.label_report(text).items():
        print(f"{name}: {status}")
    return 0


def _generate(args: argparse.Namespace, settings: Settings) -> int:
    import pydicom

    from gateway.findings.checkpoint import load_checkpoint
    from gateway.findings.images import is_dicom
    from gateway.findings.service import Drafter, StudyImage
    from gateway.findings.training import pick_device

    _threads()
    path = args.checkpoint or settings.findings.checkpoint
    if path is None:
        print(
            "gateway findings: no checkpoint given and none configured (findings.checkpoint)", file=sys.stderr
        )
        return 2
    findings = settings.findings.model_copy(
        update={"beam_size": args.beam_size or settings.findings.beam_size}
    )
    device = pick_device(args.device or findings.device)
    drafter = Drafter(load_checkpoint(path, device), findings, device)
    groups: dict[str, list[StudyImage]] = {}
    for file in args.files:
        key, uid, view = str(file), file.name, None
        if is_dicom(file):
            ds = pydicom.dcmread(file, stop_before_pixels=True)
            uid, view = str(ds.get("SOPInstanceUID", file.name)), ds.get("ViewPosition") or None
            key = str(ds.get("StudyInstanceUID", file))
        groups.setdefault("all" if args.study else key, []).append(StudyImage(uid, file, view))
    drafts = drafter.draft_studies(list(groups.values()))
    for images, draft in zip(groups.values(), drafts, strict=True):
        print(f"# {', '.join(str(i.path) for i in images)} ({draft.model_name} {draft.model_version})")
        for sentence in draft.sentences:
            print(f"{sentence.text}.  [{sentence.sop_instance_uid}]")
    return 0


def _synthesize(args: argparse.Namespace, settings: Settings) -> int:
    from gateway.findings.synthetic import generate, write_dataset, write_push_set

    if args.format == "dicom":
        written = write_push_set(generate(args.count, args.seed, args.size), args.out, args.seed)
        print(f"{len(written)} studies (two DX images and an SR report each) written to {args.out}")
        return 0
    data = write_dataset(generate(args.count, args.seed, args.size), args.out, args.format)
    print(f"{args.count} synthetic studies written; use --data {data} --format {args.format}")
    return 0
