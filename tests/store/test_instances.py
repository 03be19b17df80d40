"""Instance layout: instances/<study>/<series>/<sop>.dcm, with every part a validated UID."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import UnsafeUID
from gateway.store.instances import instance_path


def test_layout(tmp_path: Path) -> None:
    path = instance_path(tmp_path, "1.2.3", "1.2.3.4", "1.2.3.4.5")
    assert path == tmp_path / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"


def test_padding_does_not_reach_the_path(tmp_path: Path) -> None:
    assert instance_path(tmp_path, "1.2\x00", "1.3 ", "1.4") == tmp_path / "1.2" / "1.3" / "1.4.dcm"


@pytest.mark.parametrize("bad", ["../..", "1.2/../3", "1.2.3\x00", "1.2.3\x00/..", "abc", "1.2.a", "..", "/"])
@pytest.mark.parametrize("position", [0, 1, 2])
def test_traversal_and_non_uids_refused(tmp_path: Path, bad: str, position: int) -> None:
    uids = ["1.2.3", "1.2.3.4", "1.2.3.4.5"]
    uids[position] = bad
    if bad == "1.2.3\x00":
        # a trailing NUL is UI padding and is allowed; with anything after it, it is not
        assert instance_path(tmp_path, *uids).is_relative_to(tmp_path)
        return
    with pytest.raises(UnsafeUID):
        instance_path(tmp_path, *uids)


def test_names_the_bad_attribute(tmp_path: Path) -> None:
    with pytest.raises(UnsafeUID, match="SeriesInstanceUID"):
        instance_path(tmp_path, "1.2", "../x", "1.3")
    with pytest.raises(UnsafeUID, match="SOPInstanceUID"):
        instance_path(tmp_path, "1.2", "1.3", "1.4/../../x")


def test_relative_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert instance_path(Path("data/instances"), "1", "2", "3") == Path("data/instances/1/2/3.dcm")
