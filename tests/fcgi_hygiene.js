// fcgi_hygiene.js - mcpgw-fcgi serving 50 requests at once, talked to
// directly over its FastCGI socket (tests/fcgi-hygiene.test): 25 event
// streams and 25 slow tool calls are open while every MCP server the
// responder spawned is inspected.  Each holds only its own descriptors
// (fake_mcp: exactly 0, 1, 2; none of the responder's sockets, pipes or
// files), and every call then completes.
//
//   node fcgi_hygiene.js SOCKET PID [nofile]
//
// With "nofile": the responder near its open-file limit (see nofile()).
'use strict';

const assert = require('node:assert/strict');
const fs = require('node:fs');
const net = require('node:net');
const { children, fdLinks, cpuMs } = require('./proc');

const [SOCK, PIDS] = process.argv.slice(2);
const PID = Number(PIDS);
const STREAMS = 25;
const CALLS = 25;

// FastCGI records (FastCGI 1.0 section 3.3), request id 1 on its own
// connection.
function record(type, content) {
  const pad = (8 - (content.length % 8)) % 8;
  const h = Buffer.from([1, type, 0, 1, content.length >> 8, content.length & 255, pad, 0]);
  return Buffer.concat([h, content, Buffer.alloc(pad)]);
}

function nvLen(n) {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0);
  return b;
}

function params(p) {
  const parts = [];
  for (const [k, v] of Object.entries(p)) {
    const kb = Buffer.from(k);
    const vb = Buffer.from(v);
    parts.push(nvLen(kb.length), nvLen(vb.length), kb, vb);
  }
  return Buffer.concat(parts);
}

// One request.  resolves `open` when the first output arrives (the head of
// a stream), `done` with the whole output at FCGI_END_REQUEST.
function request(method, uri, body = '', extra = {}) {
  const s = net.connect(SOCK);
  let out = Buffer.alloc(0);
  let buf = Buffer.alloc(0);
  let openResolve;
  const open = new Promise((r) => { openResolve = r; });
  const done = new Promise((resolve, reject) => {
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 8) {
        const len = buf.readUInt16BE(4);
        const total = 8 + len + buf[6];
        if (buf.length < total) break;
        const type = buf[1];
        const content = buf.subarray(8, 8 + len);
        buf = buf.subarray(total);
        if (type === 6 && len) {            // FCGI_STDOUT
          out = Buffer.concat([out, content]);
          openResolve(out.toString());
        } else if (type === 3) {            // FCGI_END_REQUEST
          openResolve(out.toString());
          resolve(out.toString());
          s.end();
        }
      }
    });
    s.on('error', reject);
    s.on('close', () => reject(new Error(`${uri}: closed before the end of the request`)));
  });
  done.catch(() => {});
  const b = Buffer.from(body);
  const p = {
    GATEWAY_INTERFACE: 'CGI/1.1', REQUEST_METHOD: method, REQUEST_URI: uri,
    SCRIPT_NAME: '', PATH_INFO: uri.split('?')[0], QUERY_STRING: uri.split('?')[1] || '',
    SERVER_PROTOCOL: 'HTTP/1.1', REMOTE_ADDR: '127.0.0.1', SERVER_NAME: 'localhost',
    SERVER_PORT: '80', ...extra,
  };
  if (b.length) {
    p.CONTENT_LENGTH = String(b.length);
    p.CONTENT_TYPE = 'application/json';
  }
  s.write(Buffer.concat([
    record(1, Buffer.from([0, 1, 0, 0, 0, 0, 0, 0])),       // BEGIN_REQUEST, responder
    record(4, params(p)), record(4, Buffer.alloc(0)),
    ...(b.length ? [record(5, b)] : []), record(5, Buffer.alloc(0)),
  ]));
  return { s, open, done };
}

function withTimeout(p, ms, what) {
  let t;
  return Promise.race([p, new Promise((_, rej) => {
    t = setTimeout(() => rej(new Error(`${what}: nothing within ${ms} ms`)), ms);
  })]).finally(() => clearTimeout(t));
}

// Near RLIMIT_NOFILE (the responder's soft limit lowered to what it holds
// plus 3): connections past it are closed at once rather than left to hang
// in the backlog, without a busy loop; a call in flight completes; once
// descriptors are free again requests are served.
async function nofile() {
  const r = await withTimeout(request('GET', '/api/v1/servers/fake/tools').done, 20000, 'warm-up');
  assert.match(r, /"tools"/, r.slice(0, 200));
  const sockets = () => [...fdLinks(PID).values()].filter((l) => l.startsWith('socket:')).length;
  const before = sockets();
  const slow = request('POST', '/api/v1/tools/call', JSON.stringify({
    serverId: 'fake', toolName: 'sleep', params: { ms: 2500, message: 'survivor' } }));
  for (const t0 = Date.now(); sockets() <= before && Date.now() - t0 < 3000;)
    await new Promise((r) => setTimeout(r, 10));
  const limits = fs.readFileSync(`/proc/${PID}/limits`, 'utf8');
  const hard = limits.match(/Max open files\s+\d+\s+(\d+)/)[1];
  const soft = fdLinks(PID).size + 3;
  require('node:child_process').execFileSync('prlimit', [`--pid=${PID}`, `--nofile=${soft}:${hard}`]);
  const idle = [];
  const closed = [];
  for (let i = 0; i < 10; i++) {
    const s = net.connect(SOCK);
    const t0 = Date.now();
    s.on('close', () => closed.push(Date.now() - t0));
    s.on('error', () => {});
    idle.push(s);
  }
  const cpu0 = cpuMs(PID);
  const t0 = Date.now();
  while (closed.length < 5 && Date.now() - t0 < 3000) await new Promise((r) => setTimeout(r, 20));
  assert.ok(closed.length >= 5, `only ${closed.length} of 10 connections past the limit were closed`);
  assert.ok(Math.max(...closed) < 2000, `refusals took ${closed} ms`);
  await new Promise((r) => setTimeout(r, 1500));
  const spent = cpuMs(PID) - cpu0;
  assert.ok(spent < 400, `the responder used ${spent} ms of CPU while out of descriptors`);
  console.log(`ok 1 - at ${soft} descriptors, ${closed.length} of 10 new connections were ` +
              `closed within ${Math.max(...closed)} ms; ${spent} ms CPU in ${Date.now() - t0} ms`);
  const answer = await withTimeout(slow.done, 10000, 'the call in flight');
  assert.match(answer, /"success":true/, answer.slice(0, 300));
  assert.ok(answer.includes('survivor'), answer.slice(0, 300));
  console.log('ok 2 - the call in flight completed');
  for (const s of idle) s.destroy();
  require('node:child_process').execFileSync('prlimit', [`--pid=${PID}`, `--nofile=${hard}:${hard}`]);
  const h = await withTimeout(request('GET', '/api/v1/health').done, 10000, 'health afterwards');
  assert.match(h, /"status":"ok"/, h.slice(0, 300));
  console.log('ok 3 - served again once descriptors were free');
  process.exit(0);
}

(async () => {
  if (process.argv[4] === 'nofile') return nofile();
  // Start every server first, so that all of them are there to inspect.
  for (const id of ['fake', 'crashy', 'everything']) {
    const r = await withTimeout(request('GET', `/api/v1/servers/${id}/tools`).done, 20000, id);
    assert.match(r, /^Status: 200|"tools"/, r.slice(0, 200));
  }
  const streams = [];
  for (let i = 0; i < STREAMS; i++) streams.push(request('GET', '/api/v1/events'));
  const calls = [];
  for (let i = 0; i < CALLS; i++) {
    const server = ['fake', 'crashy'][i % 2];
    calls.push(request('POST', '/api/v1/tools/call', JSON.stringify({
      serverId: server, toolName: 'sleep', params: { ms: 2500, message: `c${i}` } })));
  }
  const heads = await withTimeout(Promise.all(streams.map((x) => x.open)), 10000, 'the streams');
  for (const h of heads) assert.match(h, /Content-Type: text\/event-stream/i, h.slice(0, 200));
  // The calls are in flight when the responder holds their connections.
  const sockets = () => [...fdLinks(PID).values()].filter((l) => l.startsWith('socket:')).length;
  const t0 = Date.now();
  while (sockets() < STREAMS + CALLS && Date.now() - t0 < 5000)
    await new Promise((r) => setTimeout(r, 20));
  assert.ok(sockets() >= STREAMS + CALLS, `the responder holds ${sockets()} sockets`);

  const kids = children(PID);
  assert.equal(kids.length, 3, JSON.stringify(kids));
  const held = new Set([...fdLinks(PID).values()].filter((l) => !/^(anon_inode:|\/dev\/)/.test(l)));
  for (const k of kids) {
    const fds = fdLinks(k.pid);
    for (const fd of [0, 1, 2])
      assert.match(fds.get(fd) || '', /^pipe:/, `${k.cmd}: fd ${fd} is ${fds.get(fd)}`);
    for (const [fd, l] of fds)
      if (fd > 2) assert.ok(!held.has(l), `${k.cmd} holds fd ${fd} -> ${l} of the responder's`);
    if (/fake_mcp/.test(k.cmd))
      assert.deepEqual([...fds.keys()].sort((a, b) => a - b), [0, 1, 2], `${k.cmd}: ${[...fds]}`);
  }
  console.log(`ok 1 - ${kids.length} MCP servers hold only their own fds while the responder ` +
              `serves ${STREAMS} streams and ${CALLS} calls`);

  const answers = await withTimeout(Promise.all(calls.map((x) => x.done)), 20000, 'the calls');
  answers.forEach((a, i) => {
    assert.match(a, /"success":true/, a.slice(0, 300));
    assert.ok(a.includes(`"c${i}"`), a.slice(0, 300));
  });
  console.log(`ok 2 - all ${CALLS} calls completed`);
  for (const x of streams) x.s.destroy();
  process.exit(0);
})().catch((e) => {
  console.log('not ok - fcgi hygiene');
  console.log(e && e.stack ? e.stack : e);
  process.exit(1);
});
