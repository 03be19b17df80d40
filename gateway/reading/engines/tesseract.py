"""Tesseract 5 (Debian ``tesseract-ocr`` with ``chi_sim`` and ``eng``) through its TSV output."""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections import defaultdict

import cv2

from gateway.errors import NotConfigured, ReadError
from gateway.reading.engines.base import Image, OcrLine
from gateway.reading.settings import ReadingSettings
from gateway.reading.text import join_lines


class TesseractEngine:
    name = "tesseract"

    def __init__(self, settings: ReadingSettings) -> None:
        binary = shutil.which(settings.tesseract_cmd)
        if binary is None:
            raise NotConfigured(
                f"tesseract binary {settings.tesseract_cmd!r} not found; install tesseract-ocr and "
                "tesseract-ocr-chi-sim, or choose another engine"
            )
        self._binary = binary
        self._langs = settings.tesseract_langs
        self._min_conf = settings.min_confidence
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False, timeout=30)
        first = (out.stdout or out.stderr).splitlines()
        self.version = first[0].strip() if first else "unknown"

    def read(self, image: Image) -> list[OcrLine]:
        ok, png = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if not ok:
            raise ReadError("could not encode the page for tesseract")
        # preserve_interword_spaces keeps tesseract from spacing out every Chinese character.
        cmd = [
            self._binary,
            "stdin",
            "stdout",
            "-l",
            self._langs,
            "--psm",
            "3",
            "-c",
            "preserve_interword_spaces=1",
            "tsv",
        ]
        done = subprocess.run(cmd, input=png.tobytes(), capture_output=True, check=False, timeout=300)
        if done.returncode != 0:
            raise ReadError(f"tesseract failed: {done.stderr.decode(errors='replace')[-300:]}")
        return parse_tsv(done.stdout.decode("utf-8", errors="replace"), self._min_conf)


def parse_tsv(tsv: str, min_confidence: float = 0.0) -> list[OcrLine]:
    """Group tesseract's TSV words (level 5) into lines with boxes and the mean word confidence."""
    words: dict[tuple[int, int, int, int], list[dict[str, str]]] = defaultdict(list)
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5" or not (row.get("text") or "").strip():
            continue
        key = (int(row["page_num"]), int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        words[key].append(row)
    lines: list[OcrLine] = []
    for key in sorted(words):
        items = words[key]
        text = ""
        for w in items:
            text = join_lines(text, w["text"].strip())
        x0 = min(int(w["left"]) for w in items)
        y0 = min(int(w["top"]) for w in items)
        x1 = max(int(w["left"]) + int(w["width"]) for w in items)
        y1 = max(int(w["top"]) + int(w["height"]) for w in items)
        confs = [max(0.0, float(w["conf"])) / 100.0 for w in items]
        conf = sum(confs) / len(confs)
        # Tesseract's word confidences are poorly calibrated; drop a line only if no word in it is confident.
        if max(confs) < min_confidence:
            continue
        lines.append(OcrLine(text=text, bbox=(x0, y0, x1, y1), confidence=round(min(conf, 1.0), 4)))
    return lines
