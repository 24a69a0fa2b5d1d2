// quota.js - per-token limits on tool calls over /ws (gateway.tokenLimits),
// against a real mcpgw-wsd (tests/wsd-quota.test).
//
// LIMITS=concurrency: maxConcurrentCalls is MAX (2): a call past it gets
// `error` code rate_limited with its id at once, the connection stays open,
// the limit is the token's (every connection of it counts, other tokens do
// not), and the token's count goes back to zero however a call ends -
// result, tool error, refusal by the server, timeout, cancel, the MCP server
// crashing, the client going away.  The daemon's REST routes count in the
// same table as its WebSocket sessions.
// LIMITS=rate: callsPerSecond 2 with a burst of 3: three calls pass, the
// next are refused at once with a retry hint, and the allowance refills.
'use strict';

const { Client, assert, sleep, run, URL: WSURL, PORT } = require('./lib');

const T = JSON.parse(process.env.TOKENS);
const MAX = 2;
const bearer = (t) => ({ headers: { Authorization: `Bearer ${t}` } });
let seq = 0;

// Send calls, then a ping; the daemon handles a connection's messages in
// order, so every refusal made at once is queued before the pong.
async function burst(c, calls) {
  const ids = calls.map(() => `q${++seq}`);
  calls.forEach(([server, tool, params], i) => c.call(ids[i], server, tool, params));
  const ping = `p${++seq}`;
  c.send({ type: 'ping', id: ping });
  await c.next((m) => m.type === 'pong' && m.id === ping);
  const refused = ids.filter((id) => c.queue.some((m) => m.id === id && m.type === 'error' &&
                                                         m.data.code === 'rate_limited'));
  return { ids, refused };
}

const slow = (ms) => ['fake', 'sleep', { ms }];

// The token's count is zero: exactly MAX calls fit, the next is refused.
// Waits (bounded) for a count that is still coming down, as after a client
// went away: the daemon sees the close after the client sent it.
async function assertIdle(c, what) {
  const deadline = Date.now() + 5000;
  for (;;) {
    const { ids, refused } = await burst(c, Array.from({ length: MAX + 1 }, () => slow(300)));
    for (const id of ids) await c.answer(id);
    if (refused.length === 1 && refused[0] === ids[MAX]) return;
    assert.ok(Date.now() < deadline, `${what}: the token's calls did not come back to zero ` +
              `(refused ${refused.length} of ${ids.length})`);
    await sleep(50);
  }
}

const concurrency = [
  ['a call past maxConcurrentCalls: rate_limited with its id, at once', async () => {
    const c = await Client.connect(WSURL, bearer(T.a));
    const t0 = Date.now();
    const { ids, refused } = await burst(c, [slow(1000), slow(1000), ['fake', 'echo', {}]]);
    assert.deepEqual(refused, [ids[2]]);
    const e = await c.answer(ids[2]);
    assert.equal(e.type, 'error');
    assert.equal(e.data.code, 'rate_limited');
    assert.match(e.data.error, /token 'a' has 2 calls in flight.*maxConcurrentCalls/);
    assert.ok(Date.now() - t0 < 1000, 'refused at once, not queued behind the calls');
    // The connection stays open and serves what else it may.
    c.send({ type: 'list_servers', id: 'ls' });
    assert.equal((await c.next((m) => m.id === 'ls')).type, 'server_list');
    // The limit is the token's: another connection of it is full too ...
    const c2 = await Client.connect(WSURL, bearer(T.a));
    const r2 = await burst(c2, [['fake', 'echo', {}]]);
    assert.deepEqual(r2.refused, r2.ids);
    // ... while another token is not held back.
    const b = await Client.connect(WSURL, bearer(T.b));
    b.call('b1', 'fake', 'echo', { message: 'free' });
    assert.equal((await b.answer('b1')).type, 'tool_response');
    for (const id of ids.slice(0, 2)) assert.equal((await c.answer(id)).type, 'tool_response');
    await assertIdle(c2, 'results');
    await Promise.all([c.close(), c2.close(), b.close()]);
  }],

  ['REST calls of the token count with its WebSocket calls (one table)', async () => {
    const c = await Client.connect(WSURL, bearer(T.a));
    const { ids, refused } = await burst(c, [slow(1000), slow(1000)]);
    assert.deepEqual(refused, []);
    const rest = () => fetch(`http://127.0.0.1:${PORT}/api/v1/tools/call`, {
      method: 'POST',
      headers: { Authorization: `Bearer ${T.a}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ serverId: 'fake', toolName: 'echo', params: {} }),
    });
    let r = await rest();
    const body = await r.json();
    assert.equal(r.status, 429);
    assert.equal(r.headers.get('retry-after'), '1');
    assert.equal(body.code, 'rate_limited');
    assert.match(body.error, /maxConcurrentCalls/);
    for (const id of ids) assert.equal((await c.answer(id)).type, 'tool_response');
    r = await rest();
    assert.equal(r.status, 200, await r.text());
    await c.close();
  }],

  ['the count goes back to zero on every way a call ends', async () => {
    const c = await Client.connect(WSURL, bearer(T.a));
    // a tool error, a tool the server does not have, a server that is not there
    let r = await burst(c, [['fake', 'iserror', {}], ['fake', 'no_such_tool', {}]]);
    assert.deepEqual(r.refused, []);
    assert.equal((await c.answer(r.ids[0])).data.success, false);
    assert.equal((await c.answer(r.ids[1])).data.code, 'unknown_tool');
    await assertIdle(c, 'tool errors');
    // timeout (fake's callTimeoutMs is 1500)
    r = await burst(c, [['fake', 'hang', {}]]);
    assert.equal((await c.answer(r.ids[0], 5000)).data.code, 'timeout');
    await assertIdle(c, 'timeout');
    // cancel
    r = await burst(c, [slow(5000), slow(5000)]);
    for (const id of r.ids) c.send({ type: 'cancel', id });
    for (const id of r.ids) assert.equal((await c.answer(id)).data.code, 'cancelled');
    await assertIdle(c, 'cancel');
    // the MCP server crashes mid-call
    // (the sleep goes out first, so it is in flight when the crash comes)
    r = await burst(c, [['crashy', 'sleep', { ms: 3000 }], ['crashy', 'crash', {}]]);
    for (const id of r.ids) assert.equal((await c.answer(id)).data.code, 'server_unavailable');
    await assertIdle(c, 'server crash');
    // the client goes away with calls in flight
    const gone = await Client.connect(WSURL, bearer(T.a));
    r = await burst(gone, [slow(5000), slow(5000)]);
    assert.deepEqual(r.refused, []);
    gone.ws.terminate();
    await assertIdle(c, 'client gone');
    await c.close();
  }],
];

const rate = [
  ['past the burst: rate_limited at once with a retry hint; the allowance refills', async () => {
    const c = await Client.connect(WSURL, bearer(T.a));
    const t0 = Date.now();
    const { ids, refused } = await burst(c, Array.from({ length: 5 }, () => ['fake', 'echo', {}]));
    assert.deepEqual(refused, ids.slice(3));
    for (const id of ids.slice(0, 3)) assert.equal((await c.answer(id)).type, 'tool_response');
    const e = await c.answer(ids[3]);
    assert.equal(e.data.code, 'rate_limited');
    assert.match(e.data.error, /2 calls per second with a burst of 3.*retry in \d+ ms/);
    // Another token has its own allowance.
    const b = await Client.connect(WSURL, bearer(T.b));
    const rb = await burst(b, Array.from({ length: 3 }, () => ['fake', 'echo', {}]));
    assert.deepEqual(rb.refused, []);
    // At 2 per second the next call is allowed within about half a second.
    let ok = null;
    while (!ok) {
      const r = await burst(c, [['fake', 'echo', {}]]);
      if (r.refused.length === 0) ok = await c.answer(r.ids[0]);
      else await sleep(50);
      assert.ok(Date.now() - t0 < 3000, 'the allowance did not refill');
    }
    assert.equal(ok.type, 'tool_response');
    assert.ok(Date.now() - t0 >= 300, `refilled too early (${Date.now() - t0} ms)`);
    await Promise.all([c.close(), b.close()]);
  }],
];

run(process.env.LIMITS === 'rate' ? rate : concurrency);
