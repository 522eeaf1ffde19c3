// What an attacker tried against a request's body and the provider's answers (issue 9): JSON keys
// written with escapes must mean what they mean to the provider, fields the gateway acts on may
// not be given twice, a model name is compared with its length (a NUL inside is not a match), a
// provider that echoes its credential does not pass it on, and the estimate of a stream that
// never reported usage stays within the request's own output limit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const UPSTREAM_KEY = 'sk-upstream-test'; // the mock provider's api_key in the harness config
let gw, key;

before(async () => {
    gw = await h.startGateway({
        config: {
            models: {
                // own deployments, so cool-downs from the fault tests reach nothing else
                'mock-secret': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'secret-upstream' }],
                },
                'mock-est': {
                    pricing: { input: 1, output: 1 },
                    max_output_tokens: 4096,
                    deployments: [{ provider: 'mock', model: 'est-upstream' }],
                },
                // a cache write dearer than plain input: the estimate's prompt is counted at it
                'mock-est-cw': {
                    pricing: { input: 1, output: 1, cache_write: 5 },
                    deployments: [{ provider: 'mock', model: 'est-cw-upstream' }],
                },
            },
        },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const chat = (body) => h.post(gw, '/v1/chat/completions', key, body);
const user = [{ role: 'user', content: 'hi' }];

/** The usage rows of model once the ledger wrote them, or null without the sqlite3 shell. */
async function usageRowsOf(model) {
    const q = `SELECT completion_tokens, estimated FROM usage WHERE model = '${model}'`;
    const r = await h.eventually(async () => {
        const rows = await h.sqliteRows(gw, q);
        return rows === null || rows.length > 0 ? { rows } : null;
    }, h.scaled(5000));
    assert.ok(r.value, `no usage row for ${model}`);
    return r.value.rows;
}

async function lastUpstreamBody() {
    const reqs = await gw.mock.requestsTo('/chat/completions');
    assert.ok(reqs.length > 0, 'the mock received no chat request');
    return reqs[reqs.length - 1].body;
}

test('an escaped include_usage:false cannot turn off the usage the gateway forces', T, async () => {
    await gw.mock.clear();
    const raw = '{"model":"mock-model","messages":[{"role":"user","content":"esc"}],"stream":true,' +
        '"stream_options":{"include_\\u0075sage":false,"x":1}}';
    const res = await chat(raw);
    assert.equal(res.status, 200, res.text);
    const up = JSON.parse(await lastUpstreamBody());
    assert.deepEqual(up.stream_options, { include_usage: true, x: 1 },
        'the upstream must see include_usage true once, and the client option kept');
    const ev = h.sseEvents(res.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    assert.ok(!ev.some((e) => e.usage), 'the client asked for no usage chunk and gets none');
    // the real usage was billed, not an estimate: the request's usage row says 11 + 3
    const rows = await usageRowsOf('mock-model');
    if (rows) assert.deepEqual(rows, [{ completion_tokens: 3, estimated: 0 }]);
});

test('fields the gateway acts on, given twice (escaped or not), are 400 naming the field', T, async () => {
    await gw.mock.clear();
    const cases = [
        ['{"model":"mock-model","model":"echo-1","messages":[{"role":"user","content":"d"}]}', 'model'],
        ['{"model":"echo-1","m\\u006fdel":"mock-model","messages":[{"role":"user","content":"d"}]}', 'model'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"stream":false,"stream":true}', 'stream'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"max_tokens":1,"max_tokens":99999}',
            'max_tokens'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"max_completion_tokens":1,' +
            '"max_completion_tokens":5}', 'max_completion_tokens'],
        ['{"model":"echo-1","messages":[],"messages":[{"role":"user","content":"d"}]}', 'messages'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"n":1,"n":8}', 'n'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"stream":true,' +
            '"stream_options":{"include_usage":true},"stream_options":{"include_usage":false}}', 'stream_options'],
        ['{"model":"echo-1","messages":[{"role":"user","content":"d"}],"stream":true,' +
            '"stream_options":{"include_usage":true,"include_\\u0075sage":false}}', 'stream_options.include_usage'],
    ];
    for (const [body, param] of cases) {
        const res = await chat(body);
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
    }
    const emb = await h.post(gw, '/v1/embeddings', key,
        '{"model":"echo-embed-1","input":"a","input":["b","c"]}');
    h.assertError(assert, emb, 400, 'invalid_request_error', 'invalid_parameter', 'input');
    assert.equal((await gw.mock.requestsTo('/chat/completions')).length, 0, 'nothing went upstream');
    // fields the gateway does not read may repeat: the provider decides what they mean
    const ok = await chat('{"model":"echo-1","messages":[{"role":"user","content":"d"}],' +
        '"temperature":1,"temperature":0.5}');
    assert.equal(ok.status, 200, ok.text);
});

test('a model name with a NUL inside is not the name before the NUL: 404', T, async () => {
    for (const raw of ['"echo-1\\u0000xyz"', '"echo-1\\u0000"', '"mock-model\\u0000"']) {
        const res = await chat(`{"model":${raw},"messages":[{"role":"user","content":"n"}]}`);
        h.assertError(assert, res, 404, 'not_found_error', 'model_not_found', 'model');
        assert.match(res.json.error.message, /\\u0000/, 'the message shows the NUL, not a served name');
    }
    // an escaped name that decodes to a served one is that model
    const res = await chat('{"model":"echo\\u002d1","messages":[{"role":"user","content":"n"}]}');
    assert.equal(res.status, 200, res.text);
});

test('a provider that echoes its credential: the key never reaches the client', T, async () => {
    const msg = `Incorrect API key provided: ${UPSTREAM_KEY}. Header was "Bearer ${UPSTREAM_KEY}"`;
    for (const status of [401, 500]) {
        const res = await chat({
            model: 'mock-secret', messages: user, max_tokens: 5,
            mock: { status, error_message: msg },
        });
        h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
        assert.ok(!res.text.includes(UPSTREAM_KEY), `HTTP ${status}: the key leaked: ${res.text}`);
        assert.match(res.json.error.message, /\[redacted\]/, 'the message says what was removed');
        assert.match(res.json.error.message, /Incorrect API key provided/, 'the rest of the message stays');
    }
    assert.ok(!gw.stderr.includes(UPSTREAM_KEY), 'the key reached the gateway log');
});

test('a stream cut without usage is billed at most the request\'s max_tokens', T, async () => {
    await gw.mock.clear();
    const body = {
        model: 'mock-est', messages: user, stream: true, max_tokens: 7,
        mock: { chunks: 40, cut_after: 30, no_usage: true },
    };
    const res = await chat(body);
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.ok(ev[ev.length - 2]?.error, 'the cut is reported in-band');
    const rows = await usageRowsOf('mock-est');
    // 30 tokens of 5 bytes were streamed (150 bytes): the bound is max_tokens
    if (rows) assert.deepEqual(rows, [{ completion_tokens: 7, estimated: 1 }]);
    // the access log says the same, with or without the sqlite3 shell
    const rid = res.headers.get('x-request-id');
    const line = await gw.waitForLog(rid);
    assert.match(JSON.stringify(line), /"completion_tokens":7\b/, `access line: ${JSON.stringify(line)}`);
});

test('a usage-less estimate counts the prompt bound at the model\'s dearest prompt price', T, async () => {
    const body = JSON.stringify({
        model: 'mock-est-cw', messages: user, stream: true, max_tokens: 3,
        mock: { chunks: 10, cut_after: 5, no_usage: true },
    });
    const res = await chat(body);
    assert.equal(res.status, 200, res.text);
    // 1 USD per 1M tokens = 1,000 nano-dollars a token: the prompt bound at 5, 3 output at 1
    const want = (h.promptBound(body) * 5n + 3n) * 1000n;
    const r = await h.eventually(async () => {
        const rows = await h.sqliteRows(gw, "SELECT charged_nusd, estimated FROM usage WHERE model = 'mock-est-cw'");
        return rows === null || rows.length > 0 ? { rows } : null;
    }, h.scaled(5000));
    assert.ok(r.value, 'no usage row');
    if (r.value.rows) assert.deepEqual(r.value.rows, [{ charged_nusd: Number(want), estimated: 1 }]);
});

test('a fallback answer corrects the token limit of the model the request was admitted under', T, async () => {
    // rl-a's only deployment fails, so rl-b answers; rl-a's per-model token limit admitted the
    // estimate and must get the real count back, or every fallback request would keep the
    // whole estimate charged against rl-a (and its limit would refuse after a few requests)
    let rlKey;
    const g = await h.startGateway({
        config: {
            models: {
                'rl-a': {
                    pricing: { input: 1, output: 1 },
                    max_output_tokens: 1000,
                    limits: { tokens_per_minute: 5000 },
                    deployments: [{ provider: 'mock', model: 'rl-a-upstream' }],
                    fallbacks: ['rl-b'],
                },
                'rl-b': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'local', model: 'echo' }],
                },
            },
        },
        setup: async (gg) => { ({ key: rlKey } = await gg.newProxyKey(100)); },
    });
    try {
        // each request is admitted at ~1,100 tokens (prompt bound + 1,000) and really uses ~15
        for (let i = 0; i < 10; i++) {
            const res = await h.post(g, '/v1/chat/completions', rlKey, {
                model: 'rl-a', messages: [{ role: 'user', content: `fb ${i}` }],
                mock: { status: 500 },
            });
            assert.equal(res.status, 200, `request ${i + 1}: ${res.text}`);
            assert.equal(res.headers.get('x-modelswitch-model'), 'rl-b');
        }
    } finally {
        await g.stop();
    }
});
