// origins.js - gateway.allowedOrigins: only the listed origins pass, in the
// form browsers send them; loopback pages are no longer special
// (tests/wsd-auth.test runs it against a daemon with a list).
'use strict';

const { assert, rawRequest, handshake, run } = require('./lib');

const status = async (origin) =>
  (await rawRequest(handshake(origin ? `Origin: ${origin}\r\n` : ''))).status;

run([
  ['listed origins pass, in any case and with the default port written', async () => {
    assert.equal(await status('https://app.example.com'), 101);
    assert.equal(await status('HTTPS://App.Example.COM:443'), 101);
    assert.equal(await status('http://localhost:8080'), 101);
  }],
  ['everything else gets 403, loopback included', async () => {
    assert.equal(await status('https://app.example.com:8443'), 403);
    assert.equal(await status('http://app.example.com'), 403);
    assert.equal(await status('http://localhost:3000'), 403);
    assert.equal(await status('http://127.0.0.1'), 403);
  }],
  ['programs that send no Origin are not affected', async () => {
    assert.equal(await status(null), 101);
  }],
]);
