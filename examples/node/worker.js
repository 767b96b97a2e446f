#!/usr/bin/env node
// An example rayd worker in Node.js: the same remote functions and actor class as
// examples/python/worker.py, with no packages (node's http module only; Node 16.9+).
//
// rayd does not run your code; it calls it. Register an endpoint of this worker with rayd
// and every task (or actor call) becomes one HTTP POST from rayd to here.
//
// Run:
//   node examples/node/worker.js 9000              # port from argv, else $PORT, else 9000
//   rayd --remote-allow http://127.0.0.1:9000      # rayd may call this worker
//
// Register and call:
//   curl -X PUT localhost:8080/v1/functions/wordcount \
//        -d '{"url":"http://127.0.0.1:9000/functions/wordcount","timeout":10}'
//   curl -H 'Prefer: wait=5' localhost:8080/v1/tasks \
//        -d '{"function":"wordcount","args":["the cat and the hat"]}'          # -> 5
//   curl -X PUT localhost:8080/v1/actor-classes/Account \
//        -d '{"url":"http://127.0.0.1:9000/classes/Account"}'
//   curl localhost:8080/v1/actors -d '{"class":"Account","args":[100]}'        # actor_id
//   curl -H 'Prefer: wait=5' localhost:8080/v1/actors/ID/methods/deposit -d '{"args":[5]}'
//   (examples/drive.sh does all of this: WORKER="node examples/node/worker.js" to use this one)
//
// The calling convention (see rayd's openapi/openapi.yaml):
//   - A function receives POST {"task_id","function","attempt","args","kwargs"} with the
//     submitting request's X-Request-Id. A 2xx answer's body, with its Content-Type, is the
//     task's result; any other status is a TaskError (an application/problem+json body
//     becomes its "cause"). rayd retries only when it cannot reach the worker or it does
//     not answer in time.
//   - An actor class receives POST {"actor_id","class","method","args","kwargs","state"} and
//     answers {"result": value, "state": new_state}. rayd keeps the state: "__init__" gets
//     state null and returns the first state; a failed call (non-2xx) changes nothing.
//   - Binary objects passed as {"$ref": ...} arrive as {"$bytes": base64, "content_type"}.
//
// Endpoints (POST): /functions/wordcount, /functions/slow, /functions/fail,
// /functions/byte_length, /functions/request_info, /functions/big, /classes/Account;
// GET /stats (per function: calls, in_flight, max_in_flight, disconnects), DELETE /stats,
// GET /healthz. Each is described next to its code below.
'use strict';

const http = require('http');

class Problem extends Error {
  constructor(status, title, detail, extensions = {}) {
    super(detail);
    Object.assign(this, { status, title, detail, extensions });
  }
  body() {
    return Object.assign({ type: 'https://example.com/problems/' + this.title,
      title: this.title, status: this.status, detail: this.detail }, this.extensions);
  }
}

class Raw { // a result that is not JSON: bytes with their own Content-Type
  constructor(data, contentType = 'application/octet-stream') {
    this.data = data;
    this.contentType = contentType;
  }
}

class ClientGone extends Error {} // rayd hung up (the task was cancelled or timed out)

const isNumber = (v) => typeof v === 'number' && Number.isFinite(v);
const arg = (args, kwargs, i, key, dflt) =>
  key in kwargs ? kwargs[key] : args.length > i ? args[i] : dflt;

// ---- functions: (args, kwargs, call) -> JSON value, Raw, or a Promise of one ------------------

const FUNCTIONS = {
  // args [text] -> the number of whitespace-separated words
  wordcount(args, kwargs) {
    const text = arg(args, kwargs, 0, 'text');
    if (typeof text !== 'string') throw new Problem(400, 'BadArgument', 'wordcount takes one string: [text]');
    return text.split(/\s+/).filter((w) => w).length;
  },
  // kwargs {"seconds": s} or args [s] -> {"slept": s}; stops when rayd hangs up
  slow(args, kwargs, call) {
    const s = arg(args, kwargs, 0, 'seconds', 1);
    if (!isNumber(s) || s < 0) throw new Problem(400, 'BadArgument', 'slow takes a number of seconds');
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => resolve({ slept: s }), s * 1000);
      call.onGone(() => { clearTimeout(timer); reject(new ClientGone()); });
    });
  },
  // args [message] -> 500 problem+json, title FailedOnPurpose
  fail(args, kwargs, call) {
    const message = arg(args, kwargs, 0, 'message', 'failing as asked');
    throw new Problem(500, 'FailedOnPurpose', String(message), { function: call.body.function });
  },
  // args [{"$bytes": b64, "content_type"} or a string] -> {"bytes": n, "content_type"}
  byte_length(args, kwargs) {
    const v = arg(args, kwargs, 0, 'data');
    if (v && typeof v === 'object' && typeof v.$bytes === 'string')
      return { bytes: Buffer.from(v.$bytes, 'base64').length, content_type: v.content_type ?? null };
    if (typeof v === 'string') return { bytes: Buffer.byteLength(v, 'utf8'), content_type: null };
    throw new Problem(400, 'BadArgument', 'byte_length takes a $bytes value or a string');
  },
  // -> what rayd sent: {"request_id","task_id","function","attempt","traceparent"}
  request_info(args, kwargs, call) {
    return { request_id: call.headers['x-request-id'] ?? null, task_id: call.body.task_id,
      function: call.body.function, attempt: call.body.attempt,
      traceparent: call.headers['traceparent'] ?? null };
  },
  // -> 503 problem+json, title Overloaded: "not now, retry me" (rayd retries it)
  overloaded(args, kwargs, call) {
    throw new Problem(503, 'Overloaded', 'the worker is overloaded, retry later',
      { attempt: call.body.attempt });
  },
  // kwargs {"size": n} -> n bytes of application/octet-stream (default 2 MiB)
  big(args, kwargs) {
    const size = arg(args, kwargs, 0, 'size', 2 << 20);
    if (!Number.isInteger(size) || size < 0 || size > 1 << 30)
      throw new Problem(400, 'BadArgument', 'big takes a size in bytes, at most 1 GiB');
    return new Raw(Buffer.alloc(size, 'x'));
  },
};

// ---- an actor class: (method, state, args, kwargs) -> [result, newState] --------------------

function amount(args, kwargs) {
  const n = arg(args, kwargs, 0, 'n');
  if (!isNumber(n) || n <= 0) throw new Problem(400, 'BadArgument', 'the amount must be a positive number');
  return n;
}

const CLASSES = {
  // __init__(balance=0), deposit(n), withdraw(n) (409 when short), balance()
  Account(method, state, args, kwargs) {
    if (method === '__init__') {
      const balance = arg(args, kwargs, 0, 'balance', 0);
      if (!isNumber(balance) || balance < 0)
        throw new Problem(400, 'BadArgument', 'the opening balance must be a number >= 0');
      return [null, { balance }];
    }
    if (!state || typeof state !== 'object' || !('balance' in state))
      throw new Problem(400, 'BadState', 'no state: was the actor created?');
    let balance = state.balance;
    switch (method) {
      case 'deposit':
        balance += amount(args, kwargs);
        return [balance, { balance }];
      case 'withdraw': {
        const n = amount(args, kwargs);
        if (n > balance)
          throw new Problem(409, 'InsufficientFunds', `cannot withdraw ${n}: the balance is ${balance}`,
            { balance, requested: n });
        balance -= n;
        return [balance, { balance }];
      }
      case 'balance':
        return [balance, state];
      default:
        throw new Problem(404, 'NoSuchMethod', `Account has no method ${JSON.stringify(method)}`,
          { methods: ['deposit', 'withdraw', 'balance'] });
    }
  },
};

// ---- HTTP --------------------------------------------------------------------------------

const stats = {}; // per registered function name
const stat = (name) =>
  (stats[name] ??= { calls: 0, in_flight: 0, max_in_flight: 0, disconnects: 0 });

function send(res, status, data, contentType) {
  if (res.destroyed) return;
  res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': data.length });
  res.end(data);
}
const sendJson = (res, status, value, ct = 'application/json') =>
  send(res, status, Buffer.from(JSON.stringify(value)), ct);
const sendProblem = (res, p) => sendJson(res, p.status, p.body(), 'application/problem+json');

async function runFunction(fn, req, res, body, args, kwargs) {
  const st = stat(body.function || req.url);
  st.calls++;
  st.max_in_flight = Math.max(st.max_in_flight, ++st.in_flight);
  const call = {
    body,
    headers: req.headers,
    onGone(cb) { res.on('close', () => { if (!res.writableFinished) cb(); }); },
  };
  try {
    const result = await fn(args, kwargs, call);
    if (result instanceof Raw) send(res, 200, result.data, result.contentType);
    else sendJson(res, 200, result);
  } catch (e) {
    if (e instanceof ClientGone) st.disconnects++;
    else if (e instanceof Problem) sendProblem(res, e);
    else sendProblem(res, new Problem(500, 'InternalError', String(e)));
  } finally {
    st.in_flight--;
  }
}

function handle(req, res, raw) {
  const path = req.url.split('?')[0];
  if (req.method === 'GET' && path === '/healthz') return send(res, 200, Buffer.from('ok\n'), 'text/plain');
  if (req.method === 'GET' && path === '/stats') return sendJson(res, 200, stats);
  if (req.method === 'DELETE' && path === '/stats') {
    for (const k of Object.keys(stats)) delete stats[k];
    return send(res, 204, Buffer.alloc(0), 'text/plain');
  }
  if (req.method !== 'POST')
    return sendProblem(res, new Problem(404, 'NotFound', `no such endpoint: ${req.method} ${path}`));
  let body;
  try {
    body = JSON.parse(raw.length ? raw.toString('utf8') : 'null');
  } catch (e) {
    return sendProblem(res, new Problem(400, 'BadRequest', 'the body is not JSON'));
  }
  if (!body || typeof body !== 'object' || Array.isArray(body))
    return sendProblem(res, new Problem(400, 'BadRequest', 'the body must be a JSON object'));
  const args = Array.isArray(body.args) ? body.args : [];
  const kwargs = body.kwargs && typeof body.kwargs === 'object' ? body.kwargs : {};
  const [, kind, name] = path.split('/');
  if (kind === 'functions' && Object.hasOwn(FUNCTIONS, name))
    return runFunction(FUNCTIONS[name], req, res, body, args, kwargs);
  if (kind === 'classes' && Object.hasOwn(CLASSES, name)) {
    if (body.method === 'request_info') // any class: what arrived with the call
      return sendJson(res, 200, { result: { request_id: req.headers['x-request-id'] ?? null,
        traceparent: req.headers['traceparent'] ?? null }, state: body.state ?? null });
    try {
      const [result, state] = CLASSES[name](body.method, body.state, args, kwargs);
      return sendJson(res, 200, { result, state });
    } catch (e) {
      if (e instanceof Problem) return sendProblem(res, e);
      return sendProblem(res, new Problem(500, 'InternalError', String(e)));
    }
  }
  return sendProblem(res, new Problem(404, 'NotFound', `no such endpoint: POST ${path}`));
}

const port = Number(process.argv[2] || process.env.PORT || 9000);
const host = process.env.HOST || '127.0.0.1';
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => handle(req, res, Buffer.concat(chunks)));
});
server.keepAliveTimeout = 60000; // rayd reuses connections
server.listen({ port, host, backlog: 1024 }, () => {
  console.log(`worker listening on http://${host}:${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
