#!/usr/bin/env node
// Checks every response the API suite recorded (RAYD_CONTRACT_LOG, one JSON line per
// response; see tests/api/support/harness.h) against openapi/openapi.yaml: the status is
// documented for the operation, the Content-Type is documented for that status (parameters
// ignored, */* matches anything), a JSON body matches the schema, and the documented
// required headers (X-Request-Id on every response) are present and valid.
//
//   node tests/contract/validate.mjs [build/contract.jsonl] [--all]
//
// Prints one summary line per operation, then each failure (grouped by operation, status
// and reason, with the requests that got it; --all lists every request), and last
// `contract: N passed, M failed` (N + M = responses). Exits 1 on any failure, 2 when the
// log is missing or empty.
import fs from 'node:fs';
import readline from 'node:readline';
import path from 'node:path';
import { loadSpec, ROOT } from './spec.mjs';

const args = process.argv.slice(2);
const all = args.includes('--all');
const file = args.find((a) => !a.startsWith('--')) || process.env.RAYD_CONTRACT_LOG || path.join(ROOT, 'build/contract.jsonl');

if (!fs.existsSync(file) || fs.statSync(file).size === 0) {
  console.error(`contract: no recorded responses in ${file} (run the API suite with RAYD_CONTRACT_LOG=${file})`);
  console.log('contract: 0 passed, 1 failed');
  process.exit(2);
}

const started = Date.now();
const contract = loadSpec();
const ops = new Map(); // key -> {n, failed, statuses: Map}
const failures = new Map(); // key\0status\0reason -> {key, status, reason, requests: []}
let passed = 0;
let failed = 0;
let lineNo = 0;

const rl = readline.createInterface({ input: fs.createReadStream(file), crlfDelay: Infinity });
for await (const line of rl) {
  lineNo++;
  if (!line.trim()) continue;
  let rec;
  try {
    rec = JSON.parse(line);
  } catch (e) {
    failed++;
    addFailure('(unreadable log line)', 0, `line ${lineNo}: ${e.message}`, `line ${lineNo}`);
    continue;
  }
  let reasons;
  try {
    reasons = contract.check(rec);
  } catch (e) {
    reasons = [`validator error: ${e.message}`];
  }
  const key = rec.operation || `${rec.method} ${rec.path}`;
  let o = ops.get(key);
  if (!o) ops.set(key, (o = { n: 0, failed: 0, statuses: new Map() }));
  o.n++;
  o.statuses.set(rec.status, (o.statuses.get(rec.status) || 0) + 1);
  if (reasons.length) {
    failed++;
    o.failed++;
    const req = `${rec.test || '?'}: ${rec.method} ${rec.path}${rec.query ? `?${rec.query}` : ''} -> ${rec.status} ${rec.content_type || ''}`.trim();
    for (const r of reasons) addFailure(key, rec.status, r, req, rec);
  } else passed++;
}

function addFailure(key, status, reason, request, rec) {
  const k = `${key}\0${status}\0${reason.replace(/"[^"]*"/g, '"…"')}`;
  let f = failures.get(k);
  if (!f) failures.set(k, (f = { key, status, reason, requests: [], body: rec ? (rec.body || '').slice(0, 300) : '' }));
  f.requests.push(request);
}

const keys = [...ops.keys()].sort((a, b) => a.split(' ').slice(1).join(' ').localeCompare(b.split(' ').slice(1).join(' ')) || a.localeCompare(b));
for (const k of keys) {
  const o = ops.get(k);
  const st = [...o.statuses.entries()].sort((a, b) => a[0] - b[0]).map(([s, n]) => `${s}x${n}`).join(' ');
  console.log(`${o.failed ? 'FAIL' : 'ok  '} ${k}: ${o.n} responses, ${o.failed} failed [${st}]`);
}
const untested = contract.operations().filter((op) => !ops.has(`${op.method} ${op.template}`));
if (untested.length) console.log(`not exercised by the suite: ${untested.map((op) => `${op.method} ${op.template}`).join(', ')}`);

if (failures.size) {
  console.log('\nfailures:');
  for (const f of failures.values()) {
    console.log(`- ${f.key} -> ${f.status}: ${f.reason} (${f.requests.length} response${f.requests.length > 1 ? 's' : ''})`);
    const shown = all ? f.requests : f.requests.slice(0, 3);
    for (const r of shown) console.log(`    ${r}`);
    if (shown.length < f.requests.length) console.log(`    ... and ${f.requests.length - shown.length} more (--all lists them)`);
    if (f.body) console.log(`    body: ${f.body}`);
  }
}
console.log(`(${lineNo} lines checked in ${((Date.now() - started) / 1000).toFixed(1)} s)`);
console.log(`contract: ${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
