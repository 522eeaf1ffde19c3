// The `anthropic` provider kind (issue 10): OpenAI chat clients served from Anthropic's Messages
// API (https://docs.claude.com/en/api/messages) through the translating adapter
// (src/providers/anthropic.c), against the mock upstream's Anthropic personality
// (tests/mock/README.md). What goes upstream is read back from the mock's recording; what the
// client gets is checked chunk by chunk; usage with cache reads and writes is billed exactly.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const ANT_KEY = 'sk-ant-test-key-0123456789';
// USD per 1M tokens; every prompt kind priced apart so a wrong mapping shows in the cost
const PRICING = { input: 3, output: 15, cached_input: 0.3, cache_write: 3.75, cache_write_1h: 6 };
let gw, key, billingKey, ant, down;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 2,
        config: (mocks) => {
            const root = (m) => `http://127.0.0.1:${m.port}`; // the mock serves /v1/messages at its root
            const dep = (provider, model, extra = {}) => ({ provider, model, ...extra });
            return {
                providers: {
                    anth: { kind: 'anthropic', base_url: root(mocks[0]), api_key: ANT_KEY, timeout_ms: 10000 },
                    // a second Anthropic upstream, failing on demand (its instance fail_status)
                    anthdown: { kind: 'anthropic', base_url: root(mocks[1]), api_key: ANT_KEY, timeout_ms: 10000 },
                },
                models: {
                    'claude-t': { pricing: PRICING, max_output_tokens: 2048,
                        deployments: [dep('anth', 'claude-up-1')] },
                    // fails over to an OpenAI deployment of the same model name
                    'claude-fo': { pricing: PRICING, deployments: [
                        dep('anthdown', 'claude-up-down', { priority: 1 }),
                        dep('mock', 'gpt-fo-upstream', { priority: 2 })] },
                    'claude-fo429': { pricing: PRICING, deployments: [
                        dep('anthdown', 'claude-up-down', { priority: 1 }),
                        dep('mock', 'gpt-fo-upstream', { priority: 2 })] },
                    'claude-only': { pricing: PRICING, deployments: [dep('anth', 'claude-up-only')] },
                },
            };
        },
        setup: async (g) => {
            const account = await g.createAccount('anth', 100);
            key = await g.createKey(account);
            billingKey = await g.createKey(account, { type: 'billing' });
        },
    });
    ant = gw.mocks[0];
    down = gw.mocks[1];
});
after(async () => { await gw?.stop(); });

const chat = (body, opts) => h.post(gw, '/v1/chat/completions', key, body, opts);

async function lastUpstream(m = ant) {
    const reqs = await m.requestsTo('/v1/messages');
    assert.ok(reqs.length > 0, 'the mock received no /v1/messages request');
    return reqs[reqs.length - 1];
}

// x-api-key and anthropic-version sent; no Authorization; the client's key never upstream
function assertAnthropicAuth(rec) {
    assert.equal(h.recordedHeader(rec, 'x-api-key'), ANT_KEY);
    assert.equal(h.recordedHeader(rec, 'anthropic-version'), '2023-06-01');
    assert.equal(h.recordedHeader(rec, 'authorization'), undefined);
    for (const [k, v] of Object.entries(rec.headers ?? {})) {
        assert.ok(!String(v).includes(key), `the client's key leaked upstream in ${k}`);
    }
    assert.ok(!rec.body.includes(key), "the client's key leaked into the body");
}

// The expected cost in nano-dollars of Anthropic's usage at PRICING (markup 0), rounded once.
function costOf({ input = 0, cached = 0, w5m = 0, w1h = 0, output = 0 }) {
    const p = (usd) => h.usdToNano(String(usd));
    const sum = BigInt(input) * p(PRICING.input) + BigInt(cached) * p(PRICING.cached_input) +
        BigInt(w5m) * p(PRICING.cache_write) + BigInt(w1h) * p(PRICING.cache_write_1h) +
        BigInt(output) * p(PRICING.output);
    return (sum + 500000n) / 1000000n;
}

test('plain chat: system prompt, headers, the translated body, the answer and its usage', T, async () => {
    await ant.clear();
    const res = await chat({
        model: 'claude-t', temperature: 0.7, max_tokens: 100,
        messages: [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'hello there' }],
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'anth');
    const rec = await lastUpstream();
    assertAnthropicAuth(rec);
    assert.equal(rec.body, '{"model":"claude-up-1","max_tokens":100,"system":[{"type":"text","text":' +
        '"Be brief."}],"messages":[{"role":"user","content":"hello there"}],"temperature":0.7}');
    const j = res.json;
    assert.equal(j.object, 'chat.completion');
    assert.equal(j.model, 'claude-t');
    assert.match(j.id, /^chatcmpl-/);
    assert.deepEqual(j.choices, [{ index: 0, message: { role: 'assistant', content: 'tok0 tok1 tok2 ',
        refusal: null }, logprobs: null, finish_reason: 'stop' }]);
    // the mock counts the prompt's words (4) and one output token per text token (3)
    assert.deepEqual(j.usage, { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7,
        prompt_tokens_details: { cached_tokens: 0 }, completion_tokens_details: { reasoning_tokens: 0 } });
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost')), costOf({ input: 4, output: 3 }));
});

test('multi-turn: alternating turns, consecutive user messages merged; max_tokens from the model', T, async () => {
    await ant.clear();
    const res = await chat({
        model: 'claude-t',
        messages: [
            { role: 'user', content: 'one' }, { role: 'assistant', content: 'two' },
            { role: 'user', content: 'three' }, { role: 'user', content: [{ type: 'text', text: 'four' }] },
        ],
    });
    assert.equal(res.status, 200, res.text);
    const up = JSON.parse((await lastUpstream()).body);
    assert.equal(up.max_tokens, 2048, "the model's max_output_tokens");
    assert.deepEqual(up.messages, [
        { role: 'user', content: 'one' }, { role: 'assistant', content: 'two' },
        { role: 'user', content: [{ type: 'text', text: 'three' }, { type: 'text', text: 'four' }] },
    ]);
});

test('streaming: the exact chunk sequence, role first, finish, usage chunk with cost, [DONE]', T, async () => {
    await ant.clear();
    const res = await chat({
        model: 'claude-t', stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'stream please' }], mock: { input_tokens: 7 },
    });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const up = JSON.parse((await lastUpstream()).body);
    assert.equal(up.stream, true);
    assert.equal(up.stream_options, undefined, 'stream_options is OpenAI\'s, not sent');
    assert.equal(h.recordedHeader(await lastUpstream(), 'accept'), 'text/event-stream');
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]');
    const chunks = ev.slice(0, -1);
    const id = chunks[0].id;
    for (const c of chunks) {
        assert.equal(c.id, id);
        assert.equal(c.object, 'chat.completion.chunk');
        assert.equal(c.model, 'claude-t');
    }
    const shapes = chunks.map((c) => (c.choices.length ? { delta: c.choices[0].delta, finish: c.choices[0].finish_reason }
        : { usage: c.usage }));
    const cost = Number(h.nanoToUsd(costOf({ input: 7, output: 3 })));
    assert.deepEqual(shapes, [
        { delta: { role: 'assistant', content: '' }, finish: null },
        { delta: { content: 'tok0 ' }, finish: null },
        { delta: { content: 'tok1 ' }, finish: null },
        { delta: { content: 'tok2 ' }, finish: null },
        { delta: {}, finish: 'stop' },
        { usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10, prompt_tokens_details: { cached_tokens: 0 },
            completion_tokens_details: { reasoning_tokens: 0 }, cost } },
    ]);
    // without include_usage: no usage chunk, still billed
    const res2 = await chat({ model: 'claude-t', stream: true, messages: [{ role: 'user', content: 's' }] });
    const ev2 = h.sseEvents(res2.text);
    assert.equal(ev2.filter((e) => e !== '[DONE]' && !e.choices.length).length, 0);
    assert.equal(h.streamContent(ev2.slice(0, -1)), 'tok0 tok1 tok2 ');
});

const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];

test('tool call round trip, not streamed: tool_use -> tool_calls, tool result -> tool_result', T, async () => {
    await ant.clear();
    const res = await chat({
        model: 'claude-t', tools: TOOLS, tool_choice: 'auto',
        messages: [{ role: 'user', content: 'Weather in Paris?' }],
        mock: { tool_call: { name: 'get_weather', input: { city: 'Paris' } } },
    });
    assert.equal(res.status, 200, res.text);
    let up = JSON.parse((await lastUpstream()).body);
    assert.deepEqual(up.tools, [{ name: 'get_weather', description: 'Weather of a city',
        input_schema: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } }]);
    assert.deepEqual(up.tool_choice, { type: 'auto' });
    const msg = res.json.choices[0].message;
    assert.equal(res.json.choices[0].finish_reason, 'tool_calls');
    assert.equal(msg.content, 'tok0 tok1 tok2 ');
    assert.equal(msg.tool_calls.length, 1);
    const call = msg.tool_calls[0];
    assert.match(call.id, /^toolu_mock_/);
    assert.deepEqual({ ...call, id: undefined }, { id: undefined, type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' } });

    // the client runs the tool and sends the result back
    const res2 = await chat({
        model: 'claude-t', tools: TOOLS,
        messages: [{ role: 'user', content: 'Weather in Paris?' }, msg,
            { role: 'tool', tool_call_id: call.id, content: 'sunny, 21C' }],
    });
    assert.equal(res2.status, 200, res2.text);
    assert.equal(res2.json.choices[0].finish_reason, 'stop');
    up = JSON.parse((await lastUpstream()).body);
    assert.deepEqual(up.messages, [
        { role: 'user', content: 'Weather in Paris?' },
        { role: 'assistant', content: [{ type: 'text', text: 'tok0 tok1 tok2 ' },
            { type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'Paris' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny, 21C' }] },
    ]);
});

test('tool call streamed: index, id and name first, arguments in pieces, finish tool_calls', T, async () => {
    const res = await chat({
        model: 'claude-t', stream: true, tools: TOOLS, tool_choice: { type: 'function', function: { name: 'get_weather' } },
        parallel_tool_calls: false,
        messages: [{ role: 'user', content: 'Weather?' }],
        mock: { chunks: 0, tool_call: { name: 'get_weather', input: { city: 'Paris' } } },
    });
    assert.equal(res.status, 200, res.text);
    const up = JSON.parse((await lastUpstream()).body);
    assert.deepEqual(up.tool_choice, { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true });
    const chunks = h.sseEvents(res.text).slice(0, -1);
    const tc = chunks.filter((c) => c.choices[0]?.delta?.tool_calls).map((c) => c.choices[0].delta.tool_calls[0]);
    assert.ok(tc.length >= 2, res.text);
    assert.equal(tc[0].index, 0);
    assert.match(tc[0].id, /^toolu_mock_/);
    assert.equal(tc[0].type, 'function');
    assert.equal(tc[0].function.name, 'get_weather');
    assert.ok(tc.every((t) => t.index === 0));
    assert.equal(tc.map((t) => t.function.arguments).join(''), '{"city":"Paris"}');
    assert.equal(chunks.at(-1).choices[0].finish_reason, 'tool_calls');
});

test('reasoning_effort -> thinking; thinking -> reasoning_content, streamed and not', T, async () => {
    await ant.clear();
    const body = { model: 'claude-t', max_tokens: 2000, reasoning_effort: 'low',
        messages: [{ role: 'user', content: 'think' }], mock: { thinking: true } };
    const res = await chat(body);
    assert.equal(res.status, 200, res.text);
    const up = JSON.parse((await lastUpstream()).body);
    assert.deepEqual(up.thinking, { type: 'enabled', budget_tokens: 1024 });
    assert.equal(up.max_tokens, 2000);
    assert.equal(res.json.choices[0].message.reasoning_content, 'think0 think1 ');
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    const s = await chat({ ...body, stream: true });
    const chunks = h.sseEvents(s.text).slice(0, -1);
    assert.equal(chunks.map((c) => c.choices[0]?.delta?.reasoning_content ?? '').join(''), 'think0 think1 ');
    assert.equal(h.streamContent(chunks), 'tok0 tok1 tok2 ');
    // a budget that cannot fit under max_tokens is refused, naming the field
    const r = await chat({ ...body, max_tokens: 500 });
    h.assertError(assert, r, 400, 'invalid_request_error', 'invalid_parameter', 'reasoning_effort');
});

test('stop sequences and the length limit', T, async () => {
    await ant.clear();
    const res = await chat({ model: 'claude-t', stop: ['END', 'STOP'],
        messages: [{ role: 'user', content: 'x' }], mock: { stop_sequence: 'END' } });
    assert.equal(res.status, 200, res.text);
    assert.deepEqual(JSON.parse((await lastUpstream()).body).stop_sequences, ['END', 'STOP']);
    assert.equal(res.json.choices[0].finish_reason, 'stop');
    const r2 = await chat({ model: 'claude-t', stop: 'END', max_tokens: 2, messages: [{ role: 'user', content: 'x' }] });
    assert.deepEqual(JSON.parse((await lastUpstream()).body).stop_sequences, ['END']);
    assert.equal(r2.json.choices[0].finish_reason, 'length');
    assert.equal(r2.json.choices[0].message.content, 'tok0 tok1 ');
    assert.equal(r2.json.usage.completion_tokens, 2);
});

test('usage with cache reads and 5m/1h writes is billed exactly, in the answer and the ledger', T, async () => {
    const mock = { input_tokens: 100, cache_read_input_tokens: 1000, cache_creation_input_tokens: 300,
        cache_creation_1h_input_tokens: 200, output_tokens: 50 };
    const want = costOf({ input: 100, cached: 1000, w5m: 100, w1h: 200, output: 50 });
    for (const stream of [false, true]) {
        const res = await chat({ model: 'claude-t', stream, stream_options: stream ? { include_usage: true } : undefined,
            messages: [{ role: 'user', content: [{ type: 'text', text: 'big prefix', cache_control: { type: 'ephemeral' } }] }],
            mock });
        assert.equal(res.status, 200, res.text);
        const up = JSON.parse((await lastUpstream()).body);
        assert.deepEqual(up.messages[0].content, [{ type: 'text', text: 'big prefix', cache_control: { type: 'ephemeral' } }],
            'cache_control reaches Anthropic');
        const usage = stream ? h.sseEvents(res.text).at(-2).usage : res.json.usage;
        assert.equal(usage.prompt_tokens, 1400);
        assert.equal(usage.prompt_tokens_details.cached_tokens, 1000);
        assert.equal(usage.completion_tokens, 50);
        if (stream) {
            assert.equal(h.usdToNano(usage.cost), want);
        } else {
            assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost')), want);
        }
        const { value: row } = await h.eventually(async () => {
            const rows = await h.usageRows(gw, billingKey);
            return rows.find((r) => r.requestId === res.headers.get('x-request-id'));
        }, h.scaled(5000));
        assert.ok(row, 'a usage row for the request');
        assert.equal(row.provider, 'anth');
        assert.equal(row.promptTokens, 1400);
        assert.equal(row.cacheWriteTokens, 300);
        assert.equal(row.cacheWrite1hTokens, 200);
        assert.equal(row.completionTokens, 50);
        assert.equal(row.reasoningTokens, 0);
        assert.equal(h.usdToNano(row.chargedAmount), want);
    }
});

test('529 overloaded is retried, then the request fails over to the OpenAI deployment', T, async () => {
    await down.config({ fail_status: 529 });
    try {
        await down.clear();
        await ant.clear(); // the harness's OpenAI provider `mock` is the same mock upstream
        const res = await chat({ model: 'claude-fo', messages: [{ role: 'user', content: 'hi' }] });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers.get('x-modelswitch-provider'), 'mock');
        assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
        assert.ok((await down.requestsTo('/v1/messages')).length >= 1, 'Anthropic was tried first');
        const oa = await ant.requestsTo('/chat/completions');
        assert.equal(oa.length, 1, 'the OpenAI deployment answered');
        assert.equal(JSON.parse(oa[0].body).model, 'gpt-fo-upstream');
    } finally {
        await down.config({ fail_status: 0 });
    }
    // with one deployment only: retried there (max_attempts, 3 by default), then 502 with the message
    await ant.clear();
    const res = await chat({ model: 'claude-only', messages: [{ role: 'user', content: 'hi' }],
        mock: { status: 529 } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /HTTP 529/);
    assert.equal((await ant.requestsTo('/v1/messages')).length, 3);
});

test('429 from Anthropic fails over; with nowhere else to go, 429 after the retries', T, async () => {
    await down.config({ fail_status: 429, retry_after: 1 });
    try {
        const res = await chat({ model: 'claude-fo429', messages: [{ role: 'user', content: 'hi' }] });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers.get('x-modelswitch-provider'), 'mock');
    } finally {
        await down.config({ fail_status: 0, retry_after: 0 });
    }
    await ant.clear();
    const res = await chat({ model: 'claude-only', messages: [{ role: 'user', content: 'hi' }],
        mock: { status: 429, retry_after: 1 } });
    h.assertError(assert, res, 429, 'rate_limit_error', 'rate_limit_exceeded');
    assert.ok((await ant.requestsTo('/v1/messages')).length >= 2, 'retried after retry-after');
});

test('400 from Anthropic is not retried; its message reaches the client with the key redacted', T, async () => {
    await ant.clear();
    const res = await chat({ model: 'claude-t', messages: [{ role: 'user', content: 'x' }],
        mock: { status: 400, error_message: `invalid x-api-key ${ANT_KEY}` } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /invalid x-api-key \[redacted\]/);
    assert.ok(!res.text.includes(ANT_KEY));
    assert.equal((await ant.requestsTo('/v1/messages')).length, 1);
});

test('mid-stream overloaded_error: an in-band error event, then [DONE]', T, async () => {
    const res = await chat({ model: 'claude-t', stream: true, messages: [{ role: 'user', content: 'x' }],
        mock: { stream_error_after: 1 } });
    assert.equal(res.status, 200, res.text);
    const ev = h.sseEvents(res.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.deepEqual(ev.at(-2), { error: { message: 'Overloaded', type: 'upstream_error', code: 'provider_error', param: null } });
    assert.equal(h.streamContent(ev.slice(0, -2)), 'tok0 ');
});

test('a field Anthropic cannot take: 400 naming it, nothing upstream', T, async () => {
    await ant.clear();
    const cases = [
        [{ n: 2 }, 'n'], [{ logprobs: true }, 'logprobs'], [{ presence_penalty: 0.5 }, 'presence_penalty'],
        [{ temperature: 1.5 }, 'temperature'], [{ response_format: { type: 'json_object' } }, 'response_format'],
        [{ messages: [{ role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function',
            function: { name: 'f', arguments: '{oops' } }] }] }, 'messages'],
    ];
    for (const [extra, param] of cases) {
        const res = await chat({ model: 'claude-t', messages: [{ role: 'user', content: 'x' }], ...extra });
        h.assertError(assert, res, 400, 'invalid_request_error', 'invalid_parameter', param);
        assert.match(res.json.error.message, /Anthropic|JSON object/);
    }
    assert.equal((await ant.requestsTo('/v1/messages')).length, 0);
    // harmless OpenAI fields are accepted and not sent
    const ok = await chat({ model: 'claude-t', messages: [{ role: 'user', content: 'x' }], n: 1, seed: 3,
        store: false, metadata: { a: 'b' }, user: 'u-42' });
    assert.equal(ok.status, 200, ok.text);
    const up = JSON.parse((await lastUpstream()).body);
    for (const f of ['n', 'seed', 'store']) assert.equal(up[f], undefined, f);
    assert.deepEqual(up.metadata, { user_id: 'u-42' });
});

test('max_tokens, which Anthropic requires, falls back to billing.default_max_output_tokens', T, async () => {
    let k;
    const g = await h.startGatewayWithMocks({
        mocks: 1,
        config: (mocks) => ({
            billing: { default_max_output_tokens: 777 },
            providers: {
                anth: { kind: 'anthropic', base_url: `http://127.0.0.1:${mocks[0].port}`, api_key: ANT_KEY },
            },
            models: { 'claude-nocap': { pricing: PRICING, deployments: [{ provider: 'anth', model: 'up' }] } },
        }),
        setup: async (gg) => { ({ key: k } = await gg.newProxyKey(100)); },
    });
    try {
        const res = await h.post(g, '/v1/chat/completions', k,
            { model: 'claude-nocap', messages: [{ role: 'user', content: 'hi' }] });
        assert.equal(res.status, 200, res.text);
        const reqs = await g.mocks[0].requestsTo('/v1/messages');
        assert.equal(JSON.parse(reqs[reqs.length - 1].body).max_tokens, 777,
            'the bound the hold was placed for');
    } finally {
        await g.stop();
    }
});
