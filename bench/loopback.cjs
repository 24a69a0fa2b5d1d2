// loopback.cjs - preloaded (node --require) into the peer gateways that
// bench/compare runs, so every server they open listens on 127.0.0.1 only:
// supergateway has no option to choose the address and listens on all
// interfaces.  Only the address changes; ports and everything else are
// the gateway's own.
'use strict';
const net = require('net');
const listen = net.Server.prototype.listen;
net.Server.prototype.listen = function (...args) {
    if (typeof args[0] === 'number' || (typeof args[0] === 'string' && /^\d+$/.test(args[0]))) {
        if (typeof args[1] !== 'string')
            args.splice(1, 0, '127.0.0.1');
        else
            args[1] = '127.0.0.1';
    } else if (args[0] && typeof args[0] === 'object' && args[0].port !== undefined && !args[0].path) {
        args[0] = { ...args[0], host: '127.0.0.1' };
    }
    return listen.apply(this, args);
};
