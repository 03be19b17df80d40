"""Measures for the reading side of figure linking, on generated reports (not a test; run by hand).

    PYTHONPATH=$PWD:$PWD/tests/reading python tests/reading/measure.py [--refs 40000] [--reports 24]

Prints: reference-finding time on "Fig 1 " × N; sentence joins and caption separation on two-column
text-layer reports with a sentence broken across the column break; figure-detection IoU on scanned pages.
The report generators are the tests' (report_fixtures.py); the gateway measured is the one on the path.
"""

from __future__ import annotations

import argparse
import random
import time

from report_fixtures import Fig, Para, break_between, build_report, render_page

from gateway.reading import ReadingSettings, find_figure_refs, read_bytes

COLUMN = (595 - 2 * 56 - 28) / 2
EN = [
    "FINDINGS: A solid nodule in the right upper lobe measures eight millimetres with smooth margins,",
    "unchanged in size from the prior examination, best seen on the axial image,",
    "the lesion shows mild enhancement after contrast and no calcification,",
]
ZH = [
    "检查所见：右肺上叶见一实性结节，大小约八毫米，边缘光滑，",
    "与前片比较大小未见变化，",
    "增强扫描轻度强化，未见钙化，",
]


def refs_time(n: int) -> float:
    text = "Fig 1 " * n
    start = time.perf_counter()
    found = find_figure_refs(text)
    assert len(found) == n
    return time.perf_counter() - start


def joins(reports: int) -> tuple[int, int, int, int]:
    """(sentences joined with their reference, reports, captions as paragraphs of role caption, captions)."""
    rng = random.Random(7)
    ok = captions_ok = captions = 0
    for k in range(reports):
        zh = k % 2 == 1
        series, image = rng.randint(2, 9), rng.randint(10, 300)
        head = "".join(rng.sample(ZH if zh else EN, 3))
        before = head + (f"请见序列{series}" if zh else f" see Se {series}")
        after = (f"第{image}幅。纵隔未见异常。" if zh else f"Im {image}. The mediastinum is normal.") * 2
        text, lines = break_between(before, after, COLUMN)
        items: list[Para | Fig] = [Para(text, break_after=lines)]
        if k % 3 != 2:
            caption = f"图{k + 1} 右肺上叶结节" if zh else f"Figure {k + 1}. Right upper lobe nodule"
            items += [Fig(caption, height=110, panels=1 + (k % 2), seed=k), Para(after)]
            captions += 1
        pdf, _ = build_report(items, columns=2)
        doc = read_bytes(pdf, settings=ReadingSettings()).document
        found = {
            (r.series, r.instance) for p in doc.paragraphs for r in p.figure_refs if r.kind == "position"
        }
        ok += (series, image) in found
        if k % 3 != 2:
            roles = [p for p in doc.paragraphs if caption in p.text]
            captions_ok += len(roles) == 1 and roles[0].text == caption and roles[0].role == "caption"
    return ok, reports, captions_ok, captions


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def detection() -> tuple[list[float], int, int]:
    """IoU of each true figure with the best found box; false boxes; pages."""
    from gateway.reading.regions import find_regions

    text = "FINDINGS: A solid nodule in the right upper lobe measures eight millimetres. " * 4
    ious: list[float] = []
    false = pages = 0
    for columns in (1, 2):
        for panels in (1, 2, 4):
            items = [Para(text), Fig("Figure 1. CT", height=140, panels=panels, seed=panels), Para(text)]
            items += [Para("诊断意见：右肺上叶小结节，建议随访。" * 8) for _ in range(6)]
            pdf, truths = build_report(items, columns=columns)
            import pymupdf

            for number in range(1, pymupdf.open(stream=pdf, filetype="pdf").page_count + 1):
                for degrade in (dict(), dict(noise=6.0, jpeg=70)):
                    image = render_page(pdf, number, dpi=150, **degrade)  # type: ignore[arg-type]
                    found = find_regions(image, [], ReadingSettings())
                    s = 150 / 72
                    expected = [tuple(v * s for v in t.bbox) for t in truths if t.page == number]
                    ious += [max((iou(e, f) for f in found), default=0.0) for e in expected]
                    false += sum(1 for f in found if max((iou(e, f) for e in expected), default=0.0) < 0.5)
                    pages += 1
    return ious, false, pages


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--refs", type=int, default=40_000)
    parser.add_argument("--reports", type=int, default=24)
    args = parser.parse_args()
    find_figure_refs("Fig 1")
    if args.refs:
        print(f"find_figure_refs, 'Fig 1 ' x {args.refs}: {refs_time(args.refs):.3f} s")
    ok, n, cap_ok, caps = joins(args.reports)
    print(
        f"two-column reports: sentence across the column break joined with its reference {ok}/{n}; "
        f"captions as their own paragraph with role caption {cap_ok}/{caps}"
    )
    try:
        ious, false, pages = detection()
    except ImportError:
        print("figure regions: not available in this gateway")
        return
    print(
        f"scanned-page figures: {len(ious)} true figures on {pages} pages, IoU min {min(ious):.3f} "
        f"mean {sum(ious) / len(ious):.3f}; found-but-false boxes {false}"
    )


if __name__ == "__main__":
    main()
