// The JavaScript client against a live rayd: objects, tasks, actors, errors, the wire.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';

import * as rayd from '../index.js';
import { freePort, startProxy, startRayd } from './support.mjs';

let srv;
let rd;

before(async () => {
  srv = await startRayd({ args: ['--workers', '4'] });
  rd = await rayd.connect(srv.url);
});

after(async () => {
  await rd.close();
  await srv.stop();
});

const submitted = async () => (await rd.status()).tasks.submitted;

describe('objects', () => {
  test('put and get JSON; bytes stay bytes', async () => {
    const value = { a: 1, b: [1.5, 'x', null, true], c: { d: 'é' } };
    assert.deepEqual(await rd.get(rd.put(value)), value);
    const data = new Uint8Array(256).map((_, i) => i);
    const got = await rd.get(rd.put(data));
    assert.ok(got instanceof Uint8Array);
    assert.deepEqual([...got], [...data]);
    assert.deepEqual([...await rd.get(rd.put(Buffer.from('<p>'), { contentType: 'text/html' }))], [...Buffer.from('<p>')]);
    const inside = await rd.get(rd.put({ blob: new Uint8Array([0, 255]) }));
    assert.deepEqual([...inside.blob], [0, 255]);
  });

  test('get of a list keeps order and duplicates; nested refs come back as refs', async () => {
    const a = await rd.put(1);
    const b = await rd.put(new Uint8Array([2]));
    const [x, y, z] = await rd.get([a, b, a]);
    assert.equal(x, 1);
    assert.deepEqual([...y], [2]);
    assert.equal(z, 1);
    const outer = await rd.get(rd.put({ r: a }));
    assert.ok(outer.r instanceof rayd.ObjectRef);
    assert.equal(outer.r.id, a.id);
    assert.deepEqual(await rd.get([]), []);
  });

  test('a pending object throws GetTimeoutError, never a placeholder', async () => {
    const ref = await rd.function('sleep').remote(30);
    const t0 = Date.now();
    await assert.rejects(rd.get(ref, { timeout: 0.2 }), (e) => e instanceof rayd.GetTimeoutError && e.ref === ref.id);
    assert.ok(Date.now() - t0 >= 200);
    await assert.rejects(rd.get(ref, { timeout: 0 }), rayd.GetTimeoutError);
    await assert.rejects(rd.get([rd.put(1), ref], { timeout: 0.1 }), rayd.GetTimeoutError);
    await rd.cancel(ref);
  });

  test('lost and unknown objects', async () => {
    const ref = await rd.put('x');
    await rd.free(ref);
    await assert.rejects(rd.get(ref), (e) => e instanceof rayd.ObjectLostError && e.status === 410);
    await assert.rejects(rd.get([ref]), rayd.ObjectLostError);
    await assert.rejects(rd.get(rd.ref('o_no_such_object')), rayd.NotFoundError);
  });

  test('wait', async () => {
    const fast = await Promise.all([0, 1, 2].map((i) => rd.put(i)));
    const slow = await rd.function('sleep').remote(30);
    let [ready, notReady] = await rd.wait([slow, ...fast], { numReturns: 2, timeout: 5 });
    assert.deepEqual(ready.map((r) => r.id), [fast[0].id, fast[1].id]);
    assert.deepEqual(notReady.map((r) => r.id), [slow.id, fast[2].id]);
    [ready, notReady] = await rd.wait([slow, fast[0]], { numReturns: 2, timeout: 0.2 });
    assert.deepEqual([ready.length, notReady.length], [1, 1]);
    await assert.rejects(rd.wait([fast[0], fast[0]]), RangeError);
    await rd.cancel(slow);
  });
});

describe('tasks', () => {
  test('remote, options, kwargs, several returns', async () => {
    const add = rd.function('add');
    assert.equal(await rd.get(add.remote(1, 2)), 3);
    assert.equal(await rd.get(add.options({ maxRetries: 0, name: 'x' }).remote(2, 5)), 7);
    assert.deepEqual(await rd.get(rd.function('sort').remote([3, 1, 2], rayd.kwargs({ reverse: true }))), [3, 2, 1]);
    const refs = await rd.function('echo').options({ numReturns: 2 }).remote([1, 2]);
    assert.deepEqual(await rd.get(refs), [1, 2]);
    assert.throws(() => add.options({ numCpus: 1 }), TypeError);
  });

  test('refs and promises of refs as arguments', async () => {
    const add = rd.function('add');
    assert.equal(await rd.get(rd.function('mul').remote(add.remote(1, 2), 10)), 30);
    assert.equal(await rd.get(rd.function('len').remote(rd.put(new Uint8Array(4)))), 4);
  });

  test('an error through a chain of three tasks', async () => {
    const div = rd.function('div');
    const add = rd.function('add');
    const r1 = await div.remote(1, 0);
    const r3 = await add.remote(add.remote(r1, 1), 1);
    const e = await rd.get(r3).catch((x) => x);
    assert.ok(e instanceof rayd.TaskError);
    assert.ok(e instanceof rayd.RayTaskError);
    const chain = e.chain();
    assert.equal(chain.length, 3);
    assert.ok(chain.every((x) => x instanceof rayd.TaskError));
    assert.equal(chain[2].detail, 'division by zero');
    assert.equal(chain[2].taskId, r1.taskId);
    assert.equal(chain[2].function, 'div');
    assert.equal(e.cause, chain[1]);
    assert.equal(e.status, 424);
    assert.equal(e.ref, r3.id);
    assert.match(e.describe(), /caused by TaskError: division by zero/);
    await assert.rejects(rd.get([rd.put(1), r3]), rayd.TaskError);
  });

  test('cancel', async () => {
    const ref = await rd.function('sleep').remote(30);
    await rd.cancel(ref);
    await assert.rejects(rd.get(ref, { timeout: 10 }), rayd.TaskCancelledError);
    const done = await rd.function('add').remote(1, 1);
    await rd.get(done);
    await rd.cancel(done); // ended: nothing to do
    await assert.rejects(rd.cancel(rd.put(1)), RangeError);
  });

  test('unknown function', async () => {
    await assert.rejects(rd.function('no_such_function').remote(), rayd.NotFoundError);
  });

  test('batch submit of 10,001 tasks', async () => {
    const add = rd.function('add');
    const calls = Array.from({ length: 10001 }, (_, i) => add.bind(i, 1));
    const refs = await rd.submit(calls);
    assert.equal(refs.length, 10001);
    const values = await rd.get(refs, { timeout: 60 });
    assert.deepEqual(values, Array.from({ length: 10001 }, (_, i) => i + 1));
  });
});

describe('actors', () => {
  test('Counter named, getIfExists, getActor, kill', async () => {
    const Counter = rd.actorClass('Counter');
    const c = await Counter.options({ name: 'hits', getIfExists: true }).remote(10);
    const again = await Counter.options({ name: 'hits', getIfExists: true }).remote(99);
    assert.equal(again.actorId, c.actorId);
    await c.incr.remote(5);
    assert.equal(await rd.get(c.get.remote()), 15);
    assert.equal((await rd.getActor('hits')).actorId, c.actorId);
    assert.equal((await c.info()).state, 'ALIVE');
    await assert.rejects(Counter.options({ name: 'hits' }).remote(), rayd.ConflictError);
    await rd.kill(c);
    await assert.rejects(c.get.remote(), rayd.ActorDiedError);
    await assert.rejects(rd.getActor('hits'), rayd.NotFoundError);
    await rd.kill(c);
  });

  test('queued calls die with the actor; method errors', async () => {
    const q = await rd.actorClass('Queue').remote();
    const nap = await rd.function('sleep').remote(30);
    const blocked = await q.put.remote(nap);
    const queued = await q.size.remote();
    await rd.kill(q);
    await assert.rejects(rd.get(blocked, { timeout: 10 }), rayd.ActorDiedError);
    await assert.rejects(rd.get(queued, { timeout: 10 }), rayd.ActorDiedError);
    await rd.cancel(nap);
    const q2 = await rd.actorClass('Queue').remote();
    await assert.rejects(rd.get(q2.get.remote()), (e) => e instanceof rayd.TaskError && e.actorId === q2.actorId);
    await assert.rejects(q2.noSuchMethod.remote(), rayd.NotFoundError);
  });

  test('a handle passed through a task comes back as a handle', async () => {
    const c = await rd.actorClass('Counter').remote();
    const [h] = await rd.get(rd.function('identity').remote([c]));
    assert.ok(h instanceof rayd.ActorHandle);
    assert.equal(await rd.get(h.incr.remote(2)), 2);
  });
});

describe('bad input', () => {
  test('problem titles become their classes', () => {
    // A cluster node without the module answers this body (tests/cluster/test_cluster_modules.c).
    const nodes = [{ tag: 'b', url: 'http://10.0.0.2:8080', module: 'text' }];
    const e = rayd.RaydError.fromProblem({
      type: '/problems/ModuleNotLoaded', title: 'ModuleNotLoaded', status: 409,
      detail: 'upper is provided by module text, not loaded on this node',
      function: 'upper', module: 'text', node: 'a', nodes,
    });
    assert.ok(e instanceof rayd.ModuleNotLoadedError);
    assert.ok(e instanceof rayd.ConflictError);
    assert.deepEqual(e.problem.nodes, nodes);
    const other = rayd.RaydError.fromProblem({ title: 'SomethingNew', status: 409 });
    assert.equal(other.constructor, rayd.APIError);
  });

  test('a value JSON cannot hold throws before anything is sent', async () => {
    const n = await submitted();
    const add = rd.function('add');
    for (const bad of [() => 1, Symbol('s'), 10n, NaN, Infinity, new Map(), new Set([1])]) {
      await assert.rejects(add.remote(1, bad), (e) => e instanceof rayd.SerializationError && /argument 1 of add/.test(e.message));
    }
    const circular = {};
    circular.self = circular;
    await assert.rejects(rd.put(circular), rayd.SerializationError);
    await assert.rejects(rd.submit([add.bind(1, 2), add.bind(() => 1, 2)]), rayd.SerializationError);
    assert.equal(await submitted(), n);
  });

  test('a server that is not rayd: a clear error naming the URL', async () => {
    const html = http.createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<html><body>Welcome to nginx!</body></html>');
    });
    await new Promise((r) => html.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${html.address().port}`;
    try {
      await assert.rejects(rayd.connect(url), (e) => e instanceof rayd.ProtocolError &&
        e.message.includes(url) && e.message.includes('text/html'));
      const unchecked = await rayd.connect(url, { check: false });
      await assert.rejects(unchecked.get(unchecked.ref('abc')),
        (e) => e instanceof rayd.ProtocolError && e.message.includes(url + '/v1/objects/abc'));
    } finally {
      html.closeAllConnections?.();
      await new Promise((r) => html.close(r));
    }
  });

  test('nobody listening', async () => {
    const url = `http://127.0.0.1:${await freePort()}`;
    await assert.rejects(rayd.connect(url, { retries: 1 }),
      (e) => e instanceof rayd.RaydConnectionError && e.message.includes(url));
    assert.throws(() => new rayd.Client('ftp://example.com'), TypeError);
  });
});

describe('the wire', () => {
  test('keep-alive: sequential calls share one connection', async () => {
    const proxy = await startProxy(srv.port);
    try {
      const c = await rayd.connect(proxy.url);
      const add = c.function('add');
      for (let i = 0; i < 30; i++) assert.equal(await c.get(add.remote(i, 1)), i + 1);
      assert.equal(proxy.requests.length, 61);
      // fetch (undici) opens a second connection while the first answer is being released,
      // then reuses both: 61 requests, 2 connections.
      assert.ok(proxy.connections <= 2, `${proxy.connections} connections`);
    } finally {
      await proxy.close();
    }
  });

  test('Idempotency-Key: a POST whose answer was lost is retried once, run once', async () => {
    const proxy = await startProxy(srv.port);
    try {
      const c = await rayd.connect(proxy.url);
      const n = await submitted();
      proxy.dropAnswer((r) => r.method === 'POST' && r.path === '/v1/tasks');
      const ref = await c.function('add').remote(20, 22);
      assert.equal(await c.get(ref), 42);
      const posts = proxy.requests.filter((r) => r.path === '/v1/tasks');
      assert.equal(posts.length, 2);
      assert.ok(posts[0].headers['idempotency-key']);
      assert.equal(posts[0].headers['idempotency-key'], posts[1].headers['idempotency-key']);
      assert.equal(await submitted(), n + 1);
      const c2 = await rayd.connect(proxy.url, { idempotencyKeys: false });
      proxy.dropAnswer((r) => r.method === 'POST' && r.path === '/v1/tasks');
      await assert.rejects(c2.function('add').remote(1, 1), rayd.RaydConnectionError);
    } finally {
      await proxy.close();
    }
  });

  test('X-Request-Id and traceparent passed through', async () => {
    const proxy = await startProxy(srv.port);
    const tp = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    try {
      const c = await rayd.connect(proxy.url);
      await rayd.requestContext({ requestId: 'req-js-1', traceparent: tp }, async () => {
        await c.get(c.function('add').remote(1, 1));
      });
      const sent = proxy.requests.filter((r) => r.path === '/v1/tasks').at(-1);
      assert.equal(sent.headers['x-request-id'], 'req-js-1');
      assert.equal(sent.headers.traceparent, tp);
      await srv.waitLog((d) => d.request_id === 'req-js-1' && d.method === 'POST');
      await c.get(c.function('add').remote(1, 1));
      assert.equal(proxy.requests.at(-1).headers.traceparent, undefined);
    } finally {
      await proxy.close();
    }
  });

  test('a token', async () => {
    const s = await startRayd({ env: { RAYD_API_TOKEN: 's3cret' } });
    try {
      await assert.rejects((await rayd.connect(s.url)).put(1), rayd.UnauthorizedError);
      const c = await rayd.connect(s.url, { token: 's3cret' });
      assert.equal(await c.get(c.put(5)), 5);
    } finally {
      await s.stop();
    }
  });
});
