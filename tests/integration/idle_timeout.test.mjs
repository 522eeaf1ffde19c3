// The keep-alive idle timeout over a raw socket: it counts from the end of the connection's last
// request however often the connection was reused. The connection's timer is lazy (http.c,
// conn_timer_set): a request leaves it armed for the deadline of an earlier one, and when that
// comes the timer must find the later deadline and wait for it instead of closing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const IDLE_MS = h.scaled(800);
let gw;

before(async () => {
    gw = await h.startGateway({
        mock: false,
        config: { server: { header_timeout_ms: 4 * IDLE_MS, idle_timeout_ms: IDLE_MS } },
    });
});
after(async () => { await gw?.stop(); });

const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n';

test('the idle timeout counts from the last request of a reused connection, then closes it', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        // each request comes 0.6 of the timeout after the last answer: four gaps, 2.4 timeouts
        // after the first request, past the deadlines the earlier requests set
        let lastAnswer = 0;
        for (let i = 1; i <= 5; i++) {
            if (i > 1) {
                await h.sleep(Math.round(IDLE_MS * 0.6));
                assert.ok(!c.closed, `closed in gap ${i - 1}, ${Date.now() - lastAnswer} ms after an answer ` +
                    `(idle timeout ${IDLE_MS} ms): an earlier request's deadline fired`);
            }
            await c.write(HEALTH);
            const res = await c.readResponses(i);
            assert.equal(res[i - 1].status, 200);
            lastAnswer = Date.now();
        }
        assert.ok(await c.waitClosed(IDLE_MS + h.scaled(2000)), 'the idle connection was never closed');
        const idle = Date.now() - lastAnswer;
        assert.ok(idle >= IDLE_MS * 0.9, `closed ${idle} ms after the last answer, before the ${IDLE_MS} ms timeout`);
        assert.equal(c.responses().length, 5, 'an idle close sends nothing');
    } finally {
        c.destroy();
    }
});

test('a connection that sends nothing after it connects is closed at the idle timeout', T, async () => {
    const c = await h.RawConn.open(gw.port);
    const t0 = Date.now();
    try {
        assert.ok(await c.waitClosed(IDLE_MS + h.scaled(2000)), 'an idle new connection was never closed');
        assert.ok(Date.now() - t0 >= IDLE_MS * 0.9, `closed after ${Date.now() - t0} ms`);
    } finally {
        c.destroy();
    }
});
