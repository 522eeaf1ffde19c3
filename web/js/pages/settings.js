// Settings → Notifications: the low-balance threshold and the webhook the gateway POSTs to
// when the balance falls below it (GET/PUT /api/settings/notifications).

import * as api from '../api.js';
import { h, fill, field, loading, errorBox } from '../dom.js';
import { money } from '../fmt.js';

function form(cur, ctx) {
    const threshold = field('Low-balance threshold, USD (empty: no alert)', { type: 'text', inputmode: 'decimal', autocomplete: 'off',
        value: cur.lowBalanceThreshold ?? '', testid: 'notif-threshold' },
    { hint: 'When the balance falls below this amount, the overview warns, and the webhook below is called once (again only after a top-up lifts the balance above it).' });
    const url = field('Webhook URL (empty: none)', { type: 'url', autocomplete: 'off', spellcheck: 'false', value: cur.webhookUrl ?? '',
        testid: 'notif-webhook', placeholder: 'https://example.com/hooks/modelswitch' },
    { hint: 'The gateway POSTs a signed JSON body to this address.' });
    const out = h('div', { 'aria-live': 'polite' });
    const btn = h('button', { type: 'submit', class: 'primary', testid: 'notif-save' }, 'Save');
    const f = h('form', { class: 'card', testid: 'notif-form', novalidate: true }, h('h2', null, 'Low balance'), threshold, url, out,
        h('div', { class: 'actions' }, btn));
    f.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        fill(out);
        btn.disabled = true;
        const t = threshold.input.value.trim();
        const u = url.input.value.trim();
        try {
            const saved = await api.put('/api/settings/notifications', {
                low_balance_threshold: t === '' ? null : api.moneyJson(t),
                webhook_url: u === '' ? null : u,
            });
            const th = saved?.lowBalanceThreshold;
            fill(out, h('p', { class: 'info', role: 'status', testid: 'notif-saved' },
                th === null || th === undefined ? 'Saved: no low-balance alert.' : `Saved: alert below ${money(th).text}.`));
            ctx.notify('Notification settings saved.');
        } catch (e) {
            fill(out, errorBox(e, 'notif-error'));
        } finally {
            btn.disabled = false;
        }
    });
    return f;
}

export async function render(view, ctx) {
    fill(view, h('h1', null, 'Notifications'), loading());
    let cur;
    try {
        cur = await api.get('/api/settings/notifications');
    } catch (e) {
        fill(view, h('h1', null, 'Notifications'), errorBox(e.status === 404
            ? { message: 'This gateway has no notification settings (GET /api/settings/notifications answered 404).' } : e, 'notif-error'));
        return;
    }
    fill(view, h('h1', null, 'Notifications'), form(cur || {}, ctx));
}
