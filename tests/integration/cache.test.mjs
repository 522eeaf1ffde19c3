// The exact response cache (issue 14, docs/OPERATIONS.md "Response cache"): an identical request
// for the same model and account is answered from memory with x-modelswitch-cache: hit, the exact
// bytes the first client got (a stream replayed as a stream, its cost written as 0), billed
// nothing (a usage row with cached: true and a zero charge, the balance unchanged, no
// transaction, `modelswitch audit` clean) and with no request to the provider (the mock's
// counter). Misses, expiry, the per-model byte bound (least recently used evicted first),
// isolation between accounts, the per-request header (opt-in, bypass, refusal of a bad value)
// and the three client APIs (chat completions, Messages, Responses) are covered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const deployment = [{ provider: 'mock', model: 'cache-up' }];
const CONFIG = {
    models: {
        'mock-cached': { pricing: { input: 2.5, output: 10 }, max_output_tokens: 4096, deployments: deployment,
            cache: { ttl_s: 600, max_bytes: 1048576 } },
        'mock-expire': { pricing: { input: 2.5, output: 10 }, max_output_tokens: 4096, deployments: deployment,
            cache: { ttl_s: 1 } },
        // room for a few small answers only: the bound evicts
        'mock-small': { pricing: { input: 2.5, output: 10 }, max_output_tokens: 4096, deployments: deployment,
            cache: { ttl_s: 600, max_bytes: 4096 } },
        // no cache config: only requests that ask
        'mock-plain': { pricing: { input: 2.5, output: 10 }, max_output_tokens: 4096, deployments: deployment },
    },
};

let gw;
const A = {};
const ONE_USD = 1000000000n;

async function mkAccount(g, name) {
    const account = await g.createAccount(name, h.nanoToUsd(ONE_USD));
    const key = await g.createKey(account);
    const billing = await g.createKey(account, { type: 'billing' });
    A[name] = { account, key, billing };
}

before(async () => {
    gw = await h.startGateway({
        config: CONFIG,
        setup: async (g) => {
            for (const n of ['main', 'other', 'billing', 'stream', 'small', 'expire', 'header',
                'messages', 'responses']) await mkAccount(g, n);
        },
    });
});

after(async () => {
    await gw?.stop();
});

const user = (content) => [{ role: 'user', content }];
const chat = (key, body, headers = {}) => h.post(gw, '/v1/chat/completions', key, body, { headers });
const upstreamCount = () => h.mockRequestCount(gw.mock);
const cacheHeader = (res) => res.headers.get('x-modelswitch-cache');

test('miss then hit: the same bytes, no upstream request, cost 0', T, async () => {
    const body = JSON.stringify({ model: 'mock-cached', messages: user('hello cache'), max_tokens: 20 });
    const n0 = await upstreamCount();
    const miss = await chat(A.main.key, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(cacheHeader(miss), 'miss');
    assert.notEqual(miss.headers.get('x-modelswitch-cost'), null);
    assert.equal(await upstreamCount(), n0 + 1);
    const hit = await chat(A.main.key, body);
    assert.equal(hit.status, 200, hit.text);
    assert.equal(cacheHeader(hit), 'hit');
    assert.equal(hit.headers.get('x-modelswitch-cost'), '0');
    assert.equal(hit.headers.get('x-modelswitch-model'), 'mock-cached');
    assert.equal(hit.headers.get('x-modelswitch-provider'), 'mock');
    assert.match(hit.headers.get('content-type'), /application\/json/);
    assert.equal(hit.text, miss.text, 'the exact bytes of the first answer');
    assert.equal(await upstreamCount(), n0 + 1, 'no provider was touched');
    // a body that differs by one byte is another request
    const other = await chat(A.main.key, body.replace('}', ' }'));
    assert.equal(cacheHeader(other), 'miss');
    assert.equal(await upstreamCount(), n0 + 2);
});

test('never shared across accounts', T, async () => {
    const body = { model: 'mock-cached', messages: user('isolation'), max_tokens: 20 };
    const n0 = await upstreamCount();
    const a = await chat(A.main.key, body);
    const b = await chat(A.other.key, body);
    assert.equal(cacheHeader(a), 'miss');
    assert.equal(cacheHeader(b), 'miss', 'another account does not get the first one\'s answer');
    assert.equal(await upstreamCount(), n0 + 2);
    assert.equal(cacheHeader(await chat(A.other.key, body)), 'hit');
    assert.equal(cacheHeader(await chat(A.main.key, body)), 'hit');
    assert.equal(await upstreamCount(), n0 + 2);
});

test('a hit costs nothing: zero charge, balance unchanged, a cached usage row, audit clean', T, async () => {
    const a = A.billing;
    const body = { model: 'mock-cached', messages: user('billing'), max_tokens: 20,
        mock: { chunks: 7, prompt_tokens: 23 } };
    const miss = await chat(a.key, body);
    assert.equal(cacheHeader(miss), 'miss');
    const want = h.costNano(gw, 'mock-cached', 23, 7);
    const after1 = await h.balanceNano(gw, a.billing);
    assert.equal(after1, ONE_USD - want);
    for (let i = 0; i < 3; i++) {
        const hit = await chat(a.key, body);
        assert.equal(cacheHeader(hit), 'hit');
        assert.equal(hit.text, miss.text);
    }
    assert.equal(await h.balanceNano(gw, a.billing), after1, 'hits do not move the balance');
    const rows = await h.usageRows(gw, a.billing);
    assert.equal(rows.length, 4);
    const [hitRow] = rows;
    const missRow = rows[3];
    assert.equal(missRow.cached, false);
    assert.equal(h.usdToNano(missRow.chargedAmount), want);
    for (const r of rows.slice(0, 3)) {
        assert.equal(r.cached, true, JSON.stringify(r));
        assert.equal(h.usdToNano(r.chargedAmount), 0n);
        assert.equal(r.status, 200);
        assert.equal(r.model, 'mock-cached');
        assert.equal(r.promptTokens, 23, 'the original usage, for what the hit would have cost');
        assert.equal(r.completionTokens, 7);
    }
    assert.notEqual(hitRow.requestId, missRow.requestId);
    const usageTx = (await h.transactionRows(gw, a.billing)).filter((t) => t.type === 'usage');
    assert.equal(usageTx.length, 1, 'only the miss has a usage transaction');
    const au = await h.audit(gw);
    assert.equal(au.code, 0, `audit: ${au.stdout} ${au.stderr}`);
});

test('a stream is replayed as a stream, its usage cost written as 0', T, async () => {
    const a = A.stream;
    const body = { model: 'mock-cached', messages: user('stream me'), stream: true, max_tokens: 20,
        stream_options: { include_usage: true }, mock: { chunks: 4, prompt_tokens: 9 } };
    const n0 = await upstreamCount();
    const miss = await chat(a.key, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(cacheHeader(miss), 'miss');
    const want = h.costNano(gw, 'mock-cached', 9, 4);
    const ev = h.sseEvents(miss.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    const usage = ev[ev.length - 2].usage;
    assert.equal(h.usdToNano(usage.cost), want, 'the miss shows its cost');
    const hit = await chat(a.key, body);
    assert.equal(hit.status, 200);
    assert.equal(cacheHeader(hit), 'hit');
    assert.match(hit.headers.get('content-type'), /text\/event-stream/);
    assert.equal(hit.headers.get('x-modelswitch-cost'), '0');
    const hev = h.sseEvents(hit.text);
    assert.equal(hev.length, ev.length);
    assert.equal(hev[hev.length - 1], '[DONE]');
    assert.equal(h.streamContent(hev), h.streamContent(ev));
    assert.equal(hev[hev.length - 2].usage.cost, 0, 'the hit\'s cost is 0');
    assert.deepEqual({ ...hev[hev.length - 2].usage, cost: usage.cost }, usage, 'otherwise the same usage');
    const costText = JSON.stringify(usage.cost);
    assert.equal(hit.text, miss.text.replace(`"cost":${costText}`, '"cost":0'), 'otherwise the same bytes');
    assert.equal(await upstreamCount(), n0 + 1);
    // the stream flag is part of the key: the same request unstreamed is a miss
    const { stream, stream_options, ...plain } = body;
    assert.equal(cacheHeader(await chat(a.key, plain)), 'miss');
    const rows = await h.usageRows(gw, a.billing);
    assert.equal(rows.filter((r) => r.cached).length, 1);
});

test('the bound: least recently used answers are evicted first', T, async () => {
    const a = A.small;
    const req = (i) => chat(a.key, { model: 'mock-small', messages: user(`small ${i}`), max_tokens: 5 });
    assert.equal(cacheHeader(await req(0)), 'miss');
    for (let i = 1; i < 12; i++) {
        assert.equal(cacheHeader(await req(i)), 'miss');
        // 1 is used again and again: always the most recent, never evicted
        assert.equal(cacheHeader(await req(1)), 'hit', `1 after ${i}`);
    }
    assert.equal(cacheHeader(await req(11)), 'hit', 'the newest is kept');
    const n0 = await upstreamCount();
    assert.equal(cacheHeader(await req(0)), 'miss', 'the oldest was evicted (4096 bytes hold a few)');
    assert.equal(await upstreamCount(), n0 + 1);
});

test('expiry: an answer older than ttl_s is not served', T, async () => {
    const a = A.expire;
    const body = { model: 'mock-expire', messages: user('expire'), max_tokens: 5 };
    assert.equal(cacheHeader(await chat(a.key, body)), 'miss');
    assert.equal(cacheHeader(await chat(a.key, body)), 'hit');
    await h.sleep(1300);
    assert.equal(cacheHeader(await chat(a.key, body)), 'miss', 'expired after 1 s');
});

test('the header: ttl=N opts a request in, bypass skips, a bad value is refused', T, async () => {
    const a = A.header;
    const body = { model: 'mock-plain', messages: user('header'), max_tokens: 5 };
    const none = await chat(a.key, body);
    assert.equal(none.status, 200);
    assert.equal(cacheHeader(none), null, 'no cache without config or header');
    assert.equal(cacheHeader(await chat(a.key, body)), null);
    const opt = { 'x-modelswitch-cache': 'ttl=60' };
    assert.equal(cacheHeader(await chat(a.key, body, opt)), 'miss');
    const n0 = await upstreamCount();
    assert.equal(cacheHeader(await chat(a.key, body, opt)), 'hit');
    assert.equal(await upstreamCount(), n0);
    // without the header the model does not look in the cache
    assert.equal(cacheHeader(await chat(a.key, body)), null);
    // bypass on a model with cache config: no lookup, no store
    const cbody = { model: 'mock-cached', messages: user('bypass'), max_tokens: 5 };
    const bypass = { 'x-modelswitch-cache': 'bypass' };
    assert.equal(cacheHeader(await chat(a.key, cbody, bypass)), null);
    assert.equal(cacheHeader(await chat(a.key, cbody)), 'miss');
    assert.equal(cacheHeader(await chat(a.key, cbody, bypass)), null);
    assert.equal(cacheHeader(await chat(a.key, cbody)), 'hit');
    for (const bad of ['ttl=0', 'ttl=', 'ttl=abc', 'forever', 'ttl=-5']) {
        const res = await chat(a.key, body, { 'x-modelswitch-cache': bad });
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_request');
    }
});

test('Messages API: miss then hit, no upstream request', T, async () => {
    const a = A.messages;
    const body = { model: 'mock-cached', max_tokens: 20, messages: user('anthropic cache') };
    const post = () => h.post(gw, '/v1/messages', a.key, body, { headers: { 'anthropic-version': '2023-06-01' } });
    const miss = await post();
    assert.equal(miss.status, 200, miss.text);
    assert.equal(cacheHeader(miss), 'miss');
    assert.equal(miss.json.type, 'message');
    const n0 = await upstreamCount();
    const hit = await post();
    assert.equal(cacheHeader(hit), 'hit');
    assert.equal(hit.text, miss.text);
    assert.equal(await upstreamCount(), n0);
    // a stream, replayed with its cost 0
    const sbody = { ...body, stream: true };
    const spost = () => h.post(gw, '/v1/messages', a.key, sbody, { headers: { 'anthropic-version': '2023-06-01' } });
    const smiss = await spost();
    assert.equal(cacheHeader(smiss), 'miss');
    const shit = await spost();
    assert.equal(cacheHeader(shit), 'hit');
    assert.equal(await upstreamCount(), n0 + 1);
    const delta = (t) => h.parseSSE(t).map((e) => JSON.parse(e)).find((e) => e.type === 'message_delta');
    assert.ok(delta(smiss.text).usage.cost > 0, smiss.text);
    assert.equal(delta(shit.text).usage.cost, 0);
});

// The headers forwarded upstream are part of the key: another anthropic-version or
// anthropic-beta is another request (a beta can change the answer), the same ones a hit.
test('Messages API: the version and beta headers are part of the key', T, async () => {
    const a = A.messages;
    const body = { model: 'mock-cached', max_tokens: 20, messages: user('anthropic headers') };
    const post = (headers) => h.post(gw, '/v1/messages', a.key, body, { headers });
    const v = { 'anthropic-version': '2023-06-01' };
    const b1 = { ...v, 'anthropic-beta': 'prompt-caching-2024-07-31' };
    const b2 = { ...v, 'anthropic-beta': 'token-efficient-tools-2025-02-19' };
    for (const [headers, want] of [[v, 'miss'], [b1, 'miss'], [b2, 'miss'], [b1, 'hit'], [v, 'hit'],
        [b2, 'hit'], [{ 'anthropic-version': '2023-01-01' }, 'miss']]) {
        const res = await post(headers);
        assert.equal(res.status, 200, res.text);
        assert.equal(cacheHeader(res), want, JSON.stringify(headers));
    }
});

test('Responses API: miss then hit, no upstream request', T, async () => {
    const a = A.responses;
    const body = { model: 'mock-cached', input: 'responses cache', store: false };
    const miss = await h.post(gw, '/v1/responses', a.key, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(cacheHeader(miss), 'miss');
    const n0 = await upstreamCount();
    const hit = await h.post(gw, '/v1/responses', a.key, body);
    assert.equal(cacheHeader(hit), 'hit');
    assert.equal(hit.text, miss.text);
    assert.equal(await upstreamCount(), n0);
    const sbody = { ...body, stream: true };
    const smiss = await h.post(gw, '/v1/responses', a.key, sbody);
    assert.equal(cacheHeader(smiss), 'miss');
    const shit = await h.post(gw, '/v1/responses', a.key, sbody);
    assert.equal(cacheHeader(shit), 'hit');
    assert.equal(await upstreamCount(), n0 + 1);
    const done = (t) => h.parseSSE(t).map((e) => JSON.parse(e)).find((e) => e.type === 'response.completed');
    assert.ok(done(smiss.text).response.usage.cost > 0, smiss.text);
    assert.equal(done(shit.text).response.usage.cost, 0);
});
