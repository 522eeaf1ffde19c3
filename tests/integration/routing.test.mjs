// Routing and fail-over (issue #4) against several mock upstreams as deployments: retries on
// another deployment first and then the same one (after a backoff or the upstream's retry-after,
// clamped), no retry for 4xx that retrying cannot fix, cool-downs that take a failing deployment
// out, let one probe through and double while it keeps failing, what the client sees when nothing
// works (429, 503, 504, 502 with x-should-retry: false), connection refused, hung and slow
// upstreams, streams that break after the first byte (in-band error, then [DONE]) and fallbacks to
// another model (billed at that model's price). docs/ROUTING.md describes the algorithm.
// Issue 9: a deployment cools down on the failure rate of requests, so one account's request that
// fails on every attempt does not take it out for the other accounts; a 429 the gateway already
// retried tells the client not to retry before the deployments are back.
//
// Each fault has its own model, and faults set per mock instance (/_mock/config) have their own
// mock, so a cooled-down or rate-limited deployment never leaks into another test. Healthy
// deployments share mock 0 with their own upstream model names, which tells their traffic apart.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const MSG = [{ role: 'user', content: 'hi' }];
const COOLDOWN = 500;
const FIRST_BYTE = 400;
const RETRY_AFTER_MAX = 1500;
const ROUTING = {
    max_attempts: 3, retry_budget_ms: 10000, backoff_base_ms: 10, backoff_max_ms: 50,
    retry_after_max_ms: RETRY_AFTER_MAX, min_requests: 3, failure_rate_percent: 50,
    failure_window_ms: 10000, cooldown_ms: COOLDOWN, cooldown_max_ms: 4000,
};

// Mocks of the main gateway, by role: 0 is shared by every healthy deployment and by faults sent
// in the request body; the others carry instance-wide faults.
const M = { shared: 0, coolA: 1, probeA: 2, ra429: 3, all429x: 4, all429y: 5, slowA: 6, down: 7, flip: 8 };
let gw, key, billing, otherKey;
let tgw, tkey; // max_attempts 1, for timing assertions

const dep = (provider, model, extra = {}) => ({ provider, model, ...extra });
const model = (deployments, extra = {}) => ({ pricing: { input: 1, output: 1 }, deployments, ...extra });

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: Object.keys(M).length,
        sections: { routing: ROUTING },
        config: (mocks) => {
            const p = (name, extra) => h.mockProvider(mocks[M[name]], extra);
            return {
                providers: {
                    coolA: p('coolA'), probeA: p('probeA'), ra429: p('ra429'),
                    all429x: p('all429x'), all429y: p('all429y'),
                    slowA: p('slowA', { first_byte_timeout_ms: FIRST_BYTE }),
                    down: p('down'), flip1: p('flip'), flip2: p('flip'),
                    fbt: p('shared', { first_byte_timeout_ms: FIRST_BYTE }),
                    idle: p('shared', { idle_timeout_ms: 300 }),
                    total: p('shared', { timeout_ms: 1000 }),
                },
                models: {
                    'cool-model': model([dep('coolA', 'cool-a', { priority: 1 }),
                        dep('mock', 'cool-b', { priority: 2 })]),
                    'probe-model': model([dep('probeA', 'probe-a', { priority: 1 }),
                        dep('mock', 'probe-b', { priority: 2 })]),
                    'ra-model': model([dep('ra429', 'ra-a', { priority: 1 }),
                        dep('mock', 'ra-b', { priority: 2 })]),
                    'flip1-model': model([dep('flip1', 'flip1-up')]),
                    'flip2-model': model([dep('flip2', 'flip2-up')]),
                    'all429-model': model([dep('all429x', 'x429'), dep('all429y', 'y429')]),
                    'nr-model': model([dep('mock', 'nr-a'), dep('mock', 'nr-b')]),
                    'r408-model': model([dep('mock', 'r408-a'), dep('mock', 'r408-b')]),
                    'all500-model': model([dep('mock', 'a5-a'), dep('mock', 'a5-b')]),
                    'one500-model': model([dep('mock', 'one500')]),
                    'poison-model': model([dep('mock', 'poison-up')]),
                    'cool-all-model': model([dep('mock', 'ca-a'), dep('mock', 'ca-b')]),
                    'cr-model': model([dep('dead', 'cr-dead', { priority: 1 }),
                        dep('mock', 'cr-ok', { priority: 2 })]),
                    'hang3-model': model([dep('fbt', 'hang3')]),
                    'to-model': model([dep('slowA', 'to-a', { priority: 1 }),
                        dep('mock', 'to-b', { priority: 2 })]),
                    'fb-x': model([dep('down', 'fb-x-upstream')], { fallbacks: ['fb-y'] }),
                    'fb-y': { pricing: { input: 3, output: 7 }, deployments: [dep('mock', 'fb-y-upstream')] },
                    'cut-model': model([dep('mock', 'cut-up'), dep('mock', 'cut-up2')]),
                    'idle-model': model([dep('idle', 'idle-up')]),
                    'total-model': model([dep('total', 'total-up')]),
                },
            };
        },
        setup: async (g) => {
            const account = await g.createAccount('routing', 100);
            key = await g.createKey(account);
            billing = await g.createKey(account, { type: 'billing' });
            ({ key: otherKey } = await g.newProxyKey(100, 'other-tenant'));
            const mk = g.mocks;
            await mk[M.coolA].config({ fail_status: 503 });
            await mk[M.probeA].config({ fail_status: 500, delay_ms: 150 });
            await mk[M.ra429].config({ fail_status: 429, retry_after: 2 });
            await mk[M.all429x].config({ fail_status: 429, retry_after: 3 });
            await mk[M.all429y].config({ fail_status: 429, retry_after: 1 });
            await mk[M.slowA].config({ delay_ms: 3000 });
            await mk[M.down].config({ fail_status: 503 });
        },
    });
    tgw = await h.startGatewayWithMocks({
        mocks: 1,
        sections: { routing: { ...ROUTING, max_attempts: 1 } },
        config: (mocks) => ({
            providers: { fbt700: h.mockProvider(mocks[0], { first_byte_timeout_ms: 700 }) },
            // One model per test: three timeouts would cool a deployment down.
            models: {
                'hang-model': model([dep('fbt700', 'hang-up')]),
                'hang-stream-model': model([dep('fbt700', 'hang-stream-up')]),
                'slow-model': model([dep('fbt700', 'slow-up')]),
            },
        }),
        setup: async (g) => { ({ key: tkey } = await g.newProxyKey(100)); },
    });
});
after(async () => {
    try {
        await gw?.stop();
    } finally {
        await tgw?.stop();
    }
});

const mock = (name) => gw.mocks[M[name]];
const count = (name) => h.mockRequestCount(mock(name));
const sharedCount = async (upstream) => (await h.requestsForModel(gw.mocks[M.shared], upstream)).length;
const chat = (m, extra = {}, g = gw, k = key) =>
    h.post(g, '/v1/chat/completions', k, { model: m, messages: MSG, max_tokens: 20, ...extra });

function assertOk(res, provider, what = '') {
    assert.equal(res.status, 200, `${what}: ${res.text.slice(0, 300)}`);
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ', what);
    if (provider) assert.equal(res.headers.get('x-modelswitch-provider'), provider, `${what}: provider`);
}

/** 502/504 from the gateway: the gateway already retried, so clients must not. */
function assertNoRetry(res) {
    assert.equal(res.headers.get('x-should-retry'), 'false', `x-should-retry on ${res.status}`);
}

// --- fail-over and cool-downs -----------------------------------------------------------------

test('a deployment answering 503: traffic moves, the deployment cools down, then comes back', T, async () => {
    // cool-a (priority 1) fails; every request is retried on cool-b at once and succeeds.
    for (let i = 1; i <= 3; i++) {
        assertOk(await chat('cool-model'), 'mock', `request ${i}`);
        assert.equal(await count('coolA'), i, `request ${i}: cool-a is tried first`);
    }
    assert.equal(await sharedCount('cool-b'), 3);
    // Three failures in a row: cool-a is out for the cool-down and gets nothing.
    const cooling = Date.now();
    let n = 0;
    while (Date.now() - cooling < COOLDOWN - 200) {
        assertOk(await chat('cool-model'), 'mock', 'during the cool-down');
        n++;
        await h.sleep(20); // the mock records only its last 200 requests
    }
    assert.ok(n >= 3, `only ${n} requests during the cool-down`);
    assert.equal(await count('coolA'), 3, 'a cooling-down deployment must get no traffic');
    assert.equal(await sharedCount('cool-b'), 3 + n);

    // Healthy again: after the cool-down the probe succeeds and cool-a takes the traffic back.
    await mock('coolA').config({ fail_status: 0 });
    await h.sleep(Math.max(0, cooling + COOLDOWN + 100 - Date.now()));
    for (let i = 0; i < 3; i++) assertOk(await chat('cool-model'), 'coolA', `after the cool-down (${i})`);
    assert.equal(await count('coolA'), 6);
    assert.equal(await sharedCount('cool-b'), 3 + n, 'cool-b gets nothing once cool-a is back');
});

test('a cool-down lets exactly one probe through and doubles while the deployment keeps failing', T, async () => {
    // probe-a answers 500 after 150 ms, so a probe is still running when the others arrive.
    for (let i = 1; i <= 3; i++) assertOk(await chat('probe-model'), 'mock', `request ${i}`);
    assert.equal(await count('probeA'), 3);
    const cooled = Date.now();

    await h.sleep(Math.max(0, cooled + COOLDOWN + 100 - Date.now()));
    const fired = Date.now();
    const all = await Promise.all(Array.from({ length: 6 }, () => chat('probe-model')));
    all.forEach((r, i) => assertOk(r, 'mock', `concurrent request ${i}`));
    assert.equal(await count('probeA'), 4, 'exactly one probe once the cool-down is over');
    // The probe failed at about fired + 150 ms: the next cool-down is 2 x COOLDOWN.
    const probeFailed = fired + 150;
    await h.sleep(Math.max(0, probeFailed + 1.4 * COOLDOWN - Date.now()));
    assertOk(await chat('probe-model'), 'mock', 'in the second cool-down');
    assert.equal(await count('probeA'), 4, 'the second cool-down must be longer than the first');
    await h.sleep(Math.max(0, probeFailed + 2 * COOLDOWN + 150 - Date.now()));
    assertOk(await chat('probe-model'), 'mock', 'after the second cool-down');
    assert.equal(await count('probeA'), 5, 'a probe after the second cool-down');
});

test('an upstream 429 moves the request to another deployment at once', T, async () => {
    const t0 = Date.now();
    assertOk(await chat('ra-model'), 'mock');
    const took = Date.now() - t0;
    assert.ok(took < 1000, `took ${took} ms: another deployment is tried without waiting`);
    assert.equal(await count('ra429'), 1);
    // ra-a said retry-after: 2; until then it is skipped.
    assertOk(await chat('ra-model'), 'mock');
    assert.equal(await count('ra429'), 1, 'a rate-limited deployment is skipped for its retry-after');
    assert.equal(await sharedCount('ra-b'), 2);
});

test("the only deployment answers 429: retried after the upstream's retry-after", T, async () => {
    const m = mock('flip');
    await m.config({ fail_status: 429, retry_after: 1 });
    const before = await count('flip');
    const t0 = Date.now();
    const pending = chat('flip1-model');
    await h.sleep(300);
    await m.config({ fail_status: 0, retry_after: 0 });
    const res = await pending;
    const took = Date.now() - t0;
    assertOk(res, 'flip1');
    assert.equal(await count('flip') - before, 2, 'one 429, then one success');
    assert.ok(took >= 950, `retried after ${took} ms, before the upstream's retry-after (1 s)`);
    assert.ok(took < RETRY_AFTER_MAX + 1000, `took ${took} ms`);
});

test('an upstream retry-after above retry_after_max_ms is clamped', T, async () => {
    const m = mock('flip');
    await m.config({ fail_status: 429, retry_after: 20 });
    const before = await count('flip');
    const t0 = Date.now();
    const pending = chat('flip2-model');
    await h.sleep(300);
    await m.config({ fail_status: 0, retry_after: 0 });
    const res = await pending;
    const took = Date.now() - t0;
    assertOk(res, 'flip2', `retry-after 20 s clamped to ${RETRY_AFTER_MAX} ms`);
    assert.equal(await count('flip') - before, 2, 'one 429, then one success');
    assert.ok(took < RETRY_AFTER_MAX + 1000, `took ${took} ms: the wait must be clamped`);
});

test('every deployment answers 429: 429 with the wait until the gateway would try again, no retry invited', T, async () => {
    // x says retry-after 3 (clamped to 1.5 s), y says 1.
    const res = await chat('all429-model');
    h.assertError(assert, res, 429, 'rate_limit_error', 'rate_limit_exceeded');
    const ms = h.assertRetryAfter(assert, res);
    assert.ok(ms > 0 && ms <= RETRY_AFTER_MAX, `retry-after-ms ${ms}: until the first deployment is back`);
    // The gateway already waited and retried: a client retry would multiply the attempts.
    assertNoRetry(res);
    const x = await count('all429x');
    const y = await count('all429y');
    assert.ok(x >= 1 && y >= 1, `both deployments tried (x ${x}, y ${y})`);
    assert.ok(x + y <= ROUTING.max_attempts, `${x + y} upstream attempts, max_attempts ${ROUTING.max_attempts}`);
    // A retry within the wait is answered by the gateway, without an upstream attempt.
    const again = await chat('all429-model');
    h.assertError(assert, again, 429, 'rate_limit_error', 'rate_limit_exceeded');
    const ms2 = h.assertRetryAfter(assert, again);
    assert.ok(ms2 > 0 && ms2 <= ms, `retry-after-ms ${ms} then ${ms2}`);
    assert.equal((await count('all429x')) + (await count('all429y')), x + y, 'no upstream attempt within the wait');
});

test("one account's request failing on every attempt does not cool the deployment down for others", T, async () => {
    // Issue 9: its max_attempts failures used to count as three, open the breaker (min 3) and
    // give every account 503 for the cool-down. Now it counts as one failed request.
    const poisoned = await chat('poison-model', { mock: { status: 500, error_message: 'poisoned' } });
    h.assertError(assert, poisoned, 502, 'upstream_error', 'provider_error');
    assert.equal(await sharedCount('poison-up'), ROUTING.max_attempts);
    for (let i = 0; i < 3; i++) assertOk(await chat('poison-model', {}, gw, otherKey), 'mock', `other account, request ${i}`);
    // Another poisoned request is 2 failed of 5 in the window: under failure_rate_percent.
    h.assertError(assert, await chat('poison-model', { mock: { status: 500 } }), 502, 'upstream_error', 'provider_error');
    assertOk(await chat('poison-model', {}, gw, otherKey), 'mock', 'other account, after a second poisoned request');
    assert.equal(await sharedCount('poison-up'), 2 * ROUTING.max_attempts + 4);
});

test('4xx other than 408/409/429 are not retried: one upstream request, 502 provider_error', T, async () => {
    for (const status of [400, 401, 404, 422]) {
        const before = (await sharedCount('nr-a')) + (await sharedCount('nr-b'));
        const res = await chat('nr-model', { mock: { status, error_message: `upstream said ${status}` } });
        h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
        assert.match(res.json.error.message, new RegExp(`upstream said ${status}`));
        assertNoRetry(res);
        const after = (await sharedCount('nr-a')) + (await sharedCount('nr-b'));
        assert.equal(after - before, 1, `upstream ${status}: exactly one upstream request`);
    }
    // They are not failures of the deployment: nothing cooled down.
    assertOk(await chat('nr-model'), 'mock', 'after four 4xx');
});

test('upstream 408 and 409 are retried', T, async () => {
    for (const status of [408, 409]) {
        const before = (await sharedCount('r408-a')) + (await sharedCount('r408-b'));
        const res = await chat('r408-model', { mock: { status } });
        assert.ok(res.status >= 500, `upstream ${status} everywhere: ${res.status} ${res.text}`);
        const after = (await sharedCount('r408-a')) + (await sharedCount('r408-b'));
        assert.ok(after - before >= 2, `upstream ${status}: ${after - before} upstream request(s)`);
    }
});

test('every attempt fails with 500: max_attempts tries, then 502 with the last provider message', T, async () => {
    const res = await chat('all500-model', { mock: { status: 500, error_message: 'boom-a5' } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /boom-a5/);
    assertNoRetry(res);
    const a = await sharedCount('a5-a');
    const b = await sharedCount('a5-b');
    assert.equal(a + b, ROUTING.max_attempts, `upstream attempts (a ${a}, b ${b})`);
    assert.ok(a >= 1 && b >= 1, 'another deployment is tried before the same one again');
    // One deployment only: the retries go to it, after a backoff.
    const one = await chat('one500-model', { mock: { status: 500, error_message: 'boom-one' } });
    h.assertError(assert, one, 502, 'upstream_error', 'provider_error');
    assert.match(one.json.error.message, /boom-one/);
    assert.equal(await sharedCount('one500'), ROUTING.max_attempts);
});

test('every deployment cooling down: 503 service_unavailable with the earliest recovery', T, async () => {
    let res;
    const statuses = [];
    for (let i = 0; i < 6; i++) {
        res = await chat('cool-all-model', { mock: { status: 500 } });
        statuses.push(res.status);
        if (res.status === 503) break;
    }
    assert.equal(res.status, 503, `never 503 while failing: ${statuses}`);
    const ms = h.assertRetryAfter(assert, res);
    assert.ok(ms > 0 && ms <= COOLDOWN, `retry-after-ms ${ms}, cool-down ${COOLDOWN}`);
    // A good request meanwhile is refused too, without going upstream.
    const before = (await sharedCount('ca-a')) + (await sharedCount('ca-b'));
    const again = await chat('cool-all-model');
    h.assertError(assert, again, 503, 'service_unavailable_error', 'service_unavailable');
    const ms2 = h.assertRetryAfter(assert, again);
    assert.ok(ms2 <= ms, `retry-after-ms went up: ${ms} then ${ms2}`);
    assert.equal((await sharedCount('ca-a')) + (await sharedCount('ca-b')), before,
        'nothing is sent upstream while every deployment cools down');
    // After the advertised wait, the probe goes through.
    await h.sleep(ms2 + 50);
    assertOk(await chat('cool-all-model'), 'mock', 'after retry-after-ms');
});

test('connection refused: retried on another deployment, or 502 when there is none', T, async () => {
    assertOk(await chat('cr-model'), 'mock', 'dead deployment first, then a live one');
    assert.equal(await sharedCount('cr-ok'), 1);
    const t0 = Date.now();
    const res = await chat('dead-model');
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assertNoRetry(res);
    assert.ok(Date.now() - t0 < 3000, `took ${Date.now() - t0} ms`);
});

// --- timeouts ---------------------------------------------------------------------------------

test('a hung upstream: 504 upstream_timeout within first_byte_timeout_ms', T, async () => {
    for (const fault of [{ hang: true }, { delay_ms: 5000 }]) {
        const before = await h.mockRequestCount(tgw.mock);
        const t0 = Date.now();
        const res = await chat('hang-model', { mock: fault }, tgw, tkey);
        const took = Date.now() - t0;
        h.assertError(assert, res, 504, 'timeout_error', 'upstream_timeout');
        assertNoRetry(res);
        assert.ok(took >= 650, `${JSON.stringify(fault)}: 504 after ${took} ms, before the 700 ms timeout`);
        assert.ok(took < 700 + 1000, `${JSON.stringify(fault)}: 504 after ${took} ms (timeout 700 ms)`);
        assert.equal(await h.mockRequestCount(tgw.mock) - before, 1, 'max_attempts 1');
    }
    // A stream request that gets no first byte is a 504 too, not an empty 200.
    const res = await chat('hang-stream-model', { stream: true, mock: { hang: true } }, tgw, tkey);
    h.assertError(assert, res, 504, 'timeout_error', 'upstream_timeout');
});

test('a slow first byte under the timeout: 200', T, async () => {
    for (const stream of [false, true]) {
        const t0 = Date.now();
        const res = await chat('slow-model', { stream, mock: { delay_ms: 400 } }, tgw, tkey);
        assert.equal(res.status, 200, res.text);
        assert.ok(Date.now() - t0 >= 390);
        if (stream) {
            const ev = h.sseEvents(res.text);
            assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 ');
            assert.equal(ev.at(-1), '[DONE]');
        } else {
            assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
        }
    }
});

test('every attempt times out: 504 upstream_timeout after at most max_attempts timeouts', T, async () => {
    const t0 = Date.now();
    const res = await chat('hang3-model', { mock: { hang: true } });
    const took = Date.now() - t0;
    h.assertError(assert, res, 504, 'timeout_error', 'upstream_timeout');
    assertNoRetry(res);
    const n = await sharedCount('hang3');
    assert.ok(n >= 1 && n <= ROUTING.max_attempts, `${n} upstream attempts`);
    assert.ok(took >= FIRST_BYTE - 50 && took < n * FIRST_BYTE + 1000, `took ${took} ms for ${n} attempts`);
});

test('a timeout on one deployment moves the request to another', T, async () => {
    const t0 = Date.now();
    assertOk(await chat('to-model'), 'mock');
    const took = Date.now() - t0;
    assert.ok(took >= FIRST_BYTE - 50 && took < FIRST_BYTE + 1000, `took ${took} ms`);
    assert.equal(await count('slowA'), 1);
    assert.equal(await sharedCount('to-b'), 1);
});

// --- failures after the first byte ------------------------------------------------------------

/** The events of a stream that failed after it started: content, an error event, [DONE]. */
function assertInBandError(res, content, code) {
    assert.equal(res.status, 200, res.text.slice(0, 300));
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]', `the stream must end with [DONE]: ${res.text.slice(-300)}`);
    const err = ev.at(-2);
    assert.ok(err && typeof err === 'object' && err.error, `an error event before [DONE]: ${res.text.slice(-300)}`);
    assert.equal(typeof err.error.message, 'string');
    assert.ok(err.error.message.length > 0);
    assert.equal(typeof err.error.type, 'string');
    if (code) assert.equal(err.error.code, code, JSON.stringify(err));
    assert.equal(ev.filter((e) => e !== '[DONE]' && e.error).length, 1, 'one error event');
    assert.equal(h.streamContent(ev.slice(0, -2)), content);
    return err.error;
}

test('a stream cut after 3 chunks: 200, the chunks, an in-band error, [DONE]; billed, not retried', T, async () => {
    const before = await h.balanceNano(gw, billing);
    const res = await chat('cut-model', { stream: true, mock: { chunks: 6, cut_after: 3 } });
    assertInBandError(res, 'tok0 tok1 tok2 ');
    const n = (await sharedCount('cut-up')) + (await sharedCount('cut-up2'));
    assert.equal(n, 1, 'no retry once the first byte reached the client');
    // Billed the estimate (docs/BILLING.md; billing.test.mjs checks the amount).
    const r = await h.eventually(async () => (await h.balanceNano(gw, billing)) < before, h.scaled(3000));
    assert.ok(r.value, 'a cut stream is billed');
    const a = await h.audit(gw);
    assert.equal(a.code, 0, `audit: ${a.stdout}${a.stderr}`);
});

test('an idle gap longer than idle_timeout_ms: in-band upstream_timeout, then [DONE]', T, async () => {
    const t0 = Date.now();
    const res = await chat('idle-model', { stream: true, mock: { chunks: 4, chunk_delay_ms: 1500 } });
    const took = Date.now() - t0;
    assertInBandError(res, '', 'upstream_timeout');
    assert.ok(took >= 250 && took < 1400, `ended after ${took} ms (idle timeout 300 ms, gap 1500 ms)`);
    assert.equal(await sharedCount('idle-up'), 1);
});

test('gaps under idle_timeout_ms never cut a stream, however long it lasts', T, async () => {
    // 6 events 150 ms apart: about 900 ms in all, three times the 300 ms idle timeout.
    const res = await chat('idle-model', { stream: true, mock: { chunks: 6, chunk_delay_ms: 150 } });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.ok(!events.some((e) => e !== '[DONE]' && e.error), `an error event: ${res.text.slice(-400)}`);
    assert.equal(h.streamContent(events), 'tok0 tok1 tok2 tok3 tok4 tok5 ');
});

test('a stream longer than the provider timeout_ms: in-band upstream_timeout, then [DONE]', T, async () => {
    const t0 = Date.now();
    const res = await chat('total-model', { stream: true, mock: { chunks: 30, chunk_delay_ms: 100 } });
    const took = Date.now() - t0;
    assertInBandError(res, h.streamContent(h.sseEvents(res.text).slice(0, -2)), 'upstream_timeout');
    assert.ok(took >= 900 && took < 2000, `ended after ${took} ms (timeout_ms 1000, stream ~3 s)`);
});

// --- fallbacks --------------------------------------------------------------------------------

test('fallback: every deployment of fb-x fails, fb-y answers and is billed at its own price', T, async () => {
    const before = await h.balanceNano(gw, billing);
    const res = await chat('fb-x');
    assertOk(res, 'mock', 'fallback');
    assert.equal(res.headers.get('x-modelswitch-model'), 'fb-y');
    assert.equal(res.json.model, 'fb-y-upstream', "the response's model is the fallback's upstream model");
    const down = await count('down');
    assert.ok(down >= 1 && down <= ROUTING.max_attempts, `fb-x's deployment got ${down} attempts`);
    assert.equal(await sharedCount('fb-y-upstream'), 1);
    // mock usage: 11 prompt + 3 completion tokens at fb-y's prices (fb-x's would be 14000).
    const want = h.costNano(gw, 'fb-y', 11, 3);
    assert.equal(want, 54000n);
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost') ?? 'missing'), want, 'x-modelswitch-cost');
    assert.equal(before - (await h.balanceNano(gw, billing)), want, 'balance charged at fb-y prices');

    // Streams fall back too, and so do requests while fb-x's deployment cools down.
    const s = await chat('fb-x', { stream: true });
    assert.equal(s.status, 200, s.text);
    assert.equal(s.headers.get('x-modelswitch-model'), 'fb-y');
    const ev = h.sseEvents(s.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.ok(ev.slice(0, -1).every((e) => e.model === 'fb-y-upstream'), 'stream chunks name fb-y-upstream');
    for (let i = 0; i < 3; i++) {
        const r = await chat('fb-x');
        assertOk(r, 'mock', `fallback ${i}`);
        assert.equal(r.headers.get('x-modelswitch-model'), 'fb-y');
    }
});

test('the ledger is consistent after all of the above', T, async () => {
    const a = await h.audit(gw);
    assert.equal(a.code, 0, `audit: ${a.stdout}${a.stderr}`);
});
