// rest.js - mcpgw-wsd's /api/v1 routes on the port of /ws (tests/wsd-rest.test):
// the worker pools, their caps, clients that leave, keep-alive, SIGTERM.
// (Every route itself is proven by tests/webservers/suite.mjs, which
// tests/webservers/wsd.test runs against this daemon.)
//   node rest.js caps   sse.maxStreams 2, websocket.restThreads 1
//   node rest.js term   SIGTERM with an open stream and a REST call in flight
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const { Client, assert, sleep, log, waitFor, run } = require('./lib');

const PORT = Number(process.env.WSD_PORT);
const pid = Number(process.env.WSD_PID);

// One request on a fresh connection unless an agent is given.
function req(method, path, { headers = {}, body, agent = false } = {}) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const r = http.request({ host: '127.0.0.1', port: PORT, method, path, headers, agent }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json, ms: Date.now() - t0,
                  reused: r.reusedSocket });
      });
    });
    r.on('error', reject);
    r.setTimeout(20000, () => r.destroy(new Error(`${method} ${path}: no answer in 20 s`)));
    if (body !== undefined) r.write(body);
    r.end();
  });
}

const call = (server, tool, params, extra = {}) =>
  req('POST', '/api/v1/tools/call', {
    headers: { 'content-type': 'application/json', ...(extra.headers || {}) },
    body: JSON.stringify({ serverId: server, toolName: tool, params }),
    agent: extra.agent,
  });

// An event stream: its frames as they arrive.
class Stream {
  constructor(path = '/api/v1/events', headers = {}) {
    this.events = [];
    this.ended = false;
    this.opened = new Promise((resolve, reject) => {
      this.req = http.request({ host: '127.0.0.1', port: PORT, path, headers, agent: false }, (res) => {
        this.status = res.statusCode;
        this.headers = res.headers;
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (c) => {
          buf += c;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const f = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const d = f.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
            if (d) this.events.push(JSON.parse(d));
          }
          if (res.statusCode !== 200) this.body = (this.body || '') + c;
        });
        res.on('end', () => { this.ended = true; });
        res.on('error', () => { this.ended = true; });
        resolve(this);
      });
      this.req.on('error', (e) => { this.ended = true; reject(e); });
      this.req.end();
    });
  }
  of(type) { return this.events.filter((e) => e.type === type); }
  until(pred, ms, what) { return waitFor(() => pred() || (this.ended && pred()), ms, what); }
  close() { this.req.destroy(); }
}

async function openStream(path, headers) {
  const s = new Stream(path, headers);
  await s.opened;
  if (s.status === 200) await s.until(() => s.of('connected').length, 5000, 'connected');
  return s;
}

const closedLines = () => log().split('\n').filter((l) => /event stream closed/.test(l)).length;

function alive(p) {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

const scenarios = {
  caps: [
    ['event streams past sse.maxStreams get 503 at once; REST calls, streamed ones too, still run', async () => {
      const a = await openStream(), b = await openStream();
      assert.equal(a.status, 200);
      assert.equal(b.status, 200);
      const t0 = Date.now();
      const c = await openStream();
      assert.equal(c.status, 503);
      assert.ok(Date.now() - t0 < 1000, 'refused at once');
      const body = JSON.parse(c.body);
      assert.equal(body.code, 'rate_limited');
      assert.match(body.error, /too many open event streams \(2\)/);
      assert.equal(c.headers['retry-after'], '5');
      const r = await call('fake', 'echo', { message: 'beside the streams' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result.content[0].text, 'Echo: beside the streams');
      // A streamed call is a REST request: it takes no stream slot.
      const s = await call('fake', 'progress', { steps: 2, intervalMs: 100 },
                           { headers: { accept: 'text/event-stream' } });
      assert.equal(s.status, 200);
      assert.match(s.headers['content-type'], /^text\/event-stream/);
      assert.match(s.text, /"type":"tool_response"/);
      a.close();
      b.close();
      await waitFor(async () => (await openStream().then((x) => { x.close(); return x.status; })) === 200,
                    5000, 'a stream slot after closing the streams');
    }],
    ['a client that disconnects mid-stream frees its worker at once', async () => {
      await sleep(200);
      const a = await openStream(), b = await openStream();
      assert.deepEqual([a.status, b.status], [200, 200]);
      const before = closedLines();
      const t0 = Date.now();
      a.close();
      await waitFor(() => closedLines() > before, 3000, '"event stream closed" in the log');
      const took = Date.now() - t0;
      // The heartbeat is 1 s away: the hang-up itself ended the stream.
      assert.ok(took < 900, `the stream ended ${took} ms after its client left`);
      const c = await openStream();
      assert.equal(c.status, 200, 'the freed slot takes a new stream');
      b.close();
      c.close();
    }],
    ['REST: 1 thread and 8 waiting; the next requests get 503 at once', async () => {
      await sleep(300);
      // The one thread is busy with this call (its tool_call event says it
      // reached the server) while the others arrive.
      const ev = await openStream('/api/v1/events?types=tool_call&serverId=fake',
                                  { authorization: `Bearer ${process.env.TOKEN}` });
      assert.equal(ev.status, 200);
      const first = call('fake', 'sleep', { ms: 1000, message: 'first' });
      await ev.until(() => ev.of('tool_call').length, 5000, 'the first call to start');
      ev.close();
      const all = await Promise.all(Array.from({ length: 11 }, (_, i) =>
        call('fake', 'sleep', { ms: 100, message: `r${i}` })));
      const ok = all.filter((r) => r.status === 200), busy = all.filter((r) => r.status === 503);
      assert.equal(ok.length, 8, `statuses: ${all.map((r) => r.status)}`);
      assert.equal(busy.length, 3);
      for (const r of busy) {
        assert.equal(r.json.code, 'rate_limited');
        assert.equal(r.headers['retry-after'], '1');
        assert.ok(r.ms < 250, `a refusal took ${r.ms} ms`);
      }
      assert.equal((await first).status, 200);
      // One thread: the waiting calls ran one after another.
      assert.ok(Math.max(...ok.map((r) => r.ms)) >= 8 * 100, 'served one at a time');
    }],
    ['a keep-alive connection serves requests past handshakeTimeoutMs', async () => {
      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const t0 = Date.now();
      let n = 0, fresh = 0;
      while (Date.now() - t0 < 2500) {
        const r = await req('GET', '/api/v1/health', { agent });
        assert.equal(r.status, 200);
        if (!r.reused) fresh++;
        n++;
        await sleep(100);
      }
      agent.destroy();
      assert.equal(fresh, 1, `${n} requests took ${fresh} connections`);
    }],
    ['an event stream outlives handshakeTimeoutMs', async () => {
      const s = await openStream();
      assert.equal(s.status, 200);
      await s.until(() => s.of('heartbeat').length >= 3, 6000, '3 heartbeats');
      assert.ok(!s.ended, 'the stream is still open');
      s.close();
    }],
    ['a /ws session and REST calls at the same time', async () => {
      const c = await Client.connect();
      for (let i = 0; i < 20; i++) c.call(`w${i}`, 'everything', 'echo', { message: `ws ${i}` });
      let rest = 0;
      const worker = async (k) => {
        for (let i = 0; i < 10; i++) {
          const r = await call('everything', 'echo', { message: `rest ${k}.${i}` });
          assert.equal(r.status, 200, r.text);
          assert.equal(r.json.result.content[0].text, `Echo: rest ${k}.${i}`);
          rest++;
        }
      };
      await Promise.all([0, 1, 2, 3].map(worker));
      for (let i = 0; i < 20; i++) {
        const a = await c.answer(`w${i}`);
        assert.equal(a.type, 'tool_response');
        assert.equal(a.data.result.content[0].text, `Echo: ws ${i}`);
      }
      assert.equal(rest, 40);
      await c.close();
    }],
  ],

  term: [
    ['SIGTERM: the stream gets its final event, the REST call its answer, the daemon exits at once', async () => {
      const s = await openStream();
      assert.equal(s.status, 200);
      const pending = call('fake', 'sleep', { ms: 800, message: 'answered in the grace period' });
      await sleep(200);
      const t0 = Date.now();
      process.kill(pid, 'SIGTERM');
      await s.until(() => s.ended, 5000, 'the stream to end');
      const end = s.of('stream_end');
      assert.equal(end.length, 1, `events: ${JSON.stringify(s.events.map((e) => e.type))}`);
      assert.equal(end[0].reason, 'shutdown');
      const r = await pending;
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.result.content[0].text, 'answered in the grace period');
      await waitFor(() => !alive(pid), 8000, 'the daemon to exit');
      assert.ok(Date.now() - t0 < 5000, `exit took ${Date.now() - t0} ms (the grace is 10 s)`);
    }],
  ],
};

const which = process.argv[2];
if (!scenarios[which]) {
  console.error(`usage: node rest.js ${Object.keys(scenarios).join('|')}`);
  process.exit(2);
}
run(scenarios[which]);
