"""Where an instance sits in its volume: slice order along the normal, adjacent slices, and twins.

Adjacent slices of one series look alike by nature, so the matcher must not treat them as rivals of each
other; nor the same slice reconstructed twice (a lung and a mediastinal series of one acquisition), its
"twin". Order comes from the position along the slice normal, ImagePositionPatient · (row × column) of
ImageOrientationPatient (PS3.3 C.7.6.2.1.1), when every instance of a series has it and all share one
orientation; otherwise from Instance Number (C.7.6.1). Twins need geometry: an instance of another series
with the same orientation whose position along the normal is within half a slice spacing. A twin of about
the same slice spacing (within a quarter) is the same slices reconstructed again; one much thicker or
thinner is a slab over them (:meth:`Geometry.same_slices`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gateway.align.model import InstanceInfo


def _normal(orientation: Sequence[float]) -> np.ndarray:
    row = np.asarray(orientation[:3], dtype=np.float64)
    col = np.asarray(orientation[3:6], dtype=np.float64)
    n = np.cross(row, col)
    length = float(np.linalg.norm(n))
    return n / length if length > 1e-6 else n


@dataclass(frozen=True)
class _Place:
    series: str
    rank: int  # index in the series' slice order
    position: float | None  # along the series normal, mm
    normal: tuple[float, float, float] | None


class Geometry:
    """Slice order of every series of a study, for neighbours and twins."""

    def __init__(self, instances: Sequence[InstanceInfo]) -> None:
        by_series: dict[str, list[InstanceInfo]] = {}
        for inst in instances:
            by_series.setdefault(inst.series_instance_uid, []).append(inst)
        self._order: dict[str, list[str]] = {}
        self._places: dict[str, _Place] = {}
        self._spacing: dict[str, float] = {}
        #: Per series with geometry: positions along the normal (ascending), their UIDs, the normal.
        self._sorted: dict[str, tuple[list[float], list[str], tuple[float, float, float]]] = {}
        self._twins: dict[str, list[str]] = {}
        for series, members in by_series.items():
            placed = self._by_position(members)
            if placed is None:
                members = sorted(members, key=lambda i: (i.instance_number is None, i.instance_number or 0))
                self._order[series] = [m.sop_instance_uid for m in members]
                for rank, m in enumerate(members):
                    self._places[m.sop_instance_uid] = _Place(series, rank, None, None)
                continue
            normal, ordered = placed
            self._order[series] = [uid for uid, _ in ordered]
            positions = [p for _, p in ordered]
            gaps = np.diff(positions)
            self._spacing[series] = float(np.median(gaps)) if len(gaps) else 0.0
            n = (float(normal[0]), float(normal[1]), float(normal[2]))
            for rank, (uid, pos) in enumerate(ordered):
                self._places[uid] = _Place(series, rank, pos, n)
            self._sorted[series] = (positions, [uid for uid, _ in ordered], n)

    @staticmethod
    def _by_position(members: list[InstanceInfo]) -> tuple[np.ndarray, list[tuple[str, float]]] | None:
        if any(m.image_position is None or m.image_orientation is None for m in members):
            return None
        first = members[0].image_orientation
        assert first is not None
        normal = _normal(first)
        if not np.any(normal):
            return None
        for m in members:
            assert m.image_orientation is not None
            if float(np.dot(_normal(m.image_orientation), normal)) < 0.999:
                return None  # a localizer or mixed stack: positions along one normal mean nothing
        ordered = sorted(
            (
                (m.sop_instance_uid, float(np.dot(np.asarray(m.image_position, dtype=np.float64), normal)))
                for m in members
            ),
            key=lambda p: p[1],
        )
        return normal, ordered

    def radius(self, uid: str, mm: float, *, least: int = 2, most: int = 12) -> int:
        """How many slices of ``uid``'s series span ``mm`` (at least ``least``, at most ``most``)."""
        place = self._places.get(uid)
        spacing = self._spacing.get(place.series, 0.0) if place else 0.0
        if spacing <= 0:
            return least
        return int(min(most, max(least, np.ceil(mm / spacing))))

    def sampled(self, mm: float) -> set[str]:
        """Every instance of a series whose slices are thinner than ``mm``, or every k-th one so that the
        sampled slices are about ``mm`` apart (a thin series' look-alike neighbours add nothing to a
        search that the scan around its best hit does not find)."""
        out: set[str] = set()
        for series, order in self._order.items():
            spacing = self._spacing.get(series, 0.0)
            step = max(1, round(mm / spacing)) if spacing > 0 else 1
            out.update(order[::step])
            out.add(order[-1])
        return out

    def same_slices(self, a: str, b: str) -> bool:
        """Whether the series of ``a`` and ``b`` have about the same slice spacing (within a quarter)."""
        pa, pb = self._places.get(a), self._places.get(b)
        if pa is None or pb is None:
            return False
        sa, sb = self._spacing.get(pa.series, 0.0), self._spacing.get(pb.series, 0.0)
        return sa > 0 and sb > 0 and 0.75 <= sa / sb <= 1.0 / 0.75

    def series_of(self, uid: str) -> str | None:
        place = self._places.get(uid)
        return place.series if place else None

    def rank(self, uid: str) -> int | None:
        place = self._places.get(uid)
        return place.rank if place else None

    def around(self, uid: str, k: int) -> list[str]:
        """The instances within ``k`` slices of ``uid`` in its series (itself included), in slice order."""
        place = self._places.get(uid)
        if place is None:
            return [uid]
        order = self._order[place.series]
        return order[max(0, place.rank - k) : place.rank + k + 1]

    def distance(self, a: str, b: str) -> int | None:
        """How many slices apart two instances of one series are; None across series."""
        pa, pb = self._places.get(a), self._places.get(b)
        if pa is None or pb is None or pa.series != pb.series:
            return None
        return abs(pa.rank - pb.rank)

    def twins(self, uid: str) -> list[str]:
        """Instances of other series at the same place: the same slice reconstructed again."""
        if uid in self._twins:
            return self._twins[uid]
        place = self._places.get(uid)
        out: list[str] = []
        if place is not None and place.position is not None and place.normal is not None:
            for series, (positions, uids, normal) in self._sorted.items():
                if series == place.series or float(np.dot(normal, place.normal)) < 0.999:
                    continue
                k = bisect_left(positions, place.position)
                near = [j for j in (k - 1, k) if 0 <= j < len(positions)]
                if not near:
                    continue
                j = min(near, key=lambda j: abs(positions[j] - place.position))  # type: ignore[operator]
                tolerance = 0.5 * max(
                    self._spacing.get(series, 0.0), self._spacing.get(place.series, 0.0), 0.1
                )
                if abs(positions[j] - place.position) <= tolerance:
                    out.append(uids[j])
        self._twins[uid] = out
        return out
