// POST /v1/responses passed through to providers that speak OpenAI's Responses API (`responses:
// true` on an openai or azure provider; src/providers/openai_responses.c), against the mock
// upstream's Responses personality (tests/mock/README.md). What goes upstream is read back from
// the mock's recording and compared with what the client sent; what the client gets is compared
// with what the mock answers to the same body sent to it directly (only the ids its counters
// make, the times and the gateway's cost differ). Usage is billed exactly, row for row; failures
// before the first byte are retried and fail over (to a chat provider, translated, in the same
// request), after it they are in-band and continue the provider's own stream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
// USD per 1M tokens; cache reads priced apart so a wrong mapping shows in the charge
const PRICING = { input: 2, output: 8, cached_input: 0.5 };
const OAI_KEY = 'sk-rsp-test-0123456789';
const AZ_KEY = 'az-rsp-key-0123456789';
let gw, key, m0, m1;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 2,
        config: (mocks) => {
            const [a, b] = mocks;
            const dep = (provider, model, extra = {}) => ({ provider, model, ...extra });
            return {
                providers: {
                    oair: { kind: 'openai', base_url: `${a.url}/v1`, api_key: OAI_KEY, responses: true, timeout_ms: 10000 },
                    // the same upstream without `responses` (the default off OpenAI's own URL)
                    oaic: { kind: 'openai', base_url: `${a.url}/v1`, api_key: OAI_KEY, timeout_ms: 10000 },
                    azr: { kind: 'azure', base_url: a.url, api_key: AZ_KEY, responses: true, timeout_ms: 10000 },
                    // a second Responses upstream, failing on demand (its instance fail_status)
                    downr: { kind: 'openai', base_url: `${b.url}/v1`, api_key: OAI_KEY, responses: true, timeout_ms: 10000 },
                },
                models: {
                    'gpt-r': { pricing: PRICING, max_output_tokens: 1024, deployments: [dep('oair', 'gpt-up-r')] },
                    'gpt-c': { pricing: PRICING, deployments: [dep('oaic', 'gpt-up-c')] },
                    'gpt-az': { pricing: PRICING, deployments: [dep('azr', 'az-deploy-r')] },
                    'gpt-fo': { pricing: PRICING, deployments: [
                        dep('downr', 'gpt-up-down', { priority: 1 }), dep('oaic', 'gpt-up-fo', { priority: 2 })] },
                },
            };
        },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
    [m0, m1] = gw.mocks;
});
after(async () => { await gw?.stop(); });

const responses = (body, opts) => h.post(gw, '/v1/responses', key, body, opts);

async function lastTo(m, suffix) {
    const reqs = await m.requestsTo(suffix);
    assert.ok(reqs.length > 0, `the mock received no ${suffix} request`);
    return reqs.at(-1);
}

// What the mock answers to body sent to it directly (the same path as the gateway's upstream).
async function direct(m, p, body) {
    const res = await fetch(m.url + p, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    return res.text();
}

// The ids the mock's counter makes and the times it stamps: the only bytes that differ between
// two answers of the mock to the same body.
const normalize = (s) => s.replace(/(resp|msg|fc)_mock_\d+/g, '$1_mock_N').replace(/call_resp_mock_\d+/g, 'call_resp_mock_N')
    .replace(/"created_at":\d+/g, '"created_at":T');

// SSE events as {event, data} (data parsed), in order.
function typedEvents(text) {
    return text.split('\n\n').filter((b) => b.trim()).map((b) => {
        const ev = /^event: (.*)$/m.exec(b)?.[1];
        const data = /^data: (.*)$/m.exec(b)?.[1];
        return { event: ev, data: JSON.parse(data), raw: b };
    });
}

// The charge in nano-dollars of the five counts at PRICING (markup 0), rounded once.
function costOf({ input = 0, cached = 0, output = 0 }) {
    const p = (usd) => h.usdToNano(String(usd));
    const sum = BigInt(input) * p(PRICING.input) + BigInt(cached) * p(PRICING.cached_input) +
        BigInt(output) * p(PRICING.output);
    return (sum + 500000n) / 1000000n;
}

// The ledger row of a request, once the ledger writer has committed it.
async function ledgerRow(rid) {
    const r = await h.eventually(async () => {
        const rows = await h.sqliteRows(gw, 'SELECT model, provider, prompt_tokens, cached_tokens, ' +
            'cache_write_tokens, cache_write_1h_tokens, completion_tokens, reasoning_tokens, charged_nusd, ' +
            `status, estimated FROM usage WHERE request_id = '${rid.replace(/'/g, '')}'`);
        return rows?.length === 1 ? rows[0] : null;
    }, h.scaled(5000));
    assert.ok(r.value, `no ledger row for ${rid}`);
    return r.value;
}

function assertNoClientKey(rec) {
    for (const [k, v] of Object.entries(rec.headers ?? {})) {
        assert.ok(!String(v).includes(key), `the client's key leaked upstream in ${k}`);
    }
}

// A body with what only the Responses API has (built-in tools, include, reasoning summaries),
// fields the hub rewrite refuses (top_logprobs, conversation), an unknown field, odd white space
// and escapes: all of it must reach the provider byte for byte.
const RICH = (model, extra = '') => `{ "model" : "${model}",\n  "input": [{"role":"user","content":[{"type":"input_text",` +
    `"text":"h\\u00e9llo \u00e9t\u00e9"}]}], "instructions":"be brief",\n "tools":[{"type":"web_search"}],` +
    ` "include":["reasoning.encrypted_content"], "reasoning":{"effort":"low","summary":"auto"},` +
    ` "top_logprobs": 2, "conversation": null, "store": false, "x_custom": {"a":[1,2.50,1e3]}${extra} }`;

test('non-stream: the body passes through with only model spliced; the answer as it came; usage billed exactly', T, async () => {
    await m0.clear();
    const raw = RICH('gpt-r', ', "mock":{"prompt_tokens":100,"cached_tokens":60,"reasoning_tokens":7,"chunks":2}');
    const res = await responses(raw);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.headers.get('x-modelswitch-provider'), 'oair');
    const rec = await lastTo(m0, '/responses');
    assert.equal(rec.path, '/v1/responses');
    assert.equal(rec.body, raw.replace('"gpt-r"', '"gpt-up-r"'), 'only model differs');
    assert.equal(h.recordedHeader(rec, 'authorization'), `Bearer ${OAI_KEY}`);
    assert.equal(h.recordedHeader(rec, 'content-type'), 'application/json');
    assertNoClientKey(rec);
    // the answer is the provider's, byte for byte
    const want = await direct(m0, '/v1/responses', rec.body);
    assert.equal(normalize(res.text), normalize(want));
    assert.match(res.json.id, /^resp_mock_\d+$/);
    assert.equal(res.json.model, 'gpt-up-r');
    // input 100 with 60 cached, output 2 text + 7 reasoning
    const cost = costOf({ input: 40, cached: 60, output: 9 });
    assert.equal(h.usdToNano(res.headers.get('x-modelswitch-cost')), cost);
    const row = await ledgerRow(res.headers.get('x-request-id'));
    assert.deepEqual(row, { model: 'gpt-r', provider: 'oair', prompt_tokens: 100, cached_tokens: 60,
        cache_write_tokens: 0, cache_write_1h_tokens: 0, completion_tokens: 9, reasoning_tokens: 7,
        charged_nusd: Number(cost), status: 200, estimated: 0 });
});

test('stream: typed events pass through as they came; the terminal event carries the cost; billed exactly', T, async () => {
    await m0.clear();
    const raw = RICH('gpt-r', ', "stream": true, "mock":{"prompt_tokens":50,"cached_tokens":20,"reasoning_tokens":3,' +
        '"tool_call":{"name":"get_weather","args":{"city":"Oslo"}}}');
    const res = await responses(raw);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type'), /^text\/event-stream/);
    const rec = await lastTo(m0, '/responses');
    assert.equal(rec.body, raw.replace('"gpt-r"', '"gpt-up-r"'));
    assert.equal(h.recordedHeader(rec, 'accept'), 'text/event-stream');
    const got = typedEvents(res.text);
    const want = typedEvents(await direct(m0, '/v1/responses', rec.body));
    assert.equal(got.length, want.length);
    // every event but the terminal one byte for byte, its event: line included
    for (let i = 0; i < got.length - 1; i++) assert.equal(normalize(got[i].raw), normalize(want[i].raw), `event ${i}`);
    got.forEach((e, i) => {
        assert.equal(e.event, e.data.type);
        assert.equal(e.data.sequence_number, i);
    });
    assert.ok(got.some((e) => e.event === 'response.function_call_arguments.delta'));
    const end = got.at(-1);
    assert.equal(end.event, 'response.completed');
    const cost = costOf({ input: 30, cached: 20, output: 3 + 2 + 3 });
    assert.equal(h.usdToNano(String(end.data.response.usage.cost)), cost);
    delete end.data.response.usage.cost;
    assert.equal(normalize(JSON.stringify(end.data)), normalize(JSON.stringify(want.at(-1).data)));
    const row = await ledgerRow(res.headers.get('x-request-id'));
    assert.deepEqual([row.prompt_tokens, row.cached_tokens, row.completion_tokens, row.reasoning_tokens,
        row.charged_nusd, row.status, row.estimated], [50, 20, 8, 3, Number(cost), 200, 0]);
});

test('response.incomplete ends a stream cut by max_output_tokens, with its usage and the cost', T, async () => {
    const res = await responses({ model: 'gpt-r', input: 'hi', stream: true, max_output_tokens: 2, mock: { chunks: 5 } });
    assert.equal(res.status, 200, res.text);
    const ev = typedEvents(res.text);
    const end = ev.at(-1);
    assert.equal(end.event, 'response.incomplete');
    assert.match(end.data.response.id, /^resp_mock_/, "the provider's own event");
    assert.deepEqual(end.data.response.incomplete_details, { reason: 'max_output_tokens' });
    assert.equal(end.data.sequence_number, ev.length - 1);
    const cost = costOf({ input: 11, output: 2 });
    assert.equal(h.usdToNano(String(end.data.response.usage.cost)), cost);
    const row = await ledgerRow(res.headers.get('x-request-id'));
    assert.equal(row.charged_nusd, Number(cost));
});

test('Azure: {base_url}/openai/v1/responses with api-key, the deployment as model; its chat keeps the deployment path', T, async () => {
    await m0.clear();
    const res = await responses({ model: 'gpt-az', input: 'hi', mock: { chunks: 1 } });
    assert.equal(res.status, 200, res.text);
    const rec = await lastTo(m0, '/responses');
    assert.equal(rec.path, '/openai/v1/responses');
    assert.equal(rec.query, '');
    assert.equal(h.recordedHeader(rec, 'api-key'), AZ_KEY);
    assert.equal(h.recordedHeader(rec, 'authorization'), undefined);
    assert.equal(JSON.parse(rec.body).model, 'az-deploy-r');
    assert.equal(res.json.model, 'az-deploy-r', "the provider's answer as it came");
    const chat = await h.post(gw, '/v1/chat/completions', key, { model: 'gpt-az', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 200, chat.text);
    const crec = await lastTo(m0, '/chat/completions');
    assert.equal(crec.path, '/openai/deployments/az-deploy-r/chat/completions');
});

test('chat and Anthropic clients of the same provider keep chat completions', T, async () => {
    await m0.clear();
    const chat = await h.post(gw, '/v1/chat/completions', key, {
        model: 'gpt-r', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 200, chat.text);
    const msgs = await h.post(gw, '/v1/messages', undefined, {
        model: 'gpt-r', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
    { headers: { 'x-api-key': key, 'anthropic-version': '2023-06-01' } });
    assert.equal(msgs.status, 200, msgs.text);
    assert.equal(msgs.json.type, 'message');
    const recs = await m0.requests();
    assert.deepEqual(recs.map((r) => r.path), ['/v1/chat/completions', '/v1/chat/completions']);
    assert.equal(JSON.parse(recs[0].body).stream_options.include_usage, true, 'the chat pass-through as before');
    assert.equal(JSON.parse(recs[1].body).model, 'gpt-up-r');
});

test('fields the rewrite refuses reach a Responses provider; a chat provider answers 400 naming them', T, async () => {
    for (const [field, value] of [['top_logprobs', 3], ['prompt', { id: 'pmpt_1' }], ['conversation', 'conv_1']]) {
        await m0.clear();
        const ok = await responses({ model: 'gpt-r', input: 'hi', [field]: value });
        assert.equal(ok.status, 200, `${field}: ${ok.text}`);
        assert.deepEqual(JSON.parse((await lastTo(m0, '/responses')).body)[field], value);
        const no = await responses({ model: 'gpt-c', input: 'hi', [field]: value });
        h.assertError(assert, no, 400, 'invalid_request_error', 'invalid_parameter', field);
    }
    // built-in tools, include and reasoning.summary: through to gpt-r, left out for gpt-c
    await m0.clear();
    const body = { model: 'gpt-c', input: 'hi', tools: [{ type: 'web_search' }], include: ['reasoning.encrypted_content'],
        reasoning: { effort: 'low', summary: 'auto' } };
    const res = await responses(body);
    assert.equal(res.status, 200, res.text);
    const up = JSON.parse((await lastTo(m0, '/chat/completions')).body);
    assert.equal(up.tools, undefined);
    assert.equal(up.include, undefined);
    assert.equal(up.reasoning_effort, 'low');
});

test('upstream errors: a 4xx is not retried (502 with the provider message), a 5xx is retried, a 429 stays 429', T, async () => {
    await m0.clear();
    let res = await responses({ model: 'gpt-r', input: 'hi', mock: { status: 400, error_message: `bad thing ${OAI_KEY}` } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.match(res.json.error.message, /bad thing/);
    assert.ok(!res.text.includes(OAI_KEY), 'the provider key is redacted');
    assert.equal((await m0.requestsTo('/responses')).length, 1);
    await m0.clear();
    res = await responses({ model: 'gpt-r', input: 'hi', stream: true, mock: { status: 500 } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.ok((await m0.requestsTo('/responses')).length > 1, 'retried');
    res = await responses({ model: 'gpt-r', input: 'hi', mock: { status: 429, retry_after: 0 } });
    h.assertError(assert, res, 429, 'rate_limit_error', 'rate_limit_exceeded');
    res = await responses({ model: 'gpt-r', input: 'hi', mock: { invalid_json: true } });
    h.assertError(assert, res, 502, 'upstream_error', 'provider_error');
    assert.equal(res.headers.get('x-should-retry'), 'false');
});

test('fail-over in one request: a Responses provider down, the chat provider answers translated', T, async () => {
    await m1.config({ fail_status: 503 });
    try {
        await m0.clear();
        await m1.clear();
        const res = await responses({ model: 'gpt-fo', input: 'hi', instructions: 'be brief' });
        assert.equal(res.status, 200, res.text);
        assert.equal(res.headers.get('x-modelswitch-provider'), 'oaic');
        assert.equal(res.json.object, 'response');
        assert.doesNotMatch(res.json.id, /mock/, "the gateway's own response, encoded from chat");
        assert.equal(res.json.output_text ?? res.json.output[0].content[0].text, 'tok0 tok1 tok2 ');
        const down = await lastTo(m1, '/responses');
        assert.equal(JSON.parse(down.body).model, 'gpt-up-down');
        const up = JSON.parse((await lastTo(m0, '/chat/completions')).body);
        assert.equal(up.model, 'gpt-up-fo');
        assert.deepEqual(up.messages[0], { role: 'system', content: 'be brief' });
        // streamed: the same, before the first byte
        const s = await responses({ model: 'gpt-fo', input: 'hi', stream: true });
        assert.equal(s.status, 200, s.text);
        const ev = typedEvents(s.text);
        assert.equal(ev[0].event, 'response.created');
        assert.equal(ev.at(-1).event, 'response.completed');
        assert.ok(ev.at(-1).data.response.usage.cost > 0);
        // a field only the rewrite refuses: answered when the attempt that needs the rewrite comes
        const r = await responses({ model: 'gpt-fo', input: 'hi', top_logprobs: 2 });
        h.assertError(assert, r, 400, 'invalid_request_error', 'invalid_parameter', 'top_logprobs');
    } finally {
        await m1.config({ fail_status: 0 });
    }
});

test('a stream cut mid-way: the provider events, then an error and response.failed that continue them; billed by estimate', T, async () => {
    const res = await responses({ model: 'gpt-r', input: 'hi', stream: true, mock: { chunks: 4, cut_after: 2 } });
    assert.equal(res.status, 200);
    const ev = typedEvents(res.text);
    const types = ev.map((e) => e.event);
    assert.deepEqual(types, ['response.created', 'response.in_progress', 'response.output_item.added',
        'response.content_part.added', 'response.output_text.delta', 'response.output_text.delta',
        'error', 'response.failed']);
    ev.forEach((e, i) => assert.equal(e.data.sequence_number, i));
    const id = ev[0].data.response.id;
    assert.match(id, /^resp_mock_/);
    const failed = ev.at(-1).data.response;
    assert.equal(failed.id, id, "the provider's response");
    assert.equal(failed.status, 'failed');
    assert.equal(failed.model, 'gpt-up-r');
    assert.equal(failed.error.code, 'provider_error');
    assert.equal(ev.at(-2).data.error.code, 'provider_error');
    const row = await ledgerRow(res.headers.get('x-request-id'));
    assert.equal(row.estimated, 1);
    assert.equal(row.status, 502);
    assert.ok(row.completion_tokens >= 1 && row.charged_nusd > 0, JSON.stringify(row));
});

test("the provider's error event becomes the gateway's, with its message; no terminal event came", T, async () => {
    const res = await responses({ model: 'gpt-r', input: 'hi', stream: true, mock: { stream_error_after: 1 } });
    const ev = typedEvents(res.text);
    assert.deepEqual(ev.slice(-3).map((e) => e.event), ['response.output_text.delta', 'error', 'response.failed']);
    assert.equal(ev.filter((e) => e.event === 'error').length, 1);
    assert.equal(ev.at(-1).data.response.id, ev[0].data.response.id);
    assert.match(ev[0].data.response.id, /^resp_mock_/, "the provider's own stream");
    const err = ev.at(-2).data;
    assert.equal(err.code, 'provider_error');
    assert.match(err.message, /mock stream error/);
    ev.forEach((e, i) => assert.equal(e.data.sequence_number, i));
});

test('check-config: responses belongs to openai and azure, and is true or false', T, async () => {
    const bad = [
        ['providers:\n  a: {kind: anthropic, api_key: k, responses: true}\n', 'only an openai or azure provider takes responses'],
        ['providers:\n  o: {kind: openai, api_key: k, responses: yes}\n', "expected true or false, got 'yes'"],
    ];
    for (const [providers, msg] of bad) {
        const file = path.join(gw.dir, 'bad.yaml');
        fs.writeFileSync(file, `${providers}models:\n  m: {pricing: {input: 1, output: 1}, deployments: []}\n`);
        const r = await h.run(h.GATEWAY_BIN, ['check-config', '--config', file]);
        assert.equal(r.code, 1, r.stderr);
        assert.match(r.stderr, new RegExp(`bad\\.yaml:2: providers\\.\\w\\.responses: .*${msg}`));
    }
    const ok = path.join(gw.dir, 'ok.yaml');
    fs.writeFileSync(ok, 'providers:\n  o: {kind: openai, api_key: k, responses: false}\n  z: {kind: azure, base_url: "https://x", responses: true}\n' +
        'models:\n  m: {pricing: {input: 1, output: 1}, deployments: [{provider: o}]}\n');
    const r = await h.run(h.GATEWAY_BIN, ['check-config', '--config', ok]);
    assert.equal(r.code, 0, r.stderr);
});

test('passed-through responses are stored: GET, and previous_response_id sends the whole conversation upstream', T, async () => {
    const first = await responses({ model: 'gpt-r', input: 'my name is Ada' });
    assert.equal(first.status, 200, first.text);
    const got = await h.get(gw, `/v1/responses/${first.json.id}`, key);
    assert.equal(got.status, 200, got.text);
    assert.equal(got.json.id, first.json.id);
    assert.deepEqual(got.json.output, first.json.output);
    // streamed: the terminal event's response is what is kept
    const s = await responses({ model: 'gpt-r', input: 'and then?', stream: true, previous_response_id: first.json.id });
    assert.equal(s.status, 200, s.text);
    const done = h.sseEvents(s.text).at(-1);
    assert.equal(done.type, 'response.completed', s.text);
    const up = JSON.parse((await lastTo(m0, '/v1/responses')).body);
    // the provider gets the conversation, not an id it may not know (or that another account made)
    assert.equal(up.previous_response_id, null);
    assert.equal(up.input[0].content, 'my name is Ada');
    assert.equal(up.input[1].role, 'assistant');
    assert.equal(up.input.at(-1).content, 'and then?');
    const kept = await h.get(gw, `/v1/responses/${done.response.id}`, key);
    assert.equal(kept.status, 200, kept.text);
    assert.equal(kept.json.id, done.response.id);
    // and a continuation of a passed-through response may be translated for another provider
    const t = await responses({ model: 'gpt-c', input: 'once more', previous_response_id: done.response.id });
    assert.equal(t.status, 200, t.text);
    const chat = JSON.parse((await lastTo(m0, '/chat/completions')).body);
    assert.deepEqual(chat.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant', 'user']);
});
