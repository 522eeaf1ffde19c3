// Overview: the balance, spend today and over the last 7 and 30 days, requests and tokens per
// day, the top models, and a warning when the balance is under the notification threshold.

import * as api from '../api.js';
import { h, fill, loading, table, empty, errorBox } from '../dom.js';
import { money, count, short, day, localDayStart, inputTokens } from '../fmt.js';
import { columns, bars, chartBox } from '../chart.js';

const DAY = 86400000;

function card(title, value, testid, sub) {
    const m = money(value);
    return h('div', { class: 'card stat' }, h('h2', null, title),
        h('p', { class: 'big', title: m.title, testid }, m.text), sub ? h('p', { class: 'sub' }, sub) : null);
}

/** The last n UTC days (the API's byDay are UTC days), oldest first, with zero-filled gaps. */
function lastDays(byDay, n) {
    const have = new Map((byDay || []).map((d) => [d.date, d]));
    const out = [];
    const today = Date.UTC(new Date().getUTCFullYear(), new Date().getUTCMonth(), new Date().getUTCDate());
    for (let i = n - 1; i >= 0; i--) {
        const ymd = new Date(today - i * DAY).toISOString().slice(0, 10);
        out.push(have.get(ymd) || { date: ymd, requests: 0, promptTokens: 0, completionTokens: 0, spend: '0' });
    }
    return out;
}

export async function render(view) {
    fill(view, h('h1', null, 'Overview'), loading());
    const now = Date.now();
    let bal, today, week, month, notif;
    try {
        [bal, today, week, month, notif] = await Promise.all([
            api.get('/api/balance'),
            api.get(`/api/usage/stats${api.query({ from: localDayStart() })}`),
            api.get(`/api/usage/stats${api.query({ from: new Date(now - 7 * DAY).toISOString() })}`),
            api.get(`/api/usage/stats${api.query({ from: new Date(now - 30 * DAY).toISOString(), group_by: 'day' })}`),
            api.get('/api/settings/notifications'),
        ]);
    } catch (e) {
        fill(view, h('h1', null, 'Overview'), errorBox(e));
        return;
    }
    const limit = notif?.lowBalanceThreshold;
    const low = limit !== null && limit !== undefined && Number(bal.balance) < Number(limit);
    const days = lastDays(month.byDay, 30);
    const top = (month.byModel || []).slice(0, 5);
    fill(view,
        h('h1', null, 'Overview'),
        low ? h('p', { class: 'warning', role: 'alert', testid: 'low-balance-warning' },
            `Your balance is below your low-balance threshold of ${money(limit).text}. `,
            h('a', { href: '#/transactions' }, 'See transactions'), ' or ask your operator for a top-up.') : null,
        h('div', { class: 'cards' },
            card('Balance', bal.balance, 'balance'),
            card('Spend today', today.overall.spend, 'spend-today', `${count(today.overall.requests)} requests`),
            card('Last 7 days', week.overall.spend, 'spend-7d', `${count(week.overall.requests)} requests`),
            card('Last 30 days', month.overall.spend, 'spend-30d', `${count(month.overall.requests)} requests`)),
        h('div', { class: 'charts' },
            chartBox('Requests per day (UTC, last 30 days)', columns(days.map((d) => ({ label: day(d.date), value: d.requests,
                title: `${day(d.date)}: ${count(d.requests)} requests` })), { label: 'Requests per day', format: short, every: 7, testid: 'chart-requests' })),
            chartBox('Tokens per day (prompt + completion)', columns(days.map((d) => ({ label: day(d.date),
                value: (d.promptTokens || 0) + (d.completionTokens || 0),
                title: `${day(d.date)}: ${count(d.promptTokens)} prompt, ${count(d.completionTokens)} completion tokens` })),
            { label: 'Tokens per day', format: short, every: 7, testid: 'chart-tokens' }))),
        h('h2', null, 'Top models (last 30 days)'),
        top.length === 0 ? empty('No requests in the last 30 days. Create an API key and send one.', 'top-models-empty')
            : [bars(top.map((m) => ({ label: m.model, value: Number(m.spend), text: money(m.spend).text })), { label: 'Spend by model', testid: 'chart-top-models' }),
                table([{ label: 'Model' }, { label: 'Requests', class: 'num' }, { label: 'Input', class: 'num' },
                    { label: 'Cached', class: 'num' }, { label: 'Output', class: 'num' }, { label: 'Spend', class: 'num' }],
                top.map((m) => [m.model, count(m.requests), count(inputTokens(m)), count(m.cachedTokens), count(m.completionTokens), money(m.spend)]),
                { testid: 'top-models', caption: 'Top models by spend' })]);
}
