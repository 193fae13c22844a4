// Halyard dashboard building blocks: DOM helpers (text is never parsed as HTML), tables, badges,
// wave progress bars, the devices-per-version chart (inline SVG), device and site details.
'use strict';

window.HalyardWidgets = (() => {
  const SVG = 'http://www.w3.org/2000/svg';
  const keep = (c) => c !== null && c !== undefined && c !== false;

  function setAttrs(el, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (!keep(v)) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (k === 'style') Object.assign(el.style, v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
  }

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    setAttrs(el, attrs);
    el.append(...children.flat(Infinity).filter(keep));
    return el;
  }

  function s(tag, attrs, ...children) {
    const el = document.createElementNS(SVG, tag);
    setAttrs(el, attrs);
    el.append(...children.flat(Infinity).filter(keep));
    return el;
  }

  // Replaces a section's children, keeping keyboard focus on the element with the same data-key.
  function fill(el, ...children) {
    if (!el) return;
    const active = document.activeElement;
    const key = active && el.contains(active) ? active.dataset.key : null;
    el.replaceChildren(...children.flat(Infinity).filter(keep));
    if (key) {
      const again = el.querySelector(`[data-key="${CSS.escape(key)}"]`);
      if (again) again.focus({ preventScroll: true });
    }
  }

  const fmtTime = (secs) => (secs ? new Date(secs * 1000).toLocaleString() : '–');
  function ago(secs) {
    if (!secs) return 'never';
    const d = Math.max(0, Date.now() / 1000 - secs);
    if (d < 60) return `${Math.round(d)} s ago`;
    if (d < 3600) return `${Math.round(d / 60)} min ago`;
    if (d < 86400) return `${Math.round(d / 3600)} h ago`;
    return `${Math.round(d / 86400)} d ago`;
  }

  function table(headers, rows, name) {
    return h('div', { class: 'table-wrap', role: 'region', 'aria-label': name, tabindex: '0' },
      h('table', { 'data-table': name },
        h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
        h('tbody', {}, rows.map((r) => h('tr', {}, r.map((c) => h('td', {}, c)))))));
  }

  function badge(text, cls) {
    return h('span', { class: `badge ${cls || ''}`, 'data-status': text }, text.replace(/_/g, ' '));
  }

  // ---- fleet ---------------------------------------------------------------------------------
  function breakdown(heading, group, counts, total, selectorOf) {
    const entries = Object.entries(counts).sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
    return h('section', { class: 'panel breakdown', 'data-group': group, 'aria-label': heading },
      h('h2', {}, heading),
      h('ul', {}, entries.map(([k, n]) => {
        const sel = selectorOf(k);
        const label = sel ? h('a', { href: `#/fleet?selector=${encodeURIComponent(sel)}` }, k) : k;
        const bar = h('span', { class: 'fill' });
        bar.style.width = `${total ? (100 * n) / total : 0}%`;
        return h('li', { 'data-key': k, 'data-count': n },
          h('span', { class: 'name' }, label), h('span', { class: 'n' }, String(n)),
          h('span', { class: 'track', 'aria-hidden': 'true' }, bar));
      })));
  }

  function deviceLink(id) {
    return h('a', { href: `#/devices/${encodeURIComponent(id)}`, class: 'mono' }, id);
  }

  function deviceList(items, total) {
    return h('div', {}, h('ul', { class: 'plain' }, items.map(([id, text]) =>
      h('li', { 'data-device': id }, deviceLink(id), h('span', { class: 'quiet' }, ` ${text}`)))),
    total > items.length ? h('p', { class: 'quiet' }, `and ${total - items.length} more`) : null);
  }

  function activeVersion(d) {
    const r = d.report;
    if (!r) return null;
    return (r.active === 'b' ? r.slot_b : r.slot_a).version;
  }

  const stateName = (d) => (d.report ? d.report.state.state : 'unknown');

  function health(d) {
    const hs = d.report && d.report.health;
    if (!hs) return h('span', { class: 'quiet' }, '–');
    return hs.healthy ? badge('healthy') : badge('unhealthy');
  }

  function deviceTable(devices) {
    const LIMIT = 500;
    const rows = devices.slice(0, LIMIT).map((d) => [
      deviceLink(d.id), d.site || '–', d.hardware_class, activeVersion(d) || '–', badge(stateName(d)),
      health(d), d.online ? badge('online') : badge('offline'), ago(d.last_seen),
    ]);
    return h('div', {},
      h('p', { class: 'quiet', 'data-matches': devices.length }, `${devices.length} matching device${devices.length === 1 ? '' : 's'}` +
        (devices.length > LIMIT ? ` (first ${LIMIT} shown)` : '')),
      table(['Device', 'Site', 'Hardware', 'Version', 'State', 'Health', 'Presence', 'Last seen'], rows, 'devices'));
  }

  function dl(pairs) {
    return h('dl', { class: 'facts' }, pairs.filter((p) => keep(p[1])).map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
  }

  function deviceDetail({ device: d, events, desired }) {
    const r = d.report;
    const st = r ? r.state : null;
    const slot = (name, x) => x ? `${x.version || 'empty'}${x.bootable ? '' : ' (not bootable)'}${x.successful ? '' : ' (not confirmed)'}` +
      (r.active === name ? ' · active' : '') : '–';
    const failing = r && r.health && r.health.failing.length ? r.health.failing.join('; ') : null;
    return [
      h('div', { class: 'grid two' },
        h('section', { class: 'panel' }, h('h2', {}, 'Device'), dl([
          ['Site', d.site || '–'], ['Tags', d.tags.length ? d.tags.join(', ') : '–'], ['Product', d.product],
          ['Hardware class', d.hardware_class], ['Presence', d.online ? badge('online') : badge('offline')],
          ['Last seen', `${fmtTime(d.last_seen)} (${ago(d.last_seen)})`], ['Enrolled', fmtTime(d.enrolled_at)],
          ['Agent', r ? r.agent_version : '–']])),
        h('section', { class: 'panel' }, h('h2', {}, 'State'), dl([
          ['State', st ? badge(st.state) : '–'], ['Version', activeVersion(d) || '–'],
          ['Target', st && st.version ? st.version : null], ['Reason', st && st.reason ? st.reason : null],
          ['Health', health(d)], ['Failing checks', failing], ['Last error', r && r.last_error],
          ['Slot A', slot('a', r && r.slot_a)], ['Slot B', slot('b', r && r.slot_b)],
          ['Desired by', desired ? (desired.rollout || 'operator') : '–']]))),
      h('section', { class: 'panel', 'aria-labelledby': 'hist-title' }, h('h2', { id: 'hist-title' }, 'History'),
        events.length ? table(['When', 'From', 'To', 'Rollout', 'Reason'], events.map((e) => [
          fmtTime(e.at), badge(e.from), badge(e.to),
          e.rollout ? h('a', { href: `#/rollouts/${encodeURIComponent(e.rollout)}` }, e.rollout) : '–', e.reason || '',
        ]), 'history') : h('p', { class: 'quiet' }, 'No events yet.')),
    ];
  }

  // ---- chart ---------------------------------------------------------------------------------
  const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];

  function versionOrder(a, b) {
    const pa = a.split(/[.+-]/).map(Number);
    const pb = b.split(/[.+-]/).map(Number);
    for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
      const x = pa[i] || 0;
      const y = pb[i] || 0;
      if (Number.isNaN(x) || Number.isNaN(y)) return a.localeCompare(b);
      if (x !== y) return x - y;
    }
    return a.localeCompare(b);
  }

  function versionChart(samples, width) {
    if (!samples.length) return h('p', { class: 'quiet' }, 'Collecting samples…');
    const pts = [...samples, { t: Date.now(), v: samples[samples.length - 1].v }];
    const versions = [...new Set(pts.flatMap((p) => Object.keys(p.v)))].sort(versionOrder);
    const t0 = Math.min(pts[0].t, Date.now() - 60000);
    const t1 = Date.now();
    const max = Math.max(1, ...pts.flatMap((p) => Object.values(p.v)));
    const [W, H, L, R, T, B] = [Math.max(300, Math.round(width || 640)), 220, 40, 12, 10, 24];
    const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
    const y = (n) => T + (1 - n / max) * (H - T - B);
    const lines = versions.map((v, i) => {
      let d = '';
      pts.forEach((p, j) => {
        const n = p.v[v] || 0;
        d += j === 0 ? `M${x(p.t).toFixed(1)},${y(n).toFixed(1)}` : `H${x(p.t).toFixed(1)}V${y(n).toFixed(1)}`;
      });
      return s('path', { d, class: 'series', stroke: PALETTE[i % PALETTE.length], 'data-version': v });
    });
    const ticks = [0, Math.round(max / 2), max].filter((n, i, a) => a.indexOf(n) === i);
    const clock = (t) => new Date(t).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const latest = pts[pts.length - 1].v;
    const summary = versions.map((v) => `${v}: ${latest[v] || 0}`).join(', ');
    const svg = s('svg', {
      viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img',
      'aria-label': `Devices per version from ${clock(t0)} to now. Now ${summary}.`,
    },
    ticks.map((n) => [s('line', { x1: L, x2: W - R, y1: y(n), y2: y(n), class: 'grid-line' }),
      s('text', { x: L - 6, y: y(n) + 4, 'text-anchor': 'end' }, String(n))]),
    s('text', { x: L, y: H - 6 }, clock(t0)), s('text', { x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'),
    lines);
    const legend = h('ul', { class: 'legend' }, versions.map((v, i) => {
      const sw = h('span', { class: 'swatch', 'aria-hidden': 'true' });
      sw.style.background = PALETTE[i % PALETTE.length];
      return h('li', {}, sw, `${v} `, h('strong', {}, String(latest[v] || 0)));
    }));
    return [svg, legend, h('p', { class: 'hint' },
      'Sampled by this browser tab from the live updates (the server keeps no history of counts); ',
      'the samples survive a reload but not closing the tab.')];
  }

  // ---- rollouts ------------------------------------------------------------------------------
  const SEGMENTS = ['healthy', 'soaking', 'updating', 'pending', 'failed', 'reverted'];

  function waveCounts(st, i) {
    const w = st.waves[i];
    const c = Object.fromEntries(SEGMENTS.map((k) => [k, 0]));
    for (const id of w.devices) {
      const r = st.devices[id];
      if (!r) c.pending++;
      else if (r.failure) c.failed++;
      else if (r.exit) c.reverted++;
      else if (r.committed_at) c[w.completed_at ? 'healthy' : 'soaking']++;
      else if (r.assigned_at) c.updating++;
      else c.pending++;
    }
    return c;
  }

  function allowed(spec, wave, i) {
    const b = spec && spec.policy && spec.policy.waves[i] ? spec.policy.waves[i].failure_budget : null;
    let n = 0;
    if (b && b.count !== undefined) n = b.count;
    else if (b && b.percent !== undefined) n = Math.floor((b.percent * wave.devices.length) / 100);
    return n + (wave.forgiven || 0);
  }

  function waveStatus(st, w, i, c) {
    if (c.failed && ['reverting', 'reverted', 'paused'].includes(st.status.status) && i === st.wave_index) return 'failed';
    if (w.completed_at) return 'soaked';
    if (w.soak_started_at) return 'soaking';
    if (w.started_at) return i === st.wave_index && st.status.status !== 'running' ? st.status.status : 'updating';
    return 'waiting';
  }

  function bar(c, total) {
    const el = h('div', { class: 'bar', 'aria-hidden': 'true' });
    for (const k of SEGMENTS) {
      if (!c[k]) continue;
      const seg = h('span', { class: `seg ${k}`, title: `${k}: ${c[k]}` });
      seg.style.flexGrow = String(c[k]);
      el.append(seg);
    }
    if (!total) el.append(h('span', { class: 'seg empty' }));
    return el;
  }

  function waves(r) {
    const st = r.state;
    if (!st || !st.planned) return h('p', { class: 'quiet' }, 'The engine has not planned the waves yet.');
    return h('ol', { class: 'waves' }, st.waves.map((w, i) => {
      const c = waveCounts(st, i);
      const budget = allowed(r.spec, w, i);
      const status = waveStatus(st, w, i, c);
      const label = `Wave ${i + 1}${i === 0 ? ' (canary)' : ''}: ${w.devices.length} devices, ` +
        SEGMENTS.filter((k) => c[k]).map((k) => `${c[k]} ${k}`).join(', ');
      const over = c.failed > budget;
      return h('li', {
        class: `wave ${i === st.wave_index ? 'current' : ''}`, 'data-wave': i + 1, 'data-status': status,
        ...Object.fromEntries(SEGMENTS.map((k) => [`data-${k}`, c[k]])),
      },
      h('div', { class: 'wave-head' }, h('strong', {}, `Wave ${i + 1}${i === 0 ? ' (canary)' : ''}`),
        badge(status, 'wave-status'), h('span', { class: 'quiet' }, `${w.devices.length} devices`)),
      h('div', { role: 'img', 'aria-label': label }, bar(c, w.devices.length)),
      h('p', { class: 'legend-line' }, SEGMENTS.filter((k) => c[k]).map((k) =>
        h('span', { class: `key ${k}` }, h('span', { class: `dot ${k}`, 'aria-hidden': 'true' }), `${c[k]} ${k}`))),
      h('p', { class: `budget ${over ? 'over' : ''}`, 'data-budget-used': c.failed, 'data-budget': budget },
        `Failures: ${c.failed} · budget ${budget}${over ? ' — breached' : ''}`));
    }));
  }

  function miniProgress(r) {
    const st = r.state;
    if (!st || !st.planned || !st.waves.length) return h('span', { class: 'quiet' }, 'planning');
    const c = Object.fromEntries(SEGMENTS.map((k) => [k, 0]));
    let total = 0;
    st.waves.forEach((w, i) => {
      const wc = waveCounts(st, i);
      SEGMENTS.forEach((k) => { c[k] += wc[k]; });
      total += w.devices.length;
    });
    return h('div', { class: 'mini' },
      h('div', { role: 'img', 'aria-label': `${c.healthy + c.soaking} of ${total} updated, ${c.failed} failed` }, bar(c, total)),
      h('span', { class: 'quiet' }, `wave ${Math.min(st.wave_index + 1, st.waves.length)}/${st.waves.length}`));
  }

  const COMMANDS = {
    running: ['pause', 'abort', 'rollback'],
    paused: ['resume', 'abort', 'rollback'],
    completed: ['rollback'],
    aborted: ['rollback'],
  };
  const CONFIRM = {
    abort: 'Abort this rollout? Devices that already have the release keep it.',
    rollback: 'Roll back this rollout? Every device it touched goes back to its previous release.',
  };

  function rolloutActions(r, note, actions) {
    const msg = note ? h('p', { class: note.ok ? 'ok' : 'error', role: note.ok ? 'status' : 'alert' }, note.message) : null;
    if (!actions.canOperate()) {
      return [h('p', { class: 'quiet read-only' }, 'Read-only: this token is a viewer token.'), msg];
    }
    const cmds = COMMANDS[r.status] || [];
    return h('div', { class: 'actions', role: 'group', 'aria-label': 'Rollout commands' },
      cmds.map((cmd) => h('button', {
        type: 'button', class: cmd === 'pause' || cmd === 'resume' ? '' : 'danger', 'data-command': cmd, 'data-key': `cmd-${cmd}`,
        onclick: () => { if (!CONFIRM[cmd] || window.confirm(CONFIRM[cmd])) actions.command(r.id, cmd); },
      }, cmd[0].toUpperCase() + cmd.slice(1))),
      cmds.length ? null : h('span', { class: 'quiet' }, `No commands apply to a ${r.status} rollout.`), msg);
  }

  // ---- sites ---------------------------------------------------------------------------------
  const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

  function localNow(tz) {
    const f = new Intl.DateTimeFormat('en-US', { timeZone: tz, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    const parts = Object.fromEntries(f.formatToParts(new Date()).map((p) => [p.type, p.value]));
    const day = DAYS.indexOf(parts.weekday.slice(0, 3).toLowerCase());
    return { day, minutes: Number(parts.hour) * 60 + Number(parts.minute), text: `${parts.weekday} ${parts.hour}:${parts.minute}` };
  }

  const toMin = (hhmm) => { const [a, b] = hhmm.split(':').map(Number); return a * 60 + b; };

  // Same rule as the engine: a window starts on a listed day (none = every day) at `start` and ends
  // at `end` that day, or the next day when end <= start; a site without windows is always open.
  function windowOpen(windows, now) {
    if (!windows.length) return true;
    const yesterday = (now.day + 6) % 7;
    return windows.some((w) => {
      const days = (w.days || []).map((d) => d.slice(0, 3).toLowerCase());
      const on = (d) => !days.length || days.includes(DAYS[d]);
      const [a, b] = [toMin(w.start), toMin(w.end)];
      if (b > a) return on(now.day) && now.minutes >= a && now.minutes < b;
      return (on(now.day) && now.minutes >= a) || (on(yesterday) && now.minutes < b);
    });
  }

  function siteCard(site, devices) {
    let now = null;
    try {
      now = localNow(site.tz);
    } catch (_) {
      now = null;
    }
    const open = now ? windowOpen(site.windows, now) : null;
    const windows = site.windows.length
      ? site.windows.map((w) => `${w.days && w.days.length ? w.days.join(',') : 'daily'} ${w.start}–${w.end}`).join('; ')
      : 'none (always open)';
    return h('section', { class: 'panel site', 'data-site': site.name, 'data-open': String(open), 'aria-label': site.name },
      h('h2', {}, site.name),
      h('p', {}, open === null ? badge('unknown zone') : badge(open ? 'window open' : 'window closed')),
      dl([['Local time', now ? `${now.text} (${site.tz})` : `unknown time zone ${site.tz}`], ['Windows', windows],
        ['Max concurrent', site.max_concurrent === null || site.max_concurrent === undefined ? 'no limit' : String(site.max_concurrent)],
        ['Devices', String(devices)], ['', h('a', { href: `#/fleet?selector=${encodeURIComponent(`site=${site.name}`)}` }, 'Show devices')]]));
  }

  return {
    h, s, fill, fmtTime, ago, table, badge, breakdown, deviceList, deviceTable, deviceDetail,
    versionChart, waves, miniProgress, rolloutActions, siteCard, windowOpen, waveCounts,
  };
})();
