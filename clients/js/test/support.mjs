// Test support: a real rayd (build/rayd, or $RAYD_BIN) per test file, and a recording
// HTTP/1.1 proxy for what the client does on the wire.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export function raydBin() {
  let b = process.env.RAYD_BIN || path.join(ROOT, 'build', 'rayd');
  if (!path.isAbsolute(b)) b = path.join(ROOT, b);
  fs.accessSync(b, fs.constants.X_OK);
  return b;
}

/** A port free now (nothing reserved): for a worker rayd must be allowed to call. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** Starts rayd on 127.0.0.1, a port the kernel picks; resolves once it listens. */
export async function startRayd({ args = [], remoteAllow = [], env = {} } = {}) {
  const cmd = ['--bind', '127.0.0.1', '--port', '0', '--log-format', 'json', ...args];
  if (remoteAllow.length) cmd.push('--remote-allow', remoteAllow.join(','));
  const proc = spawn(raydBin(), cmd, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  const srv = { proc, lines: [], port: 0, url: null, stderr: '' };
  let buf = '';
  proc.stderr.on('data', (d) => { srv.stderr = (srv.stderr + d).slice(-2000); });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('rayd did not start: ' + srv.stderr)), 10000);
    proc.on('exit', () => { clearTimeout(timer); reject(new Error('rayd exited: ' + srv.stderr)); });
    proc.stdout.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        try { srv.lines.push(JSON.parse(line)); } catch { /* not JSON */ }
        const last = srv.lines[srv.lines.length - 1];
        if (!srv.port && last && last.event === 'listening') {
          srv.port = last.port;
          clearTimeout(timer);
          resolve();
        }
      }
    });
  });
  proc.removeAllListeners('exit');
  srv.url = `http://127.0.0.1:${srv.port}`;
  /** The first log line for which pred is true, waiting for it to be written. */
  srv.waitLog = async (pred, timeoutMs = 10000) => {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const hit = srv.lines.find(pred);
      if (hit) return hit;
      if (Date.now() > end) throw new Error('no such log line');
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  srv.stop = () => new Promise((resolve) => {
    if (proc.exitCode !== null) { resolve(proc.exitCode); return; }
    proc.once('exit', (code) => resolve(code));
    proc.kill('SIGTERM');
  });
  return srv;
}

function readMessage(state) {
  // One HTTP/1.1 message (Content-Length bodies) from state.buf, or null if incomplete.
  const end = state.buf.indexOf('\r\n\r\n');
  if (end < 0) return null;
  const head = state.buf.subarray(0, end).toString('latin1');
  const lines = head.split('\r\n');
  const headers = {};
  for (const l of lines.slice(1)) {
    const k = l.indexOf(':');
    headers[l.slice(0, k).trim().toLowerCase()] = l.slice(k + 1).trim();
  }
  const n = Number(headers['content-length'] || 0);
  if (state.buf.length < end + 4 + n) return null;
  const raw = state.buf.subarray(0, end + 4 + n);
  state.buf = state.buf.subarray(end + 4 + n);
  return { first: lines[0], headers, raw };
}

/**
 * A proxy on loopback in front of targetPort: counts connections, records each request's
 * method, path and headers, and can swallow the answer to a request (dropAnswer(pred)).
 */
export async function startProxy(targetPort) {
  const p = { connections: 0, requests: [], drops: [] };
  const sockets = new Set();
  const server = net.createServer((client) => {
    p.connections++;
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    const up = net.connect(targetPort, '127.0.0.1');
    const cs = { buf: Buffer.alloc(0) };
    const us = { buf: Buffer.alloc(0) };
    const queue = []; // per request sent upstream: drop its answer?
    client.on('data', (d) => {
      cs.buf = Buffer.concat([cs.buf, d]);
      let m;
      while ((m = readMessage(cs))) {
        const [method, pth] = m.first.split(' ');
        const info = { method, path: pth, headers: m.headers };
        p.requests.push(info);
        const k = p.drops.findIndex((f) => f(info));
        if (k >= 0) p.drops.splice(k, 1);
        queue.push(k >= 0);
        up.write(m.raw);
      }
    });
    up.on('data', (d) => {
      us.buf = Buffer.concat([us.buf, d]);
      let m;
      while ((m = readMessage(us))) {
        if (queue.shift()) { client.destroy(); up.destroy(); return; }
        client.write(m.raw);
      }
    });
    const close = () => { client.destroy(); up.destroy(); };
    client.on('error', close); up.on('error', close);
    client.on('close', close); up.on('close', close);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  p.url = `http://127.0.0.1:${server.address().port}`;
  p.dropAnswer = (pred) => p.drops.push(pred);
  p.close = () => new Promise((r) => {
    server.close(() => r());
    for (const c of sockets) c.destroy();
  });
  return p;
}
