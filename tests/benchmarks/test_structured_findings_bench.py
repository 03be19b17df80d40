"""The structured-findings benchmark: a deterministic, labelled set, and a scorer that sees errors."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> Any:
    spec = importlib.util.spec_from_file_location(
        "structured_findings_bench", ROOT / "benchmarks" / "structured_findings.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_generated_set_is_deterministic_large_and_bilingual() -> None:
    bench = _bench()
    a, b = bench.generate(7), bench.generate(7)
    assert [i.as_json() for i in a] == [i.as_json() for i in b]
    assert [i.text for i in a] != [i.text for i in bench.generate(8)]
    assert len(a) >= 300
    assert {i.lang for i in a} == {"zh", "en"}
    assert {i.variation for i in a} >= {"positive", "negation", "uncertain", "recommendation", "distractor"}
    assert len(bench.handwritten()) >= 50


def test_scorer_counts_a_wrong_field_against_precision_and_recall() -> None:
    bench = _bench()
    item = bench.Item(
        "右肺上叶见结节，大小约12mm×9mm。",
        "zh",
        "positive",
        [bench._gold("nodule", "right_upper_lobe", "right", (12.0, 9.0))],
    )
    table, errors = bench.score([item])
    assert table["all"]["size"].p() == 1.0 and not errors
    wrong = bench.Item(
        item.text, "zh", "positive", [bench._gold("nodule", "left_upper_lobe", "left", (12.0, 8.0))]
    )
    table, errors = bench.score([wrong])
    for name in ("site", "laterality", "size"):
        assert (table["all"][name].p(), table["all"][name].r()) == (0.0, 0.0)
    assert table["all"]["finding"].r() == 1.0 and len(errors) == 1
    missed = bench.Item(
        "未见胸腔积液。", "zh", "negation", [bench._gold("pneumothorax", None, None, presence="absent")]
    )
    table, _ = bench.score([missed])
    assert table["all"]["finding"].p() == 0.0 and table["all"]["negation"].r() == 0.0
