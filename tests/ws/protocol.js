// protocol.js - docs/protocol.md, case by case, with the real `ws` client
// against a real mcpgw-wsd and real MCP servers (server-everything and
// server-memory from npm; fake_mcp for timing and failure cases).
// The daemon runs with requireAuth off, maxInFlightPerConnection 8 and
// maxMessageBytes 65536 (tests/wsd-protocol.test).
'use strict';

const { Client, assert, sleep, run } = require('./lib');

const answer = (c, id) => c.answer(id, 15000);

run([
  ['status is the first message', async () => {
    const c = await Client.open();
    const st = await c.next();
    assert.equal(st.type, 'status');
    assert.equal(st.id, undefined);
    assert.equal(st.data.message, 'Connected to MCP Gateway WebSocket');
    assert.match(st.data.clientId, /^c-[0-9a-f]{12}$/);
    assert.equal(st.data.requiresAuth, false);
    assert.equal(typeof st.timestamp, 'number');
    assert.ok(Math.abs(st.timestamp - Date.now()) < 60000);
    await c.close();
  }],

  ['ping gets pong with the same id, string or integer or none', async () => {
    const c = await Client.connect();
    c.send({ type: 'ping', id: 'p-1', timestamp: Date.now() });
    let m = await c.next();
    assert.equal(m.type, 'pong');
    assert.equal(m.id, 'p-1');
    assert.equal(m.data.timestamp, m.timestamp);
    c.send({ type: 'ping', id: 12 });
    m = await c.next();
    assert.deepEqual([m.type, m.id], ['pong', 12]);
    c.send({ type: 'ping' });
    m = await c.next();
    assert.equal(m.type, 'pong');
    assert.equal('id' in m, false);
    await c.close();
  }],

  ["the users' example: memory search_nodes", async () => {
    const c = await Client.connect();
    c.send({ type: 'tool_call', id: 'search-1',
             data: { serverId: 'memory', toolName: 'search_nodes', params: { query: 'x' } },
             timestamp: Date.now() });
    const m = await answer(c, 'search-1');
    assert.equal(m.type, 'tool_response', JSON.stringify(m));
    assert.equal(m.data.success, true);
    assert.equal(m.data.serverId, 'memory');
    assert.equal(m.data.toolName, 'search_nodes');
    assert.ok(Array.isArray(m.data.result.content));
    await c.close();
  }],

  ['tool_call to server-everything echo', async () => {
    const c = await Client.connect();
    c.call('e-1', 'everything', 'echo', { message: 'hello' });
    const m = await answer(c, 'e-1');
    assert.equal(m.type, 'tool_response');
    assert.equal(m.data.success, true);
    assert.equal(m.data.result.content[0].text, 'Echo: hello');
    assert.equal(m.data.serverId, 'everything');
    assert.equal(m.data.toolName, 'echo');
    await c.close();
  }],

  ['isError results are success:false with the result kept', async () => {
    const c = await Client.connect();
    c.call('ie-1', 'fake', 'iserror', {});
    let m = await answer(c, 'ie-1');
    assert.equal(m.type, 'tool_response');
    assert.equal(m.data.success, false);
    assert.equal(m.data.result.isError, true);
    assert.equal(m.data.result.content[0].text, 'tool failed');
    // A real server's own validation failure arrives the same way.
    c.call('ie-2', 'everything', 'echo', { message: 5 });
    m = await answer(c, 'ie-2');
    assert.equal(m.type, 'tool_response');
    assert.equal(m.data.success, false);
    assert.equal(m.data.result.isError, true);
    await c.close();
  }],

  ['tool_progress from a real long-running tool, all before the answer', async () => {
    const c = await Client.connect();
    c.call(7, 'everything', 'trigger-long-running-operation', { duration: 1, steps: 4 });
    const seen = [];
    for (;;) {
      const m = await c.next((x) => x.id === 7, 15000);
      if (m.type !== 'tool_progress') {
        assert.equal(m.type, 'tool_response', JSON.stringify(m));
        assert.equal(m.data.success, true);
        break;
      }
      seen.push(m.data.progress);
      assert.equal(m.data.total, 4);
    }
    assert.deepEqual(seen, [1, 2, 3, 4]);
    await c.close();
  }],

  ['tool_progress carries progress, total and message', async () => {
    const c = await Client.connect();
    c.call('pr', 'fake', 'progress', { steps: 3, intervalMs: 30 });
    for (let i = 1; i <= 3; i++) {
      const m = await c.next((x) => x.id === 'pr');
      assert.equal(m.type, 'tool_progress');
      assert.deepEqual(m.data, { progress: i, total: 3, message: `step ${i}` });
    }
    const m = await answer(c, 'pr');
    assert.equal(m.type, 'tool_response');
    assert.equal(m.data.result.content[0].text, 'progress: 3 steps done');
    await c.close();
  }],

  ['"progress": false: no progress reports are asked for, the answer still comes', async () => {
    const c = await Client.connect();
    c.send({ type: 'tool_call', id: 'np', timestamp: Date.now(),
             data: { serverId: 'fake', toolName: 'progress', params: { steps: 3, intervalMs: 30 },
                     progress: false } });
    const m = await c.next((x) => x.id === 'np');
    assert.equal(m.type, 'tool_response');
    assert.equal(m.data.result.content[0].text, 'progress: 3 steps done');
    c.send({ type: 'tool_call', id: 'bad', data: { serverId: 'fake', toolName: 'echo', progress: 1 } });
    const e = await c.next((x) => x.id === 'bad');
    assert.equal(e.type, 'error');
    assert.equal(e.data.code, 'bad_request');
    assert.match(e.data.error, /'data.progress' must be true or false/);
    await c.close();
  }],

  ['answers come as calls finish, out of order, each with its id', async () => {
    const c = await Client.connect();
    c.call('slow', 'fake', 'sleep', { ms: 600, message: 'slow done' });
    c.call('fast', 'fake', 'echo', { message: 'fast' });
    const first = await c.next((m) => m.type === 'tool_response');
    assert.equal(first.id, 'fast');
    assert.equal(first.data.result.content[0].text, 'Echo: fast');
    const second = await answer(c, 'slow');
    assert.equal(second.data.result.content[0].text, 'slow done');
    await c.close();
  }],

  ['many calls in flight; one over the limit gets rate_limited', async () => {
    const c = await Client.connect();
    for (let i = 0; i < 8; i++) c.call(`m${i}`, 'fake', 'sleep', { ms: 400, message: `m${i}` });
    c.call('m8', 'fake', 'echo', { message: 'over' });
    const over = await answer(c, 'm8');
    assert.equal(over.type, 'error');
    assert.equal(over.data.code, 'rate_limited');
    for (let i = 0; i < 8; i++) {
      const m = await answer(c, `m${i}`);
      assert.equal(m.type, 'tool_response');
      assert.equal(m.data.result.content[0].text, `m${i}`);
    }
    await c.close();
  }],

  ['a duplicate in-flight id is refused, the first call still answered', async () => {
    const c = await Client.connect();
    c.call('dup', 'fake', 'sleep', { ms: 300, message: 'first' });
    c.call('dup', 'fake', 'echo', { message: 'second' });
    const e = await c.next((m) => m.type === 'error');
    assert.equal(e.id, 'dup');
    assert.equal(e.data.code, 'bad_request');
    assert.match(e.data.error, /already in flight/);
    const m = await answer(c, 'dup');
    assert.equal(m.data.result.content[0].text, 'first');
    // Once answered, the id may be used again.
    c.call('dup', 'fake', 'echo', { message: 'again' });
    assert.equal((await answer(c, 'dup')).data.result.content[0].text, 'Echo: again');
    await c.close();
  }],

  ['cancel: error cancelled with the id, then nothing more for it', async () => {
    const c = await Client.connect();
    c.call('c-1', 'fake', 'progress', { steps: 50, intervalMs: 100 });
    await c.next((m) => m.id === 'c-1' && m.type === 'tool_progress');
    c.send({ type: 'cancel', id: 'c-1' });
    const m = await c.next((x) => x.id === 'c-1' && x.type === 'error');
    assert.equal(m.data.code, 'cancelled');
    c.queue = c.queue.filter((x) => x.id !== 'c-1');     // progress sent before the cancel
    await c.nothingFor('c-1', 400);
    // Cancelling what is not in flight is ignored, and "7" is not 7.
    c.call(7, 'fake', 'sleep', { ms: 200, message: 'seven' });
    c.send({ type: 'cancel', id: '7' });
    c.send({ type: 'cancel', id: 'nope' });
    const s = await answer(c, 7);
    assert.equal(s.type, 'tool_response');
    await c.nothingFor('nope', 200);
    await c.close();
  }],

  ['bad input gets bad_request, with the id when it could be read', async () => {
    const c = await Client.connect();
    c.send('not json');
    let m = await c.next();
    assert.deepEqual([m.type, m.id, m.data.code], ['error', undefined, 'bad_request']);
    assert.match(m.data.error, /^invalid JSON at byte 1/);
    c.send({ type: 'bogus', id: 'b-1' });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code, m.data.error], ['b-1', 'bad_request', "unknown message type 'bogus'"]);
    c.send({ type: 'tool_call', data: { serverId: 'fake', toolName: 'echo' } });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code, m.data.error], [undefined, 'bad_request', "missing 'id'"]);
    c.send({ type: 'tool_call', id: 'b-2', data: { serverId: 'fake', toolName: 'echo', params: [1] } });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code, m.data.error], ['b-2', 'bad_request', "'data.params' must be an object"]);
    c.send({ type: 'tool_call', id: 'b-3', data: { toolName: 'echo' } });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code, m.data.error], ['b-3', 'bad_request', "missing 'data.serverId'"]);
    c.send('{"type":"ping","id":1.5}');
    m = await c.next();
    assert.deepEqual([m.id, m.data.code], [undefined, 'bad_request']);
    c.send('[1,2]');
    m = await c.next();
    assert.equal(m.data.error, 'message must be a JSON object');
    // The connection is still usable.
    c.send({ type: 'ping', id: 'still' });
    assert.equal((await c.next()).type, 'pong');
    await c.close();
  }],

  ['unknown server, unknown tool, JSON-RPC error, timeout', async () => {
    const c = await Client.connect();
    c.call('u-1', 'nosuch', 'echo', {});
    let m = await answer(c, 'u-1');
    assert.deepEqual([m.type, m.data.code], ['error', 'unknown_server']);
    c.call('u-2', 'everything', 'no_such_tool', {});
    m = await answer(c, 'u-2');
    assert.deepEqual([m.type, m.data.code], ['error', 'unknown_tool']);
    c.call('u-3', 'fake', 'error', { code: -32001, message: 'nope' });
    m = await answer(c, 'u-3');
    assert.deepEqual([m.type, m.data.code], ['error', 'tool_error']);
    const t0 = Date.now();
    c.call('u-4', 'fake', 'hang', {});
    m = await answer(c, 'u-4');
    assert.deepEqual([m.type, m.data.code], ['error', 'timeout']);
    assert.ok(Date.now() - t0 >= 1400, 'the call timeout is the server\'s callTimeoutMs');
    await c.close();
  }],

  ['list_servers and list_tools', async () => {
    const c = await Client.connect();
    c.send({ type: 'list_servers', id: 'ls' });
    let m = await c.next((x) => x.id === 'ls');
    assert.equal(m.type, 'server_list');
    assert.deepEqual(m.data.servers.map((s) => s.id), ['everything', 'memory', 'fake', 'crashy']);
    for (const s of m.data.servers) {
      assert.match(s.state, /^(idle|starting|ready|backing-off|stopping|disabled)$/);
      assert.equal(typeof s.tools, 'number');
    }
    c.send({ type: 'list_tools', id: 'lt', data: { serverId: 'everything' } });
    m = await c.next((x) => x.id === 'lt');
    assert.equal(m.type, 'tool_list');
    assert.equal(m.data.serverId, 'everything');
    const echo = m.data.tools.find((t) => t.name === 'echo');
    assert.ok(echo && echo.inputSchema, 'echo with its inputSchema');
    c.send({ type: 'list_tools', id: 'lt2', data: { serverId: 'nosuch' } });
    m = await c.next((x) => x.id === 'lt2');
    assert.deepEqual([m.type, m.data.code], ['error', 'unknown_server']);
    c.send({ type: 'list_servers' });
    m = await c.next();
    assert.equal(m.type, 'server_list');
    assert.equal('id' in m, false);
    await c.close();
  }],

  ['integer and long string ids come back unchanged', async () => {
    const c = await Client.connect();
    const long = 'x'.repeat(128);
    c.call(9007199254740991, 'fake', 'echo', { message: 'big' });
    c.call(long, 'fake', 'echo', { message: 'long' });
    c.call(-3, 'fake', 'echo', { message: 'neg' });
    assert.equal((await answer(c, 9007199254740991)).type, 'tool_response');
    assert.equal((await answer(c, long)).type, 'tool_response');
    assert.equal((await answer(c, -3)).type, 'tool_response');
    c.call('x'.repeat(129), 'fake', 'echo', {});
    const m = await c.next();
    assert.deepEqual([m.id, m.data.code], [undefined, 'bad_request']);
    await c.close();
  }],

  ['a message over maxMessageBytes closes with 1009', async () => {
    const c = await Client.connect();
    c.send(JSON.stringify({ type: 'ping', id: 'big', data: { pad: 'p'.repeat(70000) } }));
    const cl = await c.waitClose();
    assert.equal(cl.code, 1009);
  }],

  ['a binary message closes with 1003', async () => {
    const c = await Client.connect();
    c.ws.send(Buffer.from('{"type":"ping"}'), { binary: true });
    const cl = await c.waitClose();
    assert.equal(cl.code, 1003);
  }],

  ['a client close is answered and the socket released', async () => {
    const c = await Client.connect();
    const cl = await c.close(4001);
    assert.equal(cl.code, 4001);
    await sleep(10);
  }],
]);
