// HTTP/1.1 robustness, over raw sockets: malformed and oversized requests, smuggling-shaped
// framing, a huge body, a slow client, keep-alive, pipelining, chunked request bodies and
// `Expect: 100-continue`. After every hostile input the gateway must still serve.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, key;

before(async () => {
    gw = await h.startGateway({
        mock: false,
        // idle_timeout_ms stays above undici's 4 s keep-alive so fetch never reuses a closing socket.
        config: { server: { header_timeout_ms: 1000, idle_timeout_ms: 5000, max_body_bytes: 1048576 } },
        setup: async (g) => { ({ key } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

const HEALTH = 'GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n';

function chatBody(content) {
    return JSON.stringify({ model: 'echo-1', messages: [{ role: 'user', content }] });
}
function chatReq(content, extra = '') {
    const body = chatBody(content);
    return `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${extra}\r\n${body}`;
}
const replyOf = (res) => JSON.parse(res.text).choices[0].message.content;

async function assertStillServes() {
    const health = await h.get(gw, '/healthz');
    assert.equal(health.status, 200, 'the gateway stopped serving /healthz');
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model: 'echo-1', messages: [{ role: 'user', content: 'still here' }] });
    assert.equal(res.status, 200, `the gateway stopped serving chat: ${res.text}`);
    assert.equal(res.json.choices[0].message.content, 'You said: still here');
}

/** A raw error response still follows the contract: x-request-id and the JSON error body. */
function assertRawError(res) {
    assert.ok(res.headers['x-request-id'], `x-request-id missing on ${res.status}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json/);
    const e = JSON.parse(res.text).error;
    for (const f of ['message', 'type', 'code']) assert.equal(typeof e[f], 'string', `error.${f}`);
    assert.ok('param' in e, 'error.param');
}

/** Writes chunk unless the peer stops reading for ms (then resolves false). */
async function writeOrStall(c, chunk, ms = 2000) {
    return Promise.race([c.write(chunk), h.sleep(ms).then(() => false)]);
}

test('malformed request lines and headers: 400, then the gateway still serves', T, async () => {
    const inputs = [
        'GARBAGE\r\n\r\n',
        '\x00\x01\x02\x03\xff\xfe\r\n\r\n',
        'GET /healthz HTTP/1.1 trailing-junk\r\nHost: t\r\n\r\n',
        'GET /healthz HTTP/1.1\r\nHost: t\r\nNoColonHere\r\n\r\n',
        'GET /healthz HTTP/1.1\r\nHost: t\r\nBad\x01Name: x\r\n\r\n',
        'POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n',
    ];
    for (const input of inputs) {
        const c = await h.RawConn.open(gw.port);
        await c.write(Buffer.from(input, 'latin1'));
        try {
            const [res] = await c.readResponses(1);
            assert.equal(res.status, 400, `${JSON.stringify(input)} -> ${res.status}`);
            assertRawError(res);
            assert.ok(await c.waitClosed(), `connection left open after ${JSON.stringify(input)}`);
        } finally {
            c.destroy();
        }
    }
    await assertStillServes();
});

test('Content-Length together with Transfer-Encoding is refused (no smuggling)', T, async () => {
    const body = chatBody('x');
    const input = `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        `Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n` +
        `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`;
    const [res] = await h.rawExchange(gw.port, input);
    assert.equal(res.status, 400, res.text);
    await assertStillServes();
});

test('oversized header block: 431 (or 400)', T, async () => {
    for (const input of [
        `GET /healthz HTTP/1.1\r\nHost: t\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`,
        `GET /${'p'.repeat(64 * 1024)} HTTP/1.1\r\nHost: t\r\n\r\n`,
    ]) {
        const c = await h.RawConn.open(gw.port);
        c.write(input);
        try {
            const [res] = await c.readResponses(1);
            assert.ok([431, 400, 414].includes(res.status), `status ${res.status}`);
            assertRawError(res);
        } finally {
            c.destroy();
        }
    }
    await assertStillServes();
});

test('too many headers: 431 (or 400)', T, async () => {
    let input = 'GET /healthz HTTP/1.1\r\nHost: t\r\n';
    for (let i = 0; i < 1000; i++) input += `X-H${i}: v\r\n`;
    input += '\r\n';
    const [res] = await h.rawExchange(gw.port, input);
    assert.ok([431, 400].includes(res.status), `status ${res.status}`);
    assertRawError(res);
    await assertStillServes();
});

test('a body longer than its Content-Length: the rest is a bad next request, not a crash', T, async () => {
    const c = await h.RawConn.open(gw.port);
    await c.write(chatReq('hi') + 'THIS IS NOT HTTP\r\n\r\n');
    try {
        const [first] = await c.readResponses(1);
        assert.equal(first.status, 200, first.text);
        assert.equal(replyOf(first), 'You said: hi');
        assert.ok(await c.waitClosed(), 'the connection must close after the garbage');
        const all = c.responses();
        assert.ok(all.length <= 2, `${all.length} responses`);
        if (all.length === 2) assert.equal(all[1].status, 400);
    } finally {
        c.destroy();
    }
    await assertStillServes();
});

test('a 50 MB body: 413 request_too_large without buffering it', T, async () => {
    const total = 50 * 1024 * 1024;
    const rssBefore = gw.peakRssKb();
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${total}\r\n\r\n`);
        const chunk = Buffer.alloc(256 * 1024, 0x61);
        let sent = 0;
        while (sent < total && c.responses().length === 0 && !c.closed) {
            if (!(await writeOrStall(c, chunk))) break;
            sent += chunk.length;
        }
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 413, res.text);
        assertRawError(res);
        const e = JSON.parse(res.text).error;
        assert.deepEqual([e.type, e.code], ['invalid_request_error', 'request_too_large']);
    } finally {
        c.destroy();
    }
    const rssAfter = gw.peakRssKb();
    if (!h.VALGRIND && rssBefore !== null && rssAfter !== null) {
        assert.ok(rssAfter - rssBefore < 40 * 1024,
            `peak RSS grew by ${rssAfter - rssBefore} kB for a refused 50 MB body`);
    }
    await assertStillServes();
});

test('a chunked body over the limit: 413', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
        const piece = 'a'.repeat(64 * 1024);
        for (let i = 0; i < 40 && c.responses().length === 0 && !c.closed; i++) {
            if (!(await writeOrStall(c, `${piece.length.toString(16)}\r\n${piece}\r\n`))) break;
        }
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 413, res.text);
    } finally {
        c.destroy();
    }
    await assertStillServes();
});

test('a client sending one byte per second is cut off with 408 after header_timeout_ms', T, async () => {
    const c = await h.RawConn.open(gw.port);
    const line = Buffer.from(`GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ${'s'.repeat(30)}`);
    const t0 = Date.now();
    let i = 0;
    c.write(line.subarray(i, ++i));
    const timer = setInterval(() => { if (!c.closed && i < line.length) c.write(line.subarray(i, ++i)); }, 1000);
    try {
        const closed = await c.waitClosed(h.scaled(6000));
        const elapsed = Date.now() - t0;
        assert.ok(closed, `still open after ${elapsed} ms`);
        assert.ok(elapsed >= 900, `closed after ${elapsed} ms, before the 1000 ms header timeout`);
        assert.ok(elapsed <= 1000 + h.scaled(2500), `closed only after ${elapsed} ms`);
        const res = c.responses();
        assert.equal(res.length, 1, `want one 408 response, got ${JSON.stringify(c.data.toString())}`);
        assert.equal(res[0].status, 408);
        assertRawError(res[0]);
    } finally {
        clearInterval(timer);
        c.destroy();
    }
    await assertStillServes();
});

test('a connection that sends nothing is closed (header or idle timeout)', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        // 408 is optional here (nothing was asked); the connection must not be held forever.
        assert.ok(await c.waitClosed(h.scaled(6000)), 'an idle new connection was never closed');
    } finally {
        c.destroy();
    }
});

test('keep-alive: several requests on one connection', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        const words = ['one', 'two', 'three'];
        for (let i = 0; i < words.length; i++) {
            await c.write(chatReq(words[i]));
            const res = await c.readResponses(2 * i + 1);
            assert.equal(res[2 * i].status, 200);
            assert.equal(replyOf(res[2 * i]), `You said: ${words[i]}`);
            await c.write(HEALTH);
            const res2 = await c.readResponses(2 * i + 2);
            assert.equal(res2[2 * i + 1].status, 200);
            assert.ok(!c.closed, 'the connection closed between keep-alive requests');
        }
    } finally {
        c.destroy();
    }
});

test('pipelined requests are answered in order', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(chatReq('first') + HEALTH + chatReq('second') +
            'GET /nope HTTP/1.1\r\nHost: t\r\n\r\n' + chatReq('third'));
        const res = await c.readResponses(5);
        assert.deepEqual(res.map((r) => r.status), [200, 200, 200, 404, 200]);
        assert.equal(replyOf(res[0]), 'You said: first');
        assert.equal(replyOf(res[2]), 'You said: second');
        assert.equal(replyOf(res[4]), 'You said: third');
        const ids = res.map((r) => r.headers['x-request-id']);
        assert.ok(ids.every(Boolean), 'x-request-id on every pipelined response');
        assert.equal(new Set(ids).size, 5);
        // req_ + 11 hex digits of time + 13 of worker salt and counter: one worker's ids sort
        // in the order it made them (the ledger's request-id indexes grow at one end)
        assert.ok(ids.every((id) => /^req_[0-9a-f]{24}$/.test(id)), ids.join(' '));
        assert.deepEqual([...ids].sort(), ids, 'ids of one connection sort by time');
    } finally {
        c.destroy();
    }
});

test('HTTP/1.0 without keep-alive: answered, then closed', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write('GET /healthz HTTP/1.0\r\n\r\n');
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 200);
        assert.ok(await c.waitClosed(), 'an HTTP/1.0 connection must close after the response');
    } finally {
        c.destroy();
    }
});

test('a chunked request body', T, async () => {
    const body = chatBody('chunked body arrived');
    const parts = [body.slice(0, 7), body.slice(7, 30), body.slice(30)];
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n');
        for (const p of parts) {
            await c.write(`${Buffer.byteLength(p).toString(16)}\r\n${p}\r\n`);
            await h.sleep(30);
        }
        await c.write('0\r\n\r\n');
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 200, res.text);
        assert.equal(replyOf(res), 'You said: chunked body arrived');
    } finally {
        c.destroy();
    }
});

test('Expect: 100-continue gets 100 Continue before the body is sent', T, async () => {
    const body = chatBody('after continue');
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
        const [interim] = await c.readResponses(1);
        assert.equal(interim.status, 100);
        await c.write(body);
        const res = await c.readResponses(2);
        assert.equal(res[1].status, 200, res[1].text);
        assert.equal(replyOf(res[1]), 'You said: after continue');
    } finally {
        c.destroy();
    }
});

test('Expect: 100-continue with a Content-Length over the limit: 413, no 100', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${50 * 1024 * 1024}\r\nExpect: 100-continue\r\n\r\n`);
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 413, `status ${res.status}`);
    } finally {
        c.destroy();
    }
    await assertStillServes();
});
