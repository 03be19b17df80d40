"""Throughput of the drafting models: generation and training images/s, and image decoding images/s.

Not a test. Run ``python benchmarks/findings.py [--preset tiny|full] [--device auto|cpu|cuda]``; it uses the
GPU when present (with bfloat16 autocast, as training and service do). Weights are random: speed does not
depend on them. A study is two images (frontal and lateral); the cnn-lstm reads only the frontal one but
both are counted, as both are loaded. ``--decode N`` also times the data path: N synthetic DICOM studies
decoded by 0 and by ``--workers`` processes, and read back from the decoded-image cache. ``--context`` times
models that read the 10-token clinical-context prefix (age, sex, 8 indication words) before ``<start>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

from gateway.findings.augment import augment
from gateway.findings.decoding import beam_search, greedy
from gateway.findings.models import PRESETS, ModelConfig, build_model
from gateway.findings.training import autocast, pick_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=60, help="decoded length (no early <end>: worst case)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the training step")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--augment", action="store_true", help="augment training batches (on the device)")
    parser.add_argument("--decode", type=int, default=0, help="also time decoding N synthetic DICOM studies")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--context", action="store_true", help="models with the clinical-context prefix")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(
        f"device {device}, preset {args.preset}, batch {args.batch} studies ({2 * args.batch} images), "
        f"{args.tokens} tokens, precision {args.precision}, compile {args.compile}, augment {args.augment}, "
        f"context {args.context}"
    )
    for architecture in ("cnn-lstm", "attention", "vit-gpt2"):
        torch.manual_seed(0)
        config = ModelConfig(
            architecture=architecture,
            vocab_size=760,
            max_tokens=args.tokens,  # type: ignore[arg-type]
            context=args.context,
            **PRESETS[args.preset],
        )
        model = build_model(config).to(device).eval()
        with torch.no_grad():  # no early <end>, so every image decodes the full length
            head = model.model.decoder.lm_head if architecture == "vit-gpt2" else model.head
            if head.bias is not None:
                head.bias[2] = -1e4
            else:  # GPT-2's head has no bias: a zero row makes <end> rare, not impossible
                head.weight[2] = 0.0
        size = config.image_size
        images = torch.rand(args.batch, 2, 1, size, size, device=device)
        length = config.prefix_length
        prefix = torch.randint(4, 760, (args.batch, length), device=device) if length else None
        for beam in (1, 3):
            with autocast(device, args.precision):
                one = None if prefix is None else prefix[:1]
                greedy(model, images[:1], 2, one) if beam == 1 else beam_search(
                    model, images[:1], 2, beam, 1.0, one
                )
                _sync(device)
                start = time.perf_counter()
                for _ in range(args.repeats):
                    if beam == 1:
                        greedy(model, images, args.tokens, prefix)
                    else:
                        beam_search(model, images, args.tokens, beam, 1.0, prefix)
                _sync(device)
            elapsed = time.perf_counter() - start
            rate = 2 * args.batch * args.repeats / elapsed
            print(f"{architecture:9s} generate beam {beam}: {rate:8.2f} images/s")
        model.train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        inputs = torch.randint(4, 760, (args.batch, args.tokens + length), device=device)
        loss_fn = nn.CrossEntropyLoss()
        steps = args.repeats * 2
        forward = torch.compile(model, backend=args.compile_backend) if args.compile else model
        generator = torch.Generator().manual_seed(0)
        for step in range(steps + 1):
            if step == 1:  # the first step (and any compilation) is not timed
                _sync(device)
                start = time.perf_counter()
            batch = augment(images, generator) if args.augment else images
            with autocast(device, args.precision):
                logits = forward(batch, inputs)
            loss = loss_fn(logits.float().flatten(0, 1), inputs.flatten())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        _sync(device)
        elapsed = time.perf_counter() - start
        print(
            f"{architecture:9s} train: {2 * args.batch * steps / elapsed:8.2f} images/s "
            f"({steps / elapsed:.2f} steps/s)"
        )
    if args.decode:
        _decoding(args.decode, args.workers)


def _decoding(count: int, workers: int) -> None:
    from gateway.findings.data import ImageRef, StudyRecord
    from gateway.findings.synthetic import generate, write_push_set
    from gateway.findings.text import TextRules
    from gateway.findings.training import prepare

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        written = write_push_set(generate(count, seed=1, size=512), folder / "dicom")
        records = [
            StudyRecord(
                str(w["study_uid"]),
                str(w["patient_id"]),
                "x",
                tuple(ImageRef(folder / "dicom" / f"{i:05d}-{v}.dcm", v) for v in ("PA", "LL")),
            )
            for i, w in enumerate(written)
        ]
        ids, rules = [r.study_id for r in records], TextRules()
        for label, n, cache in (
            ("decode, no workers", 0, None),
            (f"decode, {workers} workers", workers, None),
            (f"decode into cache, {workers} workers", workers, folder / "cache"),
            ("read decoded cache", 0, folder / "cache"),
        ):
            start = time.perf_counter()
            prepare(records, ids, rules, 224, workers=n, cache=cache)
            elapsed = time.perf_counter() - start
            print(f"{label:36s}: {2 * count / elapsed:8.1f} images/s (512 px DICOM → 224 px)")


if __name__ == "__main__":
    main()
