// fhir-kit-client (npm) as an EMR would use it against the gateway, run by tests/auth/test_clients_with_smart.py.
//
// SMART Backend Services from first principles: discover the token URL (fhir-kit-client's
// smartAuthMetadata reads /.well-known/smart-configuration), sign a client assertion with the private key
// (node:crypto, RS384 or ES384), trade it for an access token, then search with _include, page through
// results with nextPage, read, vread and history. Prints one JSON object of what it saw; exits 1 on error.
//
// Environment: FHIR_BASE, CLIENT_ID, KEY_FILE (PEM, PKCS#8), KID, ALG (RS384|ES384), PATIENT, REPORT.
import crypto from 'node:crypto';
import fs from 'node:fs';
import { Client } from 'fhir-kit-client';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const b64url = (data) => Buffer.from(data).toString('base64url');

function clientAssertion(tokenUrl) {
  const alg = env('ALG');
  const header = { alg, typ: 'JWT', kid: env('KID') };
  const now = Math.floor(Date.now() / 1000);
  const claims = {
    iss: env('CLIENT_ID'),
    sub: env('CLIENT_ID'),
    aud: tokenUrl,
    exp: now + 240,
    jti: crypto.randomUUID(),
  };
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(claims))}`;
  const key = crypto.createPrivateKey(fs.readFileSync(env('KEY_FILE')));
  // JWS (RFC 7518 3.4): ECDSA signatures are R || S, not DER.
  const signature = crypto.sign('sha384', Buffer.from(input), alg === 'ES384' ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${b64url(signature)}`;
}

async function main() {
  const baseUrl = env('FHIR_BASE');
  const client = new Client({ baseUrl });
  const seen = {};

  const auth = await client.smartAuthMetadata();
  const tokenUrl = auth.tokenUrl.toString();
  seen.tokenUrl = tokenUrl;
  const answer = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'client_credentials',
      client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer',
      client_assertion: clientAssertion(tokenUrl),
      scope: 'system/DiagnosticReport.rs system/Observation.rs',
    }),
  });
  const token = await answer.json();
  if (!answer.ok) throw new Error(`token endpoint answered ${answer.status}: ${JSON.stringify(token)}`);
  seen.token = { type: token.token_type, expiresIn: token.expires_in, scope: token.scope };

  try {
    await client.read({ resourceType: 'DiagnosticReport', id: env('REPORT') });
    seen.withoutToken = 'accepted';
  } catch (error) {
    seen.withoutToken = error.response?.status ?? String(error);
  }
  client.bearerToken = token.access_token;

  const found = await client.search({
    resourceType: 'DiagnosticReport',
    searchParams: { patient: env('PATIENT'), _include: 'DiagnosticReport:result' },
  });
  seen.include = (found.entry ?? []).map((e) => [e.resource.resourceType, e.search?.mode]);

  let page = await client.search({
    resourceType: 'Observation',
    searchParams: { patient: env('PATIENT'), _count: 1 },
  });
  seen.pages = [];
  while (page) {
    seen.pages.push((page.entry ?? []).map((e) => e.resource.id));
    page = await client.nextPage({ bundle: page });
  }

  const report = await client.read({ resourceType: 'DiagnosticReport', id: env('REPORT') });
  seen.read = { id: report.id, status: report.status, versionId: report.meta?.versionId };
  const first = await client.vread({ resourceType: 'DiagnosticReport', id: env('REPORT'), version: '1' });
  seen.vread = { id: first.id, versionId: first.meta?.versionId };
  const history = await client.history({ resourceType: 'DiagnosticReport', id: env('REPORT') });
  seen.history = { type: history.type, total: history.total, entries: (history.entry ?? []).length };
  const typeHistory = await client.history({ resourceType: 'DiagnosticReport' });
  seen.typeHistory = { type: typeHistory.type, entries: (typeHistory.entry ?? []).length };

  try {
    await client.read({ resourceType: 'Patient', id: env('PATIENT') });
    seen.outOfScope = 'accepted';
  } catch (error) {
    seen.outOfScope = error.response?.status ?? String(error);
  }
  process.stdout.write(JSON.stringify(seen));
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`);
  process.exit(1);
});
