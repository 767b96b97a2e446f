// A rayd worker in JavaScript with the client: a function and an actor class. rayd calls
// them over HTTP; the actor's state is kept by rayd, so this process keeps nothing.
//
//   build/rayd --remote-allow http://127.0.0.1:9000 &
//   node examples/node/wordcount_worker.mjs 9000 &
//   curl -s -H 'Prefer: wait=5' localhost:8080/v1/tasks -d '{"function":"wordcount","args":["a b c"]}'  # 3
//
// A thrown error answers a problem+json 500 (a TaskError in rayd, not retried);
// RetryableError asks rayd for another attempt.
import { connect } from '../../clients/js/index.js';
import { Worker } from '../../clients/js/worker.js';

const rd = await connect();                              // RAYD_ADDRESS, else localhost:8080
const worker = new Worker(rd, { port: Number(process.argv[2] || 9000) });

worker.function(function wordcount(text) {
  return text.split(/\s+/).filter(Boolean).length;
});

worker.actorClass(class Account {                        // state held by rayd
  constructor(balance = 0) { this.balance = balance; }

  deposit(n) { this.balance += n; return this.balance; }

  withdraw(n) {
    if (n > this.balance) throw new RangeError(`cannot withdraw ${n}: the balance is ${this.balance}`);
    this.balance -= n;
    return this.balance;
  }
});

await worker.serve();                                    // registers, serves until Ctrl-C
