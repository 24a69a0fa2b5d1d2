// nofile.js - mcpgw-wsd's process hygiene with 50 clients, and the daemon
// near its open-file limit (tests/wsd-nofile.test).  One mode per daemon run:
//
//   hygiene   50 clients with calls to every server: each spawned MCP server
//             holds no descriptor of the daemon's (fake_mcp: exactly 0, 1, 2)
//   headroom  under a low RLIMIT_NOFILE: connections are refused with 503
//             while MCPGW_FD_HEADROOM descriptors are still free, so a
//             crashed MCP server can still be restarted
//   emfile    the same with the top descriptors taken before the daemon
//             started, so accept() itself fails with EMFILE: still a 503 (a
//             reserve descriptor), spawning fails cleanly (server_unavailable)
//
// In every mode calls in flight complete, the daemon stays idle (no busy
// loop) while at the limit, and serves new clients once others leave.
'use strict';

const { Client, assert, sleep, log, fdCount, waitFor, run } = require('./lib');
const { children, fdLinks, cpuMs } = require('../proc');

const MODE = process.argv[2];
const PID = Number(process.env.WSD_PID);
const NOFILE = Number(process.env.WSD_NOFILE || 0);
const HEADROOM = Number(process.env.WSD_FD_HEADROOM || 0);

// A new connection: {client}, or {status, body} for an HTTP refusal, or
// {error} for a refusal without an answer.  Never hangs: a connection left
// in the listen backlog with no answer is the failure this guards against.
async function tryOpen(ms = 5000) {
  let timer;
  const timeout = new Promise((resolve) => {
    timer = setTimeout(() => resolve({ hung: true }), ms);
  });
  const attempt = Client.connect().then((client) => ({ client }), (e) => {
    if (e.statusCode) {
      let body = null;
      try { body = JSON.parse(e.body); } catch (x) { body = { raw: e.body }; }
      return { status: e.statusCode, body };
    }
    return { error: e.code || e.message };
  });
  const r = await Promise.race([attempt, timeout]);
  clearTimeout(timer);
  assert.notEqual(r.hung, true, `a new connection got no answer within ${ms} ms`);
  return r;
}

async function call(c, id, server, tool, args) {
  c.call(id, server, tool, args);
  return c.answer(id, 15000);
}

function text(m) {
  assert.equal(m.type, 'tool_response', JSON.stringify(m));
  return m.data.result.content[0].text;
}

// Fill the daemon with clients until one is refused: {clients, refusal}.
async function fill(max) {
  const clients = [];
  for (let i = 0; i < max; i++) {
    const r = await tryOpen();
    if (!r.client) return { clients, refusal: r };
    clients.push(r.client);
  }
  throw new Error(`${max} connections and none refused`);
}

function isFdRefusal(r) {
  return r.status === 503 && /out of file descriptors/.test(r.body.error) &&
    r.body.code === 'server_unavailable';
}

// While at the limit: more clients knock, each is refused at once, and the
// daemon uses little CPU doing so.
async function idleAtLimit() {
  const t0 = cpuMs(PID);
  const start = Date.now();
  let knocks = 0;
  while (Date.now() - start < 2000) {
    const r = await tryOpen();
    assert.ok(!r.client, 'a connection was admitted at the limit');
    assert.ok(isFdRefusal(r), `refused without a clean answer: ${JSON.stringify(r)}`);
    knocks++;
    await sleep(100);
  }
  const used = cpuMs(PID) - t0;
  console.log(`# at the limit: ${knocks} refused connections in 2 s cost ${used} ms of CPU`);
  assert.ok(used < 500, `the daemon used ${used} ms of CPU in 2 s at the limit`);
}

// Five clients leave: a new one is admitted and served; then all leave and
// every fd is released.
async function leaveAndRecover(clients, fds0) {
  for (const c of clients.splice(0, 5)) await c.close();
  const r = await waitFor(async () => {
    const x = await tryOpen();
    return x.client ? x : null;
  }, 5000, 'a new connection after 5 clients left');
  text(await call(r.client, 'after', 'fake', 'echo', { message: 'after' }));
  clients.push(r.client);
  for (const c of clients) c.ws.terminate();
  await waitFor(() => fdCount() <= fds0 + 2, 10000, `the daemon's fds back to ${fds0}`);
  const c = await Client.connect();
  text(await call(c, 'last', 'fake', 'echo', { message: 'last' }));
  await c.close();
}

const modes = {
  hygiene: [
    ['50 clients, calls to every server; each MCP server holds no fd of the daemon', async () => {
      const clients = [];
      for (let i = 0; i < 50; i++) clients.push(await Client.connect());
      const servers = [['everything', 'echo', { message: 'x' }], ['fake', 'echo', { message: 'x' }],
                       ['crashy', 'echo', { message: 'x' }], ['memory', 'read_graph', {}]];
      await Promise.all(clients.map((c, i) => {
        const [s, t, a] = servers[i % servers.length];
        return call(c, `h${i}`, s, t, a).then((m) => assert.equal(m.type, 'tool_response'));
      }));
      const kids = children(PID);
      assert.equal(kids.length, 4, JSON.stringify(kids));
      const mine = fdLinks(PID);
      assert.ok([...mine.values()].filter((l) => l.startsWith('socket:')).length >= 50);
      // What identifies one of the daemon's open files from another
      // process: a socket's or a pipe's inode, a file's path (anon inodes
      // all look alike, and /dev nodes are opened by everyone).
      const held = new Set([...mine.values()].filter((l) => !/^(anon_inode:|\/dev\/)/.test(l)));
      for (const k of kids) {
        const fds = fdLinks(k.pid);
        for (const fd of [0, 1, 2])
          assert.match(fds.get(fd) || '', /^pipe:/, `${k.cmd}: fd ${fd} is ${fds.get(fd)}`);
        for (const [fd, l] of fds) {
          if (fd > 2)
            assert.ok(!held.has(l), `${k.cmd} (pid ${k.pid}) holds fd ${fd} -> ${l} of the daemon's`);
        }
        if (/fake_mcp/.test(k.cmd)) {
          assert.deepEqual([...fds.keys()].sort((a, b) => a - b), [0, 1, 2],
                           `${k.cmd}: fds ${JSON.stringify([...fds])}`);
        }
      }
      // And as fake_mcp sees itself.
      assert.equal(text(await call(clients[0], 'fds1', 'fake', 'fds', {})), '0 1 2');
      assert.equal(text(await call(clients[1], 'fds2', 'crashy', 'fds', {})), '0 1 2');
      console.log(`# ${kids.length} MCP servers checked with ${clients.length} clients connected`);
      for (const c of clients) await c.close();
    }],
  ],

  headroom: [
    [`under RLIMIT_NOFILE ${NOFILE}: refused with 503 while ${HEADROOM} fds are still free`,
      async () => {
        const fds0 = fdCount();
        const slow = await Client.connect();
        slow.call('slow', 'fake', 'sleep', { ms: 3000, message: 'finished' });
        const { clients, refusal } = await fill(NOFILE);
        clients.push(slow);
        console.log(`# ${clients.length} clients admitted (the daemon started with ${fds0} fds), ` +
                    `then: ${refusal.status} ${JSON.stringify(refusal.body)}`);
        assert.ok(isFdRefusal(refusal), JSON.stringify(refusal));
        assert.ok(clients.length > 10);
        assert.ok(fdCount() <= NOFILE - HEADROOM + 2, `${fdCount()} fds open at the limit`);
        await idleAtLimit();
        // The call made before the limit was reached finishes.
        assert.equal(text(await slow.answer('slow', 10000)), 'finished');
        // Existing clients are served, and a crashed server is restarted
        // from the headroom.
        text(await call(clients[1], 'e1', 'fake', 'echo', { message: 'e1' }));
        const boom = await call(clients[2], 'boom', 'crashy', 'crash', {});
        assert.equal(boom.data.code, 'server_unavailable');
        let i = 0;
        await waitFor(async () => {
          const m = await call(clients[2], `r${i++}`, 'crashy', 'echo', { message: 'back' });
          return m.type === 'tool_response';
        }, 10000, 'crashy restarted at the limit');
        assert.equal(log().split('\n').filter((l) => /near the open-file limit/.test(l)).length, 1);
        await leaveAndRecover(clients, fds0);
        assert.match(log(), /accepting connections on .* again after refusing \d+ for want of file/);
      }],
  ],

  emfile: [
    ['accept() at EMFILE: refused with 503, no busy loop; spawning fails cleanly', async () => {
      const fds0 = fdCount();
      const slow = await Client.connect();
      slow.call('slow', 'fake', 'sleep', { ms: 4000, message: 'finished' });
      const { clients, refusal } = await fill(NOFILE);
      clients.push(slow);
      console.log(`# ${clients.length} clients admitted, then: ` +
                  `${refusal.status || refusal.error} ${JSON.stringify(refusal.body || '')}`);
      assert.ok(isFdRefusal(refusal), JSON.stringify(refusal));
      await waitFor(() => /out of file descriptors on .*Too many open files/.test(log()), 5000,
                    'the warning');
      await idleAtLimit();
      // A crashed server cannot be restarted while every fd is taken: its
      // calls get server_unavailable, and nothing else suffers.
      const boom = await call(clients[1], 'boom', 'crashy', 'crash', {});
      assert.equal(boom.data.code, 'server_unavailable');
      // Take the fds its death freed before its restart (1 s back-off) can.
      for (let i = 0; i < NOFILE; i++) {
        const r = await tryOpen();
        if (!r.client) break;
        clients.push(r.client);
      }
      await waitFor(() => /crashy.*Too many open files/.test(log()), 10000,
                    'a spawn failing with EMFILE');
      const m = await call(clients[1], 'down', 'crashy', 'echo', { message: 'x' });
      assert.equal(m.data.code, 'server_unavailable', JSON.stringify(m));
      text(await call(clients[2], 'e2', 'fake', 'echo', { message: 'e2' }));
      assert.equal(text(await slow.answer('slow', 10000)), 'finished');
      await leaveAndRecover(clients, fds0);
      // Once fds are free again the server comes back.
      const c = await Client.connect();
      let i = 0;
      await waitFor(async () => {
        const x = await call(c, `r${i++}`, 'crashy', 'echo', { message: 'back' });
        return x.type === 'tool_response';
      }, 15000, 'crashy restarted after the clients left');
      await c.close();
    }],
  ],
};

if (!modes[MODE]) {
  console.error(`usage: nofile.js ${Object.keys(modes).join('|')}`);
  process.exit(2);
}
run(modes[MODE]);
