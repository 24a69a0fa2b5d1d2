// ops.js - operating the daemon (tests/wsd-ops.test), one scenario per run:
//   node ops.js drain    SIGTERM with calls in flight
//   node ops.js hup      SIGHUP: new settings, revoked token, bad config, mcpServers
//   node ops.js limits   connection limits answered with precise 503s
//   node ops.js unix     the same protocol over a unix socket
'use strict';

const fs = require('node:fs');
const { execFileSync } = require('node:child_process');
const { Client, assert, sleep, log, waitFor, run, URL: WSURL } = require('./lib');

const pid = Number(process.env.WSD_PID);
const T = process.env.TOKENS ? JSON.parse(process.env.TOKENS) : {};
const bearer = (t) => ({ headers: { Authorization: `Bearer ${t}` } });

const scenarios = {
  drain: [
    ['SIGTERM: calls finish in the grace period, the rest are cancelled, then 1001', async () => {
      const c = await Client.connect();
      c.call('s', 'crashy', 'sleep', { ms: 800, message: 'finished in grace' });
      c.call('h', 'crashy', 'hang', {});
      await sleep(100);
      const t0 = Date.now();
      process.kill(pid, 'SIGTERM');
      // No new connections while draining.
      await waitFor(() => Client.open().then((x) => { x.ws.terminate(); return false; }, () => true),
                    3000, 'new connections to be refused');
      const s = await c.answer('s');
      assert.equal(s.type, 'tool_response');
      assert.equal(s.data.result.content[0].text, 'finished in grace');
      const h = await c.answer('h', 20000);
      assert.deepEqual([h.type, h.data.code], ['error', 'cancelled']);
      assert.equal(h.data.error, 'gateway is shutting down: call cancelled');
      assert.ok(Date.now() - t0 >= 9000, 'waited for the grace period');
      const cl = await c.waitClose();
      assert.equal(cl.code, 1001);
      assert.equal(cl.reason, 'gateway shutting down');
    }],
  ],

  hup: [
    ['SIGHUP applies new limits without dropping connections', async () => {
      const c = await Client.connect(WSURL, bearer(T.keep));
      const conf = JSON.parse(fs.readFileSync(process.env.WSD_CONF, 'utf8'));
      conf.gateway.limits = { maxInFlightPerConnection: 2 };
      fs.writeFileSync(process.env.WSD_CONF, JSON.stringify(conf));
      process.kill(pid, 'SIGHUP');
      await waitFor(() => log().includes("SIGHUP: reloading"), 5000, 'the reload');
      await sleep(100);
      for (let i = 0; i < 3; i++) c.call(`l${i}`, 'fake', 'sleep', { ms: 200, message: `l${i}` });
      const third = await c.answer('l2');
      assert.deepEqual([third.type, third.data.code], ['error', 'rate_limited']);
      assert.equal((await c.answer('l0')).type, 'tool_response');
      assert.equal((await c.answer('l1')).type, 'tool_response');
      await c.close();
    }],
    ['a token revoked before a SIGHUP: its connections close with 1008', async () => {
      const gone = await Client.connect(WSURL, bearer(T.hup));
      const kept = await Client.connect(WSURL, bearer(T.keep));
      execFileSync(process.env.MCPGW, ['-c', process.env.WSD_CONF, 'token', 'revoke', 'hup']);
      process.kill(pid, 'SIGHUP');
      const cl = await gone.waitClose(5000);
      assert.equal(cl.code, 1008);
      kept.send({ type: 'ping', id: 'k' });
      assert.equal((await kept.next()).type, 'pong');
      await kept.close();
    }],
    ['a broken config on SIGHUP is refused; the daemon runs on', async () => {
      const c = await Client.connect(WSURL, bearer(T.keep));
      const good = fs.readFileSync(process.env.WSD_CONF, 'utf8');
      fs.writeFileSync(process.env.WSD_CONF, '{"gateway": {"limits": {"maxConnections": -1}}}');
      process.kill(pid, 'SIGHUP');
      await waitFor(() => /reload failed, keeping the running configuration: .*maxConnections/.test(log()),
                    5000, 'the refused reload');
      c.call('ok', 'fake', 'echo', { message: 'fine' });
      assert.equal((await c.answer('ok')).type, 'tool_response');
      fs.writeFileSync(process.env.WSD_CONF, good);
      await c.close();
    }],
    ['SIGHUP applies mcpServers: added callable, removed gone, the rest untouched', async () => {
      const c = await Client.connect(WSURL, bearer(T.keep));
      const starts = (id) => log().split('\n').filter((l) => l.includes(`starting server '${id}' (pid`));
      const fakeStarts = starts('fake').length;
      // One call in flight on a server that stays, one on the server to go.
      c.call('across', 'fake', 'sleep', { ms: 800, message: 'across the reload' });
      c.call('doomed', 'crashy', 'hang', {});
      await sleep(150);
      const conf = JSON.parse(fs.readFileSync(process.env.WSD_CONF, 'utf8'));
      conf.mcpServers.late = { command: conf.mcpServers.fake.command };
      delete conf.mcpServers.crashy;
      fs.writeFileSync(process.env.WSD_CONF, JSON.stringify(conf));
      process.kill(pid, 'SIGHUP');
      const doomed = await c.answer('doomed', 5000);
      assert.deepEqual([doomed.type, doomed.data.code], ['error', 'server_unavailable']);
      assert.match(doomed.data.error, /removed by a reload/);
      await waitFor(() => /configuration reloaded: 3 servers kept running as they were, 1 added, 0 changed, 1 removed/.test(log()),
                    5000, 'the reload of mcpServers');
      c.call('new', 'late', 'echo', { message: 'added by SIGHUP' });
      const added = await c.answer('new', 10000);
      assert.equal(added.type, 'tool_response', JSON.stringify(added));
      assert.equal(added.data.result.content[0].text, 'Echo: added by SIGHUP');
      c.call('gone', 'crashy', 'echo', { message: 'x' });
      assert.equal((await c.answer('gone')).data.code, 'unknown_server');
      const across = await c.answer('across', 5000);
      assert.equal(across.type, 'tool_response');
      assert.equal(across.data.result.content[0].text, 'across the reload');
      assert.equal(starts('fake').length, fakeStarts, 'fake was not restarted');
      c.send({ type: 'list_servers', id: 'ls' });
      const ls = await c.next((m) => m.id === 'ls');
      assert.deepEqual(ls.data.servers.map((x) => x.id).sort(), ['everything', 'fake', 'late', 'memory']);
      await waitFor(() => log().includes("server 'crashy' stopped after the reload"), 8000,
                    'the removed server to stop');
      await c.close();
    }],
  ],

  limits: [
    ['per-address and total connection limits get a 503 that says which', async () => {
      const from = (addr) => ({ localAddress: addr });
      const mine = [];
      for (let i = 0; i < 3; i++) mine.push(await Client.connect(WSURL, from('127.0.0.1')));
      let e = await Client.open(WSURL, from('127.0.0.1')).then(() => null, (x) => x);
      assert.equal(e.statusCode, 503);
      assert.deepEqual(JSON.parse(e.body),
                       { error: 'too many connections from 127.0.0.1 (the limit is 3)', code: 'rate_limited' });
      for (let i = 0; i < 2; i++) mine.push(await Client.connect(WSURL, from('127.0.0.2')));
      e = await Client.open(WSURL, from('127.0.0.2')).then(() => null, (x) => x);
      assert.equal(e.statusCode, 503);
      assert.equal(JSON.parse(e.body).error, 'too many connections (the limit is 5)');
      await mine.shift().close();
      await waitFor(() => Client.connect(WSURL, from('127.0.0.1')).then((c) => { mine.push(c); return true; },
                                                                       () => false),
                    3000, 'a freed slot');
      await Promise.all(mine.map((c) => c.close()));
    }],
  ],

  unix: [
    ['the protocol over a unix socket', async () => {
      const c = await Client.connect(`ws+unix://${process.env.WSD_SOCK}:/ws`);
      c.call('u', 'fake', 'echo', { message: 'unix' });
      assert.equal((await c.answer('u')).data.result.content[0].text, 'Echo: unix');
      await c.close();
    }],
  ],
};

run(scenarios[process.argv[2]]);
