// proxy.js - /ws through a real web server (tests/webservers/ws-*.test):
// what only shows behind a proxy.  WSD_URL/WSD_PORT are the web server's;
// WSD_DIRECT_PORT is mcpgw-wsd's own port behind it.
//
//   open    (requireAuth off, maxMessageBytes 65536): a 1 MiB+ message and
//           a too-large result cross the proxy as 1009 and too_large; 200
//           concurrent clients each get their own answers; a disallowed
//           Origin gets 403 before any upgrade.
//   limits  (maxConnectionsPerIp 2, trustedProxies ["127.0.0.1"], the web
//           server's address): clients are counted and logged as the
//           address the web server saw, not as the web server; what a client
//           writes into X-Forwarded-For itself is never believed.
'use strict';

const { Client, assert, rawRequest, handshake, log, waitFor, run, URL: WSURL } = require('./lib');

const DIRECT = `ws://127.0.0.1:${process.env.WSD_DIRECT_PORT}/ws`;
const from = (localAddress, headers = {}) => ({ localAddress, headers });

async function refused(url, options) {
  const e = await Client.open(url, options).then((c) => { c.ws.terminate(); return null; }, (x) => x);
  assert.ok(e && e.statusCode, `the handshake must be refused, got ${e ? e.message : 'a connection'}`);
  return e;
}

// Log lines written since this process started (the log is shared by every
// phase of the test).
const start = log().length;
const logged = (re) => waitFor(() => re.test(log().slice(start)), 5000, `a log line matching ${re}`);

const scenarios = {
  open: [
    ['a 1 MiB+ message crosses the proxy and closes with 1009', async () => {
      const c = await Client.connect();
      c.send(JSON.stringify({ type: 'ping', id: 'huge', data: { pad: 'p'.repeat(1024 * 1024) } }));
      const cl = await c.waitClose(15000);
      assert.equal(cl.code, 1009);
      await logged(/message over 65536 bytes \(close 1009/);
      // The proxy still serves the next client.
      const d = await Client.connect();
      d.send({ type: 'ping', id: 'after' });
      assert.deepEqual([(await d.next()).type], ['pong']);
      await d.close();
    }],

    ['a result over the message limit is too_large for that call only', async () => {
      const c = await Client.connect();
      c.call('big', 'fake', 'big', { bytes: 200000 });
      const m = await c.answer('big', 15000);
      assert.deepEqual([m.type, m.id, m.data.code], ['error', 'big', 'too_large']);
      c.call('small', 'fake', 'echo', { message: 'still here' });
      assert.equal((await c.answer('small')).data.result.content[0].text, 'Echo: still here');
      await c.close();
    }],

    ['200 concurrent clients, each with its own calls and answers', async () => {
      const n = 200;
      const clients = await Promise.all(Array.from({ length: n }, () => Client.connect()));
      const ids = new Set(clients.map((c) => c.status.data.clientId));
      assert.equal(ids.size, n, 'every client has its own id');
      clients.forEach((c, i) => {
        c.call(`f${i}`, 'fake', 'echo', { message: `fake ${i}` });
        if (i % 4 === 0) c.call(`e${i}`, 'everything', 'echo', { message: `everything ${i}` });
      });
      await Promise.all(clients.map(async (c, i) => {
        const f = await c.answer(`f${i}`, 30000);
        assert.equal(f.data.result.content[0].text, `Echo: fake ${i}`);
        if (i % 4 === 0) {
          const e = await c.answer(`e${i}`, 30000);
          assert.equal(e.data.result.content[0].text, `Echo: everything ${i}`);
        }
        assert.deepEqual(c.queue, [], 'nothing meant for another client');
      }));
      await Promise.all(clients.map((c) => c.close()));
    }],

    ['a disallowed Origin gets 403 before any upgrade, through the proxy', async () => {
      const r = await rawRequest(handshake('Origin: http://evil.example\r\n'));
      assert.equal(r.status, 403, r.raw.slice(0, 300));
      assert.equal(JSON.parse(r.body).code, 'forbidden');
      const e = await refused(WSURL, { origin: 'https://attacker.example' });
      assert.equal(e.statusCode, 403);
      // A loopback page still passes.
      const c = await Client.connect(WSURL, { origin: 'http://localhost:5173' });
      await c.close();
    }],
  ],

  limits: [
    ['clients behind the proxy are counted as themselves, not as the proxy', async () => {
      const mine = [];
      mine.push(await Client.connect(WSURL, from('127.0.0.2')));
      mine.push(await Client.connect(WSURL, from('127.0.0.2')));
      const e = await refused(WSURL, from('127.0.0.2'));
      assert.equal(e.statusCode, 503);
      assert.deepEqual(JSON.parse(e.body),
                       { error: 'too many connections from 127.0.0.2 (the limit is 2)',
                         code: 'rate_limited' });
      // Two more from another address: four WebSockets from the daemon's
      // one TCP peer, over a per-address limit of 2.
      mine.push(await Client.connect(WSURL, from('127.0.0.3')));
      mine.push(await Client.connect(WSURL, from('127.0.0.3')));
      for (const c of mine) {
        c.send({ type: 'ping', id: 'alive' });
        assert.equal((await c.next()).type, 'pong');
      }
      await logged(/client c-[0-9a-f]{12} connected from 127\.0\.0\.2 via proxy 127\.0\.0\.1, /);
      await logged(/client c-[0-9a-f]{12} connected from 127\.0\.0\.3 via proxy 127\.0\.0\.1, /);
      await logged(/refused a WebSocket handshake from 127\.0\.0\.2 \(HTTP 503\): too many connections from 127\.0\.0\.2/);
      await Promise.all(mine.map((c) => c.close()));
    }],

    ["a client's own X-Forwarded-For is never believed", async () => {
      const mine = [await Client.connect(WSURL, from('127.0.0.2')),
                    await Client.connect(WSURL, from('127.0.0.2'))];
      for (const claim of ['198.51.100.9', '127.0.0.1', '198.51.100.9, 127.0.0.1', 'junk']) {
        const e = await refused(WSURL, from('127.0.0.2', { 'X-Forwarded-For': claim }));
        assert.equal(e.statusCode, 503, claim);
        assert.equal(JSON.parse(e.body).error, 'too many connections from 127.0.0.2 (the limit is 2)',
                     claim);
      }
      // A slot freed is free again (the refused requests left no count
      // behind, even on backend connections the web server keeps open).
      await mine.shift().close();
      await waitFor(() => Client.connect(WSURL, from('127.0.0.2')).then((c) => { mine.push(c); return true; },
                                                                        () => false),
                    5000, 'the freed slot');
      await Promise.all(mine.map((c) => c.close()));
    }],

    ["direct to the daemon, an untrusted peer's X-Forwarded-For is ignored", async () => {
      const mine = [await Client.connect(DIRECT, from('127.0.0.4', { 'X-Forwarded-For': '198.51.100.1' })),
                    await Client.connect(DIRECT, from('127.0.0.4', { 'X-Forwarded-For': '198.51.100.2' }))];
      const e = await refused(DIRECT, from('127.0.0.4', { 'X-Forwarded-For': '198.51.100.3' }));
      assert.equal(e.statusCode, 503);
      assert.equal(JSON.parse(e.body).error, 'too many connections from 127.0.0.4 (the limit is 2)');
      await logged(/client c-[0-9a-f]{12} connected from 127\.0\.0\.4, user agent/);
      assert.equal(/198\.51\.100\.[123]/.test(log().slice(start)), false,
                   'an untrusted header reaches the log');
      await Promise.all(mine.map((c) => c.close()));
    }],

    ['direct from the trusted address, its header is believed', async () => {
      // Trust is a property of the TCP peer: here 127.0.0.1, the web
      // server's address, so a program on it speaks for its clients.
      const c = await Client.connect(DIRECT, from('127.0.0.1', { 'X-Forwarded-For': '198.51.100.7' }));
      await logged(/client c-[0-9a-f]{12} connected from 198\.51\.100\.7 via proxy 127\.0\.0\.1, /);
      await c.close();
    }],
  ],
};

if (!scenarios[process.argv[2]]) {
  console.error(`usage: proxy.js ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
run(scenarios[process.argv[2]]);
