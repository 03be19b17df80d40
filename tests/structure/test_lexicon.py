"""The lexicon file is validated on load: a broken mapping is a clear ConfigError, not a wrong extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gateway.errors import ConfigError
from gateway.mappings import mapping_path
from gateway.structure import Extractor, default_lexicon, load_lexicon


def _write(tmp_path: Path, edit: object) -> Path:
    data = yaml.safe_load(mapping_path("structured_findings.yaml").read_text(encoding="utf-8"))
    edit(data)  # type: ignore[operator]
    path = tmp_path / "lexicon.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def test_shipped_lexicon_is_valid_and_notes_its_source() -> None:
    lexicon = default_lexicon()
    assert "SNOMED CT" in lexicon.source and lexicon.edition
    assert lexicon.findings["nodule"].code == "786838002"
    assert lexicon.sites["right_upper_lobe"].laterality == "right"


def test_bad_code_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["findings"]["nodule"].update(code="nodule"))
    with pytest.raises(ConfigError, match="not a SNOMED CT concept id"):
        load_lexicon(path)


def test_unknown_default_site_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["findings"]["pneumothorax"].update(default_site="thorax"))
    with pytest.raises(ConfigError, match="default_site"):
        load_lexicon(path)


def test_pattern_that_does_not_compile_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["sites"]["mediastinum"]["en"].append("mediast(inal"))
    with pytest.raises(ConfigError, match="does not compile"):
        load_lexicon(path)


def test_missing_language_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["findings"]["mass"].update(en=[]))
    with pytest.raises(ConfigError, match="Chinese and English"):
        load_lexicon(path)


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, lambda d: d["cues"].update(negation_typo={"zh": ["无"]}))
    with pytest.raises(ConfigError, match="negation_typo"):
        load_lexicon(path)


def test_a_lexicon_edit_changes_extraction(tmp_path: Path) -> None:
    """The rules read the data: a new term is found without touching code."""
    sentence = "右肺上叶见肺大泡。"
    assert Extractor(default_lexicon()).extract(sentence).findings == ()
    path = _write(tmp_path, lambda d: d["findings"]["cyst"]["zh"].append("肺大泡"))
    [found] = Extractor(load_lexicon(path)).extract(sentence).findings
    assert (found.kind, found.site.key if found.site else None) == ("cyst", "right_upper_lobe")
