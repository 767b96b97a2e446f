// The OpenAPI document as the contract tests use it: loaded once into Ajv (JSON Schema
// 2020-12, so the spec's internal $refs resolve), with helpers to find the operation a
// request went to and to check one response against it. Shared by validate.mjs (recorded
// responses of the API suite) and generate.mjs (generated requests).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const SPEC_ID = 'https://rayd.dev/openapi.json';
const METHODS = ['get', 'put', 'post', 'delete', 'options', 'head', 'patch', 'trace'];

export function loadSpec(file = path.join(ROOT, 'openapi/openapi.yaml')) {
  const spec = YAML.parse(fs.readFileSync(file, 'utf8'));
  spec.$id = SPEC_ID;
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: true });
  addFormats(ajv);
  const numeric = {
    int32: { type: 'number', validate: (x) => Number.isInteger(x) && x >= -(2 ** 31) && x < 2 ** 31 },
    int64: { type: 'number', validate: (x) => Number.isInteger(x) },
    float: { type: 'number', validate: () => true },
    double: { type: 'number', validate: () => true },
  };
  for (const [name, def] of Object.entries(numeric)) if (!ajv.formats[name]) ajv.addFormat(name, def);
  ajv.addSchema(spec);
  return new Contract(spec, ajv);
}

/* JSON pointer escaping of one token. */
const esc = (t) => String(t).replace(/~/g, '~0').replace(/\//g, '~1');

/* The media type without parameters, lower case. */
export function mediaType(ct) {
  return ct == null ? null : String(ct).split(';')[0].trim().toLowerCase();
}

export function isJsonType(mt) {
  return mt != null && (mt === 'application/json' || mt.endsWith('+json'));
}

export class Contract {
  constructor(spec, ajv) {
    this.spec = spec;
    this.ajv = ajv;
    this.validators = new Map();
    // Path templates, split into segments; literal segments win over parameters.
    this.templates = Object.keys(spec.paths).map((t) => ({
      template: t,
      segs: t.split('/').slice(1),
      literals: t.split('/').slice(1).filter((s) => !s.startsWith('{')).length,
    }));
  }

  /* Follows a local $ref ('#/components/...') to the object it names, with its pointer. */
  deref(obj, pointer) {
    let seen = 0;
    while (obj && typeof obj === 'object' && typeof obj.$ref === 'string' && obj.$ref.startsWith('#/')) {
      pointer = obj.$ref.slice(1);
      obj = pointer.split('/').slice(1).reduce((o, k) => (o == null ? o : o[k.replace(/~1/g, '/').replace(/~0/g, '~')]), this.spec);
      if (++seen > 20) throw new Error(`$ref loop at ${pointer}`);
    }
    return { obj, pointer };
  }

  /* A compiled validator for the schema at a JSON pointer into the spec. */
  validator(pointer) {
    let v = this.validators.get(pointer);
    if (!v) {
      v = this.ajv.compile({ $ref: `${SPEC_ID}#${pointer}` });
      this.validators.set(pointer, v);
    }
    return v;
  }

  /* The path template a (decoded) path routes to, as the server routes it: every segment
   * matches, the template with the most literal segments wins. Returns
   * {template, params} or null. */
  route(rawPath) {
    let decoded;
    try {
      decoded = decodeURIComponent(rawPath);
    } catch {
      decoded = rawPath;
    }
    // The server routes the decoded path as a C string: an encoded NUL ends it.
    if (decoded.includes('\0')) decoded = decoded.slice(0, decoded.indexOf('\0'));
    const segs = decoded.split('/').slice(1);
    let best = null;
    for (const t of this.templates) {
      if (t.segs.length !== segs.length) continue;
      const params = {};
      let ok = true;
      for (let i = 0; i < segs.length && ok; i++) {
        const ts = t.segs[i];
        if (ts.startsWith('{')) {
          if (segs[i] === '') ok = false;
          else params[ts.slice(1, -1)] = segs[i];
        } else if (ts !== segs[i]) ok = false;
      }
      if (ok && (!best || t.literals > best.literals)) best = { template: t.template, literals: t.literals, params };
    }
    return best;
  }

  /* Every operation: [{method, template, op, pointer}]. */
  operations() {
    const out = [];
    for (const [template, item] of Object.entries(this.spec.paths)) {
      for (const m of METHODS) {
        if (item[m]) out.push({ method: m.toUpperCase(), template, op: item[m], item, pointer: `/paths/${esc(template)}/${m}` });
      }
    }
    return out;
  }

  /* The operation (or the pseudo-operation of the generic answers the spec's description
   * promises: 404 for paths it does not list, 405 for methods a listed path does not
   * accept) that answers method + path. */
  operationFor(method, rawPath) {
    const r = this.route(rawPath);
    if (!r) return { key: '(no route)', generic: 'noRoute', params: {} };
    const item = this.spec.paths[r.template];
    const m = method.toLowerCase();
    if (!item[m]) return { key: `(method not allowed) ${r.template}`, generic: 'noMethod', template: r.template, params: r.params };
    return { key: `${method.toUpperCase()} ${r.template}`, template: r.template, op: item[m], params: r.params, pointer: `/paths/${esc(r.template)}/${m}` };
  }

  /* The response object (dereferenced) and its pointer for a status, or null. */
  responseFor(found, status) {
    if (found.generic) return this.genericResponse(found, status);
    const rs = found.op.responses || {};
    const key = [String(status), `${String(status)[0]}XX`, 'default'].find((k) => rs[k]);
    if (!key) return null;
    return this.deref(rs[key], `${found.pointer}/responses/${esc(key)}`);
  }

  /* Statuses any route may answer without its operation listing them: the info
   * description's 404 for unlisted routes and 405 for unlisted methods, and 401 for /v1/
   * paths when auth is on. */
  genericResponse(found, status) {
    const comp = (name) => (this.spec.components.responses[name] ? this.deref({ $ref: `#/components/responses/${name}` }) : null);
    if (status === 401) return comp('Unauthorized');
    if (found.generic === 'noRoute' && status === 404) return comp('RouteNotFound') || comp('NotFound');
    if (found.generic === 'noMethod' && status === 405) return comp('MethodNotAllowed');
    if (status === 400) return comp('BadFraming');
    return null;
  }

  /* Checks one response. rec: {method, path, status, content_type, headers, body |
   * body_base64 | body_omitted}. Returns a list of reasons (empty: it conforms). */
  check(rec) {
    const reasons = [];
    const found = this.operationFor(rec.method, rec.path);
    rec.operation = found.key;
    const res = this.responseFor(found, rec.status);
    if (!res || !res.obj) {
      reasons.push(`status ${rec.status} is not documented for ${found.key}`);
      return reasons;
    }
    const { obj: response, pointer } = res;
    const headers = rec.headers || {};
    const isHead = rec.method.toUpperCase() === 'HEAD';
    const hasBody = !isHead && (rec.body_omitted || (rec.body != null && rec.body.length > 0) || (rec.body_base64 != null && rec.body_base64.length > 0));

    // Documented headers: required ones present, present ones matching their schema.
    for (const [name, h0] of Object.entries(response.headers || {})) {
      const { obj: h, pointer: hp } = this.deref(h0, `${pointer}/headers/${esc(name)}`);
      const value = headers[name.toLowerCase()];
      if (value === undefined) {
        if (h.required) reasons.push(`required header ${name} is missing`);
        continue;
      }
      if (h.schema) {
        const v = this.validator(`${hp}/schema`);
        let typed = value;
        if (/^-?\d+(\.\d+)?$/.test(value)) {
          const { obj: hs } = this.deref(h.schema);
          if (hs && (hs.type === 'integer' || hs.type === 'number')) typed = Number(value);
        }
        if (!v(typed)) reasons.push(`header ${name}: ${JSON.stringify(value)} ${fmtErrors(v.errors)}`);
      }
    }

    const content = response.content;
    const mt = mediaType(rec.content_type);
    if (!content) {
      if (hasBody) reasons.push(`a ${rec.status} has no documented body, but one came (${rec.content_type || 'no Content-Type'})`);
      return reasons;
    }
    if (isHead) return reasons;
    if (!mt) {
      if (hasBody) reasons.push(`no Content-Type on a ${rec.status} with a body`);
      else if (!content['*/*']) reasons.push(`no Content-Type and no body on a ${rec.status} that documents ${Object.keys(content).join(', ')}`);
      return reasons;
    }
    const mkey = Object.keys(content).find((k) => mediaType(k) === mt) ||
      Object.keys(content).find((k) => k.endsWith('/*') && k !== '*/*' && mt.startsWith(k.slice(0, -1))) ||
      Object.keys(content).find((k) => k === '*/*');
    if (!mkey) {
      reasons.push(`Content-Type ${rec.content_type} is not documented for ${rec.status} (documented: ${Object.keys(content).join(', ')})`);
      return reasons;
    }
    const media = content[mkey];
    if (!media.schema || rec.body_omitted) return reasons;
    const mk = mediaType(mkey);
    const spointer = `${pointer}/content/${esc(mkey)}/schema`;
    if (isJsonType(mk)) {
      if (rec.body_base64 != null) {
        reasons.push(`${rec.content_type} body is not UTF-8`);
        return reasons;
      }
      let value;
      try {
        value = JSON.parse(rec.body);
      } catch (e) {
        reasons.push(`${rec.content_type} body is not JSON: ${e.message}`);
        return reasons;
      }
      const v = this.validator(spointer);
      if (!v(value)) reasons.push(`body does not match ${schemaName(media.schema) || 'the schema'}: ${fmtErrors(v.errors)}`);
    } else if (mk.startsWith('text/') && rec.body != null) {
      const v = this.validator(spointer);
      if (!v(rec.body)) reasons.push(`body does not match the schema: ${fmtErrors(v.errors)}`);
    }
    return reasons;
  }
}

function schemaName(s) {
  return s && s.$ref ? s.$ref.split('/').pop() : null;
}

export function fmtErrors(errors) {
  if (!errors || !errors.length) return '';
  return errors
    .slice(0, 3)
    .map((e) => `${e.instancePath || '(root)'} ${e.message}${e.params && e.params.allowedValue !== undefined ? ` (${JSON.stringify(e.params.allowedValue)})` : ''}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''}`)
    .join('; ');
}
