// The dashboard's shell: sign-in, the navigation of the signed-in role, and the page router.
//
// Pages are addressed by the URL's fragment (#/usage), which never leaves the browser, so the
// gateway serves one page and the dashboard's state stays out of server logs. An account owner
// (billing key) sees the account's pages; an operator (admin token) the operator's. A page is
// rendered into a fresh element, so a slow answer for a page the user has already left lands in
// an element that is no longer shown.

import * as api from './api.js';
import { h, fill } from './dom.js';
import * as signin from './pages/signin.js';
import * as overview from './pages/overview.js';
import * as keys from './pages/keys.js';
import * as usage from './pages/usage.js';
import * as transactions from './pages/transactions.js';
import * as settings from './pages/settings.js';
import * as accounts from './pages/accounts.js';

const PAGES = {
    account: [
        { path: 'overview', title: 'Overview', render: overview.render },
        { path: 'keys', title: 'API keys', render: (el, ctx) => keys.render(el, ctx, 'proxy') },
        { path: 'billing-keys', title: 'Billing keys', render: (el, ctx) => keys.render(el, ctx, 'billing') },
        { path: 'usage', title: 'Usage', render: usage.render },
        { path: 'transactions', title: 'Transactions', render: transactions.render },
        { path: 'settings', title: 'Notifications', render: settings.render },
    ],
    operator: [
        { path: 'accounts', title: 'Accounts', render: accounts.render },
    ],
};

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const who = document.getElementById('who');
const signoutBtn = document.getElementById('signout');
const notice = document.getElementById('notice');

let noticeTimer = 0;
/** A passing message for the user ("Key created."), read out by screen readers. */
export function notify(text) {
    notice.textContent = text;
    notice.classList.add('shown');
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => notice.classList.remove('shown'), 5000);
}

function currentPath() {
    const m = /^#\/([a-z-]+)/.exec(location.hash);
    return m ? m[1] : '';
}

function go(path) {
    if (currentPath() === path) route();
    else location.hash = `#/${path}`;
}

let navRole = null;
/** The links of the signed-in role (made again only when the role changes, so that a link
 * keeps its focus and identity across pages) with the current page marked. */
function showNav(s) {
    const role = s ? s.role : null;
    if (role !== navRole) {
        navRole = role;
        fill(nav, (role ? PAGES[role] : []).map((p) => h('a', { href: `#/${p.path}`, testid: `nav-${p.path}` }, p.title)));
    }
    const here = `#/${currentPath()}`;
    for (const a of nav.querySelectorAll('a')) {
        if (a.getAttribute('href') === here) a.setAttribute('aria-current', 'page');
        else a.removeAttribute('aria-current');
    }
    nav.hidden = !s;
    signoutBtn.hidden = !s;
    who.hidden = !s;
    who.textContent = !s ? '' : s.role === 'operator' ? 'Operator' : `Account · ${s.secret.slice(0, 8)}…`;
}

function route(message) {
    const s = api.session();
    showNav(s);
    const view = h('div', { class: 'view' });
    fill(main, view);
    if (!s) {
        document.title = 'Sign in · ModelSwitch';
        signin.render(view, { message, signedIn: (role) => go(role === 'operator' ? 'accounts' : 'overview') });
        return;
    }
    const pages = PAGES[s.role];
    const page = pages.find((p) => p.path === currentPath());
    if (!page) {
        history.replaceState(null, '', `#/${pages[0].path}`);
        route();
        return;
    }
    document.title = `${page.title} · ModelSwitch`;
    const ctx = { session: s, notify, go, reload: () => route() };
    Promise.resolve(page.render(view, ctx)).catch((e) => {
        if (api.session()) view.append(h('p', { class: 'error', role: 'alert', testid: 'error' }, e.message || String(e)));
    });
}

api.onSessionEnd((message) => route(`You were signed out: ${message}`));
signoutBtn.addEventListener('click', () => {
    api.signOut();
    history.replaceState(null, '', '#/');
    route('You are signed out.');
});
document.querySelector('.skip').addEventListener('click', (ev) => {
    ev.preventDefault();
    main.focus();
});
window.addEventListener('hashchange', () => {
    route();
    main.focus({ preventScroll: true });
});
route();
