"""Training and evaluation loops (teacher forcing, early stopping on validation BLEU-4).

A run writes ``OUT/last`` after every epoch (with the optimiser state, for ``--resume``) and ``OUT/best``
whenever validation BLEU-4 improves. Validation decodes greedily by default: it only has to rank epochs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm import tqdm

from gateway.findings.augment import augment
from gateway.findings.checkpoint import Checkpoint, load_checkpoint, save_checkpoint, training_state
from gateway.findings.chexpert import ClinicalScores, clinical_f1
from gateway.findings.context import ClinicalContext, encode_prefixes, prefix_words
from gateway.findings.data import ImageRef, Split, StudyRecord, split_studies
from gateway.findings.decoding import beam_search, greedy
from gateway.findings.images import ViewInfo, choose_views, is_dicom, read_dicom, read_png, resize
from gateway.findings.metrics import Scores, bleu4, most_common_report, score
from gateway.findings.models import (
    PRESETS,
    Architecture,
    CaptionModel,
    ModelConfig,
    build_model,
    pretrained_spec,
    pretrained_vit_gpt2,
)
from gateway.findings.text import SPECIALS, TextProtocol, TextRules, Vocabulary

__all__ = [
    "EvalResult",
    "Prepared",
    "TrainOptions",
    "TrainResult",
    "autocast",
    "context_prefixes",
    "decode",
    "evaluate",
    "pick_device",
    "prepare",
    "train",
]

log = logging.getLogger(__name__)
_RATIOS: dict[str, tuple[float, float, float]] = {
    "r2gen": (0.7, 0.1, 0.2),
    # The seed's 80/20; a tenth of its 80 is held out to choose the epoch.
    "seed": (0.72, 0.08, 0.2),
}


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


Precision = Literal["auto", "fp32", "bf16"]


def autocast(device: torch.device, precision: Precision = "auto") -> contextlib.AbstractContextManager[Any]:
    """bfloat16 mixed precision (no loss scaling needed): by default on a GPU only; ``bf16`` also on the CPU,
    ``fp32`` nowhere."""
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_views(images: Sequence[ImageRef], size: int) -> tuple[npt.NDArray[np.uint8], str | None]:
    """Frontal and lateral image of a study as ``(2, size, size)`` uint8, and the frontal SOP Instance UID."""
    arrays, infos, uids = [], [], []
    for ref in images:
        if is_dicom(ref.path):
            unit, info, uid = read_dicom(ref.path)
            if ref.view_position:
                info = ViewInfo(ref.view_position, info.series_description, info.aspect)
        else:
            unit, uid = read_png(ref.path), None
            info = ViewInfo(ref.view_position, None, unit.shape[1] / unit.shape[0])
        arrays.append(unit)
        infos.append(info)
        uids.append(ref.sop_instance_uid or uid)
    frontal, lateral = choose_views(infos)
    stacked = np.stack([resize(arrays[frontal], size), resize(arrays[lateral], size)])
    return stacked, uids[frontal]


def to_tensor(images: npt.NDArray[np.uint8] | Tensor, device: torch.device) -> Tensor:
    """uint8 ``(B, 2, S, S)`` → float ``(B, 2, 1, S, S)`` in ``[0, 1]``.

    On a GPU the uint8 batch is pinned and copied asynchronously (a quarter of the bytes of float), and
    converted there.
    """
    tensor = torch.as_tensor(images)
    on_gpu = device.type == "cuda"
    tensor = (tensor.pin_memory() if on_gpu else tensor).to(device, non_blocking=on_gpu)
    return (tensor.float() / 255.0).unsqueeze(2)


@dataclass
class Prepared:
    """One split in memory: 8-bit images and cleaned texts."""

    ids: list[str]
    images: Tensor  # (N, 2, S, S) uint8
    texts: list[str]
    contexts: list[ClinicalContext] = field(default_factory=list)


class _Decoded(torch.utils.data.Dataset[npt.NDArray[np.uint8]]):
    """Decoded ``(2, S, S)`` uint8 views per study, read from a disk cache when one is given.

    The cache key is the image paths, sizes and modification times and the side, so a changed file is
    decoded again. Decoding DICOM (JPEG 2000, VOI LUT) is what keeps a GPU waiting; the cache pays it once.
    """

    def __init__(self, studies: Sequence[StudyRecord], size: int, cache: Path | None) -> None:
        self.studies, self.size, self.cache = list(studies), size, cache

    def __len__(self) -> int:
        return len(self.studies)

    def _key(self, study: StudyRecord) -> str:
        import hashlib

        parts = [str(self.size)]
        for ref in study.images:
            stat = ref.path.stat()
            parts.append(f"{ref.path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{ref.view_position}")
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    def __getitem__(self, index: int) -> npt.NDArray[np.uint8]:
        study = self.studies[index]
        if self.cache is None:
            return load_views(study.images, self.size)[0]
        path = self.cache / f"{self._key(study)}.npy"
        if path.is_file():
            cached: npt.NDArray[np.uint8] = np.load(path)
            return cached
        views = load_views(study.images, self.size)[0]
        self.cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
        np.save(tmp, views)
        tmp.replace(path)
        return views


def prepare(
    records: Sequence[StudyRecord],
    ids: Sequence[str],
    rules: TextRules,
    size: int,
    progress: bool = False,
    desc: str = "images",
    *,
    workers: int = 0,
    cache: Path | None = None,
) -> Prepared:
    """One split decoded into memory; ``workers`` processes decode in parallel, ``cache`` keeps the result."""
    by_id = {r.study_id: r for r in records}
    kept = [i for i in ids if i in by_id]
    loader = torch.utils.data.DataLoader(
        _Decoded([by_id[i] for i in kept], size, cache),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    arrays = []
    for views in tqdm(loader, desc=desc, disable=not progress, leave=False, total=len(kept)):
        arrays.append(np.asarray(views, dtype=np.uint8))
    images = (
        torch.from_numpy(np.stack(arrays)) if arrays else torch.zeros(0, 2, size, size, dtype=torch.uint8)
    )
    return Prepared(
        kept,
        images,
        [rules.clean(by_id[i].findings) for i in kept],
        [ClinicalContext.from_mapping(by_id[i].context) for i in kept],
    )


def batch_targets(
    texts: Sequence[str], vocab: Vocabulary, max_tokens: int, prefix: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Teacher forcing: inputs ``[prefix] <start> w1..wn`` and targets ``[<pad>..] w1..wn <end>``, padded.

    The context ``prefix`` ``(N, L)`` is input only: its targets are ``<pad>``, which the loss ignores, so the
    model is never taught to write it.
    """
    encoded = [vocab.encode(t, max_tokens) for t in texts]
    length = max(len(e) for e in encoded)
    inputs = torch.full((len(encoded), length), vocab.pad, dtype=torch.long)
    targets = torch.full((len(encoded), length), vocab.pad, dtype=torch.long)
    for row, ids in enumerate(encoded):
        inputs[row, : len(ids)] = torch.tensor([vocab.start, *ids[:-1]])
        targets[row, : len(ids)] = torch.tensor(ids)
    if prefix is not None:
        inputs = torch.cat([prefix, inputs], dim=1)
        targets = torch.cat([torch.full_like(prefix, vocab.pad), targets], dim=1)
    return inputs, targets


def context_prefixes(
    model: CaptionModel, vocab: Vocabulary, rules: TextRules, contexts: Sequence[ClinicalContext | None]
) -> Tensor | None:
    """The context prefix ids a model trained with context reads (None for one trained without)."""
    if not model.config.context:
        return None
    return encode_prefixes(contexts, vocab, rules, model.config.context_tokens)


def decode(
    model: CaptionModel,
    images: Tensor,
    vocab: Vocabulary,
    *,
    beam_size: int = 1,
    length_penalty: float = 1.0,
    max_tokens: int | None = None,
    batch_size: int = 32,
    prefix: Tensor | None = None,
) -> list[str]:
    """Texts for uint8 ``(N, 2, S, S)`` images; ``beam_size`` 1 is greedy. ``prefix`` ``(N, L)``: the context
    prefixes (:func:`context_prefixes`), required by a model trained with context."""
    if model.config.context and (
        prefix is None or prefix.shape != (images.shape[0], model.config.prefix_length)
    ):
        raise ValueError(
            f"this model reads a {model.config.prefix_length}-token context prefix per study "
            f"(gateway.findings.context); got {None if prefix is None else tuple(prefix.shape)}"
        )
    if not model.config.context:
        prefix = None
    device = next(model.parameters()).device
    limit = max_tokens or model.config.max_tokens
    texts: list[str] = []
    model.eval()
    for start in range(0, images.shape[0], batch_size):
        chunk = to_tensor(images[start : start + batch_size], device)
        rows = None if prefix is None else prefix[start : start + batch_size].to(device)
        with autocast(device):
            if beam_size == 1:
                ids = greedy(model, chunk, limit, rows)
            else:
                ids = beam_search(model, chunk, limit, beam_size, length_penalty, rows)
        texts.extend(vocab.decode(seq) for seq in ids)
    return texts


@dataclass
class TrainOptions:
    architecture: Architecture = "cnn-lstm"
    preset: str = "full"
    protocol: TextProtocol = "r2gen"
    epochs: int = 30
    batch_size: int = 16
    lr: float = 3e-4
    weight_decay: float = 0.0
    patience: int = 5
    seed: int = 42
    image_size: int | None = None
    pretrained: Path | None = None
    device: str = "auto"
    val_beam: int = 1
    resume: bool = False
    progress: bool = True
    overrides: dict[str, Any] = field(default_factory=dict)  # ModelConfig fields
    augment: bool = False  # random resized crop, rotation, brightness/contrast on training batches only
    precision: Precision = "auto"  # bf16 autocast: auto = on a GPU
    compile: bool = False  # torch.compile the training forward pass
    compile_backend: str = "inductor"  # "aot_eager" checks the path cheaply on a CPU
    workers: int = 0  # image-decoding processes
    image_cache: Path | None = None  # decoded-image cache folder
    context: bool = False  # condition the decoder on age, sex and indication (gateway.findings.context)
    context_tokens: int = 8  # indication words in the prefix


@dataclass
class TrainResult:
    best_bleu4: float
    baseline_bleu4: float
    epochs: int
    history: list[dict[str, float]]
    folder: Path


def _model_config(
    options: TrainOptions, vocab_size: int, max_tokens: int, generated: int | None = None
) -> ModelConfig:
    if options.preset not in PRESETS:
        raise ValueError(f"unknown preset {options.preset!r}; one of {', '.join(PRESETS)}")
    values: dict[str, Any] = {**PRESETS[options.preset], **options.overrides}
    if options.image_size is not None:
        values["image_size"] = options.image_size
    values["context"] = options.context
    values["context_tokens"] = options.context_tokens
    values["generated_vocab_size"] = generated if generated is not None and generated < vocab_size else None
    if options.pretrained is not None and options.architecture == "vit-gpt2":
        values.update(pretrained_vit_gpt2(options.pretrained))
    elif options.pretrained is not None:
        values["resnet"] = pretrained_spec(options.pretrained)
    return ModelConfig(
        architecture=options.architecture, vocab_size=vocab_size, max_tokens=max_tokens, **values
    )


def _batches(n: int, size: int, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(n, generator=generator)
    for start in range(0, n, size):
        yield order[start : start + size]


def train(
    records: Sequence[StudyRecord],
    out: Path,
    options: TrainOptions,
    source: dict[str, Any] | None = None,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train on ``records``' train split, choose the epoch on val, write checkpoints under ``out``."""
    torch.manual_seed(options.seed)
    device = pick_device(options.device)
    resumed: Checkpoint | None = None
    state: dict[str, Any] | None = None
    if options.resume and (out / "last" / "config.json").is_file():
        resumed = load_checkpoint(out / "last", device)
        state = training_state(out / "last")
        rules, vocab, split, model = resumed.rules, resumed.vocab, resumed.split, resumed.model
        log.info("resuming from %s at epoch %d", out / "last", resumed.epoch)
    else:
        rules = TextRules.for_protocol(options.protocol)
        split = split_studies(records, _RATIOS[options.protocol], options.seed)
        by_id = {r.study_id: r for r in records}
        train_texts = [rules.clean(by_id[i].findings) for i in split.train]
        vocab = Vocabulary.build(train_texts, rules.min_count)
        generated = len(vocab)
        if options.context:
            # The prefix's own words get ids after the report words: they are read, never generated.
            prefixes = [
                " ".join(
                    prefix_words(
                        ClinicalContext.from_mapping(by_id[i].context), rules, options.context_tokens
                    )
                )
                for i in split.train
            ]
            known = set(vocab.tokens)
            extra = [
                t
                for t in Vocabulary.build(prefixes, rules.min_count).tokens[len(SPECIALS) :]
                if t not in known
            ]
            vocab = Vocabulary([*vocab.tokens, *extra])
        config = _model_config(options, len(vocab), rules.max_tokens, generated)
        model = build_model(config, options.pretrained).to(device)
    if not split.train or not split.val:
        raise ValueError(f"need train and val studies; split has {len(split.train)} and {len(split.val)}")
    size = model.config.image_size
    workers, cache = options.workers, options.image_cache
    train_set = prepare(
        records, split.train, rules, size, options.progress, "train images", workers=workers, cache=cache
    )
    val_set = prepare(
        records, split.val, rules, size, options.progress, "val images", workers=workers, cache=cache
    )
    baseline = most_common_report(train_set.texts)
    baseline_bleu4 = bleu4(val_set.texts, [baseline] * len(val_set.texts))
    data = {
        **(source or {}),
        "studies": len(records),
        "train": len(split.train),
        "val": len(split.val),
        "test": len(split.test),
        "protocol": rules.protocol,
        "seed": options.seed,
        "baseline_report": baseline,
        "baseline_val_bleu4": baseline_bleu4,
        "augment": options.augment,
        "precision": options.precision,
        "compile": options.compile,
        "context": model.config.context,
        "studies_with_context": sum(
            1
            for r in records
            if any(v is not None for v in ClinicalContext.from_mapping(r.context).to_json().values())
        ),
    }
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    history: list[dict[str, float]] = []
    first_epoch, best, stale = 1, -1.0, 0
    if state is not None:
        optimiser.load_state_dict(state["optimiser"])
        first_epoch = int(state["epoch"]) + 1
        best, stale = float(state["best"]), int(state["stale"])
        history = [dict(h) for h in state["history"]]
    loss_fn = nn.CrossEntropyLoss(ignore_index=vocab.pad)
    # Compiled for the training step only; decoding runs the plain module (its shapes change every step).
    forward: Callable[[Tensor, Tensor], Tensor] = (
        torch.compile(model, backend=options.compile_backend) if options.compile else model
    )
    train_prefix = context_prefixes(model, vocab, rules, train_set.contexts)
    val_prefix = context_prefixes(model, vocab, rules, val_set.contexts)
    skip = model.config.prefix_length
    inputs_all, targets_all = batch_targets(train_set.texts, vocab, rules.max_tokens, train_prefix)
    epoch = first_epoch - 1
    for epoch in range(first_epoch, options.epochs + 1):
        if stale >= options.patience:
            break
        model.train()
        generator = torch.Generator().manual_seed(options.seed * 1000 + epoch)
        total, steps = 0.0, 0
        bar = tqdm(
            list(_batches(len(train_set.ids), options.batch_size, generator)),
            desc=f"epoch {epoch}/{options.epochs}",
            disable=not options.progress,
            leave=False,
        )
        for rows in bar:
            images = to_tensor(train_set.images[rows], device)
            if options.augment:
                images = augment(images, generator)
            inputs, targets = inputs_all[rows].to(device), targets_all[rows].to(device)
            width = skip + int((targets[:, skip:] != vocab.pad).sum(dim=1).max())
            inputs, targets = inputs[:, :width], targets[:, :width]
            with autocast(device, options.precision):
                logits = forward(images, inputs)
            loss = loss_fn(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimiser.step()
            total += loss.item()
            steps += 1
            bar.set_postfix(loss=f"{total / steps:.3f}")
        hypotheses = decode(model, val_set.images, vocab, beam_size=options.val_beam, prefix=val_prefix)
        val_bleu4 = bleu4(val_set.texts, hypotheses)
        record = {"epoch": float(epoch), "loss": total / max(steps, 1), "val_bleu4": val_bleu4}
        history.append(record)
        improved = val_bleu4 > best
        best, stale = (val_bleu4, 0) if improved else (best, stale + 1)
        log.info(
            "epoch %d loss %.4f val BLEU-4 %.4f (fixed report %.4f)",
            epoch,
            record["loss"],
            val_bleu4,
            baseline_bleu4,
        )
        if on_epoch is not None:
            on_epoch(record)
        metrics = {"val_bleu4": val_bleu4, "baseline_val_bleu4": baseline_bleu4}
        if improved:
            save_checkpoint(out / "best", model, vocab, rules, split, data, epoch=epoch, metrics=metrics)
        save_checkpoint(
            out / "last",
            model,
            vocab,
            rules,
            split,
            data,
            epoch=epoch,
            metrics=metrics,
            training_state={
                "optimiser": optimiser.state_dict(),
                "epoch": epoch,
                "best": best,
                "stale": stale,
                "history": history,
            },
        )
    return TrainResult(best if best >= 0 else math.nan, baseline_bleu4, epoch, history, out)


@dataclass
class EvalResult:
    split: str
    studies: int
    model: Scores
    baseline: Scores
    baseline_report: str
    samples: list[tuple[str, str]]  # (reference, hypothesis), a few for the eye
    clinical: ClinicalScores | None = None  # the CheXpert rule labeller's F1, model vs references
    baseline_clinical: ClinicalScores | None = None  # the same for the fixed report


def evaluate(
    checkpoint: Checkpoint,
    records: Sequence[StudyRecord],
    split_name: str = "test",
    *,
    beam_size: int = 3,
    length_penalty: float = 1.0,
    meteor: bool = True,
    progress: bool = False,
    split: Split | None = None,
) -> EvalResult:
    """Scores of the model and of the fixed most-common-training-report baseline on the same studies.

    The checkpoint's own split is used when its ids are in ``records`` (so a test set stays the one held out
    in training); otherwise, for a new data set, a fresh split with the checkpoint's protocol.
    """
    ids = set(r.study_id for r in records)
    chosen = split or checkpoint.split
    if not set(chosen.of(split_name)) & ids:
        chosen = split_studies(
            records, _RATIOS[checkpoint.rules.protocol], int(checkpoint.data.get("seed", 42))
        )
    size = checkpoint.model.config.image_size
    rules = checkpoint.rules
    evaluated = prepare(records, chosen.of(split_name), rules, size, progress, f"{split_name} images")
    train_texts = prepare_texts(records, chosen.train, rules)
    if not evaluated.ids:
        raise ValueError(f"no studies in the {split_name} split")
    baseline = (
        most_common_report(train_texts) if train_texts else str(checkpoint.data.get("baseline_report", ""))
    )
    hypotheses = decode(
        checkpoint.model,
        evaluated.images,
        checkpoint.vocab,
        beam_size=beam_size,
        length_penalty=length_penalty,
        prefix=context_prefixes(checkpoint.model, checkpoint.vocab, rules, evaluated.contexts),
    )
    fixed = [baseline] * len(evaluated.texts)
    return EvalResult(
        split_name,
        len(evaluated.ids),
        score(evaluated.texts, hypotheses, meteor=meteor),
        score(evaluated.texts, fixed, meteor=meteor),
        baseline,
        list(zip(evaluated.texts[:3], hypotheses[:3], strict=True)),
        clinical_f1(evaluated.texts, hypotheses),
        clinical_f1(evaluated.texts, fixed),
    )


def prepare_texts(records: Sequence[StudyRecord], ids: Sequence[str], rules: TextRules) -> list[str]:
    by_id = {r.study_id: r for r in records}
    return [rules.clean(by_id[i].findings) for i in ids if i in by_id]
