// The web dashboard as HTTP (src/api/dashboard.c; the browser tests are tests/e2e/dashboard.test.mjs):
// "/" redirects to /dashboard/, every file of web/ is served from the binary byte for byte with
// its type, a strong ETag (the first 128 bits of its SHA-256) and Cache-Control, a matching
// If-None-Match gets a 304 without a body, and every answer carries the security headers (a CSP
// without 'unsafe-inline', frame, referrer and sniffing protection). Nothing refers to another
// origin (the dashboard works offline), and the dashboard's routes leave the API's answers as
// they were.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const WEB = path.join(h.ROOT, 'web');
const TYPES = {
    '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
    '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml',
};
let gw;

function webFiles(dir = WEB) {
    return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
        const p = path.join(dir, e.name);
        return e.isDirectory() ? webFiles(p) : [path.relative(WEB, p)];
    }).sort();
}

const raw = (p, init = {}) => fetch(gw.base + p, { redirect: 'manual', ...init });

function assertSecurityHeaders(res, what) {
    const csp = res.headers.get('content-security-policy') ?? '';
    const dir = Object.fromEntries(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([k, ...v]) => [k, v.join(' ')]));
    assert.equal(dir['default-src'], "'none'", `${what}: CSP default-src in ${csp}`);
    assert.equal(dir['script-src'], "'self'", `${what}: CSP script-src`);
    assert.equal(dir['style-src'], "'self'", `${what}: CSP style-src`);
    assert.equal(dir['frame-ancestors'], "'none'", `${what}: CSP frame-ancestors`);
    assert.equal(dir['form-action'], "'none'", `${what}: CSP form-action`);
    assert.equal(dir['require-trusted-types-for'], "'script'", `${what}: Trusted Types`);
    assert.doesNotMatch(csp, /unsafe|\*|https?:/, `${what}: nothing loose in the CSP`);
    assert.equal(res.headers.get('x-frame-options'), 'DENY', what);
    assert.equal(res.headers.get('referrer-policy'), 'no-referrer', what);
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff', what);
    assert.ok(res.headers.get('x-request-id'), `${what}: x-request-id`);
}

before(async () => {
    gw = await h.startGateway({ mock: false });
});
after(async () => { await gw?.stop(); });

test('GET / and /dashboard redirect to /dashboard/', T, async () => {
    for (const p of ['/', '/dashboard']) {
        const res = await raw(p);
        assert.equal(res.status, 302, p);
        assert.equal(res.headers.get('location'), '/dashboard/', p);
        assert.equal(await res.text(), '', p);
        assertSecurityHeaders(res, p);
    }
    const followed = await fetch(`${gw.base}/`);
    assert.equal(followed.status, 200);
    assert.equal(followed.url, `${gw.base}/dashboard/`);
    assert.match(await followed.text(), /<title>ModelSwitch dashboard<\/title>/);
});

test('every file of web/ is served byte for byte, with its type, strong ETag and Cache-Control', T, async () => {
    const files = webFiles();
    assert.ok(files.includes('index.html') && files.some((f) => f.endsWith('.js')), files.join(' '));
    for (const f of files) {
        const want = fs.readFileSync(path.join(WEB, f));
        const res = await raw(`/dashboard/${f}`);
        assert.equal(res.status, 200, f);
        const got = Buffer.from(await res.arrayBuffer());
        assert.ok(got.equals(want), `${f}: the served bytes are the file's`);
        assert.equal(res.headers.get('content-type'), TYPES[path.extname(f)], f);
        const digest = crypto.createHash('sha256').update(want).digest('hex').slice(0, 32);
        assert.equal(res.headers.get('etag'), `"${digest}"`, `${f}: strong ETag of its content`);
        assert.equal(res.headers.get('cache-control'), 'no-cache', f);
        assertSecurityHeaders(res, f);
    }
    const index = await raw('/dashboard/');
    assert.equal(index.headers.get('etag'), (await raw('/dashboard/index.html')).headers.get('etag'));
});

test('If-None-Match with the ETag gets 304 without a body; another tag gets the file', T, async () => {
    const first = await raw('/dashboard/js/app.js');
    const etag = first.headers.get('etag');
    await first.arrayBuffer();
    for (const inm of [etag, `W/${etag}`, `"0000", ${etag}`, '*']) {
        // raw sockets: fetch would answer a 304 from its own cache layer; this is what the gateway sent
        const [r] = await h.rawExchange(gw.port, `GET /dashboard/js/app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${inm}\r\n\r\n`);
        assert.equal(r.status, 304, inm);
        assert.equal(r.headers.etag, etag, inm);
        assert.equal(r.headers['content-length'], undefined, `${inm}: no length of a body not sent`);
        assert.equal(r.body.length, 0, inm);
        assert.equal(r.headers['x-frame-options'], 'DENY', inm);
    }
    const [other] = await h.rawExchange(gw.port, 'GET /dashboard/js/app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: "abc"\r\n\r\n');
    assert.equal(other.status, 200);
    assert.equal(Number(other.headers['content-length']), fs.statSync(path.join(WEB, 'js/app.js')).size);
    // keep-alive goes on after a 304: the next request on the connection is answered
    const both = await h.rawExchange(gw.port, `GET /dashboard/ HTTP/1.1\r\nHost: x\r\nIf-None-Match: ${(await raw('/dashboard/')).headers.get('etag')}\r\n\r\n` +
        'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n', 2);
    assert.deepEqual(both.map((r) => r.status), [304, 200]);
});

test('unknown files are 404 and other methods 405, with the contract\'s body and the security headers', T, async () => {
    for (const p of ['/dashboard/nope.js', '/dashboard/js/', '/dashboardx', '/dashboard/index.html/', '/dashboard/index.html%00']) {
        const res = await h.get(gw, p);
        h.assertError(assert, res, 404, 'not_found_error', 'not_found');
        assert.equal(res.headers.get('x-frame-options'), 'DENY', p);
    }
    // as sent (fetch would resolve the dots itself): files are looked up by their exact path
    for (const p of ['/dashboard/../README.md', '/dashboard/./index.html', '/dashboard//index.html']) {
        const [r] = await h.rawExchange(gw.port, `GET ${p} HTTP/1.1\r\nHost: x\r\n\r\n`);
        assert.equal(r.status, 404, p);
        assert.equal(JSON.parse(r.body.toString()).error.code, 'not_found', p);
    }
    for (const method of ['POST', 'PUT', 'DELETE', 'HEAD']) {
        const res = await raw('/dashboard/', { method });
        assert.equal(res.status, 405, method);
        assert.equal(res.headers.get('allow'), 'GET', method);
        assertSecurityHeaders(res, method);
    }
    const post = await h.post(gw, '/', undefined, {});
    h.assertError(assert, post, 405, 'invalid_request_error', 'method_not_allowed');
});

test('the pages need nothing from another origin and run no inline script or style', T, () => {
    for (const f of webFiles()) {
        const text = fs.readFileSync(path.join(WEB, f), 'utf8');
        const urls = (text.match(/\b(?:https?:)?\/\/[a-z0-9.-]+\.[a-z]{2,}[^\s'")]*/gi) || [])
            .filter((u) => !/^http:\/\/www\.w3\.org\/2000\/svg$/.test(u) && !/example\.com/.test(u));
        assert.deepEqual(urls, [], `${f} refers to another origin`);
        if (f.endsWith('.html')) {
            assert.doesNotMatch(text, /<script(?![^>]*\bsrc=)[^>]*>/i, `${f}: inline script`);
            assert.doesNotMatch(text, /\sstyle=|<style|\son[a-z]+=/i, `${f}: inline style or handler`);
        }
        if (f.endsWith('.js')) {
            assert.doesNotMatch(text, /\.innerHTML\s*=|insertAdjacentHTML|document\.write|\beval\(|new Function/, `${f}: HTML from strings`);
        }
    }
});

test('the API routes answer as before the dashboard', T, async () => {
    const { key } = await (async () => {
        const account = await gw.createAccount('dash-api', 1);
        const k = await gw.createKey(account);
        await gw.waitKeyKnown(k);
        return { key: k };
    })();
    const chat = await h.post(gw, '/v1/chat/completions', key, { model: 'echo-1', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(chat.status, 200);
    assert.equal(chat.headers.get('content-security-policy'), null, 'the API answers carry no page headers');
    h.assertError(assert, await h.get(gw, '/v1/dashboard'), 401, 'authentication_error', 'missing_api_key');
    h.assertError(assert, await h.get(gw, '/api/dashboard'), 401, 'authentication_error', 'missing_api_key');
    h.assertError(assert, await h.get(gw, '/v1/dashboard', key), 404, 'not_found_error', 'not_found');
});
