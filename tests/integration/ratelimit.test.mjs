// Rate limits (issue #4): GCRA over one minute per key, per account and per model, for requests
// and for tokens (admitted with the request's estimate, corrected to the real usage afterwards).
// Every /v1/ answer after authentication carries the six x-ratelimit-* headers; a refusal is 429
// rate_limit_exceeded with retry-after (whole seconds, rounded up) and retry-after-ms (exact), and
// waiting that long is enough. The limiter is exact under concurrency across worker threads.
//
// Keys get their limits through the account API (POST /api/keys with rpm/tpm, or PUT on a key made
// by the CLI), so each test has its own allowance. The account limits apply to every account of a
// gateway, so they have a gateway of their own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const MSG = [{ role: 'user', content: 'hi' }];
const MODEL_RPM = 4;
const ACCOUNT_RPM = 5;
const ACCOUNT_TPM = 2000;

let gw; // per-key and per-model limits
let agw; // per-account limits
const A = {}; // name -> {account, key, billing} on gw
const B = {}; // the same on agw

async function makeAccounts(g, names, into) {
    for (const name of names) {
        const account = await g.createAccount(name, 100);
        into[name] = {
            account,
            key: await g.createKey(account),
            billing: await g.createKey(account, { type: 'billing' }),
        };
    }
}

before(async () => {
    gw = await h.startGateway({
        config: {
            limits: { requests_per_minute: 100000, tokens_per_minute: 100000000 },
            models: {
                'rl-mock': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'rl-mock-upstream' }],
                },
                'rl-conc': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'rl-conc-upstream' }],
                },
                'model-limited': {
                    pricing: { input: 1, output: 1 },
                    limits: { requests_per_minute: MODEL_RPM },
                    deployments: [{ provider: 'local', model: 'echo' }],
                },
            },
        },
        setup: (g) => makeAccounts(g, ['hdr', 'burst', 'conc', 'tok', 'm1', 'm2'], A),
    });
    agw = await h.startGateway({
        config: {
            limits: {
                requests_per_minute: 100000, tokens_per_minute: 100000000,
                account_requests_per_minute: ACCOUNT_RPM, account_tokens_per_minute: ACCOUNT_TPM,
            },
        },
        setup: async (g) => {
            await makeAccounts(g, ['x', 'y', 'z', 'w'], B);
            B.x.key2 = await g.createKey(B.x.account);
            B.z.key2 = await g.createKey(B.z.account);
        },
    });
});
after(async () => {
    try {
        await gw?.stop();
    } finally {
        await agw?.stop();
    }
});

const chat = (g, key, m = 'echo-1', extra = {}) =>
    h.post(g, '/v1/chat/completions', key, { model: m, messages: MSG, max_tokens: 5, ...extra });

/** A new proxy key of account a with the given fields (rpm, tpm) through POST /api/keys. */
async function apiKey(g, a, fields) {
    const r = await h.post(g, '/api/keys', a.billing, { name: 'rl', ...fields });
    assert.equal(r.status, 201, r.text);
    return r.json.key;
}

/** Sets fields (rpm, tpm) on account a's CLI-made proxy key through PUT /api/keys/{id}. */
async function putKey(g, a, fields) {
    const list = await h.get(g, '/api/keys', a.billing);
    assert.equal(list.status, 200, list.text);
    const k = list.json.keys.find((x) => a.key.startsWith(x.prefix));
    assert.ok(k, `no key with the prefix of ${a.key.slice(0, 8)} in ${list.text}`);
    const r = await h.request(g, 'PUT', `/api/keys/${k.id}`, { key: a.billing, body: fields });
    assert.equal(r.status, 200, r.text);
    for (const [f, v] of Object.entries(fields)) assert.equal(r.json[f], v, `${f} after PUT`);
}

function assertLimited(res, what = '') {
    h.assertError(assert, res, 429, 'rate_limit_error', 'rate_limit_exceeded');
    assert.notEqual(res.headers.get('x-should-retry'), 'false', `${what}: a 429 may be retried`);
    return h.assertRetryAfter(assert, res, what);
}

test('every /v1/ answer after authentication carries the x-ratelimit headers', T, async () => {
    const RPM = 60;
    const TPM = 100000;
    const key = await apiKey(gw, A.hdr, { rpm: RPM, tpm: TPM });
    const body = JSON.stringify({ model: 'echo-1', messages: MSG, max_tokens: 5 });
    const est = Number(h.promptBound(body)) + 5;

    const r1 = await h.post(gw, '/v1/chat/completions', key, body);
    assert.equal(r1.status, 200, r1.text);
    const h1 = h.assertRateLimitHeaders(assert, r1, 'first chat');
    assert.deepEqual([h1.limitRequests, h1.remainingRequests], [RPM, RPM - 1]);
    assert.ok(h1.resetRequestsMs > 0 && h1.resetRequestsMs <= 60000 / RPM,
        `reset-requests ${r1.headers.get('x-ratelimit-reset-requests')} after one request at rpm ${RPM}`);
    assert.equal(h1.limitTokens, TPM);
    assert.ok(h1.remainingTokens < TPM && h1.remainingTokens >= TPM - est - 1,
        `remaining-tokens ${h1.remainingTokens}, estimate ${est}`);
    assert.ok(h1.resetTokensMs <= Math.ceil(est * 60000 / TPM) + 5,
        `reset-tokens ${r1.headers.get('x-ratelimit-reset-tokens')}`);

    const r2 = await h.post(gw, '/v1/chat/completions', key, body);
    const h2 = h.assertRateLimitHeaders(assert, r2, 'second chat');
    assert.equal(h2.remainingRequests, RPM - 2);
    assert.ok(h2.resetRequestsMs > 60000 / RPM && h2.resetRequestsMs <= 2 * 60000 / RPM,
        `reset-requests ${r2.headers.get('x-ratelimit-reset-requests')} after two requests`);

    // Listing models reports the state without using the allowance.
    const models = await h.get(gw, '/v1/models', key);
    assert.equal(models.status, 200);
    assert.equal(h.assertRateLimitHeaders(assert, models, 'GET /v1/models').remainingRequests, RPM - 2);

    // Every other kind of answer carries them too: errors, embeddings, streams, upstream failures.
    const answers = [
        ['GET /v1/models/echo-1', () => h.get(gw, '/v1/models/echo-1', key), 200],
        ['GET /v1/models/nope', () => h.get(gw, '/v1/models/nope', key), 404],
        ['embeddings', () => h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input: 'hi' }), 200],
        ['no messages', () => h.post(gw, '/v1/chat/completions', key, { model: 'echo-1' }), 400],
        ['unknown model', () => chat(gw, key, 'no-such-model'), 404],
        ['stream', () => chat(gw, key, 'mock-model', { stream: true }), 200],
        ['upstream down', () => chat(gw, key, 'dead-model'), 502],
    ];
    for (const [what, send, status] of answers) {
        const res = await send();
        assert.equal(res.status, status, `${what}: ${res.text.slice(0, 300)}`);
        assert.equal(h.assertRateLimitHeaders(assert, res, what).limitRequests, RPM, what);
    }
});

test('GCRA: rpm L lets L requests through at once; the next waits exactly 60000/L ms', T, async () => {
    const L = 30;
    const interval = 60000 / L;
    await putKey(gw, A.burst, { rpm: L });
    const key = A.burst.key;
    const first = Date.now();
    for (let i = 0; i < L; i++) {
        const res = await chat(gw, key);
        assert.equal(res.status, 200, `request ${i + 1} of the burst: ${res.text}`);
    }
    const burst = Date.now() - first;
    assert.ok(burst < interval, `the burst took ${burst} ms, too slow to test exactly`);

    const refused = await chat(gw, key);
    const refusedAt = Date.now();
    const wait = assertLimited(refused, 'request L+1');
    assert.ok(wait <= interval && wait >= interval - (refusedAt - first) - 2,
        `retry-after-ms ${wait}: the first request of the burst frees its slot ${interval} ms after it`);
    const rl = h.assertRateLimitHeaders(assert, refused, '429');
    assert.deepEqual([rl.limitRequests, rl.remainingRequests], [L, 0]);

    // A refused request uses nothing: asking again shortly before the time still says the rest.
    if (wait > 400) {
        await h.sleep(wait - 300);
        const early = await chat(gw, key);
        const rest = assertLimited(early, 'too early');
        assert.ok(rest <= 310, `retry-after-ms ${rest}, 300 ms before the advertised time`);
        await h.sleep(rest + 5);
    } else {
        await h.sleep(wait + 5);
    }
    const ok = await chat(gw, key);
    assert.equal(ok.status, 200, `after waiting retry-after-ms: ${ok.text}`);
    const next = await chat(gw, key);
    const again = assertLimited(next, 'right after');
    assert.ok(again > interval - 200 && again <= interval, `retry-after-ms ${again}, interval ${interval}`);
});

test('exact under concurrency: 8 clients, 3 x L requests at rpm L, exactly L pass', T, async () => {
    const L = 20;
    await putKey(gw, A.conc, { rpm: L });
    const key = A.conc.key;
    const up0 = (await h.requestsForModel(gw.mock, 'rl-conc-upstream')).length;
    const results = [];
    let sent = 0;
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
        while (sent < 3 * L) {
            sent++;
            results.push(await chat(gw, key, 'rl-conc'));
        }
    }));
    const took = Date.now() - t0;
    assert.ok(took < 60000 / L, `${3 * L} requests took ${took} ms: the allowance refilled meanwhile`);
    const ok = results.filter((r) => r.status === 200).length;
    const limited = results.filter((r) => r.status === 429);
    assert.equal(results.length, 3 * L);
    assert.equal(ok, L, `statuses: ${results.map((r) => r.status)}`);
    assert.equal(limited.length, 2 * L);
    for (const r of limited) assertLimited(r, 'concurrent');
    const up = (await h.requestsForModel(gw.mock, 'rl-conc-upstream')).length - up0;
    assert.equal(up, L, 'refused requests never reach the upstream');
});

test('tokens per minute: admitted with the estimate, then corrected to the real usage', T, async () => {
    const TPM = 1000;
    const perToken = 60000 / TPM;
    const key = await apiKey(gw, A.tok, { tpm: TPM });
    // 8 real tokens (5 + 3) against an estimate of the prompt bound + 300.
    const small = JSON.stringify({
        model: 'rl-mock', messages: MSG, max_tokens: 300, mock: { prompt_tokens: 5, chunks: 3 },
    });
    const est = Number(h.promptBound(small)) + 300;
    assert.ok(3 * est > TPM, 'three estimates must exceed the limit for this test');
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) {
        const res = await h.post(gw, '/v1/chat/completions', key, small);
        assert.equal(res.status, 200, `request ${i + 1} (estimate ${est} of ${TPM}; real usage 8): ${res.text}`);
        assert.equal(h.assertRateLimitHeaders(assert, res).limitTokens, TPM);
    }
    const peek = h.assertRateLimitHeaders(assert, await h.get(gw, '/v1/models', key), 'GET /v1/models');
    assert.ok(peek.remainingTokens >= TPM - 24 - 2 && peek.remainingTokens <= TPM,
        `remaining-tokens ${peek.remainingTokens} after 24 real tokens (estimates ${3 * est})`);

    // Real usage above the estimate is counted too: 903 tokens for an estimate of ~140.
    const big = JSON.stringify({
        model: 'rl-mock', messages: MSG, max_tokens: 10, mock: { prompt_tokens: 900, chunks: 3 },
    });
    const r4 = await h.post(gw, '/v1/chat/completions', key, big);
    assert.equal(r4.status, 200, r4.text);
    const refused = await h.post(gw, '/v1/chat/completions', key, small);
    const elapsed = Date.now() - t0;
    const wait = assertLimited(refused, 'over the token limit');
    // 927 tokens used since t0; this request needs est more, and the limit gives 1 per perToken ms.
    const want = (927 + est - TPM) * perToken;
    assert.ok(wait <= want + 2 * perToken && wait >= want - elapsed - 2 * perToken,
        `retry-after-ms ${wait}, expected about ${want} (minus the ${elapsed} ms since the first request)`);
});

test('a model limit counts the requests of every key and account', T, async () => {
    const keys = [A.m1.key, A.m2.key];
    const statuses = [];
    let refused = null;
    const t0 = Date.now();
    for (let i = 0; i < MODEL_RPM + 2; i++) {
        const res = await chat(gw, keys[i % 2], 'model-limited');
        statuses.push(res.status);
        if (res.status === 429 && !refused) refused = res;
    }
    assert.deepEqual(statuses, [...Array(MODEL_RPM).fill(200), 429, 429]);
    const wait = assertLimited(refused, 'model limit');
    const interval = 60000 / MODEL_RPM;
    assert.ok(wait <= interval && wait >= interval - (Date.now() - t0) - 2, `retry-after-ms ${wait}`);
    for (const k of keys) assert.equal((await chat(gw, k)).status, 200, 'other models are not limited');
});

test("an account limit counts the requests of all the account's keys", T, async () => {
    const keys = [B.x.key, B.x.key2];
    const statuses = [];
    let refused = null;
    const t0 = Date.now();
    for (let i = 0; i < ACCOUNT_RPM + 2; i++) {
        const res = await chat(agw, keys[i % 2]);
        statuses.push(res.status);
        if (res.status === 429 && !refused) refused = res;
    }
    assert.deepEqual(statuses, [...Array(ACCOUNT_RPM).fill(200), 429, 429]);
    const wait = assertLimited(refused, 'account limit');
    const interval = 60000 / ACCOUNT_RPM;
    assert.ok(wait <= interval && wait >= interval - (Date.now() - t0) - 2, `retry-after-ms ${wait}`);
    assert.equal((await chat(agw, B.y.key)).status, 200, 'another account is not limited');
});

test("an account token limit counts the real usage of all the account's keys", T, async () => {
    // 1903 real tokens of 2000 through the first key ...
    const big = { max_tokens: 5, mock: { prompt_tokens: 1900, chunks: 3 } };
    const r1 = await chat(agw, B.z.key, 'mock-model', big);
    assert.equal(r1.status, 200, r1.text);
    // ... leave too little for a request estimated at ~300 tokens through either key.
    const next = JSON.stringify({ model: 'echo-1', messages: MSG, max_tokens: 200 });
    const est = Number(h.promptBound(next)) + 200;
    for (const k of [B.z.key2, B.z.key]) {
        const res = await h.post(agw, '/v1/chat/completions', k, next);
        const wait = assertLimited(res, 'account tokens');
        const want = (1903 + est - ACCOUNT_TPM) * (60000 / ACCOUNT_TPM);
        assert.ok(wait > 0 && wait <= want + 100, `retry-after-ms ${wait}, expected about ${want}`);
    }
    const other = await h.post(agw, '/v1/chat/completions', B.w.key, next);
    assert.equal(other.status, 200, `another account is not limited: ${other.text}`);
});
