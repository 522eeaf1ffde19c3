// Graceful shutdown: on SIGTERM the gateway closes idle connections, lets an in-flight stream
// finish completely, refuses new work (503 service_unavailable, or a refused connection once the
// listener is closed) and exits 0. This file owns its gateway's lifetime: it stops it itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    gw = await h.startGateway({
        config: { server: { drain_timeout_ms: 20000 } },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const CHUNKS = 20;

test('SIGTERM drains: the in-flight stream finishes, new work is refused, exit 0', T, async () => {
    // An idle keep-alive connection, which the drain should close.
    const idle = await h.RawConn.open(gw.port);
    await idle.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal((await idle.readResponses(1))[0].status, 200);

    // A slow stream: CHUNKS tokens 100 ms apart, about 2 s in all.
    const body = JSON.stringify({
        model: 'mock-model', stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'hi' }], mock: { chunks: CHUNKS, chunk_delay_ms: 100 },
    });
    const c = await h.RawConn.open(gw.port);
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok1 '), h.scaled(5000), 'the first tokens');

    const exited = gw.signalAndWait('SIGTERM', h.scaled(15000));
    await h.sleep(200);

    // New work during the drain.
    const late = await h.post(gw, '/v1/chat/completions', key,
        { model: 'echo-1', messages: [{ role: 'user', content: 'late' }] }).catch((e) => e);
    if (late instanceof Error) {
        const code = late.cause?.code ?? late.code;
        assert.ok(['ECONNREFUSED', 'ECONNRESET', 'UND_ERR_SOCKET'].includes(code),
            `a request during the drain failed oddly: ${late} (${code})`);
    } else {
        h.assertError(assert, late, 503, 'service_unavailable_error', 'service_unavailable');
        assert.ok(late.headers.get('retry-after') !== null, 'retry-after on 503');
        assert.ok(late.headers.get('retry-after-ms') !== null, 'retry-after-ms on 503');
    }

    // The idle connection is closed by the drain, well before the stream ends.
    assert.ok(await idle.waitClosed(h.scaled(1500)), 'an idle keep-alive connection stayed open during the drain');

    // The in-flight stream completes: every token, the usage chunk, [DONE], a proper end.
    const [res] = await c.readResponses(1, h.scaled(10000));
    c.destroy();
    assert.equal(res.status, 200);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]', `the stream was cut: ${res.text.slice(-300)}`);
    const want = Array.from({ length: CHUNKS }, (_, i) => `tok${i} `).join('');
    assert.equal(h.streamContent(events), want);
    assert.equal(events.at(-2).usage?.completion_tokens, CHUNKS);

    const r = await exited;
    assert.deepEqual(r, { code: 0, signal: null }, 'exit status after the drain');
    // After the exit nothing listens any more.
    const gone = await h.get(gw, '/healthz', undefined, { timeout: 2000 }).catch((e) => e);
    assert.ok(gone instanceof Error, 'something still answers after the exit');
});
