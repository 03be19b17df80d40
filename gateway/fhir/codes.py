"""The FHIR code systems and value sets of ``mappings/fhir/codes.yaml``, validated once on load."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, model_validator

from gateway.mappings import mapping_path

MAPPING = mapping_path("fhir", "codes.yaml")


class Code(BaseModel):
    system: str
    code: str
    display: str


class CodeMap(BaseModel):
    source: str
    edition: str
    systems: dict[str, str]
    codes: dict[str, Code | list[Code]]
    statuses: dict[str, list[str]]
    report_status: dict[str, str]
    non_acquisition_modalities: list[str] = []

    @model_validator(mode="after")
    def _known_systems(self) -> CodeMap:
        for name, value in self.codes.items():
            for code in value if isinstance(value, list) else [value]:
                if code.system not in self.systems:
                    raise ValueError(f"code {name} names unknown system {code.system!r}")
        for word, status in self.report_status.items():
            if status not in self.statuses["DiagnosticReport"]:
                raise ValueError(f"report_status {word} → {status} is not a DiagnosticReport status")
        return self

    def coding(self, name: str) -> dict[str, str]:
        code = self.codes[name]
        assert not isinstance(code, list)
        return {"system": self.systems[code.system], "code": code.code, "display": code.display}

    def codings(self, name: str) -> list[dict[str, str]]:
        value = self.codes[name]
        return [
            {"system": self.systems[c.system], "code": c.code, "display": c.display}
            for c in (value if isinstance(value, list) else [value])
        ]

    def system(self, name: str) -> str:
        return self.systems[name]


@lru_cache(maxsize=2)
def code_map(path: Path = MAPPING) -> CodeMap:
    data: Any = yaml.safe_load(path.read_text(encoding="utf-8"))
    return CodeMap.model_validate(data)
