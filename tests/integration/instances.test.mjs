// One gateway per address and per SQLite store (issue 9): the workers' SO_REUSEPORT sockets would
// let a second `serve` bind the same address silently (the kernel then splits connections between
// two processes with their own keys and balances), and two gateways on one SQLite file each hold
// balances in memory and overspend. A second instance must refuse to start, with a clear message
// and exit status 1; a gateway killed with -9 leaves no lock behind.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as h from '../lib/harness.mjs';

const T = { timeout: h.TEST_TIMEOUT };
let gw, other;

before(async () => {
    gw = await h.startGateway({ mock: false });
    other = await h.prepareGateway(); // its own store, never started by the harness
});
after(async () => {
    await gw?.stop();
    await h.discardGateway(gw); // stop() had nothing to stop after the kill
    await h.discardGateway(other);
});

const serve = (g, listen) => h.run(h.GATEWAY_BIN,
    ['--config', g.configPath, 'serve', ...(listen ? ['--listen', listen] : [])],
    { timeout: h.scaled(10000) });

test('a second gateway on an address in use exits 1 with EADDRINUSE, the first keeps serving', T, async () => {
    const r = await serve(other, `127.0.0.1:${gw.port}`);
    assert.equal(r.code, 1, `exit status (stderr: ${r.stderr})`);
    assert.match(r.stderr, /already in use/, 'the message says why');
    assert.doesNotMatch(r.stderr, /listening on/);
    const res = await h.get(gw, '/healthz');
    assert.equal(res.status, 200);
});

test('a second gateway on a store in use exits 1 naming the store and the holder', T, async () => {
    const r = await serve(gw, '127.0.0.1:0');
    assert.equal(r.code, 1, `exit status (stderr: ${r.stderr})`);
    assert.match(r.stderr, /in use by another modelswitch serve \(pid \d+\)/);
    assert.ok(r.stderr.includes(gw.config.store.sqlite), 'the message names the store');
    assert.doesNotMatch(r.stderr, /listening on/);
    // operator commands still work on a store that is being served
    const id = await gw.createAccount('while served', 1);
    assert.match(id, /^\d+$/);
});

test('a gateway killed with -9 leaves no lock: the next one starts on the same store', T, async () => {
    const r = await gw.signalAndWait('SIGKILL');
    assert.equal(r.signal, 'SIGKILL');
    gw.child = null; // already gone: stop() has nothing to wait for
    const next = await h.prepareGateway();
    next.configPath = gw.configPath; // same config, same store
    next.config = gw.config;
    await next.start();
    try {
        assert.equal((await h.get(next, '/healthz')).status, 200);
    } finally {
        await next.stop();
    }
});

test('a relative store path is relative to the config file, whatever the current directory', T, async () => {
    const g = await h.prepareGateway();
    const rel = `rel-${process.pid}-${Date.now()}`; // a wrong build would make it in the cwd
    const strays = ['/', os.tmpdir()].map((d) => path.join(d, rel));
    try {
        const text = fs.readFileSync(g.configPath, 'utf8');
        assert.ok(text.includes(g.config.store.sqlite), 'the harness writes an absolute store path');
        fs.writeFileSync(g.configPath, text.replace(g.config.store.sqlite, `${rel}/store.db`));
        // the same CLI command from two directories: one store, next to the config file
        const cli = (cwd, args) => h.run('sh', ['-c', 'cd "$1" && shift && exec "$@"', 'sh', cwd,
            h.GATEWAY_BIN, '--config', g.configPath, ...args]);
        const a = await cli('/', ['account', 'create', '--name', 'from-root', '--balance', '1']);
        assert.equal(a.code, 0, a.stderr);
        const b = await cli(os.tmpdir(), ['account', 'create', '--name', 'from-tmp', '--balance', '1']);
        assert.equal(b.code, 0, b.stderr);
        assert.ok(fs.existsSync(path.join(g.dir, rel, 'store.db')), 'the store is beside the config');
        for (const d of strays) assert.ok(!fs.existsSync(d), `a store was made in ${path.dirname(d)}`);
        const list = await cli(g.dir, ['account', 'list']);
        assert.match(list.stdout, /from-root/);
        assert.match(list.stdout, /from-tmp/);
    } finally {
        for (const d of strays) fs.rmSync(d, { recursive: true, force: true });
        await h.discardGateway(g);
    }
});
