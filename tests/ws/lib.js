// lib.js - a small harness for wsd's client tests: a message-queue client
// over the real `ws` package, raw HTTP and raw-frame helpers, and a runner
// that prints one line per case and fails the process on the first error.
//
// WSD_URL and WSD_PORT say where /ws is: mcpgw-wsd itself (tests/wsd-*.test)
// or a web server that proxies /ws to it (tests/webservers/ws-*.test).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const crypto = require('node:crypto');

const modules = process.env.NODE_MODULES ||
  path.join(__dirname, '..', '..', 'node_modules');
const WebSocket = require(path.join(modules, 'ws'));

const URL_ = process.env.WSD_URL;
const PORT = Number(process.env.WSD_PORT);

// A client that queues every message, so a test can wait for the next one
// that matches, in any order.
class Client {
  constructor(ws) {
    this.ws = ws;
    this.queue = [];
    this.waiters = [];
    this.closed = null;
    this.closeWaiters = [];
    ws.on('message', (data, isBinary) => {
      const text = data.toString();
      let msg;
      try {
        msg = JSON.parse(text);
      } catch (e) {
        msg = { unparsable: text };
      }
      this.queue.push(msg);
      this._wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this._wake();
      for (const w of this.closeWaiters) w(this.closed);
      this.closeWaiters = [];
    });
    ws.on('error', () => {});
  }

  static open(url = URL_, options = {}) {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url, options);
      const c = new Client(ws);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const err = new Error(`HTTP ${res.statusCode}`);
          err.statusCode = res.statusCode;
          err.headers = res.headers;
          err.body = body;
          reject(err);
        });
      });
      ws.once('error', reject);
    });
  }

  // Open and take the first message, which must be status.
  static async connect(url = URL_, options = {}) {
    const c = await Client.open(url, options);
    const st = await c.next((m) => m.type === 'status');
    c.status = st;
    return c;
  }

  _wake() {
    const ws = this.waiters;
    this.waiters = [];
    for (const w of ws) w();
  }

  send(obj) {
    this.ws.send(typeof obj === 'string' ? obj : JSON.stringify(obj));
  }

  call(id, serverId, toolName, params) {
    const data = { serverId, toolName };
    if (params !== undefined) data.params = params;
    this.send({ type: 'tool_call', id, data, timestamp: Date.now() });
  }

  // The next queued message matching pred (removed from the queue).
  async next(pred = () => true, ms = 10000) {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = this.queue.findIndex(pred);
      if (i >= 0) return this.queue.splice(i, 1)[0];
      if (this.closed) {
        throw new Error(`connection closed (${this.closed.code} ${this.closed.reason}) ` +
                        `while waiting; queued: ${JSON.stringify(this.queue).slice(0, 400)}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`timed out after ${ms} ms; queued: ` +
                        JSON.stringify(this.queue).slice(0, 400));
      }
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  // The answer (tool_response or error) to call id, after any progress.
  answer(id, ms) {
    return this.next((m) => m.id === id && (m.type === 'tool_response' || m.type === 'error'), ms);
  }

  // Nothing at all about id arrives within ms.
  async nothingFor(id, ms) {
    await sleep(ms);
    const m = this.queue.find((x) => x.id === id);
    assert.equal(m, undefined, `unexpected message for ${id}: ${JSON.stringify(m)}`);
  }

  waitClose(ms = 10000) {
    if (this.closed) return Promise.resolve(this.closed);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`not closed within ${ms} ms`)), ms);
      this.closeWaiters.push((c) => { clearTimeout(t); resolve(c); });
    });
  }

  close(code = 1000) {
    this.ws.close(code);
    return this.waitClose();
  }
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

// One raw HTTP exchange: returns {status, headers (lower-case), body, raw}.
// localAddress: the loopback address to connect from (127.0.0.2, ...), to
// be a different client.  The answer is complete at a 101's head, at
// Content-Length, or when the server closes; the request is not followed
// by a half-close, which a proxy in front (lighttpd) may take for the
// client going away before the answer is relayed.
function rawRequest(text, port = PORT, localAddress = undefined) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress });
    let buf = Buffer.alloc(0);
    let done = false;
    const parse = () => {
      const raw = buf.toString('latin1');
      const end = raw.indexOf('\r\n\r\n');
      const head = end < 0 ? raw : raw.slice(0, end);
      const lines = head.split('\r\n');
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      return { status: Number(lines[0].split(' ')[1]), headers, complete: end >= 0,
               body: raw.slice(head.length + 4), raw };
    };
    const finish = () => {
      if (done) return;
      done = true;
      const r = parse();
      delete r.complete;
      resolve(r);
      s.destroy();
    };
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse();
      if (!r.complete) return;
      const cl = r.headers['content-length'];
      if (r.status === 101 || (cl !== undefined && Buffer.byteLength(r.body, 'latin1') >= Number(cl))) finish();
    });
    s.on('error', (e) => { if (!done) { done = true; reject(e); } });
    s.on('close', finish);
    s.setTimeout(5000, () => s.destroy(new Error('raw request timed out')));
    s.write(text);
  });
}

function handshake(extraHeaders = '', target = '/ws') {
  return `GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nUpgrade: websocket\r\n` +
    'Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n' +
    `Sec-WebSocket-Version: 13\r\n${extraHeaders}\r\n`;
}

// A client frame; mask=false builds the illegal unmasked kind.
function frame(op, payload, { fin = true, mask = true, rsv = 0 } = {}) {
  const p = Buffer.isBuffer(payload) ? payload : Buffer.from(payload);
  const head = [(fin ? 0x80 : 0) | (rsv << 4) | op];
  let ext = Buffer.alloc(0);
  if (p.length < 126) {
    head.push((mask ? 0x80 : 0) | p.length);
  } else if (p.length < 65536) {
    head.push((mask ? 0x80 : 0) | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(p.length);
  } else {
    head.push((mask ? 0x80 : 0) | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(BigInt(p.length));
  }
  if (!mask) return Buffer.concat([Buffer.from(head), ext, p]);
  const key = crypto.randomBytes(4);
  const m = Buffer.alloc(p.length);
  for (let i = 0; i < p.length; i++) m[i] = p[i] ^ key[i % 4];
  return Buffer.concat([Buffer.from(head), ext, key, m]);
}

// A raw socket after a successful handshake: parses server frames.
function rawSocket(first = Buffer.alloc(0), extraHeaders = '') {
  return new Promise((resolve, reject) => {
    const s = net.connect(PORT, '127.0.0.1');
    const r = { s, frames: [], ended: false, waiters: [] };
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const wake = () => { const w = r.waiters; r.waiters = []; w.forEach((f) => f()); };
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const head = buf.slice(0, i).toString();
        if (!/^HTTP\/1\.1 101/.test(head)) return reject(new Error(head));
        upgraded = true;
        buf = buf.slice(i + 4);
        resolve(r);
      }
      for (;;) {
        if (buf.length < 2) break;
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) { if (buf.length < 4) break; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) break; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) break;
        r.frames.push({ op: buf[0] & 0x0f, fin: !!(buf[0] & 0x80), payload: buf.slice(off, off + len) });
        buf = buf.slice(off + len);
      }
      wake();
    });
    s.on('error', () => {});
    s.on('close', () => { r.ended = true; wake(); });
    r.next = async (pred = () => true, ms = 5000) => {
      const deadline = Date.now() + ms;
      for (;;) {
        const i = r.frames.findIndex(pred);
        if (i >= 0) return r.frames.splice(i, 1)[0];
        if (r.ended || Date.now() > deadline) {
          throw new Error(`no such frame (ended=${r.ended}); have ${JSON.stringify(r.frames.map((f) => f.op))}`);
        }
        await new Promise((res) => { const t = setTimeout(res, 50); r.waiters.push(() => { clearTimeout(t); res(); }); });
      }
    };
    r.closeCode = async () => {
      const f = await r.next((x) => x.op === 8);
      return f.payload.length >= 2 ? f.payload.readUInt16BE(0) : null;
    };
    r.text = async () => JSON.parse((await r.next((x) => x.op === 1)).payload.toString());
    s.write(Buffer.concat([Buffer.from(handshake(extraHeaders)), first]));
  });
}

function rssKiB(pid = process.env.WSD_PID) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

function fdCount(pid = process.env.WSD_PID) {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

function log() {
  return fs.readFileSync(process.env.WSD_LOG, 'utf8');
}

async function waitFor(fn, ms = 10000, what = 'condition') {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

// Run cases in order; one line each; exit 1 at the first failure.
async function run(cases) {
  let n = 0;
  for (const [name, fn] of cases) {
    n++;
    const t0 = Date.now();
    try {
      await fn();
      console.log(`ok ${n} - ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      console.log(`not ok ${n} - ${name}`);
      console.log(e && e.stack ? e.stack : e);
      process.exit(1);
    }
  }
  process.exit(0);
}

module.exports = { WebSocket, Client, assert, sleep, rawRequest, handshake, frame, rawSocket,
                   rssKiB, fdCount, log, waitFor, run, URL: URL_, PORT };
