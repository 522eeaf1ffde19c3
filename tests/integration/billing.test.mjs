// Money end to end (issue #3): every request is billed exactly the provider's usage at list price
// (x-modelswitch-cost, the usage chunk's cost, the balance, /api/usage and /api/transactions all
// agree to the nano-dollar), holds refuse what the balance or a spend limit cannot cover before
// anything goes upstream, failures cost nothing and free their hold, a client that goes away
// mid-stream still pays what the upstream reported, a cut stream pays the documented estimate,
// and concurrent requests never overspend. Expected amounts are computed independently as BigInt
// nano-dollars (tests/lib/harness.mjs: costNano, holdNano); the rules are docs/BILLING.md.
//
// Every test has its own account (made before `serve`, so the billing module knows it from the
// start); the last test checks the ledger of all of them and runs `modelswitch audit`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const DEFAULT_MAX_OUT = 1000; // billing.default_max_output_tokens of this file's gateway
const N = 5; // concurrency: the balance covers exactly N holds

/** A model entry: prices in USD per 1M tokens, the output cap (undefined: none), a deployment. */
const model = (input, output, cap, provider, upstream) => ({
    pricing: { input, output }, max_output_tokens: cap, deployments: [{ provider, model: upstream }],
});
const CONFIG = {
    billing: { default_max_output_tokens: DEFAULT_MAX_OUT },
    models: {
        // USD 0.0375 per 1M tokens is 37.5 nano-dollars per token: only a cost rounded once per
        // request (half up) matches, rounding per token does not.
        'mock-cheap': model(0.0375, 0.15, 2048, 'mock', 'cheap-up'),
        'echo-cheap': model(0.0375, 0.15, 1024, 'local', 'echo'),
        // No max_output_tokens: the hold uses billing.default_max_output_tokens.
        'mock-nocap': model(2.5, 10, undefined, 'mock', 'nocap-up'),
        // Own deployments for fault tests (a failing deployment may be cooled down).
        'mock-500': model(2.5, 10, 4096, 'mock', 'fail-up'),
        'mock-cut': model(2.5, 10, 4096, 'mock', 'cut-up'),
        // Cache reads at half the input price (OpenAI's discount); no cache writes with OpenAI,
        // so they default to input.
        'mock-cache': {
            pricing: { input: 2.5, output: 10, cached_input: 1.25 },
            max_output_tokens: 4096, deployments: [{ provider: 'mock', model: 'cache-up' }],
        },
        // A 1-hour cache write dearer than input: the hold prices the prompt bound at it.
        'mock-dearwrite': {
            pricing: { input: 1, output: 2, cached_input: 0.1, cache_write: 1.25, cache_write_1h: 4 },
            max_output_tokens: 4096, deployments: [{ provider: 'mock', model: 'dear-up' }],
        },
    },
};

let gw;
const A = {}; // test name -> {account, key, billing, topups (nano), ...}
const B = {}; // request bodies (exact JSON text) that balances are computed from

const user = (content) => [{ role: 'user', content }];
const json = (o) => JSON.stringify(o);

/** An account with a proxy key and a billing key; balance in nano-dollars. */
async function mkAccount(g, name, balance, keyOpts = {}) {
    balance = BigInt(balance);
    assert.ok(balance >= 0n, `${name}: negative opening balance ${balance}`);
    const account = await g.createAccount(name, h.nanoToUsd(balance));
    const key = await g.createKey(account, keyOpts);
    const billing = await g.createKey(account, { type: 'billing' });
    A[name] = { account, key, billing, topups: balance };
    return A[name];
}

// Requests of the hold-boundary test: each account starts 1 nano-dollar short of the hold.
const HOLD_CASES = [
    { name: 'max_tokens', body: { model: 'mock-model', messages: user('hold mt'), max_tokens: 300 } },
    {
        name: 'max_completion_tokens',
        body: { model: 'mock-model', messages: user('hold mct'), max_completion_tokens: 300 },
    },
    { name: "the model's cap", body: { model: 'mock-model', messages: user('hold model cap') } },
    // n choices, each up to max_tokens: the hold is for all of them
    { name: 'n', body: { model: 'mock-model', messages: user('hold n'), max_tokens: 300, n: 3 } },
    {
        name: 'billing.default_max_output_tokens',
        body: { model: 'mock-nocap', messages: user('hold default cap') },
    },
    {
        name: 'an image part',
        body: {
            model: 'mock-model', max_tokens: 20, messages: [{
                role: 'user',
                content: [{ type: 'text', text: 'hold image' },
                    { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }],
            }],
        },
    },
    {
        name: 'an audio part',
        body: {
            model: 'mock-model', max_tokens: 20, messages: [{
                role: 'user',
                content: [{ type: 'text', text: 'hold audio' },
                    { type: 'input_audio', input_audio: { data: 'UklGRg==', format: 'wav' } }],
            }],
        },
    },
    { name: 'embeddings', embeddings: true, body: { model: 'mock-embed', input: ['hold embed', 'two'] } },
    { name: 'echo', body: { model: 'echo-1', messages: user('hold echo') } },
];

/**
 * The concurrency body: mock-model with max_tokens chosen (and the content padded) so that the
 * hold is exactly USD 0.01 = 1e7 nano: pb x 2500 + max_tokens x 10000 = 1e7.
 */
function roundHoldBody(g, delayMs) {
    for (let pad = 0; pad < 8; pad++) {
        let mt = 900;
        for (let i = 0; i < 4; i++) {
            const body = json({
                model: 'mock-model', messages: user('concurrent' + 'x'.repeat(pad)), max_tokens: mt,
                mock: { delay_ms: delayMs, chunks: 3, prompt_tokens: 11 },
            });
            const pb = h.promptBound(body);
            const rest = 10000000n - pb * 2500n;
            if (rest % 10000n !== 0n) break;
            const want = Number(rest / 10000n);
            if (want === mt) {
                assert.equal(h.holdNano(g, body), 10000000n);
                return body;
            }
            mt = want;
        }
    }
    throw new Error('no padding gives a round hold');
}

before(async () => {
    gw = await h.startGateway({
        config: CONFIG,
        setup: async (g) => {
            const ONE = 1000000000n;
            for (const n of ['plain', 'cheap', 'embed', 'stream-usage', 'stream-plain', 'echo',
                'disconnect', 'cut', 'insufficient']) {
                await mkAccount(g, n, ONE);
            }
            for (const c of HOLD_CASES) {
                c.text = json(c.body);
                c.hold = h.holdNano(g, c.text, { embeddings: !!c.embeddings });
                c.acct = await mkAccount(g, `hold ${c.name}`, c.hold - 1n);
            }
            // Failures: the balance is exactly the hold of the request sent after them.
            B.failOk = json({ model: 'mock-model', messages: user('after failures'), max_tokens: 200 });
            const fail = (m, content, mock) =>
                json({ model: m, messages: user(content), max_tokens: 10, mock });
            B.fail500 = fail('mock-500', 'fail 500', { status: 500 });
            B.failDead = fail('dead-model', 'fail dead');
            B.failSlow = fail('mock-timeout', 'fail slow', { delay_ms: 3000 });
            const okHold = h.holdNano(g, B.failOk);
            for (const b of [B.fail500, B.failDead, B.failSlow]) {
                assert.ok(h.holdNano(g, b) <= okHold, 'a failing request must fit the balance');
            }
            await mkAccount(g, 'failures', okHold);
            // Spend limit: the first two requests fit, the third does not.
            B.spend = json({
                model: 'mock-model', messages: user('spend'), max_tokens: 20,
                mock: { chunks: 3, prompt_tokens: 11 },
            });
            const hold = h.holdNano(g, B.spend), charge = h.costNano(g, 'mock-model', 11, 3);
            const limit = hold + charge + charge / 2n;
            const a = await mkAccount(g, 'spend', ONE, { spendLimit: h.nanoToUsd(limit) });
            a.key2 = await g.createKey(a.account, { name: 'no limit' });
            B.concurrent = roundHoldBody(g, h.scaled(500));
            await mkAccount(g, 'concurrent', BigInt(N) * 10000000n);
            for (const n of ['cache', 'cache-stream']) await mkAccount(g, n, ONE);
            // The hold of a model whose dearest prompt price is a cache write: one account a
            // nano-dollar short of it, one with exactly it.
            B.dear = json({ model: 'mock-dearwrite', messages: user('dear write'), max_tokens: 40,
                mock: { chunks: 2, prompt_tokens: 5 } });
            B.dearHold = dearHold(g, B.dear);
            await mkAccount(g, 'dear short', B.dearHold - 1n);
            await mkAccount(g, 'dear exact', B.dearHold);
        },
    });
});
after(async () => { await gw?.stop(); });

const chat = (key, body, g = gw) => h.post(g, '/v1/chat/completions', key, body);

/** A list price (nano-dollars per 1M tokens) of a USD price per 1M, with gw's markup. */
function listPrice(g, usd) {
    const markupMicro = h.usdToNano(String(g.config.billing?.markup_percent ?? 0)) / 1000n;
    return (h.usdToNano(String(usd)) * (100000000n + markupMicro) + 50000000n) / 100000000n;
}

/** The cost of the five counts at model's list prices (absent prices are the input price),
 * rounded half up once; reasoning is inside output and never priced apart. */
function usageCostNano(g, model, u) {
    const p = g.config.models[model].pricing;
    const price = (k) => listPrice(g, p[k] ?? p.input);
    const sum = BigInt(u.input ?? 0) * price('input') +
        BigInt(u.cached_input ?? 0) * price('cached_input') +
        BigInt(u.cache_write ?? 0) * price('cache_write') +
        BigInt(u.cache_write_1h ?? 0) * price('cache_write_1h') +
        BigInt(u.output ?? 0) * listPrice(g, p.output);
    return (sum + 500000n) / 1000000n;
}

/** The hold of a chat body: the prompt bound at the dearest of the four prompt prices. */
function dearHold(g, body) {
    const j = JSON.parse(body);
    const p = g.config.models[j.model].pricing;
    const dear = ['input', 'cached_input', 'cache_write', 'cache_write_1h']
        .map((k) => listPrice(g, p[k] ?? p.input)).reduce((a, b) => (a > b ? a : b));
    return (h.promptBound(body) * dear + BigInt(j.max_tokens) * listPrice(g, p.output) + 500000n) /
        1000000n;
}

/** The x-modelswitch-cost header of res as nano-dollars. */
function costHeader(res) {
    const v = res.headers.get('x-modelswitch-cost');
    assert.ok(v !== null, `no x-modelswitch-cost header: ${res.status} ${res.text.slice(0, 200)}`);
    assert.match(v, /^\d+(\.\d{1,9})?$/, 'x-modelswitch-cost is a USD decimal');
    return h.usdToNano(v);
}

/** Recorded upstream requests whose body contains marker. */
async function upstreamWith(marker) {
    return (await gw.mock.requests()).filter((r) => (r.body ?? '').includes(marker));
}

/** Checks the account's one usage row (newest first) and its usage transaction. */
async function checkOneUsage(a, { model, prompt, completion, charged }) {
    const rows = await h.usageRows(gw, a.billing);
    assert.equal(rows.length, 1, `one usage row: ${JSON.stringify(rows)}`);
    const u = rows[0];
    assert.equal(u.model, model);
    assert.equal(u.promptTokens, Number(prompt), 'promptTokens');
    assert.equal(u.completionTokens, Number(completion), 'completionTokens');
    assert.equal(h.usdToNano(u.chargedAmount), charged, `chargedAmount ${u.chargedAmount}`);
    assert.match(String(u.createdAt), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/, 'createdAt');
    const tx = await h.transactionRows(gw, a.billing);
    const usage = tx.filter((t) => t.type === 'usage');
    assert.equal(usage.length, charged > 0n ? 1 : 0, `usage transactions: ${JSON.stringify(tx)}`);
    if (charged > 0n) assert.equal(h.usdToNano(usage[0].amount), -charged, 'usage transaction amount');
    return u;
}

test('non-streaming chat: charged the upstream usage at list price; x-modelswitch-cost', T, async () => {
    const a = A.plain;
    const res = await chat(a.key, json({
        model: 'mock-model', messages: user('plain'), max_tokens: 50, mock: { chunks: 7, prompt_tokens: 23 },
    }));
    assert.equal(res.status, 200, res.text);
    const want = h.costNano(gw, 'mock-model', 23, 7);
    assert.equal(want, 127500n); // 23 x 2500 + 7 x 10000 nano-dollars
    assert.equal(costHeader(res), want, 'x-modelswitch-cost');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want, 'balance');
    const u = await checkOneUsage(a, { model: 'mock-model', prompt: 23, completion: 7, charged: want });
    assert.equal(String(u.keyId), await gw.keyId(a.account, a.key), 'keyId is the proxy key used');
    const pay = (await h.transactionRows(gw, a.billing)).filter((t) => t.type === 'payment');
    assert.equal(pay.length, 1);
    assert.equal(h.usdToNano(pay[0].amount), a.topups, 'the opening balance is a payment');
});

test('a request is rounded once, half up, to a whole nano-dollar', T, async () => {
    const a = A.cheap;
    const res = await chat(a.key, json({
        model: 'mock-cheap', messages: user('cheap'), max_tokens: 10, mock: { chunks: 3, prompt_tokens: 13 },
    }));
    assert.equal(res.status, 200, res.text);
    // 13 x 37.5 + 3 x 150 = 937.5 nano-dollars -> 938 (per-token rounding would give 944 or 937)
    const want = h.costNano(gw, 'mock-cheap', 13, 3);
    assert.equal(want, 938n);
    assert.equal(costHeader(res), want);
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
    await checkOneUsage(a, { model: 'mock-cheap', prompt: 13, completion: 3, charged: want });
});

test('embeddings: charged the prompt tokens the upstream reports', T, async () => {
    const a = A.embed;
    const embed = (body) => h.post(gw, '/v1/embeddings', a.key, json({ model: 'mock-embed', ...body }));
    const r1 = await embed({ input: ['alpha', 'beta', 'gamma'] });
    assert.equal(r1.status, 200, r1.text);
    const w1 = h.costNano(gw, 'mock-embed', 15, 0); // the mock: 5 tokens per input
    assert.equal(w1, 300n);
    assert.equal(costHeader(r1), w1);
    const r2 = await embed({ input: 'x', mock: { prompt_tokens: 7777 } });
    assert.equal(r2.status, 200, r2.text);
    const w2 = h.costNano(gw, 'mock-embed', 7777, 0);
    assert.equal(costHeader(r2), w2);
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - w1 - w2);
    const rows = await h.usageRows(gw, a.billing);
    assert.deepEqual(rows.map((u) => [u.promptTokens, u.completionTokens, h.usdToNano(u.chargedAmount)]),
        [[7777, 0, w2], [15, 0, w1]], 'usage rows, newest first');
});

test('stream with include_usage: the usage chunk carries the cost charged', T, async () => {
    const a = A['stream-usage'];
    const res = await chat(a.key, json({
        model: 'mock-model', messages: user('stream usage'), stream: true, max_tokens: 50,
        stream_options: { include_usage: true }, mock: { chunks: 5, prompt_tokens: 13 },
    }));
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 tok3 tok4 ');
    const last = ev[ev.length - 2];
    assert.deepEqual(last.choices, [], `the usage chunk comes last: ${JSON.stringify(last)}`);
    assert.equal(last.usage.prompt_tokens, 13);
    assert.equal(last.usage.completion_tokens, 5);
    assert.equal(typeof last.usage.cost, 'number', `usage.cost: ${JSON.stringify(last.usage)}`);
    const want = h.costNano(gw, 'mock-model', 13, 5);
    assert.equal(h.usdToNano(last.usage.cost), want, 'usage.cost');
    for (const e of ev.slice(0, -2)) {
        assert.ok(!(e.usage && 'cost' in e.usage), 'cost only in the usage chunk');
    }
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want, 'balance');
    await checkOneUsage(a, { model: 'mock-model', prompt: 13, completion: 5, charged: want });
});

test('stream without include_usage: no usage chunk, still billed exactly', T, async () => {
    const a = A['stream-plain'];
    const res = await chat(a.key, json({
        model: 'mock-model', messages: user('stream plain'), stream: true, max_tokens: 50,
        mock: { chunks: 4 },
    }));
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 tok3 ');
    for (const e of ev.slice(0, -1)) {
        assert.ok(e.choices?.length, `no usage-only chunk: ${JSON.stringify(e)}`);
        assert.ok(!e.usage, `no usage: ${JSON.stringify(e)}`);
    }
    const want = h.costNano(gw, 'mock-model', 11, 4);
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
    await checkOneUsage(a, { model: 'mock-model', prompt: 11, completion: 4, charged: want });
});

test('echo: billed by its token rule (non-streaming and streaming)', T, async () => {
    const a = A.echo;
    const text = 'Hello, world! 3 apples';
    const messages = user(text);
    const prompt = h.echoPromptTokens(messages);
    const completion = h.countEchoTokens('You said: ' + text);
    assert.deepEqual([prompt, completion], [13, 9]);

    const r1 = await chat(a.key, json({ model: 'echo-1', messages }));
    assert.equal(r1.status, 200, r1.text);
    assert.deepEqual([r1.json.usage.prompt_tokens, r1.json.usage.completion_tokens], [prompt, completion]);
    const w1 = h.costNano(gw, 'echo-1', prompt, completion);
    assert.equal(w1, 3100n);
    assert.equal(costHeader(r1), w1);

    const r2 = await chat(a.key, json({ model: 'echo-cheap', messages }));
    assert.equal(r2.status, 200, r2.text);
    const w2 = h.costNano(gw, 'echo-cheap', prompt, completion);
    assert.equal(w2, 1838n); // 13 x 37.5 + 9 x 150 = 1837.5
    assert.equal(costHeader(r2), w2);

    const r3 = await chat(a.key, json({
        model: 'echo-cheap', messages, stream: true, stream_options: { include_usage: true },
    }));
    assert.equal(r3.status, 200, r3.text);
    const ev = h.sseEvents(r3.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    const u = ev[ev.length - 2].usage;
    assert.ok(u && typeof u.cost === 'number', `usage chunk with cost: ${JSON.stringify(ev[ev.length - 2])}`);
    assert.equal(h.usdToNano(u.cost), w2, 'echo stream usage.cost');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - w1 - 2n * w2);
    const rows = await h.usageRows(gw, a.billing);
    assert.deepEqual(rows.map((x) => [x.model, h.usdToNano(x.chargedAmount)]),
        [['echo-cheap', w2], ['echo-cheap', w2], ['echo-1', w1]]);
});

test('markup: list prices are provider prices plus markup_percent (/v1/models, charges)', T, async () => {
    let gm = null;
    try {
        let a;
        gm = await h.startGateway({
            config: { billing: { markup_percent: 12.5 } },
            setup: async (g) => {
                const account = await g.createAccount('markup', '1');
                a = { key: await g.createKey(account) };
                a.billing = await g.createKey(account, { type: 'billing' });
            },
        });
        const m = await h.get(gm, '/v1/models/mock-model', a.key);
        assert.equal(m.status, 200, m.text);
        assert.equal(m.json.pricing.input, 2.8125);
        assert.equal(m.json.pricing.output, 11.25);
        const body = json({ model: 'mock-model', messages: user('markup'), max_tokens: 10 });
        const res = await chat(a.key, body, gm);
        assert.equal(res.status, 200, res.text);
        // 11 x 2812.5 + 3 x 11250 = 64687.5 nano-dollars -> 64688
        const want = h.costNano(gm, 'mock-model', 11, 3);
        assert.equal(want, 64688n);
        assert.equal(costHeader(res), want);
        const e = await chat(a.key, json({ model: 'echo-1', messages: user('hi') }), gm);
        assert.equal(e.status, 200, e.text);
        const we = h.costNano(gm, 'echo-1', 8, 4); // 8 x 112.5 + 4 x 225 = 1800
        assert.equal(we, 1800n);
        assert.equal(costHeader(e), we);
        assert.equal(await h.balanceNano(gm, a.billing), 1000000000n - want - we);
        const au = await h.audit(gm);
        assert.equal(au.code, 0, `audit: ${au.stdout}${au.stderr}`);
    } finally {
        await gm?.stop();
    }
});

test('holds: a nano-dollar short is refused before going upstream; exactly enough passes', T, async () => {
    for (const c of HOLD_CASES) {
        const a = c.acct;
        const p = c.embeddings ? '/v1/embeddings' : '/v1/chat/completions';
        const content = c.body.messages?.[0].content;
        const marker = c.embeddings ? c.body.input[0] : content[0]?.text ?? content;
        const res = await h.post(gw, p, a.key, c.text);
        h.assertError(assert, res, 403, 'permission_error', 'insufficient_balance');
        assert.equal((await upstreamWith(marker)).length, 0, `${c.name}: a refused request went upstream`);
        assert.equal(await h.balanceNano(gw, a.billing), c.hold - 1n, `${c.name}: a refusal costs nothing`);

        await gw.cli(['account', 'topup', a.account, '0.000000001']);
        a.topups += 1n;
        const seen = await h.eventually(async () => (await h.balanceNano(gw, a.billing)) === c.hold,
            h.scaled(3000));
        assert.ok(seen.value, `${c.name}: the top-up never reached the gateway`);
        const ok = await h.post(gw, p, a.key, c.text);
        assert.equal(ok.status, 200, `${c.name}: a balance of exactly the hold (${h.nanoToUsd(c.hold)}) ` +
            `must pass: ${ok.text.slice(0, 300)}`);
        const charged = costHeader(ok);
        assert.ok(charged > 0n && charged <= c.hold, `${c.name}: charge ${charged} > hold ${c.hold}`);
        assert.equal(await h.balanceNano(gw, a.billing), c.hold - charged, `${c.name}: balance after`);
    }
});

test("a key's spend limit: 403 spend_limit_reached, nothing upstream; other keys unaffected", T, async () => {
    const a = A.spend;
    const charge = h.costNano(gw, 'mock-model', 11, 3);
    for (let i = 0; i < 2; i++) {
        const res = await chat(a.key, B.spend);
        assert.equal(res.status, 200, `request ${i + 1} fits the limit: ${res.text}`);
        assert.equal(costHeader(res), charge);
    }
    const refused = await chat(a.key, B.spend);
    h.assertError(assert, refused, 403, 'permission_error', 'spend_limit_reached');
    assert.equal((await upstreamWith('"spend"')).length, 2, 'the refused request reached the upstream');
    const other = await chat(a.key2, B.spend);
    assert.equal(other.status, 200, `another key of the account has no limit: ${other.text}`);
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - 3n * charge);
});

test('a client that disconnects after the first token pays the upstream usage (status 499)', T, async () => {
    const a = A.disconnect;
    const body = json({
        model: 'mock-model', messages: user('disconnect'), stream: true, max_tokens: 50,
        mock: { chunks: 10, chunk_delay_ms: 100, prompt_tokens: 11 },
    });
    const c = await h.RawConn.open(gw.port);
    const t0 = Date.now();
    await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n' +
        `Authorization: Bearer ${a.key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok0 '), h.scaled(5000), 'the first token');
    c.destroy();
    const head = c.data.toString('latin1');
    const rid = /\r\nx-request-id: *([^\r\n]+)/i.exec(head)?.[1];
    assert.ok(rid, 'x-request-id');
    assert.ok(!head.includes('tok3 '), 'the client left before most of the stream');

    const want = h.costNano(gw, 'mock-model', 11, 10);
    const r = await h.eventually(async () => (await h.usageRows(gw, a.billing)).length > 0,
        h.scaled(6000), 100);
    assert.ok(r.value, 'no usage row within 6 s of the disconnect');
    assert.ok(Date.now() - t0 >= 900, 'billed only once the upstream finished (10 chunks, 100 ms apart)');
    await checkOneUsage(a, { model: 'mock-model', prompt: 11, completion: 10, charged: want });
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
    const rows = await h.sqliteRows(gw,
        `SELECT status, estimated FROM usage WHERE request_id = '${rid.replace(/'/g, '')}'`);
    if (rows) assert.deepEqual(rows, [{ status: 499, estimated: 0 }], 'the usage record of the disconnect');
});

test('a stream cut by the upstream without usage: in-band error, the estimate is billed', T, async () => {
    const a = A.cut;
    const body = json({
        model: 'mock-cut', messages: user('cut'), stream: true, max_tokens: 50,
        stream_options: { include_usage: true }, mock: { chunks: 5, cut_after: 2 },
    });
    const res = await chat(a.key, body);
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.equal(ev[ev.length - 1], '[DONE]', 'the stream ends with [DONE]');
    assert.ok(ev[ev.length - 2]?.error, `an error event before [DONE]: ${res.text}`);
    assert.equal(h.streamContent(ev.slice(0, -2)), 'tok0 tok1 ');
    assert.ok(!ev.some((e) => e.usage), 'no usage chunk: the upstream never sent usage');
    // prompt: the hold's prompt bound; completion: the bytes of text streamed ("tok0 tok1 " = 10),
    // an upper bound of its tokens
    const pb = h.promptBound(body);
    const want = h.costNano(gw, 'mock-cut', pb, 10);
    await checkOneUsage(a, { model: 'mock-cut', prompt: pb, completion: 10, charged: want });
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
});

test('failures before an answer (500, refused, timeout) cost nothing and free the hold', T, async () => {
    const a = A.failures;
    const r500 = await chat(a.key, B.fail500);
    h.assertError(assert, r500, 502, 'upstream_error', 'provider_error');
    assert.ok((await upstreamWith('fail 500')).length >= 1, 'the 500 request went upstream');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups, 'after the 500');
    const dead = await chat(a.key, B.failDead);
    h.assertError(assert, dead, 502, 'upstream_error', 'provider_error');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups, 'after the refused connection');
    const slow = await chat(a.key, B.failSlow);
    h.assertError(assert, slow, 504, 'timeout_error', 'upstream_timeout');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups, 'after the timeout');
    // Every hold was freed: a request whose hold is the whole balance passes.
    const ok = await chat(a.key, B.failOk);
    assert.equal(ok.status, 200, `a hold of the whole balance after the failures: ${ok.text}`);
    const want = h.costNano(gw, 'mock-model', 11, 3);
    assert.equal(costHeader(ok), want);
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
    const rows = await h.usageRows(gw, a.billing);
    const charged = rows.filter((u) => h.usdToNano(u.chargedAmount) !== 0n);
    assert.equal(charged.length, 1, `only the successful request is charged: ${JSON.stringify(rows)}`);
});

test(`concurrency: a balance of exactly ${N} holds, ${20 * N} requests at once: ${N} pass`, T, async () => {
    const a = A.concurrent;
    const hold = h.holdNano(gw, B.concurrent);
    assert.equal(a.topups, BigInt(N) * hold);
    let polling = true;
    const seen = [];
    const poller = (async () => {
        while (polling) {
            seen.push(await h.balanceNano(gw, a.billing));
            await h.sleep(20);
        }
    })();
    const results = await Promise.all(Array.from({ length: 20 * N }, () => chat(a.key, B.concurrent)));
    polling = false;
    await poller;
    const ok = results.filter((r) => r.status === 200);
    const refused = results.filter((r) => r.status !== 200);
    assert.equal(ok.length, N, `statuses: ${JSON.stringify(results.map((r) => r.status))}`);
    for (const r of refused) h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
    const charge = h.costNano(gw, 'mock-model', 11, 3);
    let sum = 0n;
    for (const r of ok) sum += costHeader(r);
    assert.equal(sum, BigInt(N) * charge);
    const after = await h.balanceNano(gw, a.billing);
    assert.equal(after, a.topups - sum, 'balance = initial - charges');
    seen.push(after);
    assert.ok(seen.every((b) => b >= 0n && b <= a.topups), `balances seen: ${seen}`);
    const upstream = await upstreamWith('concurrent');
    assert.equal(upstream.length, N, 'only the accepted requests reached the upstream');
    const au = await h.audit(gw);
    assert.equal(au.code, 0, `audit: ${au.stdout}${au.stderr}`);
});

test('cache reads and reasoning: each count at its own price; the client sees OpenAI usage', T, async () => {
    const a = A.cache;
    const res = await chat(a.key, json({
        model: 'mock-cache', messages: user('cached prompt'), max_tokens: 50,
        mock: { prompt_tokens: 1000, cached_tokens: 600, reasoning_tokens: 7, chunks: 2 },
    }));
    assert.equal(res.status, 200, res.text);
    // 400 x 2.50 + 600 x 1.25 + (2 + 7) x 10.00 USD per 1M: reasoning is billed as output
    const want = usageCostNano(gw, 'mock-cache', { input: 400, cached_input: 600, output: 9 });
    assert.equal(want, 1840000n);
    // all of it at the input price would have been 2 590 000
    assert.equal(h.costNano(gw, 'mock-cache', 1000, 9), 2590000n);
    assert.equal(costHeader(res), want, 'x-modelswitch-cost');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want, 'balance');
    // the client's usage is the provider's, untouched
    assert.deepEqual(res.json.usage, {
        prompt_tokens: 1000, completion_tokens: 9, total_tokens: 1009,
        prompt_tokens_details: { cached_tokens: 600 }, completion_tokens_details: { reasoning_tokens: 7 },
    });
    const u = await checkOneUsage(a, { model: 'mock-cache', prompt: 1000, completion: 9, charged: want });
    assert.equal(u.cachedTokens, 600, 'cachedTokens');
    assert.equal(u.cacheWriteTokens, 0, 'cacheWriteTokens');
    assert.equal(u.cacheWrite1hTokens, 0, 'cacheWrite1hTokens');
    assert.equal(u.reasoningTokens, 7, 'reasoningTokens');
    assert.equal(u.requestId, res.headers.get('x-request-id'), 'requestId');
    assert.equal(u.provider, 'mock');
    assert.equal(u.status, 200);
    const tx = (await h.transactionRows(gw, a.billing)).find((t) => t.type === 'usage');
    assert.equal(tx.description, 'mock-cache 1000+9 tokens');
    // the access log counts as OpenAI does: every prompt token, every completion token
    const line = await gw.waitForLog(res.headers.get('x-request-id'));
    assert.equal(line.prompt_tokens, 1000);
    assert.equal(line.completion_tokens, 9);
    // the statistics add the parts up
    const stats = await h.get(gw, '/api/usage/stats', a.billing);
    assert.equal(stats.status, 200, stats.text);
    const st = stats.json.overall;
    assert.equal(st.promptTokens, 1000);
    assert.equal(st.cachedTokens, 600);
    assert.equal(st.reasoningTokens, 7);
    assert.equal(h.usdToNano(st.spend), want);
});

test('cache reads and reasoning in a stream: the usage chunk and the charge agree', T, async () => {
    const a = A['cache-stream'];
    const res = await chat(a.key, json({
        model: 'mock-cache', messages: user('cached stream'), stream: true, max_tokens: 50,
        stream_options: { include_usage: true },
        mock: { prompt_tokens: 333, cached_tokens: 333, reasoning_tokens: 20, chunks: 3 },
    }));
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    const last = ev[ev.length - 2];
    assert.equal(last.usage.prompt_tokens, 333);
    assert.equal(last.usage.completion_tokens, 23);
    assert.deepEqual(last.usage.prompt_tokens_details, { cached_tokens: 333 });
    assert.deepEqual(last.usage.completion_tokens_details, { reasoning_tokens: 20 });
    // the whole prompt from the cache: 333 x 1250 + 23 x 10000 nano-dollars
    const want = usageCostNano(gw, 'mock-cache', { cached_input: 333, output: 23 });
    assert.equal(want, 646250n);
    assert.equal(h.usdToNano(last.usage.cost), want, 'usage.cost');
    assert.equal(await h.balanceNano(gw, a.billing), a.topups - want);
    const u = await checkOneUsage(a, { model: 'mock-cache', prompt: 333, completion: 23, charged: want });
    assert.equal(u.cachedTokens, 333);
    assert.equal(u.reasoningTokens, 20);
});

test('holds: the prompt bound is priced at the dearest prompt price (a 1-hour cache write)', T, async () => {
    // input alone would hold far less: the account a nano-dollar short of the real hold has more
    assert.ok(h.holdNano(gw, B.dear) < B.dearHold - 1n);
    const before = (await upstreamWith('dear write')).length;
    const short = await chat(A['dear short'].key, B.dear);
    h.assertError(assert, short, 403, 'permission_error', 'insufficient_balance');
    assert.equal((await upstreamWith('dear write')).length, before, 'nothing went upstream');
    const exact = await chat(A['dear exact'].key, B.dear);
    assert.equal(exact.status, 200, exact.text);
    // charged its usage (5 plain input, 2 output), not the hold
    const want = usageCostNano(gw, 'mock-dearwrite', { input: 5, output: 2 });
    assert.equal(costHeader(exact), want);
    assert.equal(await h.balanceNano(gw, A['dear exact'].billing), B.dearHold - want);
});

test('ledger: balance = top-ups - usage charged = Σ transactions, for every account; audit', T, async () => {
    for (const [name, a] of Object.entries(A)) {
        const balance = await h.balanceNano(gw, a.billing);
        const usage = await h.usageRows(gw, a.billing);
        const charged = usage.reduce((s, u) => s + h.usdToNano(u.chargedAmount), 0n);
        assert.equal(balance, a.topups - charged, `${name}: balance = top-ups - charges`);
        const tx = await h.transactionRows(gw, a.billing);
        const sum = (type) => tx.filter((t) => t.type === type)
            .reduce((s, t) => s + h.usdToNano(t.amount), 0n);
        assert.equal(sum('payment'), a.topups, `${name}: payments`);
        assert.equal(sum('usage'), -charged, `${name}: usage transactions`);
        assert.ok(tx.filter((t) => t.type === 'usage').every((t) => h.usdToNano(t.amount) <= 0n),
            `${name}: usage transactions are debits`);
        assert.equal(tx.reduce((s, t) => s + h.usdToNano(t.amount), 0n), balance, `${name}: Σ transactions`);
    }
    const au = await h.audit(gw);
    assert.equal(au.code, 0, `audit: ${au.stdout}${au.stderr}`);
});
