"""Who signed a report, for which organization, and when: from an SR's VerifyingObserverSequence (PS3.3
C.17.2.1) and from a PDF report's sign-off lines, with TimezoneOffsetFromUTC (0008,0201) for the time.

Pure functions over values: the publish stage reads the DICOM attributes and hands them in.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict

from gateway.mappings import mapping_path

MAPPING = mapping_path("fhir", "signoff.yaml")


class SignOffLabels(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    edition: str
    interpreter_labels: list[str]


@lru_cache(maxsize=2)
def signoff_labels(path: Path = MAPPING) -> SignOffLabels:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return SignOffLabels.model_validate(data)


@dataclass(frozen=True)
class SignOff:
    """The radiologists who reported or verified (PN values or names as written), their organization and
    the sign-off time (aware), each None or empty when the report does not say."""

    interpreters: tuple[str, ...] = ()
    organization: str | None = None
    time: dt.datetime | None = None

    def merged(self, other: SignOff) -> SignOff:
        """``self`` first; what it lacks from ``other``."""
        return SignOff(
            tuple(dict.fromkeys([*self.interpreters, *other.interpreters])),
            self.organization or other.organization,
            self.time or other.time,
        )


def _offset(value: str | None) -> dt.tzinfo | None:
    m = re.fullmatch(r"([+-])(\d{2})(\d{2})", (value or "").strip())
    if not m:
        return None
    minutes = int(m[2]) * 60 + int(m[3])
    if minutes > 14 * 60:
        return None
    return dt.timezone((-1 if m[1] == "-" else 1) * dt.timedelta(minutes=minutes))


def _zone(offset: str | None, zone: str) -> dt.tzinfo:
    return _offset(offset) or ZoneInfo(zone)


def dicom_dt(value: str | None, offset: str | None, zone: str) -> dt.datetime | None:
    """DT (PS3.5 6.2: YYYYMMDDHHMMSS.FFFFFF&ZZXX) → aware datetime; without its own offset, the instance's
    TimezoneOffsetFromUTC, else the configured zone. None when the value is not a valid date and time."""
    m = re.fullmatch(r"(\d{8})(\d{2})?(\d{2})?(\d{2})?(?:\.\d{1,6})?([+-]\d{4})?", (value or "").strip())
    if not m:
        return None
    try:
        day = dt.datetime.strptime(m[1], "%Y%m%d")
        when = day.replace(hour=int(m[2] or 0), minute=int(m[3] or 0), second=int(m[4] or 0))
    except ValueError:
        return None
    tz = _offset(m[5]) if m[5] else _zone(offset, zone)
    return when.replace(tzinfo=tz) if tz else None


def from_dataset(ds: Any, zone: str) -> SignOff:
    """VerifyingObserverSequence (names, organization, VerificationDateTime) of an SR, else the report
    instance's ContentDate/ContentTime, with its TimezoneOffsetFromUTC."""
    offset = str(ds.get("TimezoneOffsetFromUTC", "") or "") or None
    names: list[str] = []
    organization: str | None = None
    when: dt.datetime | None = None
    for observer in ds.get("VerifyingObserverSequence", None) or []:
        name = str(observer.get("VerifyingObserverName", "") or "").strip()
        if name:
            names.append(name)
        organization = organization or (str(observer.get("VerifyingOrganization", "") or "").strip() or None)
        when = when or dicom_dt(str(observer.get("VerificationDateTime", "") or ""), offset, zone)
    organization = organization or (str(ds.get("InstitutionName", "") or "").strip() or None)
    if when is None:
        date = str(ds.get("ContentDate", "") or "")
        time = str(ds.get("ContentTime", "") or "").split(".")[0]
        if date and time:
            when = dicom_dt(date + time[:6], offset, zone)
    return SignOff(tuple(names), organization, when)


_DATETIME = re.compile(
    r"(?P<y>\d{4})\s*[-/.年]\s*(?P<mo>\d{1,2})\s*[-/.月]\s*(?P<d>\d{1,2})\s*日?\s*"
    r"(?P<h>\d{1,2})[:：](?P<mi>\d{2})(?:[:：](?P<s>\d{2}))?"
)


def from_document(document: dict[str, Any] | None, zone: str, offset: str | None = None) -> SignOff:
    """Names and time on the sign-off lines (paragraphs of the ``signature`` section) of a read report."""
    if not document:
        return SignOff()
    labels = sorted(signoff_labels().interpreter_labels, key=len, reverse=True)
    label_re = re.compile(
        r"(?:" + "|".join(re.escape(x) for x in labels) + r")\s*[:：]\s*", flags=re.IGNORECASE
    )
    names: list[str] = []
    when: dt.datetime | None = None
    for paragraph in document.get("paragraphs", []):
        if paragraph.get("section") != "signature":
            continue
        for line in str(paragraph.get("text", "")).splitlines():
            for m in label_re.finditer(line):
                rest = line[m.end() :]
                rest = re.split(r"\s{2,}|[,;，；]", rest, maxsplit=1)[0]
                nxt = label_re.search(rest)
                name = (rest[: nxt.start()] if nxt else rest).strip()
                stop = re.search(r"\s(?:审核|签名|Verified|Signed|Date)\b|\d{4}[-/.年]", name)
                name = (name[: stop.start()] if stop else name).strip(" :：")
                if name and not _DATETIME.search(name):
                    names.append(name)
            found = _DATETIME.search(line)
            if found and when is None:
                try:
                    when = dt.datetime(
                        int(found["y"]),
                        int(found["mo"]),
                        int(found["d"]),
                        int(found["h"]),
                        int(found["mi"]),
                        int(found["s"] or 0),
                        tzinfo=_zone(offset, zone),
                    )
                except ValueError:
                    when = None
    return SignOff(tuple(dict.fromkeys(names)), None, when)
