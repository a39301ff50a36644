// Small SVG charts for the usage pages (no chart library): stacked bars per
// day and horizontal bars for rankings. Every chart is an image with a text
// summary for screen readers and a table of the same numbers beside it.

import { html } from './lib.js';

/** Distinguishable in both themes; the legend and tables carry the names. */
export const PALETTE = ['#0b7a5e', '#2f6feb', '#b35c00', '#8250df', '#c2185b', '#0d8aa8', '#6b7d00', '#7a4a2a'];

export function colorFor(i) {
  return PALETTE[i % PALETTE.length];
}

export function formatNumber(n) {
  if (n == null) return '—';
  if (n >= 1e9) return (n / 1e9).toFixed(n >= 1e10 ? 0 : 1) + 'B';
  if (n >= 1e6) return (n / 1e6).toFixed(n >= 1e7 ? 0 : 1) + 'M';
  return n.toLocaleString('en');
}

export function formatCost(c) {
  if (!c) return '0';
  if (c < 0.01) return c.toFixed(4);
  return c.toFixed(2);
}

/**
 * Stacked columns: bars = [{label, parts: [{key, value}]}]; keys = the
 * series in legend order. `title` names the chart for assistive tech.
 */
export function StackedBars({ bars, keys, title, unit = 'tokens', height = 180 }) {
  const totals = bars.map((b) => b.parts.reduce((s, p) => s + p.value, 0));
  const max = Math.max(1, ...totals);
  const w = 640;
  const pad = { l: 44, r: 8, t: 8, b: 22 };
  const innerW = w - pad.l - pad.r;
  const innerH = height - pad.t - pad.b;
  const step = innerW / Math.max(1, bars.length);
  const barW = Math.max(2, step * 0.7);
  const ticks = [0, 0.5, 1].map((f) => ({ y: pad.t + innerH * (1 - f), v: Math.round(max * f) }));
  const labelEvery = Math.ceil(bars.length / 8);
  const peak = totals.indexOf(Math.max(...totals));
  const summary = `${title}: ${bars.length} days, ${formatNumber(totals.reduce((a, b) => a + b, 0))} ${unit} in all` +
    (totals[peak] > 0 ? `, most on ${bars[peak].label} (${formatNumber(totals[peak])})` : '');
  return html`<figure class="chart" style="margin:0">
    <svg viewBox=${`0 0 ${w} ${height}`} role="img" aria-label=${summary} style="width:100%;height:auto;display:block">
      ${ticks.map((t) => html`<g key=${'t' + t.y}>
        <line x1=${pad.l} x2=${w - pad.r} y1=${t.y} y2=${t.y} stroke="currentColor" stroke-opacity="0.12" />
        <text x=${pad.l - 6} y=${t.y + 4} text-anchor="end" font-size="11" fill="currentColor" fill-opacity="0.7">${formatNumber(t.v)}</text>
      </g>`)}
      ${bars.map((b, i) => {
        let y = pad.t + innerH;
        const x = pad.l + i * step + (step - barW) / 2;
        return html`<g key=${b.label}>
          <title>${b.label}: ${b.parts.filter((p) => p.value).map((p) => `${p.key} ${formatNumber(p.value)}`).join(', ') || 'nothing'}</title>
          ${b.parts.map((p) => {
            const h = (p.value / max) * innerH;
            y -= h;
            return h > 0 ? html`<rect key=${p.key} x=${x} y=${y} width=${barW} height=${h} fill=${colorFor(keys.indexOf(p.key))} />` : null;
          })}
          ${i % labelEvery === 0 && html`<text x=${x + barW / 2} y=${height - 6} text-anchor="middle" font-size="10.5" fill="currentColor" fill-opacity="0.7">${b.label.slice(5)}</text>`}
        </g>`;
      })}
    </svg>
    ${keys.length > 0 && html`<figcaption class="small muted" style="display:flex;flex-wrap:wrap;gap:6px 14px;margin-top:6px">
      ${keys.map((k, i) => html`<span key=${k} style="display:inline-flex;align-items:center;gap:6px">
        <span aria-hidden="true" style=${`width:10px;height:10px;border-radius:2px;background:${colorFor(i)};display:inline-block`}></span>${k}</span>`)}
    </figcaption>`}
  </figure>`;
}

/** Horizontal bars for a ranking: rows = [{label, value, note}]. */
export function BarList({ rows, title, format = formatNumber }) {
  const max = Math.max(1, ...rows.map((r) => r.value));
  return html`<ul class="barlist" aria-label=${title} style="list-style:none;margin:0;padding:0;display:grid;gap:8px">
    ${rows.map((r, i) => html`<li key=${r.label} style="display:grid;grid-template-columns:minmax(90px,180px) 1fr auto;gap:10px;align-items:center">
      <span style="overflow:hidden;text-overflow:ellipsis;white-space:nowrap" title=${r.label}>${r.label}</span>
      <span aria-hidden="true" style="background:var(--bg-hover);border-radius:4px;height:12px;overflow:hidden">
        <span style=${`display:block;height:100%;width:${(r.value / max) * 100}%;background:${colorFor(i)}`}></span></span>
      <span class="small">${format(r.value)}${r.note ? html` <span class="muted">${r.note}</span>` : ''}</span>
    </li>`)}
  </ul>`;
}

/** A labelled usage meter: used of limit (limit null = unlimited). */
export function QuotaMeter({ label, used, limit, unit }) {
  const pct = limit ? Math.min(100, (used / Math.max(1, limit)) * 100) : 0;
  const color = pct >= 90 ? 'var(--danger)' : pct >= 70 ? 'var(--warn)' : 'var(--accent)';
  return html`<div class="quota-meter" style="display:grid;gap:6px">
    <div style="display:flex;justify-content:space-between;gap:8px;font-size:14px">
      <strong>${label}</strong>
      <span>${limit == null ? html`${formatNumber(used)} ${unit} · <span class="muted">no daily limit</span>`
        : html`${formatNumber(used)} of ${formatNumber(limit)} ${unit} · <strong>${formatNumber(Math.max(0, limit - used))} left</strong>`}</span>
    </div>
    ${limit != null && html`<div role="progressbar" aria-label=${label + ' used today'} aria-valuemin="0" aria-valuemax=${limit} aria-valuenow=${Math.min(used, limit)}
      style="background:var(--bg-hover);border-radius:999px;height:10px;overflow:hidden">
      <div style=${`height:100%;width:${pct}%;background:${color}`}></div></div>`}
  </div>`;
}
