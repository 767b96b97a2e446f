// rayd for JavaScript: Ray's API (put, get, wait, remote functions, actors) over rayd's
// REST API, with promises. ES module, no dependencies: fetch (Node.js 18+, browsers).
//
//   import { connect } from 'rayd';
//   const rd = await connect('http://localhost:8080');   // or RAYD_ADDRESS; token / RAYD_API_TOKEN
//   const add = rd.function('add');
//   await rd.get(add.remote(1, 2));                        // 3
//
// The worker side (serving your own functions and classes) is in worker.js (Node.js only).
import {
  RaydError, GetTimeoutError, ProtocolError, RaydConnectionError, SerializationError,
} from './errors.js';

export * from './errors.js';
export const version = '0.1.0';

// Longest wait asked of the server in one request (it caps waits at RAYD_MAX_WAIT anyway;
// the client asks again until its own deadline). Tasks per batch request: the server's max.
const MAX_WAIT = 60;
const BATCH_MAX = 10000;

// ---- request context (X-Request-Id, traceparent), Node.js only -----------------------------

let als = null;
if (typeof process !== 'undefined' && process.versions && process.versions.node) {
  try {
    const { AsyncLocalStorage } = await import('node:async_hooks');
    als = new AsyncLocalStorage();
  } catch { /* not Node.js after all */ }
}

/**
 * Runs fn with every request made inside (by any client, across awaits) carrying these
 * X-Request-Id and traceparent headers. A worker sets them from the call it answers, so
 * calls made from a task keep its request id. Node.js only; in browsers pass `headers` to
 * connect() instead.
 */
export function requestContext({ requestId, traceparent } = {}, fn) {
  if (!als) throw new Error('requestContext needs Node.js (AsyncLocalStorage)');
  const ctx = { ...(als.getStore() || {}) };
  if (requestId != null) ctx['X-Request-Id'] = String(requestId);
  if (traceparent != null) ctx.traceparent = String(traceparent);
  return als.run(ctx, fn);
}

/** @internal the context store, for worker.js */
export function _contextStore() {
  return als;
}

// ---- values <-> JSON -------------------------------------------------------------------------

function toBase64(bytes) {
  if (typeof Buffer !== 'undefined') {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
  }
  let s = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function fromBase64(text) {
  if (typeof Buffer !== 'undefined') {
    const b = Buffer.from(text, 'base64');
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  }
  const s = atob(text);
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i);
  return out;
}

function describe(v) {
  const t = v === null ? 'null' : typeof v === 'object' ? (v.constructor?.name ?? 'object') : typeof v;
  return t;
}

/**
 * A JSON.stringify replacer with rayd's conventions: ObjectRef -> {"$ref"}, ActorHandle ->
 * {"$actor"}, Uint8Array/ArrayBuffer (and Buffer) -> {"$bytes"}. Throws on what JSON would
 * silently change: functions, symbols, BigInt, NaN and infinities, Map, Set.
 */
function replacer(key, value) {
  const original = this[key];
  if (original instanceof ObjectRef) return { $ref: original.id };
  if (original instanceof ActorHandle) return { $actor: original.actorId, class: original.className };
  if (original instanceof Uint8Array) return { $bytes: toBase64(original) };
  if (original instanceof ArrayBuffer) return { $bytes: toBase64(new Uint8Array(original)) };
  if (ArrayBuffer.isView(original) && !(original instanceof DataView)) {
    return Array.from(original); // other typed arrays: their numbers
  }
  switch (typeof value) {
    case 'function': case 'symbol': case 'bigint':
      throw new TypeError(`${typeof value} is not JSON serialisable`);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not JSON compliant`);
      break;
    case 'object':
      if (value instanceof Map || value instanceof Set || value instanceof WeakMap ||
          value instanceof Promise) {
        throw new TypeError(`${describe(value)} is not JSON serialisable`);
      }
      break;
    default:
  }
  return value;
}

/** Value -> JSON text, or SerializationError naming `what`. */
function encode(value, what) {
  try {
    return JSON.stringify(value, replacer);
  } catch (e) {
    throw new SerializationError(
      `cannot send ${what ?? describe(value)} to rayd as JSON: ${e.message}`);
  }
}

// ---- refs, functions, actors ---------------------------------------------------------------

/** A reference to an object in rayd's store (Ray's ObjectRef). */
export class ObjectRef {
  /** @param {string} id @param {string|null} [taskId] */
  constructor(id, taskId = null) {
    this.id = id;
    /** The task producing it, when this client submitted it (cancel needs it). */
    this.taskId = taskId;
  }

  hex() { return this.id; }

  toString() { return `ObjectRef(${this.id})`; }

  toJSON() { return { $ref: this.id }; }
}

/** A task described but not submitted (fn.bind(...)), for client.submit(). */
export class TaskCall {
  constructor(fn, args, kwargs) {
    this.function = fn;
    this.args = args;
    this.kwargs = kwargs;
    this.options = fn._options;
  }

  spec() {
    const d = { function: this.function.name, args: this.args };
    if (this.kwargs && Object.keys(this.kwargs).length) d.kwargs = this.kwargs;
    if (Object.keys(this.options).length) d.options = this.options;
    return d;
  }
}

const TASK_OPTIONS = {
  numReturns: 'num_returns', maxRetries: 'max_retries', retryExceptions: 'retry_exceptions',
  timeout: 'timeout', name: 'name',
};
const ACTOR_OPTIONS = {
  name: 'name', getIfExists: 'get_if_exists', maxRestarts: 'max_restarts',
  maxPendingCalls: 'max_pending_calls',
};

function mapOptions(options, table, what) {
  const out = {};
  for (const [k, v] of Object.entries(options)) {
    const wire = table[k] ?? (Object.values(table).includes(k) ? k : null);
    if (!wire) {
      throw new TypeError(`unknown ${what} option ${k}; rayd knows ${Object.keys(table).join(', ')}`);
    }
    if (v !== undefined && v !== null) out[wire] = v;
  }
  return out;
}

/** Keyword arguments: pass rayd.kwargs({...}) as the last argument of .remote(). */
export class Kwargs {
  constructor(values) { this.values = values; }
}

/** Marks an object as keyword arguments: `fn.remote(1, kwargs({reverse: true}))`. */
export function kwargs(values) {
  return new Kwargs(values);
}

function splitArgs(args) {
  if (args.length && args[args.length - 1] instanceof Kwargs) {
    return [args.slice(0, -1), args[args.length - 1].values];
  }
  return [args, {}];
}

/** A function tasks can run (Ray's remote function). */
export class RemoteFunction {
  constructor(client, name, options = {}, ready = null) {
    this._client = client;
    this.name = name;
    this._options = options;
    this._ready = ready; // registration still under way (client.remote)
  }

  /**
   * The same function with task options: numReturns, maxRetries, retryExceptions, timeout,
   * name (snake_case names work too).
   */
  options(options) {
    return new RemoteFunction(this._client, this.name,
      { ...this._options, ...mapOptions(options, TASK_OPTIONS, 'task') }, this._ready);
  }

  /**
   * Submits a task; resolves to its ObjectRef (an array with numReturns > 1). Arguments
   * may be refs or promises of refs; end with rayd.kwargs({...}) for keyword arguments.
   */
  async remote(...args) {
    if (this._ready) this.name = await this._ready;
    const [a, kw] = splitArgs(args);
    return this._client._submitOne(new TaskCall(this, await settle(a), await settle(kw)));
  }

  /** The call, not submitted: pass many to client.submit() for one batch request. */
  bind(...args) {
    const [a, kw] = splitArgs(args);
    return new TaskCall(this, a, kw);
  }
}

/** A method of an actor: .remote(...) queues a call and resolves to its ObjectRef. */
export class ActorMethod {
  constructor(handle, name) {
    this._handle = handle;
    this.name = name;
  }

  /**
   * Queues a call; resolves to its ObjectRef. Calls through one handle reach rayd in the
   * order they were made (each is sent once the previous one was accepted), as in Ray.
   */
  remote(...args) {
    const h = this._handle;
    const [a, kw] = splitArgs(args);
    const call = (h._queue || Promise.resolve()).catch(() => {}).then(async () =>
      h._client._callMethod(h.actorId, this.name, await settle(a), await settle(kw)));
    h._queue = call;
    return call;
  }
}

/**
 * A handle to an actor (Ray's ActorHandle): `handle.method.remote(...)` (a Proxy), or
 * `handle.method('name').remote(...)`.
 */
export class ActorHandle {
  constructor(client, actorId, className = null, name = null) {
    this._client = client;
    this.actorId = actorId;
    this.className = className;
    this.name = name;
    this._queue = null; // the last call made through this handle
    return new Proxy(this, {
      get(target, prop, receiver) {
        if (typeof prop !== 'string' || prop in target || prop.startsWith('_') ||
            prop === 'then') {
          return Reflect.get(target, prop, receiver);
        }
        return new ActorMethod(target, prop);
      },
    });
  }

  method(name) { return new ActorMethod(this, name); }

  /** The actor's state as rayd reports it. */
  info() { return this._client._json('GET', '/v1/actors/' + enc(this.actorId)); }

  toJSON() { return { $actor: this.actorId, class: this.className }; }

  toString() { return `ActorHandle(${this.className ? this.className + ', ' : ''}${this.actorId})`; }
}

/** An actor class (Ray's ActorClass): .remote(...args) creates an actor. */
export class ActorClass {
  constructor(client, name, options = {}, ready = null) {
    this._client = client;
    this.name = name;
    this._options = options;
    this._ready = ready;
  }

  /** name, getIfExists, maxRestarts, maxPendingCalls. */
  options(options) {
    return new ActorClass(this._client, this.name,
      { ...this._options, ...mapOptions(options, ACTOR_OPTIONS, 'actor') }, this._ready);
  }

  /** Creates the actor (or, with name and getIfExists, finds it); resolves to a handle. */
  async remote(...args) {
    if (this._ready) this.name = await this._ready;
    const [a, kw] = splitArgs(args);
    return this._client._createActor(this.name, await settle(a), await settle(kw), this._options);
  }
}

// Resolves promises (of refs, say) inside arguments, at any depth of arrays and plain
// objects (a cycle is left as it is: encoding reports it).
async function settle(v, seen = new WeakSet()) {
  if (v && typeof v.then === 'function') return settle(await v, seen);
  if (v && typeof v === 'object') {
    if (seen.has(v)) return v;
    seen.add(v);
  }
  if (Array.isArray(v)) {
    let changed = false;
    const out = await Promise.all(v.map(async (x) => {
      const y = await settle(x, seen);
      if (y !== x) changed = true;
      return y;
    }));
    return changed ? out : v;
  }
  if (v && typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
    let changed = false;
    const out = {};
    for (const [k, x] of Object.entries(v)) {
      out[k] = await settle(x, seen);
      if (out[k] !== x) changed = true;
    }
    return changed ? out : v;
  }
  return v;
}

function enc(segment) {
  return encodeURIComponent(segment);
}

function num(x) {
  return String(Math.round(x * 1000) / 1000);
}

function uuid() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const b = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') c.getRandomValues(b);
  else for (let i = 0; i < 16; i++) b[i] = Math.floor(Math.random() * 256);
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function isJson(ct) {
  const t = (ct || '').split(';')[0].trim().toLowerCase();
  return t === 'application/json' || t.endsWith('+json');
}

function env(name) {
  return typeof process !== 'undefined' && process.env ? process.env[name] : undefined;
}

// ---- the client -----------------------------------------------------------------------------

/** A whole answer. */
class Response {
  constructor(status, headers, body, url) {
    this.status = status;
    this.headers = headers; // a Headers
    this.body = body; // Uint8Array
    this.url = url;
  }

  get contentType() { return this.headers.get('content-type') || ''; }

  get requestId() { return this.headers.get('x-request-id'); }

  text() { return new TextDecoder().decode(this.body); }

  notRayd(why) {
    const snippet = this.text().slice(0, 200).trim();
    return new ProtocolError(`${this.url} answered something rayd never answers (${why}): ` +
      `HTTP ${this.status}, Content-Type ${JSON.stringify(this.contentType || '(none)')}` +
      `${snippet ? ', body ' + JSON.stringify(snippet) : ''}. Is rayd listening at that address?`);
  }

  error() {
    if ((this.contentType.split(';')[0].trim().toLowerCase()) === 'application/problem+json') {
      let doc = null;
      try { doc = JSON.parse(this.text()); } catch { /* below */ }
      if (doc && typeof doc.title === 'string') return RaydError.fromProblem(doc, this.requestId);
    }
    return this.notRayd('an error without a problem+json body');
  }
}

/** A connection to one rayd. */
export class Client {
  /**
   * @param {string} [address] default RAYD_ADDRESS, else http://localhost:8080
   * @param {object} [opts] token, timeout (seconds beyond any wait, default 30), retries
   *   (default 3), idempotencyKeys (default true), headers, fetch (an implementation)
   */
  constructor(address, opts = {}) {
    address = address || env('RAYD_ADDRESS') || 'http://localhost:8080';
    if (!address.includes('://')) address = 'http://' + address;
    let u;
    try { u = new URL(address); } catch { u = null; }
    if (!u || !['http:', 'https:'].includes(u.protocol)) {
      throw new TypeError(`rayd address must be http://host:port or https://host:port, got ${JSON.stringify(address)}`);
    }
    this.address = address.replace(/\/+$/, '');
    const token = opts.token ?? env('RAYD_API_TOKEN');
    this.timeout = opts.timeout ?? 30;
    this.retries = opts.retries ?? 3;
    this._idempotencyKeys = opts.idempotencyKeys ?? true;
    this._fetch = opts.fetch ?? globalThis.fetch.bind(globalThis);
    this._headers = { Accept: 'application/json, */*', ...(opts.headers || {}) };
    if (token) this._headers.Authorization = 'Bearer ' + token;
    this._embedded = null;
    // Sessions (Rayd-Session, tying this client's objects, tasks and actors to a lease rayd
    // frees when the client goes) do not exist in rayd yet. When they do, the client opens
    // one in connect() and adds its header in _request(); close() ends it.
  }

  // ---- plumbing -------------------------------------------------------------------------

  _ref = (id) => new ObjectRef(id);

  _reviver = (key, v) => {
    if (v && typeof v === 'object' && !Array.isArray(v)) {
      const keys = Object.keys(v);
      if (keys.length === 1 && typeof v.$ref === 'string') return new ObjectRef(v.$ref);
      if (typeof v.$bytes === 'string' &&
          (keys.length === 1 || (keys.length === 2 && 'content_type' in v))) {
        return fromBase64(v.$bytes);
      }
      if (typeof v.$actor === 'string' &&
          (keys.length === 1 || (keys.length === 2 && 'class' in v))) {
        return new ActorHandle(this, v.$actor, v.class ?? null);
      }
    }
    return v;
  };

  /** Parses JSON text with rayd's conventions ($ref, $bytes, $actor). */
  _parse(text) {
    return JSON.parse(text, this._reviver);
  }

  /**
   * One request, retried when that is safe: after a network failure when the request is a
   * read, a PUT or DELETE, or a POST carrying an Idempotency-Key; after 429/503 with
   * Retry-After (nothing was done). Resolves to the whole answer.
   */
  async _request(method, path, body = null, {
    contentType = 'application/json', idempotent = false, safe = null, wait = 0, headers = null,
  } = {}) {
    const h = { ...this._headers };
    const ctx = als && als.getStore();
    if (ctx) Object.assign(h, ctx);
    if (headers) Object.assign(h, headers);
    if (body !== null) h['Content-Type'] = contentType;
    if (idempotent && this._idempotencyKeys) h['Idempotency-Key'] = uuid();
    if (safe === null) safe = method !== 'POST' || 'Idempotency-Key' in h;
    const url = this.address + path;
    for (let attempt = 0; ; attempt++) {
      const ac = new AbortController();
      const timer = setTimeout(() => ac.abort(), (this.timeout + wait) * 1000);
      let res;
      try {
        res = await this._fetch(url, { method, headers: h, body, signal: ac.signal });
        const data = new Uint8Array(await res.arrayBuffer());
        res = new Response(res.status, res.headers, data, url);
      } catch (e) {
        if (attempt < this.retries && safe) {
          await sleep(Math.min(2000, 50 * 2 ** attempt) * (0.5 + Math.random()));
          continue;
        }
        const why = e.cause?.code ?? e.cause?.message ?? e.message;
        throw new RaydConnectionError(`cannot reach rayd at ${this.address} (${method} ${path}): ${why}`,
          { problem: { title: 'ConnectionError' } });
      } finally {
        clearTimeout(timer);
      }
      if ((res.status === 429 || res.status === 503) && attempt < this.retries) {
        const after = Number(res.headers.get('retry-after'));
        if (res.headers.get('retry-after') && Number.isFinite(after)) {
          await sleep(Math.min(after, 5) * 1000 + Math.random() * 50);
          continue;
        }
      }
      if (!res.headers.get('x-request-id')) {
        throw res.notRayd('no X-Request-Id header, which rayd sets on every answer');
      }
      return res;
    }
  }

  async _json(method, path, payload = null, { ok = [200, 201, 202], revive = false, ...kw } = {}) {
    const body = payload === null ? null : encode(payload);
    const res = await this._request(method, path, body, kw);
    if (!ok.includes(res.status)) throw res.error();
    if (!res.body.length) return null;
    if (!isJson(res.contentType)) throw res.notRayd('a JSON body was expected');
    try {
      return revive ? this._parse(res.text()) : JSON.parse(res.text());
    } catch {
      throw res.notRayd('the JSON body does not parse');
    }
  }

  _value(res) {
    if (!isJson(res.contentType)) return res.body;
    try {
      return this._parse(res.text());
    } catch {
      throw res.notRayd('the JSON body does not parse');
    }
  }

  /** GET /healthz: rayd answers 200 {"status":"ok"} with an X-Request-Id. */
  async check() {
    const res = await this._request('GET', '/healthz', null, { safe: true });
    let doc = null;
    try { doc = JSON.parse(res.text()); } catch { /* below */ }
    if (res.status !== 200 || !doc || doc.status !== 'ok') {
      throw res.notRayd('GET /healthz did not answer 200 {"status": "ok"}');
    }
    return this;
  }

  // ---- objects -----------------------------------------------------------------------------

  /**
   * Stores a value (ray.put): a Uint8Array/ArrayBuffer as its bytes (contentType, default
   * application/octet-stream), anything else as JSON. Resolves to its ObjectRef.
   */
  async put(value, { contentType = null, ttl = null } = {}) {
    let body;
    let ct;
    value = await settle(value);
    if (value instanceof Uint8Array || value instanceof ArrayBuffer) {
      body = value instanceof ArrayBuffer ? new Uint8Array(value) : value;
      ct = contentType ?? 'application/octet-stream';
    } else {
      body = encode(value);
      ct = contentType ?? 'application/json';
    }
    const path = '/v1/objects' + (ttl !== null ? `?ttl=${ttl}` : '');
    const res = await this._request('POST', path, body, { contentType: ct, idempotent: true });
    if (res.status !== 201) throw res.error();
    return new ObjectRef(JSON.parse(res.text()).ref);
  }

  /**
   * The value of a ref, or the values of an array of refs in order (ray.get). Refs may be
   * promises. Waits up to `timeout` seconds (default: as long as it takes); an object still
   * pending then throws GetTimeoutError, a stored error its error (TaskError, ...). JSON
   * objects come back parsed, others as Uint8Array.
   */
  async get(refs, { timeout = null } = {}) {
    refs = await settle(refs);
    const deadline = timeout === null ? null : Date.now() + Math.max(0, timeout) * 1000;
    if (refs instanceof ObjectRef) return this._getOne(refs, deadline, timeout);
    if (!Array.isArray(refs)) throw new TypeError(`get takes an ObjectRef or an array of them, got ${describe(refs)}`);
    const ids = refs.map((r) => {
      if (!(r instanceof ObjectRef)) throw new TypeError(`get takes ObjectRefs, got ${describe(r)}`);
      return r.id;
    });
    if (!ids.length) return [];
    const values = new Array(ids.length);
    let todo = ids.map((_, i) => i);
    for (;;) {
      const wait = remaining(deadline);
      const doc = await this._json('POST', '/v1/objects/get',
        { refs: todo.map((i) => ids[i]), timeout: wait }, { ok: [200], revive: true, safe: true, wait });
      const entries = doc && doc.objects;
      if (!Array.isArray(entries) || entries.length !== todo.length) {
        throw new ProtocolError(`${this.address} answered POST /v1/objects/get with a wrong number of entries`);
      }
      const pending = [];
      todo.forEach((i, k) => {
        const e = entries[k];
        if (e.state === 'ready') {
          // The answer was revived as it was parsed: a binary object's entry kept its
          // $bytes (it has other members), so decode it here.
          values[i] = '$bytes' in e ? fromBase64(e.$bytes) : e.value;
        } else if (e.state === 'error' || e.state === 'lost') {
          throw RaydError.fromProblem(e.error || { title: 'ObjectLost' });
        } else {
          pending.push(i);
        }
      });
      if (!pending.length) return values;
      todo = pending;
      if (deadline !== null && Date.now() >= deadline) {
        throw new GetTimeoutError(`${pending.length} of ${ids.length} objects still pending after ${timeout}s (first: ${ids[pending[0]]})`,
          { problem: { title: 'GetTimeout', ref: ids[pending[0]] } });
      }
    }
  }

  async _getOne(ref, deadline, timeout) {
    const path = '/v1/objects/' + enc(ref.id);
    for (;;) {
      const wait = remaining(deadline);
      const res = await this._request('GET', `${path}?timeout=${num(wait)}`, null, { wait });
      if (res.status === 200) return this._value(res);
      if (res.status !== 202) throw res.error();
      if (deadline !== null && Date.now() >= deadline) {
        throw new GetTimeoutError(`object ${ref.id} still pending after ${timeout}s`,
          { problem: { title: 'GetTimeout', ref: ref.id }, requestId: res.requestId });
      }
    }
  }

  /**
   * ray.wait: resolves to [ready, notReady] once numReturns refs are resolved (a stored
   * error counts) or timeout seconds passed (default: no limit). Both keep input order.
   */
  async wait(refs, { numReturns = 1, timeout = null } = {}) {
    refs = await settle(refs);
    const ids = refs.map((r) => {
      if (!(r instanceof ObjectRef)) throw new TypeError(`wait takes ObjectRefs, got ${describe(r)}`);
      return r.id;
    });
    if (new Set(ids).size !== ids.length) throw new RangeError('wait requires an array of unique refs');
    if (!ids.length) return [[], []];
    if (!(numReturns >= 1 && numReturns <= ids.length)) {
      throw new RangeError(`numReturns must be between 1 and the number of refs (${ids.length})`);
    }
    const byId = new Map(refs.map((r) => [r.id, r]));
    const deadline = timeout === null ? null : Date.now() + Math.max(0, timeout) * 1000;
    for (;;) {
      const wait = remaining(deadline);
      const doc = await this._json('POST', '/v1/wait', { refs: ids, num_returns: numReturns, timeout: wait },
        { ok: [200], safe: true, wait });
      if (doc.ready.length >= numReturns || (deadline !== null && Date.now() >= deadline)) {
        return [doc.ready.map((i) => byId.get(i)), doc.not_ready.map((i) => byId.get(i))];
      }
    }
  }

  /** Frees objects now (later gets throw ObjectLostError). Already gone: no error. */
  async free(refs) {
    refs = await settle(refs);
    for (const r of Array.isArray(refs) ? refs : [refs]) {
      const res = await this._request('DELETE', '/v1/objects/' + enc(r.id));
      if (res.status !== 204 && res.status !== 410) throw res.error();
    }
  }

  /** An ObjectRef for a ref id obtained elsewhere. */
  ref(id) { return new ObjectRef(id); }

  // ---- tasks ---------------------------------------------------------------------------------

  /** The function `name` (built-in, module or registered). */
  function(name) { return new RemoteFunction(this, name); }

  /** Every function tasks can call. */
  async functions() { return (await this._json('GET', '/v1/functions')).functions; }

  _receiptRefs(r) {
    if (r.refs) return r.refs.map((id) => new ObjectRef(id, r.task_id));
    return new ObjectRef(r.ref, r.task_id);
  }

  _encodeCall(what, spec, args, kw) {
    try {
      return JSON.stringify(spec, replacer);
    } catch {
      args.forEach((a, i) => encode(a, `argument ${i} of ${what} (${describe(a)})`));
      for (const [k, a] of Object.entries(kw || {})) encode(a, `argument ${k}= of ${what} (${describe(a)})`);
      return encode(spec);
    }
  }

  async _submitOne(call) {
    const body = this._encodeCall(call.function.name, call.spec(), call.args, call.kwargs);
    const res = await this._request('POST', '/v1/tasks', body, { idempotent: true });
    if (res.status !== 202) throw res.error();
    return this._receiptRefs(JSON.parse(res.text()));
  }

  /**
   * Submits many tasks in as few requests as possible (POST /v1/tasks/batch, 10,000 at a
   * time, each batch all or nothing); resolves to their refs in order.
   * `await rd.submit(range.map((i) => add.bind(i, 1)))`
   */
  async submit(calls) {
    calls = Array.from(calls);
    for (const c of calls) {
      if (!(c instanceof TaskCall)) throw new TypeError(`submit takes calls made with fn.bind(...), got ${describe(c)}`);
    }
    const out = [];
    for (let i = 0; i < calls.length; i += BATCH_MAX) {
      const chunk = calls.slice(i, i + BATCH_MAX);
      const specs = await Promise.all(chunk.map(async (c) => {
        const s = c.spec();
        s.args = await settle(s.args);
        if (s.kwargs) s.kwargs = await settle(s.kwargs);
        return s;
      }));
      let body;
      try {
        body = JSON.stringify({ tasks: specs }, replacer);
      } catch {
        chunk.forEach((c, j) => this._encodeCall(`call ${i + j} (${c.function.name})`, specs[j], specs[j].args, specs[j].kwargs));
        body = encode({ tasks: specs });
      }
      const res = await this._request('POST', '/v1/tasks/batch', body, { idempotent: true });
      if (res.status !== 202) throw res.error();
      for (const r of JSON.parse(res.text()).tasks) out.push(this._receiptRefs(r));
    }
    return out;
  }

  /**
   * Cancels the task producing `ref` (ray.cancel): one not started never runs, a running
   * one is asked to stop. A task that already ended is left as it is.
   */
  async cancel(ref) {
    ref = await ref;
    if (!(ref instanceof ObjectRef)) throw new TypeError(`cancel takes an ObjectRef, got ${describe(ref)}`);
    if (!ref.taskId) throw new RangeError(`${ref} was not returned by a task this client submitted`);
    const res = await this._request('POST', `/v1/tasks/${enc(ref.taskId)}/cancel`, null, { safe: true });
    if (res.status === 202 || res.status === 409) return;
    throw res.error();
  }

  /** A task's state (GET /v1/tasks/{id}), by id or by one of its refs. */
  async task(refOrId) {
    refOrId = await refOrId;
    const id = refOrId instanceof ObjectRef ? refOrId.taskId : refOrId;
    if (!id) throw new RangeError(`${refOrId} was not returned by a task this client submitted`);
    return this._json('GET', '/v1/tasks/' + enc(id));
  }

  // ---- actors ---------------------------------------------------------------------------------

  /** The actor class `name` (built-in, module or registered). */
  actorClass(name) { return new ActorClass(this, name); }

  async _createActor(cls, args, kw, options) {
    const spec = { class: cls, args };
    if (kw && Object.keys(kw).length) spec.kwargs = kw;
    const opts = { ...options };
    if ('name' in opts) { spec.name = opts.name; delete opts.name; }
    if (opts.get_if_exists) spec.get_if_exists = true;
    delete opts.get_if_exists;
    if (Object.keys(opts).length) spec.options = opts;
    const body = this._encodeCall(cls, spec, args, kw);
    // Not idempotent (no key); with a name and get_if_exists a retry finds the same actor.
    const res = await this._request('POST', '/v1/actors', body, { safe: !!spec.get_if_exists });
    if (res.status !== 200 && res.status !== 201) throw res.error();
    const info = JSON.parse(res.text());
    return new ActorHandle(this, info.actor_id, info.class ?? null, info.name ?? null);
  }

  async _callMethod(actorId, method, args, kw) {
    const spec = { args };
    if (kw && Object.keys(kw).length) spec.kwargs = kw;
    const body = this._encodeCall(method, spec, args, kw);
    const res = await this._request('POST', `/v1/actors/${enc(actorId)}/methods/${enc(method)}`, body,
      { idempotent: true });
    if (res.status !== 202) throw res.error();
    return new ObjectRef(JSON.parse(res.text()).ref);
  }

  /** The live actor named `name` (ray.get_actor); NotFoundError if there is none. */
  async getActor(name) {
    const info = await this._json('GET', '/v1/actors/by-name/' + enc(name), null, { ok: [200] });
    return new ActorHandle(this, info.actor_id, info.class ?? null, info.name ?? null);
  }

  /** Kills an actor (ray.kill): queued calls fail with ActorDiedError. Dead already: fine. */
  async kill(actor) {
    actor = await actor;
    if (!(actor instanceof ActorHandle)) throw new TypeError(`kill takes an ActorHandle, got ${describe(actor)}`);
    const res = await this._request('DELETE', '/v1/actors/' + enc(actor.actorId));
    if (res.status !== 204) throw res.error();
  }

  // ---- your own code (Node.js) ----------------------------------------------------------------

  /**
   * Ray's @ray.remote for a function or class of this program (Node.js only): the first use
   * starts a worker (node:http) in this process, on RAYD_WORKER_HOST:RAYD_WORKER_PORT
   * (default 127.0.0.1 and a free port; RAYD_WORKER_URL if rayd reaches it by another
   * address), and registers it with rayd under a name unique to this process. rayd must be
   * allowed to call it (RAYD_REMOTE_ALLOW). Returns at once; the first .remote() waits for
   * the registration.
   */
  remote(target, options = {}) {
    if (typeof target !== 'function') throw new TypeError('remote takes a function or a class');
    const isClass = /^class[\s{]/.test(Function.prototype.toString.call(target));
    if (!this._embedded) {
      this._embedded = import('./worker.js').then(async ({ Worker }) => {
        const w = new Worker(this, {
          port: Number(env('RAYD_WORKER_PORT') || 0),
          host: env('RAYD_WORKER_HOST') || '127.0.0.1',
          url: env('RAYD_WORKER_URL') || null,
          embedded: true,
        });
        await w.start();
        // A program that never closes its client still takes its registrations away
        // when it is done.
        process.once('beforeExit', () => { this.close().catch(() => {}); });
        return w;
      });
    }
    // Resolves to the registered name; the first .remote() waits for it.
    const ready = this._embedded.then((w) => w._serveUnique(target, isClass));
    ready.catch(() => {}); // reported by the first .remote()
    if (isClass) {
      return new ActorClass(this, null, mapOptions(options, ACTOR_OPTIONS, 'actor'), ready);
    }
    return new RemoteFunction(this, null, mapOptions(options, TASK_OPTIONS, 'task'), ready);
  }

  /** A Worker (worker.js, Node.js only) for this client: see worker.js. */
  async worker(opts = {}) {
    const { Worker } = await import('./worker.js');
    return new Worker(this, opts);
  }

  // ---- the rest -------------------------------------------------------------------------------

  /** rayd's /v1/status. */
  status() { return this._json('GET', '/v1/status'); }

  /** Stops the in-process worker, if any (removing its registrations). */
  async close() {
    const w = this._embedded;
    this._embedded = null;
    if (w) await (await w).stop({ unregister: true });
  }

  /** Ray's name for close(). */
  shutdown() { return this.close(); }

  toString() { return `rayd.Client(${this.address})`; }
}

function remaining(deadline) {
  if (deadline === null) return MAX_WAIT;
  return Math.round(Math.min(MAX_WAIT, Math.max(0, (deadline - Date.now()) / 1000)) * 1000) / 1000;
}

/**
 * Connects to a rayd and checks (GET /healthz) that it is one, so that a wrong address
 * fails here with an error naming it. Options: token (default RAYD_API_TOKEN), timeout
 * (seconds beyond any wait, default 30), retries (default 3), idempotencyKeys (default
 * true), headers, check (default true), fetch.
 * @returns {Promise<Client>}
 */
export async function connect(address, opts = {}) {
  const c = new Client(address, opts);
  if (opts.check ?? true) await c.check();
  return c;
}
