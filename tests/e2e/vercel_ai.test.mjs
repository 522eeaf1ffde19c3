// End-to-end: the Vercel AI SDK (`ai` with `@ai-sdk/openai` and `@ai-sdk/anthropic`, pinned in
// package.json), configured as its users do, with only a base URL and an ms- key. Its default
// OpenAI model calls POST /v1/responses, `openai.chat()` chat completions and the Anthropic
// provider POST /v1/messages; each is run against the echo model, an OpenAI-shaped and an
// Anthropic upstream (the mock's personalities), translated or passed through by the gateway:
// generateText, streamText (text deltas, finish reason, the usage the ledger bills) and
// multi-step tool loops whose tools the SDK executes and whose results it sends back. The mock
// is told to answer the first step of a loop with a tool call (POST /_mock/config "next"), so
// the SDK's requests are its own, unchanged (a fetch spy records some of them). The pinned versions
// are the newest lines that run on Node 20 (ai 6, @ai-sdk/* 3): ai 7 wants Node 22.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createOpenAI } from '@ai-sdk/openai';
import { createAnthropic } from '@ai-sdk/anthropic';
import { APICallError, generateText, stepCountIs, streamText, tool } from 'ai';
import { z } from 'zod';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const PRICING = { input: 1, output: 2 };
const BALANCE = 100;
const MOCK_TEXT = 'tok0 tok1 tok2 ';
let gw, key, billingKey, openai, anthropic, openaiSpied, anthropicSpied;

// What the SDK sent: [{path, body}], bodies parsed. The spy changes nothing it forwards.
const sent = [];
const spy = async (url, init) => {
    const u = new URL(url instanceof Request ? url.url : String(url));
    sent.push({ path: u.pathname, body: init?.body ? JSON.parse(init.body) : null });
    return fetch(url, init);
};

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: ([m]) => ({
            providers: {
                oai: { kind: 'openai', base_url: `${m.url}/v1`, api_key: 'sk-oai-e2e', timeout_ms: 10000 },
                anth: { kind: 'anthropic', base_url: m.url, api_key: 'sk-ant-e2e', timeout_ms: 10000 },
            },
            models: {
                'gpt-t': { pricing: PRICING, deployments: [{ provider: 'oai', model: 'gpt-up' }] },
                'claude-t': { pricing: PRICING, deployments: [{ provider: 'anth', model: 'claude-up' }] },
            },
        }),
        setup: async (g) => {
            const r = await g.newProxyKey(BALANCE);
            key = r.key;
            billingKey = await g.createKey(r.account, { type: 'billing' });
        },
    });
    // the set-up README.md gives for the Vercel AI SDK
    openai = createOpenAI({ baseURL: `${gw.base}/v1`, apiKey: key });
    anthropic = createAnthropic({ baseURL: `${gw.base}/v1`, apiKey: key });
    // the same, with a fetch that records what the SDK sends (for its tool-loop bodies)
    openaiSpied = createOpenAI({ baseURL: `${gw.base}/v1`, apiKey: key, fetch: spy });
    anthropicSpied = createAnthropic({ baseURL: `${gw.base}/v1`, apiKey: key, fetch: spy });
});
after(async () => { await gw?.stop(); });

const expectedText = (model, prompt) => (model === 'echo-1' ? `You said: ${prompt}` : MOCK_TEXT);
const rid = (response) => response.headers['x-request-id'];

/** The ledger's row for request id r (the account API's /api/usage), once settled. */
async function ledgerRow(r) {
    const found = await h.eventually(async () =>
        (await h.usageRows(gw, billingKey)).find((u) => u.requestId === r), h.scaled(5000));
    assert.ok(found.value, `no usage row for ${r}`);
    return found.value;
}

/** The SDK's usage for one request must be what the ledger billed, at the model's prices. */
async function assertBilled(model, usage, r) {
    const row = await ledgerRow(r);
    assert.equal(row.model, model);
    assert.equal(row.status, 200);
    assert.equal(row.estimated, false);
    assert.equal(row.promptTokens, usage.inputTokens, JSON.stringify({ row, usage }));
    assert.equal(row.completionTokens, usage.outputTokens, JSON.stringify({ row, usage }));
    assert.equal(h.usdToNano(row.chargedAmount), h.costNano(gw, model, usage.inputTokens, usage.outputTokens));
    return row;
}

/** The access log's line for request id r: which endpoint the SDK called. */
async function assertPath(r, path, model) {
    const line = await gw.waitForLog(r);
    assert.equal(line.path, path);
    assert.equal(line.status, 200);
    assert.equal(line.model, model);
}

// streamText logs a failed request unless told otherwise; the error tests read it from the stream
const quiet = () => {};

/** Streams result.fullStream: {types, deltas} (every part's type, the text deltas). */
async function drain(result) {
    const types = [];
    const deltas = [];
    for await (const p of result.fullStream) {
        types.push(p.type);
        if (p.type === 'text-delta') deltas.push(p.text);
        if (p.type === 'error') throw p.error;
    }
    return { types, deltas };
}

// A tool the SDK runs itself; calls records what it was asked.
function weatherTool(calls) {
    return tool({
        description: 'The weather in a city',
        inputSchema: z.object({ city: z.string() }),
        execute: async ({ city }) => {
            calls.push(city);
            return `sunny in ${city}`;
        },
    });
}

// The mock answers the loop's first request (only) with this tool call.
const armToolCall = (chunks = 0) =>
    gw.mocks[0].config({ next: { chunks, tool_call: { name: 'get_weather', input: { city: 'Oslo' } } } });

/**
 * Checks a finished two-step tool loop: step 1 a tool call the SDK executed once, step 2 the
 * model's answer to the result; what the upstream got in step 2 carries the result; both steps
 * went to `path` and were billed as the SDK counted them.
 */
async function assertToolLoop(model, path, steps, calls, { text = MOCK_TEXT } = {}) {
    assert.equal(steps.length, 2, JSON.stringify(steps.map((s) => s.finishReason)));
    const [s1, s2] = steps;
    assert.equal(s1.finishReason, 'tool-calls');
    assert.equal(s1.toolCalls.length, 1);
    const call = s1.toolCalls[0];
    assert.equal(call.toolName, 'get_weather');
    assert.deepEqual(call.input, { city: 'Oslo' });
    assert.deepEqual(calls, ['Oslo']);
    assert.equal(s1.toolResults[0].output, 'sunny in Oslo');
    assert.equal(s2.finishReason, 'stop');
    assert.equal(s2.text, text);
    // the upstream's view of step 2: the call and its result, in its own dialect
    const up = (await gw.mocks[0].requests()).at(-1);
    const body = JSON.parse(up.body);
    if (up.path === '/v1/messages') {
        const use = body.messages.flatMap((m) => (Array.isArray(m.content) ? m.content : []));
        const id = use.find((b) => b.type === 'tool_use')?.id;
        assert.ok(id, up.body);
        assert.ok(use.some((b) => b.type === 'tool_result' && b.tool_use_id === id &&
            JSON.stringify(b.content).includes('sunny in Oslo')), up.body);
    } else {
        const asked = body.messages.find((m) => m.role === 'assistant' && m.tool_calls);
        assert.ok(asked, up.body);
        assert.ok(body.messages.some((m) => m.role === 'tool' &&
            m.tool_call_id === asked.tool_calls[0].id && m.content === 'sunny in Oslo'), up.body);
    }
    for (const s of steps) {
        await assertPath(rid(s.response), path, model);
        await assertBilled(model, s.usage, rid(s.response));
    }
}

/** The input items of the SDK's last request to /v1/responses (a loop's second step). */
function sentResponsesItems() {
    const req = sent.filter((s) => s.path === '/v1/responses').at(-1);
    assert.ok(req, 'the SDK called /v1/responses');
    return req.body.input;
}

const toolArgs = (calls, extra = {}) => ({
    prompt: 'What is the weather in Oslo?', tools: { get_weather: weatherTool(calls) },
    stopWhen: stepCountIs(4), maxOutputTokens: 64, ...extra,
});

// ---------------------------------------------------------------------------------------------
// createOpenAI: the default model is the Responses API

for (const model of ['echo-1', 'gpt-t', 'claude-t']) {
    test(`openai(${model}): generateText through /v1/responses`, T, async () => {
        const r = await generateText({ model: openai(model), system: 'be brief', prompt: 'hi there',
            maxOutputTokens: 64 });
        assert.equal(r.text, expectedText(model, 'hi there'));
        assert.equal(r.finishReason, 'stop');
        assert.deepEqual(r.warnings, []);
        assert.ok(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, JSON.stringify(r.usage));
        assert.match(r.response.id, /^resp_/);
        assert.equal(r.response.modelId, model);
        await assertPath(rid(r.response), '/v1/responses', model);
        await assertBilled(model, r.usage, rid(r.response));
    });

    test(`openai(${model}): streamText gives text deltas, the finish reason and the billed usage`, T, async () => {
        const s = streamText({ model: openai(model), prompt: 'stream to me', maxOutputTokens: 64 });
        const { types, deltas } = await drain(s);
        assert.equal(types[0], 'start');
        assert.equal(types.at(-1), 'finish');
        assert.ok(deltas.length > 1, `one delta a token: ${JSON.stringify(deltas)}`);
        assert.equal(deltas.join(''), expectedText(model, 'stream to me'));
        assert.equal(await s.finishReason, 'stop');
        const usage = await s.usage;
        const r = rid(await s.response);
        await assertPath(r, '/v1/responses', model);
        const row = await assertBilled(model, usage, r);
        // the gateway's cost in response.completed, which the SDK keeps as the raw usage
        assert.equal(h.usdToNano(usage.raw.cost), h.usdToNano(row.chargedAmount));
    });
}

test('openai(echo-1): tools offered, none called; a past call and its result go back as items', T, async () => {
    const calls = [];
    const r = await generateText({ model: openai('echo-1'), ...toolArgs(calls) });
    assert.equal(r.text, 'You said: What is the weather in Oslo?');
    assert.equal(r.steps.length, 1);
    assert.deepEqual(calls, []);
    sent.length = 0;
    const past = { toolCallId: 'call_1', toolName: 'get_weather' };
    const r2 = await generateText({
        model: openaiSpied('echo-1'), tools: { get_weather: weatherTool(calls) }, maxOutputTokens: 64,
        messages: [
            { role: 'user', content: 'weather?' },
            { role: 'assistant', content: [{ type: 'tool-call', ...past, input: { city: 'Oslo' } }] },
            { role: 'tool', content: [{ type: 'tool-result', ...past, output: { type: 'text', value: 'sunny' } }] },
        ],
    });
    assert.equal(r2.text, 'You said: weather?');
    const items = sentResponsesItems();
    assert.ok(items.some((i) => i.type === 'function_call' && i.call_id === 'call_1'), JSON.stringify(items));
    assert.ok(items.some((i) => i.type === 'function_call_output' && i.call_id === 'call_1'), JSON.stringify(items));
    await assertBilled('echo-1', r2.usage, rid(r2.response));
});

for (const model of ['gpt-t', 'claude-t']) {
    test(`openai(${model}): generateText runs a tool loop (function_call out, function_call_output back)`, T, async () => {
        const calls = [];
        sent.length = 0;
        await armToolCall();
        const r = await generateText({ model: openaiSpied(model), ...toolArgs(calls) });
        await assertToolLoop(model, '/v1/responses', r.steps, calls);
        assert.equal(r.text, MOCK_TEXT);
        // the SDK's second request: the gateway's function_call item and the tool's output
        const items = sentResponsesItems();
        const fc = items.find((i) => i.type === 'function_call');
        assert.ok(fc && fc.name === 'get_weather' && fc.call_id === r.steps[0].toolCalls[0].toolCallId,
            JSON.stringify(items));
        const out = items.find((i) => i.type === 'function_call_output');
        assert.ok(out && out.call_id === fc.call_id && out.output === 'sunny in Oslo', JSON.stringify(items));
    });

    test(`openai(${model}): streamText runs the same loop from streamed events`, T, async () => {
        const calls = [];
        await armToolCall();
        const s = streamText({ model: openai(model), ...toolArgs(calls) });
        const { types, deltas } = await drain(s);
        for (const t of ['tool-input-start', 'tool-input-delta', 'tool-input-end', 'tool-call', 'tool-result'])
            assert.ok(types.includes(t), `${t} in ${types}`);
        assert.equal(types.filter((t) => t === 'finish-step').length, 2);
        assert.equal(deltas.join(''), MOCK_TEXT);
        assert.equal(await s.finishReason, 'stop');
        await assertToolLoop(model, '/v1/responses', await s.steps, calls);
    });
}

test('openai(gpt-t): text before the call, with store: false (every item sent in full)', T, async () => {
    const calls = [];
    await armToolCall(1);
    sent.length = 0;
    const r = await generateText({
        model: openaiSpied('gpt-t'), ...toolArgs(calls, { providerOptions: { openai: { store: false } } }),
    });
    await assertToolLoop('gpt-t', '/v1/responses', r.steps, calls);
    assert.equal(r.steps[0].text, 'tok0 ');
    const items = sentResponsesItems();
    assert.ok(items.some((i) => i.role === 'assistant'), JSON.stringify(items));
    assert.ok(!items.some((i) => i.type === 'item_reference'), JSON.stringify(items));
});

// With store left on (its default), the SDK sends an answer's message items (and, for a model it
// takes for a reasoning model, such as gpt-5*, its reasoning items) back as references to the
// stored response (item_reference): the gateway resolves them from the responses it stored.
test('openai(gpt-t): text before the call, with the SDK\'s default store: true (item_reference)', T, async () => {
    const calls = [];
    await armToolCall(1);
    sent.length = 0;
    const r = await generateText({ model: openaiSpied('gpt-t'), ...toolArgs(calls) });
    await assertToolLoop('gpt-t', '/v1/responses', r.steps, calls);
    assert.equal(r.steps[0].text, 'tok0 ');
    const items = sentResponsesItems();
    assert.ok(items.some((i) => i.type === 'item_reference'), JSON.stringify(items));
    // the provider got the earlier answer's text back, resolved by the gateway
    const up = (await gw.mocks[0].requestsTo('/v1/chat/completions')).at(-1);
    const msgs = JSON.parse(up.body).messages;
    assert.ok(msgs.some((m) => m.role === 'assistant' && m.content === 'tok0 ' && m.tool_calls?.length === 1),
        JSON.stringify(msgs));
});

test('openai(claude-t): Anthropic thinking comes back as reasoning, whole and streamed', T, async () => {
    await gw.mocks[0].config({ next: { thinking: true } });
    const r = await generateText({ model: openai('claude-t'), prompt: 'think first', maxOutputTokens: 2048 });
    assert.ok(r.reasoningText?.length > 0, JSON.stringify(r.reasoning));
    assert.equal(r.text, MOCK_TEXT);
    await assertBilled('claude-t', r.usage, rid(r.response));
    await gw.mocks[0].config({ next: { thinking: true } });
    const s = streamText({ model: openai('claude-t'), prompt: 'think first', maxOutputTokens: 2048 });
    const { types, deltas } = await drain(s);
    assert.ok(types.indexOf('reasoning-delta') >= 0 && types.indexOf('reasoning-delta') < types.indexOf('text-delta'),
        String(types));
    assert.equal(await s.reasoningText, r.reasoningText);
    assert.equal(deltas.join(''), MOCK_TEXT);
    await assertBilled('claude-t', await s.usage, rid(await s.response));
});

test('openai.chat(model): chat completions, whole, streamed and a tool loop', T, async () => {
    const r = await generateText({ model: openai.chat('echo-1'), prompt: 'hi there', maxOutputTokens: 64 });
    assert.equal(r.text, 'You said: hi there');
    await assertPath(rid(r.response), '/v1/chat/completions', 'echo-1');
    await assertBilled('echo-1', r.usage, rid(r.response));
    const s = streamText({ model: openai.chat('echo-1'), prompt: 'hi there', maxOutputTokens: 64 });
    const { deltas } = await drain(s);
    assert.equal(deltas.join(''), 'You said: hi there');
    assert.equal(await s.finishReason, 'stop');
    const sr = rid(await s.response);
    await assertPath(sr, '/v1/chat/completions', 'echo-1');
    await assertBilled('echo-1', await s.usage, sr);
    const calls = [];
    await armToolCall();
    const t = await generateText({ model: openai.chat('gpt-t'), ...toolArgs(calls) });
    await assertToolLoop('gpt-t', '/v1/chat/completions', t.steps, calls);
});

test('openai: a bad key is an APICallError 401, an unknown model 404, in generateText and streamText', T, async () => {
    const bad = createOpenAI({ baseURL: `${gw.base}/v1`, apiKey: h.fakeKey() });
    await assert.rejects(generateText({ model: bad('echo-1'), prompt: 'x' }), (e) => {
        assert.ok(APICallError.isInstance(e), `${e?.name}: ${e?.message}`);
        assert.equal(e.statusCode, 401);
        assert.equal(e.isRetryable, false);
        assert.equal(e.data?.error?.code, 'invalid_api_key');
        return true;
    });
    await assert.rejects(generateText({ model: openai('no-such-model'), prompt: 'x' }), (e) => {
        assert.ok(APICallError.isInstance(e), `${e?.name}: ${e?.message}`);
        assert.equal(e.statusCode, 404);
        assert.equal(e.data?.error?.code, 'model_not_found');
        return true;
    });
    await assert.rejects(drain(streamText({ model: openai('no-such-model'), prompt: 'x', onError: quiet })),
        (e) => APICallError.isInstance(e) && e.statusCode === 404);
});

// ---------------------------------------------------------------------------------------------
// createAnthropic: the Messages API, passed through to an Anthropic upstream, translated to others

for (const model of ['claude-t', 'gpt-t']) {
    test(`anthropic(${model}): generateText through /v1/messages`, T, async () => {
        const r = await generateText({ model: anthropic(model), system: 'be brief', prompt: 'hi there',
            maxOutputTokens: 64 });
        assert.equal(r.text, MOCK_TEXT);
        assert.equal(r.finishReason, 'stop');
        assert.deepEqual(r.warnings, []);
        assert.match(r.response.id, /^msg_/);
        // an Anthropic upstream's answer passes through with its deployment's model name
        assert.equal(r.response.modelId, model === 'claude-t' ? 'claude-up' : model);
        await assertPath(rid(r.response), '/v1/messages', model);
        await assertBilled(model, r.usage, rid(r.response));
    });

    test(`anthropic(${model}): streamText gives text deltas, the finish reason and the billed usage`, T, async () => {
        const s = streamText({ model: anthropic(model), prompt: 'stream to me', maxOutputTokens: 64 });
        const { types, deltas } = await drain(s);
        assert.equal(types.at(-1), 'finish');
        assert.deepEqual(deltas, ['tok0 ', 'tok1 ', 'tok2 ']);
        assert.equal(await s.finishReason, 'stop');
        const usage = await s.usage;
        const r = rid(await s.response);
        await assertPath(r, '/v1/messages', model);
        const row = await assertBilled(model, usage, r);
        // the gateway's cost in message_delta's usage
        assert.equal(h.usdToNano(usage.raw.cost), h.usdToNano(row.chargedAmount));
    });

    test(`anthropic(${model}): generateText and streamText run a tool loop (tool_use out, tool_result back)`, T, async () => {
        let calls = [];
        await armToolCall(1);
        sent.length = 0;
        const r = await generateText({ model: anthropicSpied(model), ...toolArgs(calls) });
        await assertToolLoop(model, '/v1/messages', r.steps, calls);
        assert.equal(r.steps[0].text, 'tok0 ');
        const req = sent.filter((s) => s.path === '/v1/messages').at(-1).body;
        assert.ok(req.messages.some((m) => Array.isArray(m.content) &&
            m.content.some((b) => b.type === 'tool_result' && b.tool_use_id === r.steps[0].toolCalls[0].toolCallId)),
        JSON.stringify(req.messages));
        calls = [];
        await armToolCall();
        const s = streamText({ model: anthropic(model), ...toolArgs(calls) });
        const { types } = await drain(s);
        assert.ok(types.includes('tool-call') && types.includes('tool-result'), String(types));
        await assertToolLoop(model, '/v1/messages', await s.steps, calls);
    });
}

test('anthropic: a bad key is an APICallError 401, an unknown model 404, in generateText and streamText', T, async () => {
    const bad = createAnthropic({ baseURL: `${gw.base}/v1`, apiKey: h.fakeKey() });
    await assert.rejects(generateText({ model: bad('claude-t'), prompt: 'x', maxOutputTokens: 64 }), (e) => {
        assert.ok(APICallError.isInstance(e), `${e?.name}: ${e?.message}`);
        assert.equal(e.statusCode, 401);
        assert.equal(e.isRetryable, false);
        assert.equal(e.data?.error?.type, 'authentication_error');
        return true;
    });
    await assert.rejects(generateText({ model: anthropic('no-such-model'), prompt: 'x', maxOutputTokens: 64 }), (e) => {
        assert.ok(APICallError.isInstance(e), `${e?.name}: ${e?.message}`);
        assert.equal(e.statusCode, 404);
        assert.equal(e.data?.error?.type, 'not_found_error');
        return true;
    });
    const s = streamText({ model: anthropic('no-such-model'), prompt: 'x', maxOutputTokens: 64, onError: quiet });
    await assert.rejects(drain(s),
        (e) => APICallError.isInstance(e) && e.statusCode === 404);
});

test('the balance fell by exactly what the ledger charged for every request above', T, async () => {
    const rows = await h.usageRows(gw, billingKey);
    assert.ok(rows.length > 20, `${rows.length} usage rows`);
    const charged = rows.reduce((sum, r) => sum + h.usdToNano(r.chargedAmount), 0n);
    const r = await h.eventually(async () =>
        (await h.balanceNano(gw, billingKey)) === h.usdToNano(BALANCE) - charged, h.scaled(5000));
    assert.ok(r.value, `balance ${await h.balanceNano(gw, billingKey)}, want ${h.usdToNano(BALANCE) - charged}`);
    assert.equal((await h.audit(gw)).code, 0);
});
