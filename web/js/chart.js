// Hand-drawn SVG charts: vertical bars over days, horizontal bars over names. No library: a
// chart is a few rectangles and labels, and an SVG made with createElementNS needs no style
// attribute (the page's CSP forbids them) and scales with its viewBox. Each bar has a <title>
// (the value on hover), and the chart has a text label; the numbers are also in the tables
// beside the charts, for screen readers and for copying.

import { svg, h } from './dom.js';

/** The drawing's width: 640 units, or the screen's width on a phone, so that its text keeps
 * its size instead of being scaled down with the whole drawing. */
const width = () => Math.round(Math.min(640, Math.max(300, window.innerWidth - 56)));

/**
 * Vertical bars: points [{label, value, title}], one per x; the y axis starts at 0. opts:
 * {label (for assistive tech), format (value → text for the axis), testid, every (label every
 * nth x), height}.
 */
export function columns(points, { label, format = String, testid, every = 1, height = 180 } = {}) {
    const W = width(), H = height, padL = 52, padB = 24, padT = 10;
    const max = Math.max(0, ...points.map((p) => Number(p.value) || 0));
    const top = max > 0 ? max : 1;
    const plotW = W - padL - 8, plotH = H - padB - padT;
    const step = plotW / Math.max(1, points.length);
    const bw = Math.min(40, Math.max(1, step * 0.7));
    const bars = points.map((p, i) => {
        const v = Number(p.value) || 0;
        const bh = (v / top) * plotH;
        const x = padL + i * step + (step - bw) / 2;
        return svg('rect', { class: 'bar', x: x.toFixed(1), y: (padT + plotH - bh).toFixed(1), width: bw.toFixed(1),
            height: Math.max(v > 0 ? 1 : 0, bh).toFixed(1) }, svg('title', null, p.title || `${p.label}: ${format(v)}`));
    });
    // every nth label, and the last one unless it would sit on top of the one before it
    const last = points.length - 1;
    const shown = (i) => (i % every === 0 && (i === last || last - i >= every / 2)) || i === last;
    const xl = points.map((p, i) => (shown(i)
        ? svg('text', { class: 'axis', x: (padL + i * step + step / 2).toFixed(1), y: H - 6, 'text-anchor': 'middle' }, p.label)
        : null));
    const grid = [0, 0.5, 1].map((f) => {
        const y = (padT + plotH - f * plotH).toFixed(1);
        return [svg('line', { class: 'grid', x1: padL, x2: W - 8, y1: y, y2: y }),
            svg('text', { class: 'axis', x: padL - 6, y: Number(y) + 4, 'text-anchor': 'end' }, max > 0 ? format(top * f) : f === 0 ? '0' : '')];
    });
    return svg('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, testid,
        preserveAspectRatio: 'xMidYMid meet' }, svg('title', null, label), grid, bars, xl);
}

/** Horizontal bars: items [{label, value, text}] (text: the value as shown), longest first. */
export function bars(items, { label, testid } = {}) {
    const W = width(), row = 26, padL = Math.round(W * 0.3), padR = 80;
    const H = Math.max(row, items.length * row) + 4;
    const max = Math.max(0, ...items.map((it) => Number(it.value) || 0)) || 1;
    const rows = items.map((it, i) => {
        const v = Number(it.value) || 0;
        const w = Math.max(v > 0 ? 2 : 0, (v / max) * (W - padL - padR));
        const y = i * row + 4;
        const fit = Math.floor((padL - 12) / 7); // characters of about 7 units at 12 units high
        const name = it.label.length > fit ? `${it.label.slice(0, fit - 1)}…` : it.label;
        return svg('g', null,
            svg('text', { class: 'axis', x: padL - 8, y: y + 15, 'text-anchor': 'end' }, name),
            svg('rect', { class: 'bar', x: padL, y, width: w.toFixed(1), height: row - 8 },
                svg('title', null, `${it.label}: ${it.text}`)),
            svg('text', { class: 'axis', x: padL + w + 6, y: y + 15 }, it.text));
    });
    return svg('svg', { class: 'chart hbars', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label, testid },
        svg('title', null, label), rows);
}

/** A titled box for a chart. */
export const chartBox = (title, chart, testid) => h('figure', { class: 'chart-box', testid }, h('figcaption', null, title), chart);
