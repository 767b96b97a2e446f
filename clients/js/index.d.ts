// TypeScript declarations for rayd's JavaScript client (index.js, errors.js).

export const version: string;

/** A JSON value as rayd stores it; refs, handles and bytes travel by rayd's conventions. */
export type Value =
  | null | boolean | number | string | Uint8Array | ObjectRef | ActorHandle
  | Value[] | { [key: string]: Value };

/** An argument: a value, or a promise of one (a pending .remote() result, say). */
export type Arg = Value | PromiseLike<Value> | Kwargs | unknown;

export interface ClientOptions {
  /** Bearer token; default RAYD_API_TOKEN. */
  token?: string;
  /** Seconds a request may take beyond the wait it asks for (default 30). */
  timeout?: number;
  /** Retries of a failed request when repeating it is safe (default 3). */
  retries?: number;
  /** Send an Idempotency-Key with each POST that creates something (default true). */
  idempotencyKeys?: boolean;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** Check GET /healthz in connect() (default true). */
  check?: boolean;
  /** A fetch implementation (default globalThis.fetch). */
  fetch?: typeof fetch;
}

export interface TaskOptions {
  numReturns?: number;
  maxRetries?: number;
  retryExceptions?: boolean;
  /** Seconds. */
  timeout?: number | null;
  name?: string | null;
}

export interface ActorOptions {
  name?: string;
  getIfExists?: boolean;
  maxRestarts?: number;
  maxPendingCalls?: number;
}

/** Connects and checks (GET /healthz) that a rayd answers at `address`. */
export function connect(address?: string, opts?: ClientOptions): Promise<Client>;

/** Runs fn with X-Request-Id / traceparent on every request made inside (Node.js only). */
export function requestContext<T>(ctx: { requestId?: string; traceparent?: string },
  fn: () => T): T;

/** Keyword arguments, as the last argument of .remote(): fn.remote(1, kwargs({k: 2})). */
export function kwargs(values: Record<string, Arg>): Kwargs;
export class Kwargs { readonly values: Record<string, Arg>; }

export class ObjectRef {
  constructor(id: string, taskId?: string | null);
  readonly id: string;
  /** The task producing it, when this client submitted it. */
  readonly taskId: string | null;
  hex(): string;
  toJSON(): { $ref: string };
}

export class TaskCall {
  readonly function: RemoteFunction;
  readonly args: Arg[];
  readonly kwargs: Record<string, Arg>;
}

export class RemoteFunction {
  readonly name: string;
  options(options: TaskOptions): RemoteFunction;
  /** Submits a task: its ref (an array of refs with numReturns > 1). */
  remote(...args: Arg[]): Promise<ObjectRef>;
  remote(...args: Arg[]): Promise<ObjectRef | ObjectRef[]>;
  bind(...args: Arg[]): TaskCall;
}

export class ActorMethod {
  readonly name: string;
  remote(...args: Arg[]): Promise<ObjectRef>;
}

export class ActorHandle {
  readonly actorId: string;
  readonly className: string | null;
  readonly name: string | null;
  method(name: string): ActorMethod;
  info(): Promise<Record<string, unknown>>;
  toJSON(): { $actor: string; class: string | null };
  /** Any other property is a method: handle.incr.remote(5). */
  readonly [method: string]: any;
}

export class ActorClass {
  readonly name: string;
  options(options: ActorOptions): ActorClass;
  remote(...args: Arg[]): Promise<ActorHandle>;
}

export class Client {
  constructor(address?: string, opts?: ClientOptions);
  readonly address: string;
  check(): Promise<Client>;
  put(value: Arg, opts?: { contentType?: string; ttl?: number }): Promise<ObjectRef>;
  get<T = any>(ref: ObjectRef | PromiseLike<ObjectRef>, opts?: { timeout?: number | null }): Promise<T>;
  get<T = any>(refs: Array<ObjectRef | PromiseLike<ObjectRef>> | PromiseLike<ObjectRef[]>,
    opts?: { timeout?: number | null }): Promise<T[]>;
  wait(refs: Array<ObjectRef | PromiseLike<ObjectRef>>,
    opts?: { numReturns?: number; timeout?: number | null }): Promise<[ObjectRef[], ObjectRef[]]>;
  free(refs: ObjectRef | ObjectRef[]): Promise<void>;
  ref(id: string): ObjectRef;
  function(name: string): RemoteFunction;
  functions(): Promise<Array<Record<string, unknown>>>;
  submit(calls: Iterable<TaskCall>): Promise<Array<ObjectRef | ObjectRef[]>>;
  cancel(ref: ObjectRef | PromiseLike<ObjectRef>): Promise<void>;
  task(refOrTaskId: ObjectRef | string | PromiseLike<ObjectRef>): Promise<Record<string, unknown>>;
  actorClass(name: string): ActorClass;
  getActor(name: string): Promise<ActorHandle>;
  kill(actor: ActorHandle | PromiseLike<ActorHandle>): Promise<void>;
  /** Ray's @ray.remote for a function or class of this program (Node.js only). */
  remote(target: (...args: any[]) => any, options?: TaskOptions): RemoteFunction;
  remote(target: new (...args: any[]) => any, options?: ActorOptions): ActorClass;
  /** A Worker for this client (Node.js only; see rayd/worker). */
  worker(opts?: import('./worker.js').WorkerOptions): Promise<import('./worker.js').Worker>;
  status(): Promise<Record<string, unknown>>;
  close(): Promise<void>;
  shutdown(): Promise<void>;
}

// ---- errors ------------------------------------------------------------------------------

export interface Problem {
  type?: string;
  title: string;
  status?: number;
  detail?: string;
  instance?: string;
  cause?: Problem;
  [extension: string]: unknown;
}

/** The base class of every error the client throws (Ray's RayError). */
export class RaydError extends Error {
  constructor(detail?: string, opts?: { problem?: Problem; cause?: RaydError | null; requestId?: string | null });
  readonly problem: Problem;
  readonly title: string;
  readonly status: number | null;
  readonly type: string | null;
  readonly detail: string;
  readonly instance: string | null;
  readonly cause: RaydError | null;
  readonly requestId: string | null;
  readonly traceback: string | null;
  /** Extension members, camelCased: ref, taskId, actorId, function, remoteTitle... */
  readonly [extension: string]: unknown;
  chain(): RaydError[];
  describe(): string;
  static fromProblem(problem: Problem, requestId?: string | null): RaydError;
}
export class TaskError extends RaydError {}
export class ObjectLostError extends RaydError {}
export class GetTimeoutError extends RaydError {}
export class ActorDiedError extends RaydError {}
export class TaskCancelledError extends RaydError {}
export class WorkerUnavailableError extends RaydError {}
export class ObjectStoreFullError extends RaydError {}
export class APIError extends RaydError {}
export class BadRequestError extends APIError {}
export class UnauthorizedError extends APIError {}
export class ForbiddenError extends APIError {}
export class NotFoundError extends APIError {}
export class ConflictError extends APIError {}
export class ModuleNotLoadedError extends ConflictError {}
export class PayloadTooLargeError extends APIError {}
export class TooManyRequestsError extends APIError {}
export class UnavailableError extends RaydError {}
export class RaydConnectionError extends RaydError {}
export class ProtocolError extends RaydError {}
export class SerializationError extends RaydError {}
/** Throw in worker code to ask rayd for another attempt. */
export class RetryableError extends Error {}
export { RaydError as RayError, TaskError as RayTaskError, ActorDiedError as RayActorError };
