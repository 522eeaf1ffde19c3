// Settings → Notifications: the low-balance threshold and the webhook the gateway POSTs to when
// the balance falls below it (GET/PUT /api/settings/notifications). The webhook's signing
// secret is shown once, when the gateway makes it (the first webhook, or a rotation), as keys
// are; afterwards only its prefix.

import * as api from '../api.js';
import { h, fill, field, loading, errorBox, showSecret } from '../dom.js';
import { money, time } from '../fmt.js';

const SIGNING = 'Each webhook carries x-modelswitch-signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>" with this secret>.';

/** Shows a new signing secret once, if the answer carries one. */
async function newSecret(saved) {
    if (saved && saved.webhookSecret) await showSecret('Webhook signing secret', saved.webhookSecret, 'signing secret');
}

function secretLine(cur, rotate) {
    if (!cur.webhookUrl) return null;
    return h('div', { class: 'secret-line' },
        h('p', null, 'Signing secret: ', h('code', { testid: 'notif-secret-prefix' }, `${cur.webhookSecretPrefix || ''}…`), ' ',
            h('small', { class: 'hint' }, SIGNING)), rotate);
}

function form(cur, ctx, rerender) {
    const threshold = field('Low-balance threshold, USD (empty: no alert)', { type: 'text', inputmode: 'decimal', autocomplete: 'off',
        value: cur.lowBalanceThreshold ?? '', testid: 'notif-threshold' },
    { hint: 'When the balance falls below this amount, the overview warns, and the webhook below is called once (again only after a top-up lifts the balance above it).' });
    const url = field('Webhook URL (empty: none)', { type: 'url', autocomplete: 'off', spellcheck: 'false', value: cur.webhookUrl ?? '',
        testid: 'notif-webhook', placeholder: 'https://example.com/hooks/modelswitch' },
    { hint: 'The gateway POSTs a signed JSON body to this address: {"id","type":"balance.low","createdAt","accountId","balance","threshold"}.' });
    const out = h('div', { 'aria-live': 'polite' });
    const btn = h('button', { type: 'submit', class: 'primary', testid: 'notif-save' }, 'Save');
    const rotate = h('button', { type: 'button', class: 'secondary small', testid: 'notif-rotate' }, 'Rotate secret');
    const busy = (on) => { btn.disabled = on; rotate.disabled = on; };
    const save = async (body, done) => {
        fill(out);
        busy(true);
        try {
            const saved = await api.put('/api/settings/notifications', body);
            await newSecret(saved);
            ctx.notify(done);
            rerender(saved, done);
        } catch (e) {
            fill(out, errorBox(e, 'notif-error'));
        } finally {
            busy(false);
        }
    };
    rotate.addEventListener('click', () => save({ rotate_secret: true }, 'A new signing secret is in use.'));
    const f = h('form', { class: 'card', testid: 'notif-form', novalidate: true }, h('h2', null, 'Low balance'), threshold, url,
        secretLine(cur, rotate),
        cur.updatedAt ? h('p', { class: 'hint' }, 'Last changed ', h('span', { title: time(cur.updatedAt).title }, time(cur.updatedAt).text), '.') : null,
        out, h('div', { class: 'actions' }, btn));
    f.addEventListener('submit', (ev) => {
        ev.preventDefault();
        const t = threshold.input.value.trim();
        const u = url.input.value.trim();
        save({ low_balance_threshold: t === '' ? null : api.moneyJson(t), webhook_url: u === '' ? null : u }, 'Notification settings saved.');
    });
    return f;
}

function savedText(s) {
    const th = s?.lowBalanceThreshold;
    return th === null || th === undefined ? 'Saved: no low-balance alert.' : `Saved: alert below ${money(th).text}.`;
}

export async function render(view, ctx) {
    fill(view, h('h1', null, 'Notifications'), loading());
    let cur;
    try {
        cur = await api.get('/api/settings/notifications');
    } catch (e) {
        fill(view, h('h1', null, 'Notifications'), errorBox(e, 'notif-error'));
        return;
    }
    const show = (s, message) => fill(view, h('h1', null, 'Notifications'),
        message ? h('p', { class: 'info', role: 'status', testid: 'notif-saved' }, savedText(s)) : null,
        form(s || {}, ctx, show));
    show(cur);
}
