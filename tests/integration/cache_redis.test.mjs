// The response cache's Redis backend (issue 14, docs/OPERATIONS.md "Response cache"): with
// `redis:` configured, answers are kept in Redis (ms:rc:<model>:<hex key>, expiring with their
// TTL) and looked up asynchronously on the worker's connection. Covered: the cases of
// cache.test.mjs that apply (miss/hit/bypass headers, a hit billed 0 and recorded, streams
// replayed, TTL expiry, the per-model bound), an answer kept by one gateway process being a hit for
// a second one on the same Redis, values Redis holds that are not answers (garbage, another type)
// being misses, a Redis that is stopped failing no request because of the cache, and a client
// that leaves while its lookup is in flight (run this file with MODELSWITCH_BIN=build-asan/modelswitch
// for the leak check: every gateway's stop() fails on a sanitizer report).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
const deployment = [{ provider: 'mock', model: 'cache-up' }];
const model = (cache) => ({ pricing: { input: 2.5, output: 10 }, max_output_tokens: 4096,
    deployments: deployment, ...(cache ? { cache } : {}) });
const CONFIG = {
    models: {
        'mock-cached': model({ ttl_s: 600, max_bytes: 1048576 }),
        'mock-expire': model({ ttl_s: 1 }),
        'mock-small': model({ ttl_s: 600, max_bytes: 4096 }),
        'mock-plain': model(null),
    },
};
const ACCOUNTS = ['main', 'billing', 'stream', 'small', 'expire', 'header', 'apis', 'shared', 'down'];
const ONE_USD = 1000000000n;

// Polls fn until it is true; fails the test with what when ms pass first.
async function until(fn, ms, what = 'condition') {
    const r = await h.eventually(fn, ms, 20);
    assert.ok(r.value, `${what} (still false after ${r.elapsed} ms)`);
}

// Asks until an answer is a hit. The store is fire and forget, so a request before it landed
// misses, goes to the provider and stores an answer of its own (another completion id): the hit
// replays one of the misses, not always the first.
async function untilHit(first, ask) {
    const misses = [first];
    let hit;
    await until(async () => {
        const r = await ask();
        if (cacheHeader(r) === 'hit') hit = r;
        else misses.push(r);
        return hit !== undefined;
    }, h.scaled(3000), 'a hit');
    return { hit, misses };
}

// ---- a throwaway redis-server on loopback (one function: a shared tests/redis.sh may replace it)

async function startRedis(port = null) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-redis-'));
    port ??= await h.closedPort();
    const pidfile = path.join(dir, 'redis.pid');
    const r = await h.run('redis-server', ['--port', String(port), '--bind', '127.0.0.1',
        '--save', '', '--appendonly', 'no', '--daemonize', 'yes', '--pidfile', pidfile,
        '--dir', dir, '--logfile', path.join(dir, 'redis.log')]);
    if (r.code !== 0) throw new Error(`redis-server: ${r.stderr}`);
    const cli = (...args) => h.run('redis-cli', ['-p', String(port), ...args]);
    await until(async () => (await cli('PING')).stdout.trim() === 'PONG', h.scaled(5000), 'redis answers');
    return {
        port,
        url: `redis://127.0.0.1:${port}`,
        cli: async (...args) => (await cli(...args)).stdout.trim(),
        async stop() {
            const pid = Number(fs.readFileSync(pidfile, 'utf8'));
            try { process.kill(pid, 'SIGKILL'); } catch { /* gone already */ }
            try {
                await until(() => { try { process.kill(pid, 0); return false; } catch { return true; } },
                    h.scaled(5000), 'redis-server exited');
            } finally {
                await fsp.rm(dir, { recursive: true, force: true });
            }
        },
    };
}

// ---- gateways on that Redis, each with its own mock upstream and SQLite store

const A = {}; // per gateway: name -> {account, key, billing}

async function startOn(redis) {
    const m = await h.startMock();
    const g = await h.prepareGatewayWith({ mock: m, config: CONFIG, sections: { redis: redis.url } });
    const accounts = {};
    // the same accounts in the same order: the same ids (numbered from 1) in every store
    for (const n of ACCOUNTS) {
        const account = await g.createAccount(n, h.nanoToUsd(ONE_USD));
        accounts[n] = { account, key: await g.createKey(account),
            billing: await g.createKey(account, { type: 'billing' }) };
    }
    await g.start();
    A[g.port] = accounts;
    await waitServing(g);
    return g;
}

// A fresh Redis admits nothing for its recovery window (SH_GRACE_MS): wait for an answer.
async function waitServing(g, ms = h.scaled(15000)) {
    const body = { model: 'mock-plain', messages: user('ready?'), max_tokens: 5 };
    await until(async () => (await chat(g, A[g.port].main.key, body)).status === 200, ms, 'the gateway serves');
}

let redis, gw, gw2;

before(async () => {
    redis = await startRedis();
    gw = await startOn(redis);
});

after(async () => {
    // each stopped whatever another's stop throws (a gateway's sanitizer report fails the file)
    const results = await Promise.allSettled([gw?.stop(), gw2?.stop()]);
    await redis?.stop();
    for (const r of results) if (r.status === 'rejected') throw r.reason;
});

const user = (content) => [{ role: 'user', content }];
const chat = (g, key, body, headers = {}) => h.post(g, '/v1/chat/completions', key, body, { headers });
const upstreamCount = (g) => h.mockRequestCount(g.mock);
const cacheHeader = (res) => res.headers.get('x-modelswitch-cache');
const cacheKeys = async (m) => (await redis.cli('--scan', '--pattern', `ms:rc:${m}:*`))
    .split('\n').filter(Boolean);

test('miss then hit: the same bytes, no upstream request, cost 0, kept in Redis', T, async () => {
    const a = A[gw.port].main;
    const body = JSON.stringify({ model: 'mock-cached', messages: user('hello redis cache'), max_tokens: 20 });
    const n0 = await upstreamCount(gw);
    const miss = await chat(gw, a.key, body);
    assert.equal(miss.status, 200, miss.text);
    assert.equal(cacheHeader(miss), 'miss');
    assert.equal(await upstreamCount(gw), n0 + 1);
    // the store is fire and forget: the next identical request may come before it landed
    let hit;
    await until(async () => cacheHeader(hit = await chat(gw, a.key, body)) === 'hit', h.scaled(3000));
    assert.equal(hit.status, 200, hit.text);
    assert.equal(hit.headers.get('x-modelswitch-cost'), '0');
    assert.equal(hit.headers.get('x-modelswitch-model'), 'mock-cached');
    assert.equal(hit.headers.get('x-modelswitch-provider'), 'mock');
    assert.match(hit.headers.get('content-type'), /application\/json/);
    assert.equal(hit.text, miss.text, 'the exact bytes of the first answer');
    assert.equal(await upstreamCount(gw), n0 + 1, 'no provider was touched');
    // the layout: one value, 64 hex digits, expiring with the model's ttl
    const keys = await cacheKeys('mock-cached');
    assert.equal(keys.length, 1, keys.join(','));
    assert.match(keys[0], /^ms:rc:mock-cached:[0-9a-f]{64}$/);
    const pttl = Number(await redis.cli('PTTL', keys[0]));
    assert.ok(pttl > 500000 && pttl <= 600000, `PTTL ${pttl}`);
    const other = await chat(gw, a.key, body.replace('}', ' }'));
    assert.equal(cacheHeader(other), 'miss', 'a body that differs by one byte is another request');
});

test('a hit costs nothing: zero charge, balance unchanged, a cached usage row', T, async () => {
    const a = A[gw.port].billing;
    const body = { model: 'mock-cached', messages: user('billing'), max_tokens: 20,
        mock: { chunks: 7, prompt_tokens: 23 } };
    const miss = await chat(gw, a.key, body);
    assert.equal(cacheHeader(miss), 'miss');
    const want = h.costNano(gw, 'mock-cached', 23, 7);
    await until(async () => (await cacheKeys('mock-cached')).length >= 3, h.scaled(3000));
    const hit = await chat(gw, a.key, body);
    assert.equal(cacheHeader(hit), 'hit');
    assert.equal(hit.text, miss.text);
    await until(async () => (await h.usageRows(gw, a.billing)).length === 2, h.scaled(3000));
    assert.equal(await h.balanceNano(gw, a.billing), ONE_USD - want, 'the hit did not move the balance');
    const [hitRow, missRow] = await h.usageRows(gw, a.billing);
    assert.equal(missRow.cached, false);
    assert.equal(h.usdToNano(missRow.chargedAmount), want);
    assert.equal(hitRow.cached, true);
    assert.equal(h.usdToNano(hitRow.chargedAmount), 0n);
    assert.equal(hitRow.status, 200);
    assert.equal(hitRow.promptTokens, 23, 'the original usage, from the value kept in Redis');
    assert.equal(hitRow.completionTokens, 7);
});

test('a stream is replayed as a stream, its cost written as 0', T, async () => {
    const a = A[gw.port].stream;
    const body = { model: 'mock-cached', messages: user('stream me'), stream: true, max_tokens: 20,
        stream_options: { include_usage: true }, mock: { chunks: 4, prompt_tokens: 9 } };
    const miss = await chat(gw, a.key, body);
    assert.equal(cacheHeader(miss), 'miss');
    const { hit, misses } = await untilHit(miss, () => chat(gw, a.key, body));
    assert.match(hit.headers.get('content-type'), /text\/event-stream/);
    const zeroed = (m) => m.text.replace(`"cost":${JSON.stringify(h.sseEvents(m.text).at(-2).usage.cost)}`,
        '"cost":0');
    assert.ok(misses.some((m) => hit.text === zeroed(m)), `a miss's bytes, its cost 0: ${hit.text}`);
    const { stream, stream_options, ...plain } = body;
    assert.equal(cacheHeader(await chat(gw, a.key, plain)), 'miss', 'the stream flag is in the key');
});

test('Messages and Responses: miss then hit', T, async () => {
    const a = A[gw.port].apis;
    const hdr = { headers: { 'anthropic-version': '2023-06-01' } };
    const mbody = { model: 'mock-cached', max_tokens: 20, messages: user('anthropic redis') };
    const mmiss = await h.post(gw, '/v1/messages', a.key, mbody, hdr);
    assert.equal(cacheHeader(mmiss), 'miss', mmiss.text);
    const m = await untilHit(mmiss, () => h.post(gw, '/v1/messages', a.key, mbody, hdr));
    assert.ok(m.misses.some((x) => x.text === m.hit.text), `a miss's bytes: ${m.hit.text}`);
    const rbody = { model: 'mock-cached', input: 'responses redis', store: true };
    const rmiss = await h.post(gw, '/v1/responses', a.key, rbody);
    assert.equal(cacheHeader(rmiss), 'miss', rmiss.text);
    const r = await untilHit(rmiss, () => h.post(gw, '/v1/responses', a.key, rbody));
    assert.ok(r.misses.some((x) => x.text === r.hit.text), 'the same response, its id included');
    // the stored response of the miss is kept as it would be without the cache
    const got = await h.get(gw, `/v1/responses/${rmiss.json.id}`, a.key);
    assert.equal(got.status, 200, got.text);
});

test('the header: ttl=N opts in, bypass skips, a bad value is refused', T, async () => {
    const a = A[gw.port].header;
    const body = { model: 'mock-plain', messages: user('header'), max_tokens: 5 };
    assert.equal(cacheHeader(await chat(gw, a.key, body)), null, 'no cache without config or header');
    const opt = { 'x-modelswitch-cache': 'ttl=60' };
    assert.equal(cacheHeader(await chat(gw, a.key, body, opt)), 'miss');
    await until(async () => cacheHeader(await chat(gw, a.key, body, opt)) === 'hit', h.scaled(3000));
    const keys = await cacheKeys('mock-plain');
    assert.equal(keys.length, 1);
    const pttl = Number(await redis.cli('PTTL', keys[0]));
    assert.ok(pttl > 0 && pttl <= 60000, `the header's ttl: PTTL ${pttl}`);
    const cbody = { model: 'mock-cached', messages: user('bypass'), max_tokens: 5 };
    const bypass = { 'x-modelswitch-cache': 'bypass' };
    assert.equal(cacheHeader(await chat(gw, a.key, cbody, bypass)), null);
    assert.equal(cacheHeader(await chat(gw, a.key, cbody)), 'miss', 'bypass stored nothing');
    await until(async () => cacheHeader(await chat(gw, a.key, cbody)) === 'hit', h.scaled(3000));
    assert.equal(cacheHeader(await chat(gw, a.key, cbody, bypass)), null, 'bypass does not look');
    h.assertError(assert, await chat(gw, a.key, body, { 'x-modelswitch-cache': 'ttl=0' }), 400,
        'invalid_request_error', 'invalid_request');
});

test('expiry: the entry expires in Redis with its ttl', T, async () => {
    const a = A[gw.port].expire;
    const body = { model: 'mock-expire', messages: user('expire'), max_tokens: 5 };
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'miss');
    await until(async () => (await cacheKeys('mock-expire')).length === 1, h.scaled(900), 20);
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'hit');
    await h.sleep(1300);
    assert.equal((await cacheKeys('mock-expire')).length, 0, 'Redis dropped it');
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'miss', 'expired after 1 s');
});

test('the bound: kept per model in Redis, least recently used evicted, too large not kept', T, async () => {
    const a = A[gw.port].small;
    const req = (i) => chat(gw, a.key, { model: 'mock-small', messages: user(`small ${i}`), max_tokens: 5 });
    const stored = async (n) => until(async () =>
        Number(await redis.cli('HLEN', 'ms:rcs:mock-small')) - 1 >= n, h.scaled(3000), 20);
    assert.equal(cacheHeader(await req(0)), 'miss');
    await stored(1);
    for (let i = 1; i < 10; i++) {
        assert.equal(cacheHeader(await req(i)), 'miss');
        await h.sleep(50); // its store went out first (one connection per worker, two workers)
        assert.equal(cacheHeader(await req(1)), 'hit', `1 after ${i}`);
        const total = Number(await redis.cli('HGET', 'ms:rcs:mock-small', '#'));
        assert.ok(total > 0 && total <= 4096, `the partition's total ${total} within its bound`);
    }
    assert.equal(cacheHeader(await req(0)), 'miss', 'the oldest was evicted (4096 bytes hold a few)');
    const n = (await cacheKeys('mock-small')).length;
    assert.ok(n >= 2 && n <= 5, `${n} entries`);
    // an answer larger than the bound is never kept
    const big = { model: 'mock-small', messages: user('big'), max_tokens: 3000, mock: { chunks: 1000 } };
    const first = await chat(gw, a.key, big);
    assert.equal(first.status, 200);
    assert.ok(first.text.length > 4096);
    await h.sleep(200);
    assert.equal(cacheHeader(await chat(gw, a.key, big)), 'miss');
});

test('not an answer in Redis (garbage, another type) is a miss, then replaced', T, async () => {
    const a = A[gw.port].main;
    const body = { model: 'mock-cached', messages: user('garbage'), max_tokens: 5 };
    const seen = new Set(await cacheKeys('mock-cached'));
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'miss');
    let key;
    await until(async () => (key = (await cacheKeys('mock-cached')).find((k) => !seen.has(k))) !== undefined,
        h.scaled(3000));
    assert.equal(await redis.cli('SET', key, 'MSRC\x09not a value'), 'OK');
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'miss', 'another version: a miss');
    await until(async () => cacheHeader(await chat(gw, a.key, body)) === 'hit', h.scaled(3000));
    await redis.cli('DEL', key);
    await redis.cli('RPUSH', key, 'x'); // GET answers WRONGTYPE
    const res = await chat(gw, a.key, body);
    assert.equal(res.status, 200, res.text);
    assert.equal(cacheHeader(res), 'miss', 'an error from Redis: a miss');
    await until(async () => cacheHeader(await chat(gw, a.key, body)) === 'hit', h.scaled(3000));
});

test('an answer kept by one gateway process is a hit for another on the same Redis', T, async () => {
    gw2 = await startOn(redis);
    const body = { model: 'mock-cached', messages: user('across instances'), max_tokens: 20 };
    const a1 = A[gw.port].shared;
    const a2 = A[gw2.port].shared;
    assert.equal(a1.account, a2.account, 'the same account id in both stores');
    assert.notEqual(a1.key, a2.key);
    const k0 = (await cacheKeys('mock-cached')).length;
    const miss = await chat(gw, a1.key, body);
    assert.equal(cacheHeader(miss), 'miss');
    // the first gateway's store is fire and forget: the second asks once it has landed
    await until(async () => (await cacheKeys('mock-cached')).length > k0, h.scaled(3000), 'the store');
    const n2 = await upstreamCount(gw2);
    let hit;
    await until(async () => cacheHeader(hit = await chat(gw2, a2.key, body)) === 'hit', h.scaled(3000));
    assert.equal(hit.text, miss.text);
    assert.equal(await upstreamCount(gw2), n2, 'the second gateway asked no provider');
    // recorded by the second gateway, in its own store
    await until(async () => (await h.usageRows(gw2, a2.billing)).some((r) => r.cached), h.scaled(3000));
    // another account id is another key, on every instance
    const other = await chat(gw2, A[gw2.port].main.key, body);
    assert.equal(cacheHeader(other), 'miss');
});

test('a client that leaves while its lookup is in flight: nothing leaks, the gateway serves on', T, async () => {
    const a = A[gw.port].main;
    const body = JSON.stringify({ model: 'mock-cached', messages: user('gone'), max_tokens: 5 });
    // Redis holds every command for a while: the lookup stays in flight
    assert.equal(await redis.cli('CLIENT', 'PAUSE', String(h.scaled(700)), 'ALL'), 'OK');
    const socks = [];
    for (let i = 0; i < 4; i++) {
        const s = net.connect(gw.port, '127.0.0.1');
        s.on('error', () => {});
        s.write(`POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${a.key}\r\n` +
            `content-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
        socks.push(s);
    }
    await h.sleep(200);
    for (const s of socks) s.destroy();
    await h.sleep(h.scaled(900)); // the pause is over; the lookups' replies came to nobody
    await waitServing(gw);
    const res = await chat(gw, a.key, body);
    assert.equal(res.status, 200, res.text);
    assert.equal(cacheHeader(res), 'miss', 'nothing ran for the clients that left');
});

test('Redis stopped: the cache fails no request; after a restart the cache is empty and works', T, async () => {
    const a = A[gw.port].down;
    const body = { model: 'mock-cached', messages: user('redis down'), max_tokens: 5 };
    const port = redis.port;
    await redis.stop();
    redis = null;
    // the lookup cannot be made (a miss); what answers is the shared state's admission, which
    // needs Redis: its 503, promptly, never a hang or a crash
    const t0 = Date.now();
    const res = await chat(gw, a.key, body);
    h.assertError(assert, res, 503, 'service_unavailable_error', 'service_unavailable');
    assert.equal(cacheHeader(res), null);
    assert.ok(Date.now() - t0 < h.scaled(5000), `answered in ${Date.now() - t0} ms`);
    assert.equal(gw.exit, null, 'the gateway is alive');
    redis = await startRedis(port);
    await waitServing(gw);
    await waitServing(gw2);
    assert.equal(cacheHeader(await chat(gw, a.key, body)), 'miss');
    await until(async () => cacheHeader(await chat(gw2, A[gw2.port].down.key, body)) === 'hit',
        h.scaled(3000));
});
