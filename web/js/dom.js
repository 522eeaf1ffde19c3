// Building the page. Everything that comes from the API is inserted as text: h() makes elements
// with createElement and text nodes, never HTML, so a key named "<img src=x onerror=...>" shows
// as those characters. (The page's Content-Security-Policy also demands Trusted Types, so a
// string handed to innerHTML would throw rather than run.)

const SVG_NS = 'http://www.w3.org/2000/svg';

function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
        if (v === undefined || v === null || v === false) continue;
        if (k !== 'on' && (/^on/i.test(k) || k === 'style')) throw new Error(`h(): no ${k} attribute (CSP)`);
        if (k === 'on') {
            for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        } else if (k === 'testid') {
            el.setAttribute('data-testid', v);
        } else if (k === 'text') {
            el.textContent = String(v);
        } else if (k === 'class') {
            el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
        } else if (k === 'value' && el instanceof HTMLInputElement) {
            el.defaultValue = String(v); // what form.reset() goes back to
        } else if (k === 'value' || k === 'checked' || k === 'disabled' || k === 'selected') {
            el[k] = v;
        } else {
            el.setAttribute(k, v === true ? '' : String(v));
        }
    }
}

function append(el, children) {
    for (const c of children.flat(Infinity)) {
        if (c === null || c === undefined || c === false) continue;
        el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
}

/** An HTML element: h('td', {class: 'num', title: exact}, text, child, ...). */
export function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
}

/** An SVG element, the same way. */
export function svg(tag, attrs, ...children) {
    const el = document.createElementNS(SVG_NS, tag);
    setAttrs(el, attrs);
    append(el, children);
    return el;
}

/** Replaces el's children. */
export function fill(el, ...children) {
    el.replaceChildren();
    append(el, children);
    return el;
}

let nextId = 0;
/** A labelled form field: {label, input attrs, hint}. Returns the wrapper; .input is the input. */
export function field(label, attrs = {}, { hint, tag = 'input', options } = {}) {
    const id = `f${++nextId}`;
    const input = h(tag, { id, ...attrs });
    if (options) append(input, options.map((o) => h('option', { value: o.value, selected: o.selected }, o.label)));
    const hintEl = hint ? h('small', { id: `${id}-hint`, class: 'hint' }, hint) : null;
    if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
    const wrap = h('div', { class: 'field' }, h('label', { for: id }, label), input, hintEl);
    wrap.input = input;
    return wrap;
}

/** A table: columns [{label, class}], rows of cells (a cell is a node, text, or {text, title,
 * class}). Wrapped so that a wide table scrolls on its own instead of the page. */
export function table(columns, rows, { testid, caption, rowTestid } = {}) {
    const head = h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)));
    const body = rows.map((cells, i) => h('tr', { testid: rowTestid?.(i) },
        cells.map((cell, j) => {
            const cls = columns[j]?.class;
            if (cell instanceof Node || typeof cell !== 'object' || cell === null) {
                return h('td', { class: cls }, cell ?? '');
            }
            return h('td', { class: [cls, cell.class], title: cell.title, testid: cell.testid }, cell.text);
        })));
    return h('div', { class: 'table-wrap', tabindex: 0, role: 'region', 'aria-label': caption || 'table' },
        h('table', { testid }, caption ? h('caption', null, caption) : null,
            h('thead', null, head), h('tbody', null, body)));
}

/** What a section shows while it loads. */
export const loading = (what = 'Loading…') => h('p', { class: 'loading', testid: 'loading', role: 'status' }, what);

/** What a list shows when it has nothing. */
export const empty = (text, testid = 'empty') => h('p', { class: 'empty', testid }, text);

/** An API error in words (the contract's message), for a section or a form. */
export function errorBox(err, testid = 'error') {
    const msg = err && err.message ? err.message : String(err);
    return h('p', { class: 'error', role: 'alert', testid }, msg);
}

/**
 * A modal dialog: title, body nodes, and buttons [{label, class, testid, action}]. action(dialog)
 * may be async; while it runs the buttons are disabled; an error it throws is shown in the
 * dialog (the contract's message) and the dialog stays open; a resolved action closes it unless
 * it returns false. Escape and "Cancel" close it. Resolves when it is closed.
 */
export function dialog(title, body, buttons, { testid = 'dialog' } = {}) {
    return new Promise((resolve) => {
        const errBox = h('div', { class: 'dialog-error' });
        const btns = buttons.map((b) => h('button', { type: b.submit ? 'submit' : 'button', class: b.class, testid: b.testid }, b.label));
        const form = h('form', { method: 'dialog', novalidate: true },
            h('h2', { id: `${testid}-title` }, title), body, errBox, h('div', { class: 'actions' }, btns));
        const dlg = h('dialog', { testid, 'aria-labelledby': `${testid}-title` }, form);
        const run = async (b) => {
            fill(errBox);
            if (!b.action) return dlg.close();
            btns.forEach((x) => { x.disabled = true; });
            try {
                if ((await b.action(dlg)) !== false) dlg.close();
            } catch (e) {
                fill(errBox, errorBox(e, `${testid}-error`));
            } finally {
                btns.forEach((x) => { x.disabled = false; });
            }
        };
        buttons.forEach((b, i) => btns[i].addEventListener('click', (ev) => { ev.preventDefault(); run(b); }));
        form.addEventListener('submit', (ev) => {
            ev.preventDefault();
            const b = buttons.find((x) => x.submit);
            if (b) run(b);
        });
        dlg.addEventListener('close', () => { dlg.remove(); resolve(dlg.returnValue); });
        document.body.append(dlg);
        dlg.showModal();
    });
}

/** Puts text on the clipboard; falls back to a selected field and execCommand where the
 * Clipboard API is missing (plain http to a non-local address is no secure context). */
export async function copyText(text, fallbackInput) {
    try {
        await navigator.clipboard.writeText(text);
        return true;
    } catch {
        if (!fallbackInput) return false;
        fallbackInput.focus();
        fallbackInput.select();
        try {
            return document.execCommand('copy');
        } catch {
            return false;
        }
    }
}

/**
 * The dialog that shows a new secret once: the key in a read-only field with a copy button, and
 * that it will not be shown again.
 */
export function showSecret(title, secret, what) {
    const input = h('input', { type: 'text', readonly: true, value: secret, class: 'secret', testid: 'new-secret',
        'aria-label': `The new ${what}`, spellcheck: 'false', autocomplete: 'off' });
    const status = h('span', { class: 'copied', role: 'status', testid: 'copy-status' });
    const copy = h('button', { type: 'button', testid: 'copy-secret' }, 'Copy');
    copy.addEventListener('click', async () => {
        const ok = await copyText(secret, input);
        status.textContent = ok ? 'Copied.' : 'Select the key and copy it by hand.';
    });
    return dialog(title, [
        h('p', { class: 'warn' }, h('strong', null, 'Copy it now: you will not see it again. '),
            `Only a hash of the ${what} is kept, so nobody can show it to you later.`),
        h('div', { class: 'secret-row' }, input, copy), status,
    ], [{ label: 'I have copied it', class: 'primary', testid: 'secret-done' }], { testid: 'secret-dialog' });
}

/** Asks to confirm something that cannot be undone; resolves after action ran, or false. */
export function confirmDialog(title, text, label, action) {
    return dialog(title, [h('p', null, text)], [
        { label: 'Cancel', class: 'secondary', testid: 'confirm-cancel' },
        { label, class: 'danger', testid: 'confirm-ok', action },
    ], { testid: 'confirm-dialog' });
}
