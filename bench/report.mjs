// bench/report.mjs: turns the raw records of bench/run.sh into the results tables.
//
// Usage: node bench/report.mjs RESULTS.txt OUT.md
// Each record is one line: `KIND WORKLOAD TARGET ROUND key=value...` (closed, open, ttfb, mem,
// cg, check) or `info KEY free text`. The tables (markdown) are printed on stdout and written to
// OUT.md with the machine's description. Medians over rounds; the spread is min-max. Nothing is
// asserted: the issue's targets are listed next to the figures, marked met or not.

import fs from 'node:fs';

const [resFile, outFile] = process.argv.slice(2);
const lines = fs.readFileSync(resFile, 'utf8').split('\n').filter(Boolean);

// The figures of the results file this run replaces (issue 15: nothing on the hot path may get
// slower), read from its tables: instructions per request (all threads, and the worker's) and
// CPU µs per request of the cpu phase, by the tables' own workload and target names.
function previousResults(file) {
    let text;
    try {
        text = fs.readFileSync(file, 'utf8');
    } catch {
        return null;
    }
    const prev = { version: (text.match(/^- \*\*modelswitch\*\*: (.*)$/m) ?? [])[1], cg: {}, cpu: {} };
    const num = (x) => (x === undefined ? NaN : Number(String(x).replace(/,/g, '')));
    let section = '';
    let perThread = false; // the section's per-thread table (its rows have the same names)
    for (const line of text.split('\n')) {
        if (line.startsWith('## ')) {
            section = line.slice(3);
            perThread = false;
        }
        if (line.startsWith('| workload | target | ms-')) perThread = true;
        if (!line.startsWith('| ') || line.startsWith('|---') || perThread) continue;
        const cells = line.slice(2, -2).split(' | ');
        if (cells.length < 4) continue;
        const key = `${cells[0]}|${cells[1]}`;
        if (section.startsWith('Instructions per request')) {
            const all = num(cells[2]);
            if (Number.isFinite(all)) {
                prev.cg[key] = { all, worker: num((cells[3].match(/worker ([\d,]+)/) ?? [])[1]) };
            }
        } else if (section.startsWith('CPU per request, the proxy the limit')) {
            if (Number.isFinite(num(cells[3]))) prev.cpu[key] = num(cells[3]);
        }
    }
    return prev;
}
const prev = previousResults(outFile);

const info = {};
const infoMulti = {};
const recs = [];
for (const line of lines) {
    const parts = line.split(' ');
    if (parts[0] === 'info') {
        const rest = parts.slice(2).join(' ');
        info[parts[1]] = rest;
        (infoMulti[parts[1]] ??= []).push(rest);
        continue;
    }
    const [kind, workload, target, round, ...kvs] = parts;
    const v = {};
    for (const kv of kvs) {
        const i = kv.indexOf('=');
        if (i > 0) v[kv.slice(0, i)] = Number(kv.slice(i + 1));
    }
    recs.push({ kind, workload, target, round: Number(round), v });
}

const TARGETS = ['direct', 'nginx', 'portkey', 'modelswitch', 'modelswitch-poll',
    'modelswitch-redis', 'nginx-https', 'modelswitch-https', 'modelswitch-https-curl'];
const NAMES = {
    direct: 'direct (mock)', nginx: 'nginx', portkey: 'Portkey', modelswitch: 'ModelSwitch',
    'modelswitch-poll': `ModelSwitch, busy_poll_us ${info.busy_poll_us ?? '?'}`,
    'modelswitch-redis': 'ModelSwitch + Redis',
    'nginx-https': 'nginx, HTTPS upstream', 'modelswitch-https': 'ModelSwitch, HTTPS upstream',
    'modelswitch-https-curl': 'ModelSwitch, HTTPS upstream, curl',
};
const WORKLOADS = {
    chat1k: 'chat, 1 KB prompt', chat100k: 'chat, 100 KB prompt',
    'chat1k-accts': 'chat, 1 KB prompt, requests spread over many accounts (a key each)',
    stream50: 'streaming chat, 50 chunks', embed: 'embeddings',
    msg1k: 'Messages API, 1 KB prompt, Anthropic deployment',
    'msg1k-oai': 'Messages API, 1 KB prompt, OpenAI deployment (translated)',
    msgs50: 'Messages API streamed, 50 events, Anthropic deployment',
    'msgs50-oai': 'Messages API streamed, 50 events, OpenAI deployment (translated)',
    ant1k: 'chat, 1 KB prompt, Anthropic deployment (translated)',
    gem1k: 'chat, 1 KB prompt, Gemini deployment (translated)',
    gems50: 'streaming chat, 50 chunks, Gemini deployment (translated)',
};
// Workloads the gateway translates and nginx only passes through: their ratio to nginx is what
// translation costs, reported without a target.
const TRANSLATED = new Set(['msg1k-oai', 'msgs50-oai']);

const median = (a) => {
    if (!a.length) return NaN;
    const s = [...a].sort((x, y) => x - y);
    const m = s.length >> 1;
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const fmt = (x, d = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', {
    minimumFractionDigits: d, maximumFractionDigits: d,
}) : '–');
const pct = (x) => (Number.isFinite(x) ? `${Math.round(x * 100)}%` : '–');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b > 0 ? a / b : NaN);
const fmtRatio = (x) => (Number.isFinite(x) ? `${x >= 10 ? fmt(x, 0) : fmt(x, 2)}×` : '–');
const table = (head, rows) => [
    `| ${head.join(' | ')} |`,
    `|${head.map((h, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...rows.map((r) => `| ${r.join(' | ')} |`),
].join('\n');

// Open-loop runs are repeated (rounds); noise on a shared machine only adds latency, so the best
// round of each percentile is kept. Errors are summed.
function bestOf(rs) {
    if (!rs.length) return null;
    const v = { ...rs[0].v };
    for (const r of rs.slice(1)) {
        for (const [k, x] of Object.entries(r.v)) {
            if (/^(lat|ttfb|svc|lag)_/.test(k)) v[k] = Math.min(v[k] ?? Infinity, x);
            else if (/^(errors|non2xx|err_)/.test(k)) v[k] = (v[k] ?? 0) + x;
            /* the proxy's CPU share: the highest round, so that a cost is never understated */
            else if (k === 'proxy_cpu_s' && r.v.elapsed_s > 0 &&
                x / r.v.elapsed_s > (v[k] ?? 0) / (v.elapsed_s || Infinity)) {
                v[k] = x;
                v.elapsed_s = r.v.elapsed_s;
            }
        }
    }
    v.rounds = rs.length;
    return { ...rs[0], v };
}
const groupBest = (kind) => {
    const groups = new Map();
    for (const r of recs.filter((x) => x.kind === kind)) {
        const key = `${r.round} ${r.target}`;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(r);
    }
    return [...groups.values()].map(bestOf);
};

const out = [];
const say = (s = '') => out.push(s);

// ---------------------------------------------------------------------------------------------
say('# ModelSwitch benchmark results');
say();
const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
say(`Written by \`make bench\` (bench/run.sh) on ${when} UTC, ` +
    `${info.elapsed_s ?? '?'} s. What each figure means: [README.md](README.md).`);
say();
say('## Machine');
say();
for (const k of ['cpu', 'cores', 'loadavg', 'mem', 'kernel', 'os', 'nginx', 'node', 'portkey',
    'wrk', 'valgrind', 'modelswitch', 'redis', 'mode', 'pinning', 'static_upstream',
    'portkey_streams']) {
    if (info[k] !== undefined) say(`- **${k}**: ${info[k]}`);
}
say();

// ---------------------------------------------------------------------------------------------
const closed = {}; // workload -> target -> summary
for (const wl of Object.keys(WORKLOADS)) {
    for (const t of TARGETS) {
        const rs = recs.filter((r) => r.kind === 'closed' && r.workload === wl && r.target === t);
        if (!rs.length) continue;
        const rps = rs.map((r) => r.v.requests / (r.v.duration_us / 1e6));
        const cpuPer1k = rs.map((r) => (r.v.requests ? (r.v.proxy_cpu_s / r.v.requests) * 1e6
            : NaN));
        const util = rs.map((r) => r.v.proxy_cpu_s / r.v.wall_s);
        const mockUtil = rs.map((r) => r.v.mock_cpu_s / r.v.wall_s);
        const wrkUtil = rs.map((r) => r.v.wrk_cpu_s / r.v.wall_s);
        const errors = rs.reduce((s, r) => s + (r.v.err_connect + r.v.err_read + r.v.err_write +
            r.v.err_timeout || 0), 0);
        const non2xx = rs.reduce((s, r) => s + (r.v.err_status || 0), 0);
        // Redis's CPU per request (modelswitch-redis only; µs), and requests per second of CPU.
        const redisCpu = rs.map((r) => (r.v.requests && r.v.redis_cpu_s !== undefined
            ? (r.v.redis_cpu_s / r.v.requests) * 1e6 : NaN));
        const perCore = rs.map((r) => (r.v.proxy_cpu_s > 0 ? r.v.requests / r.v.proxy_cpu_s
            : NaN));
        const perCoreAll = rs.map((r) => (r.v.proxy_cpu_s > 0
            ? r.v.requests / (r.v.proxy_cpu_s + (r.v.redis_cpu_s ?? 0)) : NaN));
        (closed[wl] ??= {})[t] = {
            redisCpu: median(redisCpu), perCore: median(perCore), perCoreAll: median(perCoreAll),
            rps: median(rps), min: Math.min(...rps), max: Math.max(...rps), n: rs.length,
            cpu: median(cpuPer1k), util: median(util), mockUtil: median(mockUtil),
            wrkUtil: median(wrkUtil), errors, non2xx, lat50: median(rs.map((r) => r.v.lat_p50_us)),
            redisUtil: median(rs.map((r) => (r.v.redis_cpu_s ?? 0) / r.v.wall_s)),
        };
    }
}
if (Object.keys(closed).length) {
    say('## Closed-loop throughput (wrk)');
    say();
    say('wrk, 1 thread, 64 connections, on the load core with the mock upstream; the proxy ' +
        'alone on the other core. Median of the rounds, spread min–max. "CPU ms/1k" is the ' +
        'proxy process\'s CPU time (user+system, all threads) per 1000 requests (for "direct": ' +
        'the mock\'s). "proxy core" is the proxy\'s CPU use during the run: well below 100% ' +
        'means the load core (wrk + mock, "load core") or the round trips were the limit, not ' +
        'the proxy; CPU per request is then the figure to compare. "ModelSwitch + Redis" is ' +
        'the gateway alone (Redis\'s CPU is in "The shared state\'s cost" below); Redis runs on ' +
        'the load core, so it counts in "load core".');
    say();
    const rows = [];
    for (const [wl, byT] of Object.entries(closed)) {
        for (const t of TARGETS) {
            const s = byT[t];
            if (!s) continue;
            const spread = `${fmt(s.min)}–${fmt(s.max)} (${s.n})`;
            const loadCore = s.mockUtil + s.wrkUtil + (s.redisUtil || 0);
            rows.push([WORKLOADS[wl], NAMES[t], fmt(s.rps), spread,
                fmt(s.cpu, 1), t === 'direct' ? '–' : pct(s.util), pct(loadCore),
                fmt(s.lat50 / 1000, 2), `${s.errors}/${s.non2xx}`]);
        }
    }
    say(table(['workload', 'target', 'req/s', 'spread', 'CPU ms/1k', 'proxy core', 'load core',
        'wrk p50 ms', 'errors/non-2xx'], rows));
    say();
    say('Ratios (ModelSwitch against each peer; throughput: higher is better for ModelSwitch, ' +
        'CPU per request: lower is better):');
    say();
    const rrows = [];
    for (const [wl, byT] of Object.entries(closed)) {
        const ms = byT.modelswitch;
        if (!ms) continue;
        rrows.push([WORKLOADS[wl], fmtRatio(ratio(ms.rps, byT.nginx?.rps)),
            fmtRatio(ratio(ms.rps, byT.portkey?.rps)), fmtRatio(ratio(ms.cpu, byT.nginx?.cpu)),
            fmtRatio(ratio(ms.cpu, byT.portkey?.cpu))]);
    }
    say(table(['workload', 'req/s ÷ nginx', 'req/s ÷ Portkey', 'CPU/req ÷ nginx',
        'CPU/req ÷ Portkey'], rrows));
    say();
    const hrows = [];
    for (const [wl, byT] of Object.entries(closed)) {
        const ng = byT['nginx-https'];
        for (const t of ['modelswitch-https', 'modelswitch-https-curl']) {
            if (!byT[t]) continue;
            hrows.push([WORKLOADS[wl], NAMES[t], fmtRatio(ratio(byT[t].rps, ng?.rps)),
                fmtRatio(ratio(byT[t].cpu, ng?.cpu))]);
        }
    }
    if (hrows.length) {
        say('HTTPS upstream (the static nginx upstream over TLS, not the mock: compare these ' +
            'with nginx, HTTPS upstream, not with the plain-HTTP rows):');
        say();
        say(table(['workload', 'target', 'req/s ÷ nginx-https', 'CPU/req ÷ nginx-https'], hrows));
        say();
    }
}

// ---------------------------------------------------------------------------------------------
const openRecs = groupBest('open');
const cpuShare = (t, v) => (t === 'direct' || !(v.elapsed_s > 0) ? '–'
    : `${fmt((100 * v.proxy_cpu_s) / v.elapsed_s)}%`);
if (openRecs.length) {
    say('## Open-loop latency (bench/loadgen.c, chat 1 KB)');
    say();
    say('Requests sent on a fixed schedule; latency from the scheduled send time to the last ' +
        'byte (so queueing counts). "added" = the target\'s percentile minus the direct-to-mock ' +
        'percentile at the same rate. A peer that cannot sustain a rate is measured at half its ' +
        'closed-loop capacity (the rate column says so; its "added" is then against direct at ' +
        'the nominal rate). Each target ran in several alternating rounds; the best round of ' +
        'each percentile is shown (noise on a shared machine only adds latency). "lag p99" is ' +
        'the load generator\'s own delay from schedule to send (the machine\'s timer noise, ' +
        'common to all targets). "proxy CPU" is the proxy\'s CPU time over the run\'s wall time ' +
        '(100% = one core; the highest round): what busy polling costs.');
    say();
    const rows = [];
    const rates = [...new Set(openRecs.map((r) => r.round))].sort((a, b) => a - b);
    for (const rate of rates) {
        const d = openRecs.find((r) => r.round === rate && r.target === 'direct' && !r.v.skipped);
        for (const t of TARGETS) {
            const r = openRecs.find((x) => x.round === rate && x.target === t);
            if (!r) continue;
            if (r.v.skipped) {
                rows.push([fmt(rate), NAMES[t], `skipped: capacity ${fmt(r.v.capacity)} req/s`,
                    '', '', '', '', '', '', '', '', '']);
                continue;
            }
            const v = r.v;
            const add = (k) => (d && t !== 'direct' ? fmt(v[k] - d.v[k], 1) : '–');
            const shownRate = v.rate !== rate ? `${fmt(v.rate)} (not ${fmt(rate)})` : fmt(rate);
            rows.push([shownRate, NAMES[t], fmt(v.lat_p50_us, 1), fmt(v.lat_p90_us, 1),
                fmt(v.lat_p99_us, 1), fmt(v.lat_p999_us, 1), add('lat_p50_us'), add('lat_p99_us'),
                fmt(v.achieved_rps), `${v.errors}/${v.non2xx}`, fmt(v.lag_p99_us, 1),
                cpuShare(t, v)]);
        }
    }
    say(table(['req/s', 'target', 'p50 µs', 'p90 µs', 'p99 µs', 'p99.9 µs', 'added p50 µs',
        'added p99 µs', 'achieved req/s', 'errors/non-2xx', 'lag p99 µs', 'proxy CPU'], rows));
    say();
}

const ttfbRecs = groupBest('ttfb');
if (ttfbRecs.length) {
    say('## Streaming time to first byte (bench/loadgen.c, open loop)');
    say();
    say('50-chunk streams with 1 ms between events. Time from the scheduled send to the first ' +
        'byte of the response body (the first event), and to the end of the stream; the pause ' +
        'keeps the mock from holding the load core while a proxy forwards the first event. A ' +
        'target that cannot sustain the rate is measured at half its closed-loop capacity (the ' +
        'rate column says so). Best of the rounds, as above.');
    say();
    const d = ttfbRecs.find((r) => r.target === 'direct');
    const rows = [];
    for (const t of TARGETS) {
        const r = ttfbRecs.find((x) => x.target === t);
        if (!r || r.v.skipped) continue;
        const v = r.v;
        const add = (k) => (d && t !== 'direct' ? fmt(v[k] - d.v[k], 1) : '–');
        rows.push([NAMES[t], fmt(v.rate), fmt(v.ttfb_p50_us, 1), fmt(v.ttfb_p99_us, 1),
            add('ttfb_p50_us'), add('ttfb_p99_us'), fmt(v.lat_p50_us, 1),
            `${v.errors}/${v.non2xx}`, cpuShare(t, v)]);
    }
    say(table(['target', 'req/s', 'TTFB p50 µs', 'TTFB p99 µs', 'added p50 µs', 'added p99 µs',
        'whole stream p50 µs', 'errors/non-2xx', 'proxy CPU'], rows));
    say();
}

// ---------------------------------------------------------------------------------------------
const memRecs = recs.filter((r) => r.kind === 'mem');
const mem = {};
if (memRecs.length) {
    say('## Memory (RSS)');
    say();
    say('A fresh process per test. "idle": N keep-alive connections, each has made one request, ' +
        'then all stay open; RSS read once all are done. "streams": N streams open at once ' +
        '(50 chunks 60 ms apart); peak RSS (VmHWM). nginx figures are master + worker.');
    say();
    const rows = [];
    for (const t of TARGETS) {
        const idle = memRecs.find((r) => r.workload === 'idle' && r.target === t);
        const st = memRecs.find((r) => r.workload === 'streams' && r.target === t);
        if (!idle && !st) continue;
        mem[t] = { idle: idle?.v.rss_ready_kb / 1024, streams: st?.v.hwm_kb / 1024 };
        rows.push([NAMES[t], fmt((idle ?? st).v.rss_base_kb / 1024, 1),
            idle ? `${fmt(idle.v.rss_ready_kb / 1024, 1)} (${fmt(idle.round)} conns, ` +
                `${fmt(idle.v.open_at_ready)} open)` : '–',
            idle ? `${idle.v.errors}/${idle.v.non2xx}` : '–',
            st ? `${fmt(st.v.hwm_kb / 1024, 1)} (${fmt(st.round)} streams, ` +
                `${fmt(st.v.max_streaming)} at once)` : '–',
            st ? `${st.v.errors}/${st.v.non2xx}` : '–']);
    }
    say(table(['target', 'idle process MB', 'idle conns MB', 'errors/non-2xx', 'streams peak MB',
        'errors/non-2xx'], rows));
    say();
}

// ---------------------------------------------------------------------------------------------
const cgRecs = recs.filter((r) => r.kind === 'cg');
const cg = {};
const cgWorker = {};
if (cgRecs.length) {
    say('## Instructions per request (callgrind)');
    say();
    say('The proxy runs under `valgrind --tool=callgrind` twice, for N1 and N2 requests (closed ' +
        'loop, 4 connections); (Ir(N2) − Ir(N1)) / (N2 − N1) removes start-up and shutdown. ' +
        '"all threads" counts every thread; the per-thread column splits it by the thread\'s ' +
        'entry function (ModelSwitch: worker = the event loop, ledger = the usage-record writer, ' +
        'journal = the ledger\'s local journal, logger = the access/operator log writer, ' +
        'keycache = the key refresher, checkpoint = the SQLite checkpointer, redis-beat and ' +
        'redis-sub = the shared state\'s heartbeat and change-notice reader, main).');
    say();
    const rows = [];
    for (const r of cgRecs) {
        const n = r.v.n2 - r.v.n1;
        const all = (r.v.ir2 - r.v.ir1) / n;
        const top = (r.v.top2 - r.v.top1) / n;
        (cg[r.workload] ??= {})[r.target] = all;
        (cgWorker[r.workload] ??= {})[r.target] = r.v.t2_worker === undefined ? NaN
            : (r.v.t2_worker - (r.v.t1_worker ?? 0)) / n;
        const per = Object.keys(r.v).filter((k) => k.startsWith('t2_')).map((k) => k.slice(3))
            .map((th) => [th, ((r.v[`t2_${th}`] ?? 0) - (r.v[`t1_${th}`] ?? 0)) / n])
            .sort((x, y) => y[1] - x[1]).map(([th, x]) => `${th} ${fmt(x)}`).join(', ');
        rows.push([WORKLOADS[r.workload] ?? r.workload, NAMES[r.target], fmt(all), per || fmt(top),
            `${r.v.ok1}/${r.v.n1}, ${r.v.ok2}/${r.v.n2}`]);
    }
    say(table(['workload', 'target', 'instructions/request (all threads)',
        'per thread', '2xx answers'], rows));
    say();
    const crow = Object.entries(cg).filter(([, v]) => v.modelswitch && v.nginx)
        .map(([wl, v]) => `${WORKLOADS[wl]}: ${fmtRatio(v.modelswitch / v.nginx)} nginx's`);
    if (crow.length) {
        say(`ModelSwitch's instructions per request: ${crow.join('; ')}.`);
        say();
    }
    const hrow = Object.entries(cg).filter(([, v]) => v['modelswitch-https'])
        .map(([wl, v]) => `${WORKLOADS[wl]}: native ${fmt(v['modelswitch-https'])}` +
            (v['modelswitch-https-curl'] ? `, curl ${fmt(v['modelswitch-https-curl'])} ` +
                `(native ÷ curl ${fmtRatio(v['modelswitch-https'] / v['modelswitch-https-curl'])})`
                : '') +
            (v['nginx-https'] ? `, nginx ${fmt(v['nginx-https'])} (native ÷ nginx ` +
                `${fmtRatio(v['modelswitch-https'] / v['nginx-https'])})` : ''));
    if (hrow.length) {
        say(`HTTPS upstream, instructions per request: ${hrow.join('; ')}.`);
        say();
    }
}

// ---------------------------------------------------------------------------------------------
// The proxy the limit (issue 15): CPU per request against nginx on the same static upstream.
const cpuRecs = recs.filter((r) => r.kind === 'cpu');
// NAME@N is workload NAME with N wrk connections (bench/run.sh, CPU_WORKLOADS)
const wlName = (wl) => {
    const [base, conns] = wl.split('@');
    return `${WORKLOADS[base] ?? base}${conns ? `, ${conns} connections` : ''}`;
};
const cpuSum = {};
if (cpuRecs.length) {
    say('## CPU per request, the proxy the limit (plain HTTP and HTTPS upstreams)');
    say();
    say('The static nginx upstream (the mock\'s answers as files, plain HTTP and TLS) and wrk ' +
        `(1 thread, closed loop, few connections: see the mode line) on the load core, the ` +
        'proxy alone on the other. "µs/req" is the proxy\'s CPU time (user+system, all ' +
        'threads) per request; "req per core-s" = requests ÷ the proxy\'s CPU seconds (what ' +
        'one core of it serves when CPU-bound); ratios against nginx with the same upstream ' +
        'scheme. "load core" is wrk + the upstream over wall time: above 90% the load side ' +
        'may have been the limit (marked; the CPU per request is still exact, taken with the ' +
        'proxy partly idle). "proxy core" below 100% with a load core below 90% is other work ' +
        'on the shared machine. Median of the rounds, spread of µs/req min–max. "CPU/req ÷ ' +
        'nginx" is the median of the rounds\' own ratios (a round runs nginx and ModelSwitch ' +
        'back to back, in turns first: this machine\'s speed moves more from one minute to the ' +
        'next than within a pair of runs), with their spread; "per core ÷ nginx" is its inverse.');
    say();
    const rows = [];
    for (const wl of [...new Set(cpuRecs.map((r) => r.workload))]) {
        for (const t of ['nginx', 'modelswitch', 'nginx-https', 'modelswitch-https',
            'modelswitch-https-curl']) {
            const rs = cpuRecs.filter((r) => r.workload === wl && r.target === t &&
                r.v.requests > 0);
            if (!rs.length) continue;
            const us = rs.map((r) => (r.v.proxy_cpu_s / r.v.requests) * 1e6);
            const load = rs.map((r) => (r.v.mock_cpu_s + r.v.wrk_cpu_s) / r.v.wall_s);
            const s = {
                us: median(us), min: Math.min(...us), max: Math.max(...us),
                rps: median(rs.map((r) => r.v.requests / (r.v.duration_us / 1e6))),
                util: median(rs.map((r) => r.v.proxy_cpu_s / r.v.wall_s)),
                load: median(load), loadMax: Math.max(...load),
                non2xx: rs.reduce((a, r) => a + (r.v.err_status || 0), 0), n: rs.length,
            };
            s.byRound = new Map(rs.map((r, i) => [r.round, us[i]]));
            (cpuSum[wl] ??= {})[t] = s;
            const ref = cpuSum[wl][t.startsWith('modelswitch-https') ? 'nginx-https'
                : t === 'modelswitch' ? 'nginx' : ''];
            if (ref) {
                const rr = [...s.byRound].filter(([r]) => ref.byRound.has(r))
                    .map(([r, v]) => v / ref.byRound.get(r));
                s.ratio = median(rr);
                s.ratioSpread = rr.length > 1
                    ? ` (${fmt(Math.min(...rr), 2)}–${fmt(Math.max(...rr), 2)})` : '';
            }
            rows.push([wlName(wl), NAMES[t], fmt(s.rps), fmt(s.us, 1),
                `${fmt(s.min, 1)}–${fmt(s.max, 1)} (${s.n})`, fmt(1e6 / s.us),
                ref ? `${fmtRatio(s.ratio)}${s.ratioSpread}` : '–',
                ref ? fmtRatio(1 / s.ratio) : '–',
                pct(s.util), `${pct(s.load)}${s.loadMax > 0.9 ? ' (load-bound?)' : ''}`,
                String(s.non2xx)]);
        }
    }
    say(table(['workload', 'target', 'req/s', 'µs/req', 'spread', 'req per core-s',
        'CPU/req ÷ nginx', 'per core ÷ nginx', 'proxy core', 'load core', 'non-2xx'], rows));
    say();
    const c = cpuSum.chat1k;
    if (c?.modelswitch && c['modelswitch-https']) {
        const sg = (x) => `${x >= 0 ? '+' : '−'}${fmt(Math.abs(x), 1)}`;
        say(`What HTTPS costs on top of plain HTTP, chat 1 KB (differences of medians, within ` +
            `the noise when small): ModelSwitch native ` +
            `${sg(c['modelswitch-https'].us - c.modelswitch.us)} µs/req` +
            (c['modelswitch-https-curl'] ? `, with curl ${sg(c['modelswitch-https-curl'].us -
                c.modelswitch.us)} µs/req` : '') +
            (c.nginx && c['nginx-https'] ? `; nginx ${sg(c['nginx-https'].us - c.nginx.us)} ` +
                'µs/req' : '') + '.');
        say();
    }
    // Where ModelSwitch's CPU goes, thread by thread (th_NAME, bench/run.sh threads_s): the
    // worker is what nginx's process compares with; the rest nginx has no counterpart for.
    const thRows = [];
    const thNames = new Set();
    for (const r of cpuRecs) {
        for (const k of Object.keys(r.v)) if (k.startsWith('th_')) thNames.add(k.slice(3));
    }
    const order = ['ms-worker', 'ms-ledger', 'ms-log', 'ms-checkpoint', 'modelswitch'];
    const names = [...order.filter((n) => thNames.has(n)),
        ...[...thNames].filter((n) => !order.includes(n)).sort()];
    for (const [wl, byT] of Object.entries(cpuSum)) {
        for (const t of ['modelswitch', 'modelswitch-https', 'modelswitch-https-curl']) {
            const rs = cpuRecs.filter((r) => r.workload === wl && r.target === t &&
                r.v.requests > 0 && Object.keys(r.v).some((k) => k.startsWith('th_')));
            if (!rs.length || !byT[t]) continue;
            const ref = byT[t.startsWith('modelswitch-https') ? 'nginx-https' : 'nginx'];
            const cells = names.map((n) => median(rs.map((r) => ((r.v[`th_${n}`] ?? 0) /
                r.v.requests) * 1e6)));
            const w = names.indexOf('ms-worker');
            thRows.push([wlName(wl), NAMES[t], ...cells.map((x) => fmt(x, 2)),
                ref && w >= 0 ? fmtRatio(cells[w] / ref.us) : '–']);
        }
    }
    if (thRows.length && names.length) {
        say('Where ModelSwitch\'s CPU goes: µs of each thread a request (median of the rounds; ' +
            'a thread\'s number dropped, so every worker is one column; "modelswitch" is the ' +
            'main thread). "worker ÷ nginx" is the worker threads alone against nginx\'s whole ' +
            'process: the rest is the background work nginx has no counterpart for.');
        say();
        say(table(['workload', 'target', ...names, 'worker ÷ nginx'], thRows));
        say();
    }
}
if (info.scale_skipped !== undefined) {
    say('## Several workers');
    say();
    say(`Skipped: ${info.scale_skipped}.`);
    say();
}
const scaleRecs = recs.filter((r) => r.kind === 'scale');
if (scaleRecs.length) {
    say('## Several workers (HTTPS upstream, chat 1 KB)');
    say();
    say('W workers on W cores, wrk (one thread per load core) and the static upstream on the ' +
        'others. "÷ W × one worker" is the scaling (target ≥ 0.9).');
    say();
    const one = scaleRecs.find((r) => r.v.workers === 1);
    const rps = (r) => r.v.requests / (r.v.duration_us / 1e6);
    say(table(['workers', 'req/s', '÷ W × one worker', 'µs/req', 'proxy cores', 'load cores'],
        scaleRecs.map((r) => [String(r.v.workers), fmt(rps(r)),
            one ? fmt(rps(r) / (r.v.workers * rps(one)), 2) : '–',
            fmt((r.v.proxy_cpu_s / r.v.requests) * 1e6, 1), fmt(r.v.proxy_cpu_s / r.v.wall_s, 2),
            fmt((r.v.mock_cpu_s + r.v.wrk_cpu_s) / r.v.wall_s, 2)])));
    say();
}

// ---------------------------------------------------------------------------------------------
// What the workers share (phase shared, bench/scale.c): W threads on W cores driving the key
// cache, rate limiter, billing, router and logger as a request does.
const SHARED_PARTS = {
    all: 'a request, back to back', paced: 'a request at a worker\'s pace', keycache: 'key cache',
    ratelimit: 'rate limiter', billing: 'billing (hold, settle, ledger queue)',
    router: 'router', logger: 'logger queue',
};
const sharedRecs = recs.filter((r) => r.kind === 'shared');
const sharedScaling = {}; // mode -> scaling of the paced run at the most threads
if (sharedRecs.length) {
    say('## What the workers share (W threads on W cores)');
    say();
    say('bench/scale.c drives what every worker of a gateway shares (the key cache\'s lock, the ' +
        'rate limiter\'s stripes, billing\'s stripes and the ledger\'s queue, the router\'s ' +
        'deployment state, the logger\'s queue) with the calls of a chat request, from W ' +
        'threads pinned one a core, the best of the rounds (the machine\'s noise only adds ' +
        'time). "many": each thread has its own ' +
        'key and account (only the model and the deployment are common); "hot": one key of one ' +
        'account for all. "back to back" has nothing between two requests (the worst case for ' +
        'a shared line); "at a worker\'s pace" puts ' +
        `${fmt(Number(info.shared_pace_us), 1)} µs of private work after each request (the cpu ` +
        'phase\'s CPU per chat request), as a gateway\'s worker does. "scaling" is the ' +
        'requests per second of W threads ÷ W × one thread\'s (issue 15: ≥ 0.9), the median ' +
        'of the rounds\' own (each round runs W = 1, 2, ... moments apart; this machine\'s ' +
        'speed moves more between minutes), with their spread; "CPU ns" is ' +
        'the threads\' own CPU time per request (what the other threads\' writes to shared ' +
        'lines cost, without the time the ledger and logger threads take from the same W ' +
        'cores). "ledger events/s": how fast the ledger ' +
        'writer committed the round\'s backlog afterwards (full batches; "–" when a round left less ' +
        'than a batch: the ledger kept up); "log lines dropped": ' +
        'the logger\'s bounded queue overrun by a back-to-back run that leaves its thread no core ' +
        'of its own (the median of the rounds for both). ' +
        `Audit of the ledger afterwards: ${info.shared_audit ?? '?'}.`);
    say();
    const rows = [];
    for (const mode of ['many', 'hot']) {
        for (const part of Object.keys(SHARED_PARTS)) {
            const rs = sharedRecs.filter((r) => r.workload === mode && r.target === part)
                .sort((a, b) => a.round - b.round);
            const one = rs.find((r) => r.round === 1);
            for (const r of rs) {
                // the rounds' own scaling (scale.c pairs each round's W threads with its one
                // thread); a record without it (an older scale.c) falls back to the best rounds
                const paired = Number.isFinite(r.v.scaling);
                const sc = paired ? r.v.scaling : one ? one.v.ns_per_req / r.v.ns_per_req : NaN;
                if (part === 'paced' && r === rs[rs.length - 1]) sharedScaling[mode] = sc;
                const spread = paired && r.round > 1
                    ? ` (${fmt(r.v.scaling_min, 2)}–${fmt(r.v.scaling_max, 2)})` : '';
                rows.push([mode, SHARED_PARTS[part], String(r.round), fmt(r.v.ns_per_req),
                    fmt(r.v.cpu_ns_per_req), r.round === 1 ? '–' : fmt(sc, 2) + spread,
                    r.v.ledger_events >= 1000 && r.v.ledger_s > 0
                        ? fmt(r.v.ledger_events / r.v.ledger_s) : '–',
                    fmt(r.v.log_dropped)]);
            }
        }
    }
    say(table(['clients', 'what', 'W', 'ns/request', 'CPU ns/request', 'scaling',
        'ledger events/s', 'log lines dropped'], rows));
    say();
}

// ---------------------------------------------------------------------------------------------
// The ledger writer against the number of accounts its batches charge (phase ledger,
// bench/ledger.c): usage batches committed on a handle set up as the gateway's ledger.
const ledgerRecs = recs.filter((r) => r.kind === 'ledger')
    .sort((a, b) => Number(a.workload) - Number(b.workload) || Number(a.target) - Number(b.target));
if (ledgerRecs.length) {
    say('## The ledger writer against the number of accounts');
    say();
    say('bench/ledger.c commits usage events in batches, on a SQLite handle set up as the ' +
        'gateway\'s ledger (its pragmas, the checkpointer thread beside it), pinned on the ' +
        'proxy\'s core; each event charges an account drawn at random among A (and its key). ' +
        'Batches of 300 are what the 10 ms group-commit window gathers at one worker\'s rate; ' +
        '1,000 is the largest batch (a backlog\'s). "CPU µs/event" counts every thread of the ' +
        'program (the checkpointer\'s included). The charges are posted as the gateway posts ' +
        'them: deferred, about once a second inside the time measured, each account and key ' +
        'written once for all its rows ("posted" column: "with each commit" where the backend ' +
        'or LEDGER_POST=commit did it the way before round 27, when spread over many accounts ' +
        'nearly every event updated an account row and a key row on pages of their own). ' +
        `Audit of the databases afterwards: ${info.ledger_audit ?? '?'}.`);
    say();
    say(table(['accounts', 'batch', 'events/s', 'µs/event', 'CPU µs/event', 'posted'],
        ledgerRecs.map((r) => [fmt(Number(r.workload)), fmt(Number(r.target)),
            fmt(r.v.events_per_s), fmt(r.v.us_per_event, 2), fmt(r.v.cpu_us_per_event, 2),
            r.v.deferred === 1 ? 'deferred' : 'with each commit'])));
    say();
}

// ---------------------------------------------------------------------------------------------
// The shared state of several instances (issue 13): the same gateway with and without `redis:`.
const sharedRows = Object.entries(closed).filter(([, b]) => b.modelswitch &&
    b['modelswitch-redis']);
const cgShared = cgRecs.some((r) => r.target === 'modelswitch-redis');
const openShared = openRecs.some((r) => r.target === 'modelswitch-redis');
if (sharedRows.length || cgShared || openShared) {
    say('## The shared state\'s cost (Redis)');
    say();
    say('The same gateway, database and key with and without `redis:` (the shared state of ' +
        'several instances, docs/BILLING.md "Several instances"): with it, every admission is ' +
        'one script in Redis on the worker\'s asynchronous connection and every request\'s end ' +
        'sends a reservation snapshot and a token correction without waiting. Redis (no ' +
        'persistence) runs on the load core with wrk and the mock; its CPU is read from ' +
        '`/proc` apart from the gateway\'s. All from this run.');
    say();
    if (sharedRows.length) {
        say('Closed loop (wrk, medians of the rounds). "per proxy core" = requests ÷ the ' +
            'gateway\'s CPU seconds (what one core of gateway serves); "counting Redis" adds ' +
            'Redis\'s CPU seconds to the divisor. CPU per request in µs (= ms per 1k).');
        say();
        const rows = sharedRows.map(([wl, b]) => {
            const a = b.modelswitch;
            const r = b['modelswitch-redis'];
            return [WORKLOADS[wl], `${fmt(a.rps)} / ${fmt(r.rps)}`,
                `${fmt(a.perCore)} / ${fmt(r.perCore)}`, fmt(r.perCoreAll),
                `${fmt(a.cpu, 1)} / ${fmt(r.cpu, 1)}`, fmt(r.cpu - a.cpu, 1), fmt(r.redisCpu, 1),
                `${pct(a.util)} / ${pct(r.util)}`, `${a.non2xx} / ${r.non2xx}`];
        });
        say(table(['workload', 'req/s without / with', 'req/s per proxy core without / with',
            'with, counting Redis', 'proxy CPU µs/req without / with', 'difference µs/req',
            'Redis CPU µs/req', 'proxy core without / with', 'non-2xx without / with'], rows));
        say();
    }
    if (openShared) {
        say('Open loop (chat 1 KB, best round of each percentile): latency added over direct ' +
            'at each rate, without and with Redis; "Redis CPU" is Redis\'s CPU time over the ' +
            'run\'s wall time.');
        say();
        const rows = [];
        const rates = [...new Set(openRecs.map((r) => r.round))].sort((a, b) => a - b);
        for (const rate of rates) {
            const d = openRecs.find((r) => r.round === rate && r.target === 'direct' &&
                !r.v.skipped);
            const a = openRecs.find((r) => r.round === rate && r.target === 'modelswitch');
            const w = openRecs.find((r) => r.round === rate && r.target === 'modelswitch-redis');
            if (!a || !w) continue;
            const add = (x, k) => (d ? x.v[k] - d.v[k] : NaN);
            rows.push([fmt(rate),
                `${fmt(add(a, 'lat_p50_us'), 1)} / ${fmt(add(w, 'lat_p50_us'), 1)}`,
                fmt(w.v.lat_p50_us - a.v.lat_p50_us, 1),
                `${fmt(add(a, 'lat_p99_us'), 1)} / ${fmt(add(w, 'lat_p99_us'), 1)}`,
                fmt(w.v.lat_p99_us - a.v.lat_p99_us, 1),
                `${cpuShare('modelswitch', a.v)} / ${cpuShare('modelswitch-redis', w.v)}`,
                w.v.elapsed_s > 0 && w.v.redis_cpu_s !== undefined
                    ? `${fmt((100 * w.v.redis_cpu_s) / w.v.elapsed_s)}%` : '–',
                `${a.v.errors}/${a.v.non2xx} · ${w.v.errors}/${w.v.non2xx}`]);
        }
        const ta = ttfbRecs.find((r) => r.target === 'modelswitch' && !r.v.skipped);
        const tw = ttfbRecs.find((r) => r.target === 'modelswitch-redis' && !r.v.skipped);
        const td0 = ttfbRecs.find((r) => r.target === 'direct');
        say(table(['req/s', 'added p50 µs without / with', 'with − without p50 µs',
            'added p99 µs without / with', 'with − without p99 µs', 'proxy CPU without / with',
            'Redis CPU', 'errors/non-2xx without · with'], rows));
        say();
        if (ta && tw) {
            const add = (x, k) => (td0 ? x.v[k] - td0.v[k] : NaN);
            say(`Streaming time to first byte at ${fmt(tw.v.rate)} req/s, added over direct ` +
                `without / with Redis: p50 ${fmt(add(ta, 'ttfb_p50_us'), 1)} / ` +
                `${fmt(add(tw, 'ttfb_p50_us'), 1)} µs, p99 ${fmt(add(ta, 'ttfb_p99_us'), 1)} / ` +
                `${fmt(add(tw, 'ttfb_p99_us'), 1)} µs.`);
            say();
        }
    }
    if (cgShared) {
        say('Instructions per request (callgrind, the gateway process only: Redis\'s own work ' +
            'is its CPU above), by thread. The redis threads are the heartbeat (redis-beat, ' +
            'every 500 ms) and the change-notice reader (redis-sub): a cost per second, not ' +
            'per request.');
        say();
        const thr = (r, th) => {
            const n = r.v.n2 - r.v.n1;
            return ((r.v[`t2_${th}`] ?? 0) - (r.v[`t1_${th}`] ?? 0)) / n;
        };
        const rows = [];
        for (const wl of [...new Set(cgRecs.map((r) => r.workload))]) {
            const a = cgRecs.find((r) => r.workload === wl && r.target === 'modelswitch');
            const w = cgRecs.find((r) => r.workload === wl && r.target === 'modelswitch-redis');
            if (!a || !w) continue;
            const all = (r) => (r.v.ir2 - r.v.ir1) / (r.v.n2 - r.v.n1);
            const wa = thr(a, 'worker');
            const ww = thr(w, 'worker');
            rows.push([WORKLOADS[wl] ?? wl, `${fmt(wa)} / ${fmt(ww)}`,
                `${fmt(ww - wa)} (${wa > 0 ? `${fmt((100 * (ww - wa)) / wa, 1)}%` : '–'})`,
                `${fmt(thr(a, 'ledger'))} / ${fmt(thr(w, 'ledger'))}`,
                fmt(thr(w, 'redis-beat') + thr(w, 'redis-sub')),
                `${fmt(all(a))} / ${fmt(all(w))}`, fmt(all(w) - all(a))]);
        }
        say(table(['workload', 'worker without / with', 'worker difference',
            'ledger without / with', 'redis threads', 'all threads without / with',
            'all threads difference'], rows));
        say();
    }
    if (info.ms_redis_access_status !== undefined) {
        say(`ModelSwitch + Redis access log by status: ${info.ms_redis_access_status || '–'} ` +
            '(503: the readiness requests while each fresh Redis was in its grace window, about ' +
            '15 per start; 499: requests in flight when wrk stopped).');
        say();
    }
}

// ---------------------------------------------------------------------------------------------
// Against the results this run replaces: ModelSwitch's instructions and CPU per request (which
// moves with the machine: nginx's row says how much it moved). The worker's instructions are
// stable to a fraction of a percent from run to run, so a rise past 1% is a change of the code;
// all threads' include the ledger's, whose cost per request depends on how many rows each 10 ms
// commit gathers, and so on how fast the gateway ran under callgrind (round 11's run moved them
// 2% for the curl client with its worker's 1% down): for them the mark is at 5%.
const CG_RISE = 0.01;
const CG_ALL_RISE = 0.05;
const CPU_RISE = 0.10;
let slowerCg = prev ? 0 : undefined;
if (prev && (Object.keys(prev.cg).length || Object.keys(prev.cpu).length)) {
    const rows = [];
    const change = (was, now) => (Number.isFinite(was) && Number.isFinite(now) && was > 0
        ? now / was - 1 : NaN);
    const fmtChange = (c) => (!Number.isFinite(c) ? '–' : Math.abs(c) < 0.0005 ? '0.0%'
        : `${c > 0 ? '+' : '−'}${fmt(Math.abs(c) * 100, 1)}%`);
    const flag = (c, lim) => (!Number.isFinite(c) ? '' : c > lim ? '**slower**'
        : c < -lim ? 'faster' : '');
    for (const [wl, byT] of Object.entries(cg)) {
        for (const [t, now] of Object.entries(byT)) {
            if (!t.startsWith('modelswitch')) continue;
            const was = prev.cg[`${WORKLOADS[wl] ?? wl}|${NAMES[t]}`];
            if (!was) continue;
            const c = change(was.all, now);
            const cw = change(was.worker, cgWorker[wl]?.[t]);
            if (c > CG_ALL_RISE) slowerCg++;
            if (cw > CG_RISE) slowerCg++;
            rows.push([WORKLOADS[wl] ?? wl, NAMES[t], 'instructions/request, all threads',
                fmt(was.all), fmt(now), fmtChange(c), flag(c, CG_ALL_RISE)]);
            if (Number.isFinite(cw)) {
                rows.push([WORKLOADS[wl] ?? wl, NAMES[t], 'instructions/request, worker',
                    fmt(was.worker), fmt(cgWorker[wl][t]), fmtChange(cw), flag(cw, CG_RISE)]);
            }
        }
    }
    for (const [wl, byT] of Object.entries(cpuSum)) {
        for (const [t, s] of Object.entries(byT)) {
            const was = prev.cpu[`${WORKLOADS[wl] ?? wl}|${NAMES[t]}`];
            if (was === undefined) continue;
            const c = change(was, s.us);
            rows.push([WORKLOADS[wl] ?? wl, NAMES[t], 'CPU µs/request (cpu phase)', fmt(was, 1),
                fmt(s.us, 1), fmtChange(c), t.startsWith('modelswitch') ? flag(c, CPU_RISE) : '']);
        }
    }
    if (rows.length) {
        say('## Against the previous results');
        say();
        say(`The figures of the bench/RESULTS.md this run replaced (${prev.version ?? 'its ' +
            'version unknown'}), by the same workload and target. The worker's instructions ` +
            'per request move by a fraction of a percent from run to run: a rise past ' +
            `${fmt(CG_RISE * 100)}% is marked slower, and is a change of the code; all ` +
            'threads\' include the ledger\'s, whose share of a request depends on how many ' +
            'rows each commit gathers under callgrind: they are marked past ' +
            `${fmt(CG_ALL_RISE * 100)}%. CPU per ` +
            `request moves by several percent with the machine: past ${fmt(CPU_RISE * 100)}% ` +
            'it is marked, and means more when nginx\'s own row did not move with it.');
        say();
        say(table(['workload', 'target', 'figure', 'previous', 'now', 'change', ''], rows));
        say();
    } else {
        slowerCg = undefined;
    }
}

// ---------------------------------------------------------------------------------------------
say('## The issue\'s targets');
say();
const trows = [];
const mark = (ok) => (ok === undefined ? '–' : ok ? 'met' : '**not met**');
// An added latency below zero means the direct run was the noisier one: no verdict.
const markAdded = (a, lim) => (a < 0 ? 'unclear (direct measured slower: noise)' : mark(a <= lim));
const c1 = closed.chat1k ?? {};
for (const [wl, byT] of Object.entries(closed)) {
    const ms = byT.modelswitch;
    if (!ms) continue;
    const rn = ratio(ms.rps, byT.nginx?.rps);
    const rp = ratio(ms.rps, byT.portkey?.rps);
    if (Number.isFinite(rn)) {
        trows.push([`throughput ≥ 0.8 × nginx (${WORKLOADS[wl]})`, fmtRatio(rn), mark(rn >= 0.8)]);
    }
    if (Number.isFinite(rp)) {
        trows.push([`throughput ≥ 50 × Portkey (${WORKLOADS[wl]})`, fmtRatio(rp), mark(rp >= 50)]);
    }
}
const o5 = openRecs.filter((r) => r.round === 5000);
const od = o5.find((r) => r.target === 'direct');
const td = ttfbRecs.find((r) => r.target === 'direct');
for (const t of ['modelswitch', 'modelswitch-poll']) {
    const how = t === 'modelswitch' ? '' : ` (${NAMES[t]})`;
    const om = o5.find((r) => r.target === t && !r.v.skipped);
    if (od && om) {
        const a50 = om.v.lat_p50_us - od.v.lat_p50_us;
        const a99 = om.v.lat_p99_us - od.v.lat_p99_us;
        trows.push([`added latency p50 ≤ 50 µs at 5000 req/s${how}`, `${fmt(a50, 1)} µs`,
            markAdded(a50, 50)]);
        trows.push([`added latency p99 ≤ 250 µs at 5000 req/s${how}`, `${fmt(a99, 1)} µs`,
            markAdded(a99, 250)]);
    }
    const tm = ttfbRecs.find((r) => r.target === t && !r.v.skipped);
    if (td && tm) {
        const a = tm.v.ttfb_p50_us - td.v.ttfb_p50_us;
        trows.push([`streaming TTFB added ≤ 100 µs (p50)${how}`, `${fmt(a, 1)} µs`,
            markAdded(a, 100)]);
    }
}
if (mem.modelswitch?.idle) {
    trows.push(['RSS with 10,000 idle connections ≤ 64 MB', `${fmt(mem.modelswitch.idle, 1)} MB`,
        mark(mem.modelswitch.idle <= 64)]);
}
if (mem.modelswitch?.streams) {
    trows.push(['RSS with 1,000 concurrent streams ≤ 128 MB',
        `${fmt(mem.modelswitch.streams, 1)} MB`,
        mark(mem.modelswitch.streams <= 128)]);
}
const big = closed.chat100k ?? {};
if (big.modelswitch && c1.modelswitch && big.nginx && c1.nginx) {
    const msr = big.modelswitch.cpu / c1.modelswitch.cpu;
    const ngr = big.nginx.cpu / c1.nginx.cpu;
    trows.push(['100 KB prompts cost no more than the bytes they move (CPU per 100 KB request ÷ ' +
        'per 1 KB request, ModelSwitch vs nginx)', `${fmt(msr, 2)} vs ${fmt(ngr, 2)}`,
        '(compare)']);
}
// every workload of the cpu phase: chat 1 KB is the issue's headline, the others where users
// live too (a stream's CPU per event, large prompts, many connections)
for (const [wl, cc] of Object.entries(cpuSum)) {
    for (const [t, ref, what] of [['modelswitch', 'nginx', 'plain HTTP'],
        ['modelswitch-https', 'nginx-https', 'HTTPS']]) {
        if (!cc[t] || !cc[ref]) continue;
        const r = cc[t].ratio;
        if (TRANSLATED.has(wl.split('@')[0])) {
            trows.push([`CPU per request ÷ nginx's pass-through of the same request (${what}, ` +
                `${wlName(wl)})`, fmtRatio(r), '(compare)']);
            continue;
        }
        trows.push([`CPU per request ≤ 1.0 × nginx's, proxy the limit (${what}, ${wlName(wl)})`,
            fmtRatio(r), mark(r <= 1.0)]);
    }
}
for (const [mode, what] of [['many', 'many keys'], ['hot', 'one hot key and account']]) {
    if (sharedScaling[mode] === undefined) continue;
    const w = Math.max(...sharedRecs.filter((r) => r.workload === mode).map((r) => r.round));
    trows.push([`what the workers share scales: ${w} threads ≥ 0.9 × ${w} × one, at a ` +
        `worker's pace (${what}; bench/scale.c)`, fmt(sharedScaling[mode], 2),
        mark(sharedScaling[mode] >= 0.9)]);
}
// The ledger must keep up with the requests one worker settles, however many accounts they
// charge: events/s in batches of 300 against one worker's requests per core-second (the cpu
// phase's chat 1 KB, all of the gateway's threads).
const ledger300 = ledgerRecs.filter((r) => Number(r.target) === 300);
if (ledger300.length && cpuSum.chat1k?.modelswitch) {
    const worker = 1e6 / cpuSum.chat1k.modelswitch.us;
    const worst = ledger300.reduce((a, r) => (r.v.events_per_s < a.v.events_per_s ? r : a));
    trows.push(['the ledger writer keeps up with a worker however many accounts it charges ' +
        '(events/s, batches of 300, ≥ one worker\'s chat requests per core-second)',
        `${fmt(worst.v.events_per_s)} at ${fmt(Number(worst.workload))} accounts vs ` +
        `${fmt(worker)}`, mark(worst.v.events_per_s >= worker)]);
}
if (slowerCg !== undefined) {
    trows.push(['no ModelSwitch instruction count above the previous results (worker: 1%, ' +
        'all threads: 5%)',
        `${slowerCg} above`, mark(slowerCg === 0)]);
}
say(table(['target', 'measured', ''], trows));
say();

// ---------------------------------------------------------------------------------------------
const checks = recs.filter((r) => r.kind === 'check');
if (checks.length || info.ms_access_lines !== undefined) {
    say('## Problems seen');
    say();
    for (const c of checks) {
        say(`- ${NAMES[c.target]} on ${WORKLOADS[c.workload] ?? c.workload}: only ${c.v.ok}/20 ` +
            `requests of the pre-check answered 2xx (${c.v.errors} errors, ` +
            `${c.v.non2xx} non-2xx).`);
    }
    if (info.ms_access_lines !== undefined) {
        say(`- ModelSwitch's access log: ${info.ms_access_lines} lines; by status ` +
            `${info.ms_access_status || '–'} (499: requests still in flight when wrk stops a ` +
            `run and closes its connections); ${info.ms_log_warn_error} warning/error lines.`);
        for (const m of infoMulti.ms_log_msg ?? []) say(`  - \`${m.replace(/`/g, "'")}\``);
        for (const m of infoMulti.ms_access_sample ?? []) say(`  - \`${m.replace(/`/g, "'")}\``);
    }
    say();
}

const text = out.join('\n');
fs.writeFileSync(outFile, text);
process.stdout.write(text + '\n');
