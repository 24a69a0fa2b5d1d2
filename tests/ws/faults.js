// faults.js - what goes wrong, on a real mcpgw-wsd (tests/wsd-faults.test):
// an MCP server crashing mid-call, a client vanishing mid-call, a client
// that stops reading, and a thousand connections coming and going.
'use strict';

const { Client, assert, sleep, log, rssKiB, fdCount, waitFor, run } = require('./lib');

run([
  ['an MCP server crash fails that call only; the next call works', async () => {
    const c = await Client.connect();
    const other = await Client.connect();
    other.call('o', 'fake', 'sleep', { ms: 400, message: 'other' });
    c.call('k', 'crashy', 'crash', { afterMs: 100 });
    const m = await c.answer('k');
    assert.equal(m.type, 'error');
    assert.equal(m.data.code, 'server_unavailable');
    assert.match(m.data.error, /crashy/);
    assert.equal((await other.answer('o')).data.result.content[0].text, 'other');
    // The server restarts after its back-off (50 ms); until then a call may
    // be refused as unavailable, after it every call works.
    let i = 0;
    const ok = await waitFor(async () => {
      const id = `n${i++}`;
      c.call(id, 'crashy', 'echo', { message: 'back' });
      const a = await c.answer(id);
      return a.type === 'tool_response' ? a : (assert.equal(a.data.code, 'server_unavailable'), null);
    }, 5000, 'the restarted server');
    assert.equal(ok.data.result.content[0].text, 'Echo: back');
    await c.close();
    await other.close();
  }],

  ['a client that vanishes mid-call: calls cancelled upstream, nothing reaches others', async () => {
    const a = await Client.connect();
    const b = await Client.connect();
    a.call('same', 'fake', 'sleep', { ms: 700, message: 'for a' });
    a.call('deaf-1', 'deaf', 'sleep', { ms: 700, message: 'for a' });
    b.call('same', 'fake', 'sleep', { ms: 300, message: 'for b' });
    await sleep(100);
    a.ws.terminate();
    const m = await b.answer('same');
    assert.equal(m.data.result.content[0].text, 'for b');
    await b.nothingFor('same', 1000);
    // Upstream: fake honours notifications/cancelled and never answers; the
    // same server run with --ignore-cancel ("deaf") answers anyway, and the
    // gateway drops that late answer.  So the cancel was sent to both.
    await waitFor(() => log().includes("server 'deaf': dropped late response"), 3000,
                  'the late answer from the server that ignores cancels');
    assert.equal(log().includes("server 'fake': dropped late response"), false);
    assert.match(log(), /cancelling 2 calls in flight: the client went away/);
    await b.close();
  }],

  ['a client that stops reading: bounded memory, closed past the hard mark', async () => {
    const rss0 = rssKiB();
    const slow = await Client.connect();
    slow.ws._socket.pause();
    for (let i = 0; i < 40; i++) slow.call(`b${i}`, 'fake', 'big', { bytes: 1000000 });
    // Others are served while it hangs.
    const fast = await Client.connect();
    fast.send({ type: 'ping', id: 'quick' });
    assert.equal((await fast.next()).type, 'pong');
    await waitFor(() => /closing: it does not read its messages/.test(log()), 15000,
                  'the slow reader to be cut off');
    const grown = rssKiB() - rss0;
    assert.ok(grown < 48 * 1024, `daemon RSS grew by ${grown} KiB`);
    slow.ws._socket.resume();
    const cl = await slow.waitClose(15000);
    // 1008 if our close frame got through before the close timeout.
    assert.ok(cl.code === 1008 || cl.code === 1006, `close code ${cl.code}`);
    fast.send({ type: 'ping', id: 'after' });
    assert.equal((await fast.next()).type, 'pong');
    await fast.close();
  }],

  ['1000 connections open and close; every fd is released', async () => {
    const fd0 = fdCount();
    const before = (log().match(/ connected from /g) || []).length;
    for (let round = 0; round < 5; round++) {
      const cs = await Promise.all(Array.from({ length: 200 }, () => Client.connect()));
      for (const c of cs) assert.equal(c.status.type, 'status');
      await Promise.all(cs.map((c) => c.close()));
    }
    await waitFor(() => fdCount() <= fd0, 10000, `the fd count to return to ${fd0}`);
    await waitFor(() => (log().match(/ connected from /g) || []).length - before === 1000, 5000,
                  '1000 connect lines');
    await waitFor(() => (log().match(/ disconnected from /g) || []).length >= before + 1000, 5000,
                  '1000 disconnect lines');
  }],
]);
