// End-to-end (issue 10): the official OpenAI Node SDK (tests/e2e/node_modules/openai), unchanged,
// runs the same cases against a gpt-, a claude- and a gemini- model of one gateway, served by the
// mock upstream's OpenAI, Anthropic and Gemini personalities (tests/mock/README.md) through the
// openai, anthropic and gemini adapters (docs/PROVIDERS.md). Each case checks what the client gets
// and, from the mock's recording, what the upstream received in its own format; the usage case
// checks the exact charge (docs/BILLING.md "The five counts"), computed here from the pricing.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
// USD per 1M tokens. Every kind has its own price (cache reads cheaper than input, cache writes
// dearer, 1-hour writes dearest), so a count billed at another kind's price changes the charge;
// the odd last digits make a per-token cost end in .5 nano-dollar, so rounding once per request
// (not per count) shows too.
const PRICING = { input: 1.2345, output: 9.8765, cached_input: 0.1234, cache_write: 1.5433, cache_write_1h: 2.4691 };
const MODELS = ['gpt-t', 'claude-t', 'gemini-t'];
// what each model's upstream request looks like in the recording
const UP = {
    'gpt-t': { path: /^\/v1\/chat\/completions$/, model: 'gpt-up-1' },
    'claude-t': { path: /^\/v1\/messages$/, model: 'claude-up-1' },
    'gemini-t': { path: /^\/v1beta\/models\/gemini-up-1:(generateContent|streamGenerateContent)$/ },
};
let gw, mock, key, billingKey, client;

before(async () => {
    gw = await h.startGatewayWithMocks({
        mocks: 1,
        config: ([m]) => ({
            providers: {
                oai: { kind: 'openai', base_url: `${m.url}/v1`, api_key: 'sk-oai-e2e', timeout_ms: 10000 },
                // the mock serves Anthropic's /v1/messages and Gemini's /v1beta/models/... at its root
                anth: { kind: 'anthropic', base_url: m.url, api_key: 'sk-ant-e2e', timeout_ms: 10000 },
                goog: { kind: 'gemini', base_url: m.url, api_key: 'AIza-e2e', timeout_ms: 10000 },
            },
            models: {
                'gpt-t': { pricing: PRICING, deployments: [{ provider: 'oai', model: 'gpt-up-1' }] },
                'claude-t': { pricing: PRICING, deployments: [{ provider: 'anth', model: 'claude-up-1' }] },
                'gemini-t': { pricing: PRICING, deployments: [{ provider: 'goog', model: 'gemini-up-1' }] },
            },
        }),
        setup: async (g) => {
            const account = await g.createAccount('sdk-providers', 100);
            key = await g.createKey(account);
            billingKey = await g.createKey(account, { type: 'billing' });
        },
    });
    mock = gw.mocks[0];
    client = new OpenAI({ baseURL: `${gw.base}/v1`, apiKey: key, maxRetries: 0, timeout: h.scaled(20000) });
});
after(async () => { await gw?.stop(); });

const isGpt = (m) => m === 'gpt-t';
// The model an answer names: the openai adapter forwards the upstream's answer byte for byte
// (docs/PROVIDERS.md), so it names the upstream model; the translating adapters write the
// client's model name.
const answerModel = (m) => (isGpt(m) ? UP[m].model : m);
const isClaude = (m) => m === 'claude-t';
const isGemini = (m) => m === 'gemini-t';
const clone = (v) => JSON.parse(JSON.stringify(v));

/** The body of the last request the mock received, checked to be the one model's upstream's. */
async function lastUp(model) {
    const rec = (await mock.requests()).at(-1);
    assert.ok(rec, 'the mock received nothing');
    assert.match(rec.path, UP[model].path, `${model}: the last upstream request went elsewhere`);
    const body = JSON.parse(rec.body);
    // Gemini names the model in the path (checked above), the others in the body
    if (UP[model].model) assert.equal(body.model, UP[model].model);
    return body;
}

/** The cost in nano-dollars of the five counts at PRICING (no markup), rounded half up once. */
function expectedNano({ input = 0, cached = 0, write = 0, write1h = 0, output = 0 }) {
    const p = (usd) => h.usdToNano(String(usd)); // per 1M tokens
    const sum = BigInt(input) * p(PRICING.input) + BigInt(cached) * p(PRICING.cached_input) +
        BigInt(write) * p(PRICING.cache_write) + BigInt(write1h) * p(PRICING.cache_write_1h) +
        BigInt(output) * p(PRICING.output);
    return (sum + 500000n) / 1000000n;
}

/** The ledger row of a request id (the ledger writes within ~10 ms of settling). */
async function ledgerRow(requestId) {
    assert.ok(requestId, 'the answer has no x-request-id');
    const { value } = await h.eventually(async () =>
        (await h.usageRows(gw, billingKey)).find((r) => r.requestId === requestId), h.scaled(3000), 20);
    assert.ok(value, `no usage row for ${requestId}`);
    return value;
}

const MSG = [{ role: 'user', content: 'hi' }];
// the mock's default answer: 3 tokens; its usage: OpenAI and Gemini 11 prompt tokens, Anthropic
// the prompt's words ("hi": 1)
const TEXT = 'tok0 tok1 tok2 ';
const PLAIN_USAGE = { 'gpt-t': [11, 3, 14], 'claude-t': [1, 3, 4], 'gemini-t': [11, 3, 14] };
const TOOLS = [{ type: 'function', function: { name: 'get_weather', description: 'Weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] } } }];
// every personality of the mock answers with this call (input and args are both taken)
const TOOL_MOCK = { chunks: 1, tool_call: { name: 'get_weather', input: { city: 'Paris' } } };
// OpenAI's and Anthropic's ids are the mock's; Gemini has none, so the gemini adapter makes one
const TOOL_ID = { 'gpt-t': /^call_mock_\d+$/, 'claude-t': /^toolu_mock_\d+$/, 'gemini-t': /^call_[0-9a-f]{16}$/ };
// a 1x1 PNG
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';

/** The upstream's translation of the tool-call turn and the tool result that follows it. */
function assertToolTurnsUpstream(model, up, call, sent) {
    if (isGpt(model)) {
        // OpenAI-shaped: forwarded as the client sent them
        assert.deepEqual(up.messages, clone(sent));
    } else if (isClaude(model)) {
        assert.deepEqual(up.messages.slice(-2), [
            { role: 'assistant', content: [{ type: 'text', text: 'tok0 ' },
                { type: 'tool_use', id: call.id, name: 'get_weather', input: { city: 'Paris' } }] },
            { role: 'user', content: [{ type: 'tool_result', tool_use_id: call.id, content: 'sunny' }] }]);
    } else {
        assert.deepEqual(up.contents.slice(-2), [
            { role: 'model', parts: [{ text: 'tok0 ' }, { functionCall: { name: 'get_weather', args: { city: 'Paris' } } }] },
            { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { result: 'sunny' } } }] }]);
    }
}

for (const model of MODELS) {
    test(`${model}: plain chat`, T, async () => {
        const r = await client.chat.completions.create({ model, messages: MSG });
        assert.equal(r.object, 'chat.completion');
        assert.equal(r.model, answerModel(model));
        assert.equal(r.choices.length, 1);
        assert.equal(r.choices[0].message.role, 'assistant');
        assert.equal(r.choices[0].message.content, TEXT);
        assert.equal(r.choices[0].finish_reason, 'stop');
        assert.deepEqual([r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens], PLAIN_USAGE[model]);
        assert.ok(r._request_id, 'the SDK saw x-request-id');
        await lastUp(model);
    });

    test(`${model}: system prompt and multi-turn conversation`, T, async () => {
        const messages = [{ role: 'system', content: 'Be terse.' }, { role: 'user', content: 'u1 hello' },
            { role: 'assistant', content: 'a1 hi' }, { role: 'user', content: 'u2 bye' }];
        const r = await client.chat.completions.create({ model, messages });
        assert.equal(r.choices[0].message.content, TEXT);
        const up = await lastUp(model);
        if (isGpt(model)) {
            assert.deepEqual(up.messages, messages);
        } else if (isClaude(model)) {
            // system messages become the top-level system, as text blocks; the turns keep their order
            assert.deepEqual(up.system, [{ type: 'text', text: 'Be terse.' }]);
            assert.deepEqual(up.messages, [{ role: 'user', content: 'u1 hello' },
                { role: 'assistant', content: 'a1 hi' }, { role: 'user', content: 'u2 bye' }]);
        } else {
            assert.deepEqual(up.systemInstruction, { parts: [{ text: 'Be terse.' }] });
            assert.deepEqual(up.contents, [{ role: 'user', parts: [{ text: 'u1 hello' }] },
                { role: 'model', parts: [{ text: 'a1 hi' }] }, { role: 'user', parts: [{ text: 'u2 bye' }] }]);
        }
    });

    test(`${model}: streaming with include_usage`, T, async () => {
        const stream = await client.chat.completions.create({
            model, messages: MSG, stream: true, stream_options: { include_usage: true } });
        const chunks = [];
        for await (const c of stream) chunks.push(c);
        assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk' && c.model === answerModel(model)));
        assert.equal(chunks[0].choices[0].delta.role, 'assistant');
        const text = chunks.filter((c) => c.choices.length).map((c) => c.choices[0].delta.content ?? '').join('');
        assert.equal(text, TEXT);
        assert.deepEqual(chunks.filter((c) => c.choices[0]?.finish_reason).map((c) => c.choices[0].finish_reason), ['stop']);
        // one usage chunk, the last, with no choices, and with what the gateway charged
        const last = chunks.at(-1);
        assert.deepEqual(last.choices, []);
        assert.equal(chunks.filter((c) => c.usage).length, 1);
        const [p, c] = PLAIN_USAGE[model];
        assert.deepEqual([last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens], PLAIN_USAGE[model]);
        assert.equal(h.usdToNano(last.usage.cost), expectedNano({ input: p, output: c }));
        await lastUp(model);
    });

    test(`${model}: tool call round trip, not streamed`, T, async () => {
        const ask = { role: 'user', content: 'Weather in Paris?' };
        const r = await client.chat.completions.create({ model, messages: [ask], tools: TOOLS, mock: TOOL_MOCK });
        assert.equal(r.choices[0].finish_reason, 'tool_calls');
        const msg = r.choices[0].message;
        assert.equal(msg.content, 'tok0 ');
        assert.equal(msg.tool_calls.length, 1);
        assert.match(msg.tool_calls[0].id, TOOL_ID[model]);
        assert.equal(msg.tool_calls[0].type, 'function');
        assert.equal(msg.tool_calls[0].function.name, 'get_weather');
        assert.deepEqual(JSON.parse(msg.tool_calls[0].function.arguments), { city: 'Paris' });
        // text tokens + 2 for the call (tests/mock/README.md), whichever format counted them
        assert.equal(r.usage.completion_tokens, 3);
        // the tool definition reached the upstream in its format
        const up = await lastUp(model);
        if (isGpt(model)) {
            assert.deepEqual(up.tools, TOOLS); // passed through
        } else if (isClaude(model)) {
            assert.deepEqual(up.tools, [{ name: 'get_weather', description: 'Weather of a city',
                input_schema: TOOLS[0].function.parameters }]);
        } else {
            assert.deepEqual(up.tools, [{ functionDeclarations: [{ name: 'get_weather', description: 'Weather of a city',
                parameters: { type: 'OBJECT', properties: { city: { type: 'STRING' } }, required: ['city'],
                    propertyOrdering: ['city'] } }] }]);
        }
        const call = msg.tool_calls[0];
        const sent = [ask, msg, { role: 'tool', tool_call_id: call.id, content: 'sunny' }];
        const r2 = await client.chat.completions.create({ model, tools: TOOLS, messages: sent });
        assert.equal(r2.choices[0].finish_reason, 'stop');
        assert.equal(r2.choices[0].message.content, TEXT);
        assertToolTurnsUpstream(model, await lastUp(model), call, sent);
    });

    test(`${model}: tool call streamed, assembled by the stream helper`, T, async () => {
        const ask = { role: 'user', content: 'Weather in Paris?' };
        const runner = client.chat.completions.stream({ model, messages: [ask], tools: TOOLS, mock: TOOL_MOCK });
        const argDeltas = [];
        const done = [];
        runner.on('tool_calls.function.arguments.delta', (e) => argDeltas.push(e.arguments_delta));
        runner.on('tool_calls.function.arguments.done', (e) => done.push(e));
        const f = await runner.finalChatCompletion();
        assert.equal(f.choices[0].finish_reason, 'tool_calls');
        const msg = f.choices[0].message;
        assert.equal(msg.content, 'tok0 ');
        assert.equal(msg.tool_calls.length, 1);
        const call = msg.tool_calls[0];
        assert.match(call.id, TOOL_ID[model]);
        assert.equal(call.type, 'function');
        assert.equal(call.function.name, 'get_weather');
        assert.deepEqual(JSON.parse(call.function.arguments), { city: 'Paris' });
        assert.equal(argDeltas.join(''), call.function.arguments);
        // OpenAI and Anthropic stream the arguments in two pieces (delta.tool_calls[].function.
        // arguments, input_json_delta); they must be joined (Gemini sends its args whole)
        if (!isGemini(model)) assert.ok(argDeltas.length >= 2, `arguments in ${argDeltas.length} piece(s)`);
        assert.equal(done.length, 1);
        assert.equal(done[0].name, 'get_weather');
        assert.deepEqual(JSON.parse(done[0].arguments), { city: 'Paris' });
        // the SDK's assembled message goes back with the result, streamed too
        const sent = [ask, msg, { role: 'tool', tool_call_id: call.id, content: 'sunny' }];
        const f2 = await client.chat.completions.stream({ model, tools: TOOLS, messages: sent }).finalChatCompletion();
        assert.equal(f2.choices[0].finish_reason, 'stop');
        assert.equal(f2.choices[0].message.content, TEXT);
        assertToolTurnsUpstream(model, await lastUp(model), call, sent);
    });

    test(`${model}: an image part reaches the upstream`, T, async () => {
        const messages = [{ role: 'user', content: [{ type: 'text', text: 'What is this?' },
            { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }];
        const r = await client.chat.completions.create({ model, messages });
        assert.equal(r.choices[0].message.content, TEXT);
        const up = await lastUp(model);
        if (isGpt(model)) {
            assert.deepEqual(up.messages, messages);
        } else if (isClaude(model)) {
            assert.deepEqual(up.messages, [{ role: 'user', content: [{ type: 'text', text: 'What is this?' },
                { type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }] }]);
        } else {
            assert.deepEqual(up.contents, [{ role: 'user', parts: [{ text: 'What is this?' },
                { inlineData: { mimeType: 'image/png', data: PNG } }] }]);
        }
    });

    test(`${model}: stop sequences reach the upstream`, T, async () => {
        const stop = ['END', '\n\n'];
        const r = await client.chat.completions.create({ model, messages: MSG, stop });
        assert.equal(r.choices[0].finish_reason, 'stop');
        const up = await lastUp(model);
        if (isGpt(model)) assert.deepEqual(up.stop, stop);
        else if (isClaude(model)) assert.deepEqual(up.stop_sequences, stop);
        else assert.deepEqual(up.generationConfig.stopSequences, stop);
    });

    test(`${model}: max_tokens below the answer gives finish_reason length`, T, async () => {
        const r = await client.chat.completions.create({ model, messages: MSG, max_tokens: 2 });
        assert.equal(r.choices[0].finish_reason, 'length');
        assert.equal(r.choices[0].message.content, 'tok0 tok1 ');
        assert.equal(r.usage.completion_tokens, 2);
        const up = await lastUp(model);
        if (isGpt(model) || isClaude(model)) assert.equal(up.max_tokens, 2);
        else assert.equal(up.generationConfig.maxOutputTokens, 2);
    });

    test(`${model}: JSON schema output`, T, async () => {
        const schema = { type: 'object', properties: { city: { type: 'string' }, temp: { type: ['number', 'null'] } },
            required: ['city', 'temp'], additionalProperties: false };
        const response_format = { type: 'json_schema', json_schema: { name: 'weather', strict: true, schema } };
        const req = { model, messages: MSG, response_format };
        if (isClaude(model)) {
            // Anthropic has no structured output: refused, naming the field, nothing sent upstream
            const before = await h.mockRequestCount(mock);
            const e = await client.chat.completions.create(req).then(() => null, (err) => err);
            assert.ok(e instanceof OpenAI.BadRequestError, String(e));
            assert.equal(e.code, 'invalid_parameter');
            assert.equal(e.param, 'response_format');
            assert.equal(await h.mockRequestCount(mock), before);
            return;
        }
        const r = await client.chat.completions.create(req);
        assert.equal(r.choices[0].finish_reason, 'stop');
        const up = await lastUp(model);
        if (isGpt(model)) {
            assert.deepEqual(up.response_format, response_format); // passed through
        } else {
            // Gemini's Schema: types upper-cased, ["T","null"] as nullable, the client's property
            // order kept, additionalProperties left out
            assert.equal(up.generationConfig.responseMimeType, 'application/json');
            assert.deepEqual(up.generationConfig.responseSchema, { type: 'OBJECT',
                properties: { city: { type: 'STRING' }, temp: { type: 'NUMBER', nullable: true } },
                required: ['city', 'temp'], propertyOrdering: ['city', 'temp'] });
        }
    });

    test(`${model}: n=2, which only OpenAI can do`, T, async () => {
        const before = await h.mockRequestCount(mock);
        const req = { model, messages: MSG, n: 2 };
        if (isGpt(model)) {
            // forwarded as sent (the mock answers one choice anyway)
            await client.chat.completions.create(req);
            assert.equal((await lastUp(model)).n, 2);
            return;
        }
        const e = await client.chat.completions.create(req).then(() => null, (err) => err);
        assert.ok(e instanceof OpenAI.BadRequestError, String(e));
        assert.equal(e.status, 400);
        assert.equal(e.code, 'invalid_parameter');
        assert.equal(e.param, 'n');
        assert.equal(await h.mockRequestCount(mock), before, 'nothing went upstream');
    });

    test(`${model}: usage with cached and reasoning tokens, and the exact charge`, T, async () => {
        // per family: the mock's usage options, what the client sees (docs/BILLING.md), the five
        // counts billed, and the ledger row
        const U = {
            // OpenAI: totals with details inside; input = prompt - cached, output includes reasoning
            'gpt-t': { mock: { prompt_tokens: 1001, cached_tokens: 601, reasoning_tokens: 7, chunks: 2 },
                client: { prompt: 1001, completion: 9, cached: 601, reasoning: 7 },
                counts: { input: 400, cached: 601, output: 9 },
                row: { promptTokens: 1001, cachedTokens: 601, cacheWriteTokens: 0, cacheWrite1hTokens: 0,
                    completionTokens: 9, reasoningTokens: 7 } },
            // Anthropic: kinds apart; 5-minute writes = creation - 1h; thinking is inside output_tokens,
            // with no count of its own (reasoning 0)
            'claude-t': { mock: { input_tokens: 51, cache_read_input_tokens: 2001, cache_creation_input_tokens: 1001,
                cache_creation_1h_input_tokens: 201, output_tokens: 101, thinking: true },
            client: { prompt: 3053, completion: 101, cached: 2001, reasoning: 0 },
            counts: { input: 51, cached: 2001, write: 800, write1h: 201, output: 101 },
            row: { promptTokens: 3053, cachedTokens: 2001, cacheWriteTokens: 1001, cacheWrite1hTokens: 201,
                completionTokens: 101, reasoningTokens: 0 } },
            // Gemini: cached inside the prompt, thoughts apart from candidates; tool-use prompt is input
            'gemini-t': { mock: { prompt_tokens: 1201, cached_tokens: 1001, tool_use_prompt_tokens: 31,
                output_tokens: 41, thoughts_tokens: 61, thinking: true },
            client: { prompt: 1232, completion: 102, cached: 1001, reasoning: 61 },
            counts: { input: 231, cached: 1001, output: 102 },
            row: { promptTokens: 1232, cachedTokens: 1001, cacheWriteTokens: 0, cacheWrite1hTokens: 0,
                completionTokens: 102, reasoningTokens: 61 } },
        }[model];
        const want = expectedNano(U.counts);
        const checkUsage = (u, what) => {
            assert.deepEqual([u.prompt_tokens, u.completion_tokens, u.total_tokens,
                u.prompt_tokens_details?.cached_tokens, u.completion_tokens_details?.reasoning_tokens],
            [U.client.prompt, U.client.completion, U.client.prompt + U.client.completion,
                U.client.cached, U.client.reasoning], what);
        };
        const checkRow = async (requestId, what) => {
            const row = await ledgerRow(requestId);
            assert.equal(row.model, model, what);
            assert.equal(row.estimated, false, what);
            const got = Object.fromEntries(Object.keys(U.row).map((k) => [k, row[k]]));
            assert.deepEqual(got, U.row, what);
            assert.equal(h.usdToNano(row.chargedAmount), want, `${what}: chargedAmount ${row.chargedAmount}`);
        };

        // reasoning_effort as a reasoning client sends it: translated for Anthropic (a thinking
        // budget within the default max_tokens of 4096) and Gemini, passed through to OpenAI
        const { data: r, response } = await client.chat.completions
            .create({ model, messages: MSG, reasoning_effort: 'low', mock: U.mock }).withResponse();
        checkUsage(r.usage, 'not streamed');
        const up = await lastUp(model);
        if (isGpt(model)) assert.equal(up.reasoning_effort, 'low');
        else if (isClaude(model)) assert.deepEqual(up.thinking, { type: 'enabled', budget_tokens: 1024 });
        else assert.deepEqual(up.generationConfig.thinkingConfig, { thinkingBudget: 1024, includeThoughts: true });
        if (!isGpt(model)) {
            // the mock's thinking comes back as reasoning_content, apart from the content
            assert.equal(r.choices[0].message.reasoning_content, 'think0 think1 ');
            assert.equal(r.choices[0].message.content, TEXT);
        }
        assert.equal(h.usdToNano(response.headers.get('x-modelswitch-cost')), want,
            `x-modelswitch-cost ${response.headers.get('x-modelswitch-cost')}`);
        await checkRow(response.headers.get('x-request-id'), 'not streamed');

        const { data: stream, response: sres } = await client.chat.completions.create({
            model, messages: MSG, mock: U.mock, stream: true, stream_options: { include_usage: true } }).withResponse();
        let usage = null;
        for await (const c of stream) if (c.usage) usage = c.usage;
        assert.ok(usage, 'no usage chunk');
        checkUsage(usage, 'streamed');
        assert.equal(h.usdToNano(usage.cost), want, `streamed cost ${usage.cost}`);
        await checkRow(sres.headers.get('x-request-id'), 'streamed');
    });
}
