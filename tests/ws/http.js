// http.js - bad HTTP at mcpgw-wsd's port (tests/wsd-http.test): heads too
// large or too many, bodies on a handshake, bare-LF lines, request-line
// garbage, and a slow-loris of 1,000 connections (tests/slowloris.c) beside
// a well-behaved client whose ping latency is measured with and without it.
// Every bad request gets an answer (or, where libmicrohttpd gives none, a
// close) and the daemon keeps serving: one client stays connected
// throughout and makes a tool call after every case.
'use strict';

const net = require('node:net');
const { spawn } = require('node:child_process');
const { Client, assert, sleep, log, fdCount, waitFor, run, PORT } = require('./lib');

const HS_MS = Number(process.env.WSD_HS_MS);
const SLOWLORIS = process.env.SLOWLORIS;
const LORIS = 1000;
const HOST = `Host: 127.0.0.1:${PORT}\r\n`;
const UPGRADE = 'Upgrade: websocket\r\nConnection: Upgrade\r\n' +
  'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n';

// Send text, read until the server closes (or ms pass).  A server that
// answers and closes before reading everything may reset the connection:
// whatever arrived before the reset is the answer.
function exchange(text, ms = 5000) {
  return new Promise((resolve) => {
    const s = net.connect(PORT, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (closed) => {
      if (done) return;
      done = true;
      clearTimeout(t);
      s.destroy();
      const raw = buf.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3}) /.exec(raw);
      const head = raw.split('\r\n\r\n')[0];
      const headers = {};
      for (const l of head.split('\r\n').slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status: m ? Number(m[1]) : null, headers, raw, closed,
                body: raw.slice(head.length + 4),
                answers: (raw.match(/HTTP\/1\.1 \d{3} /g) || []).length });
    };
    const t = setTimeout(() => finish(false), ms);
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
    s.write(Buffer.from(text, 'latin1'));
  });
}

function pct(v, p) {
  const s = [...v].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))];
}

function pingOnce(ws) {
  return new Promise((resolve, reject) => {
    const t0 = process.hrtime.bigint();
    const t = setTimeout(() => reject(new Error('no pong within 5 s')), 5000);
    ws.once('pong', () => {
      clearTimeout(t);
      resolve(Number(process.hrtime.bigint() - t0) / 1e6);
    });
    ws.ping();
  });
}

let keeper;
let calls = 0;

// The daemon still serves: the client connected before every case gets an
// answer to a tool call.
async function stillServes() {
  const id = `k${++calls}`;
  keeper.call(id, 'fake', 'echo', { message: id });
  const m = await keeper.answer(id);
  assert.equal(m.type, 'tool_response', JSON.stringify(m));
  assert.equal(m.data.result.content[0].text, `Echo: ${id}`);
}

// An answer from libmicrohttpd itself (an HTML page), connection closed.
// heads: libmicrohttpd 0.9.75 writes the head of its "Host required" 400
// twice (status line and headers, then the body once); a client reads the
// first.
async function mhdRefuses(text, status, heads = 1) {
  const r = await exchange(text);
  assert.equal(r.status, status, r.raw.slice(0, 300));
  assert.equal(r.closed, true, 'the connection stays open');
  assert.equal(r.headers.connection, 'close');
  assert.equal(r.answers, heads, r.raw.slice(0, 300));
  await stillServes();
  return r;
}

// Our JSON answer, connection closed.
async function weRefuse(text, status, re) {
  const r = await exchange(text);
  assert.equal(r.status, status, r.raw.slice(0, 300));
  assert.equal(r.closed, true, 'the connection stays open');
  assert.equal(r.answers, 1, r.raw);
  const j = JSON.parse(r.body);
  assert.match(j.error, re);
  await stillServes();
  return j;
}

run([
  ['a client stays connected through every case', async () => {
    keeper = await Client.connect();
    await stillServes();
  }],

  ['a 64 KiB header line: 431, closed', async () => {
    await mhdRefuses(`GET /ws HTTP/1.1\r\n${HOST}X-Big: ${'a'.repeat(65536)}\r\n\r\n`, 431);
  }],

  ['5,000 headers: 431, closed', async () => {
    let h = '';
    for (let i = 0; i < 5000; i++) h += `X-H${i}: v\r\n`;
    await mhdRefuses(`GET /ws HTTP/1.1\r\n${HOST}${UPGRADE}${h}\r\n`, 431);
  }],

  ['a 64 KiB request target: 414, closed', async () => {
    await mhdRefuses(`GET /${'a'.repeat(65536)} HTTP/1.1\r\n${HOST}\r\n`, 414);
  }],

  ['a handshake with Content-Length and Transfer-Encoding: 400, never upgraded', async () => {
    const j = await weRefuse(`GET /ws HTTP/1.1\r\n${HOST}${UPGRADE}Content-Length: 5\r\n` +
                             'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, /no body/);
    assert.equal(j.code, 'bad_request');
  }],

  ['a handshake with a body (Content-Length or chunked): 400, the body is no frame', async () => {
    await weRefuse(`GET /ws HTTP/1.1\r\n${HOST}${UPGRADE}Content-Length: 5\r\n\r\nhello`, 400,
                   /no body/);
    await weRefuse(`GET /ws HTTP/1.1\r\n${HOST}${UPGRADE}Transfer-Encoding: chunked\r\n\r\n` +
                   '5\r\nhello\r\n0\r\n\r\n', 400, /no body/);
    assert.equal(log().includes('protocol error'), false, 'a body was read as WebSocket frames');
  }],

  ['Content-Length with Transfer-Encoding elsewhere: one answer, then closed', async () => {
    // What follows the body is never read as a second request.
    const r = await exchange(`GET /x HTTP/1.1\r\n${HOST}Content-Length: 40\r\n` +
                             'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n' +
                             `GET /smuggled HTTP/1.1\r\n${HOST}\r\n`);
    assert.equal(r.status, 404, r.raw);
    assert.equal(r.answers, 1, r.raw);
    assert.equal(r.closed, true);
    assert.equal(log().includes('/smuggled'), false);
    await stillServes();
  }],

  ['bare-LF line ends (RFC 9112 2.2 allows them): the handshake works', async () => {
    const s = net.connect(PORT, '127.0.0.1');
    let buf = Buffer.alloc(0);
    s.on('data', (d) => { buf = Buffer.concat([buf, d]); });
    s.on('error', () => {});
    s.write(`GET /ws HTTP/1.1\n${HOST.replace('\r\n', '\n')}${UPGRADE.replace(/\r\n/g, '\n')}\n`);
    await waitFor(() => buf.indexOf('"type":"status"') > 0, 5000, 'the status message');
    assert.match(buf.toString('latin1'), /^HTTP\/1\.1 101 /);
    s.destroy();
    const r = await exchange(`GET /x HTTP/1.1\n${HOST.replace('\r\n', '\n')}\n`);
    assert.equal(r.status, 404);
    await stillServes();
  }],

  ['request-line garbage: 400 / 505, closed', async () => {
    await mhdRefuses('\x01\x02garbage garbage\r\n\r\n', 400);
    await mhdRefuses(`GET /ws HTTP/1.1 extra\r\n${HOST}\r\n`, 400);
    await mhdRefuses(`GET /ws HTTP/9.9\r\n${HOST}\r\n`, 505);
    await mhdRefuses('GET /ws\r\n\r\n', 400);
    await mhdRefuses(`GET /ws HTTP/1.1\r\n${HOST}this line has no colon\r\n\r\n`, 400);
    await mhdRefuses(`GET /ws HTTP/1.1\r\nHo\x00st: x\r\n\r\n`, 400);
    await mhdRefuses(`GET /ws HTTP/1.1\r\n${UPGRADE}\r\n`, 400, 2);    // no Host
  }],

  ['a method alone as the request line: closed without an answer (libmicrohttpd)', async () => {
    const r = await exchange('GET\r\n\r\n');
    assert.equal(r.closed, true);
    assert.equal(r.raw, '');
    await stillServes();
  }],

  [`slow-loris: ${LORIS} trickling connections closed at the deadline; pings keep their latency`,
    async () => {
      const fds0 = fdCount();
      const before = [];
      for (let i = 0; i < 200; i++) before.push(await pingOnce(keeper.ws));
      // One byte per connection every second: no connection is ever idle
      // for libmicrohttpd's timeout; only the handshake deadline ends them.
      const child = spawn(SLOWLORIS, [String(PORT), String(LORIS), '1000', String(HS_MS + 8000)],
                          { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      let exited = null;
      child.stdout.on('data', (d) => { out += d; });
      child.on('exit', (code) => { exited = code; });
      await waitFor(() => /connected \d+/.test(out) || exited !== null, 20000,
                    'the slow-loris connections');
      assert.match(out, new RegExp(`connected ${LORIS}\\b`));
      const t0 = Date.now();
      const during = [];
      let n = 0;
      while (exited === null && Date.now() - t0 < HS_MS + 10000) {
        during.push(await pingOnce(keeper.ws));
        if (++n % 50 === 0) await stillServes();
        await sleep(5);
      }
      await waitFor(() => exited !== null, 15000, 'slowloris to end');
      assert.equal(exited, 0);
      const r = Object.fromEntries(/result (.*)/.exec(out)[1].split(' ').map((kv) => {
        const [k, v] = kv.split('=');
        return [k, Number(v)];
      }));
      console.log(`# slowloris: ${out.trim().split('\n').pop()}`);
      console.log(`# ping without: p50 ${pct(before, 50).toFixed(2)} ms, ` +
                  `p99 ${pct(before, 99).toFixed(2)} ms (${before.length} pings)`);
      console.log(`# ping with ${LORIS} trickling: p50 ${pct(during, 50).toFixed(2)} ms, ` +
                  `p99 ${pct(during, 99).toFixed(2)} ms (${during.length} pings)`);
      assert.equal(r.connected, LORIS);
      assert.equal(r.failed, 0);
      assert.equal(r.closed, LORIS, 'some were never closed');
      assert.equal(r.open, 0);
      assert.equal(r.answered408, LORIS, 'some closed without a 408');
      // Closed by the deadline: not at once, not much later.
      assert.ok(r.min_ms >= HS_MS / 2, `closed after only ${r.min_ms} ms`);
      assert.ok(r.max_ms <= HS_MS + 3000, `closed only after ${r.max_ms} ms`);
      assert.ok(during.length >= 50, `only ${during.length} pings measured`);
      assert.ok(pct(during, 99) < 200, `p99 ping latency ${pct(during, 99)} ms under slow-loris`);
      const closedLines = log().split('\n')
        .filter((l) => l.includes(`no complete request head within ${HS_MS} ms`)).length;
      assert.equal(closedLines, LORIS);
      // Every socket released; the same client and a new one are served.
      await waitFor(() => fdCount() <= fds0 + 2, 10000, `wsd's fds back to ${fds0}`);
      await stillServes();
      const c = await Client.connect();
      c.call('new', 'fake', 'echo', { message: 'after' });
      assert.equal((await c.answer('new')).data.result.content[0].text, 'Echo: after');
      await c.close();
    }],

  ['the client connected at the start is still there', async () => {
    await stillServes();
    await keeper.close();
  }],
]);
