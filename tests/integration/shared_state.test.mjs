// The shared state in Redis (src/shared/, docs/BILLING.md "Several instances") seen from one
// instance on SQLite: limits and holds decided by Redis, change notices (a key deleted through
// the CLI is refused at once, not at the next poll), Redis down (503 and recovery), Redis
// restarted empty (the instance re-registers its open holds), and a killed instance's holds
// released when its live key expires. Several instances on PostgreSQL: cluster.test.mjs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.scaled(60000) };
const HAVE_REDIS = spawnSync('redis-server', ['--version']).status === 0;

// A throwaway redis-server on a loopback port, no persistence: a restart loses everything, which
// is the fault the tests want.
class Redis {
    constructor(dir, port) {
        this.dir = dir;
        this.port = port;
        this.url = `redis://127.0.0.1:${port}/0`;
    }
    static async start() {
        const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-redis-'));
        const r = new Redis(dir, await h.closedPort());
        await r.up();
        return r;
    }
    async up() {
        const pid = path.join(this.dir, 'redis.pid');
        const res = spawnSync('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1',
            '--save', '', '--appendonly', 'no', '--daemonize', 'yes', '--dir', this.dir,
            '--pidfile', pid, '--logfile', path.join(this.dir, 'redis.log')]);
        if (res.status !== 0) throw new Error(`redis-server: ${res.stderr}`);
        for (let i = 0; i < 100; i++) {
            if (this.cli('PING').trim() === 'PONG') return;
            await h.sleep(50);
        }
        throw new Error('redis-server did not start');
    }
    cli(...args) {
        return spawnSync('redis-cli', ['-p', String(this.port), ...args], { encoding: 'utf8' }).stdout ?? '';
    }
    async down() {
        this.cli('SHUTDOWN', 'NOSAVE');
        for (let i = 0; i < 100 && this.cli('PING').trim() === 'PONG'; i++) await h.sleep(50);
    }
    async stop() {
        await this.down();
        await fsp.rm(this.dir, { recursive: true, force: true });
    }
}

const chat = (gw, key, extra = {}) => h.post(gw, '/v1/chat/completions', key, {
    model: 'mock-model', max_tokens: 100, messages: [{ role: 'user', content: 'hi' }], ...extra,
});

// Until the instance is admitted: a fresh Redis opens an epoch, and admits nothing for its grace.
async function waitAdmitting(gw, key, ms = h.scaled(10000)) {
    const start = Date.now();
    for (;;) {
        const res = await h.get(gw, '/v1/models', key);
        const r = await chat(gw, key, { max_tokens: 1 });
        if (r.status === 200) return;
        assert.equal(r.status, 503, `${res.status} ${r.status} ${r.text}`);
        assert.ok(r.headers.get('retry-after'), '503 says when to retry');
        if (Date.now() - start > ms) throw new Error(`still 503 after ${ms} ms: ${r.text}`);
        await h.sleep(100);
    }
}

async function gatewayOn(redis, { limits, setup, mock } = {}) {
    const m = mock ?? await h.startMock();
    const gw = await h.prepareGateway({ mock: m, config: { limits } });
    gw.config.redis = redis.url;
    await fsp.writeFile(gw.configPath, h.toYaml(gw.config));
    if (setup) await setup(gw);
    await gw.start();
    return gw;
}

let redis;
before(async () => { if (HAVE_REDIS) redis = await Redis.start(); });
after(async () => { await redis?.stop(); });

const skip = HAVE_REDIS ? false : 'redis-server is not installed (scripts/install-deps.sh --test)';

test('rate limits and holds are decided in Redis, with the x-ratelimit headers', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, {
        limits: { requests_per_minute: 4 },
        setup: async (g) => { a = await g.newProxyKey(100); },
    });
    try {
        await waitAdmitting(gw, a.key); // one request of the four
        const codes = [];
        for (let i = 0; i < 5; i++) {
            const r = await chat(gw, a.key);
            codes.push(r.status);
            if (r.status === 200) assert.equal(r.headers.get('x-ratelimit-limit-requests'), '4');
            if (r.status === 429) {
                h.assertError(assert, r, 429, 'rate_limit_error', 'rate_limit_exceeded');
                assert.ok(Number(r.headers.get('retry-after')) >= 1);
                assert.equal(r.headers.get('x-ratelimit-remaining-requests'), '0');
            }
        }
        assert.deepEqual(codes, [200, 200, 200, 429, 429]);
        // the counters are Redis's: a key with the same id in another gateway would share them
        assert.match(redis.cli('KEYS', 'ms:rl:k:*'), /ms:rl:k:1/);
        // the balance as of a store row, and this instance's reservation back at 0 once the
        // ledger has committed and pushed the rows (a poll away; longer on a loaded machine)
        let acct;
        for (const end = Date.now() + h.scaled(5000); ;) {
            acct = redis.cli('HGETALL', `ms:a:${a.account}`);
            if (/^r:[0-9a-f]{32}\n0$/m.test(acct) || Date.now() > end) break;
            await h.sleep(50);
        }
        assert.match(acct, /^bal$/m, acct);
        assert.match(acct, /^r:[0-9a-f]{32}\n0$/m, acct);
        const audit = await gw.cli(['audit']);
        assert.equal(audit.code, 0);
    } finally {
        await gw.stop();
        await gw.mock.stop();
        redis.cli('FLUSHALL');
    }
});

test('a hold in flight covers the balance: a second request is refused until it ends', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, { setup: async (g) => { a = await g.newProxyKey(0.002); } });
    try {
        await waitAdmitting(gw, a.key);
        // max_tokens 100 at $10/M output + the prompt: about $0.0012, so one fits and two do not
        const slow = chat(gw, a.key, { mock: { delay_ms: h.scaled(1500) } });
        await h.sleep(h.scaled(300));
        const r = await chat(gw, a.key);
        h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
        assert.equal((await slow).status, 200);
        // the hold goes when the request's end reaches Redis (asynchronously): then one fits
        let after;
        for (const end = Date.now() + h.scaled(5000); ;) {
            after = await chat(gw, a.key, { max_tokens: 10 });
            if (after.status === 200 || Date.now() > end) break;
            await h.sleep(100);
        }
        assert.equal(after.status, 200, after.text);
    } finally {
        await gw.stop();
        await gw.mock.stop();
        redis.cli('FLUSHALL');
    }
});

test('a key deleted through the CLI is refused at once (a notice, not the next poll)', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, { setup: async (g) => { a = await g.newProxyKey(10); } });
    try {
        await waitAdmitting(gw, a.key);
        const times = [];
        for (let i = 0; i < 3; i++) {
            const key = await gw.createKey(a.account);
            await gw.waitKeyKnown(key);
            const id = await gw.keyId(a.account, key);
            await gw.cli(['key', 'delete', id]);
            const start = Date.now();
            while ((await h.get(gw, '/v1/models', key)).status !== 401) {
                assert.ok(Date.now() - start < 2000, 'refused within the poll interval at worst');
                await h.sleep(2);
            }
            times.push(Date.now() - start);
        }
        // the refresher polls every 250 ms: three refusals all within 100 ms of the CLI's exit
        // would be luck without the notice
        assert.ok(times.every((t) => t < h.scaled(100)), `refused after ${times.join(', ')} ms`);
    } finally {
        await gw.stop();
        await gw.mock.stop();
        redis.cli('FLUSHALL');
    }
});

test('Redis down: 503 with retry-after, never a request without the shared check; back by itself', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, { setup: async (g) => { a = await g.newProxyKey(10); } });
    try {
        await waitAdmitting(gw, a.key);
        await redis.down();
        const r = await chat(gw, a.key);
        h.assertError(assert, r, 503, 'service_unavailable_error', 'service_unavailable');
        assert.ok(Number(r.headers.get('retry-after')) >= 1);
        // requests that need no admission still work
        assert.equal((await h.get(gw, '/v1/models', a.key)).status, 200);
        await redis.up(); // empty: a new epoch
        await waitAdmitting(gw, a.key);
        assert.match(gw.stderr, /does not answer/);
        assert.match(gw.stderr, /new epoch/);
        assert.equal((await gw.cli(['audit'])).code, 0);
    } finally {
        await gw.stop();
        await gw.mock.stop();
        redis.cli('FLUSHALL');
    }
});

test('Redis restarted empty: the instance re-registers the holds it has open', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, { setup: async (g) => { a = await g.newProxyKey(0.002); } });
    try {
        await waitAdmitting(gw, a.key);
        // below the mock provider's 10 s upstream timeout at any time scale
        const slow = chat(gw, a.key, { mock: { delay_ms: Math.min(h.scaled(4000), 9000) } });
        await h.sleep(h.scaled(300));
        await redis.down();
        await redis.up();
        // after the grace the instance is counted again, its open hold with it
        const start = Date.now();
        let r;
        for (;;) {
            r = await chat(gw, a.key);
            if (r.status !== 503 || Date.now() - start > h.scaled(5000)) break;
            await h.sleep(100);
        }
        h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
        assert.equal((await slow).status, 200);
    } finally {
        await gw.stop();
        await gw.mock.stop();
        redis.cli('FLUSHALL');
    }
});

test('a killed instance: its holds stop counting when its live key expires', { ...T, skip }, async () => {
    let a;
    const gw = await gatewayOn(redis, { setup: async (g) => { a = await g.newProxyKey(0.002); } });
    const mock = gw.mock;
    try {
        await waitAdmitting(gw, a.key);
        chat(gw, a.key, { mock: { delay_ms: h.scaled(20000) } }).catch(() => {});
        await h.sleep(h.scaled(300));
        await gw.kill9();
        const killed = Date.now();
        // the same store (the kernel dropped the serve lock) and Redis: a new instance
        await gw.restart();
        let r;
        let first = null;
        for (;;) {
            r = await chat(gw, a.key);
            if (first === null && r.status !== 503) first = r.status;
            if (r.status === 200 || Date.now() - killed > h.scaled(15000)) break;
            await h.sleep(200);
        }
        assert.equal(first, 403, 'the dead instance\'s hold counted at first');
        assert.equal(r.status, 200, r.text);
        const waited = Date.now() - killed;
        assert.ok(waited > 3000 && waited < h.scaled(9000), `released after ${waited} ms`);
        assert.equal((await gw.cli(['audit'])).code, 0);
    } finally {
        await gw.stop();
        await mock.stop();
    }
});
