"""``gateway align STUDY_UID [--json]``: show how a study's report sentences link to its images."""

from __future__ import annotations

import argparse
import json
from typing import Any

from gateway.settings import Settings


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "align",
        parents=[common],
        help="link a study's report sentences to image instances and print the links",
    )
    parser.add_argument("study_uid", metavar="STUDY_UID")
    parser.add_argument("--json", action="store_true", help="print the links as JSON")
    parser.add_argument(
        "--recompute", action="store_true", help="align again even when the pipeline stored links"
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace, settings: Settings) -> int:
    from sqlalchemy import select

    from gateway.index.db import open_index
    from gateway.index.models import Document, Study
    from gateway.pipeline.stage import StageContext
    from gateway.pipeline.stages.align import compute_alignment

    sessions = open_index(settings.index_url)
    with sessions() as session:
        study = session.scalars(select(Study).where(Study.study_instance_uid == args.study_uid)).one_or_none()
        if study is None:
            print(f"gateway align: no study {args.study_uid}")
            return 1
        stored = session.scalars(
            select(Document)
            .where(Document.study_fk == study.id, Document.stage == "align", Document.kind == "links")
            .order_by(Document.study_version.desc())
        ).first()
    links: list[dict[str, Any]]
    if stored is not None and stored.content is not None and not args.recompute:
        links = list(stored.content.get("links", []))
    else:
        ctx = StageContext(settings=settings, sessions=sessions, study_version=study.version, stage="align")
        links = [link.to_json() for link in compute_alignment(ctx, study).links]
    if args.json:
        print(json.dumps(links, ensure_ascii=False, indent=2))
        return 0
    for link in links:
        target = link.get("sop_instance_uid") or link.get("series_instance_uid") or "unresolved"
        print(
            f"{link['method']:<9} {link['confidence']:.2f}  {link.get('image_ref') or '-':<12} → {target}  "
            f"{link['text'][:60]}"
        )
    return 0
