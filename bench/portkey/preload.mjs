// Preload for the Portkey gateway in ModelSwitch's benchmark (bench/run.sh starts it with
// `node --import ./preload.mjs node_modules/@portkey-ai/gateway/build/start-server.js`).
//
// Two things, neither of which changes what Portkey does per request:
//
// 1. Streaming on Node 20. Portkey forwards a stream as `new Response(transformed, upstream)`,
//    where `upstream` is what the global fetch (undici) returned. @hono/node-server replaces the
//    global Response with a lightweight class that, for a stream body, keeps the init's Headers
//    object itself instead of copying it. A fetch response's headers have undici's "immutable"
//    guard, so Portkey's next step (`headers.append('x-portkey-last-used-option-index', ...)`)
//    throws `TypeError: immutable` and every streaming request answers 500 "Something went
//    wrong". We wrap fetch so each response it returns carries a mutable copy of its headers as
//    an own property (shadowing the prototype getter); body, status, url and clone() stay
//    undici's own. That is one Headers copy per upstream call, the same copy a native Response
//    constructor would have made.
//
// 2. Loopback only. start-server.js calls serve({fetch, port}) with no hostname, which listens
//    on every interface; the benchmark keeps everything on 127.0.0.1, so a listen() with a port
//    and no host gets PORTKEY_BENCH_HOST (default 127.0.0.1).

import http from 'node:http';

const origFetch = globalThis.fetch;
globalThis.fetch = async function benchFetch(...args) {
    const res = await origFetch.apply(this, args);
    Object.defineProperty(res, 'headers', {
        value: new Headers(res.headers),
        writable: false,
        configurable: true,
        enumerable: false,
    });
    return res;
};

const host = process.env.PORTKEY_BENCH_HOST || '127.0.0.1';
const origListen = http.Server.prototype.listen;
http.Server.prototype.listen = function benchListen(...args) {
    // serve() calls listen(port, hostname, cb) with hostname undefined.
    if (typeof args[0] === 'number' && args[1] === undefined) args[1] = host;
    return origListen.apply(this, args);
};
