"""Quality benchmark of the aligner (a script, not a test): precision and recall per method and per variation.

The cases come from :mod:`benchmarks.align_suite`: real DICOM files, a report PDF with embedded figures and
its scanned, image-only copy, and a truth manifest. For each case this runner does what the gateway does:

1. reads the report with :func:`gateway.reading.read_bytes` (``ReadingSettings`` defaults; the OCR engine for
   the scanned copy),
2. builds :class:`gateway.align.InstanceInfo` from the DICOM headers (with ImagePositionPatient and
   ImageOrientationPatient),
3. decodes the figures and renders the instances with the ``align`` stage's own functions
   (:mod:`gateway.pipeline.stages.align`), and
4. calls :func:`gateway.align.align`,

then scores every reference of the manifest. A link counts as *exact* when it names the true instance and no
``detail.neighbours``; as *exact-or-neighbour* when it names the true instance or one of its ±1 neighbours in
the same series (a link that lists neighbours counts only here). A resolved link on a reference whose truth is
null (a figure from another study, a figure or image that does not exist) is a false link.

    .venv/bin/python benchmarks/align.py --out /tmp/align-suite            # 30 studies + scanned copies
    .venv/bin/python benchmarks/align.py --out /tmp/align-suite --large    # + the 2,000-slice study
    .venv/bin/python benchmarks/align.py --cases /tmp/align-suite --only fig:montage2 --json

Generated cases are cached under ``--out`` (a case is rebuilt only when its truth.json is missing or from an
older suite version), so a second run costs the reading and aligning only.

Reader corrections as extra labelled cases: the review page's export (``/ui/study/{uid}/ground-truth.json``,
"Export corrections") says, for each link a reader corrected, added or removed, which instance the sentence
really shows (or that it shows none). ``--corrections DIR`` (repeatable) scores the aligner against it; DIR
holds the export (``ground-truth*.json``), the study's DICOM files under ``dicom/`` (a WADO-RS retrieve of the
study, or the gateway's store) and the report under ``report.*`` (a PDF, or the Encapsulated PDF / SR).
Without ``--cases``/``--out`` only the corrections are scored:

    .venv/bin/python benchmarks/align.py --corrections /data/review/1.2.840.99.1

Each labelled link is one reference of method ``reader-corrections``: positive when the reader chose an
instance (recall: the aligner names it for that sentence), negative when the reader removed the link
(false: the aligner still links the sentence to the removed instance). The export has no neighbour truth,
so "±1" equals "exact" there.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any

import cv2
from pydicom import dcmread

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.align_suite import SUITE_VERSION, generate
from gateway.align import AlignOptions, InstanceInfo, Link, align
from gateway.align.features import pack, renderer, reuse_or_compute, unpack
from gateway.pipeline.stages.align import _decode, _full_resolution, options_from
from gateway.reading import read_bytes
from gateway.reading.engines import make_engine
from gateway.reading.settings import ReadingSettings
from gateway.settings import Settings

LINKING = ("explicit", "figure", "kos")  # methods that name an instance; anatomy/drafted are not scored


# ------------------------------------------------------------------------------------------------- inputs


def _first(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return float(value[0]) if len(value) else None
    return float(value)


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def instance_infos(root: Path) -> tuple[list[InstanceInfo], dict[str, str]]:
    """InstanceInfo for every DICOM file under ``root`` (headers only), and the file of each SOP Instance."""
    infos: list[InstanceInfo] = []
    paths: dict[str, str] = {}
    for path in sorted(root.rglob("*.dcm")):
        ds = dcmread(path, stop_before_pixels=True)
        ipp = ds.get("ImagePositionPatient")
        iop = ds.get("ImageOrientationPatient")
        info = InstanceInfo(
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            series_instance_uid=str(ds.SeriesInstanceUID),
            series_number=_int(ds.get("SeriesNumber")),
            instance_number=_int(ds.get("InstanceNumber")),
            modality=str(ds.get("Modality") or "") or None,
            body_part=str(ds.get("BodyPartExamined") or "") or None,
            laterality=str(ds.get("Laterality") or "") or None,
            view_position=str(ds.get("ViewPosition") or "") or None,
            series_description=str(ds.get("SeriesDescription") or "") or None,
            image_laterality=str(ds.get("ImageLaterality") or "") or None,
            window_center=_first(ds.get("WindowCenter")),
            window_width=_first(ds.get("WindowWidth")),
            rows=_int(ds.get("Rows")),
            columns=_int(ds.get("Columns")),
            image_position=(float(ipp[0]), float(ipp[1]), float(ipp[2])) if ipp else None,
            image_orientation=tuple(float(v) for v in iop) if iop else None,  # type: ignore[arg-type]
        )
        infos.append(info)
        paths[info.sop_instance_uid] = str(path)
    return infos, paths


@dataclass
class Run:
    """One report copy of one case, read and aligned."""

    case: str
    scanned: bool
    links: list[Link]
    read_s: float
    headers_s: float
    align_s: float
    instances: int
    figures_found: int
    error: str | None = None
    extract_s: float = 0.0  # computing the matching features (the extract stage's share), once per case
    align_cpu_s: float = 0.0  # CPU seconds of align_s

    @property
    def total_s(self) -> float:
        return self.read_s + self.headers_s + self.align_s


def run_case(
    folder: Path,
    manifest: Mapping[str, Any],
    scanned: bool,
    engine: Any,
    settings: ReadingSettings,
    options: AlignOptions | None = None,
) -> Run:
    """Read one copy of a case's report and align it, as the ``read_report`` and ``align`` stages would."""
    options = options or options_from(Settings())
    report = folder / str(manifest["scanned_report" if scanned else "report"])
    t0 = time.perf_counter()
    try:
        result = read_bytes(report.read_bytes(), filename=report.name, settings=settings, engine=engine)
    except Exception as exc:  # a report that cannot be read is a result too: every reference missed
        return Run(
            manifest["case"],
            scanned,
            [],
            time.perf_counter() - t0,
            0,
            0,
            0,
            0,
            f"{type(exc).__name__}: {exc}",
        )
    read_s = time.perf_counter() - t0
    document = result.document.model_dump(mode="json")
    t1 = time.perf_counter()
    infos, paths = instance_infos(folder / "dicom")
    headers_s = time.perf_counter() - t1
    # The extract stage's share: matching features, computed once per case and kept beside it.
    features_path = folder / f"features-{SUITE_VERSION}.npz"
    extract_s = 0.0
    if not features_path.is_file():
        t = time.perf_counter()
        computed, _ = reuse_or_compute([(uid, "", path) for uid, path in paths.items()], {})
        features_path.write_bytes(pack(computed))
        extract_s = time.perf_counter() - t
    t2 = time.perf_counter()
    c2 = time.process_time()
    features = unpack(features_path)  # what the align stage reads instead of pixel data
    figure_images = {}
    with tempfile.TemporaryDirectory() as tmp:
        # Figures go through the stage's own decoder, as they would from the artifact store.
        for name, (_media, data) in result.figure_images.items():
            path = Path(tmp) / Path(name).name
            path.write_bytes(data)
            decoded = _decode(str(path))
            if decoded is not None:
                figure_images[name] = decoded
        alignment = align(
            document,
            infos,
            figure_images=figure_images,
            instance_images=renderer(features),
            full_resolution=_full_resolution(paths),
            options=options,
        )
    align_s = time.perf_counter() - t2
    align_cpu_s = time.process_time() - c2
    return Run(
        manifest["case"],
        scanned,
        list(alignment.links),
        read_s,
        headers_s,
        align_s,
        len(infos),
        len(result.document.figures),
        extract_s=extract_s,
        align_cpu_s=align_cpu_s,
    )


# ---------------------------------------------------------------------------------------------- scoring


def norm(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    return re.sub(r"[^0-9a-z\u4e00-\u9fff]", "", text)


@dataclass
class Outcome:
    """One manifest reference, with what the aligner did for it."""

    case: str
    method: str
    tags: list[str]
    positive: bool
    exact: bool = False
    near: bool = False
    links: int = 0
    links_exact: int = 0
    links_near: int = 0


@dataclass
class Scored:
    outcomes: list[Outcome] = field(default_factory=list)
    unattributed: list[tuple[str, str, str]] = field(default_factory=list)  # case, method, text
    caption_links: int = 0
    caption_correct: int = 0


def _sentences_of(link_text: str, sentences: Sequence[str]) -> list[int]:
    """The manifest sentences a link's sentence holds: every one inside it (a merged sentence holds several),
    else the one it is a fragment of, else the closest by edit similarity (OCR text), if close enough."""
    nl = norm(link_text)
    if not nl:
        return []
    inside = [k for k, s in enumerate(sentences) if len(norm(s)) >= 6 and norm(s) in nl]
    if inside:
        return inside
    best, best_score = None, 0.0
    for k, s in enumerate(sentences):
        ns = norm(s)
        if not ns:
            continue
        if len(nl) >= 6 and nl in ns:
            score = 1.0 + len(nl) / len(ns)
        else:
            m = SequenceMatcher(None, nl, ns, autojunk=False)
            if m.quick_ratio() < 0.6:
                continue
            score = m.ratio()
        if score > best_score:
            best, best_score = k, score
    return [best] if best is not None and best_score >= 0.6 else []


def _is_near(uid: str | None, ref: Mapping[str, Any]) -> bool:
    return uid is not None and (uid == ref["sop_instance_uid"] or uid in ref["neighbours"])


def _is_exact(link: Link, ref: Mapping[str, Any]) -> bool:
    return link.sop_instance_uid == ref["sop_instance_uid"] and not link.detail.get("neighbours")


def _pick(
    link: Link, candidates: Sequence[int], refs: Sequence[Mapping[str, Any]], outcomes: Sequence[Outcome]
) -> int:
    """The reference of the sentence that a link answers: by its instance, then by the reference's text."""
    for test in (
        lambda k: link.sop_instance_uid == refs[k]["sop_instance_uid"],
        lambda k: _is_near(link.sop_instance_uid, refs[k]),
        lambda k: bool(link.image_ref) and norm(link.image_ref or "") == norm(refs[k]["raw"]),
    ):
        found = [k for k in candidates if test(k)]
        if found:
            return min(found, key=lambda k: outcomes[k].links)
    return min(candidates, key=lambda k: outcomes[k].links)


def corrections_manifest(folder: Path) -> dict[str, Any]:
    """A case from a folder holding the review page's ground-truth export, ``dicom/`` and ``report.*``."""
    exports = sorted(folder.glob("ground-truth*.json"))
    reports = sorted(p for p in folder.glob("report.*") if p.is_file())
    if not exports or not reports or not (folder / "dicom").is_dir():
        raise SystemExit(f"{folder}: needs ground-truth*.json, report.* and dicom/ (see --help)")
    truth = json.loads(exports[0].read_text())
    if not isinstance(truth.get("links"), list):
        raise SystemExit(f"{exports[0]}: not a review-page ground-truth export (no 'links')")
    return {
        "case": f"reader:{truth.get('study_instance_uid', folder.name)}",
        "report": reports[0].name,
        "corrections": truth["links"],
    }


def score_corrections(run: Run, corrections: Sequence[Mapping[str, Any]]) -> list[Outcome]:
    """One outcome per labelled link of the review page's export (pure; see the module docstring)."""
    outcomes = []
    for item in corrections:
        if item.get("source", "report") != "report":
            continue  # drafted findings are linked by the model, not by the aligner
        key = (item.get("paragraph"), item.get("sentence"))
        text = norm(str(item.get("text") or ""))
        sops = [
            link.sop_instance_uid
            for link in run.links
            if link.source == "report"
            and link.resolved
            and link.sop_instance_uid
            and ((link.paragraph, link.sentence) == key or (text and norm(link.text) == text))
        ]
        truth = None if item.get("removed") else item.get("sop_instance_uid")
        o = Outcome(run.case, "reader-corrections", ["corrections", "copy:text-layer"], truth is not None)
        if truth is not None:
            o.links = len(sops)
            o.links_exact = o.links_near = sops.count(truth)
            o.exact = o.near = truth in sops
        else:
            o.links = sops.count(item.get("was"))  # the removed link made again
        outcomes.append(o)
    return outcomes


def score_run(run: Run, manifest: Mapping[str, Any], only: str | None = None) -> Scored:
    refs = manifest["references"]
    sentences = [s["text"] for s in manifest["sentences"]]
    roles = [s["role"] for s in manifest["sentences"]]
    copy_tag = "copy:scanned" if run.scanned else "copy:text-layer"
    outcomes = [
        Outcome(run.case, r["method"], [*r["tags"], copy_tag], r["sop_instance_uid"] is not None)
        for r in refs
    ]
    by_sentence: dict[int, list[int]] = defaultdict(list)
    for k, r in enumerate(refs):
        by_sentence[r["sentence"]].append(k)
    truth_of_figure: dict[int, set[str]] = defaultdict(set)
    for r in refs:
        if r["figure"] is not None and r["sop_instance_uid"]:
            truth_of_figure[r["figure"]].update([r["sop_instance_uid"], *r["neighbours"]])
    scored = Scored()
    for link in run.links:
        if link.source != "report" or link.method not in LINKING or not link.resolved:
            continue
        found = _sentences_of(link.text, sentences)
        candidates = [k for s in found if roles[s] == "body" for k in by_sentence.get(s, [])]
        captions = [s for s in found if roles[s] == "caption"]
        if not candidates and captions:
            scored.caption_links += 1
            numbers = [int(n) for n in re.findall(r"\d+", norm(sentences[captions[0]])[:6])[:1]]
            if numbers and link.sop_instance_uid in truth_of_figure.get(numbers[0], set()):
                scored.caption_correct += 1
            continue
        if not candidates:
            scored.unattributed.append(
                (run.case, "explicit" if link.method == "explicit" else "figure", link.text)
            )
            continue
        pick = _pick(link, candidates, refs, outcomes)
        o, ref = outcomes[pick], refs[pick]
        o.links += 1
        if o.positive:
            if _is_exact(link, ref):
                o.links_exact += 1
                o.exact = True
            if _is_near(link.sop_instance_uid, ref):
                o.links_near += 1
                o.near = True
    if only:
        scored.outcomes = [o for o in outcomes if only in o.tags]
    else:
        scored.outcomes = outcomes
    return scored


@dataclass
class Row:
    name: str
    positives: int = 0
    exact: int = 0
    near: int = 0
    links_pos: int = 0  # resolved links on references with a true instance
    links_exact: int = 0
    links_near: int = 0
    negatives: int = 0
    false_refs: int = 0  # negative references that got at least one link
    false_links: int = 0

    def add(self, o: Outcome) -> None:
        if o.positive:
            self.positives += 1
            self.exact += o.exact
            self.near += o.near
            self.links_pos += o.links
            self.links_exact += o.links_exact
            self.links_near += o.links_near
        else:
            self.negatives += 1
            self.false_refs += o.links > 0
            self.false_links += o.links

    @property
    def linked(self) -> int:
        return self.links_pos + self.false_links

    def precision(self, near: bool) -> float | None:
        return (self.links_near if near else self.links_exact) / self.linked if self.linked else None

    def recall(self, near: bool) -> float | None:
        return (self.near if near else self.exact) / self.positives if self.positives else None

    def false_rate(self) -> float | None:
        return self.false_refs / self.negatives if self.negatives else None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "references": self.positives + self.negatives,
            "positives": self.positives,
            "negatives": self.negatives,
            "links": self.linked,
            "precision_exact": self.precision(False),
            "precision_near": self.precision(True),
            "recall_exact": self.recall(False),
            "recall_near": self.recall(True),
            "false_link_rate": self.false_rate(),
            "false_links": self.false_links,
        }


def table(outcomes: Iterable[Outcome], unattributed: Sequence[tuple[str, str, str]]) -> list[Row]:
    rows: dict[str, Row] = {}

    def row(name: str) -> Row:
        return rows.setdefault(name, Row(name))

    for o in outcomes:
        row(f"method:{o.method}").add(o)
        copy = next(t for t in o.tags if t.startswith("copy:"))
        row(f"method:{o.method} {copy}").add(o)
        for tag in o.tags:
            if tag.startswith("series:"):
                continue
            row(f"{o.method} {tag}").add(o)
    for _case, method, _text in unattributed:
        r = row(f"method:{method}")
        r.false_links += 1  # a link on a sentence that cites nothing
    return sorted(rows.values(), key=lambda r: (not r.name.startswith("method:"), r.name))


def _f(value: float | None) -> str:
    return "   –  " if value is None else f"{value:6.3f}"


def print_table(rows: Sequence[Row]) -> None:
    print(
        f"{'':44} {'refs':>5} {'P exact':>7} {'P ±1':>6} {'R exact':>7} {'R ±1':>6} {'neg':>4} {'false':>6}"
    )
    for r in rows:
        print(
            f"{r.name[:44]:44} {r.positives + r.negatives:5d} {_f(r.precision(False)):>7} "
            f"{_f(r.precision(True))} "
            f"{_f(r.recall(False)):>7} {_f(r.recall(True))} {r.negatives:4d} {_f(r.false_rate())}"
        )


def goals(rows: Sequence[Row], large: Run | None) -> list[tuple[str, bool | None, str]]:
    by = {r.name: r for r in rows}
    ex, fig = by.get("method:explicit"), by.get("method:figure")
    scan = by.get("method:figure copy:scanned")
    decoy = by.get("figure decoy")
    out: list[tuple[str, bool | None, str]] = []

    def check(name: str, value: float | None, target: float, above: bool = True) -> None:
        ok = None if value is None else (value >= target if above else value <= target)
        out.append((name, ok, f"{_f(value).strip()} (goal {'≥' if above else '≤'} {target})"))

    if ex:
        check("explicit precision", ex.precision(False), 1.0)
        check("explicit recall", ex.recall(False), 1.0)
    if fig:
        check("figure precision (exact or ±1)", fig.precision(True), 0.99)
        check("figure recall (exact or ±1)", fig.recall(True), 0.95)
        check("figure recall (exact)", fig.recall(False), 0.85)
    if decoy:
        out.append(("decoy false links", decoy.false_links == 0, f"{decoy.false_links} (goal 0)"))
    if scan:
        check("scanned-report figure recall (exact or ±1)", scan.recall(True), 0.90)
    if large is not None:
        check(
            f"seconds to align the {large.instances}-instance study",
            large.headers_s + large.align_s,
            5.0,
            above=False,
        )
    return out


# ------------------------------------------------------------------------------------------------- main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--studies", type=int, default=30, help="number of generated studies (default 30)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="generate (and keep) the cases here; reused when present")
    parser.add_argument("--cases", type=Path, help="use the cases already generated in this directory")
    parser.add_argument(
        "--only", help="score only references with this tag (e.g. fig:montage2, kind:mr, copy:scanned)"
    )
    parser.add_argument("--no-scans", action="store_true", help="skip the scanned copies (no OCR)")
    parser.add_argument(
        "--large", action="store_true", help="also the 2,000-slice CT with a six-figure report"
    )
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable results instead of the table"
    )
    parser.add_argument("--json-out", type=Path, help="also write the machine-readable results here")
    parser.add_argument(
        "--corrections",
        type=Path,
        action="append",
        default=[],
        help="a folder with a review-page ground-truth export, dicom/ and report.* (repeatable)",
    )
    args = parser.parse_args(argv)
    cv2.setNumThreads(2)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if args.corrections and not args.cases and not args.out:
        folders = []  # the readers' corrections only
    elif args.cases:
        root = args.cases
        folders = sorted(p.parent for p in root.glob("*/truth.json"))
        if not args.large:
            folders = [f for f in folders if not f.name.startswith("large-")]
    else:
        if args.out:
            root = args.out
        else:
            tmp = tempfile.TemporaryDirectory(prefix="align-suite-")
            root = Path(tmp.name)
        t = time.perf_counter()
        folders = generate(root, args.studies, args.seed, large=args.large, scanned=not args.no_scans)
        log(f"{len(folders)} cases under {root} ({time.perf_counter() - t:.0f} s to generate or load)")
    gateway_settings = Settings()  # defaults and GATEWAY_* variables, as the pipeline stages see them
    settings = gateway_settings.reading
    options = options_from(gateway_settings)
    engine = None
    runs: list[tuple[Run, dict[str, Any]]] = []
    large_run: Run | None = None
    for folder in folders:
        manifest = json.loads((folder / "truth.json").read_text())
        if manifest.get("suite_version") != SUITE_VERSION:
            log(f"{folder.name}: suite version {manifest.get('suite_version')} != {SUITE_VERSION}, skipped")
            continue
        if (
            args.only
            and not args.only.startswith("copy:")
            and not any(args.only in r["tags"] for r in manifest["references"])
        ):
            continue
        copies = [False]
        if manifest.get("scanned_report") and not args.no_scans:
            copies.append(True)
        if args.only == "copy:scanned":
            copies = [c for c in copies if c]
        elif args.only == "copy:text-layer":
            copies = [False]
        for scanned in copies:
            if scanned and engine is None:
                engine = make_engine(settings.engine, settings)
            run = run_case(folder, manifest, scanned, engine, settings, options)
            runs.append((run, manifest))
            if folder.name.startswith("large-"):
                large_run = run
            log(
                f"{run.case:18} {'scan' if scanned else 'text'}  {run.instances:5d} inst  "
                f"{run.figures_found} fig  "
                f"read {run.read_s:5.2f} s  headers {run.headers_s:5.2f} s  align {run.align_s:5.2f} s "
                f"(cpu {run.align_cpu_s:5.2f} s)"
                + (f"  features {run.extract_s:5.2f} s" if run.extract_s else "")
                + (f"  ERROR {run.error}" if run.error else "")
            )
    scored = [
        score_run(run, manifest, args.only) for run, manifest in runs if not run.case.startswith("large-")
    ]
    outcomes = [o for s in scored for o in s.outcomes]
    for folder in args.corrections:
        manifest = corrections_manifest(folder)
        run = run_case(folder, manifest, False, engine, settings, options)
        log(
            f"{run.case}: {len(manifest['corrections'])} labelled links"
            + (f"  ERROR {run.error}" if run.error else "")
        )
        outcomes += score_corrections(run, manifest["corrections"])
    unattributed = [u for s in scored for u in s.unattributed]
    rows = table(outcomes, unattributed)
    regular = [r for r, _ in runs if not r.case.startswith("large-")]
    timing = {
        name: {
            "read_s": _mean([r.read_s for r in regular if r.scanned == scanned]),
            "headers_s": _mean([r.headers_s for r in regular if r.scanned == scanned]),
            "align_s": _mean([r.align_s for r in regular if r.scanned == scanned]),
            "total_s": _mean([r.total_s for r in regular if r.scanned == scanned]),
        }
        for name, scanned in (("text-layer", False), ("scanned", True))
    }
    checks = goals(rows, large_run)
    caption_links = sum(s.caption_links for s in scored)
    caption_correct = sum(s.caption_correct for s in scored)
    results = {
        "suite_version": SUITE_VERSION,
        "seed": args.seed,
        "cases": len({r.case for r in regular}),
        "only": args.only,
        "rows": [r.to_json() for r in rows],
        "unattributed_links": [{"case": c, "method": m, "text": t} for c, m, t in unattributed],
        "caption_links": {"links": caption_links, "correct": caption_correct},
        "seconds_per_study": timing,
        "large": None
        if large_run is None
        else {
            "instances": large_run.instances,
            "read_s": large_run.read_s,
            "headers_s": large_run.headers_s,
            "align_s": large_run.align_s,
            "align_cpu_s": large_run.align_cpu_s,
            "extract_s": large_run.extract_s,
        },
        "runs": [
            {
                "case": r.case,
                "scanned": r.scanned,
                "read_s": r.read_s,
                "headers_s": r.headers_s,
                "align_s": r.align_s,
                "align_cpu_s": r.align_cpu_s,
                "extract_s": r.extract_s,
                "instances": r.instances,
                "figures_found": r.figures_found,
                "error": r.error,
            }
            for r, _ in runs
        ],
        "goals": [{"goal": g, "met": ok, "value": v} for g, ok, v in checks],
    }
    if args.json_out:
        args.json_out.write_text(json.dumps(results, ensure_ascii=False, indent=1))
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=1))
    else:
        print()
        print(
            f"{len({r.case for r in regular})} studies (seed {args.seed}), {len(regular)} report copies, "
            f"{len(outcomes)} scored references; P = precision, R = recall; ±1 = exact or a ±1 neighbour; "
            "neg = references with no true instance (decoys, missing), false = share of them linked"
        )
        print_table(rows)
        print(
            f"links on sentences that cite nothing (counted as false in the method rows): {len(unattributed)}"
        )
        for case, method, text in unattributed[:10]:
            print(f"    {case} {method}: {text[:80]}")
        print(
            f"links from caption text: {caption_links} "
            f"({caption_correct} to the figure's true instance or a neighbour)"
        )
        for name, t in timing.items():
            if t["total_s"] is not None:
                print(
                    f"seconds per study, {name}: read {t['read_s']:.2f}, headers {t['headers_s']:.2f}, "
                    f"align (incl. rendering) {t['align_s']:.2f}, total {t['total_s']:.2f}"
                )
        if large_run is not None:
            print(
                f"large study: {large_run.instances} instances, read {large_run.read_s:.2f} s, headers "
                f"{large_run.headers_s:.2f} s, align {large_run.align_s:.2f} s "
                f"(cpu {large_run.align_cpu_s:.2f} s; features at extract {large_run.extract_s:.2f} s)"
            )
        print("goals:")
        for name, ok, value in checks:
            print(f"  [{'met' if ok else 'NOT met' if ok is False else '  –  '}] {name}: {value}")
    if tmp is not None:
        tmp.cleanup()
    return 0


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    raise SystemExit(main())
