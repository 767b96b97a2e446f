#!/usr/bin/env node
// Spec-driven request generation against a live rayd (the role schemathesis plays
// elsewhere). For every operation in openapi/openapi.yaml, fast-check runs at least
// CONTRACT_RUNS (default 200) generated requests, valid and junk mixed: bodies made from
// the request schema by json-schema-faker (then sometimes mutated, or replaced by random
// JSON or text), path parameters from their schemas or real refs/ids created first or
// junk, query parameters and headers from their schemas or junk, and wrong content types.
// A response fails when its status, its Content-Type or its body is not what the spec
// documents (a 5xx that is not documented is an undocumented status), when a required
// header is missing, or when the server accepts (2xx) a request whose body, query or path
// parameter or Idempotency-Key the spec says is invalid. fast-check shrinks each failure
// to a minimal request, which is printed.
//
// Then scenarios the generator cannot reach on its own are checked the same way: auth on
// (401, and 403 for the API token on admin routes), Idempotency-Key replays, the parked-
// request limit (429), and draining. Last, the server must still answer (healthz, a put/get
// round trip) and exit 0 on SIGTERM.
//
//   node tests/contract/generate.mjs            (RAYD_BIN, default build/rayd)
//
// Environment: CONTRACT_RUNS (runs per operation, default 200), CONTRACT_SEED (default
// fixed, so runs repeat), CONTRACT_BUDGET_S (time for the generated runs, default 150).
// Last line: `generate: N passed, M failed` (generated requests and scenario checks);
// exits 1 on any failure.
import http from 'node:http';
import path from 'node:path';
import readline from 'node:readline';
import { spawn } from 'node:child_process';
import fc from 'fast-check';
import { generateSync } from 'json-schema-faker';
import { loadSpec, ROOT, mediaType, isJsonType, fmtErrors } from './spec.mjs';

const RUNS = Number(process.env.CONTRACT_RUNS || 200);
const SEED = Number(process.env.CONTRACT_SEED || 20261125);
const BUDGET_MS = Number(process.env.CONTRACT_BUDGET_S || 150) * 1000;
const VERBOSE = !!process.env.CONTRACT_VERBOSE;
const BIN = path.resolve(ROOT, process.env.RAYD_BIN || 'build/rayd');
const TOKEN = 'gen-api-token';
const ADMIN = 'gen-admin-token';

const contract = loadSpec();
const spec = contract.spec;
const t0 = Date.now();
let passed = 0;
let failed = 0;
let sent = 0;
const failures = []; // {what, reasons, request}

// ---------------------------------------------------------------- server and HTTP

async function startServer(args = [], env = {}) {
  const childEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RAYD_')) childEnv[k] = v;
  Object.assign(childEnv, env);
  const child = spawn(BIN, ['--bind', '127.0.0.1', '--port', '0', '--max-body', '1M', '--max-wait', '1', ...args], {
    env: childEnv,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise((resolve) => child.on('exit', (code, sig) => resolve(sig ? 128 : code)));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rayd did not start in 10 s: ${stderr}`)), 10000);
    const rl = readline.createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const m = /"event":"listening".*"port":(\d+)/.exec(line);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    });
    exited.then((code) => reject(new Error(`rayd exited (${code}) at start: ${stderr}`)));
  });
  return { child, port, exited, agent: new http.Agent({ keepAlive: true, maxSockets: 8 }) };
}

/* Sends one request. req: {method, path (encoded, no query), query: [[k, v]], headers: {},
 * body: Buffer|string|null}. Resolves to a record as the harness writes them. */
function send(server, req, timeoutMs = 10000) {
  sent++;
  const qs = (req.query || []).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  const headers = { ...(req.headers || {}) };
  let body = req.body;
  if (body != null && !Buffer.isBuffer(body)) body = Buffer.from(String(body), 'utf8');
  if (body != null) headers['content-length'] = String(body.length);
  return new Promise((resolve) => {
    let r;
    const fail = (e) => resolve({ method: req.method, path: req.path, query: qs, status: 0, error: e.message, headers: {} });
    try {
      r = http.request({ host: '127.0.0.1', port: server.port, method: req.method, path: req.path + (qs ? `?${qs}` : ''), headers, agent: server.agent, timeout: timeoutMs }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('error', fail);
        res.on('end', () => {
          const buf = Buffer.concat(chunks);
          const rec = { method: req.method, path: req.path, query: qs, status: res.statusCode, content_type: res.headers['content-type'] ?? null, headers: res.headers };
          try {
            rec.body = new TextDecoder('utf-8', { fatal: true }).decode(buf);
          } catch {
            rec.body_base64 = buf.toString('base64');
          }
          resolve(rec);
        });
      });
    } catch (e) {
      fail(e);
      return;
    }
    r.on('timeout', () => r.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    r.on('error', fail);
    if (body != null) r.write(body);
    r.end();
  });
}

const json = (rec) => {
  try {
    return JSON.parse(rec.body);
  } catch {
    return undefined;
  }
};

function describe(req) {
  const qs = (req.query || []).map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join('&');
  const hs = Object.entries(req.headers || {}).map(([k, v]) => ` -H '${k}: ${v}'`).join('');
  let b = '';
  if (req.body != null) {
    const s = Buffer.isBuffer(req.body) ? `<${req.body.length} bytes: ${req.body.toString('hex').slice(0, 64)}>` : String(req.body);
    b = ` --data '${s.length > 400 ? `${s.slice(0, 400)}...` : s}'`;
  }
  return `${req.method} ${req.path}${qs ? `?${qs}` : ''}${hs}${b}`;
}

// ---------------------------------------------------------------- pools of real ids

const pools = {
  refs: [], tasks: [], actors: [], names: ['gen-named'], functions: [], classes: [],
  methods: ['incr', 'get', 'reset', 'put', 'delete', 'keys', 'size', 'add', 'total', 'mean', 'count'],
};

async function j(server, method, p, body, headers = {}) {
  const rec = await send(server, { method, path: p, headers: body != null ? { 'content-type': 'application/json', ...headers } : headers, body: body != null ? JSON.stringify(body) : null });
  return { rec, body: json(rec) };
}

async function fillPools(server) {
  const put = async (ct, data) => {
    const rec = await send(server, { method: 'POST', path: '/v1/objects', headers: ct ? { 'content-type': ct } : {}, body: data });
    return json(rec).ref;
  };
  pools.refs.push(await put('application/json', '{"a":[1,2,3]}'));
  pools.refs.push(await put('text/plain', 'hello world'));
  pools.refs.push(await put('application/octet-stream', Buffer.from([0, 1, 0xff, 0xfe, 0x80])));
  pools.refs.push(await put(null, ''));
  pools.refs.push(await put('application/vnd.x+json', '[1,"two",null]'));
  const lost = await put('text/plain', 'freed');
  await send(server, { method: 'DELETE', path: `/v1/objects/${lost}` });
  pools.refs.push(lost);
  const task = async (spec) => (await j(server, 'POST', '/v1/tasks', spec)).body;
  for (const spec of [
    { function: 'add', args: [1, 2] },
    { function: 'fail', args: ['planned failure'] },
    { function: 'echo', args: [[1, 2]], options: { num_returns: 2 } },
    { function: 'sleep', args: [60], options: { name: 'pending' } }, // stays pending: waits time out
    { function: 'echo', args: [{ $ref: lost }] },
  ]) {
    const t = await task(spec);
    pools.tasks.push(t.task_id);
    if (t.ref) pools.refs.push(t.ref);
    if (t.refs) pools.refs.push(...t.refs);
  }
  const cancelled = await task({ function: 'sleep', args: [60] });
  await send(server, { method: 'POST', path: `/v1/tasks/${cancelled.task_id}/cancel` });
  pools.tasks.push(cancelled.task_id);
  pools.refs.push(cancelled.ref);
  for (const spec of [{ class: 'Counter', args: [1] }, { class: 'KV' }, { class: 'Queue' }, { class: 'Accumulator' }, { class: 'Counter', name: 'gen-named' }, { class: 'Counter', options: { max_pending_calls: 1 } }]) {
    pools.actors.push((await j(server, 'POST', '/v1/actors', spec)).body.actor_id);
  }
  const dead = (await j(server, 'POST', '/v1/actors', { class: 'KV' })).body.actor_id;
  await send(server, { method: 'DELETE', path: `/v1/actors/${dead}` });
  pools.actors.push(dead);
  pools.functions = (await j(server, 'GET', '/v1/functions')).body.functions.map((f) => f.name).filter((n) => n !== 'sleep');
  pools.classes = (await j(server, 'GET', '/v1/actor-classes')).body.classes.map((c) => c.name);
}

// ---------------------------------------------------------------- generation schemas

/* A copy of the spec's schemas made for generating: `if`/`then` (which the faker cannot
 * follow) become a choice, large limits small, long-running options short, and ids come
 * from the pools of real ones most of the time (keyword x-pool). */
function genSchemas() {
  const schemas = structuredClone(spec.components.schemas);
  const walk = (s) => {
    if (!s || typeof s !== 'object') return;
    if (Array.isArray(s)) return s.forEach(walk);
    if (s.if && s.then && s.if.type !== 'object') {
      delete s.if; // a condition between members (ActorSpec): the faker ignores it
      delete s.then;
    }
    if (s.if && s.then) {
      s.anyOf = [s.then, { type: ['integer', 'string', 'boolean', 'null'] }, { type: 'array', items: { type: 'integer' }, maxItems: 3 }];
      delete s.if;
      delete s.then;
    }
    if (typeof s.maxItems === 'number' && s.maxItems > 6) s.maxItems = 4;
    for (const [k, v] of Object.entries(s)) if (k !== 'examples' && k !== 'example' && k !== 'default') walk(v);
  };
  walk(schemas);
  schemas.Ref.format = 'x-pool-refs';
  schemas.TaskId.format = 'x-pool-tasks';
  schemas.ActorId.format = 'x-pool-actors';
  schemas.ActorName.format = 'x-pool-names';
  schemas.TaskSpec.properties.function.format = 'x-pool-functions';
  schemas.ActorSpec.properties.class.format = 'x-pool-classes';
  schemas.Timeout.maximum = 1.5;
  schemas.TaskOptions.properties.max_retries.maximum = 2;
  schemas.TaskOptions.properties.num_returns.maximum = 4;
  schemas.TaskOptions.properties.timeout.maximum = 5;
  schemas.ActorOptions.properties.max_restarts.maximum = 2;
  schemas.ActorOptions.properties.max_pending_calls.maximum = 5;
  return schemas;
}
const GEN = genSchemas();
/* Formats x-pool-<pool>: a real id from the pool most of the time, else a made-up one. */
const poolFormats = {};
for (const name of ['refs', 'tasks', 'actors', 'names', 'functions', 'classes', 'methods']) {
  poolFormats[`x-pool-${name}`] = (random) => {
    const pool = pools[name];
    if (pool.length && random.bool(0.75)) return random.pick(pool);
    const chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-';
    let s = '';
    for (let i = random.int(1, 24); i > 0; i--) s += chars[random.int(0, chars.length - 1)];
    return s;
  };
}

/* The generation copy of a schema given by pointer into the spec (schemas referenced by
 * #/components/schemas/X resolve to GEN[X]). */
function genSchemaAt(schema) {
  const fix = (s) => {
    if (!s || typeof s !== 'object') return s;
    if (Array.isArray(s)) return s.map(fix);
    const out = {};
    for (const [k, v] of Object.entries(s)) out[k] = k === '$ref' && typeof v === 'string' ? v.replace('#/components/schemas/', '#/$defs/') : fix(v);
    return out;
  };
  const defs = {};
  for (const [k, v] of Object.entries(GEN)) defs[k] = fix(v);
  return { ...fix(schema), $defs: defs };
}

function fake(schema, seed) {
  try {
    return generateSync(schema, { seed, maxDepth: 7, maxDefaultItems: 3, optionalsProbability: 0.6, formats: poolFormats });
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------- arbitraries

const seedArb = fc.integer({ min: 1, max: 2 ** 30 });
/* arb, present with probability p (else null). */
const maybe = (arb, p) => fc.oneof({ weight: Math.round(100 * (1 - p)), arbitrary: fc.constant(null) }, { weight: Math.round(100 * p), arbitrary: arb });
const junkText = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 20 }),
  fc.constantFrom('', ' ', '.', '..', 'a/b', 'null', '0', '-1', '1e309', 'nan', 'inf', '0x10', ' 1', 'true', 'x'.repeat(65), 'y'.repeat(129), 'été', 'batch', 'get', 'by-name', '{}', '[]'),
);
const rawPathJunk = fc.constantFrom('%ff', '%ff%fe', '%c0%ae', '%00', '%zz', '%', '%2F', '%2e%2e', 'a%20b', '%0d%0aX-Injected:%201').map((raw) => ({ raw }));
const printable = (s) => s.replace(/[^\x20-\x7e]/g, '');

function paramArb(p, pool) {
  const schema = genSchemaAt(p.schema || {});
  const fromSchema = seedArb.map((s) => fake(schema, s)).filter((v) => v !== null && v !== undefined);
  const choices = [{ weight: 6, arbitrary: fromSchema }, { weight: 2, arbitrary: junkText }];
  if (pool && pools[pool].length) choices.push({ weight: 6, arbitrary: fc.constantFrom(...pools[pool]) });
  if (p.in === 'path') choices.push({ weight: 1, arbitrary: rawPathJunk });
  return fc.oneof(...choices);
}

function queryValueArb(p) {
  const base = paramArb(p).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
  return fc.oneof({ weight: 4, arbitrary: base }, { weight: 1, arbitrary: junkText });
}

const preferArb = fc.oneof(
  fc.double({ min: 0, max: 1.2, noNaN: true }).map((n) => `wait=${Math.round(n * 100) / 100}`),
  fc.constantFrom('wait=0', 'wait=1', 'wait=abc', 'wait=-1', 'wait=1e400', 'respond-async', 'respond-async, wait=0.5', 'wait=0.5; x=y', 'return=minimal'),
);
const idemKeyArb = fc.oneof(
  { weight: 4, arbitrary: fc.uuid() },
  { weight: 1, arbitrary: fc.constantFrom('a b', 'k'.repeat(256), 'tab\tkey', 'é') },
);
const headerArb = (p) => {
  switch (p.name.toLowerCase()) {
    case 'prefer': return preferArb;
    case 'idempotency-key': return idemKeyArb;
    case 'if-none-match': return fc.oneof(fc.constantFrom('*', '"nope"', 'W/"x"'), fc.constantFrom(...pools.refs).map((r) => `"${r}"`));
    case 'range': return fc.oneof(
      fc.tuple(fc.nat(20), fc.nat(20)).map(([a, b]) => `bytes=${a}-${b}`),
      fc.nat(20).map((a) => `bytes=${a}-`),
      fc.nat(20).map((a) => `bytes=-${a}`),
      fc.constantFrom('bytes=0-1,3-4', 'items=0-1', 'bytes=x-y', 'bytes=', 'bytes=-0', 'bytes=99999999999999999999-'),
    );
    case 'x-request-id': return fc.oneof(fc.string({ minLength: 1, maxLength: 40 }).map(printable), fc.constantFrom('', 'has space', 'z'.repeat(129)));
    default: return junkText.map(printable);
  }
};

const jsonCtArb = fc.oneof(
  { weight: 10, arbitrary: fc.constant('application/json') },
  { weight: 3, arbitrary: fc.constantFrom('application/json; charset=utf-8', 'application/problem+json', 'application/x-www-form-urlencoded', 'APPLICATION/JSON', null) },
  { weight: 3, arbitrary: fc.constantFrom('text/plain', 'application/octet-stream', 'multipart/form-data; boundary=x', 'application/jsonx', 'application/xml', 'json') },
);

const mutationArb = fc.record({
  kind: fc.constantFrom('drop', 'add', 'retype', 'nullify', 'nest'),
  pick: fc.nat(20),
  value: fc.jsonValue({ maxDepth: 2 }),
  name: fc.constantFrom('extra', 'function', 'args', 'kwargs', 'options', 'refs', 'timeout', 'num_returns', 'objects', 'tasks', 'class', 'name', 'url', '$ref'),
});

function mutate(value, m) {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return m.value;
  const v = structuredClone(value);
  const keys = Object.keys(v);
  const k = keys.length ? keys[m.pick % keys.length] : m.name;
  switch (m.kind) {
    case 'drop': delete v[k]; break;
    case 'add': v[m.name in v ? `${m.name}_x` : m.name] = m.value; break;
    case 'retype': v[k] = m.value; break;
    case 'nullify': v[k] = null; break;
    case 'nest':
      if (v.options && typeof v.options === 'object') v.options[m.name] = m.value;
      else v[k] = [v[k]];
      break;
  }
  return v;
}

function jsonBodyArb(schema) {
  const gen = genSchemaAt(schema);
  const valid = seedArb.map((s) => fake(gen, s)).filter((v) => v !== null);
  return fc.oneof(
    { weight: 6, arbitrary: valid.map((v) => JSON.stringify(v)) },
    { weight: 3, arbitrary: fc.tuple(valid, mutationArb).map(([v, m]) => JSON.stringify(mutate(v, m))) },
    { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)) },
    { weight: 1, arbitrary: fc.oneof(junkText, fc.constantFrom('{', '{"a":', '{"function":"echo",}', '\u0000', '[1,2', '{"refs":["a"]}garbage')) },
  );
}

const rawBodyArb = fc.oneof(
  fc.uint8Array({ maxLength: 64 }).map((a) => Buffer.from(a)),
  fc.string({ unit: 'grapheme', maxLength: 64 }),
  fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v)),
);
const rawCtArb = fc.oneof(fc.constantFrom(null, 'application/json', 'text/plain; charset=utf-8', 'application/octet-stream', 'image/png', 'x/'.concat('y'.repeat(300)), 'weird'), junkText.map(printable));

/* Everything about one operation the generator needs. */
function opModel(o) {
  const itemPointer = o.pointer.slice(0, o.pointer.lastIndexOf('/'));
  const params = [
    ...(o.item.parameters || []).map((p, i) => contract.deref(p, `${itemPointer}/parameters/${i}`)),
    ...(o.op.parameters || []).map((p, i) => contract.deref(p, `${o.pointer}/parameters/${i}`)),
  ].map(({ obj, pointer }) => ({ ...obj, schemaPointer: `${pointer}/schema` }));
  const byIn = (where) => params.filter((p) => p.in === where);
  const rb = o.op.requestBody ? contract.deref(o.op.requestBody).obj : null;
  const jsonKey = rb && Object.keys(rb.content || {}).find((k) => isJsonType(mediaType(k)));
  const jsonPointer = jsonKey ? `${o.pointer}/requestBody/content/${jsonKey.replace(/\//g, '~1')}/schema` : null;
  return { ...o, pathParams: byIn('path'), query: byIn('query'), headerParams: byIn('header'), rb, jsonKey, jsonPointer };
}

function requestArb(m) {
  const poolOf = (p) => ({ ref: 'refs', task_id: 'tasks', actor_id: 'actors', method: 'methods' })[p.name] ||
    (m.template.includes('/functions/') ? 'functions' : m.template.includes('/actor-classes/') ? 'classes' : m.template.includes('/by-name/') ? 'names' : null);
  const pathArb = fc.tuple(...m.pathParams.map((p) => paramArb(p, poolOf(p))));
  const queryArb = fc.tuple(...m.query.map((p) => maybe(queryValueArb(p), 0.35)));
  const headersArb = fc.tuple(...m.headerParams.map((p) => maybe(headerArb(p), 0.3)));
  let bodyArb;
  if (m.jsonKey) {
    bodyArb = fc.record({ body: maybe(jsonBodyArb(m.rb.content[m.jsonKey].schema), 0.92), ct: jsonCtArb });
  } else if (m.rb) {
    bodyArb = fc.record({ body: maybe(rawBodyArb, 0.9), ct: rawCtArb });
  } else {
    bodyArb = maybe(fc.record({ body: fc.constantFrom('{}', 'junk', '{"x":1}'), ct: fc.constantFrom('application/json', 'text/plain', null) }), 0.1).map((b) => b || { body: null, ct: null });
  }
  return fc.record({ p: pathArb, q: queryArb, h: headersArb, b: bodyArb }).map(({ p, q, h, b }) => {
    let pathStr = m.template;
    const pathValues = {};
    m.pathParams.forEach((param, i) => {
      const v = p[i];
      pathValues[param.name] = v;
      const enc = v && typeof v === 'object' && 'raw' in v ? v.raw : encodeURIComponent(typeof v === 'string' ? v : JSON.stringify(v));
      pathStr = pathStr.replace(`{${param.name}}`, enc);
    });
    const query = [];
    m.query.forEach((param, i) => q[i] != null && query.push([param.name, q[i]]));
    const headers = {};
    m.headerParams.forEach((param, i) => {
      if (h[i] != null) headers[param.name.toLowerCase()] = h[i];
    });
    if (b.body != null && b.ct) headers['content-type'] = b.ct;
    return { method: m.method, path: pathStr, query, headers, body: b.body, pathValues };
  });
}

// ---------------------------------------------------------------- checking

/* Reasons a response to a generated request is wrong (empty: fine). */
function judge(m, req, rec) {
  if (!rec.status) return [`no answer: ${rec.error}`];
  const reasons = contract.check(rec);
  const ok2xx = rec.status >= 200 && rec.status < 300;
  if (!ok2xx || !m) return reasons;
  const found = contract.operationFor(req.method, req.path);
  if (found.key !== `${m.method} ${m.template}`) return reasons; // routed elsewhere
  // Accepted although the spec says the request is invalid?
  for (const p of m.pathParams) {
    const given = req.pathValues[p.name];
    if (given && typeof given === 'object' && 'raw' in given) continue;
    const decoded = found.params[p.name];
    const v = contract.validator(p.schemaPointer);
    if (decoded !== undefined && !v(decoded)) reasons.push(`accepted path parameter ${p.name}=${JSON.stringify(decoded)} that its schema rejects (${fmtErrors(v.errors)})`);
  }
  for (const [name, value] of req.query) {
    const p = m.query.find((q) => q.name === name);
    if (!p) continue;
    const s = contract.deref(p.schema).obj || {};
    const numeric = s.type === 'number' || s.type === 'integer';
    const typed = numeric && /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?$/.test(value) ? Number(value) : value;
    const v = contract.validator(p.schemaPointer);
    if (!v(typed)) reasons.push(`accepted query ${name}=${JSON.stringify(value)} that its schema rejects (${fmtErrors(v.errors)})`);
  }
  const key = req.headers['idempotency-key'];
  if (key !== undefined && m.headerParams.some((p) => p.name === 'Idempotency-Key')) {
    const p = m.headerParams.find((h) => h.name === 'Idempotency-Key');
    if (!contract.validator(p.schemaPointer)(key)) reasons.push(`accepted Idempotency-Key ${JSON.stringify(key)} that its schema rejects`);
  }
  if (m.jsonPointer && req.body != null) {
    const ct = req.headers['content-type'];
    const mt = mediaType(ct);
    if (mt == null || isJsonType(mt) || mt === 'application/x-www-form-urlencoded') {
      let value;
      let parsed = true;
      try {
        value = JSON.parse(req.body);
      } catch {
        parsed = false;
      }
      if (!parsed && String(req.body).length > 0) reasons.push('accepted a body that is not JSON');
      else if (parsed) {
        const v = contract.validator(m.jsonPointer);
        if (!v(value)) reasons.push(`accepted a body its request schema rejects: ${fmtErrors(v.errors)}`);
      }
    }
  }
  return reasons;
}

function record(what, reasons, request) {
  if (reasons.length) {
    failed++;
    failures.push({ what, reasons, request });
  } else passed++;
}

// ---------------------------------------------------------------- generated runs

/* Failures of generated requests, grouped by their reason (the same server bug shows up
 * in many operations): key -> {reason, count, ops: Set, examples: [minimal requests]}. */
const groups = new Map();
const groupKey = (reasons) => reasons.map((r) => r.replace(/"[^"]*"/g, '"…"').replace(/\d+/g, 'N')).join('; ');

class Counterexample extends Error {}

/* Runs at least RUNS generated requests of one operation (unless its time runs out). Every
 * failing request is counted; the first request of each new kind of failure makes
 * fast-check stop and shrink it to a minimal one, and the runs go on with a new seed. */
async function runOperation(server, m, budgetMs, arb = requestArb(m)) {
  const what = `${m.method} ${m.template}`;
  let shrinking = null; // the group being shrunk
  let runFailures = 0;
  const statuses = new Map();
  const details = new Map();
  const prop = fc.asyncProperty(arb, async (req) => {
    const rec = await send(server, req);
    if (shrinking === null) statuses.set(rec.status, (statuses.get(rec.status) || 0) + 1);
    if (VERBOSE && shrinking === null && rec.status >= 400) {
      const d = `${rec.status} ${(json(rec)?.detail || '').replace(/[A-Za-z0-9_-]{20,}/g, 'ID').replace(/\d+/g, 'N').slice(0, 90)}`;
      details.set(d, (details.get(d) || 0) + 1);
    }
    const reasons = judge(m, req, rec);
    if (!reasons.length) return;
    const key = groupKey(reasons);
    const detail = `${reasons.join('; ')}\n      got: ${rec.status} ${rec.content_type || ''} ${(rec.body || rec.body_base64 || '').slice(0, 240)}`;
    if (shrinking !== null) {
      if (key === shrinking) throw new Counterexample(detail);
      return; // another failure while shrinking: not this one
    }
    runFailures++;
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { reason: reasons.join('; '), count: 0, ops: new Set(), examples: [] }));
    g.count++;
    g.ops.add(what);
    if (!g.examples.length && groups.size <= 40) {
      shrinking = key;
      throw new Counterexample(detail);
    }
  });
  let runs = 0;
  const started = Date.now();
  for (let attempt = 0; runs < RUNS && Date.now() - started < budgetMs; attempt++) {
    const left = budgetMs - (Date.now() - started);
    shrinking = null;
    const res = await fc.check(prop, {
      numRuns: RUNS - runs,
      seed: SEED + attempt * 7919 + [...what].reduce((a, c) => a + c.charCodeAt(0), 0),
      plugins: [fc.interruptAfterTimeLimit(left)],
    });
    runs += res.numRuns;
    if (res.failed && res.counterexample && shrinking !== null) {
      const msg = res.errorInstance ? res.errorInstance.message : String(res.error);
      groups.get(shrinking).examples.push(`${what}: ${describe(res.counterexample[0])} (shrunk ${res.numShrinks} times)\n      ${msg}`);
    } else if (res.failed && !(res.errorInstance instanceof Counterexample)) {
      groups.set(`error ${what}`, { reason: `generator error: ${res.errorInstance ? res.errorInstance.stack : res.error}`, count: 1, ops: new Set([what]), examples: [] });
      runFailures++;
      break;
    }
    if (!res.failed) break;
  }
  failed += runFailures;
  passed += runs - runFailures;
  if (VERBOSE) for (const [d, n] of [...details.entries()].sort((a, b) => b[1] - a[1]).slice(0, 8)) console.log(`    ${what}: ${n}x ${d}`);
  const st = [...statuses.entries()].sort((a, b) => a[0] - b[0]).map(([k, n]) => `${k}x${n}`).join(' ');
  return { runs, fails: runFailures, ms: Date.now() - started, st };
}

// ---------------------------------------------------------------- scenarios

async function expectRec(server, what, req, want) {
  const rec = await send(server, req);
  const reasons = judge(null, req, rec);
  if (want) {
    const extra = want(rec);
    if (extra) reasons.push(extra);
  }
  record(what, reasons, `${describe(req)} -> ${rec.status} ${(rec.body || '').slice(0, 200)}`);
  return rec;
}

const JSONH = { 'content-type': 'application/json' };

async function idempotencyScenarios(server) {
  const counter = json(await send(server, { method: 'POST', path: '/v1/actors', headers: JSONH, body: '{"class":"Counter"}' })).actor_id;
  const cases = [
    { what: 'Idempotency-Key on POST /v1/objects', path: '/v1/objects', headers: { 'content-type': 'text/plain' }, body: 'idem', other: 'idem2' },
    { what: 'Idempotency-Key on POST /v1/tasks', path: '/v1/tasks', headers: JSONH, body: '{"function":"add","args":[2,3]}', other: '{"function":"add","args":[2,4]}' },
    { what: 'Idempotency-Key on POST /v1/tasks (Prefer: wait)', path: '/v1/tasks', headers: { ...JSONH, prefer: 'wait=1' }, body: '{"function":"add","args":[5,5]}', other: '{"function":"add","args":[5,6]}' },
    { what: 'Idempotency-Key on POST /v1/tasks/batch', path: '/v1/tasks/batch', headers: JSONH, body: '{"tasks":[{"function":"echo","args":[1]}]}', other: '{"tasks":[]}' },
    { what: 'Idempotency-Key on an actor call', path: `/v1/actors/${counter}/methods/incr`, headers: JSONH, body: '{"args":[1]}', other: '{"args":[2]}' },
    { what: 'Idempotency-Key on an actor call (Prefer: wait)', path: `/v1/actors/${counter}/methods/incr`, headers: { ...JSONH, prefer: 'wait=1' }, body: '{"args":[3]}', other: '{"args":[4]}' },
  ];
  for (const c of cases) {
    const key = `gen-${c.what.length}-${Math.random().toString(36).slice(2)}`;
    const req = { method: 'POST', path: c.path, headers: { ...c.headers, 'idempotency-key': key }, body: c.body };
    const first = await expectRec(server, `${c.what}: first`, req, (r) => (r.headers['idempotent-replayed'] ? 'the first answer says Idempotent-Replayed' : null));
    await expectRec(server, `${c.what}: replay`, req, (r) => {
      if (r.status !== first.status) return `replay answered ${r.status}, the first ${first.status}`;
      if (r.body !== first.body) return 'replayed body differs from the first';
      if (r.headers['idempotent-replayed'] !== 'true') return 'replay lacks Idempotent-Replayed: true';
      for (const h of ['location', 'x-ray-ref', 'etag', 'content-type']) if (first.headers[h] !== r.headers[h]) return `replay's ${h} is ${r.headers[h]}, the first's ${first.headers[h]}`;
      return null;
    });
    await expectRec(server, `${c.what}: other body`, { ...req, body: c.other }, (r) => (r.status !== 422 ? `another body with the key answered ${r.status}, wanted 422` : null));
  }
}

async function authScenarios() {
  const s = await startServer(['--max-parked', '1'], { RAYD_API_TOKEN: TOKEN, RAYD_ADMIN_TOKEN: ADMIN });
  try {
    for (const o of contract.operations()) {
      const p = o.template.replace(/\{[^}]+\}/g, 'x1');
      const open = Array.isArray(o.op.security) && o.op.security.length === 0;
      const admin = (o.op.security || []).some((sr) => 'adminBearer' in sr);
      const body = o.method === 'GET' || o.method === 'HEAD' || o.method === 'DELETE' ? null : '{}';
      const base = { method: o.method, path: p, headers: body ? { ...JSONH } : {}, body };
      await expectRec(s, `${o.method} ${o.template} without a token`, base, (r) => {
        if (open) return r.status === 401 ? 'an open route asked for a token' : null;
        if (r.status !== 401) return `answered ${r.status} without a token, wanted 401`;
        return r.headers['www-authenticate'] ? null : 'no WWW-Authenticate';
      });
      if (!open) {
        await expectRec(s, `${o.method} ${o.template} with a wrong token`, { ...base, headers: { ...base.headers, authorization: 'Bearer nope' } }, (r) => (r.status !== 401 ? `answered ${r.status} to a wrong token, wanted 401` : null));
        if (admin) {
          await expectRec(s, `${o.method} ${o.template} with the API token (admin route)`, { ...base, headers: { ...base.headers, authorization: `Bearer ${TOKEN}` } }, (r) => (r.status !== 403 ? `answered ${r.status} to the API token on an admin route; docs/api-notes.md and the spec say 403 Forbidden` : null));
        }
      }
    }
    // The parked-request limit (--max-parked 1): one GET waits on a pending object, then
    // every other request that would wait is 429, and nothing is queued by a refused one.
    const auth = { authorization: `Bearer ${TOKEN}` };
    const sleeper = json(await send(s, { method: 'POST', path: '/v1/tasks', headers: { ...JSONH, ...auth }, body: '{"function":"sleep","args":[3]}' }));
    const parked = send(s, { method: 'GET', path: `/v1/objects/${sleeper.ref}`, query: [['timeout', '1']], headers: auth });
    await new Promise((r) => setTimeout(r, 150));
    const is429 = (r) => (r.status !== 429 ? `answered ${r.status}, wanted 429 (RAYD_MAX_PARKED reached)` : null);
    await expectRec(s, 'GET /v1/objects/{ref} past RAYD_MAX_PARKED', { method: 'GET', path: `/v1/objects/${sleeper.ref}`, query: [['timeout', '1']], headers: auth }, is429);
    await expectRec(s, 'POST /v1/wait past RAYD_MAX_PARKED', { method: 'POST', path: '/v1/wait', headers: { ...JSONH, ...auth }, body: JSON.stringify({ refs: [sleeper.ref], timeout: 1 }) }, is429);
    await expectRec(s, 'POST /v1/objects/get past RAYD_MAX_PARKED', { method: 'POST', path: '/v1/objects/get', headers: { ...JSONH, ...auth }, body: JSON.stringify({ refs: [sleeper.ref], timeout: 1 }) }, is429);
    // With Prefer: wait the server may answer the 202 receipt (not waiting) or 429; a 429
    // must mean that nothing was queued.
    const receiptOr429 = (r) => (r.status !== 429 && r.status !== 202 ? `answered ${r.status}, wanted the 202 receipt or 429` : null);
    const sub = await expectRec(s, 'POST /v1/tasks Prefer: wait past RAYD_MAX_PARKED', { method: 'POST', path: '/v1/tasks', headers: { ...JSONH, ...auth, prefer: 'wait=1' }, body: JSON.stringify({ function: 'echo', args: [{ $ref: sleeper.ref }], options: { name: 'parked-429' } }) }, receiptOr429);
    const listed = json(await send(s, { method: 'GET', path: '/v1/tasks', query: [['function', 'echo']], headers: auth }));
    const queued = (listed?.tasks || []).filter((t) => t.name === 'parked-429').length;
    record('POST /v1/tasks Prefer: wait answered 429 queues nothing', sub.status === 429 && queued ? [`answered 429 TooManyRequests, yet the task was queued (${queued} in GET /v1/tasks): a client retrying the 429 runs it twice`] : [], 'POST /v1/tasks -H "Prefer: wait=1" (its ref argument pending) past RAYD_MAX_PARKED, then GET /v1/tasks?function=echo');
    const counter = json(await send(s, { method: 'POST', path: '/v1/actors', headers: { ...JSONH, ...auth }, body: '{"class":"Counter"}' }));
    await new Promise((r) => setTimeout(r, 100)); // constructed
    const call = await expectRec(s, 'actor call Prefer: wait past RAYD_MAX_PARKED', { method: 'POST', path: `/v1/actors/${counter.actor_id}/methods/incr`, headers: { ...JSONH, ...auth, prefer: 'wait=1' }, body: JSON.stringify({ args: [{ $ref: sleeper.ref }] }) }, receiptOr429);
    const actor = json(await send(s, { method: 'GET', path: `/v1/actors/${counter.actor_id}`, headers: auth }));
    record('actor call Prefer: wait answered 429 queues nothing', call.status === 429 && actor?.calls_pending ? [`answered 429 TooManyRequests, yet the call was queued (calls_pending ${actor.calls_pending}): a client retrying the 429 calls twice`] : [], `POST /v1/actors/${counter.actor_id}/methods/incr -H "Prefer: wait=1" (its ref argument pending) past RAYD_MAX_PARKED, then GET /v1/actors/${counter.actor_id}`);
    await parked;
  } finally {
    s.child.kill('SIGKILL');
    await s.exited;
  }
}

async function finalChecks(server) {
  await expectRec(server, 'GET /healthz after the runs', { method: 'GET', path: '/healthz' }, (r) => (r.status !== 200 ? `healthz answered ${r.status}` : null));
  const payload = Buffer.from('round trip \u00e9\u0000\u00ff');
  const put = await expectRec(server, 'put after the runs', { method: 'POST', path: '/v1/objects', headers: { 'content-type': 'application/x-gen' }, body: payload }, (r) => (r.status !== 201 ? `put answered ${r.status}` : null));
  const ref = json(put)?.ref;
  const got = await send(server, { method: 'GET', path: `/v1/objects/${ref}` });
  const gotBody = got.body_base64 != null ? Buffer.from(got.body_base64, 'base64') : Buffer.from(got.body || '', 'utf8');
  record('get after the runs gives the bytes back', got.status === 200 && gotBody.equals(payload) && got.content_type === 'application/x-gen' ? [] : [`got ${got.status} ${got.content_type} ${gotBody.toString('hex')}`], `GET /v1/objects/${ref}`);

  // Drain: SIGTERM while a task runs; new work is 503 ShuttingDown, the process exits 0.
  await send(server, { method: 'POST', path: '/v1/tasks', headers: JSONH, body: '{"function":"sleep","args":[0.5]}' });
  server.child.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  const shutting = (r) => (r.status !== 503 ? `answered ${r.status} while draining, wanted 503 ShuttingDown` : (json(r)?.title !== 'ShuttingDown' ? `title ${json(r)?.title}` : (r.headers['retry-after'] ? null : 'no Retry-After')));
  for (const [method, p, body] of [['POST', '/v1/objects', 'x'], ['POST', '/v1/tasks', '{"function":"add","args":[1,2]}'], ['POST', '/v1/wait', '{"refs":[]}'], ['DELETE', `/v1/objects/${ref}`, null], ['PUT', '/v1/functions/f', '{"url":"http://127.0.0.1:1/"}'], ['POST', `/v1/actors/${pools.actors[1]}/methods/size`, '{}']]) {
    await expectRec(server, `${method} ${p} while draining`, { method, path: p, headers: body ? JSONH : {}, body }, shutting);
  }
  await expectRec(server, 'GET /readyz while draining', { method: 'GET', path: '/readyz' }, (r) => (r.status !== 503 ? `readyz answered ${r.status} while draining` : null));
  const code = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r('timeout'), 30000))]);
  record('rayd exits 0 on SIGTERM', code === 0 ? [] : [`exit ${code}`], 'kill -TERM');
  if (code === 'timeout') server.child.kill('SIGKILL');
}

// ---------------------------------------------------------------- main

const alive = (s) => s.child.exitCode === null && s.child.signalCode === null;

const server = await startServer(['--workers', '4', '--drain-timeout', '5']);
await fillPools(server);
const models = contract.operations().map(opModel);
// Read-only operations first, those that free or kill things last, so the pools stay useful.
const order = { GET: 0, HEAD: 0, POST: 1, PUT: 1, DELETE: 2 };
models.sort((a, b) => order[a.method] - order[b.method]);
// Routing: any method on any listed path (405 and friends) and unlisted paths (404).
const templates = Object.keys(spec.paths);
const routingModel = { method: '*', template: '(any method, any path)', pathParams: [], query: [], headerParams: [] };
const routingArb = fc.record({
  method: fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD'),
  t: fc.constantFrom(...templates),
  seg: fc.oneof(fc.constantFrom(...pools.refs, ...pools.actors, 'x', 'batch'), junkText.map(encodeURIComponent)),
  extra: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, fc.constantFrom('/', '/x', '//', '/..', '/v1', '.json')),
}).map(({ method, t, seg, extra }) => ({ method, path: t.replace(/\{[^}]+\}/g, seg) + extra, query: [], headers: {}, body: null, pathValues: {} }));

const perOp = [];
const deadline = t0 + BUDGET_MS;
for (let i = 0; i < models.length; i++) {
  const m = models[i];
  // Most operations take well under their share; waiting ones may take more.
  const left = deadline - Date.now() - 1000 * (models.length - i);
  const budget = Math.max(2000, Math.min(left, Math.max(30000, (3 * left) / (models.length + 1 - i))));
  const r = await runOperation(server, m, budget);
  perOp.push({ key: `${m.method} ${m.template}`, ...r });
  if (!alive(server)) {
    failures.push({ what: `${m.method} ${m.template}`, reasons: [`rayd died (exit ${server.child.exitCode}, signal ${server.child.signalCode})`], request: '' });
    failed++;
    break;
  }
}
if (alive(server)) {
  const r = await runOperation(server, { ...routingModel, method: 'ANY' }, Math.max(3000, deadline - Date.now()), routingArb);
  perOp.push({ key: 'routing (any method, any path)', ...r });
}
for (const p of perOp) console.log(`${p.fails ? 'FAIL' : 'ok  '} ${p.key}: ${p.runs} requests, ${p.fails} failed, ${(p.ms / 1000).toFixed(1)} s [${p.st}]`);
const generated = passed + failed;

if (alive(server)) {
  await idempotencyScenarios(server);
  await authScenarios();
  await finalChecks(server);
}
console.log(`scenario checks: ${passed + failed - generated}`);

if (groups.size) {
  console.log('\nfailures of generated requests, by kind (with the minimal request fast-check shrank one to):');
  for (const g of groups.values()) {
    console.log(`- ${g.reason}\n    (${g.count} request(s), in ${[...g.ops].join(', ')})`);
    for (const e of g.examples) console.log(`    ${e}`);
  }
}
if (failures.length) {
  console.log('\nfailed checks:');
  for (const f of failures) {
    console.log(`- ${f.what}: ${f.reasons.join('; ')}`);
    if (f.request) console.log(`    ${f.request}`);
  }
}
console.log(`(${sent} requests sent, seed ${SEED}, ${((Date.now() - t0) / 1000).toFixed(1)} s)`);
console.log(`generate: ${passed} passed, ${failed} failed`);
if (alive(server)) server.child.kill('SIGKILL');
process.exit(failed ? 1 : 0);
