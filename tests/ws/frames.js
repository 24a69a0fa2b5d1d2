// frames.js - the transport end to end, through libmicrohttpd: handshake
// validation answers, bytes sent with the handshake (MHD's extra_in),
// split writes, and the RFC 6455 close codes on raw sockets; our own pings
// and the drop of a peer that stops answering them (tests/wsd-frames.test:
// pingIntervalMs 1000, maxMissedPongs 1).
'use strict';

const net = require('node:net');
const { assert, rawRequest, handshake, frame, rawSocket, sleep, run, PORT } = require('./lib');

run([
  ['the 101 carries the RFC 6455 accept value and no extension', async () => {
    const r = await rawRequest(handshake('Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n'));
    assert.equal(r.status, 101);
    assert.equal(r.headers.upgrade.toLowerCase(), 'websocket');
    assert.match(r.headers.connection, /upgrade/i);
    assert.equal(r.headers['sec-websocket-accept'], 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(r.headers['sec-websocket-extensions'], undefined);
  }],

  ['a wrong version gets 426 naming version 13', async () => {
    const r = await rawRequest(handshake().replace('Version: 13', 'Version: 8'));
    assert.equal(r.status, 426);
    assert.equal(r.headers['sec-websocket-version'], '13');
    assert.equal(JSON.parse(r.body).code, 'bad_request');
  }],

  ['a bad key gets 400', async () => {
    for (const key of ['abc', 'dGhlIHNhbXBsZSBub25jZQ', 'dGhlIHNhbXBsZSBub25jZQ==x', '']) {
      const r = await rawRequest(handshake().replace('dGhlIHNhbXBsZSBub25jZQ==', key));
      assert.equal(r.status, 400, `key '${key}'`);
    }
    const r = await rawRequest(handshake().replace(/Sec-WebSocket-Key:[^\r]*\r\n/, ''));
    assert.equal(r.status, 400);
  }],

  ['no Upgrade, another method, another path', async () => {
    let r = await rawRequest(`GET /ws HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nConnection: close\r\n\r\n`);
    assert.equal(r.status, 426);
    assert.equal(r.headers.upgrade, 'websocket');
    r = await rawRequest(`POST /ws HTTP/1.1\r\nHost: 127.0.0.1:${PORT}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}`);
    assert.equal(r.status, 405);
    assert.equal(r.headers.allow, 'GET');
    r = await rawRequest(handshake('', '/other'));
    assert.equal(r.status, 404);
    r = await rawRequest(handshake().replace('HTTP/1.1', 'HTTP/1.0'));
    assert.ok(r.status === 400 || r.status === 505, `HTTP/1.0: ${r.status}`);
  }],

  ['a request head over the limit gets 431; a 3 KB one is upgraded', async () => {
    let r = await rawRequest(handshake(`Cookie: a=${'x'.repeat(3000)}\r\n`));
    assert.equal(r.status, 101);
    r = await rawRequest(handshake(`Cookie: a=${'x'.repeat(5000)}\r\n`));
    assert.equal(r.status, 431);
  }],

  ['frames sent with the handshake are read first (extra_in)', async () => {
    const first = Buffer.concat([
      frame(1, JSON.stringify({ type: 'ping', id: 'early' })),
      frame(1, '{"type":"ping",', { fin: false }),
      frame(9, 'beat'),
      frame(0, '"id":"frag"}'),
    ]);
    const r = await rawSocket(first);
    assert.equal((await r.text()).type, 'status');
    const a = await r.text();
    assert.deepEqual([a.type, a.id], ['pong', 'early']);
    const pong = await r.next((f) => f.op === 10);
    assert.equal(pong.payload.toString(), 'beat');
    const b = await r.text();
    assert.deepEqual([b.type, b.id], ['pong', 'frag']);
    r.s.destroy();
  }],

  ['a handshake and a frame written one byte at a time', async () => {
    const bytes = Buffer.concat([Buffer.from(handshake()), frame(1, '{"type":"ping","id":"slow"}')]);
    const s = net.connect(PORT, '127.0.0.1');
    let got = '';
    s.on('data', (d) => { got += d.toString('latin1'); });
    s.setNoDelay(true);
    for (const b of bytes) {
      s.write(Buffer.from([b]));
      await sleep(1);
    }
    const deadline = Date.now() + 5000;
    while (!got.includes('"id":"slow"') && Date.now() < deadline) await sleep(20);
    assert.match(got, /^HTTP\/1\.1 101/);
    assert.ok(got.includes('"type":"pong","id":"slow"'), got.slice(0, 300));
    s.destroy();
  }],

  ['an unmasked frame closes with 1002', async () => {
    const r = await rawSocket(frame(1, '{"type":"ping"}', { mask: false }));
    assert.equal(await r.closeCode(), 1002);
  }],

  ['invalid UTF-8 closes with 1007', async () => {
    const r = await rawSocket(Buffer.concat([frame(1, Buffer.from([0x7b, 0xe2, 0x82]), { fin: false }),
                                              frame(0, Buffer.from([0x28, 0x7d]))]));
    assert.equal(await r.closeCode(), 1007);
  }],

  ['a compressed (RSV1) frame closes with 1002: no deflate was agreed', async () => {
    const r = await rawSocket(frame(1, 'x', { rsv: 4 }));
    assert.equal(await r.closeCode(), 1002);
  }],

  ['a bad close code is a protocol error (1002)', async () => {
    const p = Buffer.alloc(2);
    p.writeUInt16BE(1005);
    const r = await rawSocket(frame(8, p));
    assert.equal(await r.closeCode(), 1002);
  }],

  ['the daemon pings a silent client and drops it when pongs stop', async () => {
    const r = await rawSocket();
    const t0 = Date.now();
    const ping = await r.next((f) => f.op === 9, 3000);
    assert.ok(Date.now() - t0 >= 900, 'pinged after the interval');
    r.s.write(frame(10, ping.payload));
    // Answered: still open one interval later, and pinged again.
    await r.next((f) => f.op === 9, 3000);
    // Now silent: dropped after maxMissedPongs (1) more intervals.
    const deadline = Date.now() + 5000;
    while (!r.ended && Date.now() < deadline) await sleep(50);
    assert.ok(r.ended, 'a client that stops answering pings is dropped');
  }],
]);
