// rayd from JavaScript in twenty lines: tasks, get, wait, an actor, and an error.
//
//   build/rayd &
//   node examples/node/quickstart.mjs          # RAYD_ADDRESS to point elsewhere
import * as rayd from '../../clients/js/index.js';

const rd = await rayd.connect();                        // RAYD_ADDRESS, else localhost:8080
const [add, mul, div] = ['add', 'mul', 'div'].map((n) => rd.function(n));

const refs = await Promise.all(Array.from({ length: 100 }, (_, i) => mul.remote(i, i)));
console.log('sum of squares:', (await rd.get(refs)).reduce((a, b) => a + b, 0)); // 328350

const [ready, notReady] = await rd.wait(refs, { numReturns: 10, timeout: 5 });
console.log('ready:', ready.length, 'not ready:', notReady.length);

const counter = await rd.actorClass('Counter').options({ name: 'quickstart-js', getIfExists: true }).remote(0);
for (let i = 0; i < 1000; i++) counter.incr.remote(1);  // sent one after the other, in order
console.log('counter:', await rd.get(counter.get.remote())); // 1000
await rd.kill(counter);

try {
  await rd.get(add.remote(add.remote(div.remote(1, 0), 1), 1)); // an error through 3 tasks
} catch (e) {
  if (!(e instanceof rayd.TaskError)) throw e;
  console.log('error:', e.chain().map((x) => x.detail).join(' <- '));
}
