// rayd's errors as JavaScript exceptions, named as Ray's (and as the Python client's).
//
// Every error rayd answers is an RFC 9457 problem (application/problem+json). The client
// turns it into an instance of the class its `title` names, carrying the problem's members
// (status, detail, instance, ref, taskId, ...) and its whole `cause` chain, each cause an
// error of its own, set as the standard `cause` property.

/** The base class of every error the client throws (Ray's RayError). */
export class RaydError extends Error {
  static title = 'RaydError';

  /**
   * @param {string} detail
   * @param {{problem?: object, cause?: RaydError|null, requestId?: string|null}} [opts]
   */
  constructor(detail = '', { problem = {}, cause = null, requestId = null } = {}) {
    super(detail || String(problem.detail ?? ''), cause ? { cause } : undefined);
    this.name = new.target.name;
    /** The whole problem+json body, extensions included. */
    this.problem = { ...problem };
    this.title = problem.title ?? new.target.title;
    this.status = problem.status ?? null;
    this.type = problem.type ?? null;
    this.detail = this.message;
    this.instance = problem.instance ?? null;
    if (!cause) this.cause = null;
    /** X-Request-Id of the answer that carried the error. */
    this.requestId = requestId;
    // Extension members, camelCased as well: ref, taskId, actorId, function, method,
    // remoteStatus, remoteTitle, exception, traceback...
    for (const [k, v] of Object.entries(problem)) {
      if (k in this || k === 'cause') continue;
      const camel = k.replace(/_([a-z])/g, (_, c) => c.toUpperCase());
      if (!(camel in this)) this[camel] = v;
    }
  }

  /** This error followed by its causes, outermost first. */
  chain() {
    const out = [];
    for (let e = this; e; e = e.cause instanceof RaydError ? e.cause : null) out.push(e);
    return out;
  }

  /** The remote traceback (stack) a worker sent with this error or one of its causes. */
  get traceback() {
    for (const e of this.chain()) {
      if (typeof e.problem.traceback === 'string') return e.problem.traceback;
    }
    return null;
  }

  /** "Title: detail", then "caused by ..." for each cause, then any remote traceback. */
  describe() {
    const parts = this.chain().map((e, i) => {
      const title = e.problem.remote_title ?? e.title;
      const line = e.detail ? `${title}: ${e.detail}` : title;
      return i === 0 ? line : 'caused by ' + line;
    });
    const tb = this.traceback;
    if (tb) parts.push('remote traceback:\n' + tb.trimEnd());
    return parts.join('\n  ');
  }

  toString() {
    return this.describe();
  }

  /**
   * The error for a problem+json body, of the class its title names; causes too.
   * @param {object} problem
   * @param {string|null} [requestId]
   * @returns {RaydError}
   */
  static fromProblem(problem, requestId = null) {
    const cause = problem.cause && typeof problem.cause === 'object'
      ? RaydError.fromProblem(problem.cause, requestId) : null;
    let Klass = BY_TITLE[problem.title];
    if (!Klass) {
      const s = problem.status;
      Klass = s === 503 ? UnavailableError : (Number.isInteger(s) && s < 500 ? APIError : RaydError);
    }
    return new Klass(String(problem.detail ?? problem.title ?? ''),
      { problem, cause, requestId });
  }
}

/** A task or actor call failed (Ray's RayTaskError); `cause` says why. */
export class TaskError extends RaydError { static title = 'TaskError'; }
/** The object was freed, evicted or expired (410). */
export class ObjectLostError extends RaydError { static title = 'ObjectLost'; }
/** get reached its timeout while an object was pending. Never a placeholder value. */
export class GetTimeoutError extends RaydError { static title = 'GetTimeout'; }
/** The actor is dead: killed, its constructor failed, or out of restarts. */
export class ActorDiedError extends RaydError { static title = 'ActorDied'; }
/** The task was cancelled. */
export class TaskCancelledError extends RaydError { static title = 'TaskCancelled'; }
/** A remote function's endpoint could not be reached, after rayd's retries. */
export class WorkerUnavailableError extends RaydError { static title = 'WorkerUnavailable'; }
/** The object store is full (507). */
export class ObjectStoreFullError extends RaydError { static title = 'ObjectStoreFull'; }
/** A request rayd refused (a 4xx problem not listed here). */
export class APIError extends RaydError { static title = 'APIError'; }
export class BadRequestError extends APIError { static title = 'BadRequest'; }
export class UnauthorizedError extends APIError { static title = 'Unauthorized'; }
export class ForbiddenError extends APIError { static title = 'Forbidden'; }
export class NotFoundError extends APIError { static title = 'NotFound'; }
export class ConflictError extends APIError { static title = 'Conflict'; }
/**
 * 409 in cluster mode: the function or actor class comes from a C module the answering node
 * has not loaded; `problem.nodes` lists the live nodes that have it (tag, url, module).
 */
export class ModuleNotLoadedError extends ConflictError { static title = 'ModuleNotLoaded'; }
export class PayloadTooLargeError extends APIError { static title = 'PayloadTooLarge'; }
export class TooManyRequestsError extends APIError { static title = 'TooManyRequests'; }
/** 503: the server is draining or out of memory. */
export class UnavailableError extends RaydError { static title = 'ShuttingDown'; }
/** The server could not be reached (after the client's retries). Names the URL. */
export class RaydConnectionError extends RaydError { static title = 'ConnectionError'; }
/** The server answered something rayd never answers: probably not rayd. Names the URL. */
export class ProtocolError extends RaydError { static title = 'ProtocolError'; }
/** A value cannot be sent as JSON; thrown before anything is sent. */
export class SerializationError extends RaydError { static title = 'SerializationError'; }

/**
 * Throw it in worker code to ask rayd for another attempt: the worker answers 503 with a
 * problem body, which rayd retries with backoff up to the task's max_retries.
 */
export class RetryableError extends Error {
  constructor(message) {
    super(message);
    this.name = 'RetryableError';
  }
}

const BY_TITLE = {
  TaskError, ObjectLost: ObjectLostError, ActorDied: ActorDiedError,
  TaskCancelled: TaskCancelledError, WorkerUnavailable: WorkerUnavailableError,
  ObjectStoreFull: ObjectStoreFullError, BadRequest: BadRequestError,
  Unauthorized: UnauthorizedError, Forbidden: ForbiddenError, NotFound: NotFoundError,
  Conflict: ConflictError, ModuleNotLoaded: ModuleNotLoadedError, PayloadTooLarge: PayloadTooLargeError,
  TooManyRequests: TooManyRequestsError, ShuttingDown: UnavailableError,
  ServiceUnavailable: UnavailableError,
};

// Ray's names for the same errors.
export { RaydError as RayError, TaskError as RayTaskError, ActorDiedError as RayActorError };
