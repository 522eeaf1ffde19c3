// The mock upstream's provider personalities, called directly (no gateway): OpenAI usage details,
// the Azure OpenAI routes, Anthropic's Messages API and Google's Gemini API. These tests document
// the wire shapes, streaming event order, faults and header requirements that the gateway's
// adapters are built and tested against (tests/mock/README.md is the reference).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let mock;

before(async () => { mock = await h.startMock(); });
after(async () => { await mock?.stop(); });

/** POSTs body (an object, or a raw string) to the mock; returns {status, headers, text, json}. */
async function call(path, body, headers = {}) {
    const res = await fetch(mock.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: typeof body === 'string' ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(h.scaled(10000)),
    });
    const text = await res.text();
    let json;
    try { json = JSON.parse(text); } catch { json = undefined; }
    return { status: res.status, headers: res.headers, text, json };
}

/** Sends one request on a raw connection and reads until the mock closes it: {closed, text}. */
async function rawUntilClosed(path, body, headers = {}) {
    const c = await h.RawConn.open(mock.port);
    const b = JSON.stringify(body);
    const extra = Object.entries(headers).map(([k, v]) => `${k}: ${v}\r\n`).join('');
    await c.write(`POST ${path} HTTP/1.1\r\nHost: mock\r\nContent-Type: application/json\r\n${extra}` +
        `Content-Length: ${Buffer.byteLength(b)}\r\n\r\n${b}`);
    const closed = await c.waitClosed();
    c.destroy();
    return { closed, text: c.data.toString('utf8') };
}

/** Named SSE events: [{event, data}] with data parsed as JSON (event is null without a name). */
function namedEvents(text) {
    const out = [];
    for (const block of text.split('\n\n')) {
        if (!block.trim()) continue;
        let event = null;
        const data = [];
        for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
        }
        out.push({ event, data: data.length ? JSON.parse(data.join('\n')) : null });
    }
    return out;
}

// ---------------------------------------------------------------------------------------------
// OpenAI usage details

const chat = (mockOpts, extra = {}) => ({
    model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], mock: mockOpts, ...extra,
});

test('openai: without detail options the usage has exactly the three counts', T, async () => {
    const r = await call('/v1/chat/completions', chat({}));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
});

test('openai: cached_tokens and reasoning_tokens give the details objects', T, async () => {
    const r = await call('/v1/chat/completions',
        chat({ prompt_tokens: 100, cached_tokens: 60, reasoning_tokens: 7, chunks: 2 }));
    assert.equal(r.status, 200);
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 ');
    // prompt_tokens includes the cached ones; completion_tokens includes the reasoning ones.
    assert.deepEqual(r.json.usage, {
        prompt_tokens: 100, completion_tokens: 9, total_tokens: 109,
        prompt_tokens_details: { cached_tokens: 60 },
        completion_tokens_details: { reasoning_tokens: 7 },
    });
    const only = await call('/v1/chat/completions', chat({ cached_tokens: 0 }));
    assert.deepEqual(only.json.usage, {
        prompt_tokens: 11, completion_tokens: 3, total_tokens: 14,
        prompt_tokens_details: { cached_tokens: 0 },
    });
});

test('openai: the stream usage chunk carries the details too', T, async () => {
    const r = await call('/v1/chat/completions', chat({ prompt_tokens: 20, cached_tokens: 5,
        reasoning_tokens: 4 }, { stream: true, stream_options: { include_usage: true } }));
    assert.equal(r.status, 200);
    const ev = h.sseEvents(r.text);
    assert.equal(ev.at(-1), '[DONE]');
    const usage = ev.at(-2);
    assert.deepEqual(usage.choices, []);
    assert.deepEqual(usage.usage, {
        prompt_tokens: 20, completion_tokens: 7, total_tokens: 27,
        prompt_tokens_details: { cached_tokens: 5 },
        completion_tokens_details: { reasoning_tokens: 4 },
    });
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 ');
});

test('openai: cached_tokens above the prompt tokens is a bad mock option', T, async () => {
    const r = await call('/v1/chat/completions', chat({ cached_tokens: 12 }));
    assert.equal(r.status, 400);
    assert.equal(r.json.error.code, 'invalid_mock_option');
    const bad = await call('/v1/chat/completions', chat({ reasoning_tokens: -1 }));
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /reasoning_tokens/);
});

// ---------------------------------------------------------------------------------------------
// OpenAI tool calls and output limits

test('openai: tool_call answers with message.tool_calls after the text', T, async () => {
    const r = await call('/v1/chat/completions',
        chat({ chunks: 1, tool_call: { name: 'get_weather', input: { city: 'Paris' } } }));
    assert.equal(r.status, 200);
    const [c] = r.json.choices;
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, 'tok0 ');
    const n = r.json.id.match(/^chatcmpl-mock-(\d+)$/)[1];
    // arguments are a JSON string, as OpenAI sends them; the id shares the completion's number
    assert.deepEqual(c.message.tool_calls, [{ id: `call_mock_${n}`, type: 'function',
        function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }]);
    // one text token + 2 for the call
    assert.deepEqual(r.json.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });

    // no text: content null; args (Gemini's name) or no arguments at all are taken too
    const bare = await call('/v1/chat/completions', chat({ chunks: 0, tool_call: { name: 'f' } }));
    assert.equal(bare.json.choices[0].message.content, null);
    assert.equal(bare.json.choices[0].message.tool_calls[0].function.arguments, '{}');
    assert.equal(bare.json.usage.completion_tokens, 2);
    const args = await call('/v1/chat/completions', chat({ tool_call: { name: 'f', args: { x: [1, 2] } } }));
    assert.equal(args.json.choices[0].message.tool_calls[0].function.arguments, '{"x":[1,2]}');
    const bad = await call('/v1/chat/completions', chat({ tool_call: { input: {} } }));
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.code, 'invalid_mock_option');
});

test('openai: a streamed tool_call opens the call, then sends its arguments in pieces', T, async () => {
    const r = await call('/v1/chat/completions',
        chat({ chunks: 2, tool_call: { name: 'lookup', input: { q: 'x', n: [1, 2] } } },
            { stream: true, stream_options: { include_usage: true } }));
    assert.equal(r.status, 200);
    const ev = h.sseEvents(r.text);
    assert.equal(ev.at(-1), '[DONE]');
    const deltas = ev.filter((e) => e !== '[DONE]' && e.choices.length).map((e) => e.choices[0]);
    assert.deepEqual(deltas[0].delta, { role: 'assistant', content: '' });
    assert.equal(h.streamContent(ev), 'tok0 tok1 ');
    const calls = deltas.filter((d) => d.delta.tool_calls).map((d) => d.delta.tool_calls);
    assert.ok(calls.every((tc) => tc.length === 1 && tc[0].index === 0));
    const n = ev[0].id.match(/^chatcmpl-mock-(\d+)$/)[1];
    assert.deepEqual(calls[0][0], { index: 0, id: `call_mock_${n}`, type: 'function',
        function: { name: 'lookup', arguments: '' } });
    // the rest carry only the index and argument pieces, which join to the arguments' JSON
    const pieces = calls.slice(1).map((tc) => {
        assert.deepEqual(Object.keys(tc[0]).sort(), ['function', 'index']);
        assert.deepEqual(Object.keys(tc[0].function), ['arguments']);
        return tc[0].function.arguments;
    });
    assert.ok(pieces.length >= 2, `arguments in ${pieces.length} piece(s)`);
    assert.ok(pieces.every((p) => p.length > 0));
    assert.deepEqual(JSON.parse(pieces.join('')), { q: 'x', n: [1, 2] });
    // text first, then the call, then the finish chunk alone
    assert.ok(deltas.findIndex((d) => d.delta.tool_calls) > deltas.findLastIndex((d) => d.delta.content));
    assert.deepEqual(deltas.at(-1), { index: 0, delta: {}, logprobs: null, finish_reason: 'tool_calls' });
    assert.equal(deltas.filter((d) => d.finish_reason).length, 1);
    assert.deepEqual(ev.at(-2).usage, { prompt_tokens: 11, completion_tokens: 4, total_tokens: 15 });
});

test('openai: max_tokens or max_completion_tokens below chunks cuts the answer with length', T, async () => {
    const r = await call('/v1/chat/completions', chat({ chunks: 5 }, { max_tokens: 2 }));
    assert.equal(r.json.choices[0].finish_reason, 'length');
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 ');
    assert.deepEqual(r.json.usage, { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 });
    // the newer name works alike; with both, the smaller wins
    const mct = await call('/v1/chat/completions', chat({}, { max_completion_tokens: 1 }));
    assert.equal(mct.json.choices[0].finish_reason, 'length');
    assert.equal(mct.json.choices[0].message.content, 'tok0 ');
    assert.equal(mct.json.usage.completion_tokens, 1);
    const both = await call('/v1/chat/completions', chat({}, { max_tokens: 1, max_completion_tokens: 2 }));
    assert.equal(both.json.choices[0].message.content, 'tok0 ');
    // a cut answer has no tool call: the model ran out of room before it
    const tool = await call('/v1/chat/completions', chat({ tool_call: { name: 'f' } }, { max_tokens: 2 }));
    assert.equal(tool.json.choices[0].finish_reason, 'length');
    assert.equal(tool.json.choices[0].message.tool_calls, undefined);
    assert.equal(tool.json.usage.completion_tokens, 2);
    // a limit at or above chunks (or none) changes nothing; reasoning tokens still add up
    for (const extra of [{ max_tokens: 3 }, { max_completion_tokens: 100 }, {}]) {
        const same = await call('/v1/chat/completions', chat({}, extra));
        assert.equal(same.json.choices[0].finish_reason, 'stop');
        assert.equal(same.json.choices[0].message.content, 'tok0 tok1 tok2 ');
        assert.deepEqual(same.json.usage, { prompt_tokens: 11, completion_tokens: 3, total_tokens: 14 });
    }
    const reason = await call('/v1/chat/completions', chat({ reasoning_tokens: 4 }, { max_tokens: 1 }));
    assert.equal(reason.json.usage.completion_tokens, 5);

    // streamed: the cut tokens, a length finish chunk, and usage of the tokens sent
    const s = await call('/v1/chat/completions', chat({ chunks: 4 },
        { max_completion_tokens: 2, stream: true, stream_options: { include_usage: true } }));
    const ev = h.sseEvents(s.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(h.streamContent(ev), 'tok0 tok1 ');
    const finishes = ev.filter((e) => e !== '[DONE]' && e.choices[0]?.finish_reason);
    assert.deepEqual(finishes.map((e) => e.choices[0].finish_reason), ['length']);
    assert.deepEqual(ev.at(-2).usage, { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 });
});

test('config next: armed options answer the next inference request only, of any family', T, async () => {
    const TC = { chunks: 0, tool_call: { name: 'get_weather', input: { city: 'Oslo' } } };
    const cfg = await mock.config({ next: TC });
    assert.deepEqual(cfg.next, TC);
    const first = await call('/v1/chat/completions', chat(undefined));
    assert.equal(first.json.choices[0].finish_reason, 'tool_calls');
    assert.equal(first.json.choices[0].message.tool_calls[0].function.arguments, '{"city":"Oslo"}');
    // used up: the next request is answered normally, and the config no longer shows it
    const second = await call('/v1/chat/completions', chat(undefined));
    assert.equal(second.json.choices[0].finish_reason, 'stop');
    assert.equal(second.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal((await mock.config({})).next, undefined);
    // the Anthropic personality takes it the same way
    await mock.config({ next: TC });
    const anth = await call('/v1/messages', { model: 'claude-x', max_tokens: 64,
        messages: [{ role: 'user', content: 'hi' }] }, { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' });
    assert.equal(anth.status, 200, anth.text);
    assert.equal(anth.json.stop_reason, 'tool_use');
    assert.deepEqual(anth.json.content.find((b) => b.type === 'tool_use').input, { city: 'Oslo' });
    // a body's own mock wins, and the armed options are used up all the same
    await mock.config({ next: TC });
    const own = await call('/v1/chat/completions', chat({ chunks: 1 }));
    assert.equal(own.json.choices[0].finish_reason, 'stop');
    assert.equal(own.json.choices[0].message.content, 'tok0 ');
    assert.equal((await call('/v1/chat/completions', chat(undefined))).json.choices[0].finish_reason, 'stop');
    // null disarms; anything but an object or null is refused and changes nothing
    await mock.config({ next: TC });
    assert.equal((await mock.config({ next: null })).next, undefined);
    assert.equal((await call('/v1/chat/completions', chat(undefined))).json.choices[0].finish_reason, 'stop');
    const bad = await fetch(mock.url + '/_mock/config', { method: 'POST', body: JSON.stringify({ next: 5, delay_ms: 7 }) });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).error.code, 'invalid_config');
    assert.equal((await mock.config({})).delay_ms, 0);
});

test('config chunks: a stream\'s chunks for requests without a mock member; a body\'s own wins', T, async () => {
    const anthHdr = { 'x-api-key': 'k', 'anthropic-version': '2023-06-01' };
    const msgs = { model: 'claude-x', max_tokens: 64, stream: true, messages: [{ role: 'user', content: 'hi' }] };
    try {
        const cfg = await mock.config({ chunks: 5 });
        assert.equal(cfg.chunks, 5);
        assert.equal(cfg.chunk_delay_ms, 0);
        const s = await call('/v1/chat/completions', { ...chat(undefined), stream: true });
        assert.equal(h.streamContent(h.sseEvents(s.text)), 'tok0 tok1 tok2 tok3 tok4 ');
        // Anthropic's personality too: five text deltas
        const a = await call('/v1/messages', msgs, anthHdr);
        assert.equal(a.status, 200, a.text);
        assert.equal((a.text.match(/"text_delta"/g) || []).length, 5);
        // a body's own chunks win
        const own = await call('/v1/chat/completions', chat({ chunks: 1 }));
        assert.equal(own.json.choices[0].message.content, 'tok0 ');
        // out of range: refused, nothing changes
        const bad = await fetch(mock.url + '/_mock/config', { method: 'POST', body: JSON.stringify({ chunks: 10001 }) });
        assert.equal(bad.status, 400);
        assert.equal((await mock.config({})).chunks, 5);
    } finally {
        await mock.config({ chunks: 3, chunk_delay_ms: 0 });
    }
    assert.equal((await call('/v1/chat/completions', chat(undefined))).json.choices[0].message.content, 'tok0 tok1 tok2 ');
});

// ---------------------------------------------------------------------------------------------
// Azure OpenAI

const AZ = '/openai/deployments/my-gpt4o';
const AZ_KEY = { 'api-key': 'az-secret' };

test('azure: chat answers like the OpenAI route, options and streaming included', T, async () => {
    const r = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({ chunks: 2, cached_tokens: 3 }), AZ_KEY);
    assert.equal(r.status, 200);
    assert.equal(r.json.object, 'chat.completion');
    assert.equal(r.json.model, 'gpt-4o');
    assert.equal(r.json.choices[0].message.content, 'tok0 tok1 ');
    assert.deepEqual(r.json.usage.prompt_tokens_details, { cached_tokens: 3 });

    const s = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({}, { stream: true, stream_options: { include_usage: true } }), AZ_KEY);
    assert.equal(s.status, 200);
    assert.match(s.headers.get('content-type'), /text\/event-stream/);
    const ev = h.sseEvents(s.text);
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(h.streamContent(ev), 'tok0 tok1 tok2 ');

    const f = await call(`${AZ}/chat/completions?api-version=2024-10-21`,
        chat({ status: 429, retry_after: 3 }), AZ_KEY);
    assert.equal(f.status, 429);
    assert.equal(f.headers.get('retry-after'), '3');
    assert.equal(f.json.error.type, 'rate_limit_error');
});

test('azure: embeddings answer like the OpenAI route', T, async () => {
    const r = await call(`${AZ}/embeddings?api-version=2024-10-21`,
        { input: ['a', 'b'], mock: { dims: 2 } }, AZ_KEY);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.data.map((d) => d.embedding), [[0.11, 0.12], [0.21, 0.22]]);
});

test('azure: the recording keeps the api-key header, the deployment path and the query', T, async () => {
    await mock.clear();
    await call(`${AZ}/chat/completions?api-version=2024-10-21&x=1`, chat({}), AZ_KEY);
    const [rec] = await mock.requests();
    assert.equal(rec.path, `${AZ}/chat/completions`);
    assert.equal(rec.query, 'api-version=2024-10-21&x=1');
    assert.equal(rec.headers['api-key'], 'az-secret');
});

test('azure: no api-version, or a path Azure does not serve, gets Azure\'s 404', T, async () => {
    for (const p of [`${AZ}/chat/completions`, `${AZ}/chat/completions?api-version=`,
        `${AZ}/chat/completions?x=1&apiversion=1`, `${AZ}/completionz?api-version=1`,
        '/openai/deployments//chat/completions?api-version=1', `${AZ}?api-version=1`]) {
        const r = await call(p, chat({}), AZ_KEY);
        assert.equal(r.status, 404, p);
        assert.deepEqual(r.json, { error: { code: '404', message: 'Resource not found' } }, p);
    }
    // The check comes first: even a fault option does not change it.
    const r = await call(`${AZ}/chat/completions`, chat({ status: 500 }), AZ_KEY);
    assert.equal(r.status, 404);
});

// ---------------------------------------------------------------------------------------------
// Anthropic Messages API

const ANT_H = { 'x-api-key': 'sk-ant-test', 'anthropic-version': '2023-06-01' };
const msg = (mockOpts, extra = {}) => ({
    model: 'claude-sonnet-4-5', max_tokens: 100,
    messages: [{ role: 'user', content: 'hello there friend' }], mock: mockOpts, ...extra,
});
const ant = (body, headers = ANT_H) => call('/v1/messages', body, headers);

test('anthropic: a plain answer, input tokens counted from the request text', T, async () => {
    const r = await ant(msg({}, { system: 'be brief' }));
    assert.equal(r.status, 200);
    assert.match(r.headers.get('request-id'), /^req_/);
    assert.match(r.json.id, /^msg_/);
    assert.deepEqual({ ...r.json, id: 'x' }, {
        id: 'x', type: 'message', role: 'assistant', model: 'claude-sonnet-4-5',
        content: [{ type: 'text', text: 'tok0 tok1 tok2 ' }],
        stop_reason: 'end_turn', stop_sequence: null,
        usage: {
            input_tokens: 5, output_tokens: 3, cache_creation_input_tokens: 0,
            cache_read_input_tokens: 0,
            cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
        },
    });
});

test('anthropic: usage options, the 1h cache part and count_tokens', T, async () => {
    const r = await ant(msg({ input_tokens: 50, cache_read_input_tokens: 1000,
        cache_creation_input_tokens: 300, cache_creation_1h_input_tokens: 100, chunks: 1 }));
    assert.deepEqual(r.json.usage, {
        input_tokens: 50, output_tokens: 1, cache_creation_input_tokens: 300,
        cache_read_input_tokens: 1000,
        cache_creation: { ephemeral_5m_input_tokens: 200, ephemeral_1h_input_tokens: 100 },
    });
    const bad = await ant(msg({ cache_creation_1h_input_tokens: 1 }));
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.type, 'invalid_request_error');

    const body = { model: 'claude-sonnet-4-5', system: [{ type: 'text', text: 'one two' }],
        messages: [{ role: 'user', content: [{ type: 'text', text: 'three four five' }] }] };
    const ct = await call('/v1/messages/count_tokens', body, ANT_H);
    assert.equal(ct.status, 200);
    assert.deepEqual(ct.json, { input_tokens: 5 });
    const ct2 = await call('/v1/messages/count_tokens', { ...body, mock: { input_tokens: 42 } }, ANT_H);
    assert.deepEqual(ct2.json, { input_tokens: 42 });
    // count_tokens and the answer agree on the same text.
    const m = await ant({ ...body, max_tokens: 10 });
    assert.equal(m.json.usage.input_tokens, 5);
});

test('anthropic: thinking, tool_use and the stop reasons', T, async () => {
    const r = await ant(msg({ thinking: true, chunks: 2,
        tool_call: { name: 'get_weather', input: { city: 'Paris' } } }));
    assert.equal(r.status, 200);
    assert.deepEqual(r.json.content.map((b) => b.type), ['thinking', 'text', 'tool_use']);
    assert.equal(r.json.content[0].thinking, 'think0 think1 ');
    assert.ok(r.json.content[0].signature.length > 0);
    assert.match(r.json.content[2].id, /^toolu_/);
    assert.equal(r.json.content[2].name, 'get_weather');
    assert.deepEqual(r.json.content[2].input, { city: 'Paris' });
    assert.equal(r.json.stop_reason, 'tool_use');
    assert.equal(r.json.usage.output_tokens, 2 + 2 + 2);

    const cut = await ant(msg({ chunks: 5, tool_call: { name: 'f', input: {} } }, { max_tokens: 2 }));
    assert.equal(cut.json.stop_reason, 'max_tokens');
    assert.deepEqual(cut.json.content, [{ type: 'text', text: 'tok0 tok1 ' }]);
    assert.equal(cut.json.usage.output_tokens, 2);

    const ss = await ant(msg({ stop_sequence: '###' }));
    assert.equal(ss.json.stop_reason, 'stop_sequence');
    assert.equal(ss.json.stop_sequence, '###');

    const out = await ant(msg({ output_tokens: 77 }));
    assert.equal(out.json.usage.output_tokens, 77);
});

test('anthropic: the stream event order, deltas and cumulative usage', T, async () => {
    const r = await ant(msg({ thinking: true, chunks: 3, input_tokens: 9,
        cache_read_input_tokens: 4, tool_call: { name: 'lookup', input: { q: 'x', n: [1, 2] } } },
    { stream: true }));
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    const ev = namedEvents(r.text);
    for (const e of ev) assert.equal(e.event, e.data.type, 'event name = data.type');
    const names = ev.map((e) => e.event);
    assert.deepEqual(names, [
        'message_start',
        'content_block_start', 'ping', 'content_block_delta', 'content_block_delta',
        'content_block_delta', 'content_block_stop',
        'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_delta',
        'content_block_stop',
        'content_block_start', 'content_block_delta', 'content_block_delta', 'content_block_stop',
        'message_delta', 'message_stop',
    ]);
    const start = ev[0].data.message;
    assert.deepEqual(start.content, []);
    assert.equal(start.stop_reason, null);
    assert.deepEqual(start.usage, {
        input_tokens: 9, output_tokens: 1, cache_creation_input_tokens: 0,
        cache_read_input_tokens: 4,
        cache_creation: { ephemeral_5m_input_tokens: 0, ephemeral_1h_input_tokens: 0 },
    });
    const deltas = (i) => ev.filter((e) => e.event === 'content_block_delta' && e.data.index === i)
        .map((e) => e.data.delta);
    assert.deepEqual(ev[1].data.content_block, { type: 'thinking', thinking: '', signature: '' });
    assert.equal(deltas(0).filter((d) => d.type === 'thinking_delta').map((d) => d.thinking).join(''),
        'think0 think1 ');
    assert.equal(deltas(0).at(-1).type, 'signature_delta');
    assert.equal(deltas(1).map((d) => d.text).join(''), 'tok0 tok1 tok2 ');
    assert.ok(deltas(1).every((d) => d.type === 'text_delta'));
    const toolStart = ev.find((e) => e.event === 'content_block_start' && e.data.index === 2);
    assert.deepEqual({ ...toolStart.data.content_block, id: 'x' },
        { type: 'tool_use', id: 'x', name: 'lookup', input: {} });
    const pieces = deltas(2);
    assert.ok(pieces.length >= 2 && pieces.every((d) => d.type === 'input_json_delta'));
    assert.deepEqual(JSON.parse(pieces.map((d) => d.partial_json).join('')), { q: 'x', n: [1, 2] });
    assert.deepEqual(ev.at(-2).data, { type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null }, usage: { output_tokens: 7 } });
});

test('anthropic: a stream without content blocks still pings and ends', T, async () => {
    const r = await ant(msg({ chunks: 0 }, { stream: true }));
    assert.deepEqual(namedEvents(r.text).map((e) => e.event),
        ['message_start', 'ping', 'message_delta', 'message_stop']);
    const nu = await ant(msg({ no_usage: true }, { stream: true }));
    const ev = namedEvents(nu.text);
    assert.equal(ev[0].data.message.usage, undefined);
    assert.equal(ev.at(-2).data.usage, undefined);
    const plain = await ant(msg({ no_usage: true }));
    assert.equal(plain.json.usage, undefined);
});

test('anthropic: status faults use the Anthropic error envelope and types', T, async () => {
    const types = { 400: 'invalid_request_error', 401: 'authentication_error',
        403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large',
        429: 'rate_limit_error', 500: 'api_error', 529: 'overloaded_error' };
    for (const [status, type] of Object.entries(types)) {
        const r = await ant(msg({ status: Number(status), error_message: 'boom' }, { stream: true }));
        assert.equal(r.status, Number(status));
        assert.deepEqual({ ...r.json, request_id: 'x' },
            { type: 'error', error: { type, message: 'boom' }, request_id: 'x' });
        assert.equal(r.json.request_id, r.headers.get('request-id'));
    }
    const rl = await ant(msg({ status: 429 }));
    assert.equal(rl.headers.get('retry-after'), '1');
    assert.equal(rl.headers.get('anthropic-ratelimit-requests-remaining'), '0');
    assert.match(rl.headers.get('anthropic-ratelimit-requests-reset'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const rl2 = await ant(msg({ status: 429, retry_after: 7 }));
    assert.equal(rl2.headers.get('retry-after'), '7');
    const five = await ant(msg({ status: 503 }));
    assert.equal(five.headers.get('anthropic-ratelimit-requests-remaining'), null);
});

test('anthropic: stream_error_after sends an error event mid-stream', T, async () => {
    const r = await ant(msg({ chunks: 4, stream_error_after: 2 }, { stream: true }));
    assert.equal(r.status, 200);
    const ev = namedEvents(r.text);
    assert.deepEqual(ev.map((e) => e.event), ['message_start', 'content_block_start', 'ping',
        'content_block_delta', 'content_block_delta', 'error']);
    assert.deepEqual(ev.at(-1).data,
        { type: 'error', error: { type: 'overloaded_error', message: 'Overloaded' } });
});

test('anthropic: cut_after closes mid-stream; invalid_json, close, delay', T, async () => {
    const cut = await rawUntilClosed('/v1/messages', msg({ chunks: 4, cut_after: 2 }, { stream: true }),
        ANT_H);
    assert.equal(cut.closed, true);
    assert.equal((cut.text.match(/"text_delta"/g) || []).length, 2);
    assert.ok(!cut.text.includes('message_stop') && !cut.text.endsWith('0\r\n\r\n'));
    const bad = await ant(msg({ invalid_json: true }));
    assert.equal(bad.status, 200);
    assert.equal(bad.text, '{"this is": not json');
    await assert.rejects(ant(msg({ close: true })));
    const t0 = Date.now();
    const slow = await ant(msg({ delay_ms: 200 }));
    assert.equal(slow.status, 200);
    assert.ok(Date.now() - t0 >= 190);
});

test('anthropic: missing x-api-key, anthropic-version or max_tokens are refused', T, async () => {
    const noKey = await ant(msg({}), { 'anthropic-version': '2023-06-01' });
    assert.equal(noKey.status, 401);
    assert.equal(noKey.json.error.type, 'authentication_error');
    // Bearer auth is OpenAI's, not Anthropic's.
    const bearer = await ant(msg({}), { authorization: 'Bearer k', 'anthropic-version': '2023-06-01' });
    assert.equal(bearer.status, 401);
    const noVer = await ant(msg({}), { 'x-api-key': 'k' });
    assert.equal(noVer.status, 400);
    assert.equal(noVer.json.error.type, 'invalid_request_error');
    assert.match(noVer.json.error.message, /anthropic-version/);
    const b = msg({ status: 500 });
    delete b.max_tokens;
    const noMax = await ant(b); // refused before any fault applies
    assert.equal(noMax.status, 400);
    assert.match(noMax.json.error.message, /max_tokens/);
    const noMsgs = await ant({ model: 'm', max_tokens: 5 });
    assert.equal(noMsgs.status, 400);
    assert.match(noMsgs.json.error.message, /messages/);
    const notJson = await ant('{nope');
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json.type, 'error');
    const badOpt = await ant(msg({ chunks: 'x' }));
    assert.equal(badOpt.status, 400);
    assert.equal(badOpt.json.error.type, 'invalid_request_error');
    // count_tokens needs the headers too, but no max_tokens.
    const ct = await call('/v1/messages/count_tokens', { model: 'm', messages: [] }, { 'x-api-key': 'k' });
    assert.equal(ct.status, 400);
});

// ---------------------------------------------------------------------------------------------
// Gemini

const GEM_H = { 'x-goog-api-key': 'goog-test' };
const GM = '/v1beta/models/gemini-2.5-flash';
const gen = (mockOpts, extra = {}) => ({
    contents: [{ role: 'user', parts: [{ text: 'hi' }] }], mock: mockOpts, ...extra,
});
/** The JSON payloads of an SSE body, checking Google's CRLF event separators. */
function gemEvents(text) {
    assert.ok(text.endsWith('\r\n\r\n'), 'events end with CRLF CRLF');
    return text.split('\r\n\r\n').filter((b) => b).map((b) => {
        assert.ok(b.startsWith('data: '), b);
        return JSON.parse(b.slice(6));
    });
}

test('gemini: generateContent, one part per token, usage and modelVersion', T, async () => {
    const r = await call(`${GM}:generateContent`, gen({}), GEM_H);
    assert.equal(r.status, 200);
    assert.match(r.json.responseId, /^mock-resp-/);
    assert.deepEqual({ ...r.json, responseId: 'x' }, {
        candidates: [{ content: { role: 'model', parts: [{ text: 'tok0 ' }, { text: 'tok1 ' },
            { text: 'tok2 ' }] }, finishReason: 'STOP', index: 0 }],
        usageMetadata: { promptTokenCount: 11, candidatesTokenCount: 3, totalTokenCount: 14 },
        modelVersion: 'gemini-2.5-flash', responseId: 'x',
    });
});

test('gemini: usage options, thought and functionCall parts, finish reasons', T, async () => {
    const r = await call(`${GM}:generateContent`, gen({ prompt_tokens: 100, cached_tokens: 40,
        thoughts_tokens: 30, tool_use_prompt_tokens: 5, chunks: 1, thinking: true,
        tool_call: { name: 'get_weather', args: { city: 'Paris' } } }), GEM_H);
    assert.deepEqual(r.json.candidates[0].content.parts, [
        { text: 'think0 think1 ', thought: true }, { text: 'tok0 ' },
        { functionCall: { name: 'get_weather', args: { city: 'Paris' } } }]);
    assert.equal(r.json.candidates[0].finishReason, 'STOP');
    // candidates: 1 text token + 2 for the function call; total adds thoughts and tool-use prompt.
    assert.deepEqual(r.json.usageMetadata, { promptTokenCount: 100, candidatesTokenCount: 3,
        cachedContentTokenCount: 40, thoughtsTokenCount: 30, toolUsePromptTokenCount: 5,
        totalTokenCount: 138 });

    const cut = await call(`${GM}:generateContent`, gen({ chunks: 5, tool_call: { name: 'f' } },
        { generationConfig: { maxOutputTokens: 2 } }), GEM_H);
    assert.equal(cut.json.candidates[0].finishReason, 'MAX_TOKENS');
    assert.deepEqual(cut.json.candidates[0].content.parts, [{ text: 'tok0 ' }, { text: 'tok1 ' }]);
    for (const fr of ['SAFETY', 'RECITATION', 'OTHER']) {
        const x = await call(`${GM}:generateContent`, gen({ finish_reason: fr }), GEM_H);
        assert.equal(x.json.candidates[0].finishReason, fr);
    }
    const nu = await call(`${GM}:generateContent`, gen({ no_usage: true }), GEM_H);
    assert.equal(nu.json.usageMetadata, undefined);
    const bad = await call(`${GM}:generateContent`, gen({ cached_tokens: 12 }), GEM_H);
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.status, 'INVALID_ARGUMENT');
});

test('gemini: streamGenerateContent?alt=sse, one part per chunk, usage on every chunk', T, async () => {
    const r = await call(`${GM}:streamGenerateContent?alt=sse`, gen({ chunks: 3, thinking: true,
        cached_tokens: 2, tool_call: { name: 'f', args: { x: 1 } } }), GEM_H);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /text\/event-stream/);
    assert.ok(!r.text.includes('[DONE]'));
    const ev = gemEvents(r.text);
    assert.equal(ev.length, 5);
    const parts = ev.map((e) => e.candidates[0].content.parts);
    assert.ok(parts.every((p) => p.length === 1));
    assert.deepEqual(parts.map((p) => p[0]), [{ text: 'think0 think1 ', thought: true },
        { text: 'tok0 ' }, { text: 'tok1 ' }, { text: 'tok2 ' }, { functionCall: { name: 'f', args: { x: 1 } } }]);
    assert.ok(ev.slice(0, -1).every((e) => e.candidates[0].finishReason === undefined));
    assert.equal(ev.at(-1).candidates[0].finishReason, 'STOP');
    // Running usage on each chunk; the last one is the whole answer's.
    assert.deepEqual(ev.map((e) => e.usageMetadata.candidatesTokenCount), [0, 1, 2, 3, 5]);
    assert.deepEqual(ev.at(-1).usageMetadata, { promptTokenCount: 11, candidatesTokenCount: 5,
        cachedContentTokenCount: 2, thoughtsTokenCount: 2, totalTokenCount: 18 });
    assert.ok(ev.every((e) => e.modelVersion === 'gemini-2.5-flash'));
});

test('gemini: streamGenerateContent without alt=sse streams a JSON array', T, async () => {
    const r = await call(`${GM}:streamGenerateContent`, gen({ chunks: 2 }), GEM_H);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /application\/json/);
    assert.equal(r.json.length, 2);
    assert.equal(r.json[1].candidates[0].finishReason, 'STOP');
});

test('gemini: faults: status errors, mid-stream error, cut', T, async () => {
    const names = { 400: 'INVALID_ARGUMENT', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
        429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 503: 'UNAVAILABLE' };
    for (const [status, name] of Object.entries(names)) {
        const r = await call(`${GM}:generateContent`, gen({ status: Number(status), error_message: 'e' }), GEM_H);
        assert.equal(r.status, Number(status));
        assert.deepEqual(r.json, { error: { code: Number(status), message: 'e', status: name } });
    }
    const s = await call(`${GM}:streamGenerateContent?alt=sse`, gen({ chunks: 4, stream_error_after: 2 }), GEM_H);
    assert.equal(s.status, 200);
    const ev = gemEvents(s.text);
    assert.equal(ev.length, 3);
    assert.deepEqual(ev[2], { error: { code: 503,
        message: 'The model is overloaded. Please try again later.', status: 'UNAVAILABLE' } });
    const cut = await rawUntilClosed(`${GM}:streamGenerateContent?alt=sse`, gen({ chunks: 4, cut_after: 1 }), GEM_H);
    assert.equal(cut.closed, true);
    assert.equal((cut.text.match(/"text":"tok/g) || []).length, 1);
    assert.ok(!cut.text.endsWith('0\r\n\r\n'));
    const bad = await call(`${GM}:generateContent`, gen({ invalid_json: true }), GEM_H);
    assert.equal(bad.text, '{"this is": not json');
});

test('gemini: x-goog-api-key, contents and the method are required', T, async () => {
    const noKey = await call(`${GM}:generateContent`, gen({}));
    assert.equal(noKey.status, 403);
    assert.equal(noKey.json.error.status, 'PERMISSION_DENIED');
    const keyInUrl = await call(`${GM}:generateContent?key=goog-test`, gen({}));
    assert.equal(keyInUrl.status, 403);
    const noContents = await call(`${GM}:generateContent`, { mock: { status: 500 } }, GEM_H);
    assert.equal(noContents.status, 400);
    assert.equal(noContents.json.error.status, 'INVALID_ARGUMENT');
    const badMethod = await call(`${GM}:generateStuff`, gen({}), GEM_H);
    assert.equal(badMethod.status, 404);
    assert.equal(badMethod.json.error.status, 'NOT_FOUND');
    const notJson = await call(`${GM}:generateContent`, '[1]', GEM_H);
    assert.equal(notJson.status, 400);
    assert.equal(notJson.json.error.code, 400);
});

test('gemini: batchEmbedContents and embedContent', T, async () => {
    const req = (t) => ({ model: 'models/text-embedding-004', content: { parts: [{ text: t }] } });
    const r = await call('/v1beta/models/text-embedding-004:batchEmbedContents',
        { requests: [req('a'), req('b')], mock: { dims: 3 } }, GEM_H);
    assert.equal(r.status, 200);
    assert.deepEqual(r.json, { embeddings: [{ values: [0.11, 0.12, 0.13] }, { values: [0.21, 0.22, 0.23] }] });
    const one = await call('/v1beta/models/text-embedding-004:embedContent', req('a'), GEM_H);
    assert.deepEqual(one.json, { embedding: { values: [0.11, 0.12, 0.13, 0.14] } });
    const empty = await call('/v1beta/models/text-embedding-004:batchEmbedContents', { requests: [] }, GEM_H);
    assert.equal(empty.status, 400);
});
