// auth.js - authentication and scopes on /ws, against a real mcpgw-wsd with
// requireAuth on (tests/wsd-auth.test): the auth message, the
// Authorization header, single-use tickets, tokens refused in URLs, the
// failure limit, the authentication deadline, revocation while connected,
// and the Origin check.
'use strict';

const { execFileSync } = require('node:child_process');
const { Client, assert, rawRequest, handshake, run, URL: WSURL, PORT } = require('./lib');

const T = JSON.parse(process.env.TOKENS);
const bearer = (t) => ({ headers: { Authorization: `Bearer ${t}` } });
// A ticket for the named token: from POST /api/v1/tickets when TICKET_URL
// names that route (through a web server: tests/webservers/ws-*.test), else
// from tests/wsd_ticket, which calls what the route calls.
async function ticket(name) {
  if (process.env.TICKET_URL) {
    const r = await fetch(process.env.TICKET_URL,
                          { method: 'POST', headers: { Authorization: `Bearer ${T[name]}` } });
    const body = await r.text();
    assert.equal(r.status, 200, body);
    return JSON.parse(body).ticket;
  }
  return execFileSync(process.env.TICKET, [process.env.WSD_CONF, name]).toString().trim();
}

async function refused(url, options, status) {
  const e = await Client.open(url, options).then(() => null, (x) => x);
  assert.ok(e, 'the handshake must be refused');
  assert.equal(e.statusCode, status, e.body);
  return e;
}

run([
  ['without credentials: requiresAuth, auth_required, ping works', async () => {
    const c = await Client.connect();
    assert.equal(c.status.data.requiresAuth, true);
    assert.equal(c.status.data.authenticated, undefined);
    c.call('x1', 'memory', 'read_graph', {});
    let m = await c.next();
    assert.deepEqual([m.type, m.id, m.data.code], ['error', 'x1', 'auth_required']);
    c.send({ type: 'list_servers', id: 'l1' });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code], ['l1', 'auth_required']);
    c.send({ type: 'list_tools', id: 'l2', data: { serverId: 'memory' } });
    m = await c.next();
    assert.deepEqual([m.id, m.data.code], ['l2', 'auth_required']);
    c.send({ type: 'ping', id: 'p' });
    assert.equal((await c.next()).type, 'pong');
    await c.close();
  }],

  ['auth message: status with token name and scopes; scopes rule calls', async () => {
    const c = await Client.connect();
    c.send({ type: 'auth', id: 'a1', data: { token: T.mem } });
    const st = await c.next();
    assert.equal(st.type, 'status');
    assert.equal(st.id, 'a1');
    assert.equal(st.data.message, 'authenticated');
    assert.equal(st.data.authenticated, true);
    assert.equal(st.data.tokenName, 'mem');
    assert.deepEqual(st.data.scopes, ['memory:*']);
    assert.equal(st.data.clientId, c.status.data.clientId);
    c.call('m1', 'memory', 'read_graph', {});
    assert.equal((await c.answer('m1')).type, 'tool_response');
    c.call('m2', 'everything', 'echo', { message: 'no' });
    const f = await c.answer('m2');
    assert.deepEqual([f.type, f.data.code], ['error', 'forbidden']);
    c.send({ type: 'list_servers', id: 'ls' });
    const ls = await c.next((x) => x.id === 'ls');
    assert.deepEqual(ls.data.servers.map((s) => s.id), ['memory']);
    c.send({ type: 'list_tools', id: 'lt', data: { serverId: 'everything' } });
    const lt = await c.next((x) => x.id === 'lt');
    assert.deepEqual([lt.type, lt.data.code], ['error', 'forbidden']);
    c.send({ type: 'list_tools', id: 'lt2', data: { serverId: 'memory' } });
    const lt2 = await c.next((x) => x.id === 'lt2');
    assert.equal(lt2.type, 'tool_list');
    assert.ok(lt2.data.tools.some((t) => t.name === 'search_nodes'));
    await c.close();
  }],

  ['a failed auth leaves the connection as it was; too many close it (1008)', async () => {
    const c = await Client.connect();
    c.send({ type: 'auth', id: 'g', data: { token: T.all } });
    assert.equal((await c.next()).data.tokenName, 'all');
    c.send({ type: 'auth', id: 'b1', data: { token: 'mcpgw_wrong' } });
    let m = await c.next();
    assert.deepEqual([m.type, m.id, m.data.code], ['error', 'b1', 'auth_failed']);
    c.call('still', 'fake', 'echo', { message: 'still' });
    assert.equal((await c.answer('still')).type, 'tool_response');
    c.send({ type: 'auth', id: 'b2', data: { token: T.mem.slice(0, -1) + 'x' } });
    m = await c.next();
    assert.equal(m.data.code, 'auth_failed');
    c.send({ type: 'auth', id: 'b3', data: { token: 'x' } });
    m = await c.next();
    assert.equal(m.data.code, 'auth_failed');
    const cl = await c.waitClose();
    assert.equal(cl.code, 1008);
    assert.equal(cl.reason, 'too many failed authentications');
  }],

  ['Authorization header: authenticated from the first status', async () => {
    const c = await Client.connect(WSURL, bearer(T.echo));
    assert.equal(c.status.data.authenticated, true);
    assert.equal(c.status.data.tokenName, 'echo');
    assert.deepEqual(c.status.data.scopes, ['everything:echo']);
    c.call('e', 'everything', 'echo', { message: 'hi' });
    assert.equal((await c.answer('e')).data.result.content[0].text, 'Echo: hi');
    c.call('s', 'everything', 'get-sum', { a: 1, b: 2 });
    assert.equal((await c.answer('s')).data.code, 'forbidden');
    c.send({ type: 'list_tools', id: 'lt', data: { serverId: 'everything' } });
    const lt = await c.next((x) => x.id === 'lt');
    assert.deepEqual(lt.data.tools.map((t) => t.name), ['echo']);
    await c.close();
  }],

  ['a bad Authorization header gets 401 before any upgrade, one 401 for all', async () => {
    // The same answer as the REST routes give (docs/security.md): no client
    // learns whether a token is malformed, unknown, revoked or expired.
    const first = await refused(WSURL, bearer('mcpgw_not_a_real_token'), 401);
    assert.equal(first.headers['www-authenticate'], 'Bearer realm="mcpgw"');
    assert.deepEqual(JSON.parse(first.body), {
      error: 'authentication required: send a valid token (Authorization: Bearer <token>)',
      code: 'auth_required',
    });
    for (const h of [`Basic ${T.all}`, 'Bearer', `Bearer ${T.all.slice(0, -1)}x`,
                     `Bearer mcpgw_${'A'.repeat(43)}_00000000`]) {
      const e = await refused(WSURL, { headers: { Authorization: h } }, 401);
      assert.equal(e.body, first.body);
      assert.equal(e.headers['www-authenticate'], first.headers['www-authenticate']);
      assert.equal(e.body.includes(T.all), false);
    }
  }],

  ['tokens in the URL are refused', async () => {
    let e = await refused(`${WSURL}?access_token=${T.all}`, {}, 400);
    assert.match(JSON.parse(e.body).error, /not accepted in URLs/);
    e = await refused(`${WSURL}?token=${T.all}`, {}, 400);
    assert.equal(JSON.parse(e.body).code, 'bad_request');
  }],

  ['a ticket authenticates once', async () => {
    const t = await ticket('tk');
    assert.match(t, /^mcpgwt_[A-Za-z0-9_-]{43}$/);
    const c = await Client.connect(`${WSURL}?ticket=${t}`);
    assert.equal(c.status.data.authenticated, true);
    assert.equal(c.status.data.tokenName, 'tk');
    assert.deepEqual(c.status.data.scopes, ['memory:*']);
    c.call('r', 'memory', 'read_graph', {});
    assert.equal((await c.answer('r')).type, 'tool_response');
    c.call('f', 'fake', 'echo', {});
    assert.equal((await c.answer('f')).data.code, 'forbidden');
    await c.close();
    const e = await refused(`${WSURL}?ticket=${t}`, {}, 401);
    assert.equal(JSON.parse(e.body).code, 'auth_required');
    assert.equal(e.headers['www-authenticate'], 'Bearer realm="mcpgw"');
    const u = await refused(`${WSURL}?ticket=mcpgwt_${'A'.repeat(43)}`, {}, 401);
    assert.equal(u.body, e.body);
    await refused(`${WSURL}?ticket=${await ticket('tk')}`, bearer(T.all), 400);
  }],

  ['a connection that does not authenticate in time is closed (1008)', async () => {
    const c = await Client.connect();
    const t0 = Date.now();
    const cl = await c.waitClose(5000);
    assert.equal(cl.code, 1008);
    assert.equal(cl.reason, 'authentication timed out');
    assert.ok(Date.now() - t0 >= 1000);
  }],

  ['revoking a token closes its connections (1008)', async () => {
    const c = await Client.connect(WSURL, bearer(T.rev));
    const other = await Client.connect(WSURL, bearer(T.all));
    execFileSync(process.env.MCPGW, ['-c', process.env.WSD_CONF, 'token', 'revoke', 'rev']);
    const cl = await c.waitClose(5000);
    assert.equal(cl.code, 1008);
    assert.equal(cl.reason, 'token revoked or expired');
    // Others are untouched.
    other.send({ type: 'ping', id: 'alive' });
    assert.equal((await other.next()).type, 'pong');
    await other.close();
    const e = await refused(WSURL, bearer(T.rev), 401);
    assert.equal(JSON.parse(e.body).code, 'auth_required');
  }],

  ['a token that expires while connected: the connection is closed (1008)', async () => {
    // The CLI sets expiry in days; set it to a few seconds from now in the
    // file itself, as an operator's tooling could.
    const file = `${require('node:path').dirname(process.env.WSD_CONF)}/tokens.json`;
    const store = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
    const entry = store.tokens.find((t) => t.name === 'exp');
    entry.expires = Math.floor(Date.now() / 1000) + 3;
    require('node:fs').writeFileSync(file, JSON.stringify(store));
    await new Promise((r) => setTimeout(r, 1500));     // the daemon rereads it within 1 s
    const c = await Client.connect(WSURL, bearer(T.exp));
    assert.equal(c.status.data.tokenName, 'exp');
    const cl = await c.waitClose(8000);
    assert.equal(cl.code, 1008);
    assert.equal(cl.reason, 'token revoked or expired');
    await refused(WSURL, bearer(T.exp), 401);
  }],

  ['Origin: loopback and same-origin pages pass, others get 403', async () => {
    const ok = async (origin) => {
      const r = await rawRequest(handshake(`Origin: ${origin}\r\n`));
      assert.equal(r.status, 101, `${origin}: ${r.raw.slice(0, 200)}`);
    };
    const no = async (origin) => {
      const r = await rawRequest(handshake(`Origin: ${origin}\r\n`));
      assert.equal(r.status, 403, `${origin}: ${r.raw.slice(0, 200)}`);
      assert.equal(JSON.parse(r.body).code, 'forbidden');
    };
    await ok('http://localhost:5173');
    await ok('https://LOCALHOST');
    await ok('http://127.0.0.1:8080');
    await ok('http://[::1]:3000');
    await ok(`http://127.0.0.1:${PORT}`);
    await no('http://evil.example');
    await no('http://localhost.evil.example');
    await no('null');
    await no('file://');
    await no('http://127.0.0.1.evil.example:80');
  }],
]);
