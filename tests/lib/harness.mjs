// Test harness for the integration and end-to-end suites (Node 20 ESM, stdlib only).
//
// Each test file starts its own mock upstream (tests/mock/mock_upstream, see tests/mock/README.md)
// and its own gateway on port 0 with a private temp dir (config, SQLite store), so files run
// concurrently without sharing anything. The gateway's stderr (operator log + access log) is kept;
// stopping it checks that it exited cleanly within the deadline and that no sanitizer or valgrind
// report appeared, so a memory error anywhere in a file fails that file.
//
// Environment:
//   MODELSWITCH_BIN        gateway binary (default build/modelswitch; run.sh sets build-asan/...)
//   MOCK_UPSTREAM_BIN      mock upstream (default: next to the gateway, else build/mock_upstream)
//   MODELSWITCH_VALGRIND=1 run `serve` under valgrind (error exit 99 fails the test)
//   MODELSWITCH_TIME_SCALE multiply every deadline (default 1, 2 for sanitizer builds, 8 valgrind)
//   MODELSWITCH_KEEP_TMP=1 keep the temp dirs for inspection

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

export { sleep };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const abs = (p) => (path.isAbsolute(p) ? p : path.resolve(ROOT, p));

export const GATEWAY_BIN = abs(process.env.MODELSWITCH_BIN || 'build/modelswitch');
export const MOCK_BIN = (() => {
    if (process.env.MOCK_UPSTREAM_BIN) return abs(process.env.MOCK_UPSTREAM_BIN);
    const beside = path.join(path.dirname(GATEWAY_BIN), 'mock_upstream');
    return fs.existsSync(beside) ? beside : abs('build/mock_upstream');
})();
export const VALGRIND = process.env.MODELSWITCH_VALGRIND === '1';
export const SANITIZED = /asan|san/i.test(GATEWAY_BIN);
export const TIME_SCALE = Number(process.env.MODELSWITCH_TIME_SCALE) || (VALGRIND ? 8 : SANITIZED ? 2 : 1);
/** Scales a deadline for slow builds (sanitizers, valgrind). */
export const scaled = (ms) => Math.round(ms * TIME_SCALE);
/** Default per-test timeout: every test passes { timeout: TEST_TIMEOUT } (no test may hang). */
export const TEST_TIMEOUT = scaled(30000);

const SANITIZER_PATTERNS = ['ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer',
    'ERROR: ThreadSanitizer', 'ERROR: MemorySanitizer'];
const VALGRIND_ERROR_EXIT = 99;

// Children are killed if the test process dies without stopping them, so nothing outlives a run.
const children = new Set();
function track(child) {
    children.add(child);
    child.once('exit', () => children.delete(child));
    return child;
}
process.once('exit', () => {
    for (const c of children) {
        try { c.kill('SIGKILL'); } catch { /* already gone */ }
    }
});

function tail(s, n = 4000) {
    return s.length > n ? '…' + s.slice(-n) : s;
}

/** Throws if text holds a sanitizer report; what names the process in the message. */
export function checkSanitizerReports(text, what = 'process') {
    for (const p of SANITIZER_PATTERNS) {
        const i = text.indexOf(p);
        if (i >= 0) {
            const excerpt = text.slice(Math.max(0, i - 200), i + 3000);
            throw new Error(`${what}: sanitizer report ("${p}") in stderr:\n${excerpt}`);
        }
    }
}

/** Waits for a child to exit; resolves {code, signal} or null on timeout. */
function waitExit(child, ms) {
    if (child.exitCode !== null || child.signalCode !== null) {
        return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
    }
    return new Promise((resolve) => {
        const t = setTimeout(() => { child.off('exit', onExit); resolve(null); }, ms);
        const onExit = (code, signal) => { clearTimeout(t); resolve({ code, signal }); };
        child.once('exit', onExit);
    });
}

/** Runs a command to completion with a deadline; resolves {code, signal, stdout, stderr}. */
export function run(cmd, args, { timeout = scaled(20000), env, input } = {}) {
    return new Promise((resolve, reject) => {
        const child = track(spawn(cmd, args, {
            stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
            env: { ...process.env, ...env },
        }));
        let stdout = '', stderr = '';
        child.stdout.setEncoding('utf8').on('data', (d) => { stdout += d; });
        child.stderr.setEncoding('utf8').on('data', (d) => { stderr += d; });
        if (input !== undefined) child.stdin.end(input);
        const t = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`${path.basename(cmd)} ${args.join(' ')}: no exit within ${timeout} ms\n` +
                `stdout: ${tail(stdout)}\nstderr: ${tail(stderr)}`));
        }, timeout);
        child.on('error', (e) => { clearTimeout(t); reject(e); });
        child.on('close', (code, signal) => { clearTimeout(t); resolve({ code, signal, stdout, stderr }); });
    });
}

/** A free TCP port on 127.0.0.1 that nothing listens on (for "connection refused" providers). */
export function closedPort() {
    return new Promise((resolve, reject) => {
        const s = net.createServer();
        s.on('error', reject);
        s.listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

// ---------------------------------------------------------------------------------------------
// Mock upstream

export class Mock {
    constructor(child, port) {
        this.child = child;
        this.port = port;
        this.url = `http://127.0.0.1:${port}`;
        this.stderr = '';
        child.stderr.setEncoding('utf8').on('data', (d) => { this.stderr += d; });
    }

    async #call(method, p, body) {
        const res = await fetch(this.url + p, {
            method,
            headers: body === undefined ? {} : { 'content-type': 'application/json' },
            body: body === undefined ? undefined : JSON.stringify(body),
            signal: AbortSignal.timeout(scaled(5000)),
        });
        const text = await res.text();
        if (!res.ok) throw new Error(`mock ${method} ${p}: ${res.status} ${text}`);
        return text ? JSON.parse(text) : null;
    }

    /** Recorded requests [{method, path, headers, body}] (body: the raw string received). */
    async requests() {
        const r = await this.#call('GET', '/_mock/requests');
        return Array.isArray(r) ? r : r.requests;
    }
    /** Recorded requests whose path ends with suffix (e.g. '/chat/completions'). */
    async requestsTo(suffix) {
        return (await this.requests()).filter((r) => r.path.split('?')[0].endsWith(suffix));
    }
    async clear() { await this.#call('DELETE', '/_mock/requests'); }
    async stats() { return this.#call('GET', '/_mock/stats'); }
    async config(cfg) { return this.#call('POST', '/_mock/config', cfg); }

    async stop() {
        if (this.child.exitCode !== null || this.child.signalCode !== null) return;
        this.child.kill('SIGTERM');
        if (!(await waitExit(this.child, scaled(5000)))) {
            this.child.kill('SIGKILL');
            await waitExit(this.child, 5000);
        }
        checkSanitizerReports(this.stderr, 'mock_upstream');
    }
}

/** Starts build/mock_upstream on a free port; it prints `PORT <n>` on stdout once listening. */
export async function startMock() {
    if (!fs.existsSync(MOCK_BIN)) throw new Error(`mock upstream not built: ${MOCK_BIN}`);
    const child = track(spawn(MOCK_BIN, ['--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const port = await new Promise((resolve, reject) => {
        let out = '';
        const t = setTimeout(() => {
            child.kill('SIGKILL');
            reject(new Error(`mock_upstream printed no PORT line within 10 s: ${out}`));
        }, scaled(10000));
        child.stdout.setEncoding('utf8').on('data', (d) => {
            out += d;
            const m = /^PORT (\d+)\s*$/m.exec(out);
            if (m) { clearTimeout(t); resolve(Number(m[1])); }
        });
        child.on('error', (e) => { clearTimeout(t); reject(e); });
        child.on('exit', (code, sig) => {
            clearTimeout(t);
            reject(new Error(`mock_upstream exited (${code ?? sig}) before listening: ${out}`));
        });
    });
    child.stdout.resume();
    return new Mock(child, port);
}

// ---------------------------------------------------------------------------------------------
// Config

const PLAIN_STR = /^[A-Za-z0-9_./:-]+$/;
function yamlScalar(v) {
    if (v === null) return 'null';
    if (typeof v === 'number' || typeof v === 'boolean') return String(v);
    if (typeof v === 'string') {
        // Keep ${VAR} references and plain words unquoted; quote the rest as a JSON string, which
        // is also a valid double-quoted YAML scalar.
        if (v !== '' && PLAIN_STR.test(v) && !/^(true|false|null|yes|no|on|off|~|[-+.0-9].*)$/i.test(v)) {
            return v;
        }
        if (/^\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}$/.test(v)) return v;
        return JSON.stringify(v);
    }
    throw new Error(`yaml: unsupported scalar ${typeof v}`);
}

/** A small block-style YAML writer for plain objects, arrays and scalars. */
export function toYaml(obj, indent = '') {
    let out = '';
    for (const [k, v] of Object.entries(obj)) {
        if (v === undefined) continue;
        if (Array.isArray(v)) {
            out += `${indent}${k}:\n`;
            for (const item of v) {
                if (item !== null && typeof item === 'object') {
                    const inner = toYaml(item, indent + '    ');
                    out += `${indent}  - ${inner.trimStart()}`;
                } else {
                    out += `${indent}  - ${yamlScalar(item)}\n`;
                }
            }
            if (v.length === 0) out = out.replace(/:\n$/, ': []\n');
        } else if (v !== null && typeof v === 'object') {
            out += `${indent}${k}:\n${toYaml(v, indent + '  ')}`;
        } else {
            out += `${indent}${k}: ${yamlScalar(v)}\n`;
        }
    }
    return out;
}

/**
 * The test configuration object. Providers: `mock` (openai kind, the mock upstream), `mockfast`
 * (same mock, short timeout, for 504 tests), `dead` (a closed port), `disabled` (empty key, so
 * disabled), `local` (echo). Models: mock-model, mock-embed, mock-timeout, dead-model,
 * ghost-model (only deployment disabled), echo-1, echo-embed-1.
 */
export function makeConfig({ dir, mockPort, deadPort, server = {}, limits = {}, billing = {},
    providers = {}, models = {}, notifications }) {
    const mockBase = `http://127.0.0.1:${mockPort ?? 9}/v1`;
    return {
        server: {
            listen: '127.0.0.1:0',
            workers: 2,
            max_body_bytes: 1048576,
            header_timeout_ms: 1000,
            ...server,
        },
        store: { sqlite: path.join(dir, 'modelswitch.db') },
        limits: { requests_per_minute: 100000, tokens_per_minute: 100000000, ...limits },
        billing: { markup_percent: 0, ...billing },
        notifications,
        providers: {
            mock: { kind: 'openai', base_url: mockBase, api_key: 'sk-upstream-test', timeout_ms: 10000 },
            mockfast: { kind: 'openai', base_url: mockBase, api_key: 'sk-upstream-test', timeout_ms: 1000 },
            dead: {
                kind: 'openai', base_url: `http://127.0.0.1:${deadPort ?? 9}/v1`,
                api_key: 'sk-upstream-test', timeout_ms: 2000,
            },
            disabled: {
                kind: 'openai', base_url: mockBase,
                api_key: '${MODELSWITCH_TEST_UNSET_KEY_9F2C:-}', timeout_ms: 2000,
            },
            local: { kind: 'echo' },
            ...providers,
        },
        models: {
            'mock-model': {
                pricing: { input: 2.5, output: 10 },
                max_output_tokens: 4096,
                deployments: [{ provider: 'mock', model: 'mock-upstream-model' }],
            },
            'mock-embed': {
                pricing: { input: 0.02, output: 0 },
                deployments: [{ provider: 'mock', model: 'mock-embed-upstream' }],
            },
            'mock-timeout': {
                pricing: { input: 1, output: 1 },
                deployments: [{ provider: 'mockfast', model: 'mock-upstream-model' }],
            },
            'dead-model': {
                pricing: { input: 1, output: 1 },
                deployments: [{ provider: 'dead', model: 'dead-upstream' }],
            },
            'ghost-model': {
                pricing: { input: 1, output: 1 },
                deployments: [{ provider: 'disabled', model: 'ghost-upstream' }],
            },
            'echo-1': {
                pricing: { input: 0.1, output: 0.2 },
                max_output_tokens: 1024,
                deployments: [{ provider: 'local', model: 'echo' }],
            },
            'echo-embed-1': {
                pricing: { input: 0.01, output: 0 },
                deployments: [{ provider: 'local', model: 'echo-embed' }],
            },
            ...models,
        },
    };
}

// ---------------------------------------------------------------------------------------------
// Gateway

const LISTEN_RE = /listening on http:\/\/127\.0\.0\.1:(\d+)/;

export class Gateway {
    constructor({ dir, configPath, config, mock }) {
        this.dir = dir;
        this.configPath = configPath;
        this.config = config;
        this.mock = mock ?? null;
        this.child = null;
        this.stderr = '';
        this.port = null;
        this.exit = null;
    }

    get base() { return `http://127.0.0.1:${this.port}`; }
    get pid() { return this.child?.pid; }

    /** Runs a CLI subcommand against this gateway's config; throws on a non-zero exit. */
    async cli(args, { allowFail = false, timeout } = {}) {
        const r = await run(GATEWAY_BIN, ['--config', this.configPath, ...args], { timeout });
        checkSanitizerReports(r.stderr, `modelswitch ${args.join(' ')}`);
        if (!allowFail && r.code !== 0) {
            throw new Error(`modelswitch ${args.join(' ')} exited ${r.code ?? r.signal}\n` +
                `stdout: ${r.stdout}\nstderr: ${r.stderr}`);
        }
        return r;
    }

    /** `account create`; returns the id printed. */
    async createAccount(name = 'acct', balance = 100) {
        const r = await this.cli(['account', 'create', '--name', name, '--balance', String(balance)]);
        const m = /(\d+)\s*$/.exec(r.stdout.trim());
        if (!m) throw new Error(`account create printed no id: ${JSON.stringify(r.stdout)}`);
        return m[1];
    }

    /** `key create`; returns the key, which is alone on the last line of stdout. */
    async createKey(account, { type, expires, name, spendLimit } = {}) {
        const args = ['key', 'create', '--account', String(account)];
        if (name) args.push('--name', name);
        if (type) args.push('--type', type);
        if (expires) args.push('--expires', expires);
        if (spendLimit !== undefined) args.push('--spend-limit', String(spendLimit));
        const r = await this.cli(args);
        const lines = r.stdout.split('\n').map((l) => l.trim()).filter(Boolean);
        const key = lines[lines.length - 1] ?? '';
        if (!/^m[sk]-[A-Za-z0-9]+$/.test(key)) {
            throw new Error(`key create: last line is not a key: ${JSON.stringify(r.stdout)}`);
        }
        return key;
    }

    /** An account with a balance and one proxy key: {account, key}. */
    async newProxyKey(balance = 100, name = 'acct') {
        const account = await this.createAccount(name, balance);
        const key = await this.createKey(account);
        return { account, key };
    }

    /**
     * Waits until a key made while the gateway runs is known to it (CLI changes reach a running
     * gateway within 1 s): polls GET /v1/models (proxy keys) or /api/balance (billing keys).
     * The default budget is generous: this is set-up, and a CI machine may stall for a second
     * (errors.test.mjs checks the 1 s propagation itself).
     */
    async waitKeyKnown(key, ms = 1000 + scaled(2000)) {
        const p = key.startsWith('mk-') ? '/api/balance' : '/v1/models';
        const start = Date.now();
        for (;;) {
            const res = await request(this, 'GET', p, { key });
            if (res.status !== 401) return Date.now() - start;
            if (Date.now() - start > ms) {
                throw new Error(`key ${key.slice(0, 8)} still unknown to the gateway after ${ms} ms: ` +
                    res.text);
            }
            await sleep(50);
        }
    }

    /** The id of key (found by its display prefix in `key list --account`). */
    async keyId(account, key) {
        const r = await this.cli(['key', 'list', '--account', String(account)]);
        const prefix = key.slice(0, 8);
        try {
            const j = JSON.parse(r.stdout);
            const list = Array.isArray(j) ? j : j.keys;
            const k = list.find((x) => x.prefix === prefix || String(x.prefix).startsWith(prefix));
            if (k) return String(k.id);
        } catch { /* not JSON: a table */ }
        for (const line of r.stdout.split('\n')) {
            if (!line.includes(prefix)) continue;
            const m = /\b(\d+)\b/.exec(line);
            if (m) return m[1];
        }
        throw new Error(`key list shows no line with prefix ${prefix}:\n${r.stdout}`);
    }

    /** Starts `modelswitch serve` and waits for its "listening on" line. */
    async start() {
        if (!fs.existsSync(GATEWAY_BIN)) throw new Error(`gateway not built: ${GATEWAY_BIN}`);
        let cmd = GATEWAY_BIN;
        let args = ['serve', '--config', this.configPath];
        if (VALGRIND) {
            args = ['--error-exitcode=' + VALGRIND_ERROR_EXIT, '--leak-check=full',
                '--errors-for-leak-kinds=definite', '--show-leak-kinds=definite', '-q',
                '--trace-children=no', cmd, ...args];
            cmd = 'valgrind';
        }
        this.stderr = '';
        this.exit = null;
        const child = track(spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd: this.dir }));
        this.child = child;
        child.stdout.resume();
        child.on('exit', (code, signal) => { this.exit = { code, signal }; });
        this.port = await new Promise((resolve, reject) => {
            const t = setTimeout(() => {
                child.kill('SIGKILL');
                reject(new Error(`gateway did not log "listening on" within ${scaled(15000)} ms:\n` +
                    tail(this.stderr)));
            }, scaled(15000));
            child.stderr.setEncoding('utf8').on('data', (d) => {
                this.stderr += d;
                const m = LISTEN_RE.exec(this.stderr);
                if (m && this.port === null) { clearTimeout(t); resolve(Number(m[1])); }
            });
            child.on('error', (e) => { clearTimeout(t); reject(e); });
            child.on('exit', (code, sig) => {
                clearTimeout(t);
                reject(new Error(`gateway exited (${code ?? sig}) before listening:\n${tail(this.stderr)}`));
            });
        });
        return this;
    }

    /** Sends sig and waits for the exit; resolves {code, signal}. Throws on a timeout. */
    async signalAndWait(sig = 'SIGTERM', ms = scaled(10000)) {
        if (!this.child) return this.exit;
        if (!this.exit) this.child.kill(sig);
        const r = await waitExit(this.child, ms);
        if (!r) {
            this.child.kill('SIGKILL');
            await waitExit(this.child, 5000);
            throw new Error(`gateway did not exit within ${ms} ms of ${sig}:\n${tail(this.stderr)}`);
        }
        return r;
    }

    /**
     * Stops the gateway with SIGTERM: it must exit 0 within 10 s (scaled), with no sanitizer or
     * valgrind report in its stderr. Removes the temp dir unless MODELSWITCH_KEEP_TMP is set.
     */
    async stop() {
        if (!this.child) return;
        try {
            const r = await this.signalAndWait('SIGTERM');
            checkSanitizerReports(this.stderr, 'gateway');
            if (VALGRIND && r.code === VALGRIND_ERROR_EXIT) {
                throw new Error(`valgrind reported errors in the gateway:\n${tail(this.stderr, 8000)}`);
            }
            if (r.code !== 0) {
                throw new Error(`gateway exited with ${r.code ?? r.signal} (want 0):\n${tail(this.stderr)}`);
            }
        } finally {
            this.child = null;
            await this.mock?.stop();
            if (process.env.MODELSWITCH_KEEP_TMP !== '1') {
                await fsp.rm(this.dir, { recursive: true, force: true });
            }
        }
    }

    /** Parsed access-log lines (JSON objects with a request_id) seen so far on stderr. */
    accessLog() {
        const out = [];
        for (const line of this.stderr.split('\n')) {
            const s = line.trim();
            if (!s.startsWith('{')) continue;
            try {
                const j = JSON.parse(s);
                if (j && typeof j === 'object' && 'request_id' in j) out.push(j);
            } catch { /* not a JSON line */ }
        }
        return out;
    }

    /** Waits until the access log has an entry for request id rid (the log is asynchronous). */
    async waitForLog(rid, ms = scaled(3000)) {
        const deadline = Date.now() + ms;
        for (;;) {
            const e = this.accessLog().find((x) => x.request_id === rid);
            if (e) return e;
            if (Date.now() > deadline) {
                throw new Error(`no access-log line for request_id ${rid} within ${ms} ms:\n` +
                    tail(this.stderr, 2000));
            }
            await sleep(50);
        }
    }

    /** Peak resident memory of the gateway in kB (VmHWM), or null where /proc has no answer. */
    peakRssKb() {
        try {
            const s = fs.readFileSync(`/proc/${this.child.pid}/status`, 'utf8');
            const m = /VmHWM:\s+(\d+) kB/.exec(s);
            return m ? Number(m[1]) : null;
        } catch {
            return null;
        }
    }
}

/**
 * Creates a temp dir with a config file (makeConfig's arguments in `config`) and returns a Gateway
 * that is not started yet: its CLI works (the store is the temp dir's SQLite file).
 */
export async function prepareGateway({ mock = null, config = {} } = {}) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-test-'));
    const deadPort = await closedPort();
    const cfg = makeConfig({ dir, mockPort: mock?.port, deadPort, ...config });
    const configPath = path.join(dir, 'modelswitch.yaml');
    await fsp.writeFile(configPath, toYaml(cfg));
    return new Gateway({ dir, configPath, config: cfg, mock });
}

/**
 * Creates a temp dir and config and starts a gateway. Options:
 *   mock: true (default) starts a mock upstream owned by the gateway (stopped with it)
 *   config: object merged into makeConfig's arguments (server, limits, providers, models, ...)
 *   setup: async (gw) => {} run before `serve` (e.g. create accounts and keys via the CLI)
 */
export async function startGateway({ mock = true, config = {}, setup } = {}) {
    let m = null;
    let gw = null;
    try {
        m = mock ? await startMock() : null;
        gw = await prepareGateway({ mock: m, config });
        if (setup) await setup(gw);
        await gw.start();
        return gw;
    } catch (e) {
        await m?.stop().catch(() => {});
        if (gw && process.env.MODELSWITCH_KEEP_TMP !== '1') {
            await fsp.rm(gw.dir, { recursive: true, force: true });
        }
        throw e;
    }
}

/** Removes a prepared gateway's temp dir (for gateways that were never started). */
export async function discardGateway(gw) {
    if (gw && process.env.MODELSWITCH_KEEP_TMP !== '1') await fsp.rm(gw.dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// HTTP with fetch

/**
 * One request with fetch. body: object (sent as JSON), string or Buffer. Resolves
 * {status, headers, text, json} (json null when the body is not JSON).
 */
export async function request(gw, method, p, { key, body, headers = {}, timeout = scaled(15000) } = {}) {
    const h = { ...headers };
    if (key !== undefined) h.authorization = `Bearer ${key}`;
    let payload = body;
    if (body !== undefined && typeof body !== 'string' && !Buffer.isBuffer(body)) {
        payload = JSON.stringify(body);
    }
    if (payload !== undefined && !Object.keys(h).some((k) => k.toLowerCase() === 'content-type')) {
        h['content-type'] = 'application/json';
    }
    const res = await fetch(gw.base + p, { method, headers: h, body: payload, signal: AbortSignal.timeout(timeout) });
    const text = await res.text();
    let json = null;
    try { json = JSON.parse(text); } catch { /* not JSON */ }
    return { status: res.status, headers: res.headers, text, json };
}

export const post = (gw, p, key, body, opts = {}) => request(gw, 'POST', p, { key, body, ...opts });
export const get = (gw, p, key, opts = {}) => request(gw, 'GET', p, { key, ...opts });

/** Splits an SSE body into the payloads of its `data:` fields, one entry per event. */
export function parseSSE(text) {
    const events = [];
    for (const block of text.split(/\r?\n\r?\n/)) {
        const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:'))
            .map((l) => l.slice(5).replace(/^ /, ''));
        if (data.length) events.push(data.join('\n'));
    }
    return events;
}

/** SSE payloads as parsed JSON (the final "[DONE]" stays a string). */
export function sseEvents(text) {
    return parseSSE(text).map((d) => (d === '[DONE]' ? d : JSON.parse(d)));
}

/** The concatenated delta content of chat.completion.chunk events. */
export function streamContent(events) {
    return events.filter((e) => e !== '[DONE]' && e.choices?.length)
        .map((e) => e.choices[0].delta?.content ?? '').join('');
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP over node:net, for malformed input and connection-level behaviour

/**
 * Parses as many complete HTTP/1.1 responses as buf holds. closed: the peer has closed, so a body
 * without framing ends here. Returns {responses: [{status, headers, body}], rest}; 1xx interim
 * responses are entries of their own. headers: names lowercased, repeated names joined with ", ".
 */
export function parseResponses(buf, closed = false) {
    const responses = [];
    let off = 0;
    for (;;) {
        const end = buf.indexOf('\r\n\r\n', off);
        if (end < 0) break;
        const head = buf.subarray(off, end).toString('latin1');
        const lines = head.split('\r\n');
        const m = /^HTTP\/1\.[01] (\d{3})(?: (.*))?$/.exec(lines[0]);
        if (!m) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])}`);
        const status = Number(m[1]);
        const headers = {};
        for (const l of lines.slice(1)) {
            const i = l.indexOf(':');
            if (i <= 0) continue;
            const k = l.slice(0, i).trim().toLowerCase();
            const v = l.slice(i + 1).trim();
            headers[k] = k in headers ? `${headers[k]}, ${v}` : v;
        }
        let p = end + 4;
        let body;
        if ((status >= 100 && status < 200) || status === 204 || status === 304) {
            body = Buffer.alloc(0);
        } else if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) {
            const parts = [];
            let done = false;
            for (;;) {
                const le = buf.indexOf('\r\n', p);
                if (le < 0) break;
                const size = parseInt(buf.subarray(p, le).toString('latin1').split(';')[0], 16);
                if (Number.isNaN(size)) throw new Error('bad chunk size in response');
                if (size === 0) {
                    // Trailers end with an empty line.
                    const te = buf.indexOf('\r\n\r\n', le);
                    if (te < 0) break;
                    p = te + 4;
                    done = true;
                    break;
                }
                if (buf.length < le + 2 + size + 2) break;
                // strict, unlike fetch: a chunk's data ends with CRLF
                if (buf[le + 2 + size] !== 0x0d || buf[le + 3 + size] !== 0x0a) {
                    throw new Error('bad chunk terminator in response');
                }
                parts.push(buf.subarray(le + 2, le + 2 + size));
                p = le + 2 + size + 2;
            }
            if (!done) break;
            body = Buffer.concat(parts);
        } else if (headers['content-length'] !== undefined) {
            const n = Number(headers['content-length']);
            if (buf.length < p + n) break;
            body = buf.subarray(p, p + n);
            p += n;
        } else if (closed) {
            body = buf.subarray(p);
            p = buf.length;
        } else {
            break;
        }
        responses.push({ status, headers, body, text: body.toString('utf8') });
        off = p;
    }
    return { responses, rest: buf.subarray(off) };
}

/** A raw TCP connection to the gateway that collects everything it receives. */
export class RawConn {
    constructor(socket) {
        this.socket = socket;
        this.data = Buffer.alloc(0);
        this.closed = false;
        this.error = null;
        this.waiters = new Set();
        socket.on('data', (d) => { this.data = Buffer.concat([this.data, d]); this.#wake(); });
        socket.on('end', () => { this.closed = true; this.#wake(); });
        socket.on('close', () => { this.closed = true; this.#wake(); });
        socket.on('error', (e) => { this.error = e; this.closed = true; this.#wake(); });
    }

    static open(port, { timeout = scaled(5000) } = {}) {
        return new Promise((resolve, reject) => {
            const s = net.connect({ port, host: '127.0.0.1' });
            const t = setTimeout(() => { s.destroy(); reject(new Error('connect timeout')); }, timeout);
            s.once('connect', () => { clearTimeout(t); s.removeAllListeners('error'); resolve(new RawConn(s)); });
            s.once('error', (e) => { clearTimeout(t); reject(e); });
        });
    }

    #wake() { for (const w of this.waiters) w(); }

    /** Waits until pred() is true, the deadline passes (rejects) or the connection closes. */
    async until(pred, ms, what) {
        const deadline = Date.now() + ms;
        while (!pred()) {
            if (this.closed) return pred();
            const left = deadline - Date.now();
            if (left <= 0) {
                throw new Error(`timed out after ${ms} ms waiting for ${what}; received: ` +
                    JSON.stringify(this.data.toString('latin1').slice(0, 600)));
            }
            await new Promise((resolve) => {
                const done = () => { clearTimeout(t); this.waiters.delete(done); resolve(); };
                const t = setTimeout(done, Math.min(left, 100));
                this.waiters.add(done);
            });
        }
        return true;
    }

    /** Writes data (string or Buffer); resolves once handed to the kernel. Never rejects. */
    write(data) {
        return new Promise((resolve) => {
            if (this.socket.destroyed) return resolve(false);
            this.socket.write(data, (err) => resolve(!err));
        });
    }

    responses() { return parseResponses(this.data, this.closed).responses; }

    /** Waits for n complete responses (1xx included) and returns them all. */
    async readResponses(n, ms = scaled(10000)) {
        await this.until(() => this.responses().length >= n, ms, `${n} response(s)`);
        const r = this.responses();
        if (r.length < n) {
            throw new Error(`connection closed after ${r.length} of ${n} response(s); received: ` +
                JSON.stringify(this.data.toString('latin1').slice(0, 600)));
        }
        return r;
    }

    /** Resolves true when the peer closes within ms, false otherwise. */
    async waitClosed(ms = scaled(5000)) {
        try {
            await this.until(() => this.closed, ms, 'close');
        } catch { /* deadline passed */ }
        return this.closed;
    }

    destroy() { this.socket.destroy(); }
}

/** Sends raw bytes on a fresh connection and returns the connection after n responses. */
export async function rawExchange(port, bytes, n = 1, ms = scaled(10000)) {
    const c = await RawConn.open(port);
    await c.write(bytes);
    try {
        await c.readResponses(n, ms);
    } finally {
        c.destroy();
    }
    return c.responses();
}

// ---------------------------------------------------------------------------------------------
// Contract checks shared by the suites

/** The contract's error body: {"error": {message, type, code, param}} with the given values. */
export function assertError(assert, res, status, type, code, param = null, { paramAlt } = {}) {
    const ctx = `${res.status} ${res.text?.slice(0, 300)}`;
    assert.equal(res.status, status, `status: ${ctx}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/, `content-type: ${ctx}`);
    assert.ok(res.headers.get('x-request-id'), `x-request-id missing: ${ctx}`);
    assert.ok(res.json && typeof res.json.error === 'object' && res.json.error, `error body: ${ctx}`);
    const e = res.json.error;
    assert.equal(typeof e.message, 'string', `error.message: ${ctx}`);
    assert.ok(e.message.length > 0, `error.message empty: ${ctx}`);
    assert.equal(e.type, type, `error.type: ${ctx}`);
    assert.equal(e.code, code, `error.code: ${ctx}`);
    assert.ok('param' in e, `error.param missing: ${ctx}`);
    if (paramAlt !== undefined) {
        assert.ok(e.param === param || e.param === paramAlt, `error.param ${e.param}: ${ctx}`);
    } else {
        assert.equal(e.param, param, `error.param: ${ctx}`);
    }
    if ([400, 401, 403, 404].includes(status)) {
        assert.equal(res.headers.get('x-should-retry'), 'false', `x-should-retry: ${ctx}`);
    }
}

/**
 * The echo provider's token rule: a token is a maximal run of ASCII letters/digits, or any other
 * single non-whitespace character (a multi-byte UTF-8 character is one).
 */
export function echoTokens(s) {
    const out = [];
    let run = '';
    for (const ch of s) {
        if (/^[A-Za-z0-9]$/.test(ch)) { run += ch; continue; }
        if (run) { out.push(run); run = ''; }
        if (!/^\s$/u.test(ch)) out.push(ch);
    }
    if (run) out.push(run);
    return out;
}
export const countEchoTokens = (s) => echoTokens(s).length;

/** The echo provider's prompt_tokens for a messages array of string contents. */
export function echoPromptTokens(messages) {
    return 3 + messages.reduce((n, m) => n + 4 + countEchoTokens(m.content ?? ''), 0);
}

/** A well-formed key that no account has. */
export function fakeKey(prefix = 'ms-') {
    const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
    let s = prefix;
    for (let i = 0; i < 40; i++) s += abc[Math.floor(Math.random() * abc.length)];
    return s;
}

/** Polls fn() until it returns a truthy value or ms pass; returns {value, elapsed}. */
export async function eventually(fn, ms, every = 50) {
    const start = Date.now();
    let value;
    for (;;) {
        value = await fn();
        if (value) return { value, elapsed: Date.now() - start };
        if (Date.now() - start > ms) return { value, elapsed: Date.now() - start };
        await sleep(every);
    }
}

/** Header value of a recorded mock request, whatever shape the mock uses for headers. */
export function recordedHeader(rec, name) {
    const h = rec.headers;
    const n = name.toLowerCase();
    if (Array.isArray(h)) {
        for (const e of h) {
            if (Array.isArray(e) && String(e[0]).toLowerCase() === n) return e[1];
            if (e && typeof e === 'object' && String(e.name).toLowerCase() === n) return e.value;
        }
        return undefined;
    }
    for (const [k, v] of Object.entries(h ?? {})) if (k.toLowerCase() === n) return v;
    return undefined;
}

// ---------------------------------------------------------------------------------------------
// Money (issue #3): exact nano-dollar arithmetic, the hold rule, ledger reads, crash and restart.
// Expected amounts are computed here independently of the gateway, as BigInt nano-dollars
// (1 USD = 1e9), by the rules of docs/BILLING.md; nothing below changes the helpers above.

const NANO = 1000000000n;

/**
 * USD (a JSON number, or decimal text such as an x-modelswitch-cost header) as BigInt nano-dollars.
 * Numbers go through toFixed(9), which recovers the exact decimal the gateway printed as long as it
 * has at most 15 significant digits (every amount in these tests). More than 9 decimals throws.
 */
export function usdToNano(v) {
    if (typeof v === 'bigint') return v * NANO;
    let s;
    if (typeof v === 'number') {
        if (!Number.isFinite(v)) throw new Error(`not a USD amount: ${v}`);
        s = v.toFixed(9);
    } else {
        s = String(v).trim();
    }
    const m = /^(-)?(\d+)(?:\.(\d{1,9}))?$/.exec(s);
    if (!m) throw new Error(`not a USD amount with at most 9 decimals: ${JSON.stringify(v)}`);
    const n = BigInt(m[2]) * NANO + BigInt((m[3] ?? '').padEnd(9, '0'));
    return m[1] ? -n : n;
}

/** BigInt nano-dollars as exact USD text ("0.0000575", "12", "-0.000000001"). */
export function nanoToUsd(n) {
    n = BigInt(n);
    const neg = n < 0n;
    const a = neg ? -n : n;
    const frac = (a % NANO).toString().padStart(9, '0').replace(/0+$/, '');
    return `${neg ? '-' : ''}${a / NANO}${frac ? '.' + frac : ''}`;
}

/** Non-overlapping occurrences of needle in s (what the gateway counts in the body bytes). */
function countOccurrences(s, needle) {
    let n = 0;
    for (let i = s.indexOf(needle); i >= 0; i = s.indexOf(needle, i + needle.length)) n++;
    return n;
}

/**
 * The prompt-token bound of a request body (string or Buffer, the exact bytes sent): body bytes
 * + 16 + 1500 per "image_url" and per "input_audio" occurring in the body.
 */
export function promptBound(body) {
    const buf = Buffer.isBuffer(body) ? body : Buffer.from(body, 'utf8');
    const s = buf.toString('latin1');
    return BigInt(buf.length) + 16n + 1500n * BigInt(countOccurrences(s, 'image_url') +
        countOccurrences(s, 'input_audio'));
}

/** A model's list prices {input, output} in nano-dollars per 1M tokens for gw's config. */
export function listPrices(gw, model) {
    const m = gw.config.models[model];
    if (!m) throw new Error(`model ${model} is not in the test config`);
    // markup in millionths of a percent, like the gateway (at most 6 decimals)
    const markupMicro = usdToNano(String(gw.config.billing?.markup_percent ?? 0)) / 1000n;
    const list = (usd) => (usdToNano(usd) * (100000000n + markupMicro) + 50000000n) / 100000000n;
    return { input: list(m.pricing.input), output: list(m.pricing.output ?? 0) };
}

/** The cost of prompt/completion tokens of model at gw's list prices, rounded half up once. */
export function costNano(gw, model, prompt, completion) {
    const p = listPrices(gw, model);
    return (BigInt(prompt) * p.input + BigInt(completion) * p.output + 500000n) / 1000000n;
}

/**
 * The hold a request places: cost(prompt bound, output bound). body: the exact JSON text sent.
 * Output bound: embeddings 0; chat max_tokens, else max_completion_tokens, else the model's
 * max_output_tokens, else billing.default_max_output_tokens (4096 when not configured).
 */
export function holdNano(gw, body, { embeddings = false } = {}) {
    const j = JSON.parse(body);
    let out = 0;
    if (!embeddings) {
        const m = gw.config.models[j.model];
        out = j.max_tokens ?? j.max_completion_tokens ?? m?.max_output_tokens ??
            gw.config.billing?.default_max_output_tokens ?? 4096;
        out *= j.n ?? 1; // each of the n choices up to the bound
    }
    return costNano(gw, j.model, promptBound(body), out);
}

/** GET /api/balance as BigInt nano-dollars (throws unless 200). */
export async function balanceNano(gw, billingKey) {
    const r = await get(gw, '/api/balance', billingKey);
    if (r.status !== 200 || typeof r.json?.balance !== 'number') {
        throw new Error(`GET /api/balance: ${r.status} ${r.text}`);
    }
    return usdToNano(r.json.balance);
}

/** Every row of a paged /api/ list (newest first), 50 at a time; call it when nothing settles. */
export async function pagedList(gw, billingKey, p, field, max = 100000) {
    const rows = [];
    for (let offset = 0; rows.length < max; offset += 50) {
        const r = await get(gw, `${p}?limit=50&offset=${offset}`, billingKey);
        if (r.status !== 200 || !Array.isArray(r.json?.[field])) {
            throw new Error(`GET ${p}?offset=${offset}: ${r.status} ${r.text.slice(0, 300)}`);
        }
        rows.push(...r.json[field]);
        if (r.json[field].length < 50) break;
    }
    return rows;
}
export const usageRows = (gw, billingKey) => pagedList(gw, billingKey, '/api/usage', 'usage');
export const transactionRows = (gw, billingKey) =>
    pagedList(gw, billingKey, '/api/transactions', 'transactions');

/** `modelswitch audit` on gw's store: resolves {code, stdout, stderr} (exit 0 = consistent). */
export async function audit(gw) {
    return gw.cli(['audit'], { allowFail: true });
}

/**
 * Rows of a read-only SQL query on gw's store, through `modelswitch sql` (SQLite keeps usage rows
 * in blocks only the gateway reads; the command shows them as the `usage` table). For facts the
 * API does not show (a usage row's request id and status).
 */
export async function sqliteRows(gw, sql) {
    const r = await gw.cli(['sql', sql], { allowFail: true });
    if (r.code !== 0) throw new Error(`modelswitch sql ${sql}: exit ${r.code}: ${r.stderr}`);
    return r.stdout.trim() ? JSON.parse(r.stdout) : [];
}

/**
 * SIGKILL: the process gets no chance to drain or flush. Resolves {code, signal} once it is gone;
 * its stderr is kept in previousStderr, so restart() can start the next one on the same store.
 */
Gateway.prototype.kill9 = async function kill9() {
    if (!this.child) return this.exit;
    this.child.kill('SIGKILL');
    const r = await waitExit(this.child, scaled(5000));
    if (!r) throw new Error('gateway did not die within 5 s of SIGKILL');
    checkSanitizerReports(this.stderr, 'gateway (before SIGKILL)');
    this.previousStderr = (this.previousStderr ?? '') + this.stderr;
    this.child = null;
    return r;
};

/** Starts `serve` again on the same temp dir, config and store (after kill9 or signalAndWait). */
Gateway.prototype.restart = async function restart() {
    if (this.child && !this.exit) throw new Error('restart: the gateway is still running');
    this.child = null;
    this.port = null;
    return this.start();
};

// ---------------------------------------------------------------------------------------------
// Routing and rate limits (issue #4): several mock upstreams as the deployments of one model, a
// `routing:` section, and readers for the rate-limit and retry headers. Additive: nothing above
// changes.

/** Starts n mock upstreams, each on its own port; stops the ones started if one fails. */
export async function startMocks(n) {
    const mocks = [];
    try {
        for (let i = 0; i < n; i++) mocks.push(await startMock());
        return mocks;
    } catch (e) {
        await Promise.all(mocks.map((m) => m.stop().catch(() => {})));
        throw e;
    }
}

/** A provider of kind openai on mock m; extra (timeouts...) is merged in. */
export function mockProvider(m, extra = {}) {
    return { kind: 'openai', base_url: `${m.url}/v1`, api_key: 'sk-upstream-test', timeout_ms: 10000, ...extra };
}

/**
 * Like prepareGateway, plus top-level sections makeConfig does not know (e.g. `routing`), given
 * in `sections` and written as they are.
 */
export async function prepareGatewayWith({ mock = null, config = {}, sections = {} } = {}) {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ms-test-'));
    const deadPort = await closedPort();
    const cfg = { ...makeConfig({ dir, mockPort: mock?.port, deadPort, ...config }), ...sections };
    const configPath = path.join(dir, 'modelswitch.yaml');
    await fsp.writeFile(configPath, toYaml(cfg));
    return new Gateway({ dir, configPath, config: cfg, mock });
}

/**
 * Starts n mock upstreams and a gateway over them. config and sections are objects, or functions
 * of the mocks returning them (to name each mock in `providers`). gw.mock is mocks[0] (the
 * harness's `mock` provider), gw.mocks all of them; gw.stop() stops every one.
 */
export async function startGatewayWithMocks({ mocks: n = 2, config = {}, sections = {}, setup } = {}) {
    const mocks = await startMocks(n);
    let gw = null;
    try {
        const c = typeof config === 'function' ? config(mocks) : config;
        const s = typeof sections === 'function' ? sections(mocks) : sections;
        gw = await prepareGatewayWith({ mock: mocks[0], config: c, sections: s });
        gw.mocks = mocks;
        const stop = gw.stop.bind(gw);
        gw.stop = async () => {
            try {
                await stop();
            } finally {
                for (const m of mocks.slice(1)) await m.stop();
            }
        };
        if (setup) await setup(gw);
        await gw.start();
        return gw;
    } catch (e) {
        await Promise.all(mocks.map((m) => m.stop().catch(() => {})));
        if (gw && process.env.MODELSWITCH_KEEP_TMP !== '1') {
            await fsp.rm(gw.dir, { recursive: true, force: true });
        }
        throw e;
    }
}

/** Inference requests mock m has received so far (its /_mock/stats counter). */
export async function mockRequestCount(m) {
    return (await m.stats()).requests;
}

/** Recorded chat/embedding requests of mock m whose body named upstream model `model`. */
export async function requestsForModel(m, model) {
    return (await m.requests()).filter((r) => {
        try {
            return JSON.parse(r.body).model === model;
        } catch {
            return false;
        }
    });
}

/**
 * A rate-limit reset duration as OpenAI writes it ("1s", "6m0s", "20ms", "1h2m3s", "1.5s") in
 * ms, or NaN when it has another shape.
 */
export function parseResetMs(s) {
    if (typeof s !== 'string' || !/^(\d+(\.\d+)?(h|ms|m|s))+$/.test(s)) return NaN;
    const unit = { h: 3600000, m: 60000, s: 1000, ms: 1 };
    let ms = 0;
    for (const [, n, u] of s.matchAll(/(\d+(?:\.\d+)?)(h|ms|m|s)/g)) ms += Number(n) * unit[u];
    return ms;
}

export const RATE_LIMIT_HEADERS = ['requests', 'tokens'].flatMap((k) =>
    ['limit', 'remaining', 'reset'].map((f) => `x-ratelimit-${f}-${k}`));

/**
 * The six x-ratelimit-* headers of res (a fetch-style result): limits and remaining counts are
 * whole numbers, resets are durations. Returns {limitRequests, remainingRequests, resetRequestsMs,
 * limitTokens, remainingTokens, resetTokensMs}.
 */
export function assertRateLimitHeaders(assert, res, what = '') {
    const ctx = `${what} ${res.status} ${res.text?.slice(0, 200) ?? ''}`;
    const out = {};
    for (const kind of ['requests', 'tokens']) {
        const K = kind[0].toUpperCase() + kind.slice(1);
        for (const f of ['limit', 'remaining']) {
            const v = res.headers.get(`x-ratelimit-${f}-${kind}`);
            assert.match(v ?? '(missing)', /^\d+$/, `x-ratelimit-${f}-${kind}: ${ctx}`);
            out[`${f}${K}`] = Number(v);
        }
        const r = res.headers.get(`x-ratelimit-reset-${kind}`);
        const ms = parseResetMs(r);
        assert.ok(!Number.isNaN(ms), `x-ratelimit-reset-${kind} ${JSON.stringify(r)}: ${ctx}`);
        out[`reset${K}Ms`] = ms;
        assert.ok(out[`remaining${K}`] <= out[`limit${K}`], `remaining > limit (${kind}): ${ctx}`);
    }
    return out;
}

/**
 * The retry headers of a 429 or 503: retry-after in whole seconds (rounded up) and retry-after-ms
 * exact. Returns retry-after-ms as a number.
 */
export function assertRetryAfter(assert, res, what = '') {
    const ctx = `${what} ${res.status} ${res.text?.slice(0, 200) ?? ''}`;
    const s = res.headers.get('retry-after');
    const ms = res.headers.get('retry-after-ms');
    assert.match(s ?? '(missing)', /^\d+$/, `retry-after: ${ctx}`);
    assert.match(ms ?? '(missing)', /^\d+$/, `retry-after-ms: ${ctx}`);
    assert.equal(Number(s), Math.ceil(Number(ms) / 1000), `retry-after is retry-after-ms rounded up: ${ctx}`);
    return Number(ms);
}

// ---------------------------------------------------------------------------------------------
// Metrics (issue 14): GET /metrics read back as samples.

/**
 * Prometheus text (format 0.0.4) as its samples. get(name, labels) is the value of the sample
 * with exactly those labels as a Number (0 when there is none), raw(name, labels) its text
 * (undefined when there is none), so exact decimals (USD) can be compared as BigInt nano-dollars.
 * Throws on a line that is neither a comment nor a sample.
 */
export function parseMetrics(text) {
    const key = (name, labels) => name + JSON.stringify(Object.entries(labels).sort());
    const samples = new Map();
    for (const line of text.split('\n')) {
        if (!line || line.startsWith('#')) continue;
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
        if (!m) throw new Error(`not a metrics sample: ${JSON.stringify(line)}`);
        const labels = {};
        for (const l of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
            labels[l[1]] = l[2].replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c));
        }
        const k = key(m[1], labels);
        if (samples.has(k)) throw new Error(`sample given twice: ${line}`);
        samples.set(k, m[3]);
    }
    return {
        text,
        samples,
        raw: (name, labels = {}) => samples.get(key(name, labels)),
        get: (name, labels = {}) => Number(samples.get(key(name, labels)) ?? 0),
        /** Every sample of name as [labels, value] pairs. */
        all: (name) => [...samples].filter(([k]) => k.startsWith(name + '[')).map(([k, v]) =>
            [Object.fromEntries(JSON.parse(k.slice(name.length))), Number(v)]),
    };
}

/** GET /metrics on gw with the bearer token (undefined: none); throws unless 200. */
export async function scrapeMetrics(gw, token) {
    const res = await get(gw, '/metrics', token);
    if (res.status !== 200) throw new Error(`GET /metrics: ${res.status} ${res.text.slice(0, 300)}`);
    return parseMetrics(res.text);
}
