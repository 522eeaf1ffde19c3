// Draining with detached requests: a stream whose client left is still read by the proxy for the
// usage it must bill (the API layer keeps it, the server only counts it). On SIGTERM the worker
// waits for it, and when the drain times out the API layer is told to abandon it (billed by
// estimate) before the process exits 0. Each test owns its gateway's lifetime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };

// Starts a slow stream, waits for its first tokens and leaves: the request is then detached.
// Returns its request id.
async function detachedStream(gw, key, chunks) {
    const body = JSON.stringify({
        model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'hi' }],
        mock: { chunks, chunk_delay_ms: 100 },
    });
    const c = await h.RawConn.open(gw.port);
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok1 '), h.scaled(5000), 'the first tokens');
    const id = /x-request-id: (\S+)/i.exec(c.data)[1];
    c.destroy();
    return id;
}

function accessLine(gw, id) {
    const l = gw.stderr.split('\n').find((s) => s.includes(`"request_id":"${id}"`));
    return l ? JSON.parse(l) : null;
}

test('SIGTERM waits for a detached request to read its usage, then exits 0', T, async () => {
    let key;
    const gw = await h.startGateway({
        config: { server: { drain_timeout_ms: 20000 } },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
    try {
        const id = await detachedStream(gw, key, 25); // about 2.5 s in all
        await h.sleep(100); // the server has seen the client leave
        const t0 = Date.now();
        const r = await gw.signalAndWait('SIGTERM', h.scaled(15000));
        assert.deepEqual(r, { code: 0, signal: null }, `exit status after the drain:\n${gw.stderr}`);
        assert.ok(Date.now() - t0 >= 1000, 'the worker stopped before the detached request was read');
        const rec = accessLine(gw, id);
        assert.ok(rec, 'an access line for the detached request');
        assert.equal(rec.status, 499);
        assert.equal(rec.completion_tokens, 25, 'the usage of the whole answer, read during the drain');
    } finally {
        await gw.stop();
    }
});

test('a drain timeout abandons a detached request (billed by estimate) and exits 0', T, async () => {
    let key;
    const gw = await h.startGateway({
        config: { server: { drain_timeout_ms: 500 } },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
    try {
        const id = await detachedStream(gw, key, 100); // about 10 s: outlives the drain timeout
        await h.sleep(100);
        const t0 = Date.now();
        const r = await gw.signalAndWait('SIGTERM', h.scaled(8000));
        assert.deepEqual(r, { code: 0, signal: null }, `exit status after the drain:\n${gw.stderr}`);
        assert.ok(Date.now() - t0 < h.scaled(5000), 'the drain timeout did not end the detached request');
        assert.match(gw.stderr, /drain timeout/);
        const rec = accessLine(gw, id);
        assert.ok(rec, 'an access line for the abandoned request');
        assert.equal(rec.status, 499);
        assert.ok(rec.completion_tokens < 100, `completion_tokens ${rec.completion_tokens}: not the whole answer`);
    } finally {
        await gw.stop();
    }
});
