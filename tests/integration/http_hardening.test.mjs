// HTTP/1.1 hardening, over raw sockets (issue 9): a credential header sent twice, a bad key
// refused before the body is uploaded (and before `100 Continue`), a body trickled in forever,
// chunk extensions (unbounded, and more than one on a chunk), and the absolute-form request target.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const BODY_TIMEOUT_MS = 800;
const BODY_DEADLINE_MS = 4 * BODY_TIMEOUT_MS; // HTTP_BODY_DEADLINE_FACTOR in src/server/http.h
let gw, key, key2, billingKey;

before(async () => {
    gw = await h.startGateway({
        mock: false,
        config: { server: { header_timeout_ms: 2000, body_timeout_ms: BODY_TIMEOUT_MS, max_body_bytes: 1048576 } },
        setup: async (g) => {
            ({ key } = await g.newProxyKey(100, 'first'));
            let account;
            ({ account, key: key2 } = await g.newProxyKey(100, 'second'));
            billingKey = await g.createKey(account, { type: 'billing' });
        },
    });
});
after(async () => { await gw?.stop(); });

function chatBody(content) {
    return JSON.stringify({ model: 'echo-1', messages: [{ role: 'user', content }] });
}
const replyOf = (res) => JSON.parse(res.text).choices[0].message.content;

/** A raw error response follows the contract: x-request-id and the JSON error body. */
function errorOf(res) {
    assert.ok(res.headers['x-request-id'], `x-request-id missing on ${res.status}`);
    assert.match(res.headers['content-type'] ?? '', /^application\/json/);
    const e = JSON.parse(res.text).error;
    for (const f of ['message', 'type', 'code']) assert.equal(typeof e[f], 'string', `error.${f}`);
    assert.ok('param' in e, 'error.param');
    return e;
}

/** Writes chunk unless the peer stops reading for ms (then resolves false). */
async function writeOrStall(c, chunk, ms = 2000) {
    return Promise.race([c.write(chunk), h.sleep(ms).then(() => false)]);
}

async function assertStillServes() {
    const res = await h.post(gw, '/v1/chat/completions', key,
        { model: 'echo-1', messages: [{ role: 'user', content: 'still here' }] });
    assert.equal(res.status, 200, `the gateway stopped serving chat: ${res.text}`);
}

// ---- item 4: a credential header twice ----

test('two Authorization headers: 400 invalid_request, never the second key', T, async () => {
    const body = chatBody('two keys');
    const variants = [
        [`Authorization: Bearer ${key}`, `Authorization: Bearer ${key2}`],
        [`Authorization: Bearer ${key}`, `authorization: Bearer ${key}`], // the same key, other case
        [`AUTHORIZATION: Bearer ${key2}`, 'Authorization: Bearer ms-nothing'],
        [`Authorization: Bearer ${key}`, `x-api-key: ${key}`, `X-Api-Key: ${key2}`],
        [`Authorization: Bearer ${key}`, 'Host: second'], // RFC 9112 3.2: Host at most once
    ];
    for (const headers of variants) {
        const c = await h.RawConn.open(gw.port);
        try {
            await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n${headers.join('\r\n')}\r\n` +
                `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
            const [res] = await c.readResponses(1);
            assert.equal(res.status, 400, `${headers.join(' | ')} -> ${res.status} ${res.text}`);
            const e = errorOf(res);
            assert.equal(e.type, 'invalid_request_error');
            assert.equal(e.code, 'invalid_request');
            assert.equal(e.param, null);
            assert.match(e.message, /more than one/);
            assert.ok(!e.message.includes(key) && !e.message.includes(key2), 'a key in the error message');
            assert.ok(await c.waitClosed(), 'connection left open after a duplicated header');
        } finally {
            c.destroy();
        }
    }
    await assertStillServes();
});

// ---- item 9: the key is checked on the headers, before the body and before 100 Continue ----

/** The control: a good key still gets 100 Continue, its body is read, keep-alive holds. */
async function assertGoodKeyContinues() {
    const body = chatBody('checked on its headers');
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nExpect: 100-continue\r\n\r\n`);
        const [interim] = await c.readResponses(1);
        assert.equal(interim.status, 100);
        await c.write(body);
        const res = await c.readResponses(2);
        assert.equal(res[1].status, 200, res[1].text);
        assert.equal(replyOf(res[1]), 'You said: checked on its headers');
        // a body that came in two reads went through the head check too, and keep-alive holds
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`);
        await h.sleep(50);
        await c.write(body);
        const res2 = await c.readResponses(3);
        assert.equal(res2[2].status, 200, res2[2].text);
        assert.ok(!c.closed, 'connection closed after a good request');
    } finally {
        c.destroy();
    }
}

test('Expect: 100-continue with a bad, missing or wrong-type key: the 401/403 comes instead of 100; a good key gets 100', T, async () => {
    const cases = [
        ['Authorization: Bearer ms-notakey0000000000000000000000\r\n', 401, 'invalid_api_key'],
        ['', 401, 'missing_api_key'],
        [`Authorization: Bearer ${billingKey}\r\n`, 403, 'wrong_key_type'],
    ];
    for (const [auth, status, code] of cases) {
        const c = await h.RawConn.open(gw.port);
        try {
            await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\n${auth}` +
                'Content-Type: application/json\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n');
            const [res] = await c.readResponses(1);
            assert.equal(res.status, status, `${JSON.stringify(auth)}: first answer ${res.status}`);
            assert.equal(errorOf(res).code, code);
            assert.equal(res.headers.connection, 'close');
            // the body it did not ask for is not awaited: the connection ends
            assert.ok(await c.waitClosed(h.scaled(4000)), 'connection left open after the refusal');
            assert.equal(c.responses().length, 1, 'an answer after the refusal');
        } finally {
            c.destroy();
        }
    }
    await assertGoodKeyContinues();
});

test('a bad key with a large body and no Expect: 401 before the body is sent', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        // 900 KB announced, none of it sent: the answer must not wait for it
        await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ms-bad\r\n' +
            'Content-Type: application/json\r\nContent-Length: 900000\r\n\r\n{"model":');
        const [res] = await c.readResponses(1, h.scaled(BODY_TIMEOUT_MS - 200));
        assert.equal(res.status, 401);
        assert.equal(errorOf(res).code, 'invalid_api_key');
        assert.ok(await c.waitClosed(h.scaled(4000)), 'connection left open');
    } finally {
        c.destroy();
    }
});

test('on the headers the route table still decides first: 405 and 404 before the key', T, async () => {
    const cases = [
        ['PUT /v1/chat/completions', 'Authorization: Bearer ms-bad\r\n', 405, 'method_not_allowed'],
        ['POST /healthz', '', 405, 'method_not_allowed'],
        ['POST /nowhere', '', 404, 'not_found'],
        // unknown /v1/ routes authenticate first (as OpenAI does), then 404
        ['POST /v1/nowhere', 'Authorization: Bearer ms-bad\r\n', 401, 'invalid_api_key'],
        ['POST /v1/nowhere', `Authorization: Bearer ${key}\r\n`, 404, 'not_found'],
        ['POST /api/keys', `Authorization: Bearer ${key}\r\n`, 403, 'wrong_key_type'],
    ];
    for (const [line, auth, status, code] of cases) {
        const c = await h.RawConn.open(gw.port);
        try {
            await c.write(`${line} HTTP/1.1\r\nHost: t\r\n${auth}Content-Type: application/json\r\n` +
                'Content-Length: 5000\r\nExpect: 100-continue\r\n\r\n');
            const [res] = await c.readResponses(1);
            assert.equal(res.status, status, `${line} ${JSON.stringify(auth)}: ${res.status} ${res.text}`);
            assert.equal(errorOf(res).code, code);
            if (status === 405) assert.ok(res.headers.allow, 'Allow on 405');
        } finally {
            c.destroy();
        }
    }
    await assertStillServes();
});

// ---- item 10: a body trickled in, and chunk extensions without end ----

test('a body sent a byte at a time is cut with 408 at the whole-body deadline', T, async () => {
    const c = await h.RawConn.open(gw.port);
    const interval = Math.round(BODY_TIMEOUT_MS / 3); // well inside the gap limit
    let timer;
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n');
        const t0 = Date.now();
        timer = setInterval(() => { if (!c.closed) c.write(' '); }, interval);
        const closed = await c.waitClosed(BODY_DEADLINE_MS + h.scaled(4000));
        const elapsed = Date.now() - t0;
        assert.ok(closed, `still open after ${elapsed} ms of a byte every ${interval} ms`);
        assert.ok(elapsed >= BODY_DEADLINE_MS - 300, `cut after ${elapsed} ms, before the deadline`);
        const res = c.responses();
        assert.equal(res.length, 1, `want one 408, got ${JSON.stringify(c.data.toString())}`);
        assert.equal(res[0].status, 408);
        assert.equal(errorOf(res[0]).code, 'request_timeout');
    } finally {
        clearInterval(timer);
        c.destroy();
    }
    await assertStillServes();
});

test('endless chunk extensions: 413 once they pass the cap, then close', T, async () => {
    for (const filler of ['a', ';', 'x=y;']) {
        const c = await h.RawConn.open(gw.port);
        try {
            await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
                'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n1;z');
            const piece = filler.repeat(Math.ceil(16384 / filler.length));
            // up to 20 MB of one chunk's extension, quicker than any timeout
            for (let sent = 0; sent < 20e6 && c.responses().length === 0 && !c.closed; sent += piece.length) {
                if (!(await writeOrStall(c, piece, 1000))) break;
            }
            const [res] = await c.readResponses(1);
            assert.equal(res.status, 413, `${JSON.stringify(filler)}: ${res.status} ${res.text}`);
            assert.equal(errorOf(res).code, 'request_too_large');
            assert.ok(await c.waitClosed(h.scaled(4000)), 'connection left open');
        } finally {
            c.destroy();
        }
    }
    await assertStillServes();
});

// ---- item 11: valid chunk extensions, the absolute-form target ----

test('chunks with several extensions (tokens, quoted, empty values) are valid HTTP/1.1: accepted', T, async () => {
    const body = chatBody('extensions are ignored');
    const a = body.slice(0, 10), b = body.slice(10, 40), rest = body.slice(40);
    const hex = (s) => Buffer.byteLength(s).toString(16);
    // written in pieces that split the extensions at awkward places (between reads)
    const pieces = [
        `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n',
        `${hex(a)};a=b;c=d\r\n${a}\r\n`,
        `${hex(b)};name=va`, 'lue', `;q="x;y";t=`, `;e=1;f\r\n${b}\r\n`,
        `${hex(rest)};a=b;c=d;e=f\r\n${rest}\r\n`,
        '0;last=1;z=2\r\n\r\n',
    ];
    const c = await h.RawConn.open(gw.port);
    try {
        for (const p of pieces) {
            await c.write(p);
            await h.sleep(20);
        }
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 200, res.text);
        assert.equal(replyOf(res), 'You said: extensions are ignored');
        // the same in one write, and the connection still serves the next request
        await c.write(pieces.join(''));
        const res2 = await c.readResponses(2);
        assert.equal(res2[1].status, 200, res2[1].text);
        assert.equal(replyOf(res2[1]), 'You said: extensions are ignored');
    } finally {
        c.destroy();
    }
});

test('absolute-form targets (RFC 9112 3.2.2): the path comes from the URI, Host is ignored', T, async () => {
    const body = chatBody('absolute form');
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST http://example.com/v1/chat/completions HTTP/1.1\r\nHost: elsewhere\r\n` +
            `Authorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
            `Content-Length: ${body.length}\r\n\r\n${body}`);
        const [res] = await c.readResponses(1);
        assert.equal(res.status, 200, res.text);
        assert.equal(replyOf(res), 'You said: absolute form');
        await c.write('GET HTTPS://user@Example.COM:8443/healthz?probe=1 HTTP/1.1\r\nHost: t\r\n\r\n');
        const res2 = await c.readResponses(2);
        assert.equal(res2[1].status, 200, res2[1].text);
        // the path is "/", which redirects to the dashboard
        await c.write('GET http://example.com HTTP/1.1\r\nHost: t\r\n\r\n');
        const res3 = await c.readResponses(3);
        assert.equal(res3[2].status, 302);
        assert.equal(res3[2].headers.location, '/dashboard/');
        await c.write(`GET http://example.com/v1/models HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n\r\n`);
        const res4 = await c.readResponses(4);
        assert.equal(res4[3].status, 200, res4[3].text);
    } finally {
        c.destroy();
    }
});

// ---- the request parser's rules (common/h1parse.c, request mode; docs/ARCHITECTURE.md) ----

test('the request line: any token method reaches the router, its name in the access log; CONNECT, other versions and targets are 400 saying so', T, async () => {
    // an unknown method on a known path is 405 with Allow, on an unknown one 404 (not a parse error)
    let [res] = await h.rawExchange(gw.port, 'FROB /v1/models HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal(res.status, 405, res.text);
    assert.ok(res.headers.allow, 'Allow missing');
    const line = await gw.waitForLog(res.headers['x-request-id']);
    assert.equal(line.method, 'FROB');
    [res] = await h.rawExchange(gw.port, 'PROPFIND /nowhere HTTP/1.1\r\nHost: t\r\n\r\n');
    assert.equal(res.status, 404, res.text);
    for (const input of [
        'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
        'GET /healthz HTTP/1.2\r\nHost: t\r\n\r\n',
        'GET /healthz HTTP/2.0\r\nHost: t\r\n\r\n',
        'GET healthz HTTP/1.1\r\nHost: t\r\n\r\n',
        'GET ftp://example.com/healthz HTTP/1.1\r\nHost: t\r\n\r\n',
        'G(T /healthz HTTP/1.1\r\nHost: t\r\n\r\n',
        `${'M'.repeat(25)} /healthz HTTP/1.1\r\nHost: t\r\n\r\n`,
    ]) {
        [res] = await h.rawExchange(gw.port, input);
        assert.equal(res.status, 400, `${JSON.stringify(input)} -> ${res.status}`);
        const e = errorOf(res);
        assert.equal(e.message, 'Malformed HTTP request: invalid request line', JSON.stringify(input));
        const logged = await gw.waitForLog(res.headers['x-request-id']);
        assert.equal(logged.status, 400);
    }
    await assertStillServes();
});

test('framing: a Transfer-Encoding other than chunked alone is 400, never read to the close', T, async () => {
    const body = chatBody('coded');
    for (const te of ['gzip', 'gzip, chunked', 'chunked, gzip', 'identity', 'chunked, chunked']) {
        const [res] = await h.rawExchange(gw.port,
            `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nTransfer-Encoding: ${te}\r\n\r\n` +
            `${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n`);
        assert.equal(res.status, 400, `${te} -> ${res.status} ${res.text}`);
        assert.equal(errorOf(res).message, 'Malformed HTTP request: invalid header field or framing');
    }
    // a bad chunk size says so
    const [res] = await h.rawExchange(gw.port,
        `POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer ${key}\r\n` +
        'Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n');
    assert.equal(res.status, 400, res.text);
    assert.equal(errorOf(res).message, 'Malformed HTTP request: invalid chunked body');
    await assertStillServes();
});

test('Upgrade is ignored (RFC 9110 7.8): answered in HTTP/1.1, and the connection goes on', T, async () => {
    const body = chatBody('no upgrade');
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: t\r\nConnection: Upgrade, HTTP2-Settings\r\n` +
            `Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\nAuthorization: Bearer ${key}\r\n` +
            `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}` +
            'GET /healthz HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n');
        const res = await c.readResponses(2);
        assert.equal(res[0].status, 200, res[0].text);
        assert.equal(replyOf(res[0]), 'You said: no upgrade');
        assert.equal(res[1].status, 200, res[1].text);
        assert.ok(!c.closed, 'closed after an ignored Upgrade');
    } finally {
        c.destroy();
    }
});

test('empty lines between pipelined requests are skipped, and leave an idle connection idle', T, async () => {
    const c = await h.RawConn.open(gw.port);
    try {
        await c.write('GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\r');
        await c.write('\nGET /healthz HTTP/1.1\r\nHost: t\r\n\r\n\r\n');
        const res = await c.readResponses(3);
        assert.deepEqual(res.map((r) => r.status), [200, 200, 200]);
        // past the 2 s header timeout, a CRLF after a request is no request begun: no 408
        await h.sleep(h.scaled(2500));
        assert.equal(c.responses().length, 3, `unexpected answer: ${c.data.toString().slice(-300)}`);
        assert.ok(!c.closed, 'an idle keep-alive connection was closed before idle_timeout_ms');
    } finally {
        c.destroy();
    }
});
