"""Identifier systems: the assigning authority of a Patient ID or accession number → a system URI, and a
reader's name → their identifier (e.g. NPI).

The site table is ``mappings/identifier_systems.yaml`` (validated on load); an authority not in the table,
or none at all, takes the configured default (``[fhir] patient_id_system`` / ``accession_system``). Reports
name their readers but never give an identifier, so US Core Practitioner's ``identifier`` 1..* comes from
the table's ``practitioners`` rows; a reader not in it gets an Identifier carrying only a data-absent-reason.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, field_validator

from gateway.mappings import mapping_path

MAPPING = mapping_path("identifier_systems.yaml")


def _check_uri(value: str) -> str:
    if ":" not in value or any(ch.isspace() for ch in value):
        raise ValueError(f"{value!r} is not an absolute URI")
    return value


def name_key(name: str) -> tuple[str, ...]:
    """A reader's name for matching: the first PN component group (PS3.5 6.2.1), its words casefolded and
    sorted, so that ``Roe^Jane``, ``Jane Roe`` and ``ROE, JANE`` are the same reader."""
    first = name.split("=", 1)[0]
    return tuple(sorted(w.casefold() for w in re.split(r"[\s^,.]+", first) if w))


class PractitionerIdentifier(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    system: str
    value: str

    @field_validator("system")
    @classmethod
    def _uri(cls, value: str) -> str:
        return _check_uri(value)

    @field_validator("name", "value")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class IdentifierSystems(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    edition: str
    patient: dict[str, str] = {}
    accession: dict[str, str] = {}
    practitioners: list[PractitionerIdentifier] = []

    @field_validator("patient", "accession")
    @classmethod
    def _uris(cls, table: dict[str, str]) -> dict[str, str]:
        return {str(k): _check_uri(v) for k, v in table.items()}

    def _lookup(self, table: dict[str, str], issuer: str | None, default: str) -> str:
        key = (issuer or "").strip()
        if key in table:
            return table[key]
        folded = {k.casefold(): v for k, v in table.items()}
        return folded.get(key.casefold(), default)

    def patient_system(self, issuer: str | None, default: str) -> str:
        return self._lookup(self.patient, issuer, default)

    def accession_system(self, issuer: str | None, default: str) -> str:
        return self._lookup(self.accession, issuer, default)

    def practitioner_identifier(self, name: str) -> tuple[str, str] | None:
        """``(system, value)`` of the reader called ``name``, or None when the table does not know them."""
        key = name_key(name)
        for row in self.practitioners:
            if key and name_key(row.name) == key:
                return row.system, row.value
        return None


@lru_cache(maxsize=4)
def identifier_systems(path: Path = MAPPING) -> IdentifierSystems:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return IdentifierSystems.model_validate(data)
