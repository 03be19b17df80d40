"""A reader's review applied to what the pipeline produced: link corrections and the draft decision.

:func:`apply_corrections` is pure. :func:`review_for_publish` reads the review tables; the ``publish``
stage calls it so that every later publication (a re-run, a new study version) keeps the reader's word.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.align.model import Link
from gateway.fhir.mapping.review import DraftReviewData
from gateway.index.models import DraftReview, Instance, LinkCorrection, Series, UiUser

#: What a reader can decide on a draft: approve it, reject it, save an edit without approving, or withdraw
#: an approval (back to preliminary). The newest decision of a study version is the one published.
DECISIONS = ("approved", "rejected", "saved", "withdrawn")
#: Decisions after which the draft still waits for a reader.
PENDING = ("saved", "withdrawn")

#: The method a reader-chosen link carries in FHIR and in the ground-truth export.
READER_METHOD = "reader"


@dataclass(frozen=True)
class Correction:
    source: str
    paragraph: int | None
    sentence: int | None
    original_sop: str | None
    new_sop: str | None
    new_series: str | None
    text: str = ""
    username: str = ""
    at: str = ""

    @property
    def key(self) -> tuple[str, int | None, int | None, str | None]:
        return (self.source, self.paragraph, self.sentence, self.original_sop)


def link_key(link: Link) -> tuple[str, int | None, int | None, str | None]:
    return (link.source, link.paragraph, link.sentence, link.sop_instance_uid)


def corrected_links(
    links: Sequence[Link], corrections: Sequence[Correction]
) -> list[tuple[str | None, Link]]:
    """Each kept link with the instance it pointed to before any correction (the key of later ones).

    The newest correction of a link wins (``corrections`` oldest first); a removed link is left out. A
    correction that names no earlier instance and matches no link is a link the reader *added* to a sentence
    that had none; it comes after the pipeline's links.
    """
    latest = {c.key: c for c in corrections}
    out: list[tuple[str | None, Link]] = []
    matched: set[tuple[str, int | None, int | None, str | None]] = set()
    for link in links:
        matched.add(link_key(link))
        c = latest.get(link_key(link))
        if c is None:
            out.append((link.sop_instance_uid, link))
        elif c.new_sop is not None:
            fixed = dataclasses.replace(
                link,
                sop_instance_uid=c.new_sop,
                series_instance_uid=c.new_series,
                method=cast(Any, READER_METHOD),
                confidence=1.0,
                resolved=True,
            )
            out.append((link.sop_instance_uid, fixed))
    for key, c in latest.items():
        if c.original_sop is None and c.new_sop is not None and key not in matched:
            added = Link(
                text=c.text,
                image_ref=None,
                sop_instance_uid=c.new_sop,
                series_instance_uid=c.new_series,
                method=cast(Any, READER_METHOD),
                confidence=1.0,
                paragraph=c.paragraph,
                sentence=c.sentence,
                source=cast(Any, c.source if c.source in ("report", "draft") else "report"),
            )
            out.append((None, added))
    return out


def apply_corrections(links: Sequence[Link], corrections: Sequence[Correction]) -> tuple[Link, ...]:
    return tuple(link for _, link in corrected_links(links, corrections))


def corrections(session: Session, study_fk: int) -> list[Correction]:
    rows = session.execute(
        select(LinkCorrection, UiUser.username)
        .join(UiUser, LinkCorrection.user_fk == UiUser.id)
        .where(LinkCorrection.study_fk == study_fk)
        .order_by(LinkCorrection.id)
    ).tuples()
    return [
        Correction(
            r.source,
            r.paragraph,
            r.sentence,
            r.original_sop,
            r.new_sop,
            r.new_series,
            r.text,
            name,
            r.created_at.isoformat(timespec="seconds"),
        )
        for r, name in rows
    ]


def draft_review(session: Session, study_fk: int, study_version: int) -> tuple[DraftReview, UiUser] | None:
    """The newest decision on this version's draft (a new study version has a new draft to review)."""
    row = session.execute(
        select(DraftReview, UiUser)
        .join(UiUser, DraftReview.user_fk == UiUser.id)
        .where(DraftReview.study_fk == study_fk, DraftReview.study_version == study_version)
        .order_by(DraftReview.id.desc())
        .limit(1)
    ).one_or_none()
    return None if row is None else row.tuple()


def review_for_publish(
    session: Session, study_fk: int, study_version: int, links: Sequence[Link]
) -> tuple[tuple[Link, ...], DraftReviewData | None]:
    fixed = apply_corrections(links, corrections(session, study_fk))
    found = draft_review(session, study_fk, study_version)
    if found is None:
        return fixed, None
    review, user = found
    decision = review.decision if review.decision in DECISIONS else "rejected"
    return fixed, DraftReviewData(
        decision=cast(Any, decision),
        reader_username=user.username,
        reader_name=user.display_name,
        at=review.created_at,
        sentences=tuple(review.sentences),
    )


def series_of(session: Session, sop_instance_uid: str) -> str | None:
    return session.scalar(
        select(Series.series_instance_uid)
        .join(Instance, Instance.series_fk == Series.id)
        .where(Instance.sop_instance_uid == sop_instance_uid)
    )


def ground_truth(study_uid: str, items: Sequence[Correction]) -> dict[str, Any]:
    """The reader-confirmed links of a study, in the shape of the alignment benchmark's expected links."""
    latest = {c.key: c for c in items}
    return {
        "study_instance_uid": study_uid,
        "source": "reader corrections (gateway review page)",
        "links": [
            {
                "source": c.source,
                "paragraph": c.paragraph,
                "sentence": c.sentence,
                "text": c.text,
                "was": c.original_sop,
                "sop_instance_uid": c.new_sop,
                "series_instance_uid": c.new_series,
                "removed": c.new_sop is None,
                "by": c.username,
                "at": c.at,
            }
            for c in latest.values()
        ],
    }
