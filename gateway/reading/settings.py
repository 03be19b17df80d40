"""Settings for reading reports (the ``[reading]`` section)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

CudnnSearch = Literal["DEFAULT", "HEURISTIC", "EXHAUSTIVE"]


class ReadingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    engine: str = Field(default="rapidocr", description="rapidocr | tesseract | transformers")
    dpi: int = Field(default=300, ge=72, le=600, description="render dpi for pages without a text layer")

    # Limits against hostile or broken input (a PDF bomb, a huge image); each breach is a ReadError.
    max_pages: int = Field(default=300, ge=1)
    max_input_bytes: int = Field(default=200 * 1024**2, ge=1024)
    max_image_pixels: int = Field(default=80_000_000, ge=10_000, description="decoded image size limit")
    max_render_pixels: int = Field(
        default=40_000_000, ge=10_000, description="a page needing more at `dpi` is rendered at a lower dpi"
    )
    max_figure_refs: int = Field(
        default=500, ge=1, description="figure references kept per document; the rest dropped with a warning"
    )
    time_limit_s: float = Field(default=600.0, gt=0, description="wall-clock budget for one document")

    # A page's text layer counts as usable with at least this many non-space characters, unless an image
    # covers `scan_image_coverage` of the page (then the page is OCR'd as well and both are reported).
    min_text_chars: int = Field(default=8, ge=1)
    scan_image_coverage: float = Field(default=0.6, gt=0, le=1)
    min_figure_side: int = Field(default=48, ge=1, description="smaller embedded images are not figures")

    # OCR (rapidocr engine)
    ocr_models: Literal["ppocr-v4", "ppocr-v5", "ppocr-v6", "ppocr-v6-tiny"] = Field(
        default="ppocr-v6",
        description="PP-OCR model set for the rapidocr engine, loaded from its wheel (see docs/reading.md)",
    )
    ocr_threads: int = Field(
        default=0, ge=0, description="ONNX Runtime intra-op threads; 0 = runtime default"
    )
    cudnn_conv_algo_search: CudnnSearch = Field(
        default="DEFAULT",
        description="EXHAUSTIVE re-searches for every new recognition width and is slow with varying crops",
    )
    use_gpu: bool = Field(default=True, description="use CUDA when onnxruntime offers it")
    det_max_side: int = Field(default=2000, ge=320, description="detection input is scaled to this long side")
    rec_batch_size: int = Field(default=16, ge=1)
    min_confidence: float = Field(default=0.5, ge=0, le=1, description="OCR lines below are dropped")
    use_direction: bool = Field(default=True, description="run the 0/180 direction model on crops")
    correct: bool = Field(
        default=True,
        description="normalise units and punctuation of OCR text; restore terms of mappings/lexicon.yaml",
    )
    correct_below: float = Field(
        default=0.9, ge=0, le=1, description="lexicon corrections only on OCR lines below this confidence"
    )
    suppress_marks: bool = Field(
        default=True,
        description="whiten coloured pen and stamp ink before recognition (a coloured letterhead goes too)",
    )
    enhance: Literal["auto", "always", "never"] = Field(
        default="auto", description="deskew, denoise and contrast before OCR; auto = only for poor scans"
    )

    # The inference service (`gateway inference`)
    service_workers: int = Field(
        default=2, ge=1, description="documents read at once; their recognition crops share batches"
    )
    service_max_queue: int = Field(default=8, ge=1, description="documents accepted at once; more get 503")

    # Other engines
    tesseract_cmd: str = "tesseract"
    tesseract_langs: str = "chi_sim+eng"
    transformers_model_dir: Path | None = Field(default=None, description="local model directory; no hub")
    transformers_max_new_tokens: int = Field(default=2048, ge=1)
