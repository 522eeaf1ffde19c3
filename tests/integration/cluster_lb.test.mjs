// nginx in front of three ModelSwitch instances (issue 13, docs/OPERATIONS.md "Several
// instances"): nginx runs config/examples/nginx-cluster.conf itself, only its ports changed, and
// the instances are started the way config/examples/modelswitch@.service starts them (its
// Environment= and ExecStart=, with a config whose listen address reads MODELSWITCH_PORT).
//
// Two sets of instances:
// - today: three instances, each on a SQLite store of its own, cloned from one (`sqlite3 .backup`)
//   so that one account and key work on all three. Balances are not shared (one serve per SQLite
//   store), so this checks nginx only: answers, headers and streams pass through unbuffered,
//   requests reach every instance, a killed or draining instance costs no client an error.
// - the same nginx file in front of three instances on one PostgreSQL store and
//   one Redis: the balance is exact through the balancer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import * as h from '../lib/harness.mjs';
import * as cl from '../lib/cluster.mjs';

const T = { timeout: h.scaled(90000) };
const NGINX_CONF = path.join(h.ROOT, 'config', 'examples', 'nginx-cluster.conf');
const UNIT = path.join(h.ROOT, 'config', 'examples', 'modelswitch@.service');
const NGINX = ['/usr/sbin/nginx', '/usr/bin/nginx'].find((p) => fs.existsSync(p)) ?? 'nginx';
const LISTEN = '127.0.0.1:${MODELSWITCH_PORT:-8080}'; // the unit's comment says so
const DRAIN_MS = 8000;

/** The unit's settings (Key=value lines of [Service]), a key given twice as an array. */
function unitSettings() {
    const out = {};
    let section = '';
    for (const raw of fs.readFileSync(UNIT, 'utf8').split('\n')) {
        const line = raw.trim();
        if (!line || line.startsWith('#')) continue;
        const s = /^\[(.+)\]$/.exec(line);
        if (s) { section = s[1]; continue; }
        const i = line.indexOf('=');
        const k = `${section}.${line.slice(0, i)}`, v = line.slice(i + 1);
        out[k] = k in out ? [].concat(out[k], v) : v;
    }
    return out;
}

/**
 * Starts nginx on the example file with its listen port and the three instance ports replaced
 * (each must be found exactly once: a changed file fails here, not silently).
 */
async function startNginx(dir, ports) {
    let conf = await fsp.readFile(NGINX_CONF, 'utf8');
    const port = await h.closedPort();
    const swap = (re, to) => {
        const n = (conf.match(re) ?? []).length;
        assert.equal(n, 1, `${re} occurs ${n} times in ${NGINX_CONF}`);
        conf = conf.replace(re, to);
    };
    swap(/listen 8080;/g, `listen 127.0.0.1:${port};`);
    ['8081', '8082', '8083'].forEach((p, i) => swap(new RegExp(`127\\.0\\.0\\.1:${p}\\b`, 'g'), `127.0.0.1:${ports[i]}`));
    await fsp.mkdir(path.join(dir, 'tmp'), { recursive: true });
    await fsp.writeFile(path.join(dir, 'cluster.conf'), conf);
    // The main file around it, as /etc/nginx/nginx.conf would be, with every path in dir.
    await fsp.writeFile(path.join(dir, 'nginx.conf'), [
        process.getuid?.() === 0 ? 'user root;' : '',
        'worker_processes 1;', `pid ${dir}/nginx.pid;`, `error_log ${dir}/error.log info;`, 'daemon off;',
        'events { worker_connections 1024; }',
        'http {',
        `  access_log ${dir}/access.log;`,
        ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((t) => `  ${t}_temp_path ${dir}/tmp/${t};`),
        `  include ${dir}/cluster.conf;`,
        '}', ''].join('\n'));
    const child = spawn(NGINX, ['-p', dir, '-c', path.join(dir, 'nginx.conf'), '-e', path.join(dir, 'error.log')],
        { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
    const nginx = {
        child, port, base: `http://127.0.0.1:${port}`, dir,
        errorLog: () => fs.readFileSync(path.join(dir, 'error.log'), 'utf8'),
        async stop() {
            if (child.exitCode !== null || child.signalCode !== null) return;
            child.kill('SIGQUIT');
            await new Promise((r) => { const t = setTimeout(() => { child.kill('SIGKILL'); r(); }, 5000); child.once('exit', () => { clearTimeout(t); r(); }); });
        },
    };
    process.once('exit', () => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
    const up = await h.eventually(async () => {
        if (child.exitCode !== null) return false;
        try { return (await fetch(nginx.base + '/healthz')).status === 200; } catch { return false; }
    }, h.scaled(10000), 50);
    if (!up.value) {
        await nginx.stop();
        throw new Error(`nginx did not come up on ${port}: ${stderr}\n${fs.existsSync(path.join(dir, 'error.log')) ? nginx.errorLog() : ''}`);
    }
    return nginx;
}

/**
 * Starts Gateway g the way the unit does: its Environment= (MODELSWITCH_PORT=%i with %i the
 * port) in the environment, `serve --config FILE` (the unit's ExecStart, binary and file swapped).
 */
async function startLikeUnit(g, port) {
    const u = unitSettings();
    const env = [].concat(u['Service.Environment'] ?? []);
    assert.ok(env.includes('MODELSWITCH_PORT=%i'), `the unit sets MODELSWITCH_PORT=%i: ${env}`);
    assert.match(u['Service.ExecStart'], /^\S+\/modelswitch serve --config \S+$/, 'the unit runs `modelswitch serve --config FILE`');
    const saved = process.env.MODELSWITCH_PORT;
    process.env.MODELSWITCH_PORT = String(port); // spawn copies the environment at once
    try {
        await g.start();
    } finally {
        if (saved === undefined) delete process.env.MODELSWITCH_PORT; else process.env.MODELSWITCH_PORT = saved;
    }
    assert.equal(g.port, port, 'the instance listens on the port of its unit');
}

/** POST through base (nginx); with stream, the arrival time of every body chunk is kept. */
async function send(base, key, body, { stream = false } = {}) {
    const t0 = Date.now();
    const res = await fetch(base + '/v1/chat/completions', {
        method: 'POST', body: JSON.stringify(body), signal: AbortSignal.timeout(h.scaled(30000)),
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    });
    const parts = [];
    let text = '';
    if (stream) {
        const dec = new TextDecoder();
        for await (const chunk of res.body) {
            const s = dec.decode(chunk, { stream: true });
            text += s;
            parts.push({ at: Date.now() - t0, text: s });
        }
    } else {
        text = await res.text();
    }
    let json = null;
    try { json = JSON.parse(text); } catch { /* a stream or not JSON */ }
    return { status: res.status, headers: res.headers, text, json, parts, rid: res.headers.get('x-request-id') };
}

const user = (content) => [{ role: 'user', content }];

// ---------------------------------------------------------------------------------------------
// Today: three SQLite instances behind nginx

let mock, gws = [], nginx, dir, acct;

before(async () => {
    dir = await cl.clusterTempDir('ms-lb-');
    mock = await h.startMock();
    const config = { mockPort: mock.port, server: { listen: LISTEN, workers: 1, drain_timeout_ms: DRAIN_MS } };
    const first = await h.prepareGateway({ config });
    gws.push(first);
    const account = await first.createAccount('lb', 1000);
    acct = { account, key: await first.createKey(account), billing: await first.createKey(account, { type: 'billing' }) };
    for (let i = 1; i < 3; i++) {
        const g = await h.prepareGateway({ config });
        const r = await h.run('sqlite3', ['-cmd', '.timeout 10000', first.config.store.sqlite, `.backup '${g.config.store.sqlite}'`]);
        assert.equal(r.code, 0, `sqlite3 .backup: ${r.stderr}`);
        gws.push(g);
    }
    const ports = [];
    for (const g of gws) {
        const p = await h.closedPort();
        ports.push(p);
        await startLikeUnit(g, p);
        g.index = gws.indexOf(g);
    }
    nginx = await startNginx(path.join(dir, 'nginx'), ports);
}, { timeout: h.scaled(60000) });

after(async () => {
    // Everything is stopped even when one part fails to stop cleanly; the first failure is thrown.
    const errors = [];
    const attempt = async (fn) => { try { await fn(); } catch (e) { errors.push(e); } };
    await attempt(() => nginx?.stop());
    for (const g of gws) await attempt(() => (g.child ? g.stop() : h.discardGateway(g)));
    await attempt(() => mock?.stop());
    if (dir && process.env.MODELSWITCH_KEEP_TMP !== '1') await fsp.rm(dir, { recursive: true, force: true });
    if (errors.length) throw errors[0];
});

test('the unit file: what systemd runs, and systemd-analyze verify accepts it', T, async (t) => {
    const u = unitSettings();
    assert.equal(u['Service.KillSignal'], 'SIGTERM');
    assert.equal(u['Service.Restart'], 'on-failure');
    assert.ok(Number(u['Service.LimitNOFILE']) >= 65536, 'LimitNOFILE');
    const stopS = Number(/^(\d+)s?$/.exec(u['Service.TimeoutStopSec'])?.[1]);
    assert.ok(stopS * 1000 > 30000, `TimeoutStopSec ${stopS} s must exceed the default drain_timeout_ms (30 s)`);
    // systemd-analyze checks the syntax and every directive; only the binary's path is swapped
    // (it must exist) and the instance is named.
    const r0 = await h.run('systemd-analyze', ['--version']).catch(() => null);
    if (!r0 || r0.code !== 0) return t.diagnostic('systemd-analyze is not installed: verify skipped');
    const vdir = path.join(dir, 'unit');
    await fsp.mkdir(vdir, { recursive: true });
    const unit = (await fsp.readFile(UNIT, 'utf8')).replace(/^ExecStart=\S+/m, `ExecStart=${h.GATEWAY_BIN}`);
    const file = path.join(vdir, 'modelswitch@8081.service');
    await fsp.writeFile(file, unit);
    const r = await h.run('systemd-analyze', ['verify', file]);
    assert.equal(r.code, 0, `systemd-analyze verify: ${r.stdout}${r.stderr}`);
    assert.equal((r.stdout + r.stderr).trim(), '', 'no warning from systemd-analyze verify');
});

test('through nginx: answers with their headers, spread over all three instances, /readyz', T, async () => {
    const rids = [];
    for (let i = 0; i < 12; i++) {
        const r = await send(nginx.base, acct.key, { model: 'echo-1', messages: user(`lb ${i}`), max_tokens: 5 });
        assert.equal(r.status, 200, r.text);
        assert.match(r.rid ?? '', /\S/, 'x-request-id passes through');
        assert.match(r.headers.get('x-modelswitch-cost') ?? '', /^\d/, 'x-modelswitch-cost passes through');
        assert.match(r.headers.get('x-ratelimit-remaining-requests') ?? '', /^\d+$/, 'rate-limit headers pass through');
        rids.push(r.rid);
    }
    // Refusals keep the contract's body and headers.
    const bad = await h.request({ base: nginx.base }, 'POST', '/v1/chat/completions',
        { key: h.fakeKey(), body: { model: 'echo-1', messages: user('x') } });
    h.assertError(assert, bad, 401, 'invalid_request_error', 'invalid_api_key');
    const ready = await fetch(nginx.base + '/readyz');
    assert.equal(ready.status, 200);
    assert.deepEqual(await ready.json(), { status: 'ready' });
    // the access log is written asynchronously: wait until every answer is in some log
    let served;
    for (const end = Date.now() + h.scaled(5000); ;) {
        served = gws.map((g) => g.accessLog().filter((e) => rids.includes(e.request_id)).length);
        if (served.reduce((a, b) => a + b, 0) >= rids.length || Date.now() > end) break;
        await h.sleep(50);
    }
    assert.equal(served.reduce((a, b) => a + b, 0), rids.length, `every answer is in one instance's log: ${served}`);
    assert.ok(served.every((n) => n > 0), `every instance served some (least_conn, sequential requests): ${served}`);
});

test('through nginx: a stream arrives event by event, not buffered; the usage chunk at the end', T, async () => {
    const chunks = 8, gap = 150;
    const r = await send(nginx.base, acct.key, {
        model: 'mock-model', messages: user('lb stream'), stream: true, max_tokens: 20,
        stream_options: { include_usage: true }, mock: { chunks, chunk_delay_ms: gap },
    }, { stream: true });
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') ?? '', /^text\/event-stream/);
    const ev = h.sseEvents(r.text);
    assert.equal(ev[ev.length - 1], '[DONE]');
    assert.equal(h.streamContent(ev), Array.from({ length: chunks }, (_, i) => `tok${i} `).join(''));
    assert.ok(ev.some((e) => e.usage?.cost !== undefined), 'the usage chunk with its cost');
    // The first token reached the client long before the last one was produced upstream.
    const first = r.parts.find((p) => p.text.includes('tok0'));
    const last = r.parts.find((p) => p.text.includes(`tok${chunks - 1}`));
    assert.ok(first && last, 'both tokens seen');
    assert.ok(last.at - first.at >= (chunks - 1) * gap * 0.5,
        `tok0 at ${first.at} ms and tok${chunks - 1} at ${last.at} ms: nginx buffered the stream`);
});

test('through nginx: an instance killed with kill -9 or draining on SIGTERM costs no client an error', T, async (t) => {
    const body = (tag) => ({ model: 'echo-1', messages: user(tag), max_tokens: 5 });
    // Draining: instance 1 has a stream in flight and gets SIGTERM; new requests it would get are
    // answered 503 (or refused) by it, and nginx hands them to another instance.
    const draining = gws[1];
    const stream = send(`http://127.0.0.1:${draining.port}`, acct.key, {
        model: 'mock-model', messages: user('drain stream'), stream: true, max_tokens: 20,
        mock: { chunks: 10, chunk_delay_ms: 300 },
    }, { stream: true });
    await h.sleep(300);
    const logFrom = draining.accessLog().length;
    draining.child.kill('SIGTERM');
    // Slow answers (200 ms upstream), so that least_conn spreads them onto the draining instance too.
    const during = await Promise.all(Array.from({ length: 30 }, (_, i) => send(nginx.base, acct.key, {
        model: 'mock-model', messages: user(`drain ${i}`), max_tokens: 5, mock: { delay_ms: 200, chunks: 2 },
    })));
    assert.deepEqual(during.map((r) => r.status), during.map(() => 200), 'every request while an instance drains');
    const s = await stream;
    assert.equal(s.status, 200);
    assert.equal(h.sseEvents(s.text).pop(), '[DONE]', 'the stream in flight finished');
    // (No second SIGTERM: that one would mean "stop now".)
    const gone = await h.eventually(() => draining.exit, h.scaled(DRAIN_MS + 5000));
    assert.deepEqual(gone.value, { code: 0, signal: null }, 'the drained instance exits 0');
    // The retry path was taken: nginx sent some of them to the draining instance, which answered
    // 503 or refused the connection, and another instance answered instead.
    const refused = draining.accessLog().slice(logFrom).filter((e) => e.status === 503).length;
    const port = `127.0.0.1:${draining.port}`;
    const connRefused = nginx.errorLog().split('\n').filter((l) => l.includes(port) && /refused/.test(l)).length;
    t.diagnostic(`while draining: ${refused} answered 503 by the instance, ${connRefused} connections refused`);
    assert.ok(refused + connRefused > 0, 'nginx never tried the draining instance: the retry path was not tested');

    // kill -9: instance 0 dies; every request through nginx is still answered.
    await gws[0].kill9();
    const afterKill = [];
    for (let i = 0; i < 10; i++) afterKill.push(await send(nginx.base, acct.key, body(`after kill ${i}`)));
    assert.deepEqual(afterKill.map((r) => r.status), afterKill.map(() => 200), 'every request after the kill');
    const logged = await h.eventually(() => afterKill.every((r) => gws[2].accessLog().some((e) => e.request_id === r.rid)),
        h.scaled(3000));
    assert.ok(logged.value, 'the one instance left answered them');
});

// ---------------------------------------------------------------------------------------------
// three instances on PostgreSQL + Redis behind the same file

test('through nginx onto one PostgreSQL store and one Redis: N holds of balance pay exactly N', T, async (t) => {
    let pg = null, c = null, nx = null;
    const pdir = await cl.clusterTempDir('ms-lbpg-');
    try {
        pg = await cl.PgServer.start(path.join(pdir, 'pg'));
        const ports = [await h.closedPort(), await h.closedPort(), await h.closedPort()];
        c = await cl.Cluster.start({ pg, mock: true, start: false, config: {
            server: { listen: LISTEN, workers: 1 },
            models: { 'echo-exact': { pricing: { input: 0, output: 1000 }, max_output_tokens: 1024,
                deployments: [{ provider: 'local', model: 'echo' }] } },
        } });
        for (const [i, g] of c.gw.entries()) await startLikeUnit(g, ports[i]);
        // a fresh Redis admits nothing for its first seconds (/readyz says so)
        for (const g of c.gw) await cl.waitReady(g);
        nx = await startNginx(path.join(pdir, 'nginx'), ports);
        const N = 5, unit = 10000000n;
        const a = await c.account('lbpg', BigInt(N) * unit);
        const b = { model: 'echo-exact', max_tokens: 10, messages: user('lb pg ' + 'w '.repeat(20)) };
        const rs = await Promise.all(Array.from({ length: 10 * N }, () => send(nx.base, a.key, b)));
        const oks = rs.filter((r) => r.status === 200);
        assert.equal(oks.length, N, `statuses: ${rs.map((r) => r.status)}`);
        for (const r of rs.filter((x) => x.status !== 200)) h.assertError(assert, r, 403, 'permission_error', 'insufficient_balance');
        const rows = await c.usage(a.billing);
        assert.deepEqual(rows.map((u) => u.requestId).sort(), oks.map((r) => r.rid).sort(), 'the ledger: each 200 once');
        // each instance reads the others' charges from the store within its next poll (100 ms)
        const zero = await h.eventually(async () => (await h.balanceNano(c.gw[0], a.billing)) === 0n, h.scaled(3000));
        assert.ok(zero.value, 'the balance is spent exactly, as every instance sees it');
        const s = await send(nx.base, (await c.account('lbpg2', 1000n * unit)).key, {
            model: 'mock-model', messages: user('lb pg stream'), stream: true, max_tokens: 20, mock: { chunks: 4, chunk_delay_ms: 100 },
        }, { stream: true });
        assert.equal(s.status, 200, s.text);
        assert.equal(h.sseEvents(s.text).pop(), '[DONE]');
        assert.equal((await c.audit()).code, 0, 'audit');
    } finally {
        await nx?.stop();
        await c?.stop();
        await pg?.stop();
        if (process.env.MODELSWITCH_KEEP_TMP !== '1') await fsp.rm(pdir, { recursive: true, force: true });
    }
});
