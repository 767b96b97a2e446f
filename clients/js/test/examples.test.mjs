// examples/node/ run as a user would run them, against a live rayd: the quickstart's
// output, and the worker registered and called through rayd.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';

import * as rayd from '../index.js';
import { ROOT, freePort, startRayd } from './support.mjs';

const EXAMPLES = path.join(ROOT, 'examples', 'node');
let srv;
let port;

before(async () => {
  port = await freePort();
  srv = await startRayd({ remoteAllow: [`http://127.0.0.1:${port}`] });
});

after(async () => { await srv.stop(); });

test('quickstart', async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [path.join(EXAMPLES, 'quickstart.mjs')],
    { env: { ...process.env, RAYD_ADDRESS: srv.url }, timeout: 120000 });
  const lines = stdout.trim().split('\n');
  assert.deepEqual(lines.slice(0, 3), ['sum of squares: 328350', 'ready: 10 not ready: 90', 'counter: 1000']);
  assert.match(lines[3], /^error: .*division by zero$/);
});

test('wordcount worker', async () => {
  const proc = spawn(process.execPath, [path.join(EXAMPLES, 'wordcount_worker.mjs'), String(port)],
    { env: { ...process.env, RAYD_ADDRESS: srv.url }, stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    // serving once its start-up line is printed (after it registered with rayd)
    const line = await new Promise((resolve, reject) => {
      let out = '';
      proc.stdout.on('data', (d) => {
        out += d;
        if (out.includes('\n')) resolve(out);
      });
      proc.on('exit', () => reject(new Error('the worker exited: ' + out)));
    });
    assert.match(line, /rayd worker serving 1 function\(s\) and 1 class\(es\)/);
    const rd = await rayd.connect(srv.url);
    assert.equal(await rd.get(rd.function('wordcount').remote('the cat and the hat')), 5);
    const acct = await rd.actorClass('Account').remote(100);
    await acct.deposit.remote(50);
    assert.equal(await rd.get(acct.withdraw.remote(30)), 120);
    const e = await rd.get(acct.withdraw.remote(1000)).catch((x) => x);
    assert.ok(e instanceof rayd.TaskError);
    assert.equal(e.cause.remoteTitle, 'RangeError');
  } finally {
    const exited = new Promise((r) => proc.once('exit', (code) => r(code)));
    proc.kill('SIGINT');
    assert.equal(await exited, 0);
  }
});
