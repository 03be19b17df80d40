"""Checkpoints: a folder that holds everything needed to rebuild a model and check it is the same one.

::

    config.json          schema version, model name and version, ModelConfig, text rules,
                         sha256 and tensor shapes of the weights
    model.safetensors    the weights
    vocab.json           the tokens, in id order
    split.json           the study ids of train/val/test
    data.json            what it was trained on: source, format, counts, the fixed-report baseline
    training_state.pt    optimiser and epoch (only in the ``last`` checkpoint of a run, for --resume)

Loading checks each file, the schema version, the config, the vocabulary size, the weights' checksum and every
tensor's shape, and refuses a mismatch with :class:`CheckpointError` naming what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors import safe_open
from safetensors.torch import save_file

from gateway.errors import ConfigError
from gateway.findings.data import Split
from gateway.findings.models import CaptionModel, ModelConfig, build_model
from gateway.findings.text import TextProtocol, TextRules, Vocabulary

__all__ = ["SCHEMA_VERSION", "Checkpoint", "CheckpointError", "load_checkpoint", "resolve", "save_checkpoint"]

SCHEMA_VERSION = 1
_REQUIRED = ("config.json", "model.safetensors", "vocab.json", "split.json", "data.json")


class CheckpointError(ConfigError):
    """A checkpoint folder is incomplete, corrupt or does not match its own description."""


class _TextSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    protocol: TextProtocol
    min_count: int
    max_tokens: int


class _WeightsSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file: str
    sha256: str
    shapes: dict[str, list[int]]


class _ConfigFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    schema_version: int
    model_name: str
    model_version: str
    model: ModelConfig
    text: _TextSpec
    weights: _WeightsSpec
    epoch: int = 0
    metrics: dict[str, float] = {}


@dataclass
class Checkpoint:
    model: CaptionModel
    vocab: Vocabulary
    rules: TextRules
    split: Split
    data: dict[str, Any]
    model_name: str
    model_version: str
    epoch: int
    metrics: dict[str, float] = field(default_factory=dict)
    folder: Path | None = None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(
    folder: Path,
    model: CaptionModel,
    vocab: Vocabulary,
    rules: TextRules,
    split: Split,
    data: dict[str, Any],
    *,
    epoch: int = 0,
    metrics: dict[str, float] | None = None,
    training_state: dict[str, Any] | None = None,
) -> str:
    """Write a checkpoint atomically (a temporary folder renamed into place); returns the model version."""
    if len(vocab) != model.config.vocab_size:
        raise CheckpointError(f"vocabulary has {len(vocab)} tokens, the model {model.config.vocab_size}")
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights = tmp / "model.safetensors"
    save_file(tensors, str(weights), metadata={"format": "pt"})
    sha = _sha256(weights)
    version = sha[:12]
    config = _ConfigFile(
        schema_version=SCHEMA_VERSION,
        model_name=f"findings-{model.config.architecture}",
        model_version=version,
        model=model.config,
        text=_TextSpec(protocol=rules.protocol, min_count=rules.min_count, max_tokens=rules.max_tokens),
        weights=_WeightsSpec(
            file="model.safetensors", sha256=sha, shapes={k: list(v.shape) for k, v in tensors.items()}
        ),
        epoch=epoch,
        metrics=metrics or {},
    )
    (tmp / "config.json").write_text(config.model_dump_json(indent=2), encoding="utf-8")
    (tmp / "vocab.json").write_text(json.dumps({"tokens": list(vocab.tokens)}, indent=0), encoding="utf-8")
    (tmp / "split.json").write_text(json.dumps(split.to_json()), encoding="utf-8")
    (tmp / "data.json").write_text(json.dumps(data, indent=2, default=str), encoding="utf-8")
    if training_state is not None:
        torch.save(training_state, tmp / "training_state.pt")
    old = folder.with_name(folder.name + ".old")
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return version


def resolve(path: Path) -> Path:
    """A checkpoint folder, or a training run's output folder (its ``best`` checkpoint)."""
    if (path / "config.json").is_file():
        return path
    for name in ("best", "last"):
        if (path / name / "config.json").is_file():
            return path / name
    raise CheckpointError(f"{path} is not a checkpoint folder (no config.json) nor a training output folder")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: {exc}") from exc


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> Checkpoint:
    """Load and validate a checkpoint (see the module docstring); the model is in eval mode on ``device``."""
    folder = resolve(path)
    missing = [name for name in _REQUIRED if not (folder / name).is_file()]
    if missing:
        raise CheckpointError(f"{folder}: missing {', '.join(missing)}")
    raw = _read_json(folder / "config.json")
    if not isinstance(raw, dict) or raw.get("schema_version") != SCHEMA_VERSION:
        found = raw.get("schema_version") if isinstance(raw, dict) else None
        raise CheckpointError(f"{folder}: schema version {found!r}, this gateway reads {SCHEMA_VERSION}")
    try:
        config = _ConfigFile.model_validate(raw)
    except ValidationError as exc:
        raise CheckpointError(f"{folder}/config.json is invalid: {exc}") from exc
    vocab_raw = _read_json(folder / "vocab.json")
    try:
        vocab = Vocabulary(list(vocab_raw["tokens"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{folder}/vocab.json is invalid: {exc}") from exc
    if len(vocab) != config.model.vocab_size:
        raise CheckpointError(
            f"{folder}: vocab.json has {len(vocab)} tokens, the model was built for {config.model.vocab_size}"
        )
    split_raw = _read_json(folder / "split.json")
    try:
        split = Split(*(list(map(str, split_raw[name])) for name in ("train", "val", "test")))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{folder}/split.json is invalid: {exc}") from exc
    weights = folder / config.weights.file
    if not weights.is_file():
        raise CheckpointError(f"{folder}: missing {config.weights.file}")
    sha = _sha256(weights)
    if sha != config.weights.sha256:
        raise CheckpointError(f"{weights}: sha256 {sha} differs from the recorded {config.weights.sha256}")
    try:
        with safe_open(str(weights), framework="pt") as fh:
            tensors = {key: fh.get_tensor(key) for key in fh.keys()}  # noqa: SIM118 - safe_open has no __iter__
    except Exception as exc:
        raise CheckpointError(f"{weights}: unreadable: {exc}") from exc
    recorded = config.weights.shapes
    model = build_model(config.model)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    actual = {k: list(v.shape) for k, v in tensors.items()}
    for name, shapes in (("recorded in config.json", recorded), ("in model.safetensors", actual)):
        if shapes != expected:
            diff = sorted(k for k in set(shapes) | set(expected) if shapes.get(k) != expected.get(k))
            raise CheckpointError(
                f"{folder}: tensor shapes {name} do not fit the configured model: "
                f"{', '.join(diff[:5])}{' …' if len(diff) > 5 else ''}"
            )
    model.load_state_dict(tensors, strict=True)
    model.to(device).eval()
    rules = TextRules(config.text.protocol, config.text.min_count, config.text.max_tokens)
    data = _read_json(folder / "data.json")
    return Checkpoint(
        model,
        vocab,
        rules,
        split,
        data if isinstance(data, dict) else {},
        config.model_name,
        config.model_version,
        config.epoch,
        dict(config.metrics),
        folder,
    )


def training_state(folder: Path) -> dict[str, Any] | None:
    """The optimiser state saved for --resume, if any."""
    path = folder / "training_state.pt"
    if not path.is_file():
        return None
    state: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return state
