// TypeScript declarations for rayd's worker side (worker.js, Node.js only).
import { ActorClass, Client, RemoteFunction, RetryableError } from './index.js';

export { RetryableError };

export interface WorkerOptions {
  /** Port to listen on; 0 (default) picks a free one. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** The address rayd reaches the worker by (default http://host:port). */
  url?: string | null;
  /** Where the retries RetryableError asks for are logged (default console.warn). */
  log?: (message: string) => void;
}

export interface CallInfo {
  taskId: string | null;
  function: string | null;
  attempt: number | null;
  actorId: string | null;
  method: string | null;
  requestId: string | null;
  traceparent: string | null;
}

/** The call this async context is answering for rayd, or null. */
export function currentCall(): CallInfo | null;

export class Worker {
  constructor(client: Client, opts?: WorkerOptions);
  readonly client: Client;
  readonly url: string;
  function(fn: (...args: any[]) => unknown,
    opts?: { name?: string; timeout?: number; maxConcurrency?: number; maxRetries?: number }): RemoteFunction;
  actorClass(cls: new (...args: any[]) => unknown, opts?: { name?: string; timeout?: number }): ActorClass;
  start(): Promise<Worker>;
  serve(): Promise<void>;
  stop(opts?: { unregister?: boolean }): Promise<void>;
}
