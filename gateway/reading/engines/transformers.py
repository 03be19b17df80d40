"""A vision-language OCR model from a local directory (GOT-OCR2, DeepSeek-OCR, ...), through transformers.

Weights are never downloaded: the model loads with ``local_files_only``. On a GPU it runs in bf16.
DeepSeek-OCR answers in markdown with grounding tags ``<|ref|>label<|/ref|><|det|>[[x1,y1,x2,y2]]<|/det|>``
whose coordinates are normalised to 0-999; :func:`parse_grounded` turns that into lines with boxes. Plain-text
answers become lines spread over the page height, since such models give no boxes.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from gateway.errors import NotConfigured
from gateway.reading.engines.base import Image, OcrLine
from gateway.reading.settings import ReadingSettings

_GROUNDED = re.compile(
    r"<\|ref\|>(?P<label>.*?)<\|/ref\|>\s*<\|det\|>\s*(?P<boxes>\[\[.*?\]\])\s*<\|/det\|>(?P<text>.*?)"
    r"(?=<\|ref\|>|\Z)",
    re.DOTALL,
)
_BOX = re.compile(
    r"\[\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*,\s*(\d+(?:\.\d+)?)\s*\]"
)
_MARKDOWN = re.compile(r"^\s*(?:#{1,6}\s+|[-*]\s+)|\*\*")
_SPECIAL = re.compile(r"<\|[^|]*\|>")


def _clean(text: str) -> str:
    return _SPECIAL.sub("", _MARKDOWN.sub("", text.strip())).strip()


def parse_grounded(output: str, width: int, height: int, confidence: float = 1.0) -> list[OcrLine]:
    """Lines from grounded output, boxes scaled from the 0-999 grid; untagged text is spread evenly."""
    lines: list[OcrLine] = []
    for match in _GROUNDED.finditer(output):
        label = match.group("label").strip()
        body = match.group("text")
        texts = [_clean(t) for t in body.splitlines() if _clean(t)]
        boxes = [tuple(float(v) for v in b.groups()) for b in _BOX.finditer(match.group("boxes"))]
        if label in ("image", "figure") and not texts:
            continue
        if not texts and label and label not in ("text", "title", "table"):
            texts = [label]
        if not boxes or not texts:
            continue
        x0, y0, x1, y1 = boxes[0]
        scale_x, scale_y = width / 999.0, height / 999.0
        bx0, by0, bx1, by1 = x0 * scale_x, y0 * scale_y, x1 * scale_x, y1 * scale_y
        step = (by1 - by0) / len(texts)
        for i, text in enumerate(texts):
            lines.append(
                OcrLine(
                    text=text, bbox=(bx0, by0 + i * step, bx1, by0 + (i + 1) * step), confidence=confidence
                )
            )
    if lines or "<|ref|>" in output:
        return lines
    texts = [_clean(t) for t in output.splitlines() if _clean(t)]
    if not texts:
        return []
    step = height / (len(texts) + 1)
    return [
        OcrLine(text=t, bbox=(0.0, i * step, float(width), (i + 1) * step), confidence=confidence)
        for i, t in enumerate(texts)
    ]


class TransformersEngine:
    """A local image-text-to-text model. ``model_dir`` overrides ``settings.transformers_model_dir``."""

    name = "transformers"

    def __init__(self, settings: ReadingSettings, model_dir: Path | None = None) -> None:
        directory = model_dir or settings.transformers_model_dir
        if directory is None:
            raise NotConfigured(
                "the transformers engine needs reading.transformers_model_dir (a local model)"
            )
        directory = Path(directory)
        if not (directory / "config.json").is_file():
            raise NotConfigured(f"no model in {directory}: config.json is missing")
        import torch
        import transformers

        self._torch = torch
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = torch.bfloat16 if self._device == "cuda" else torch.float32
        config = transformers.AutoConfig.from_pretrained(directory, local_files_only=True)
        self._model: Any = self._load_model(transformers, directory, config, dtype)
        self._model.to(self._device).eval()
        processor_cls: Any = transformers.AutoProcessor
        self._processor: Any = processor_cls.from_pretrained(directory, local_files_only=True)
        self._max_new_tokens = settings.transformers_max_new_tokens
        self.model_type = str(config.model_type)
        self.version = f"{directory.name} ({config.model_type}) transformers {transformers.__version__}"

    @staticmethod
    def _load_model(transformers: Any, directory: Path, config: Any, dtype: Any) -> Any:
        for auto in ("AutoModelForImageTextToText", "AutoModelForVision2Seq"):
            cls = getattr(transformers, auto, None)
            if cls is None:
                continue
            try:
                return cls.from_pretrained(directory, local_files_only=True, dtype=dtype)
            except ValueError:
                continue  # this auto class does not know the architecture; try the next
        raise NotConfigured(f"model type {config.model_type!r} in {directory} is not an image-to-text model")

    def read(self, image: Image) -> list[OcrLine]:
        from PIL import Image as PILImage

        pil = PILImage.fromarray(image)
        inputs = self._processor(images=pil, return_tensors="pt").to(self._device)
        with self._torch.inference_mode():
            out = self._model.generate(
                **inputs,
                max_new_tokens=self._max_new_tokens,
                do_sample=False,
                output_scores=True,
                return_dict_in_generate=True,
            )
        prompt_len = inputs["input_ids"].shape[1] if "input_ids" in inputs else 0
        sequence = out.sequences[0][prompt_len:]
        text = self._processor.batch_decode([sequence], skip_special_tokens=False)[0]
        # Grounding tags may be special tokens, so decode with them and drop only the other special tokens.
        tokenizer = getattr(self._processor, "tokenizer", self._processor)
        for token in getattr(tokenizer, "all_special_tokens", []):
            if token and not token.startswith("<|"):
                text = text.replace(token, " ")
        confidence = 1.0
        if out.scores:
            scores = self._model.compute_transition_scores(out.sequences, out.scores, normalize_logits=True)
            confidence = float(scores[0].exp().mean().clamp(0, 1))
        h, w = image.shape[:2]
        return parse_grounded(text, w, h, round(confidence, 4))
