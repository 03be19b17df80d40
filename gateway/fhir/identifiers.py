"""Identifier systems: the assigning authority of a Patient ID or accession number → a system URI.

The site table is ``mappings/identifier_systems.yaml`` (validated on load); an authority not in the table,
or none at all, takes the configured default (``[fhir] patient_id_system`` / ``accession_system``).
"""

from __future__ import annotations

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


class IdentifierSystems(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str
    edition: str
    patient: dict[str, str] = {}
    accession: dict[str, str] = {}

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


@lru_cache(maxsize=4)
def identifier_systems(path: Path = MAPPING) -> IdentifierSystems:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return IdentifierSystems.model_validate(data)
