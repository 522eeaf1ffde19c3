// The `gemini` provider kind (issue 10): OpenAI chat and embeddings clients served from Google's
// Gemini API by the translating adapter src/providers/gemini.c, against the mock upstream's Gemini
// personality (tests/mock/README.md, "Gemini"): generateContent, streamGenerateContent?alt=sse,
// batchEmbedContents, Google's error bodies. The mock records what the gateway sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const GKEY = 'AIza-gemini-secret-42';
let gw, mockG, key, billing;

before(async () => {
    // one mock for Gemini, the gateway's own for the OpenAI deployments it fails over to
    mockG = await h.startMock();
    const mock = await h.startMock();
    const g = `http://127.0.0.1:${mockG.port}`;
    const gem = (model, extra = {}) => ({
        pricing: { input: 0.3, output: 2.5, cached_input: 0.075 },
        max_output_tokens: 8192,
        deployments: [{ provider: 'google', model }],
        ...extra,
    });
    gw = await h.prepareGateway({
        mock,
        config: {
            providers: { google: { kind: 'gemini', base_url: g, api_key: GKEY, timeout_ms: 10000 } },
            models: {
                'gemini-flash': gem('gemini-2.5-flash'),
                'gemini-503': gem('gemini-2.5-pro'),
                'gemini-400': gem('gemini-2.5-pro'),
                // one per status: a 429 makes the router wait before it tries that deployment again
                ...Object.fromEntries([429, 503].map((st) => [`gemini-fo-${st}`, gem('gemini-2.5-flash', {
                    deployments: [
                        { provider: 'google', model: 'gemini-2.5-flash', priority: 1 },
                        { provider: 'mock', model: 'gpt-fallback', priority: 2 },
                    ],
                })])),
                'gemini-embed': {
                    pricing: { input: 0.15, output: 0 },
                    deployments: [{ provider: 'google', model: 'gemini-embedding-001' }],
                },
            },
        },
    });
    const account = await gw.createAccount('gem', 100);
    key = await gw.createKey(account);
    billing = await gw.createKey(account, { type: 'billing' });
    await gw.start();
});
after(async () => {
    await gw?.stop();
    await mockG?.stop();
});

const user = (s) => [{ role: 'user', content: s }];

async function lastGemini() {
    const reqs = await mockG.requests();
    assert.ok(reqs.length > 0, 'the Gemini mock received nothing');
    return reqs[reqs.length - 1];
}

function assertGoogleAuth(rec) {
    assert.equal(h.recordedHeader(rec, 'x-goog-api-key'), GKEY);
    assert.equal(h.recordedHeader(rec, 'authorization'), undefined);
    assert.ok(!rec.query.includes('key='), `the key is not in the URL: ${rec.query}`);
    assert.ok(!rec.query.includes(GKEY));
    for (const [k, v] of Object.entries(rec.headers ?? {})) {
        assert.ok(!String(v).includes(key), `the client's key leaked upstream in ${k}`);
    }
}

test('plain chat with a system prompt: translated both ways, headers as Google wants', T, async () => {
    await mockG.clear();
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', temperature: 0.2,
        messages: [{ role: 'system', content: 'Be brief.' }, ...user('Hello')],
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'google');
    const j = res.json;
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, 'gemini-flash');
    assert.deepEqual(j.choices, [{
        index: 0, message: { role: 'assistant', content: 'tok0 tok1 tok2 ', refusal: null },
        logprobs: null, finish_reason: 'stop',
    }]);
    assert.deepEqual(j.usage, {
        prompt_tokens: 11, completion_tokens: 3, total_tokens: 14,
        prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 },
    });
    const rec = await lastGemini();
    assert.equal(rec.path, '/v1beta/models/gemini-2.5-flash:generateContent');
    assert.equal(rec.query, '');
    assertGoogleAuth(rec);
    assert.deepEqual(JSON.parse(rec.body), {
        contents: [{ role: 'user', parts: [{ text: 'Hello' }] }],
        systemInstruction: { parts: [{ text: 'Be brief.' }] },
        generationConfig: { temperature: 0.2 },
    });
});

test('multi-turn with a tool round trip: made-up ids are stable, results go back by name', T, async () => {
    const tools = [{
        type: 'function',
        function: {
            name: 'get_weather', description: 'Weather of a city',
            parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
        },
    }];
    const first = {
        model: 'gemini-flash', tools, messages: user('Weather in Paris?'),
        mock: { chunks: 0, tool_call: { name: 'get_weather', args: { city: 'Paris' } } },
    };
    const r1 = await h.post(gw, '/v1/chat/completions', key, first);
    assert.equal(r1.status, 200, r1.text);
    const msg = r1.json.choices[0].message;
    assert.equal(r1.json.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.content, null);
    assert.equal(msg.tool_calls.length, 1);
    const call = msg.tool_calls[0];
    assert.match(call.id, /^call_[0-9a-f]{16}$/);
    assert.deepEqual(call.function, { name: 'get_weather', arguments: '{"city":"Paris"}' });
    let sent = JSON.parse((await lastGemini()).body);
    assert.deepEqual(sent.tools, [{
        functionDeclarations: [{
            name: 'get_weather', description: 'Weather of a city',
            parameters: {
                type: 'OBJECT', properties: { city: { type: 'STRING' } }, propertyOrdering: ['city'],
                required: ['city'],
            },
        }],
    }]);
    // the same conversation again gets the same id
    const again = await h.post(gw, '/v1/chat/completions', key, first);
    assert.equal(again.json.choices[0].message.tool_calls[0].id, call.id);

    await mockG.clear();
    const r2 = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', tools,
        messages: [
            ...user('Weather in Paris?'),
            { role: 'assistant', content: null, tool_calls: [call] },
            { role: 'tool', tool_call_id: call.id, content: '{"temp":21}' },
        ],
    });
    assert.equal(r2.status, 200, r2.text);
    assert.equal(r2.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    sent = JSON.parse((await lastGemini()).body);
    assert.deepEqual(sent.contents, [
        { role: 'user', parts: [{ text: 'Weather in Paris?' }] },
        { role: 'model', parts: [{ functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
        { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { temp: 21 } } }] },
    ]);
});

test('streaming: role chunk, one chunk per part, the finish, the usage chunk, [DONE]', T, async () => {
    await mockG.clear();
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', messages: user('stream'), stream: true,
        stream_options: { include_usage: true },
    });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]');
    const chunks = ev.slice(0, -1);
    for (const c of chunks) {
        assert.equal(c.object, 'chat.completion.chunk');
        assert.equal(c.model, 'gemini-flash');
        assert.equal(c.id, chunks[0].id);
    }
    assert.deepEqual(chunks.map((c) => c.choices), [
        [{ index: 0, delta: { role: 'assistant', content: '' }, logprobs: null, finish_reason: null }],
        [{ index: 0, delta: { content: 'tok0 ' }, logprobs: null, finish_reason: null }],
        [{ index: 0, delta: { content: 'tok1 ' }, logprobs: null, finish_reason: null }],
        [{ index: 0, delta: { content: 'tok2 ' }, logprobs: null, finish_reason: null }],
        [{ index: 0, delta: {}, logprobs: null, finish_reason: 'stop' }],
        [],
    ]);
    const u = chunks.at(-1).usage;
    assert.equal(h.usdToNano(u.cost), h.usdToNano(res.headers.get('x-modelswitch-cost') ?? u.cost));
    delete u.cost;
    assert.deepEqual(u, {
        prompt_tokens: 11, completion_tokens: 3, total_tokens: 14,
        prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 },
    });
    const rec = await lastGemini();
    assert.equal(rec.path, '/v1beta/models/gemini-2.5-flash:streamGenerateContent');
    assert.equal(rec.query, 'alt=sse');
    assertGoogleAuth(rec);

    // without include_usage: no usage chunk
    const plain = await h.post(gw, '/v1/chat/completions', key,
        { model: 'gemini-flash', messages: user('s'), stream: true });
    const pev = h.sseEvents(plain.text);
    assert.equal(pev.at(-1), '[DONE]');
    assert.ok(pev.slice(0, -1).every((c) => !c.usage), plain.text);
    assert.equal(h.streamContent(pev.slice(0, -1)), 'tok0 tok1 tok2 ');
});

test('thinking comes back as reasoning_content, whole and streamed', T, async () => {
    const body = { model: 'gemini-flash', messages: user('think'), reasoning_effort: 'low', mock: { thinking: true } };
    const res = await h.post(gw, '/v1/chat/completions', key, body);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.reasoning_content, 'think0 think1 ');
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(res.json.usage.completion_tokens_details.reasoning_tokens, 2);
    assert.equal(res.json.usage.completion_tokens, 5);
    assert.deepEqual(JSON.parse((await lastGemini()).body).generationConfig,
        { thinkingConfig: { thinkingBudget: 1024, includeThoughts: true } });
    const s = await h.post(gw, '/v1/chat/completions', key, { ...body, stream: true });
    const ev = h.sseEvents(s.text);
    assert.deepEqual(ev[1].choices[0].delta, { reasoning_content: 'think0 think1 ' });
});

test('MAX_TOKENS is length, SAFETY is content_filter', T, async () => {
    const cut = await h.post(gw, '/v1/chat/completions', key,
        { model: 'gemini-flash', messages: user('long'), max_tokens: 2 });
    assert.equal(cut.status, 200, cut.text);
    assert.equal(cut.json.choices[0].finish_reason, 'length');
    assert.equal(cut.json.choices[0].message.content, 'tok0 tok1 ');
    assert.equal(JSON.parse((await lastGemini()).body).generationConfig.maxOutputTokens, 2);
    const safe = await h.post(gw, '/v1/chat/completions', key,
        { model: 'gemini-flash', messages: user('bad'), mock: { finish_reason: 'SAFETY', chunks: 0 } });
    assert.equal(safe.status, 200, safe.text);
    assert.equal(safe.json.choices[0].finish_reason, 'content_filter');
    const ss = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', messages: user('bad'), stream: true, mock: { finish_reason: 'SAFETY' },
    });
    const ev = h.sseEvents(ss.text);
    assert.equal(ev.at(-2).choices[0].finish_reason, 'content_filter');
});

test('usage with cached, thoughts and tool-use prompt tokens is billed exactly', T, async () => {
    const before0 = await h.balanceNano(gw, billing);
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', messages: user('cached'), max_tokens: 50,
        mock: { prompt_tokens: 1000, cached_tokens: 600, thoughts_tokens: 7, tool_use_prompt_tokens: 10, chunks: 2 },
    });
    assert.equal(res.status, 200, res.text);
    // input = 1000 - 600 + 10 = 410 at 0.30, cached 600 at 0.075, output 2 + 7 = 9 at 2.50 (USD / 1M)
    const want = (410n * 300000000n + 600n * 75000000n + 9n * 2500000000n + 500000n) / 1000000n;
    assert.equal(want, 190500n);
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost')), want);
    assert.deepEqual(res.json.usage, {
        prompt_tokens: 1010, completion_tokens: 9, total_tokens: 1019,
        prompt_tokens_details: { cached_tokens: 600 }, completion_tokens_details: { reasoning_tokens: 7 },
    });
    assert.equal(await h.balanceNano(gw, billing), before0 - want);
    const row = (await h.usageRows(gw, billing))[0];
    assert.equal(row.requestId, res.headers.get('x-request-id'));
    assert.equal(row.provider, 'google');
    assert.equal(row.promptTokens, 1010);
    assert.equal(row.cachedTokens, 600);
    assert.equal(row.completionTokens, 9);
    assert.equal(row.reasoningTokens, 7);
    assert.equal(h.usdToNano(row.chargedAmount), want);

    // streamed: the last usageMetadata counts, not the sum of the chunks'
    const s = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', messages: user('cached'), max_tokens: 50, stream: true,
        stream_options: { include_usage: true },
        mock: { prompt_tokens: 1000, cached_tokens: 600, thoughts_tokens: 7, tool_use_prompt_tokens: 10, chunks: 2 },
    });
    const u = h.sseEvents(s.text).at(-2).usage;
    assert.equal(h.usdToNano(u.cost), want);
    assert.equal(u.prompt_tokens, 1010);
    assert.equal(u.completion_tokens, 9);
});

test('RESOURCE_EXHAUSTED and UNAVAILABLE fail over to the OpenAI deployment', T, async () => {
    for (const status of [429, 503]) {
        await mockG.config({ fail_status: status });
        try {
            await mockG.clear();
            const res = await h.post(gw, '/v1/chat/completions', key,
                { model: `gemini-fo-${status}`, messages: user(`fo ${status}`) });
            assert.equal(res.status, 200, res.text);
            assert.equal(res.headers.get('x-modelswitch-provider'), 'mock');
            assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
            assert.equal((await mockG.requests()).length, 1, 'Gemini was tried first');
        } finally {
            await mockG.config({ fail_status: 0 });
        }
    }
});

test('UNAVAILABLE is retried; INVALID_ARGUMENT is not; the key never shows', T, async () => {
    await mockG.clear();
    const r503 = await h.post(gw, '/v1/chat/completions', key,
        { model: 'gemini-503', messages: user('x'), mock: { status: 503 } });
    h.assertError(assert, r503, 502, 'upstream_error', 'provider_error');
    assert.match(r503.json.error.message, /UNAVAILABLE/);
    assert.ok((await mockG.requests()).length > 1, 'retried');

    await mockG.clear();
    const r400 = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-400', messages: user('x'),
        mock: { status: 400, error_message: `API key not valid: ${GKEY}` },
    });
    h.assertError(assert, r400, 502, 'upstream_error', 'provider_error');
    assert.match(r400.json.error.message, /INVALID_ARGUMENT/);
    assert.ok(!r400.text.includes(GKEY), r400.text);
    assert.match(r400.json.error.message, /\[redacted\]/);
    assert.equal((await mockG.requests()).length, 1, 'not retried');
});

test('a mid-stream error reaches the client in-band, then [DONE]', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gemini-flash', messages: user('s'), stream: true, mock: { stream_error_after: 1 },
    });
    assert.equal(res.status, 200);
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(ev[1].choices[0].delta.content, 'tok0 ');
    const err = ev.at(-2).error;
    assert.equal(err.code, 'provider_error');
    assert.match(err.message, /overloaded.*UNAVAILABLE/);
});

test('embeddings: batchEmbedContents, float and base64, usage estimated from the input', T, async () => {
    await mockG.clear();
    const res = await h.post(gw, '/v1/embeddings', key,
        { model: 'gemini-embed', input: ['ab', 'cde'], dimensions: 4 });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(res.json, {
        object: 'list',
        data: [
            { object: 'embedding', index: 0, embedding: [0.11, 0.12, 0.13, 0.14] },
            { object: 'embedding', index: 1, embedding: [0.21, 0.22, 0.23, 0.24] },
        ],
        model: 'gemini-embed',
        usage: { prompt_tokens: 5, total_tokens: 5 },
    });
    const rec = await lastGemini();
    assert.equal(rec.path, '/v1beta/models/gemini-embedding-001:batchEmbedContents');
    assertGoogleAuth(rec);
    assert.deepEqual(JSON.parse(rec.body), {
        requests: ['ab', 'cde'].map((t) => ({
            model: 'models/gemini-embedding-001', content: { parts: [{ text: t }] }, outputDimensionality: 4,
        })),
    });
    const b = await h.post(gw, '/v1/embeddings', key,
        { model: 'gemini-embed', input: 'x', encoding_format: 'base64' });
    assert.equal(b.status, 200, b.text);
    const raw = Buffer.from(b.json.data[0].embedding, 'base64');
    const f = Array.from({ length: raw.length / 4 }, (_, i) => raw.readFloatLE(4 * i));
    assert.deepEqual(f, [0.11, 0.12, 0.13, 0.14].map(Math.fround));
    // 5 tokens at 0.15 USD / 1M
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost')), 750n);
    // the ledger says the count was the gateway's, not Google's
    const rid = res.headers.get('x-request-id');
    const r = await h.eventually(async () => {
        const rows = await h.sqliteRows(gw, `SELECT estimated FROM usage WHERE request_id = '${rid}'`);
        return rows === null || rows.length > 0 ? { rows } : null;
    }, h.scaled(5000));
    assert.ok(r.value, 'no usage row');
    if (r.value.rows) assert.deepEqual(r.value.rows, [{ estimated: 1 }]);
});

test('a field Gemini cannot honour is refused by name, and nothing goes upstream', T, async () => {
    await mockG.clear();
    for (const [extra, param] of [[{ logprobs: true }, 'logprobs'], [{ n: 2 }, 'n'],
        [{ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x.test/img' } }] }] }, 'messages']]) {
        const res = await h.post(gw, '/v1/chat/completions', key,
            { model: 'gemini-flash', messages: user('x'), ...extra });
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
    }
    const e = await h.post(gw, '/v1/embeddings', key, { model: 'gemini-embed', input: [[1, 2]] });
    h.assertError(assert, e, 400, 'invalid_request_error', 'invalid_parameter', 'input');
    assert.equal((await mockG.requests()).length, 0);
});
