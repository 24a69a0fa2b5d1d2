// sse_load.mjs - hold many event streams open through a web server and
// measure what each receives (bench/bench_rest.sh runs it; not a test).
//
// Environment: BASE, TOKEN, STREAMS (1000), HOLD_S (30), HEARTBEAT_MS,
// EVENTS (20: tool calls made while the streams are open, one every
// HOLD_S/EVENTS/2 s), FCGI_PID (for memory: VmRSS before and after).
// Prints: connected streams, heartbeats (every one delivered within the
// interval + 1 s?), memory per stream, and publish->receive latency
// percentiles over every (event, stream) delivery.
import http from 'node:http';
import { readFileSync } from 'node:fs';

const url = new URL(process.env.BASE);
const TOKEN = process.env.TOKEN;
const STREAMS = Number(process.env.STREAMS || 1000);
const HOLD = Number(process.env.HOLD_S || 30) * 1000;
const HB = Number(process.env.HEARTBEAT_MS || 5000);
const EVENTS = Number(process.env.EVENTS || 20);
const pid = process.env.FCGI_PID;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const rss = () => {
  if (!pid) return NaN;
  try { return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]); } catch { return NaN; }
};
const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });

function open(i) {
  const st = { i, connectedAt: 0, beats: [], lat: [], ended: false, error: null };
  const req = http.request({ host: url.hostname, port: url.port, path: '/api/v1/events?types=tool_result', agent,
    headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
    let buf = '';
    res.setEncoding('utf8');
    res.on('data', (c) => {
      const now = Date.now();
      buf += c;
      let k;
      while ((k = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, k); buf = buf.slice(k + 2);
        const data = frame.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('');
        if (!data) continue;
        const ev = JSON.parse(data);
        if (ev.type === 'connected') st.connectedAt = now;
        else if (ev.type === 'heartbeat') st.beats.push(now);
        else if (ev.type === 'tool_result') st.lat.push(now - ev.timestamp);
      }
    });
    res.on('end', () => { st.ended = true; });
  });
  req.on('error', (e) => { st.error = e.message; st.ended = true; });
  req.end();
  st.req = req;
  return st;
}

function call() {
  return new Promise((resolve) => {
    const body = JSON.stringify({ serverId: 'everything', toolName: 'echo', params: { message: 'sse bench' } });
    const r = http.request({ host: url.hostname, port: url.port, method: 'POST', path: '/api/v1/tools/call', agent,
      headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' } }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode)); });
    r.on('error', () => resolve(0));
    r.end(body);
  });
}

const pct = (a, p) => (a.length ? a[Math.min(a.length - 1, Math.floor(a.length * p))] : NaN);
const rss0 = rss();
const t0 = Date.now();
const streams = [];
for (let i = 0; i < STREAMS; i++) {
  streams.push(open(i));
  if (i % 100 === 99) await sleep(50);
}
while (streams.some((s) => !s.connectedAt && !s.ended) && Date.now() - t0 < 60000) await sleep(100);
const connected = streams.filter((s) => s.connectedAt).length;
console.log(`streams: ${connected} of ${STREAMS} connected in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
await sleep(1000);
const rss1 = rss();
if (pid) console.log(`memory: mcpgw-fcgi VmRSS ${rss0} KiB before, ${rss1} KiB with ${connected} streams: ${((rss1 - rss0) / connected).toFixed(1)} KiB per stream`);
const holdStart = Date.now();
const gap = Math.max(200, HOLD / EVENTS / 2);
let calls = 0;
while (Date.now() - holdStart < HOLD) {
  if (calls < EVENTS) { if ((await call()) === 200) calls++; }
  await sleep(gap);
}
const holdEnd = Date.now();
for (const s of streams) s.req.destroy();
// Heartbeats: every stream, every interval of the hold, within HB + 1 s.
let worst = 0, missing = 0, dropped = 0;
for (const s of streams.filter((x) => x.connectedAt)) {
  if (s.ended && s.error) dropped++;
  const marks = [s.connectedAt, ...s.beats.filter((b) => b <= holdEnd)];
  for (let k = 1; k < marks.length; k++) worst = Math.max(worst, marks[k] - marks[k - 1]);
  const tail = holdEnd - marks[marks.length - 1];
  worst = Math.max(worst, tail > HB + 1000 ? tail : 0);
  if (tail > HB + 1000) missing++;
}
console.log(`heartbeats: interval ${HB} ms, worst gap ${worst} ms over ${((holdEnd - holdStart) / 1000).toFixed(0)} s held; ` +
  `every heartbeat within interval + 1 s: ${worst <= HB + 1000 && missing === 0 ? 'yes' : 'NO'}; streams dropped: ${dropped}`);
const lat = streams.flatMap((s) => s.lat).sort((a, b) => a - b);
const expected = connected * calls;
console.log(`events: ${calls} published, ${lat.length} of ${expected} deliveries; publish->receive p50 ${pct(lat, 0.5)} ms, p99 ${pct(lat, 0.99)} ms, max ${lat[lat.length - 1]} ms`);
process.exit(connected === STREAMS && lat.length === expected && worst <= HB + 1000 ? 0 : 1);
