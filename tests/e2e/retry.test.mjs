// The official OpenAI Node SDK (maxRetries: 2) against the gateway's limits and retries (issue #4):
// after a 429 it waits what retry-after-ms says and then succeeds; after a 503 (every deployment
// cooling down) likewise; after a 502 or 504 it does not retry at all, because the gateway already
// did (x-should-retry: false), so one client call costs at most max_attempts upstream requests.
// Issue 9: the same bound on a persistent upstream 429, which the gateway already waited out and
// retried: the SDK is told how long the deployment stays rate limited and not to retry, and a
// retry within that wait costs no upstream attempt.
// A recording fetch shows what the SDK saw and when it sent each attempt.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const MSG = [{ role: 'user', content: 'hi' }];
const RPM = 60;
const MAX_ATTEMPTS = 3;
const COOLDOWN = 600;
const RETRY_AFTER_MAX = 1000;
const MIN_REQUESTS = 2;
let gw, billing;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        sections: {
            routing: {
                max_attempts: MAX_ATTEMPTS, retry_budget_ms: 10000, backoff_base_ms: 10,
                backoff_max_ms: 50, retry_after_max_ms: RETRY_AFTER_MAX, min_requests: MIN_REQUESTS,
                failure_rate_percent: 50, failure_window_ms: 10000, cooldown_ms: COOLDOWN,
                cooldown_max_ms: 5000,
            },
        },
        config: (mocks) => ({
            providers: { fbt: h.mockProvider(mocks[0], { first_byte_timeout_ms: 500 }) },
            models: Object.fromEntries([['sdk-fail', 'mock'], ['sdk-hang', 'fbt'], ['sdk-cool', 'mock'],
                ['sdk-429', 'mock'], ['sdk-500', 'mock']]
                .map(([m, provider]) => [m, {
                    pricing: { input: 1, output: 1 }, deployments: [{ provider, model: `${m}-up` }],
                }])),
        }),
        setup: async (g) => {
            const account = await g.createAccount('sdk-retry', 100);
            billing = await g.createKey(account, { type: 'billing' });
        },
    });
});
after(async () => { await gw?.stop(); });

/** A proxy key with the given limits, made through the account API. */
async function newKey(fields = {}) {
    const r = await h.post(gw, '/api/keys', billing, { name: 'sdk', ...fields });
    assert.equal(r.status, 201, r.text);
    return r.json.key;
}

/** An SDK client whose fetch records every attempt: {sent, status, retryAfterMs, shouldRetry}. */
function recordingClient(key, log) {
    const recFetch = async (url, init) => {
        const sent = Date.now();
        const res = await fetch(url, init);
        log.push({
            sent, received: Date.now(), status: res.status,
            retryAfterMs: res.headers.get('retry-after-ms'), shouldRetry: res.headers.get('x-should-retry'),
        });
        return res;
    };
    return new OpenAI({
        baseURL: `${gw.base}/v1`, apiKey: key, maxRetries: 2, timeout: h.scaled(20000), fetch: recFetch,
    });
}

/** Checks that the SDK waited at least the advertised retry-after-ms after each refusal. */
function assertHonoured(log) {
    for (let i = 1; i < log.length; i++) {
        const ra = Number(log[i - 1].retryAfterMs);
        assert.ok(log[i].sent - log[i - 1].received >= ra - 2,
            `attempt ${i + 1} after ${log[i].sent - log[i - 1].received} ms, advertised ${ra} ms`);
    }
}

test('after a 429 the SDK waits retry-after-ms and succeeds', T, async () => {
    const key = await newKey({ rpm: RPM });
    // Use up the burst (RPM requests) so the next request has to wait about 60000/RPM ms. The
    // first refusal's wait is wherever the minute's clock stood (0 to 60000/RPM ms); one of a few
    // ms could run out before the SDK's first attempt (a sanitizer build is that slow), so a short
    // one is waited out: the next request is admitted and the one after it refused for about
    // 60000/RPM ms. On a loaded machine the burst's requests take seconds, each second giving one
    // back: the loop allows twice the burst.
    const margin = Math.min(h.scaled(200), 60000 / RPM / 2);
    let refused = null;
    for (let i = 0; i < 2 * RPM && !refused; i++) {
        const res = await h.post(gw, '/v1/chat/completions', key, { model: 'echo-1', messages: MSG });
        if (res.status !== 429) {
            assert.equal(res.status, 200, res.text);
            continue;
        }
        const wait = Number(res.headers.get('retry-after-ms'));
        if (wait >= margin) refused = res;
        else await new Promise((r) => setTimeout(r, wait + 5));
    }
    assert.ok(refused, `no 429 leaving ${margin} ms after ${2 * RPM} requests at rpm ${RPM}`);

    const log = [];
    const client = recordingClient(key, log);
    const t0 = Date.now();
    const r = await client.chat.completions.create({ model: 'echo-1', messages: MSG });
    const took = Date.now() - t0;
    assert.equal(r.choices[0].message.content, 'You said: hi');
    assert.equal(log[0].status, 429, `the SDK's first attempt: ${JSON.stringify(log)}`);
    assert.notEqual(log[0].shouldRetry, 'false');
    const advertised = Number(log[0].retryAfterMs);
    assert.ok(advertised > 0 && advertised <= 60000 / RPM, `retry-after-ms ${log[0].retryAfterMs}`);
    assert.equal(log.at(-1).status, 200);
    assertHonoured(log);
    // The advertised wait was enough: at most a rounding hiccup of a few ms before success.
    assert.ok(log.length === 2 || (log.length === 3 && Number(log[1].retryAfterMs) <= 5),
        `attempts after waiting what the gateway said: ${JSON.stringify(log)}`);
    assert.ok(took >= advertised - 2, `the call took ${took} ms, advertised wait ${advertised} ms`);
});

test('every deployment cooling down: 503, the SDK waits retry-after-ms and succeeds', T, async () => {
    const key = await newKey();
    // min_requests calls failing on every attempt cool sdk-cool's only deployment down (one
    // call alone counts as one failed request, however many attempts it made).
    for (let i = 0; i < MIN_REQUESTS; i++) {
        const raw = await h.post(gw, '/v1/chat/completions', key,
            { model: 'sdk-cool', messages: MSG, mock: { status: 500 } });
        assert.equal(raw.status, 502, raw.text);
    }
    const log = [];
    const client = recordingClient(key, log);
    const t0 = Date.now();
    const r = await client.chat.completions.create({ model: 'sdk-cool', messages: MSG });
    const took = Date.now() - t0;
    assert.equal(r.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(log[0].status, 503, JSON.stringify(log));
    const advertised = Number(log[0].retryAfterMs);
    assert.ok(advertised > 0 && advertised <= COOLDOWN, `retry-after-ms ${log[0].retryAfterMs}`);
    assert.equal(log.at(-1).status, 200);
    assertHonoured(log);
    assert.ok(took >= advertised - 2);
});

test('502 and 504 carry x-should-retry: false: the SDK sends one request, the gateway max_attempts', T, async () => {
    const key = await newKey();
    for (const [m, fault, status] of [['sdk-fail', { status: 500 }, 502], ['sdk-hang', { hang: true }, 504]]) {
        const up = `${m}-up`;
        const before = (await h.requestsForModel(gw.mock, up)).length;
        const log = [];
        const client = recordingClient(key, log);
        await assert.rejects(
            client.chat.completions.create({ model: m, messages: MSG, mock: fault }),
            (e) => e instanceof OpenAI.APIError && e.status === status,
            `${m}: the SDK gets ${status}`);
        assert.equal(log.length, 1, `${m}: the SDK retried: ${JSON.stringify(log)}`);
        assert.equal(log[0].shouldRetry, 'false');
        const n = (await h.requestsForModel(gw.mock, up)).length - before;
        assert.ok(n >= 1 && n <= MAX_ATTEMPTS, `${m}: ${n} upstream requests for one SDK call`);
        if (status === 502) assert.equal(n, MAX_ATTEMPTS, 'a 500 is retried max_attempts times');
    }
});

test('one SDK call on a persistent upstream 429 or 500 costs at most max_attempts upstream requests', T, async () => {
    const key = await newKey();
    // the 429 last: the wait it starts is checked right after it (a slow build, ASan, can spend
    // more than that second on the 500's attempts)
    const cases = [['sdk-500', { status: 500 }, 502], ['sdk-429', { status: 429, retry_after: 1 }, 429]];
    for (const [m, fault, status] of cases) {
        const up = `${m}-up`;
        const before = (await h.requestsForModel(gw.mock, up)).length;
        const log = [];
        const client = recordingClient(key, log);
        const err = await client.chat.completions.create({ model: m, messages: MSG, mock: fault }).catch((e) => e);
        assert.ok(err instanceof OpenAI.APIError && err.status === status, `${m}: ${err}`);
        const n = (await h.requestsForModel(gw.mock, up)).length - before;
        // The documented bound: max_attempts x the models of the chain (one here), whatever the
        // SDK's maxRetries, because the gateway has retried already.
        assert.ok(n >= 1 && n <= MAX_ATTEMPTS, `${m}: ${n} upstream requests for one SDK call: ${JSON.stringify(log)}`);
        assert.equal(log.length, 1, `${m}: the SDK retried: ${JSON.stringify(log)}`);
        assert.equal(log[0].shouldRetry, 'false', m);
    }
    // The 429 said how long the deployment stays rate limited; a retry within that wait is
    // answered by the gateway, one after it goes upstream again.
    const up = 'sdk-429-up';
    const body = { model: 'sdk-429', messages: MSG, mock: { status: 429, retry_after: 1 } };
    const before = (await h.requestsForModel(gw.mock, up)).length;
    const early = await h.post(gw, '/v1/chat/completions', key, body);
    const answered = Date.now();
    h.assertError(assert, early, 429, 'rate_limit_error', 'rate_limit_exceeded');
    const wait = h.assertRetryAfter(assert, early);
    assert.ok(wait > 0 && wait <= RETRY_AFTER_MAX, `retry-after-ms ${wait}`);
    assert.equal((await h.requestsForModel(gw.mock, up)).length, before, 'no upstream request within the wait');
    await h.sleep(Math.max(0, answered + wait + 50 - Date.now()));
    const later = await h.post(gw, '/v1/chat/completions', key, { model: 'sdk-429', messages: MSG });
    assert.equal(later.status, 200, later.text);
    assert.equal((await h.requestsForModel(gw.mock, up)).length, before + 1, 'after the wait, one upstream request');
});
