// FHIR.js (npm `fhir`) as a second, independent R4 validator, run by tests/fhir/test_fhir_schema.py. With
// the profiles it ships (R4 4.0.x) it checks cardinalities, primitive formats and required value-set
// bindings. (Its R5 mode needs R5 profiles loaded by hand, and loading hl7.fhir.r5.core's definitions gave a
// validator that reports nothing, so R5 relies on the official schema and the rule checker.)
// Usage: node fhirjs_validate.mjs < resources.json (a JSON array); prints a JSON array with the error
// messages of each resource.
import pkg from 'fhir';

const { Fhir } = pkg;
const fhir = new Fhir();
const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const resources = JSON.parse(Buffer.concat(chunks).toString('utf8'));
const out = resources.map((resource) => ({
  resourceType: resource.resourceType,
  id: resource.id ?? null,
  errors: fhir
    .validate(resource)
    .messages.filter((m) => m.severity === 'error')
    .map((m) => `${m.location}: ${m.message}`),
}));
process.stdout.write(JSON.stringify(out));
