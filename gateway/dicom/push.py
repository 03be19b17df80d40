"""``gateway push``: a C-STORE SCU that sends files as they are, with a progress bar."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_file_meta_info
from pynetdicom import AE
from tqdm import tqdm

MAX_CONTEXTS = 128  # PS3.8 9.3.2.2: presentation context IDs are odd numbers 1-255


@dataclass
class PushResult:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)


def _files(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(p for p in path.rglob("*") if p.is_file()))
        elif path.is_file():
            out.append(path)
    return out


def push_files(
    paths: Iterable[Path], *, host: str, port: int, called_aet: str, calling_aet: str, progress: bool = True
) -> PushResult:
    result = PushResult()
    items: list[tuple[Path, str, str]] = []
    for path in _files(paths):
        try:
            meta = read_file_meta_info(path)
            items.append((path, str(meta.MediaStorageSOPClassUID), str(meta.TransferSyntaxUID)))
        except (InvalidDicomError, AttributeError, OSError, ValueError):
            result.skipped += 1
    if not items:
        return result
    ae = AE(ae_title=calling_aet)
    contexts = sorted({(sop, ts) for _, sop, ts in items})
    if len(contexts) > MAX_CONTEXTS:
        raise ValueError(
            f"{len(contexts)} SOP class / transfer syntax pairs; at most {MAX_CONTEXTS} per association"
        )
    for sop, ts in contexts:
        ae.add_requested_context(sop, ts)
    assoc = ae.associate(host, port, ae_title=called_aet)
    if not assoc.is_established:
        result.failed = len(items)
        result.failures.append((Path(host), "association rejected or peer unreachable"))
        return result
    try:
        for index, (path, _, _) in enumerate(tqdm(items, unit="inst", disable=not progress, desc="C-STORE")):
            status = assoc.send_c_store(path)
            code = int(status.Status) if status is not None and "Status" in status else None
            if code is not None and code in (0x0000, 0xB000, 0xB006, 0xB007):
                result.sent += 1
            else:
                result.failed += 1
                comment = str(status.get("ErrorComment", "")) if status is not None else "no response"
                result.failures.append(
                    (path, f"status 0x{code:04X} {comment}" if code is not None else comment)
                )
            if not assoc.is_established:
                # The peer released or aborted: what was not sent has failed too.
                unsent = items[index + 1 :]
                result.failed += len(unsent)
                result.failures.extend((p, "association closed before it was sent") for p, _, _ in unsent)
                break
    finally:
        if assoc.is_established:
            assoc.release()
    return result
