from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from report_fixtures import page_image

from gateway.errors import ConfigError, NotConfigured
from gateway.reading import ReadingSettings, make_engine
from gateway.reading.engines import OcrEngine
from gateway.reading.engines.rapidocr import MODEL_SETS, RapidOcrEngine, providers_for
from gateway.reading.engines.tesseract import TesseractEngine, parse_tsv
from gateway.reading.engines.transformers import TransformersEngine, parse_grounded


def test_providers_cuda_first_with_search_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime

    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    chosen = providers_for(ReadingSettings(cudnn_conv_algo_search="HEURISTIC"))
    assert chosen == [
        ("CUDAExecutionProvider", {"cudnn_conv_algo_search": "HEURISTIC"}),
        "CPUExecutionProvider",
    ]
    assert providers_for(ReadingSettings(use_gpu=False)) == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert providers_for(ReadingSettings()) == ["CPUExecutionProvider"]


def test_rapidocr_is_an_engine_on_our_sessions(rapid_engine: RapidOcrEngine) -> None:
    assert isinstance(rapid_engine, OcrEngine)
    assert rapid_engine.name == "rapidocr"
    default = MODEL_SETS[ReadingSettings().ocr_models]
    assert default.title in rapid_engine.version
    assert rapid_engine.device == "CPUExecutionProvider"
    assert [m["role"] for m in rapid_engine.models] == ["det", "cls", "rec"]
    assert all(len(m["sha256"]) == 64 and default.distribution in m["package"] for m in rapid_engine.models)


@pytest.mark.parametrize("key", sorted(MODEL_SETS))
def test_every_model_set_loads_from_its_wheel_and_reads(key: str) -> None:
    models = MODEL_SETS[key]
    engine = RapidOcrEngine(ReadingSettings(ocr_threads=2, ocr_models=key))  # type: ignore[arg-type]
    assert models.title in engine.version and models.distribution in engine.version
    lines = engine.read(page_image(["肝脏大小正常", "右肺上叶见一磨玻璃结节"], dpi=150))
    # a detector may split a line at its spaces: read the pieces row by row, left to right
    lines.sort(key=lambda ln: (round((ln.bbox[1] + ln.bbox[3]) / 40), ln.bbox[0]))
    assert "".join(ln.text for ln in lines).replace(" ", "") == "肝脏大小正常右肺上叶见一磨玻璃结节"


def test_the_document_names_the_models_it_was_read_with(rapid_engine: RapidOcrEngine) -> None:
    from report_fixtures import png_bytes

    from gateway.reading import read_bytes

    image = page_image(["检查所见：肝脏大小正常"], dpi=150)
    doc = read_bytes(png_bytes(image), settings=ReadingSettings(), engine=rapid_engine).document
    assert doc.engine.version == rapid_engine.version
    assert [(m.role, m.file) for m in doc.engine.models] == [
        (m["role"], m["file"]) for m in rapid_engine.models
    ]


def test_width_buckets_give_the_same_text_as_single_crops(rapid_engine: RapidOcrEngine) -> None:
    image = page_image(
        ["肝脏大小正常", "IMPRESSION: small nodule in the right upper lobe, unchanged."], dpi=150
    )
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    from gateway.reading.engines.rapidocr import _crop

    crops = [_crop(bgr, q) for q in rapid_engine.detect(bgr)]
    assert len(crops) >= 2
    batched = rapid_engine.recognize(crops)
    single = [rapid_engine.recognize([c])[0] for c in crops]
    assert [t for t, _ in batched] == [t for t, _ in single]
    assert "肝脏大小正常" in batched[0][0]


def test_recognizer_can_be_replaced(rapid_engine: RapidOcrEngine) -> None:
    seen: list[int] = []

    def recognizer(crops: object) -> list[tuple[str, float]]:
        seen.append(len(crops))  # type: ignore[arg-type]
        return [("替换", 0.99)] * len(crops)  # type: ignore[arg-type]

    lines = rapid_engine.with_recognizer(recognizer).read(page_image(["检查所见"], dpi=150))
    assert seen == [1]
    assert [ln.text for ln in lines] == ["替换"]


def test_blank_image_has_no_lines(rapid_engine: RapidOcrEngine) -> None:
    assert rapid_engine.read(np.full((200, 300, 3), 255, np.uint8)) == []


def test_unknown_engine() -> None:
    with pytest.raises(ConfigError, match="unknown OCR engine"):
        make_engine("nope", ReadingSettings())


def test_tesseract_missing_binary_is_a_clear_error() -> None:
    with pytest.raises(NotConfigured, match="tesseract binary"):
        TesseractEngine(ReadingSettings(tesseract_cmd="no-such-tesseract-binary"))


def test_tesseract_tsv_parsing() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t20\t30\t12\t96\t印象",
        "5\t1\t1\t1\t1\t2\t42\t20\t30\t12\t90\t：结节",
        "5\t1\t1\t1\t2\t1\t10\t40\t50\t12\t80\tSe3Im45",
        "4\t1\t1\t1\t2\t0\t10\t40\t50\t12\t-1\t",
    ]
    lines = parse_tsv("\n".join([header, *rows]))
    assert [(ln.text, ln.bbox, ln.confidence) for ln in lines] == [
        ("印象：结节", (10, 20, 72, 32), 0.93),
        ("Se3Im45", (10, 40, 60, 52), 0.8),
    ]


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")
def test_tesseract_reads_a_line() -> None:
    engine = TesseractEngine(ReadingSettings(tesseract_langs="eng"))
    lines = engine.read(page_image(["IMPRESSION: nodule"], dpi=200))
    assert "IMPRESSION" in " ".join(ln.text for ln in lines)
    assert engine.version.startswith("tesseract")


def test_transformers_needs_a_model_dir(tmp_path: Path) -> None:
    with pytest.raises(NotConfigured, match=r"transformers_model_dir"):
        TransformersEngine(ReadingSettings())
    with pytest.raises(NotConfigured, match=r"config\.json"):
        TransformersEngine(ReadingSettings(transformers_model_dir=tmp_path))


DEEPSEEK_OUTPUT = (
    "<|ref|>title<|/ref|><|det|>[[100, 20, 899, 60]]<|/det|>\n# 检查报告\n\n"
    "<|ref|>text<|/ref|><|det|>[[100, 100, 899, 300]]<|/det|>\n检查所见：右肺结节，见图1。\n"
    "**IMPRESSION**: nodule Se 3 Im 45.\n\n"
    "<|ref|>image<|/ref|><|det|>[[100, 400, 500, 800]]<|/det|>\n"
)


def test_deepseek_grounding_parse() -> None:
    lines = parse_grounded(DEEPSEEK_OUTPUT, width=999 * 2, height=999, confidence=0.8)
    assert [ln.text for ln in lines] == [
        "检查报告",
        "检查所见：右肺结节，见图1。",
        "IMPRESSION: nodule Se 3 Im 45.",
    ]
    assert lines[0].bbox == pytest.approx((200, 20, 1798, 60))
    # two lines share one grounded box: split evenly top to bottom
    assert lines[1].bbox[1] == pytest.approx(100)
    assert lines[2].bbox[3] == pytest.approx(300)
    assert all(ln.confidence == 0.8 for ln in lines)


def test_plain_output_parse() -> None:
    lines = parse_grounded("印象：结节\n\nFINDINGS: normal", width=100, height=300)
    assert [ln.text for ln in lines] == ["印象：结节", "FINDINGS: normal"]
    assert lines[0].bbox[1] < lines[1].bbox[1]


def test_upside_down_page_is_turned_by_the_direction_model(rapid_engine: RapidOcrEngine) -> None:
    image = page_image(["检查所见：右肺上叶结节", "诊断意见：建议随访复查"], dpi=150)
    lines = rapid_engine.read(np.ascontiguousarray(image[::-1, ::-1]))
    text = "".join(ln.text for ln in lines)
    assert "右肺上叶结节" in text
    assert "建议随访复查" in text
