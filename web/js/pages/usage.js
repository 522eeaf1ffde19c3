// Usage: the per-request log (GET /api/usage) with filters by model, key and date range, paging,
// and a CSV export made here from the API's pages; and statistics by model, key and day
// (GET /api/usage/stats?group_by=), with charts. Date filters are days of the browser's time
// zone, sent as the UTC times where they start and end.

import * as api from '../api.js';
import { h, fill, field, table, loading, empty, errorBox } from '../dom.js';
import { money, count, short, axisUsd, time, day, localDateToIso, inputTokens } from '../fmt.js';
import { columns, bars, chartBox } from '../chart.js';
import { toCsv, download } from '../csv.js';

const PAGE = 50;

const CSV_COLUMNS = (keyName) => [
    { name: 'created_at', get: (r) => r.createdAt },
    { name: 'request_id', get: (r) => r.requestId, text: true },
    { name: 'model', get: (r) => r.model, text: true },
    { name: 'provider', get: (r) => r.provider, text: true },
    { name: 'key_id', get: (r) => r.keyId },
    { name: 'key_name', get: (r) => keyName(r.keyId), text: true },
    { name: 'input_tokens', get: (r) => inputTokens(r) },
    { name: 'cached_tokens', get: (r) => r.cachedTokens },
    { name: 'cache_write_tokens', get: (r) => r.cacheWriteTokens },
    { name: 'cache_write_1h_tokens', get: (r) => r.cacheWrite1hTokens },
    { name: 'prompt_tokens', get: (r) => r.promptTokens },
    { name: 'completion_tokens', get: (r) => r.completionTokens },
    { name: 'reasoning_tokens', get: (r) => r.reasoningTokens },
    { name: 'cost_usd', get: (r) => r.chargedAmount },
    { name: 'estimated', get: (r) => (r.estimated ? 'true' : 'false') },
    { name: 'status', get: (r) => r.status },
    { name: 'latency_ms', get: (r) => r.latencyMs },
];

const TOKEN_COLS = [{ label: 'Input', class: 'num' }, { label: 'Cached', class: 'num' }, { label: 'Cache write', class: 'num' },
    { label: 'Output', class: 'num' }, { label: 'Reasoning', class: 'num' }];

/** The five token cells of a usage row or a total: the contract's buckets. */
function tokenCells(r) {
    return [count(inputTokens(r)), count(r.cachedTokens),
        { text: count(r.cacheWriteTokens), title: `${count(r.cacheWrite1hTokens || 0)} of them 1-hour writes`, class: 'num' },
        count(r.completionTokens), count(r.reasoningTokens)];
}

function filtersForm(state, keys, models, onApply, onExport) {
    const model = field('Model', { type: 'text', list: 'usage-models', value: state.model, testid: 'usage-filter-model', autocomplete: 'off', placeholder: 'all' });
    const keyOpts = [{ value: '', label: 'All keys' }, ...keys.map((k) => ({ value: String(k.id), label: `${k.name} (${k.prefix}…)`, selected: String(k.id) === state.key }))];
    const key = field('Key', { testid: 'usage-filter-key' }, { tag: 'select', options: keyOpts });
    const from = field('From (day)', { type: 'date', value: state.from, testid: 'usage-filter-from' });
    const to = field('To (day, included)', { type: 'date', value: state.to, testid: 'usage-filter-to' });
    const exportBtn = h('button', { type: 'button', class: 'secondary', testid: 'usage-export' }, 'Export CSV');
    const reset = h('button', { type: 'button', class: 'secondary', testid: 'usage-reset' }, 'Reset');
    const form = h('form', { class: 'card filters', testid: 'usage-filters', novalidate: true },
        h('datalist', { id: 'usage-models' }, models.map((m) => h('option', { value: m }))),
        h('div', { class: 'grid' }, model, key, from, to),
        h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary', testid: 'usage-apply' }, 'Apply'), reset, exportBtn));
    const read = () => ({ model: model.input.value.trim(), key: key.input.value, from: from.input.value, to: to.input.value });
    form.addEventListener('submit', (ev) => {
        ev.preventDefault();
        onApply(read());
    });
    reset.addEventListener('click', () => {
        form.reset();
        onApply(read());
    });
    exportBtn.addEventListener('click', () => onExport(read(), exportBtn));
    return form;
}

/** The API's filter parameters for the form's state. */
function params(s) {
    return { model: s.model, key_id: s.key, from: localDateToIso(s.from), to: localDateToIso(s.to, true) };
}

function logTable(rows, keyName) {
    return table([{ label: 'Time' }, { label: 'Model' }, { label: 'Provider' }, { label: 'Key' }, ...TOKEN_COLS,
        { label: 'Cost', class: 'num' }, { label: 'Status', class: 'num' }, { label: 'Latency', class: 'num' }],
    rows.map((r) => [time(r.createdAt, { seconds: true }), { text: r.model, testid: 'usage-model' }, r.provider,
        { text: keyName(r.keyId), testid: 'usage-key' }, ...tokenCells(r),
        { ...money(r.chargedAmount), testid: 'usage-cost' },
        { text: String(r.status), class: r.status >= 400 ? 'bad' : null, title: r.estimated ? 'billed by estimate' : null, testid: 'usage-status' },
        `${count(r.latencyMs)} ms`]),
    { testid: 'usage-table', caption: 'Requests, newest first', rowTestid: (i) => `usage-row-${rows[i].id}` });
}

function statsView(byModel, byKey, byDay, overall, keyName) {
    const totalCols = [...TOKEN_COLS, { label: 'Requests', class: 'num' }, { label: 'Spend', class: 'num' }];
    const tot = (x) => [...tokenCells(x), count(x.requests), money(x.spend)];
    if (!overall.requests) return empty('No requests match these filters.', 'stats-empty');
    return [
        h('p', { class: 'summary', testid: 'stats-overall' }, `${count(overall.requests)} requests, `,
            h('span', { title: money(overall.spend).title }, money(overall.spend).text), ` spent, ${count(overall.promptTokens)} prompt and ${count(overall.completionTokens)} completion tokens.`),
        h('h3', null, 'By model'),
        bars(byModel.map((m) => ({ label: m.model, value: Number(m.spend), text: money(m.spend).text })), { label: 'Spend by model', testid: 'chart-by-model' }),
        table([{ label: 'Model' }, ...totalCols], byModel.map((m) => [m.model, ...tot(m)]), { testid: 'stats-by-model', caption: 'By model' }),
        h('h3', null, 'By key'),
        bars(byKey.map((k) => ({ label: keyName(k.keyId), value: Number(k.spend), text: money(k.spend).text })), { label: 'Spend by key', testid: 'chart-by-key' }),
        table([{ label: 'Key' }, ...totalCols], byKey.map((k) => [keyName(k.keyId), ...tot(k)]), { testid: 'stats-by-key', caption: 'By key' }),
        h('h3', null, 'By day (UTC)'),
        h('div', { class: 'charts' },
            chartBox('Spend per day', columns(byDay.map((d) => ({ label: day(d.date), value: Number(d.spend), title: `${day(d.date)}: ${money(d.spend).text}` })),
                { label: 'Spend per day', format: axisUsd, every: Math.ceil(byDay.length / 8), testid: 'chart-by-day-spend' })),
            chartBox('Requests per day', columns(byDay.map((d) => ({ label: day(d.date), value: d.requests })),
                { label: 'Requests per day', format: short, every: Math.ceil(byDay.length / 8), testid: 'chart-by-day-requests' }))),
        table([{ label: 'Day (UTC)' }, ...totalCols], byDay.map((d) => [d.date, ...tot(d)]), { testid: 'stats-by-day', caption: 'By day' }),
    ];
}

/** Tabs for the log and the statistics (arrow keys move between them). */
function tabs(items) {
    const list = h('div', { role: 'tablist', class: 'tabs', 'aria-label': 'Usage views' });
    const btns = items.map((it, i) => h('button', { type: 'button', role: 'tab', id: `tab-${it.id}`, 'aria-controls': `panel-${it.id}`,
        'aria-selected': i === 0 ? 'true' : 'false', tabindex: i === 0 ? 0 : -1, testid: `tab-${it.id}` }, it.title));
    const panels = items.map((it, i) => h('section', { role: 'tabpanel', id: `panel-${it.id}`, 'aria-labelledby': `tab-${it.id}`, hidden: i !== 0 }, it.panel));
    const select = (i) => btns.forEach((b, j) => {
        b.setAttribute('aria-selected', i === j ? 'true' : 'false');
        b.tabIndex = i === j ? 0 : -1;
        panels[j].hidden = i !== j;
        if (i === j) b.focus();
    });
    btns.forEach((b, i) => {
        b.addEventListener('click', () => select(i));
        b.addEventListener('keydown', (ev) => {
            if (ev.key === 'ArrowRight') select((i + 1) % btns.length);
            if (ev.key === 'ArrowLeft') select((i + btns.length - 1) % btns.length);
        });
    });
    list.append(...btns);
    return [list, ...panels];
}

export async function render(view) {
    fill(view, h('h1', null, 'Usage'), loading());
    let keys = [];
    let models = [];
    try {
        const [k, s] = await Promise.all([api.get('/api/keys'), api.get('/api/usage/stats')]);
        keys = k.keys;
        models = s.byModel.map((m) => m.model);
    } catch (e) {
        fill(view, h('h1', null, 'Usage'), errorBox(e));
        return;
    }
    const names = new Map(keys.map((k) => [k.id, `${k.name} (${k.prefix}…)`]));
    const keyName = (id) => names.get(id) || `#${id} (deleted)`;
    const state = { model: '', key: '', from: '', to: '', offset: 0 };
    const log = h('div', { 'aria-live': 'polite' });
    const stats = h('div', { 'aria-live': 'polite' });
    const msg = h('div');

    const loadLog = async () => {
        fill(log, loading());
        try {
            const { usage } = await api.get(`/api/usage${api.query({ ...params(state), limit: PAGE, offset: state.offset })}`);
            const prev = h('button', { type: 'button', class: 'secondary', testid: 'usage-prev', disabled: state.offset === 0 }, '← Newer');
            const next = h('button', { type: 'button', class: 'secondary', testid: 'usage-next', disabled: usage.length < PAGE }, 'Older →');
            prev.addEventListener('click', () => { state.offset = Math.max(0, state.offset - PAGE); loadLog(); });
            next.addEventListener('click', () => { state.offset += PAGE; loadLog(); });
            const range = usage.length ? `Requests ${state.offset + 1}–${state.offset + usage.length}` : '';
            fill(log, usage.length ? logTable(usage, keyName) : empty(state.offset ? 'No older requests.' : 'No requests match these filters.', 'usage-empty'),
                h('div', { class: 'pager' }, prev, h('span', { testid: 'usage-range' }, range), next));
        } catch (e) {
            fill(log, errorBox(e, 'usage-error'));
        }
    };
    const loadStats = async () => {
        fill(stats, loading());
        try {
            const p = params(state);
            const [byKey, byDay] = await Promise.all([api.get(`/api/usage/stats${api.query({ ...p, group_by: 'key' })}`),
                api.get(`/api/usage/stats${api.query({ ...p, group_by: 'day' })}`)]);
            fill(stats, statsView(byKey.byModel, byKey.byKey, byDay.byDay, byKey.overall, keyName));
        } catch (e) {
            fill(stats, errorBox(e, 'stats-error'));
        }
    };
    const apply = (s) => {
        Object.assign(state, s, { offset: 0 });
        fill(msg);
        loadLog();
        loadStats();
    };
    const exportCsv = async (s, btn) => {
        btn.disabled = true;
        fill(msg, h('p', { class: 'info', role: 'status', testid: 'export-status' }, 'Exporting…'));
        try {
            const rows = await api.allPages('/api/usage', params(s), 'usage', {
                onPage: (n) => { msg.firstChild.textContent = `Exporting… ${count(n)} rows`; } });
            const name = `modelswitch-usage${s.from ? `-from-${s.from}` : ''}${s.to ? `-to-${s.to}` : ''}.csv`;
            download(name, toCsv(CSV_COLUMNS(keyName), rows));
            fill(msg, h('p', { class: 'info', role: 'status', testid: 'export-status' }, `Exported ${count(rows.length)} requests to ${name}.`));
        } catch (e) {
            fill(msg, errorBox(e, 'export-error'));
        } finally {
            btn.disabled = false;
        }
    };
    fill(view, h('h1', null, 'Usage'), filtersForm(state, keys, models, apply, exportCsv), msg,
        tabs([{ id: 'log', title: 'Requests', panel: log }, { id: 'stats', title: 'Statistics', panel: stats }]));
    apply(state);
}
