"""Throughput of the drafting models: generation images/s at beam 1 and 3, and training steps/s.

Not a test. Run ``python benchmarks/findings.py [--preset tiny|full] [--device auto|cpu|cuda]``; it uses the
GPU when present (with bfloat16 autocast, as training and service do). Weights are random: speed does not
depend on them.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    print(f"device {device}, preset {args.preset}, batch {args.batch}, {args.tokens} tokens")
    for architecture in ("cnn-lstm", "attention"):
        torch.manual_seed(0)
        config = ModelConfig(
            architecture=architecture,
            vocab_size=760,
            max_tokens=args.tokens,  # type: ignore[arg-type]
            **PRESETS[args.preset],
        )
        model = build_model(config).to(device).eval()
        with torch.no_grad():  # no early <end>, so every image decodes the full length
            model.head.bias[2] = -1e4
        size = config.image_size
        images = torch.rand(args.batch, 2, 1, size, size, device=device)
        for beam in (1, 3):
            with autocast(device):
                greedy(model, images[:1], 2) if beam == 1 else beam_search(model, images[:1], 2, beam)
                _sync(device)
                start = time.perf_counter()
                for _ in range(args.repeats):
                    if beam == 1:
                        greedy(model, images, args.tokens)
                    else:
                        beam_search(model, images, args.tokens, beam)
                _sync(device)
            elapsed = time.perf_counter() - start
            print(
                f"{architecture:9s} generate beam {beam}: {args.batch * args.repeats / elapsed:8.2f} images/s"
            )
        model.train()
        optimiser = torch.optim.AdamW(model.parameters(), lr=1e-4)
        inputs = torch.randint(4, 760, (args.batch, args.tokens), device=device)
        loss_fn = nn.CrossEntropyLoss()
        steps = args.repeats * 2
        for step in range(steps + 1):
            if step == 1:
                _sync(device)
                start = time.perf_counter()
            with autocast(device):
                logits = model(images, inputs)
            loss = loss_fn(logits.float().flatten(0, 1), inputs.flatten())
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        _sync(device)
        elapsed = time.perf_counter() - start
        print(f"{architecture:9s} train: {steps / elapsed:8.2f} steps/s (batch {args.batch})")


if __name__ == "__main__":
    main()
