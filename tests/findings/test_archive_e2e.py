"""End to end on the gateway's own archive: studies pushed through ``gateway serve`` (DCMTK storescu), then
``gateway findings export`` → ``train`` → ``eval`` → the ``draft_findings`` stage with the trained model.

Small and CPU only: 14 synthetic two-view studies at 64 px, each with a Basic Text SR report, and a tiny
attention model trained for two epochs at 32 px with the clinical-context prefix. It checks the plumbing and
the data contract, not the model. Every other study's images carry the order's reason (Reason for the
Requested Procedure, as from a worklist), which wins over the report's INDICATION section, in the export and
in the stage alike.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.cli import findings as findings_cli
from gateway.findings.export import patient_key, patient_split
from gateway.findings.synthetic import generate, write_dicom, write_sr_report
from gateway.index.db import open_index
from gateway.index.models import Document, Study
from gateway.settings import Settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
from harness import find_free_port

NAMES = ["Zhang^Wei", "Li^Na", "Wang^Fang", "Liu^Yang", "Chen^Jing", "Smith^John", "Garcia^Maria"]
_SPLITS = {"train": 9, "val": 2, "test": 3}


def _patients() -> list[str]:
    """Patient IDs whose fixed splits give 9 train, 2 val and 3 test studies."""
    wanted, chosen = dict(_SPLITS), []
    for n in range(1000):
        pid = f"MRN{n:06d}"
        split = patient_split(patient_key("", pid))
        if wanted[split]:
            wanted[split] -= 1
            chosen.append(pid)
        if not any(wanted.values()):
            return chosen
    raise AssertionError("no patient IDs found")


def _run(settings: Settings, *argv: str) -> int:
    common = argparse.ArgumentParser(add_help=False)
    parser = argparse.ArgumentParser(prog="gateway")
    findings_cli.register(parser.add_subparsers(dest="command", required=True), common)
    args = parser.parse_args(["findings", *argv])
    code: int = args.func(args, settings)
    return code


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if shutil.which("storescu") is None:
        pytest.fail("DCMTK storescu is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("archive")
    files, studies = root / "push", []
    for index, (study, pid) in enumerate(zip(generate(14, seed=3, size=64), _patients(), strict=True)):
        uid = f"1.2.826.0.1.3680043.10.1456.77.{index + 1}"
        name = NAMES[index % len(NAMES)]
        header: dict[str, object] = {
            "PatientName": name,
            "PatientBirthDate": "19500101" if index % 2 else "19850615",
            "PatientSex": "F" if index % 2 else "M",
            "StudyDate": f"202{4 if index else 3}0{1 + index % 9}15",
            "AccessionNumber": f"ACC{index:07d}",
        }
        views = []
        ordered = {**header, "ReasonForTheRequestedProcedure": "Fever."} if index % 2 else header
        for pixels, view in ((study.frontal, "PA"), (study.lateral, "LL")):
            sop = write_dicom(
                files / f"{index}-{view}.dcm",
                pixels,
                view_position=view,
                study_uid=uid,
                patient_id=pid,
                extra=ordered,
            )
            views.append(sop)
        # Some reports carry PHI in the text, as real ones do; the de-identified export must strip it.
        text = (
            study.findings
            if index % 3
            else f"Patient {name.replace('^', ' ')}, {pid}, seen on 2024-03-05. {study.findings}"
        )
        write_sr_report(
            files / f"{index}-SR.dcm",
            study_uid=uid,
            patient_id=pid,
            findings=text,
            indication="Cough.",
            extra=header,
        )
        studies.append(
            {
                "uid": uid,
                "patient_id": pid,
                "name": name,
                "report": study.findings,
                "views": views,
                "indication": "Fever." if index % 2 else "Cough.",
            }
        )
    data_dir = root / "data"
    dicom_port, http_port = find_free_port(), find_free_port()
    log = root / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    with log.open("wb") as fh:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gateway", "serve", "--data-dir", str(data_dir)),
                *("--dicom-port", str(dicom_port), "--http-port", str(http_port), "--stable-age", "1"),
            ],
            stdout=fh,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        tcp = {**os.environ, "TCP_NODELAY": "1"}
        deadline = time.monotonic() + 60
        while subprocess.run(
            ["echoscu", "-aec", "GATEWAY", "127.0.0.1", str(dicom_port)], env=tcp
        ).returncode:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        subprocess.run(
            ["storescu", "-aec", "GATEWAY", "127.0.0.1", str(dicom_port), *map(str, sorted(files.iterdir()))],
            check=True,
            env=tcp,
            capture_output=True,
            timeout=120,
        )
        sessions = open_index(f"sqlite:///{data_dir / 'index.sqlite3'}")
        deadline = time.monotonic() + 240
        while True:
            with sessions() as session:
                states = [s.state for s in session.scalars(select(Study))]
            if len(states) == len(studies) and all(s in ("done", "failed") for s in states):
                break
            assert time.monotonic() < deadline, f"{states}\n{log.read_text()[-3000:]}"
            time.sleep(0.5)
        assert set(states) == {"done"}, log.read_text()[-3000:]
        yield {"root": root, "data_dir": data_dir, "sessions": sessions, "studies": studies}
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()


def _manifest(folder: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / "archive.jsonl").read_text(encoding="utf-8").splitlines()]


def test_export_train_eval_draft(served: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    root, sessions, studies = served["root"], served["sessions"], served["studies"]
    settings = Settings(data_dir=served["data_dir"])
    by_uid = {s["uid"]: s for s in studies}

    # Without a configured model the pipeline wrote no text at all.
    with sessions() as session:
        drafts = list(session.scalars(select(Document).where(Document.kind == "draft")))
    assert len(drafts) == len(studies)
    assert all(d.content == {"status": "no findings model configured", "sentences": []} for d in drafts)

    # A reader approved a corrected draft for one study (the review page's document; see reviewed_findings).
    reviewed = studies[1]
    with sessions.begin() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == reviewed["uid"])).one()
        session.add(
            Document(
                study_fk=study.id,
                stage="review",
                key="draft.review.json",
                kind="draft-review",
                study_version=study.version,
                media_type="application/json",
                content={"status": "approved", "reader": "Dr Reader", "text": "The lungs are clear."},
            )
        )

    out = root / "export"
    assert _run(settings, "export", "--out", str(out), "--since", "2024-01-01") == 0
    report = capsys.readouterr().out
    skipped = patient_split(patient_key("", studies[0]["patient_id"]))  # the one study before --since
    counts = {k: v - (k == skipped) for k, v in _SPLITS.items()}
    expected = ", ".join(f"{k} {v}" for k, v in counts.items())
    assert f"13 studies (1 with a reviewed draft as target): {expected}" in report
    assert "skipped 1: before --since" in report
    rows = _manifest(out)
    assert len(rows) == 13
    for row in rows:
        source = by_uid[row["study_uid"]]
        assert row["patient_id"] == source["patient_id"]
        assert row["split"] == patient_split(patient_key("", source["patient_id"]))
        assert [(i["view_position"], i["sop_instance_uid"]) for i in row["images"]] == list(
            zip(("PA", "LL"), source["views"], strict=True)
        )
        assert all(Path(i["path"]).is_file() for i in row["images"])
        assert row["language"] == "en" and row["context"]["indication"] == source["indication"]
        assert row["context"]["sex"] in ("F", "M") and row["context"]["age"] in (38, 39, 74)
        if source is reviewed:
            assert (row["findings"], row["target"]) == ("The lungs are clear.", "reviewed-approved")
        else:
            assert row["findings"].endswith(source["report"]) and row["target"] == "report"
    # The same patients land in the same splits on a second export.
    again = root / "export2"
    assert _run(settings, "export", "--out", str(again)) == 0
    assert {r["study_uid"]: r["split"] for r in rows}.items() <= {
        r["study_uid"]: r["split"] for r in _manifest(again)
    }.items()

    deid = root / "deid"
    assert _run(settings, "export", "--out", str(deid), "--deidentify") == 0
    text = (deid / "archive.jsonl").read_text(encoding="utf-8")
    for source in studies:
        assert source["patient_id"] not in text and source["uid"] not in text
        assert all(part not in text for part in source["name"].split("^"))
        assert all(v not in text for v in source["views"])
    assert "2024-03-05" not in text and "ACC000" not in text and "19500101" not in text
    deid_rows = _manifest(deid)
    assert len(deid_rows) == 14 and all((deid / i["path"]).is_file() for r in deid_rows for i in r["images"])
    assert {r["split"] for r in deid_rows} == {"train", "val", "test"}
    assert _manifest(deid) == deid_rows  # pseudonyms are keyed, so a re-export matches
    assert _run(settings, "export", "--out", str(deid), "--deidentify") == 0
    assert _manifest(deid) == deid_rows

    run = root / "run"
    train = [
        "--data",
        str(out),
        "--format",
        "archive",
        "--model",
        "attention",
        "--preset",
        "tiny",
        "--context",
    ]
    size = ["--image-size", "32", "--batch-size", "4"]
    assert _run(settings, "train", *train, *size, "--out", str(run), "--epochs", "2", "--device", "cpu") == 0
    assert "epoch 2:" in capsys.readouterr().out
    split = json.loads((run / "best" / "split.json").read_text())
    assert sorted(split["test"]) == sorted(r["study_uid"] for r in rows if r["split"] == "test")

    assert (
        _run(
            settings,
            "eval",
            "--checkpoint",
            str(run),
            "--data",
            str(out),
            "--format",
            "archive",
            "--no-meteor",
            "--beam-size",
            "2",
            "--device",
            "cpu",
        )
        == 0
    )
    evaluated = capsys.readouterr().out
    assert "3 test studies" in evaluated and "CheXpert micro-F1" in evaluated and "fixed report" in evaluated
    assert "with the context prefix" in evaluated

    # The draft_findings stage with the trained model, on a test-split study the gateway received.
    from gateway.pipeline.stage import StageContext
    from gateway.pipeline.stages import draft_findings

    configured = settings.model_copy(
        update={
            "findings": settings.findings.model_copy(update={"checkpoint": run / "best", "device": "cpu"})
        }
    )
    target = next(r for r in rows if r["split"] == "test")
    with sessions() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == target["study_uid"])).one()
        session.expunge(study)
    ctx = StageContext(
        settings=configured, sessions=sessions, study_version=study.version, stage="draft_findings"
    )
    result = draft_findings.run(ctx, study)
    assert result["status"] == "preliminary" and result["sentences"] >= 1
    (draft,) = ctx.documents(study, kind="draft")
    content = draft.content or {}
    assert content["status"] == "preliminary" and content["machine_written"] is True
    assert content["model_name"] == "findings-attention" and len(content["model_version"]) == 12
    assert {s["sop_instance_uid"] for s in content["sentences"]} == {target["images"][0]["sop_instance_uid"]}
    # the stage read the context the export wrote for training, from the same sources
    assert content["context"] == target["context"]
    from gateway.findings.checkpoint import load_checkpoint

    config = load_checkpoint(run / "best").model.config
    assert config.context and config.generated_vocab_size is not None
    prefix_only = set(load_checkpoint(run / "best").vocab.tokens[config.generated_vocab_size :])
    assert {"sex:f", "sex:m"} <= prefix_only
    assert not {w for s in content["sentences"] for w in s["text"].split()} & prefix_only
