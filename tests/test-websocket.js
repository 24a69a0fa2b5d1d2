#!/usr/bin/env node
// test-websocket.js - check a running gateway's WebSocket by hand.
//
//   node tests/test-websocket.js [ws://localhost:3000/ws] [TOKEN]
//
// The port of the script our users ran against the Node gateway, on the
// same messages: it connects, reads the status message, authenticates when
// given a token (or checks that calls are refused without one when the
// gateway requires auth), sends a ping, makes a tool call, and provokes the
// errors a client must handle (unknown server, malformed message).  It
// prints one line per check and exits 0 only if every check passed.
// The token may also come from $MCPGW_TOKEN, so it stays out of `ps`.
'use strict';

const path = require('node:path');

let WebSocket;
try {
  WebSocket = require('ws');
} catch (e) {
  WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));
}

const url = process.argv[2] || 'ws://localhost:3000/ws';
const token = process.argv[3] || process.env.MCPGW_TOKEN || '';
const TIMEOUT = 15000;

let passed = 0;
let failed = 0;
function check(ok, what, detail) {
  if (ok) {
    passed++;
    console.log(`  ok    ${what}`);
  } else {
    failed++;
    console.log(`  FAIL  ${what}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
}

const ws = new WebSocket(url);
const queue = [];
let wake = null;
ws.on('message', (data) => {
  try {
    queue.push(JSON.parse(data.toString()));
  } catch (e) {
    queue.push({ type: '(not JSON)', raw: data.toString() });
  }
  if (wake) wake();
});

function next(pred) {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + TIMEOUT;
    const look = () => {
      const i = queue.findIndex(pred);
      if (i >= 0) return resolve(queue.splice(i, 1)[0]);
      if (Date.now() > deadline) return reject(new Error('no answer'));
      wake = look;
      setTimeout(look, 200);
    };
    look();
  });
}

const send = (m) => ws.send(JSON.stringify({ ...m, timestamp: Date.now() }));
const byId = (id) => (m) => m.id === id && m.type !== 'tool_progress';

async function main() {
  console.log(`connecting to ${url}`);
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
    ws.once('error', reject);
  });

  const status = await next((m) => m.type === 'status');
  check(typeof status.data.clientId === 'string', 'status on connect',
        `got ${JSON.stringify(status)}`);
  console.log(`        ${status.data.message}; client ${status.data.clientId}; ` +
              `auth ${status.data.requiresAuth ? 'required' : 'not required'}`);

  // Authentication.
  let allowed = !status.data.requiresAuth || status.data.authenticated === true;
  if (token) {
    send({ type: 'auth', id: 'auth-1', data: { token } });
    const a = await next(byId('auth-1'));
    allowed = check(a.type === 'status' && a.data.authenticated === true, 'auth with the token',
                    a.data && (a.data.error || JSON.stringify(a.data)));
    if (allowed) console.log(`        token '${a.data.tokenName}', scopes ${a.data.scopes.join(' ')}`);
  } else if (!allowed) {
    send({ type: 'tool_call', id: 'noauth-1', data: { serverId: 'x', toolName: 'y' } });
    const e = await next(byId('noauth-1'));
    check(e.type === 'error' && e.data.code === 'auth_required',
          'calls are refused before auth (pass a token to go further)', JSON.stringify(e));
  }

  // Ping.
  const t0 = Date.now();
  send({ type: 'ping', id: 'ping-1' });
  const pong = await next(byId('ping-1'));
  check(pong.type === 'pong', `ping answered in ${Date.now() - t0} ms`, JSON.stringify(pong));

  if (allowed) {
    // A tool call: the first server this token may use, with a tool that
    // needs no particular arguments when one is known.
    send({ type: 'list_servers', id: 'servers-1' });
    const list = await next(byId('servers-1'));
    const servers = (list.data && list.data.servers) || [];
    check(list.type === 'server_list', `list_servers: ${servers.map((s) => `${s.id} (${s.state})`).join(', ') || 'none'}`);
    const pick = [['everything', 'echo', { message: 'hello from test-websocket.js' }],
                  ['memory', 'read_graph', {}],
                  ['echo', 'echo', { message: 'hello' }]]
      .find(([id]) => servers.some((s) => s.id === id));
    if (pick) {
      const [serverId, toolName, params] = pick;
      const c0 = Date.now();
      send({ type: 'tool_call', id: 'call-1', data: { serverId, toolName, params } });
      const r = await next(byId('call-1'));
      check(r.type === 'tool_response' && r.data.success === true,
            `tool_call ${serverId}:${toolName} in ${Date.now() - c0} ms`, JSON.stringify(r.data));
      if (r.type === 'tool_response') {
        const text = (r.data.result.content || []).map((c) => c.text).join(' ');
        console.log(`        ${text.slice(0, 100)}`);
      }
    } else {
      console.log('        (no everything, memory or echo server: tool call skipped)');
    }

    // Errors a client must handle.
    send({ type: 'tool_call', id: 'err-1', data: { serverId: 'no-such-server', toolName: 'x' } });
    const e1 = await next(byId('err-1'));
    check(e1.type === 'error' && e1.data.code === 'unknown_server', 'unknown server gives unknown_server',
          JSON.stringify(e1));
  }
  ws.send('{this is not json');
  const e2 = await next((m) => m.type === 'error' && m.id === undefined);
  check(e2.data.code === 'bad_request', 'malformed message gives bad_request', JSON.stringify(e2));

  await new Promise((resolve) => {
    ws.once('close', resolve);
    ws.close(1000, 'done');
  });
  check(true, 'closed cleanly');
}

main().then(() => {
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed ? 1 : 0);
}, (e) => {
  console.log(`  FAIL  ${e.message}`);
  console.log(`${passed} passed, ${failed + 1} failed`);
  process.exit(1);
});
