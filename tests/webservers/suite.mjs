// suite.mjs - the REST and event-stream suite, run against one front end
// (apache2 or lighttpd in front of mcpgw-fcgi / mcpgw-events.cgi, or
// mcpgw-wsd's standalone routes) by tests/webservers/*.test.
//
// Environment: BASE (http://127.0.0.1:PORT), TOKEN_FULL (scope *),
// TOKEN_ECHO (scope everything:echo), MODULES (node_modules), HEARTBEAT_MS,
// GATEWAY_LOG (the gateway's log file), STREAMS (concurrent streams, 200),
// RESTART_CMD (a shell command that restarts the web server gracefully;
// the restart test is skipped without it), VARIANT (for messages).
// Prints TAP; exits 1 if anything failed.
import http from 'node:http';
import { execSync } from 'node:child_process';
import { readFileSync, existsSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

const BASE = process.env.BASE;
const FULL = process.env.TOKEN_FULL;
const ECHO = process.env.TOKEN_ECHO;
const HB = Number(process.env.HEARTBEAT_MS || 1000);
const STREAMS = Number(process.env.STREAMS || 200);
const LOG = process.env.GATEWAY_LOG;
const { EventSource } = await import(pathToFileURL(`${process.env.MODULES}/eventsource/dist/index.js`));
const url = new URL(BASE);

// ONLY (a regular expression) runs just the tests whose names match, each
// REPEAT times: for chasing a rare failure by hand.
const ONLY = process.env.ONLY ? new RegExp(process.env.ONLY) : null;
const REPEAT = Math.max(1, Number(process.env.REPEAT || 1));
let n = 0, failed = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function t(name, fn) {
  if (ONLY && !ONLY.test(name)) {
    console.log(`ok ${++n} - ${name} # SKIP not in ONLY`);
    return;
  }
  for (let k = 0; k < (ONLY ? REPEAT : 1); k++) {
    if (k) await streamsGone();
    const started = Date.now();
    try {
      await fn();
      console.log(`ok ${++n} - ${name} (${Date.now() - started} ms)`);
    } catch (e) {
      failed++;
      console.log(`not ok ${++n} - ${name}`);
      for (const line of String(e && e.stack || e).split('\n').slice(0, 8)) console.log(`#   ${line}`);
    }
  }
}
// Between ONLY rounds: until the gateway has closed every stream it opened
// (a client gone is noticed by the next write, a heartbeat at the latest),
// so a round does not start against the last one's leftovers.
async function streamsGone() {
  const end = Date.now() + 2 * HB + 10000;
  while (logCount(/event stream opened/) > logCount(/event stream closed/) && Date.now() < end) await sleep(100);
}
function assert(cond, msg) { if (!cond) throw new Error(msg || 'assertion failed'); }
function eq(a, b, msg) { if (a !== b) throw new Error(`${msg || 'not equal'}: got ${JSON.stringify(a)}, wanted ${JSON.stringify(b)}`); }
const bearer = (tok) => ({ authorization: `Bearer ${tok}` });

// One HTTP request with a fresh connection (node's fetch pools and hides
// some headers; this sees exactly what the server sent).
function req(method, path, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const r = http.request({ host: url.hostname, port: url.port, method, path, headers, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString();
        let json;
        try { json = JSON.parse(text); } catch { json = undefined; }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
    });
    r.on('error', reject);
    r.setTimeout(30000, () => r.destroy(new Error(`${method} ${path}: no answer in 30 s`)));
    if (body !== undefined) r.write(body);
    r.end();
  });
}
const call = (server, tool, params, headers = {}) =>
  req('POST', '/api/v1/tools/call', {
    headers: { ...bearer(FULL), 'content-type': 'application/json', ...headers },
    body: JSON.stringify({ serverId: server, toolName: tool, params }),
  });
function isError(r, status, code) {
  eq(r.status, status, `status (${r.text.slice(0, 200)})`);
  assert(r.json && r.json.code === code && typeof r.json.error === 'string',
    `body ${r.text.slice(0, 200)} should be {error, code: ${code}}`);
}

// A raw event-stream reader: parses frames as they arrive, records when.
class Stream {
  constructor(path, headers = {}) {
    this.events = [];      // {id, data (parsed), at}
    this.ended = false;
    this.status = 0;
    this.headers = {};
    this.waiters = [];
    this.opened = new Promise((resolve, reject) => {
      this.req = http.request({ host: url.hostname, port: url.port, path, headers, agent: false }, (res) => {
        this.status = res.statusCode;
        this.headers = res.headers;
        resolve(this);
        let buf = '';
        let id = null, data = [];
        res.setEncoding('utf8');
        res.on('data', (chunk) => {
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n')) >= 0) {
            const line = buf.slice(0, i).replace(/\r$/, '');
            buf = buf.slice(i + 1);
            if (line === '') {
              if (data.length) {
                let parsed;
                try { parsed = JSON.parse(data.join('\n')); } catch { parsed = { raw: data.join('\n') }; }
                this.events.push({ id, data: parsed, at: Date.now() });
              }
              id = null; data = [];
              this.wake();
            } else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
            else if (line.startsWith('id:')) id = line.slice(3).replace(/^ /, '');
          }
        });
        res.on('end', () => { this.ended = true; this.wake(); });
        res.on('error', () => { this.ended = true; this.wake(); });
      });
      this.req.on('error', (e) => { this.ended = true; this.wake(); reject(e); });
      this.req.end();
    });
  }
  wake() { for (const w of this.waiters.splice(0)) w(); }
  of(type) { return this.events.filter((e) => e.data.type === type); }
  async until(pred, ms, what) {
    const end = Date.now() + ms;
    while (!pred()) {
      if (this.ended && !pred()) throw new Error(`stream ended before ${what}`);
      const left = end - Date.now();
      if (left <= 0) throw new Error(`no ${what} within ${ms} ms`);
      await new Promise((r) => { this.waiters.push(r); setTimeout(r, Math.min(left, 200)); });
    }
  }
  close() { this.req.destroy(); }
}

function logCount(re) {
  if (!LOG || !existsSync(LOG)) return 0;
  return readFileSync(LOG, 'utf8').split('\n').filter((l) => re.test(l)).length;
}

// ---- REST --------------------------------------------------------------------

await t('health answers without auth, with the version and every server', async () => {
  const r = await req('GET', '/api/v1/health');
  eq(r.status, 200);
  eq(r.json.status, 'ok');
  assert(/^\d+\.\d+\.\d+/.test(r.json.version), 'version');
  eq(r.json.servers.map((s) => s.id).join(','), 'everything,fake,off');
  eq(r.json.servers[2].state, 'disabled');
});

await t('servers needs a token: one 401 auth_required with WWW-Authenticate for any bad one', async () => {
  const r = await req('GET', '/api/v1/servers');
  isError(r, 401, 'auth_required');
  eq(r.headers['www-authenticate'], 'Bearer realm="mcpgw"');
  const bad = await req('GET', '/api/v1/servers', { headers: bearer('mcpgw_wrong') });
  isError(bad, 401, 'auth_required');
  eq(bad.text, r.text);
  eq(bad.headers['www-authenticate'], r.headers['www-authenticate']);
});

await t('servers and tools are limited to the token\'s scopes', async () => {
  const all = await req('GET', '/api/v1/servers', { headers: bearer(FULL) });
  eq(all.status, 200);
  eq(all.json.servers.length, 3);
  const some = await req('GET', '/api/v1/servers', { headers: bearer(ECHO) });
  eq(some.json.servers.map((s) => s.id).join(','), 'everything');
  const tools = await req('GET', '/api/v1/servers/everything/tools', { headers: bearer(ECHO) });
  eq(tools.status, 200);
  eq(tools.json.tools.map((x) => x.name).join(','), 'echo');
  const echo = tools.json.tools[0];
  assert(echo.inputSchema && echo.inputSchema.type === 'object', 'inputSchema as the server gave it');
  assert(Object.keys(echo).every((k) => ['name', 'description', 'inputSchema'].includes(k)), 'only name/description/inputSchema');
  const full = await req('GET', '/api/v1/servers/everything/tools', { headers: bearer(FULL) });
  assert(full.json.tools.length > 5, 'every tool for a * token');
  isError(await req('GET', '/api/v1/servers/fake/tools', { headers: bearer(ECHO) }), 403, 'forbidden');
});

await t('a tool call returns the tool_response data shape', async () => {
  const r = await call('everything', 'echo', { message: 'through the web server' });
  eq(r.status, 200, r.text);
  eq(r.json.success, true);
  eq(r.json.serverId, 'everything');
  eq(r.json.toolName, 'echo');
  eq(r.json.result.content[0].text, 'Echo: through the web server');
  const e = await call('fake', 'iserror', {});
  eq(e.status, 200);
  eq(e.json.success, false);
});

await t('errors: 404 unknown server/tool/route, 400, 405 with Allow, 413, 415', async () => {
  isError(await call('nosuch', 'echo', {}), 404, 'unknown_server');
  isError(await call('everything', 'no_such_tool', {}), 404, 'unknown_tool');
  isError(await req('GET', '/api/v1/nosuch'), 404, 'bad_request');
  isError(await req('POST', '/api/v1/tools/call', { headers: { ...bearer(FULL), 'content-type': 'application/json' }, body: '{"serverId":' }), 400, 'bad_request');
  isError(await req('POST', '/api/v1/tools/call', { headers: { ...bearer(FULL), 'content-type': 'application/json' }, body: '{"serverId":"fake","toolName":"echo","params":[1]}' }), 400, 'bad_request');
  const m = await req('GET', '/api/v1/tools/call', { headers: bearer(FULL) });
  isError(m, 405, 'bad_request');
  eq(m.headers.allow, 'POST, OPTIONS');
  isError(await req('POST', '/api/v1/tools/call', { headers: { ...bearer(FULL), 'content-type': 'application/json' }, body: JSON.stringify({ serverId: 'fake', toolName: 'echo', params: { message: 'x'.repeat(70000) } }) }), 413, 'too_large');
  isError(await req('POST', '/api/v1/tools/call', { headers: { ...bearer(FULL), 'content-type': 'text/plain' }, body: '{}' }), 415, 'bad_request');
});

await t('403 for a token without the scope, and for a foreign Origin; CORS for loopback pages', async () => {
  isError(await call('fake', 'echo', {}, bearer(ECHO)), 403, 'forbidden');
  isError(await req('GET', '/api/v1/health', { headers: { origin: 'https://evil.example' } }), 403, 'forbidden');
  const ok = await req('GET', '/api/v1/health', { headers: { origin: 'http://localhost:5500' } });
  eq(ok.status, 200);
  eq(ok.headers['access-control-allow-origin'], 'http://localhost:5500');
  assert(!ok.headers['access-control-allow-credentials'], 'never credentials');
  const pre = await req('OPTIONS', '/api/v1/tools/call', { headers: { origin: 'http://localhost:5500', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization, content-type' } });
  assert(pre.status === 204 || pre.status === 200, `preflight status ${pre.status}`);
  eq(pre.headers['access-control-allow-origin'], 'http://localhost:5500');
  assert(/authorization/i.test(pre.headers['access-control-allow-headers'] || ''), 'Authorization allowed');
});

await t('502 for a server that is down, 504 for a call that times out', async () => {
  isError(await call('off', 'echo', {}), 502, 'server_unavailable');
  isError(await call('fake', 'hang', {}), 504, 'timeout');
});

if (process.env.PER_PROCESS_LIMITS) {
  // mod_fcgid routes one request at a time to each gateway process and
  // starts another process for the next, each with its own MCP servers:
  // maxInFlight is per process there (docs/deployment.md), so the third
  // call is served rather than refused.
  await t('maxInFlight is per gateway process under mod_fcgid: the third call is served', async () => {
    const slow = [call('fake', 'sleep', { ms: 800 }), call('fake', 'sleep', { ms: 800 })];
    await sleep(250);
    const r = await call('fake', 'echo', { message: 'third' });
    eq(r.status, 200, r.text);
    for (const s of await Promise.all(slow)) eq(s.status, 200);
  });
} else {
  await t('429 when a server has maxInFlight calls running', async () => {
    const slow = [call('fake', 'sleep', { ms: 800 }), call('fake', 'sleep', { ms: 800 })];
    await sleep(250);
    const r = await call('fake', 'echo', {});
    isError(r, 429, 'rate_limited');
    for (const s of await Promise.all(slow)) eq(s.status, 200);
  });
}

await t('request headers never reach an MCP server\'s environment (httpoxy)', async () => {
  const r = await call('fake', 'env', {}, { proxy: 'http://attacker.example:1', 'x-canary': 'canary-value' });
  eq(r.status, 200, r.text);
  const env = r.json.result.content[0].text;
  assert(!/HTTP_PROXY|HTTP_|CONTENT_|REMOTE_|SCRIPT_|QUERY_STRING|canary/.test(env), `leaked into the environment:\n${env}`);
  assert(!env.includes(FULL), 'the token leaked');
});

await t('Accept: text/event-stream streams tool_progress, then one tool_response', async () => {
  const started = Date.now();
  const r = await new Promise((resolve, reject) => {
    const body = JSON.stringify({ serverId: 'fake', toolName: 'progress', params: { steps: 3, intervalMs: 300 } });
    const q = http.request({ host: url.hostname, port: url.port, method: 'POST', path: '/api/v1/tools/call', agent: false,
      headers: { ...bearer(FULL), 'content-type': 'application/json', accept: 'text/event-stream' } }, (res) => {
      const frames = [];
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        buf += c;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const f = buf.slice(0, i); buf = buf.slice(i + 2);
          const d = f.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
          if (d) frames.push({ at: Date.now() - started, data: JSON.parse(d) });
        }
      });
      res.on('end', () => resolve({ status: res.statusCode, type: res.headers['content-type'], frames }));
    });
    q.on('error', reject);
    q.end(body);
  });
  eq(r.status, 200);
  assert(/^text\/event-stream/.test(r.type), r.type);
  const types = r.frames.map((f) => f.data.type);
  eq(types.join(','), 'tool_progress,tool_progress,tool_progress,tool_response');
  eq(r.frames[3].data.data.success, true);
  // streamed as it happened, not buffered to the end
  assert(r.frames[3].at - r.frames[0].at >= 500, `frames arrived together: ${r.frames.map((f) => f.at)}`);
});

// ---- the event stream ------------------------------------------------------------

await t('the stream: headers, retry, connected, then heartbeats within interval + 1 s', async () => {
  const s = new Stream('/api/v1/events');
  await s.opened;
  eq(s.status, 200);
  assert(/^text\/event-stream/.test(s.headers['content-type']), s.headers['content-type']);
  eq(s.headers['cache-control'], 'no-cache');
  await s.until(() => s.of('heartbeat').length >= 3, 3 * HB + 3000, '3 heartbeats');
  s.close();
  const c = s.of('connected')[0];
  eq(c.data.message, 'Connected to MCP Gateway events');
  let prev = c.at;
  for (const h of s.of('heartbeat').slice(0, 3)) {
    assert(h.at - prev <= HB + 1000, `a heartbeat came ${h.at - prev} ms after the previous event (interval ${HB})`);
    assert(typeof h.data.timestamp === 'number', 'heartbeat timestamp');
    prev = h.at;
  }
});

await t('a ticket opens an EventSource once; tool events only with credentials', async () => {
  const tk = await req('POST', '/api/v1/tickets', { headers: bearer(FULL) });
  eq(tk.status, 200, tk.text);
  const got = [];
  const es = new EventSource(`${BASE}/api/v1/events?ticket=${tk.json.ticket}`);
  es.onmessage = (m) => got.push(JSON.parse(m.data));
  const anon = new Stream('/api/v1/events');
  const until = async (pred, ms, what) => {
    const end = Date.now() + ms;
    while (!pred()) { if (Date.now() > end) throw new Error(`no ${what}`); await sleep(50); }
  };
  await until(() => got.some((e) => e.type === 'connected'), 5000, 'connected on the EventSource');
  await anon.until(() => anon.of('connected').length, 5000, 'anonymous connected');
  const r = await call('everything', 'echo', { message: 'event-source' });
  eq(r.status, 200);
  await until(() => got.some((e) => e.type === 'tool_result'), 5000, 'tool_result on the EventSource');
  assert(got.some((e) => e.type === 'tool_call'), 'tool_call seen');
  es.close();
  await sleep(HB + 200);
  anon.close();
  assert(!anon.events.some((e) => /^tool_/.test(e.data.type)), 'anonymous stream saw a tool event');
  const again = await req('GET', `/api/v1/events?ticket=${tk.json.ticket}`);
  isError(again, 401, 'auth_required');
});

await t('Last-Event-ID resumes after that event with nothing lost', async () => {
  const path = '/api/v1/events?types=tool_result&serverId=fake';
  const s1 = new Stream(path, bearer(FULL));
  await s1.until(() => s1.of('connected').length, 5000, 'connected');
  for (let i = 0; i < 3; i++) eq((await call('fake', 'echo', { message: `a${i}` })).status, 200);
  await s1.until(() => s1.of('tool_result').length >= 3, 5000, '3 results');
  s1.close();
  const seen = s1.of('tool_result');
  assert(seen.every((e) => e.id), 'every event has an id');
  for (let i = 0; i < 3; i++) eq((await call('fake', 'echo', { message: `b${i}` })).status, 200);
  const s2 = new Stream(path, { ...bearer(FULL), 'last-event-id': seen[1].id });
  await s2.until(() => s2.of('tool_result').length >= 4, 5000, '4 results after resume');
  await sleep(300);
  s2.close();
  const ids = s2.of('tool_result').map((e) => e.id);
  eq(ids.length, 4, 'exactly the missed events');
  eq(ids[0], seen[2].id, 'first resumed event');
  eq(new Set(ids).size, 4, 'no duplicates');
});

await t('1,000 events published while the reader is away all arrive on resume, in order', async () => {
  const path = '/api/v1/events?types=tool_result&serverId=fake';
  const s1 = new Stream(path, bearer(FULL));
  await s1.until(() => s1.of('connected').length, 5000, 'connected');
  eq((await call('fake', 'echo', { message: 'mark' })).status, 200);
  await s1.until(() => s1.of('tool_result').length >= 1, 5000, 'the mark');
  s1.close();
  const mark = s1.of('tool_result').at(-1).id;
  // The fake server takes 2 calls at a time (maxInFlight): two callers.
  let next = 0;
  const caller = async () => {
    while (next < 1000) {
      const i = next++;
      const r = await call('fake', 'echo', { message: `away-${i}` });
      eq(r.status, 200, r.text);
    }
  };
  await Promise.all([caller(), caller()]);
  const s2 = new Stream(path, { ...bearer(FULL), 'last-event-id': mark });
  await s2.until(() => s2.of('tool_result').length >= 1000, 30000, '1,000 results after resume');
  await sleep(300);
  s2.close();
  const ids = s2.of('tool_result').map((e) => e.id);
  eq(ids.length, 1000, 'exactly the events published while away');
  eq(new Set(ids).size, 1000, 'no duplicates');
  const cmp = (a, b) => (a.length - b.length) || (a < b ? -1 : a > b ? 1 : 0);
  assert(ids.every((id, i) => i === 0 || cmp(ids[i - 1], id) < 0), 'ids increase');
  assert(cmp(mark, ids[0]) < 0, 'resumed after the mark');
});

await t('a client that goes away is noticed and its request finished', async () => {
  const closed = /event stream closed/;
  const before = logCount(closed);
  const s = new Stream('/api/v1/events', bearer(FULL));
  await s.until(() => s.of('connected').length, 5000, 'connected');
  s.close();
  const end = Date.now() + 2 * HB + 4000;
  while (logCount(closed) <= before) {
    assert(Date.now() < end, `no "event stream closed" in ${LOG} within ${2 * HB + 4000} ms`);
    await sleep(100);
  }
});

await t(`${STREAMS} concurrent streams and REST load at once; every stream gets every event`, async () => {
  const streams = [];
  const path = '/api/v1/events?types=tool_result&serverId=everything';
  for (let i = 0; i < STREAMS; i++) streams.push(new Stream(path, bearer(FULL)));
  const end = Date.now() + 60000;
  for (const s of streams) await s.until(() => s.of('connected').length, Math.max(1000, end - Date.now()), 'connected (all streams)');
  // With every stream's connection open, an MCP server holds nothing but
  // its own stdio: accepted sockets are close-on-exec.
  const fds = await call('fake', 'fds', {});
  eq(fds.status, 200, fds.text);
  eq(fds.json.result.content[0].text.trim(), '0 1 2', 'descriptors of an MCP server');
  let ok = 0;
  const worker = async () => {
    for (let i = 0; i < 10; i++) {
      const r = await call('everything', 'echo', { message: `load ${i}` });
      if (r.status === 200 && r.json.success) ok++;
    }
  };
  await Promise.all(Array.from({ length: 10 }, worker));
  eq(ok, 100, 'REST calls that succeeded under load');
  try {
    for (const s of streams) await s.until(() => s.of('tool_result').length >= 100, Math.max(1000, end - Date.now()), '100 tool_result events on every stream');
  } catch (e) {
    // Say which streams fell short and what they saw after the gap.
    const all = new Set();
    for (const s of streams) for (const ev of s.of('tool_result')) all.add(ev.id);
    streams.forEach((s, i) => {
      const got = s.of('tool_result');
      if (got.length >= 100) return;
      const have = new Set(got.map((ev) => ev.id));
      const missing = [...all].filter((id) => !have.has(id));
      const last = got.at(-1), hb = s.of('heartbeat');
      const after = hb.length && last ? `${hb.at(-1).at - last.at} ms` : '-';
      console.log(`#   stream ${i}: ${got.length} tool_result, ended ${s.ended}, ` +
        `${hb.length} heartbeats (the last ${after} after the last tool_result), ` +
        `missing ${missing.slice(0, 5).join(',')}${missing.length > 5 ? ',...' : ''} (${missing.length}), ` +
        `other frames: ${s.events.filter((ev) => !['tool_result', 'heartbeat', 'connected'].includes(ev.data.type)).map((ev) => JSON.stringify(ev.data).slice(0, 80)).join(' | ') || 'none'}`);
    });
    for (const s of streams) s.close();
    throw e;
  }
  // The store's timer found events whose wake-up was late or lost: not a
  // failure (nothing was lost), but a defect to chase, so say it.
  const missed = logCount(/without a wake-up/);
  if (missed) {
    console.log(`#   note: ${missed} stream(s) found events on the store's timer that had waited 0.5 s or more for a wake-up` +
      (process.env.MCPGW_TEST_WRAPPER ? ' (expected under valgrind, which runs one thread at a time: the notifier waits its turn)' : ''));
  }
  const first = streams[0].of('tool_result').map((e) => e.id).join(',');
  for (const s of streams) {
    eq(s.of('tool_result').length, 100, 'events per stream');
    eq(s.of('tool_result').map((e) => e.id).join(','), first, 'the same events, in the same order');
  }
  for (const s of streams) s.close();
});

if (process.env.RESTART_CMD) {
  await t('a graceful web-server restart mid-stream: the stream resumes, nothing lost', async () => {
    // An EventSource-like client: reconnects with Last-Event-ID after the
    // stream ends or breaks.
    const path = '/api/v1/events?types=tool_result&serverId=fake';
    const got = [];
    let last = null, stop = false, reconnects = 0, cur = null;
    const take = (s, from) => {
      for (; from < s.events.length; from++) {
        const e = s.events[from];
        if (e.id) last = e.id;
        if (e.data.type === 'tool_result') got.push(e.id);
      }
      return from;
    };
    const run = async () => {
      while (!stop) {
        const s = new Stream(path, { ...bearer(FULL), ...(last ? { 'last-event-id': last } : {}) });
        cur = s;
        try { await s.opened; } catch { await sleep(200); reconnects++; continue; }
        let seen = 0;
        while (!stop && !s.ended) {
          seen = take(s, seen);
          await new Promise((r) => { s.waiters.push(r); setTimeout(r, 100); });
        }
        take(s, seen);
        if (!stop) { reconnects++; await sleep(300); }
      }
    };
    const loop = run();
    const callRetry = async () => {
      const end = Date.now() + 20000;
      for (;;) {
        try {
          const r = await call('fake', 'echo', { message: 'restart' });
          if (r.status === 200) return;
        } catch { /* the server is restarting */ }
        assert(Date.now() < end, 'a call never succeeded after the restart');
        await sleep(200);
      }
    };
    const waitCount = async (k, ms) => {
      const end = Date.now() + ms;
      while (got.length < k) { assert(Date.now() < end, `${got.length} of ${k} events on the stream`); await sleep(100); }
    };
    await sleep(300);
    await callRetry();
    await waitCount(1, 5000);
    const firstId = got[0];
    execSync(process.env.RESTART_CMD, { stdio: 'inherit' });
    for (let i = 0; i < 3; i++) await callRetry();
    await waitCount(4, 20000);
    await sleep(500);
    stop = true;
    cur?.close();
    await loop;
    eq(new Set(got).size, got.length, `duplicates in ${got}`);
    // Nothing lost: a fresh reader from the first event sees exactly what
    // the resuming client saw after it.
    const check = new Stream(path, { ...bearer(FULL), 'last-event-id': firstId });
    await check.until(() => check.of('tool_result').length >= got.length - 1, 5000, 'the replay');
    await sleep(300);
    check.close();
    eq(check.of('tool_result').map((e) => e.id).join(','), got.slice(1).join(','), 'replay = what the client got');
    console.log(`#   reconnects during the restart: ${reconnects}, events: ${got.length}`);
  });
}

console.log(`1..${n}`);
console.log(`# ${process.env.VARIANT || ''}: ${n - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
