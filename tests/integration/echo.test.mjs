// The built-in echo provider (no network): its reply text, its token counting rule, max_tokens
// truncation, its stream framing, and its embeddings. The expected numbers are computed here from
// the rule in the contract (harness.echoTokens), independently of the gateway's code.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    gw = await h.startGateway({
        mock: false,
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const chat = (body) => h.post(gw, '/v1/chat/completions', key, { model: 'echo-1', ...body });

test('the contract example: "hi" -> "You said: hi", prompt 8, completion 4', T, async () => {
    const res = await chat({ messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 200, res.text);
    assert.ok(res.headers.get('x-request-id'));
    const j = res.json;
    assert.equal(j.object, 'chat.completion');
    assert.equal(typeof j.id, 'string');
    assert.equal(typeof j.created, 'number');
    assert.equal(typeof j.model, 'string');
    assert.equal(j.choices.length, 1);
    assert.equal(j.choices[0].index, 0);
    assert.equal(j.choices[0].message.role, 'assistant');
    assert.equal(j.choices[0].message.content, 'You said: hi');
    assert.equal(j.choices[0].finish_reason, 'stop');
    assert.deepEqual(j.usage, { ...j.usage, prompt_tokens: 8, completion_tokens: 4, total_tokens: 12 });
});

test('token rule: letter/digit runs, single punctuation and multi-byte characters', T, async () => {
    const messages = [
        { role: 'system', content: 'Be brief, please!' },
        { role: 'user', content: 'first question' },
        { role: 'assistant', content: 'an answer' },
        { role: 'user', content: 'Héllo, wörld_42 ✓ (x+y)=z  tab\there 日本語' },
    ];
    const res = await chat({ messages });
    assert.equal(res.status, 200, res.text);
    const reply = 'You said: ' + messages[3].content;
    assert.equal(res.json.choices[0].message.content, reply);
    assert.equal(res.json.usage.prompt_tokens, h.echoPromptTokens(messages));
    assert.equal(res.json.usage.completion_tokens, h.countEchoTokens(reply));
    assert.equal(res.json.usage.total_tokens,
        h.echoPromptTokens(messages) + h.countEchoTokens(reply));
    // Sanity check of the rule itself (so a bug in the helper cannot hide one in the gateway).
    assert.equal(h.countEchoTokens('Héllo, wörld_42 ✓'), 10);
    assert.equal(h.countEchoTokens('日本語'), 3);
});

test('the reply answers the last user message, not a later assistant one', T, async () => {
    const messages = [
        { role: 'user', content: 'one' },
        { role: 'user', content: 'two three' },
        { role: 'assistant', content: 'four' },
    ];
    const res = await chat({ messages });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'You said: two three');
    assert.equal(res.json.usage.prompt_tokens, 3 + (4 + 1) + (4 + 2) + (4 + 1));
});

test('max_tokens truncates the reply and sets finish_reason "length"', T, async () => {
    const res = await chat({ max_tokens: 4, messages: [{ role: 'user', content: 'alpha beta gamma' }] });
    assert.equal(res.status, 200, res.text);
    const c = res.json.choices[0];
    assert.equal(c.finish_reason, 'length');
    // The first four tokens of "You said: alpha beta gamma" are You, said, ":", alpha.
    assert.equal(c.message.content.trimEnd(), 'You said: alpha');
    assert.equal(res.json.usage.completion_tokens, 4);
    assert.equal(res.json.usage.prompt_tokens, 3 + 4 + 3);
});

test('max_tokens larger than the reply changes nothing', T, async () => {
    const res = await chat({ max_tokens: 50, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'You said: hi');
    assert.equal(res.json.choices[0].finish_reason, 'stop');
    assert.equal(res.json.usage.completion_tokens, 4);
});

test('streaming: a role chunk, one chunk per token, a finish chunk, [DONE]', T, async () => {
    const text = 'stream me, please';
    const res = await chat({ stream: true, messages: [{ role: 'user', content: text }] });
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1);
    assert.ok(chunks.every((e) => e.object === 'chat.completion.chunk'));
    assert.ok(chunks.every((e) => !e.usage), 'no usage chunk unless asked');
    assert.equal(new Set(chunks.map((e) => e.id)).size, 1, 'one id for the whole stream');
    assert.equal(chunks[0].choices[0].delta.role, 'assistant', 'first chunk carries the role');
    const last = chunks.at(-1);
    assert.equal(last.choices[0].finish_reason, 'stop');
    const reply = 'You said: ' + text;
    const tokenChunks = chunks.filter((e) => (e.choices[0].delta.content ?? '') !== '');
    assert.equal(tokenChunks.length, h.countEchoTokens(reply), 'one chunk per token');
    assert.equal(h.streamContent(events), reply);
    for (const e of tokenChunks) {
        assert.equal(h.countEchoTokens(e.choices[0].delta.content), 1,
            `chunk holds one token: ${JSON.stringify(e.choices[0].delta.content)}`);
    }
});

test('streaming with include_usage: a usage chunk (choices: []) before [DONE]', T, async () => {
    const messages = [{ role: 'user', content: 'count these tokens' }];
    const res = await chat({ stream: true, stream_options: { include_usage: true }, messages });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    const u = events.at(-2);
    assert.deepEqual(u.choices, []);
    const reply = 'You said: count these tokens';
    assert.equal(u.usage.prompt_tokens, h.echoPromptTokens(messages));
    assert.equal(u.usage.completion_tokens, h.countEchoTokens(reply));
    assert.equal(u.usage.total_tokens, u.usage.prompt_tokens + u.usage.completion_tokens);
    assert.equal(events.filter((e) => e !== '[DONE]' && e.usage).length, 1);
    assert.equal(h.streamContent(events), reply);
});

test('streaming with max_tokens stops early with finish_reason "length"', T, async () => {
    const res = await chat({ stream: true, max_tokens: 3, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'a b c d' }] });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events).trimEnd(), 'You said:');
    const fin = events.filter((e) => e !== '[DONE]' && e.choices.length && e.choices[0].finish_reason);
    assert.equal(fin.length, 1);
    assert.equal(fin[0].choices[0].finish_reason, 'length');
    assert.equal(events.at(-2).usage.completion_tokens, 3);
});

test('embeddings: 8 unit-length dimensions per input, prompt_tokens = tokens of the inputs', T, async () => {
    const input = ['hello world', 'Héllo, wörld!', 'hello world'];
    const res = await h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.object, 'list');
    assert.equal(res.json.data.length, 3);
    res.json.data.forEach((d, i) => {
        assert.equal(d.object, 'embedding');
        assert.equal(d.index, i);
        assert.equal(d.embedding.length, 8);
        assert.ok(d.embedding.every((x) => typeof x === 'number' && Number.isFinite(x)));
        const norm = Math.hypot(...d.embedding);
        assert.ok(Math.abs(norm - 1) < 1e-3, `unit length, got ${norm}`);
    });
    assert.deepEqual(res.json.data[0].embedding, res.json.data[2].embedding, 'deterministic');
    assert.notDeepEqual(res.json.data[0].embedding, res.json.data[1].embedding);
    const tokens = input.reduce((n, s) => n + h.countEchoTokens(s), 0);
    assert.equal(res.json.usage.prompt_tokens, tokens);
    assert.equal(res.json.usage.total_tokens, tokens);
});

test('embeddings: a single string input and base64 encoding (float32 little-endian)', T, async () => {
    const f = await h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input: 'same text' });
    const b = await h.post(gw, '/v1/embeddings', key,
        { model: 'echo-embed-1', input: 'same text', encoding_format: 'base64' });
    assert.equal(f.status, 200, f.text);
    assert.equal(b.status, 200, b.text);
    assert.equal(f.json.data.length, 1);
    assert.equal(f.json.usage.prompt_tokens, 2);
    const s = b.json.data[0].embedding;
    assert.equal(typeof s, 'string');
    const buf = Buffer.from(s, 'base64');
    assert.equal(buf.length, 8 * 4);
    const decoded = Array.from({ length: 8 }, (_, i) => buf.readFloatLE(i * 4));
    decoded.forEach((x, i) => assert.equal(x, Math.fround(f.json.data[0].embedding[i]), `dim ${i}`));
});

test('embeddings: invalid input and encoding are 400 with the right param', T, async () => {
    const noInput = await h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1' });
    h.assertError(assert, noInput, 400, 'invalid_request_error', 'missing_required_parameter', 'input');
    const badInput = await h.post(gw, '/v1/embeddings', key, { model: 'echo-embed-1', input: 5 });
    h.assertError(assert, badInput, 400, 'invalid_request_error', 'invalid_parameter', 'input');
    const badEnc = await h.post(gw, '/v1/embeddings', key,
        { model: 'echo-embed-1', input: 'x', encoding_format: 'int8' });
    h.assertError(assert, badEnc, 400, 'invalid_request_error', 'invalid_parameter', 'encoding_format');
});
