"""Ablation of the clinical-context prefix: each model trained with and without it, scored on the test split.

Not a test. For every model in ``--models`` it trains twice on the same data, split and seed (``--context``
off and on), evaluates both on the held-out test split with beam search, and prints one Markdown table:
BLEU-1..4, METEOR, ROUGE-L, CIDEr, the CheXpert labeller's micro/macro-F1, and the fixed most-common-report
floor; then the labeller's F1 per observation (``--observations``), where a context shows most. ::

    python benchmarks/findings_ablation.py --data DIR --format archive --out /tmp/ablation \\
        [--models cnn-lstm attention vit-gpt2] [--epochs cnn-lstm=8 attention=5 vit-gpt2=4]

Each run's checkpoint stays under ``--out`` (``<model>-context`` / ``<model>-plain``), so a table can be
re-scored with ``gateway findings eval``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from gateway.findings.checkpoint import load_checkpoint
from gateway.findings.data import FORMATS, load_studies
from gateway.findings.metrics import METRICS
from gateway.findings.training import EvalResult, TrainOptions, evaluate, train

_LR = {"cnn-lstm": 2e-3, "attention": 1e-3, "vit-gpt2": 1e-3}
_EPOCHS = {"cnn-lstm": 10, "attention": 6, "vit-gpt2": 5}
_OBSERVATIONS = ["Cardiomegaly", "Pleural Effusion", "Lung Opacity", "No Finding"]


def _row(name: str, result: EvalResult, baseline: bool = False) -> str:
    scores = result.baseline if baseline else result.model
    clinical = result.baseline_clinical if baseline else result.clinical
    cells = [f"{scores.values[m]:.4f}" if m in scores.values else "n/a" for m in METRICS]
    if clinical is not None:
        cells += [f"{clinical.micro_f1:.4f}", f"{clinical.macro_f1:.4f}"]
    return f"| {name} | " + " | ".join(cells) + " |"


def _observations(name: str, result: EvalResult, names: list[str], baseline: bool = False) -> str:
    clinical = result.baseline_clinical if baseline else result.clinical
    table = clinical.per_observation if clinical is not None else {}
    cells = [f"{table[n][2]:.3f}" if n in table else "n/a" for n in names]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--format", choices=FORMATS, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["cnn-lstm", "attention", "vit-gpt2"])
    parser.add_argument("--epochs", nargs="*", default=[], help="MODEL=N, e.g. attention=6")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beam-size", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-meteor", action="store_true")
    parser.add_argument("--observations", nargs="*", default=_OBSERVATIONS)
    parser.add_argument("--reuse", action="store_true", help="score the checkpoints already under --out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    epochs = {**_EPOCHS, **{k: int(v) for k, v in (e.split("=", 1) for e in args.epochs)}}
    records = load_studies(args.data, args.format)
    with_context = sum(1 for r in records if r.context and any(v is not None for v in r.context.values()))
    print(f"{len(records)} studies from {args.data} ({args.format}), {with_context} with a context")
    rows: list[str] = []
    per_observation: list[str] = []
    floor: EvalResult | None = None
    for architecture in args.models:
        for context in (False, True):
            folder = args.out / f"{architecture}-{'context' if context else 'plain'}"
            options = TrainOptions(
                architecture=architecture,  # type: ignore[arg-type]
                preset=args.preset,
                epochs=epochs[architecture],
                patience=epochs[architecture],
                batch_size=args.batch_size,
                lr=_LR.get(architecture, 1e-3),
                image_size=args.image_size,
                device="cpu",
                progress=False,
                context=context,
            )
            start = time.perf_counter()
            if not (args.reuse and (folder / "best" / "config.json").is_file()):
                train(records, folder, options, {"format": args.format, "path": str(args.data)})
            trained = time.perf_counter() - start
            checkpoint = load_checkpoint(folder)
            result = evaluate(
                checkpoint, records, "test", beam_size=args.beam_size, meteor=not args.no_meteor
            )
            floor = floor or result
            label = f"{architecture} {'+ context' if context else 'plain'} ({checkpoint.model_version})"
            rows.append(_row(label, result))
            per_observation.append(_observations(label, result, args.observations))
            print(
                f"{label}: epoch {checkpoint.epoch} of {epochs[architecture]}, trained in {trained:.0f} s, "
                f"{result.studies} test studies",
                flush=True,
            )
            print(rows[-1], flush=True)
    if floor is not None:
        rows.append(_row("fixed report", floor, baseline=True))
        per_observation.append(_observations("fixed report", floor, args.observations, baseline=True))
    header = ["model", *METRICS, "CheXpert micro-F1", "CheXpert macro-F1"]
    print()
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    print("\n".join(rows))
    print()
    print("| model (CheXpert F1 per observation) | " + " | ".join(args.observations) + " |")
    print("|" + "---|" * (len(args.observations) + 1))
    print("\n".join(per_observation))


if __name__ == "__main__":
    main()
