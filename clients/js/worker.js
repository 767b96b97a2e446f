// The worker side (Node.js only): JavaScript functions and classes served over HTTP for
// rayd to call, with rayd's calling convention. node:http, no dependencies.
//
//   import { connect, RetryableError } from 'rayd';
//   const rd = await connect();
//   const worker = await rd.worker({ port: 9000 });
//   const wordcount = worker.function(function wordcount(text) { return text.split(/\s+/).length; });
//   worker.actorClass(class Account {
//     constructor(balance = 0) { this.balance = balance; }
//     deposit(n) { this.balance += n; return this.balance; }
//   });
//   await worker.serve();              // registers with rayd, serves until stopped
//
// - A function gets POST /functions/{name} {"task_id","function","attempt","args","kwargs"};
//   arguments are decoded ({"$bytes"} to Uint8Array, nested {"$ref"} to ObjectRef,
//   {"$actor"} to ActorHandle) and keyword arguments, if any, come as a last object
//   argument. It may be async. A Uint8Array result answers application/octet-stream,
//   anything else JSON.
// - An actor class gets POST /classes/{name} {"actor_id","class","method","args","kwargs",
//   "state"}: the instance is rebuilt from state (its own enumerable properties), the method
//   runs, and the worker answers {"result","state"}; rayd keeps the state only on success.
// - An exception answers 500 application/problem+json (title: the error's name, detail: its
//   message, exception and traceback: its class and stack): rayd stores a TaskError with
//   that cause and does not retry it (unless the task has retryExceptions).
// - RetryableError asks for another attempt instead: the worker answers 503
//   application/problem+json, which rayd retries with backoff up to the task's max_retries,
//   then stores WorkerUnavailable with that problem as its cause. Actor calls are not
//   retried: the call fails.
import http from 'node:http';
import { randomUUID } from 'node:crypto';

import {
  ActorClass, Client, RemoteFunction, RetryableError, _contextStore,
} from './index.js';

const NAME_OK = /^[A-Za-z0-9_.-]{1,128}$/;

function problem(err, status = 500) {
  const cls = err?.constructor?.name || typeof err;
  const message = err instanceof Error ? err.message : String(err);
  return {
    type: 'urn:javascript:exception:' + cls, title: err?.name || cls, status,
    detail: message || cls, exception: cls,
    traceback: err instanceof Error && err.stack ? userStack(err.stack) : String(err),
  };
}

// The stack down to the user's code: the worker's own frames and node's below them say
// nothing about the error.
function userStack(stack) {
  const lines = stack.split('\n');
  const k = lines.findIndex((l, i) => i > 0 && l.includes(import.meta.url));
  return (k > 0 ? lines.slice(0, k) : lines).join('\n');
}

/** Information about the call being answered (currentCall()). */
const calls = new (await import('node:async_hooks')).AsyncLocalStorage();

/** The call this async context is answering for rayd, or null outside a worker call. */
export function currentCall() {
  return calls.getStore() ?? null;
}

/** Serves functions and actor classes for rayd. */
export class Worker {
  /**
   * @param {Client} client
   * @param {object} [opts] port (0: a free one), host (default 127.0.0.1), url (the address
   *   rayd reaches the worker by; default http://host:port), log (for the retries
   *   RetryableError asks for; default console.warn)
   */
  constructor(client, { port = 0, host = '127.0.0.1', url = null, log = console.warn, embedded = false } = {}) {
    if (!(client instanceof Client)) throw new TypeError('Worker needs a rayd Client');
    this.client = client;
    this._port = port;
    this._host = host;
    this._url = url;
    this._embedded = embedded;
    this._log = log;
    this._suffix = randomUUID().slice(0, 8);
    this._functions = new Map();
    this._classes = new Map();
    this._server = null;
  }

  /**
   * Serves fn as the remote function `name` (default fn.name). Options: name, timeout,
   * maxConcurrency, maxRetries (the registration's). Returns a RemoteFunction for it
   * (registered when the worker starts, or now if it runs).
   */
  function(fn, { name = null, timeout = 60, maxConcurrency = 0, maxRetries = 3 } = {}) {
    const n = checkName(name || fn.name);
    const reg = { timeout, max_concurrency: maxConcurrency, max_retries: maxRetries };
    this._functions.set(n, { fn, reg });
    const ready = this._server ? this._register('/v1/functions/', n, reg, 'functions') : null;
    if (ready) ready.catch(() => {});
    return new RemoteFunction(this.client, n, {}, ready && ready.then(() => n));
  }

  /**
   * Serves cls as the remote actor class `name` (default cls.name). Its state (own
   * enumerable properties) lives in rayd between calls. Returns an ActorClass for it.
   */
  actorClass(cls, { name = null, timeout = 60 } = {}) {
    const n = checkName(name || cls.name);
    const reg = { timeout };
    this._classes.set(n, { cls, reg });
    const ready = this._server ? this._register('/v1/actor-classes/', n, reg, 'classes') : null;
    if (ready) ready.catch(() => {});
    return new ActorClass(this.client, n, {}, ready && ready.then(() => n));
  }

  /** @internal client.remote's work: serve under a name unique to this worker; resolves to it. */
  async _serveUnique(target, isClass) {
    const base = `${(target.name || 'anonymous').replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 100)}-${this._suffix}`;
    let n = base;
    for (let i = 2; this._functions.has(n) || this._classes.has(n); i++) n = `${base}-${i}`;
    if (isClass) {
      this._classes.set(n, { cls: target, reg: { timeout: 60 } });
      await this._register('/v1/actor-classes/', n, { timeout: 60 }, 'classes');
    } else {
      const reg = { timeout: 60, max_concurrency: 0, max_retries: 3 };
      this._functions.set(n, { fn: target, reg });
      await this._register('/v1/functions/', n, reg, 'functions');
    }
    return n;
  }

  /** The address rayd calls this worker at (known once started). */
  get url() {
    if (this._url) return this._url.replace(/\/+$/, '');
    if (!this._server) throw new Error('the worker is not started');
    let host = this._host;
    if (['', '0.0.0.0', '::'].includes(host)) host = '127.0.0.1';
    if (host.includes(':')) host = `[${host}]`;
    return `http://${host}:${this._server.address().port}`;
  }

  /** Listens, then registers every function and class with rayd. */
  async start() {
    if (this._server) return this;
    const server = http.createServer({ keepAlive: true }, (req, res) => this._handle(req, res));
    if (this._embedded) {
      // client.remote's worker must not keep the program alive once its own work is done.
      server.on('connection', (socket) => socket.unref());
    }
    server.keepAliveTimeout = 65000; // longer than rayd keeps an idle connection
    server.headersTimeout = 66000;
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(this._port, this._host, () => { server.off('error', reject); resolve(); });
    });
    this._server = server;
    if (this._embedded) server.unref();
    try {
      for (const [n, { reg }] of this._functions) await this._register('/v1/functions/', n, reg, 'functions');
      for (const [n, { reg }] of this._classes) await this._register('/v1/actor-classes/', n, reg, 'classes');
    } catch (e) {
      await this.stop();
      throw e;
    }
    return this;
  }

  /** start(), then serve until stop() or SIGINT/SIGTERM. */
  async serve() {
    await this.start();
    console.log(`rayd worker serving ${this._functions.size} function(s) and ${this._classes.size} class(es) at ${this.url}`);
    await new Promise((resolve) => {
      const done = () => resolve();
      process.once('SIGINT', done);
      process.once('SIGTERM', done);
      this._server.once('close', done);
    });
    await this.stop();
  }

  /** Stops serving; with unregister, removes the registrations from rayd first. */
  async stop({ unregister = false } = {}) {
    const server = this._server;
    if (!server) return;
    this._server = null;
    if (unregister) {
      for (const n of this._functions.keys()) await this.client._request('DELETE', '/v1/functions/' + n).catch(() => {});
      for (const n of this._classes.keys()) await this.client._request('DELETE', '/v1/actor-classes/' + n).catch(() => {});
    }
    await new Promise((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections?.();
    });
  }

  async _register(prefix, name, reg, kind) {
    await this.client._json('PUT', prefix + name, { ...reg, url: `${this.url}/${kind}/${name}` },
      { ok: [200, 201] });
  }

  // ---- calls -----------------------------------------------------------------------------

  _handle(req, res) {
    const send = (status, data, contentType) => {
      res.writeHead(status, { 'Content-Type': contentType, 'Content-Length': data.length });
      res.end(data);
    };
    const sendProblem = (p) => send(p.status, Buffer.from(JSON.stringify(p)), 'application/problem+json');
    if (req.method === 'GET' && req.url === '/healthz') {
      send(200, Buffer.from('{"status":"ok"}'), 'application/json');
      return;
    }
    const [, kind, rawName] = req.url.split('/');
    const name = decodeURIComponent(rawName || '');
    if (req.method !== 'POST' || !['functions', 'classes'].includes(kind)) {
      sendProblem({ type: 'about:blank', title: 'NotFound', status: 404, detail: `no such endpoint: ${req.method} ${req.url}` });
      return;
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      let body;
      try {
        body = this.client._parse(Buffer.concat(chunks).toString('utf8') || 'null');
      } catch {
        sendProblem({ type: 'about:blank', title: 'BadRequest', status: 400, detail: 'the body is not JSON' });
        return;
      }
      if (!body || typeof body !== 'object') {
        sendProblem({ type: 'about:blank', title: 'BadRequest', status: 400, detail: 'the body must be a JSON object' });
        return;
      }
      const info = {
        taskId: body.task_id ?? null, function: body.function ?? null, attempt: body.attempt ?? null,
        actorId: body.actor_id ?? null, method: body.method ?? null,
        requestId: req.headers['x-request-id'] ?? null, traceparent: req.headers.traceparent ?? null,
      };
      const ctx = {};
      if (info.requestId) ctx['X-Request-Id'] = info.requestId;
      if (info.traceparent) ctx.traceparent = info.traceparent;
      let result;
      try {
        result = await calls.run(info, () => _contextStore().run(ctx, () => (kind === 'functions'
          ? this._runFunction(name, body) : this._runMethod(name, body))));
      } catch (e) {
        if (e instanceof RetryableError) {
          this._log(`rayd worker: ${kind} ${name} attempt ${info.attempt} asks for a retry: ${e.message}`);
          // rayd retries an attempt answered 503 and keeps the problem as the final cause
          sendProblem(problem(e, 503));
          return;
        }
        sendProblem(e instanceof NoSuch ? { ...problem(e, 404), title: 'NotFound' } : problem(e));
        return;
      }
      if (result instanceof Uint8Array) {
        send(200, Buffer.from(result.buffer, result.byteOffset, result.byteLength), 'application/octet-stream');
        return;
      }
      let data;
      try {
        data = Buffer.from(this.client._encodeCall('the result', result === undefined ? null : result, [], {}));
      } catch (e) {
        sendProblem(problem(e));
        return;
      }
      send(200, data, 'application/json');
    });
  }

  async _runFunction(name, body) {
    const entry = this._functions.get(name);
    if (!entry) throw new NoSuch(`this worker has no function ${JSON.stringify(name)}`);
    const { fn } = entry;
    return fn(...callArgs(body));
  }

  async _runMethod(name, body) {
    const entry = this._classes.get(name);
    if (!entry) throw new NoSuch(`this worker has no class ${JSON.stringify(name)}`);
    const { cls } = entry;
    const { method } = body;
    let inst;
    let result = null;
    if (method === '__init__') {
      inst = new cls(...callArgs(body));
    } else {
      if (typeof method !== 'string' || method.startsWith('_') || method === 'constructor' ||
          typeof cls.prototype[method] !== 'function') {
        const e = new TypeError(`${cls.name} has no method ${JSON.stringify(method)}`);
        e.name = 'AttributeError';
        throw e;
      }
      inst = Object.create(cls.prototype);
      if (body.state && typeof body.state === 'object') Object.assign(inst, body.state);
      result = await inst[method](...callArgs(body));
    }
    return { result: result === undefined ? null : result, state: { ...inst } };
  }
}

class NoSuch extends Error {}

function callArgs(body) {
  const args = Array.isArray(body.args) ? body.args : [];
  const kw = body.kwargs && typeof body.kwargs === 'object' ? body.kwargs : {};
  return Object.keys(kw).length ? [...args, kw] : args;
}

function checkName(n) {
  if (!NAME_OK.test(n || '')) throw new RangeError(`rayd names are 1 to 128 characters of [A-Za-z0-9_.-], got ${JSON.stringify(n)}`);
  return n;
}

export { RetryableError };
