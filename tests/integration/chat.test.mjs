// Chat completions and embeddings proxied to an OpenAI-compatible provider (the mock upstream):
// what the upstream receives (the client's bytes with only `model` rewritten, include_usage forced
// on for streams, the provider's key and never the client's), what the client gets back (usage
// chunk only when asked, [DONE] at the end, in-band errors once a stream has started), and that a
// client going away leaves the upstream answer to be read for its usage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    gw = await h.startGateway({
        config: {
            models: {
                // Own deployments for fault tests, so a cooled-down deployment cannot affect others.
                'err-stream': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'err-stream-upstream' }],
                },
                'err-cut': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'err-cut-upstream' }],
                },
                'slow-stream': {
                    pricing: { input: 1, output: 1 },
                    deployments: [{ provider: 'mock', model: 'slow-upstream' }],
                },
            },
        },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

async function lastUpstreamChat() {
    const reqs = await gw.mock.requestsTo('/chat/completions');
    assert.ok(reqs.length > 0, 'the mock received no chat request');
    return reqs[reqs.length - 1];
}

function assertUpstreamAuth(rec) {
    assert.equal(h.recordedHeader(rec, 'authorization'), 'Bearer sk-upstream-test');
    for (const [k, v] of Object.entries(rec.headers ?? {})) {
        assert.ok(!String(v).includes(key), `client key leaked upstream in header ${k}`);
    }
    assert.ok(!rec.body.includes(key), 'client key leaked into the upstream body');
}

test('non-streaming chat: upstream gets the client body byte for byte except model', T, async () => {
    await gw.mock.clear();
    // Odd spacing, escapes, 0.50 and unknown fields would all change under a re-serialisation.
    const raw = '{"messages": [ {"role": "user", "content": "h\\u00e9llo \\"q\\" \u2713"} ],\n' +
        '  "model":   "mock-model", "temperature":0.50, "tools":[{"type":"function","function":' +
        '{"name":"f","parameters":{"type":"object","properties":{}}}}], "response_format":' +
        '{"type":"json_object"}, "mock":{"prompt_tokens":11}, "x_custom":[1,2.0,null,{"a":{}}]}';
    const res = await h.post(gw, '/v1/chat/completions', key, raw);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    assert.ok(res.headers.get('x-request-id'), 'x-request-id');
    assert.equal(res.json.object, 'chat.completion');
    assert.equal(res.json.choices[0].message.role, 'assistant');
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 ');
    assert.equal(res.json.usage.prompt_tokens, 11);
    assert.equal(res.json.usage.completion_tokens, 3);
    assert.equal(res.json.usage.total_tokens, 14);

    const rec = await lastUpstreamChat();
    assert.equal(rec.method, 'POST');
    assert.equal(rec.path, '/v1/chat/completions');
    assertUpstreamAuth(rec);
    const want = raw.replace('"mock-model"', '"mock-upstream-model"');
    assert.deepEqual(JSON.parse(rec.body), JSON.parse(want), 'upstream body (parsed)');
    assert.equal(rec.body, want, 'upstream body bytes');
});

test('every /v1/ response carries the rate-limit headers', T, async () => {
    // A plain answer, a stream (headers go out before the answer is known) and a list.
    // tests/integration/ratelimit.test.mjs checks the values and the other kinds of answer.
    const msgs = [{ role: 'user', content: 'x' }];
    for (const [what, send] of [
        ['chat', () => h.post(gw, '/v1/chat/completions', key, { model: 'mock-model', messages: msgs })],
        ['stream', () => h.post(gw, '/v1/chat/completions', key,
            { model: 'mock-model', messages: msgs, stream: true })],
        ['models', () => h.get(gw, '/v1/models', key)],
    ]) {
        const res = await send();
        assert.equal(res.status, 200, `${what}: ${res.text.slice(0, 300)}`);
        for (const kind of ['requests', 'tokens']) {
            for (const f of ['limit', 'remaining', 'reset']) {
                const name = `x-ratelimit-${f}-${kind}`;
                assert.ok(res.headers.get(name) !== null, `${what}: ${name} missing`);
            }
            assert.match(res.headers.get(`x-ratelimit-reset-${kind}`), /^(\d+h)?(\d+m)?\d+(\.\d+)?m?s$/);
            assert.match(res.headers.get(`x-ratelimit-limit-${kind}`), /^\d+$/);
        }
        h.assertRateLimitHeaders(assert, res, what);
    }
});

test('mock options pass through: chunk count and prompt tokens come from the upstream', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'mock-model', messages: [{ role: 'user', content: 'x' }],
        mock: { chunks: 5, prompt_tokens: 42 },
    });
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'tok0 tok1 tok2 tok3 tok4 ');
    assert.deepEqual([res.json.usage.prompt_tokens, res.json.usage.completion_tokens], [42, 5]);
});

test('streaming without stream_options: include_usage forced upstream, usage chunk dropped', T, async () => {
    await gw.mock.clear();
    const body = { model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'hi' }],
        tools: [{ type: 'function', function: { name: 'g', parameters: { type: 'object' } } }] };
    const res = await h.post(gw, '/v1/chat/completions', key, body);
    assert.equal(res.status, 200, res.text);
    assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
    assert.ok(res.headers.get('x-request-id'));
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]', 'stream must end with data: [DONE]');
    assert.match(res.text, /data: \[DONE\]\s*$/);
    assert.equal(h.streamContent(events), 'tok0 tok1 tok2 ');
    const chunks = events.slice(0, -1);
    assert.ok(chunks.every((e) => e.object === 'chat.completion.chunk'), 'chunk objects');
    assert.ok(chunks.every((e) => !e.usage), 'no usage when the client did not ask for it');
    assert.ok(chunks.every((e) => e.choices.length > 0), 'no usage-only chunk (choices: [])');
    assert.ok(chunks.some((e) => e.choices[0].finish_reason === 'stop'), 'finish chunk');

    const rec = await lastUpstreamChat();
    assertUpstreamAuth(rec);
    const up = JSON.parse(rec.body);
    assert.equal(up.model, 'mock-upstream-model');
    assert.equal(up.stream_options?.include_usage, true, 'include_usage forced upstream');
    delete up.stream_options;
    assert.deepEqual(up, { ...body, model: 'mock-upstream-model' });
});

test('streaming with include_usage: true: body forwarded verbatim, usage chunk kept', T, async () => {
    await gw.mock.clear();
    const raw = '{"model":"mock-model","stream":true,"stream_options":{"include_usage":true},' +
        '"messages":[{"role":"user","content":"hi"}],"mock":{"chunks":4,"prompt_tokens":7}}';
    const res = await h.post(gw, '/v1/chat/completions', key, raw);
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), 'tok0 tok1 tok2 tok3 ');
    const usageChunks = events.filter((e) => e !== '[DONE]' && e.usage);
    assert.equal(usageChunks.length, 1, 'exactly one usage chunk');
    const u = usageChunks[0];
    assert.deepEqual(u.choices, []);
    assert.deepEqual([u.usage.prompt_tokens, u.usage.completion_tokens, u.usage.total_tokens], [7, 4, 11]);
    assert.equal(events.at(-2), u, 'the usage chunk comes last before [DONE]');

    const rec = await lastUpstreamChat();
    assert.equal(rec.body, raw.replace('"mock-model"', '"mock-upstream-model"'), 'upstream body bytes');
});

test('a stream\'s head goes out with its first event, or alone at once when the event is late', T, async () => {
    // The gateway holds a stream's response head for the rest of the loop turn, so a provider's
    // head and first event (one read, usually) reach the client in one write; a head whose
    // event has not arrived must not wait for it.
    const open = async (mock) => {
        const body = JSON.stringify({ model: 'mock-model', stream: true, messages: [{ role: 'user', content: 'hi' }], mock });
        const c = await h.RawConn.open(gw.port);
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        return c;
    };
    const late = await open({ chunks: 2, first_chunk_delay_ms: 1500 });
    await late.until(() => late.data.includes('\r\n\r\n'), h.scaled(1000), 'the head of a stream whose first event is late');
    assert.match(late.data.toString(), /^HTTP\/1\.1 200 /);
    assert.ok(!late.data.includes('data:'), 'the head came with an event that should still be 1.5 s away');
    const [res] = await late.readResponses(1, h.scaled(10000));
    late.destroy();
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), 'tok0 tok1 ');

    const prompt = await open({ chunks: 2 });
    const [res2] = await prompt.readResponses(1, h.scaled(10000));
    prompt.destroy();
    assert.equal(res2.status, 200);
    assert.equal(h.streamContent(h.sseEvents(res2.text)), 'tok0 tok1 ');
});

test('a burst of events (many to one read) reaches the client whole and in order', T, async () => {
    // The mock writes 500 events at a time: reads carry many of them, which go to the client
    // gathered in one write (http_stream_cork), more than the 64 KiB a write gathers included.
    const n = 3000;
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'mock-model', stream: true, max_tokens: n, messages: [{ role: 'user', content: 'hi' }],
        stream_options: { include_usage: true }, mock: { chunks: n, events_per_write: 500 },
    });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), Array.from({ length: n }, (_, i) => `tok${i} `).join(''));
    const u = events.filter((e) => e !== '[DONE]' && e.usage);
    assert.equal(u.length, 1);
    assert.equal(u[0].usage.completion_tokens, n);
    assert.ok(res.text.length > 256 * 1024, `a stream of ${res.text.length} bytes`);
    // the same over a raw connection whose parser checks the chunked framing strictly (fetch
    // passes a chunk whose CRLF is wrong)
    const body = JSON.stringify({
        model: 'mock-model', stream: true, max_tokens: n, messages: [{ role: 'user', content: 'hi' }],
        stream_options: { include_usage: true }, mock: { chunks: n, events_per_write: 500 },
    });
    const [raw] = await h.rawExchange(gw.port, `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n` +
        `Authorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    assert.equal(raw.status, 200);
    assert.equal(h.streamContent(h.sseEvents(raw.text)),
        Array.from({ length: n }, (_, i) => `tok${i} `).join(''));
});

test('streaming with include_usage: false: upstream asked for usage, client gets none', T, async () => {
    await gw.mock.clear();
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'mock-model', stream: true, stream_options: { include_usage: false },
        messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), 'tok0 tok1 tok2 ');
    assert.ok(events.slice(0, -1).every((e) => !e.usage && e.choices.length > 0), 'no usage chunk');
    const up = JSON.parse((await lastUpstreamChat()).body);
    assert.equal(up.stream_options?.include_usage, true);
});

test('embeddings pass through to the provider with the upstream model name', T, async () => {
    await gw.mock.clear();
    const body = { model: 'mock-embed', input: ['alpha', 'beta'], mock: { dims: 6 } };
    const res = await h.post(gw, '/v1/embeddings', key, body);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.object, 'list');
    assert.equal(res.json.data.length, 2);
    res.json.data.forEach((d, i) => {
        assert.equal(d.index, i);
        assert.equal(d.object, 'embedding');
        assert.equal(d.embedding.length, 6);
    });
    const reqs = await gw.mock.requestsTo('/embeddings');
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].path, '/v1/embeddings');
    assert.equal(h.recordedHeader(reqs[0], 'authorization'), 'Bearer sk-upstream-test');
    assert.deepEqual(JSON.parse(reqs[0].body), { ...body, model: 'mock-embed-upstream' });
});

test('an upstream in-band stream error reaches the client as one error event then [DONE]', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'err-stream', stream: true, messages: [{ role: 'user', content: 'hi' }],
        mock: { chunks: 5, stream_error_after: 2 },
    });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]', `last event: ${res.text.slice(-300)}`);
    const err = events.at(-2);
    assert.ok(err && err.error, `an error event before [DONE]: ${res.text.slice(-300)}`);
    assert.equal(typeof err.error.message, 'string');
    assert.equal(typeof err.error.type, 'string');
    assert.equal(events.filter((e) => e !== '[DONE]' && e.error).length, 1, 'one error event');
    assert.equal(h.streamContent(events), 'tok0 tok1 ');
});

test('an upstream that cuts the stream: in-band error then [DONE], never a silent cut', T, async () => {
    const res = await h.post(gw, '/v1/chat/completions', key, {
        model: 'err-cut', stream: true, messages: [{ role: 'user', content: 'hi' }],
        mock: { chunks: 5, cut_after: 2 },
    });
    assert.equal(res.status, 200, res.text);
    const events = h.sseEvents(res.text);
    assert.equal(events.at(-1), '[DONE]', `last event: ${res.text.slice(-300)}`);
    const err = events.at(-2);
    assert.ok(err && err.error, `an error event before [DONE]: ${res.text.slice(-300)}`);
    assert.equal(typeof err.error.message, 'string');
    assert.equal(typeof err.error.type, 'string');
    assert.equal(h.streamContent(events), 'tok0 tok1 ');
});

// Established TCP connections whose local port is `port` (the mock's side of each connection).
function establishedOnPort(port) {
    const hex = port.toString(16).toUpperCase().padStart(4, '0');
    let n = 0;
    for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
        let text;
        try { text = fs.readFileSync(f, 'utf8'); } catch { continue; }
        for (const line of text.split('\n').slice(1)) {
            const cols = line.trim().split(/\s+/);
            if (cols.length < 4) continue;
            if (cols[1].endsWith(':' + hex) && cols[3] === '01') n++;
        }
    }
    return n;
}

test('a client that disconnects mid-stream: the upstream answer is still read to its usage', T, async () => {
    // Issue 3: the provider bills the whole answer, so the gateway keeps reading it (discarding
    // it, bounded in time and bytes) until the usage arrives, and logs the request as 499.
    const body = JSON.stringify({
        model: 'slow-stream', stream: true, messages: [{ role: 'user', content: 'hi' }],
        mock: { chunks: 30, chunk_delay_ms: 30 },
    });
    const c = await h.RawConn.open(gw.port);
    await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    await c.until(() => c.data.includes('tok1 '), h.scaled(5000), 'the first tokens');
    const id = /x-request-id: (\S+)/i.exec(c.data)[1];
    c.destroy();
    const line = () => gw.stderr.split('\n').find((l) => l.includes(`"request_id":"${id}"`));
    const { value } = await h.eventually(() => line(), h.scaled(5000));
    assert.ok(value, 'an access line for the abandoned request');
    const rec = JSON.parse(line());
    assert.equal(rec.status, 499, 'logged as client closed, once the answer was read');
    assert.equal(rec.completion_tokens, 30, 'usage of the whole answer, read after the client left');
    // And the gateway still serves.
    const res = await h.get(gw, '/healthz');
    assert.equal(res.status, 200);
});
