"""Ingest benchmark: C-STORE throughput of the gateway's SCP beside Orthanc and DCMTK's storescp.

The same instances are pushed with DCMTK ``storescu`` over one association, then over four parallel
associations (four ``storescu`` processes, a quarter each), to every target. Each measurement starts the
target on a fresh, empty store, waits for C-ECHO, then times from the first ``storescu`` start to the last
one's exit.

Targets:

* ``gateway-sqlite``   ``gateway scp`` with fsync'd writes and its SQLite index;
* ``gateway-postgres`` the same with a PostgreSQL index (database ``gw_bench_<pid>``, dropped after);
* ``orthanc``          Orthanc from Debian, default configuration (SQLite index, synced storage);
* ``storescp``         DCMTK ``storescp`` writing plain files: a floor with no index at all.
* ``pynetdicom-bare``  a pynetdicom SCP that keeps nothing: the ceiling for a pynetdicom receiver.

Sets (generated here with pydicom, cached under ``--work-dir``):

* ``small``: ``--small`` CT instances of about 40 KB (140 x 140 x 16 bit), default 2000;
* ``large``: ``--large`` CT instances of about 0.5 MB (512 x 512 x 16 bit), default 300.

Goals: the gateway ahead of Orthanc over one association and at least 2x Orthanc over four, with every
acknowledgement after the fsync of file and directory and the index commit.

Levers to compare in one run: ``--gateway-processes N`` (SCP processes sharing the port),
``--gateway-env GATEWAY_DICOM__DUL_WAKEUP=poll`` (pynetdicom's own DUL loop instead of the event-driven one),
``--gateway-env GATEWAY_DICOM__GROUP_COMMIT_WINDOW=0.002``. To see where the time goes, run ``gateway scp``
under ``py-spy record --idle -f raw`` (the ``bench`` extra) while ``storescu`` sends; docs/architecture.md
has the breakdown.

Usage::

    .venv/bin/python benchmarks/ingest.py [--small 2000 --large 300] [--targets gateway-sqlite,orthanc]
        [--associations 1,4] [--gateway-processes 4] [--repeat 1] [--json-out results.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    REPO,
    DcmtkStorescp,
    Gateway,
    Orthanc,
    PynetdicomBare,
    Target,
    TargetError,
    dcmtk_env,
)

GOALS = {1: 1.0, 4: 2.0}  # gateway / Orthanc, by number of associations
PARTS = 4  # each set is stored as four folders so that four storescu processes can take one each
SETS = {"small": 140, "large": 512}  # rows = columns of 16-bit pixels: ~40 KB and ~0.5 MB per instance


# --------------------------------------------------------------------------------------------- instances


@dataclass
class InstanceSet:
    name: str
    root: Path
    count: int
    total_bytes: int

    def parts(self) -> list[Path]:
        return [self.root / f"part{k}" for k in range(PARTS)]


def _instance(
    size: int, study: str, series: str, frame: str, number: int, patient: int, pixels: bytes
) -> Dataset:
    sop = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = sop
    ds.StudyInstanceUID = study
    ds.SeriesInstanceUID = series
    ds.FrameOfReferenceUID = frame
    ds.PatientName = f"Bench^Patient{patient:03d}"
    ds.PatientID = f"BENCH-{patient:04d}"
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "O"
    ds.AccessionNumber = f"BENCH{patient:06d}"
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240315"
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = "093000"
    ds.StudyID = "1"
    ds.ReferringPhysicianName = ""
    ds.Modality = "CT"
    ds.SeriesNumber = 2
    ds.InstanceNumber = number
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.BodyPartExamined = "CHEST"
    ds.SeriesDescription = "Benchmark"
    ds.ImagePositionPatient = [0, 0, -float(number)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [0.7, 0.7]
    ds.SliceThickness = 1.0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.PixelData = pixels
    ds["PixelData"].VR = "OW"
    return ds


def make_set(name: str, count: int, root: Path, seed: int = 0) -> InstanceSet:
    """Write ``count`` instances into ``root/part0..3``; reuse them if a previous run wrote the same."""
    size = SETS[name]
    stamp = {"name": name, "count": count, "size": size, "version": 2}
    marker = root / "set.json"
    if marker.exists() and json.loads(marker.read_text()).get("stamp") == stamp:
        info = json.loads(marker.read_text())
        return InstanceSet(name, root, count, int(info["total_bytes"]))
    if root.exists():
        shutil.rmtree(root)
    for part in range(PARTS):
        (root / f"part{part}").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    per_study = 250 if name == "small" else 60
    noise = rng.integers(0, 4096, size=(size * size * 4,), dtype=np.uint16)
    total = 0
    study = series = frame = ""
    for i in range(count):
        if i % per_study == 0:
            study, series, frame = generate_uid(), generate_uid(), generate_uid()
        offset = int(rng.integers(0, size * size * 3))
        pixels = noise[offset : offset + size * size].tobytes()
        ds = _instance(size, study, series, frame, i % per_study + 1, i // per_study + 1, pixels)
        # Files are dealt round-robin so each quarter holds the same mix of studies.
        path = root / f"part{i % PARTS}" / f"{i:06d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        total += path.stat().st_size
    marker.write_text(json.dumps({"stamp": stamp, "total_bytes": total}))
    return InstanceSet(name, root, count, total)


# --------------------------------------------------------------------------------------------- measuring


@dataclass
class Result:
    target: str
    set: str
    associations: int
    instances: int
    bytes: int
    seconds: float
    instances_per_s: float
    mb_per_s: float
    received: int | None
    failures: int
    runs: list[float]


def _send(endpoint_ae: str, port: int, folders: list[list[Path]], log_dir: Path) -> tuple[float, int]:
    """Run one ``storescu`` per entry of ``folders`` at once; return wall seconds and failed processes."""
    procs = []
    logs = []
    start = time.perf_counter()
    for k, group in enumerate(folders):
        log = (log_dir / f"storescu{k}.log").open("wb")
        logs.append(log)
        # --no-halt: a refused instance must not end the run early and shorten the timed part.
        argv = ["storescu", "-aec", endpoint_ae, "-aet", "BENCHSCU", "--no-halt", "--scan-directories"]
        argv += ["127.0.0.1", str(port), *map(str, group)]
        procs.append(subprocess.Popen(argv, env=dcmtk_env(), stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    elapsed = time.perf_counter() - start
    for log in logs:
        log.close()
    return elapsed, sum(1 for c in codes if c != 0)


def _store_errors(log_dir: Path) -> int:
    """Count C-STORE responses with a failure status that storescu reported in its logs."""
    n = 0
    for log in log_dir.glob("storescu*.log"):
        text = log.read_text(errors="replace")
        n += text.count("Store Failed") + text.count("Status: 0xa") + text.count("Status: 0xc")
    return n


@dataclass
class Run:
    """One timed send to a freshly started target."""

    seconds: float
    received: int | None
    failures: int


def measure_once(target: Target, inst: InstanceSet, associations: int, work: Path, keep: bool) -> Run:
    run_dir = Path(tempfile.mkdtemp(prefix=f"{target.name}-{inst.name}-{associations}-", dir=work))
    try:
        endpoint = target.start(run_dir)
        parts = inst.parts()
        groups = [parts] if associations == 1 else [parts[k::associations] for k in range(associations)]
        seconds, failed = _send(endpoint.ae_title, endpoint.port, groups, run_dir)
        time.sleep(0.2)  # an SCP may finish its last index write just after the response
        run = Run(seconds, target.received(), failed + _store_errors(run_dir))
    except TargetError as exc:
        raise TargetError(f"{exc} (see {run_dir})") from exc
    finally:
        target.stop()
    if not keep and run.failures == 0 and run.received in (None, inst.count):
        shutil.rmtree(run_dir, ignore_errors=True)
    return run


def summarise(target: str, inst: InstanceSet, associations: int, runs: list[Run]) -> Result:
    seconds = statistics.median(r.seconds for r in runs)
    return Result(
        target=target,
        set=inst.name,
        associations=associations,
        instances=inst.count,
        bytes=inst.total_bytes,
        seconds=round(seconds, 3),
        instances_per_s=round(inst.count / seconds, 1),
        mb_per_s=round(inst.total_bytes / seconds / 1e6, 2),
        received=runs[-1].received,
        failures=sum(r.failures for r in runs),
        runs=[round(r.seconds, 3) for r in runs],
    )


def _targets(names: list[str], gateway_processes: int, gateway_env: dict[str, str]) -> list[Target]:
    def gateway(database: str) -> Target:
        return Gateway(
            name=f"gateway-{database}", database=database, processes=gateway_processes, extra_env=gateway_env
        )

    factories: dict[str, Callable[[], Target]] = {
        "gateway-sqlite": lambda: gateway("sqlite"),
        "gateway-postgres": lambda: gateway("postgres"),
        "orthanc": Orthanc,
        "storescp": DcmtkStorescp,
        "pynetdicom-bare": PynetdicomBare,
    }
    unknown = set(names) - set(factories)
    if unknown:
        raise SystemExit(f"unknown targets: {', '.join(sorted(unknown))}; known: {', '.join(factories)}")
    return [factories[n]() for n in names]


def _table(results: list[Result]) -> str:
    ref = {(r.set, r.associations): r.instances_per_s for r in results if r.target == "orthanc"}
    head = (
        f"{'target':18} {'set':6} {'assoc':>5} {'inst':>6} {'inst/s':>9} {'MB/s':>8} {'vs Orthanc':>10}  note"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        base = ref.get((r.set, r.associations))
        ratio = f"{r.instances_per_s / base:.2f}x" if base else "-"
        notes = []
        if r.received is not None and r.received != r.instances:
            notes.append(f"received {r.received}")
        if r.failures:
            notes.append(f"{r.failures} failures")
        goal = GOALS.get(r.associations)
        if r.target.startswith("gateway") and base and goal:
            notes.append(("meets" if r.instances_per_s / base >= goal else "below") + f" {goal}x goal")
        lines.append(
            f"{r.target:18} {r.set:6} {r.associations:>5} {r.instances:>6} {r.instances_per_s:>9.1f} "
            f"{r.mb_per_s:>8.2f} {ratio:>10}  {', '.join(notes)}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--small", type=int, default=2000, help="instances of ~40 KB (0 to skip)")
    parser.add_argument("--large", type=int, default=300, help="instances of ~0.5 MB (0 to skip)")
    parser.add_argument(
        "--targets",
        default="gateway-sqlite,gateway-postgres,orthanc,storescp",
        help="comma-separated: gateway-sqlite, gateway-postgres, orthanc, storescp, pynetdicom-bare",
    )
    parser.add_argument("--associations", default="1,4", help="comma-separated association counts (1..4)")
    parser.add_argument(
        "--gateway-processes", type=int, default=1, help="GATEWAY_DICOM__PROCESSES for the gateway targets"
    )
    parser.add_argument(
        "--gateway-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the gateway targets, e.g. GATEWAY_DICOM__FSYNC=false (repeatable)",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per cell; the median is reported")
    parser.add_argument("--work-dir", type=Path, default=REPO / "benchmarks" / "out" / "ingest")
    parser.add_argument("--keep", action="store_true", help="keep each run's received data and logs")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args(argv)

    for tool in ("storescu", "echoscu"):
        if shutil.which(tool) is None:
            parser.error(f"{tool} (DCMTK) is not on PATH")
    associations = [int(a) for a in args.associations.split(",") if a]
    if any(not 1 <= a <= PARTS for a in associations):
        parser.error(f"associations must be between 1 and {PARTS}")
    work: Path = args.work_dir.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)

    sets = []
    for name, count in (("small", args.small), ("large", args.large)):
        if count > 0:
            t0 = time.perf_counter()
            inst = make_set(name, count, work / "sets" / name)
            each = inst.total_bytes / inst.count / 1024
            print(
                f"set {name}: {inst.count} instances, {inst.total_bytes / 1e6:.1f} MB ({each:.0f} KiB each), "
                f"ready in {time.perf_counter() - t0:.1f} s",
                flush=True,
            )
            sets.append(inst)

    gateway_env = dict(item.split("=", 1) for item in args.gateway_env)
    skipped: dict[str, str] = {}
    targets = []
    for target in _targets([t for t in args.targets.split(",") if t], args.gateway_processes, gateway_env):
        reason = target.available()
        if reason:
            skipped[target.name] = reason
            print(f"skip {target.name}: {reason}", flush=True)
        else:
            targets.append(target)

    # Targets take turns within each cell (and each repeat), so that load from elsewhere on the machine
    # falls on all of them alike and the ratios stay fair.
    runs: dict[tuple[str, str, int], list[Run]] = {}
    for inst in sets:
        for n in associations:
            for _ in range(args.repeat):
                for target in targets:
                    key = (target.name, inst.name, n)
                    if "/".join(map(str, key)) in skipped:
                        continue
                    try:
                        run = measure_once(target, inst, n, work / "runs", args.keep)
                    except TargetError as exc:
                        skipped["/".join(map(str, key))] = str(exc)
                        print(f"skip {target.name} {inst.name} x{n}: {exc}", flush=True)
                        continue
                    runs.setdefault(key, []).append(run)
                    print(
                        f"{target.name:18} {inst.name:6} x{n}: {inst.count / run.seconds:8.1f} inst/s "
                        f"{inst.total_bytes / run.seconds / 1e6:7.2f} MB/s  ({run.seconds:.2f} s, "
                        f"received {run.received}, failures {run.failures})",
                        flush=True,
                    )
    by_set = {s.name: s for s in sets}
    results = [summarise(t, by_set[name], n, rs) for (t, name, n), rs in runs.items()]
    order = {t.name: i for i, t in enumerate(targets)}
    results.sort(key=lambda r: (order[r.target], r.set != "small", r.associations))

    print()
    print(_table(results))
    if args.json_out:
        payload: dict[str, Any] = {
            "benchmark": "ingest",
            "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "host": {
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
            },
            "gateway_processes": args.gateway_processes,
            "gateway_env": gateway_env,
            "goals_vs_orthanc": GOALS,
            "sets": [{"name": s.name, "count": s.count, "bytes": s.total_bytes} for s in sets],
            "results": [asdict(r) for r in results],
            "skipped": skipped,
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json_out}")
    bad = [r for r in results if r.failures or (r.received is not None and r.received != r.instances)]
    return 1 if bad or not results else 0


if __name__ == "__main__":
    sys.exit(main())
