// Busy polling (server.busy_poll_us): workers that poll instead of sleeping still serve every
// kind of request (plain, streamed, an upstream that answers late, so that timers fire while a
// worker polls), bill them all (the ledger thread is not starved by the pollers), stop polling
// between requests that come far apart (a gateway with light traffic uses next to no CPU), and drain and exit on SIGTERM.
// This file owns its gateway's lifetime: it stops it itself.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT * 2 };
let gw, key, account;

before(async () => {
    gw = await h.startGateway({
        config: { server: { workers: 2, busy_poll_us: Number(process.env.BP ?? 500) } },
        setup: async (g) => { ({ key, account } = await g.newProxyKey(100)); },
    });
});
after(async () => { await gw?.stop(); });

/** CPU seconds (user + system, every thread) the gateway has used so far. */
function cpuSeconds(pid) {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; /* utime, stime: fields 14 and 15 */
}

const chat = (content, extra = {}) =>
    ({ model: 'mock-model', messages: [{ role: 'user', content }], ...extra });

test('polling workers serve plain, streamed and late answers, bill each, then go idle', T, async () => {
    const N = 60;
    const plain = await Promise.all(Array.from({ length: N }, (_, i) =>
        h.post(gw, '/v1/chat/completions', key, chat(`hello ${i}`))));
    for (const r of plain) assert.equal(r.status, 200, r.text);
    const costs = plain.map((r) => h.usdToNano(r.headers.get('x-modelswitch-cost')));

    // An upstream that answers 300 ms late: the worker polls, sleeps, and its timers still run.
    const t0 = Date.now();
    const late = await h.post(gw, '/v1/chat/completions', key, chat('late', { mock: { delay_ms: 300 } }));
    assert.equal(late.status, 200, late.text);
    costs.push(h.usdToNano(late.headers.get('x-modelswitch-cost')));
    assert.ok(Date.now() - t0 >= 290, 'the delayed answer came early');

    const s = await h.post(gw, '/v1/chat/completions', key, chat('stream me', {
        stream: true, stream_options: { include_usage: true }, mock: { chunks: 12, chunk_delay_ms: 5 },
    }));
    assert.equal(s.status, 200);
    const events = h.sseEvents(s.text);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(h.streamContent(events), Array.from({ length: 12 }, (_, i) => `tok${i} `).join(''));
    costs.push(h.usdToNano(events.at(-2).usage?.cost ?? 0));

    // A long stream whose events come back to back: the worker finds the next ones by polling.
    const long = await h.post(gw, '/v1/chat/completions', key, chat('a long one', {
        stream: true, stream_options: { include_usage: true }, mock: { chunks: 300 },
    }));
    assert.equal(long.status, 200);
    const levents = h.sseEvents(long.text);
    assert.equal(levents.at(-1), '[DONE]');
    assert.equal(levents.at(-2).usage?.completion_tokens, 300);
    costs.push(h.usdToNano(levents.at(-2).usage.cost));

    // Every request is in the ledger, and the balance is down by exactly their costs.
    const total = costs.reduce((a, b) => a + b, 0n);
    assert.ok(total > 0n, 'nothing was charged');
    const want = h.usdToNano('100') - total;
    let shown = '';
    const balanceOf = async () => {
        const r = await gw.cli(['account', 'show', account]);
        shown = r.stdout;
        const m = /balance:\s*(-?[0-9.]+)/.exec(r.stdout);
        return m ? h.usdToNano(m[1]) : null;
    };
    await h.eventually(async () => (await balanceOf()) === want, h.scaled(5000));
    assert.equal(await balanceOf(), want, `the balance is not 100 USD minus every charge:\n${shown}`);

    // Light traffic that does not touch the ledger (a model list every 100 ms), then none: each
    // request costs a poll window or two, and then the workers sleep. A worker that kept polling
    // would use about a CPU second per second.
    await h.sleep(200);
    const c0 = cpuSeconds(gw.pid);
    for (let i = 0; i < 10; i++) {
        const r = await h.get(gw, '/v1/models', key);
        assert.equal(r.status, 200, r.text);
        await h.sleep(100);
    }
    await h.sleep(500);
    const used = cpuSeconds(gw.pid) - c0;
    assert.ok(used < 0.4, `the gateway used ${used.toFixed(2)} CPU s in 1.5 s of light traffic: still polling?`);
});

test('SIGTERM: polling workers drain, exit 0 and report what polling cost', T, async (t) => {
    const r = await gw.signalAndWait('SIGTERM', h.scaled(15000));
    assert.deepEqual(r, { code: 0, signal: null });
    const lines = gw.stderr.split('\n').filter((l) => l.includes('busy polling:'));
    assert.equal(lines.length, 2, `one line per worker:\n${gw.stderr.slice(-2000)}`);
    const found = lines.map((l) => /in (\d+) polls, which picked up (\d+) events/.exec(l));
    for (const m of found) assert.ok(m, `unexpected line: ${lines.join('\n')}`);
    // The workers that served requests polled after them. How many events a poll picked up is
    // timing (on a loaded machine a descheduled mock leaves every window empty, and a gateway
    // that falls behind finds events waiting): `make bench` measures it (modelswitch-poll), a
    // test only reports it.
    assert.ok(found.some((m) => Number(m[1]) > 0), `no worker polled:\n${lines.join('\n')}`);
    for (const l of lines) t.diagnostic(JSON.parse(l).msg);
});
