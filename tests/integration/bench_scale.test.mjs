// bench/scale.c (make bench, phase shared) run small: every (clients, part, W) line is printed
// with its figures, every request it settled reaches the ledger (its row count), and the ledger's
// audit passes. A benchmark's figures are not asserted; that it measures what it says is.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const bin = path.join(root, process.env.MODELSWITCH_BIN ? path.dirname(process.env.MODELSWITCH_BIN)
    : 'build', 'bench/scale');

test('bench/scale drives the shared parts from 1..nproc threads and bills every request', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ms-scale-'));
    try {
        const out = execFileSync(bin, [dir, '200', '2', '20'], { encoding: 'utf8', timeout: 60000 });
        const lines = out.trim().split('\n');
        assert.equal(lines.at(-1), 'shared audit ok');
        const ncpu = os.availableParallelism();
        const rows = lines.slice(0, -1).map((l) => {
            const [kind, mode, part, w, ...kvs] = l.split(' ');
            const v = Object.fromEntries(kvs.map((kv) => kv.split('=')).map(([k, x]) => [k, Number(x)]));
            return { kind, mode, part, w: Number(w), v };
        });
        const parts = ['all', 'paced', 'keycache', 'ratelimit', 'billing', 'router', 'logger'];
        assert.equal(rows.length, 2 * parts.length * ncpu);
        let billed = 0;
        for (const mode of ['many', 'hot']) {
            for (const part of parts) {
                for (let w = 1; w <= ncpu; w++) {
                    const r = rows.find((x) => x.mode === mode && x.part === part && x.w === w);
                    assert.ok(r, `${mode} ${part} ${w}`);
                    assert.equal(r.kind, 'shared');
                    assert.equal(r.v.threads, w);
                    assert.ok(r.v.ns_per_req > 0 && r.v.cpu_ns_per_req > 0, JSON.stringify(r));
                    assert.equal(r.v.pace_ns, part === 'paced' ? 20000 : 0);
                    // the rounds' own scaling, with its spread (1 for one thread)
                    assert.ok(r.v.scaling_min <= r.v.scaling && r.v.scaling <= r.v.scaling_max &&
                        r.v.scaling > 0, JSON.stringify(r));
                    if (w === 1) assert.equal(r.v.scaling, 1);
                    // requests a round (the line's requests) times the rounds, for those billed
                    if (part === 'all' || part === 'paced' || part === 'billing') {
                        billed += r.v.requests * r.v.rounds;
                    }
                }
            }
        }
        const db = path.join(dir, 'scale.db');
        // the usage rows' count without the gateway's usage table: its blocks' counts
        const count = execFileSync('sqlite3', [db,
            'SELECT (SELECT coalesce(sum(n), 0) FROM usage_blocks) + (SELECT coalesce(sum(n), 0) FROM usage_recent)'],
            { encoding: 'utf8' });
        assert.equal(Number(count.trim()), billed);
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
});
