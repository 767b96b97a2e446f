// The worker side end to end: JavaScript functions and classes served by Worker
// (node:http), registered with a real rayd allowed to call them, called through rayd.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import * as rayd from '../index.js';
import { Worker, currentCall } from '../worker.js';
import { freePort, startRayd } from './support.mjs';

let srv;
let rd;
let worker;
let embedPort;
const calls = {};
const count = (n) => { calls[n] = (calls[n] || 0) + 1; };
const fns = {};

before(async () => {
  const port = await freePort();
  embedPort = await freePort();
  srv = await startRayd({ args: ['--workers', '2'],
    remoteAllow: [`http://127.0.0.1:${port}`, `http://127.0.0.1:${embedPort}`] });
  rd = await rayd.connect(srv.url);
  worker = new Worker(rd, { port, log: () => {} });
  fns.wordcount = worker.function(function wordcount(text) { count('wordcount'); return text.split(/\s+/).length; });
  fns.describe = worker.function(function describe(...args) {
    return args.map((a) => (a instanceof Uint8Array ? ['bytes', a.length] : [typeof a, a]));
  });
  fns.reverse = worker.function(function reverse(data) { return Uint8Array.from(data).reverse(); });
  fns.deref = worker.function(async function deref(box) { return (await rd.get(box[0])) * 2; });
  fns.bump = worker.function(async function bump(counter, n) { return rd.get(counter.incr.remote(n)); });
  fns.divide = worker.function(function divide(a, b) {
    count('divide');
    if (b === 0) throw new RangeError('division by zero');
    return a / b;
  });
  fns.flaky = worker.function(function flaky(succeedAt) {
    const { attempt } = currentCall();
    if (attempt < succeedAt) throw new rayd.RetryableError(`attempt ${attempt} is too early`);
    return attempt;
  });
  fns.whoami = worker.function(async function whoami() {
    const call = currentCall();
    await rd.get(rd.function('add').remote(1, 1)); // carries the same X-Request-Id
    return { requestId: call.requestId, taskId: call.taskId };
  });
  fns.Account = worker.actorClass(class Account {
    constructor(balance = 0) { this.balance = balance; this.history = []; }

    deposit(n) { this.balance += n; this.history.push(n); return this.balance; }

    withdraw(n) {
      if (n > this.balance) throw new RangeError(`cannot withdraw ${n}: the balance is ${this.balance}`);
      this.balance -= n;
      this.history.push(-n);
      return this.balance;
    }

    state() { return { balance: this.balance, history: this.history }; }
  });
  await worker.start();
});

after(async () => {
  await worker.stop({ unregister: true });
  await rd.close();
  await srv.stop();
});

describe('functions', () => {
  test('registered and called', async () => {
    const f = (await rd.functions()).find((x) => x.name === 'wordcount');
    assert.equal(f.kind, 'remote');
    assert.equal(f.url, `${worker.url}/functions/wordcount`);
    assert.equal(await rd.get(fns.wordcount.remote('the cat and the hat')), 5);
    assert.equal(await rd.get(rd.function('wordcount').remote('a b')), 2);
  });

  test('arguments decoded, bytes both ways, nested refs, handles', async () => {
    const blob = await rd.put(new Uint8Array([0, 1, 2]));
    assert.deepEqual(await rd.get(fns.describe.remote(1, 's', new Uint8Array(3), blob)),
      [['number', 1], ['string', 's'], ['bytes', 3], ['bytes', 3]]);
    assert.deepEqual([...await rd.get(fns.reverse.remote(new Uint8Array([1, 2, 3])))], [3, 2, 1]);
    assert.equal(await rd.get(fns.deref.remote([rd.put(21)])), 42);
    const c = await rd.actorClass('Counter').remote(1);
    assert.equal(await rd.get(fns.bump.remote(c, 4)), 5);
  });

  test('an exception is a TaskError with the cause, not retried', async () => {
    const before = calls.divide || 0;
    const ref = await fns.divide.remote(1, 0);
    const e = await rd.get(ref).catch((x) => x);
    assert.ok(e instanceof rayd.TaskError);
    assert.equal(e.remoteStatus, 500);
    assert.equal(e.cause.remoteTitle, 'RangeError');
    assert.equal(e.cause.exception, 'RangeError');
    assert.equal(e.cause.detail, 'division by zero');
    assert.match(e.traceback, /^RangeError: division by zero\n\s+at divide /);
    assert.doesNotMatch(e.traceback, /worker\.js/); // only the user's frames
    assert.match(e.describe(), /caused by RangeError: division by zero/);
    const info = await rd.task(ref);
    assert.deepEqual([info.state, info.attempts], ['FAILED', 1]);
    assert.equal(calls.divide, before + 1);
  });

  test('RetryableError is retried', async () => {
    const ref = await fns.flaky.remote(3);
    assert.equal(await rd.get(ref, { timeout: 30 }), 3);
    const info = await rd.task(ref);
    assert.deepEqual([info.state, info.attempts], ['FINISHED', 3]);
  });

  test('RetryableError past max_retries', async () => {
    const ref = await fns.flaky.options({ maxRetries: 1 }).remote(10);
    await assert.rejects(rd.get(ref, { timeout: 30 }), rayd.WorkerUnavailableError);
    const info = await rd.task(ref);
    assert.deepEqual([info.state, info.attempts], ['FAILED', 2]);
  });

  test('X-Request-Id reaches the worker and the calls it makes', async () => {
    const ref = await rayd.requestContext({ requestId: 'req-jsw-1' }, () => fns.whoami.remote());
    assert.deepEqual(await rd.get(ref), { requestId: 'req-jsw-1', taskId: ref.taskId });
    await srv.waitLog((d) => d.request_id === 'req-jsw-1' && d.route === '/v1/objects/{ref}');
  });
});

describe('actor classes', () => {
  test('state lives in rayd; a failed call changes nothing', async () => {
    const a = await fns.Account.remote(100);
    await a.deposit.remote(50);
    assert.equal(await rd.get(a.withdraw.remote(30)), 120);
    const e = await rd.get(a.withdraw.remote(1000)).catch((x) => x);
    assert.ok(e instanceof rayd.TaskError);
    assert.equal(e.cause.remoteTitle, 'RangeError');
    assert.deepEqual(await rd.get(a.state.remote()), { balance: 120, history: [50, -30] });
    const unknown = await rd.get(a.nope.remote()).catch((x) => x);
    assert.equal(unknown.cause.remoteTitle, 'AttributeError');
  });
});

describe('client.remote', () => {
  test('functions and classes of this program, served from this process', async () => {
    process.env.RAYD_WORKER_PORT = String(embedPort);
    const c = await rayd.connect(srv.url);
    try {
      const square = c.remote((x) => x * x);
      const Counter = c.remote(class Counter {
        constructor() { this.i = 0; }

        incr(v) { this.i += v; }

        get() { return this.i; }
      });
      assert.deepEqual(await c.get([0, 1, 2, 3].map((i) => square.remote(i))), [0, 1, 4, 9]);
      const k = await Counter.remote();
      for (let i = 0; i < 10; i++) k.incr.remote(1);
      assert.equal(await c.get(k.get.remote()), 10);
      assert.ok((await c.functions()).some((f) => f.name === square.name));
    } finally {
      await c.close();
      delete process.env.RAYD_WORKER_PORT;
    }
  });
});
