"""Captioning metrics from pycocoevalcap, the field's reference implementation, run offline.

METEOR runs a bundled Java program; without a Java runtime it is reported as unavailable with the reason,
never as zero.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge

__all__ = ["METRICS", "Scores", "bleu4", "most_common_report", "score"]

METRICS = ("BLEU-1", "BLEU-2", "BLEU-3", "BLEU-4", "METEOR", "ROUGE-L", "CIDEr")


@dataclass(frozen=True, slots=True)
class Scores:
    values: dict[str, float]
    unavailable: dict[str, str]  # metric → why it could not be computed


def _inputs(
    references: Sequence[str], hypotheses: Sequence[str]
) -> tuple[dict[int, list[str]], dict[int, list[str]]]:
    if len(references) != len(hypotheses):
        raise ValueError("one hypothesis per reference")
    if not references:
        raise ValueError("nothing to score")
    # An empty hypothesis would crash BLEU's length ratio; a lone "." scores as the nothing it is.
    gts = {i: [r or "."] for i, r in enumerate(references)}
    res = {i: [h or "."] for i, h in enumerate(hypotheses)}
    return gts, res


def bleu4(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus BLEU-4 of cleaned, space-tokenised texts (pycocoevalcap's, as published scores use)."""
    gts, res = _inputs(references, hypotheses)
    with contextlib.redirect_stdout(io.StringIO()):
        values, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return float(values[3])


def _meteor(gts: dict[int, list[str]], res: dict[int, list[str]]) -> float:
    scorer = Meteor()
    try:
        value, _ = scorer.compute_score(gts, res)
    finally:
        with contextlib.suppress(Exception):
            scorer.meteor_p.stdin.close()
            scorer.meteor_p.stdout.close()
            scorer.meteor_p.stderr.close()
            scorer.meteor_p.kill()
            scorer.meteor_p.wait()
    return float(value)


def score(references: Sequence[str], hypotheses: Sequence[str], meteor: bool = True) -> Scores:
    """BLEU-1..4, METEOR, ROUGE-L and CIDEr over a corpus of cleaned texts."""
    gts, res = _inputs(references, hypotheses)
    values: dict[str, float] = {}
    unavailable: dict[str, str] = {}
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    values.update({f"BLEU-{n}": float(bleu[n - 1]) for n in range(1, 5)})
    if not meteor:
        unavailable["METEOR"] = "not requested"
    elif shutil.which("java") is None:
        unavailable["METEOR"] = "no Java runtime on PATH (install default-jre-headless)"
    else:
        try:
            values["METEOR"] = _meteor(gts, res)
        except Exception as exc:  # the Java side fails in many ways (memory, missing jar)
            unavailable["METEOR"] = f"METEOR failed: {exc!r}"
    values["ROUGE-L"] = float(Rouge().compute_score(gts, res)[0])
    values["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    return Scores(values, unavailable)


def most_common_report(train_reports: Sequence[str]) -> str:
    """The fixed-report floor: the commonest cleaned training report (ties: the first seen)."""
    if not train_reports:
        raise ValueError("no training reports")
    counts = Counter(train_reports)
    best = max(counts.values())
    return next(r for r in train_reports if counts[r] == best)
