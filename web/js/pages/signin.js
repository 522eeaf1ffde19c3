// Sign-in: an account owner with a billing key (mk-), an operator with the admin token. The
// secret is tried against the API first (GET /api/balance, GET /admin/accounts) and kept in the
// tab's sessionStorage only when it works.

import * as api from '../api.js';
import { h, field, errorBox, fill } from '../dom.js';

export function render(view, { message, signedIn }) {
    const roleAccount = h('input', { type: 'radio', name: 'role', id: 'role-account', value: 'account', checked: true, testid: 'role-account' });
    const roleOperator = h('input', { type: 'radio', name: 'role', id: 'role-operator', value: 'operator', testid: 'role-operator' });
    const secret = field('Billing key', { type: 'password', name: 'secret', autocomplete: 'off', spellcheck: 'false',
        required: true, testid: 'signin-secret', placeholder: 'mk-…' }, { hint: 'Your account\'s billing key (mk-…). It stays in this browser tab until you sign out or close it.' });
    const out = h('div', { 'aria-live': 'polite' });
    const btn = h('button', { type: 'submit', class: 'primary', testid: 'signin-submit' }, 'Sign in');
    const label = secret.querySelector('label');
    const hint = secret.querySelector('.hint');
    const sync = () => {
        const op = roleOperator.checked;
        label.textContent = op ? 'Admin token' : 'Billing key';
        hint.textContent = op ? 'The operator\'s admin token (server.admin_token). It stays in this browser tab until you sign out or close it.'
            : 'Your account\'s billing key (mk-…). It stays in this browser tab until you sign out or close it.';
        secret.input.placeholder = op ? '' : 'mk-…';
    };
    roleAccount.addEventListener('change', sync);
    roleOperator.addEventListener('change', sync);
    const form = h('form', { class: 'card signin', testid: 'signin-form', method: 'post', action: '#', novalidate: true },
        h('h1', null, 'Sign in'),
        message ? h('p', { class: 'info', role: 'status', testid: 'signin-message' }, message) : null,
        h('fieldset', { class: 'roles' }, h('legend', null, 'I am'),
            h('label', { for: 'role-account' }, roleAccount, ' an account owner'),
            h('label', { for: 'role-operator' }, roleOperator, ' the operator')),
        secret, out, h('div', { class: 'actions' }, btn));
    form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        fill(out);
        const role = roleOperator.checked ? 'operator' : 'account';
        const value = secret.input.value.trim();
        if (!value) {
            fill(out, errorBox({ message: role === 'operator' ? 'Enter the admin token.' : 'Enter a billing key.' }, 'signin-error'));
            return;
        }
        if (role === 'account' && value.startsWith('ms-')) {
            fill(out, errorBox({ message: 'This is a proxy key (ms-), which is for requests to /v1/. Sign in with a billing key (mk-).' }, 'signin-error'));
            return;
        }
        btn.disabled = true;
        try {
            await api.get(role === 'operator' ? '/admin/accounts' : '/api/balance', { secret: value });
            api.saveSession(role, value);
            secret.input.value = '';
            signedIn(role);
        } catch (e) {
            const msg = e.status === 404 && role === 'operator'
                ? 'The operator pages are off: this gateway has no admin token (server.admin_token).' : e.message;
            fill(out, errorBox({ message: msg }, 'signin-error'));
        } finally {
            btn.disabled = false;
        }
    });
    fill(view, form);
    secret.input.focus();
}
