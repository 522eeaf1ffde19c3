// The probes (issue 14): GET /healthz (the process answers) and GET /readyz (this instance should
// get traffic: the store answers, the ledger keeps up, it is not draining), both public and
// cheap. The store is made unreachable for real: another process holds SQLite's write lock, so
// the ledger's writes fail after their busy timeout; readiness comes back once it lets go.
// The last test drains the gateway (one worker, so a new connection meets the draining worker).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ADMIN = 'health-admin-token';
let gw, key;

before(async () => {
    gw = await h.startGateway({
        config: { server: { workers: 1, admin_token: ADMIN, drain_timeout_ms: 20000 } },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const echo = (content) => h.post(gw, '/v1/chat/completions', key,
    { model: 'echo-1', messages: [{ role: 'user', content }] });

test('/healthz and /readyz answer without a key, GET only', T, async () => {
    const alive = await h.get(gw, '/healthz');
    assert.equal(alive.status, 200);
    assert.deepEqual(alive.json, { status: 'ok' });
    const ready = await h.get(gw, '/readyz');
    assert.equal(ready.status, 200, ready.text);
    assert.deepEqual(ready.json, { status: 'ready' });
    assert.equal(ready.headers.get('content-type'), 'application/json');
    assert.ok(ready.headers.get('x-request-id'));
    // a credential, even a wrong one, changes nothing
    assert.equal((await h.get(gw, '/readyz', 'ms-not-a-key')).status, 200);
    for (const p of ['/readyz', '/healthz']) {
        const res = await h.post(gw, p, undefined, {});
        h.assertError(assert, res, 405, 'invalid_request_error', 'method_not_allowed');
        assert.equal(res.headers.get('allow'), 'GET');
    }
    const m = await h.scrapeMetrics(gw, ADMIN);
    assert.ok(m.get('modelswitch_requests_total',
        { endpoint: 'health', model: '', provider: '', status: '200' }) >= 3);
});

test('/readyz is 503 while the store refuses the ledger, and 200 again once it takes it', T, async (t) => {
    if (spawnSync('sqlite3', ['-version']).error) {
        t.skip('the sqlite3 shell is not installed: nothing here can hold the store\'s write lock');
        return;
    }
    // Another process takes SQLite's write lock and keeps it.
    const holder = spawn('sqlite3', [gw.config.store.sqlite], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    holder.stdout.setEncoding('utf8').on('data', (d) => { out += d; });
    holder.stderr.setEncoding('utf8').on('data', (d) => { out += d; });
    const ended = new Promise((resolve) => holder.on('exit', resolve));
    try {
        holder.stdin.write('.timeout 5000\nBEGIN IMMEDIATE;\nSELECT \'lock\' || \'ed\';\n');
        const { value: locked } = await h.eventually(() => out.includes('locked'), h.scaled(10000));
        assert.ok(locked && !/error/i.test(out), `the lock was not taken: ${out}`);

        // A settled request waits for the store, which refuses it after its busy timeout.
        const res = await echo('settled while the store is locked');
        assert.equal(res.status, 200, res.text);
        const { value: down } = await h.eventually(async () => {
            const r = await h.get(gw, '/readyz');
            return r.status === 503 ? r : null;
        }, h.scaled(20000), 100);
        assert.ok(down, '/readyz stayed 200 while the store refused every write');
        h.assertError(assert, down, 503, 'service_unavailable_error', 'service_unavailable');
        assert.match(down.json.error.message, /store is unreachable/);
        h.assertRetryAfter(assert, down, '/readyz');
        const m = await h.scrapeMetrics(gw, ADMIN);
        assert.equal(m.raw('modelswitch_store_up'), '0');
        assert.equal(m.raw('modelswitch_ledger_queue_depth'), '1');
        assert.ok(m.get('modelswitch_ledger_lag_seconds') >= 5, 'the record waited out a busy timeout');
        // the gateway keeps serving meanwhile: only readiness says so
        assert.equal((await echo('still served')).status, 200);
        assert.equal((await h.get(gw, '/healthz')).status, 200);
    } finally {
        holder.stdin.end('COMMIT;\n.quit\n');
        await ended;
    }
    const { value: up } = await h.eventually(async () => (await h.get(gw, '/readyz')).status === 200,
        h.scaled(15000), 100);
    assert.ok(up, '/readyz did not come back once the store took writes again');
    const m = await h.scrapeMetrics(gw, ADMIN);
    assert.equal(m.raw('modelswitch_store_up'), '1');
    assert.equal(m.raw('modelswitch_ledger_queue_depth'), '0');
    assert.equal((await h.audit(gw)).code, 0, 'every usage record was written once the lock went');
});

test('/readyz is 503 while the gateway drains, then it exits 0', T, async () => {
    // A slow stream keeps the only worker busy through the drain.
    const body = JSON.stringify({
        model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'hi' }],
        mock: { chunks: 15, chunk_delay_ms: 100 },
    });
    const c = await h.RawConn.open(gw.port);
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok1 '), h.scaled(5000), 'the first tokens');
    assert.equal((await h.get(gw, '/readyz')).status, 200, 'ready before the drain');

    const exited = gw.signalAndWait('SIGTERM', h.scaled(15000));
    const { value: draining } = await h.eventually(async () => {
        const r = await h.get(gw, '/readyz').catch(() => null);
        return r?.status === 503 ? r : null;
    }, h.scaled(3000));
    assert.ok(draining, '/readyz did not turn 503 during the drain');
    h.assertError(assert, draining, 503, 'service_unavailable_error', 'service_unavailable');
    assert.match(draining.json.error.message, /shutting down/);
    assert.ok(draining.headers.get('retry-after'));

    const [res] = await c.readResponses(1, h.scaled(10000));
    c.destroy();
    assert.equal(res.status, 200);
    assert.equal(h.sseEvents(res.text).at(-1), '[DONE]', 'the stream finished');
    assert.deepEqual(await exited, { code: 0, signal: null });
});
