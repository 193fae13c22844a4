// Halyard dashboard views: each page is a skeleton built once per route (`mount`) whose sections are
// refilled on every change (`update`), so focus, the search box and scroll position survive live
// updates. Building blocks (DOM helpers, bars, chart, tables) are in widgets.js.
'use strict';

window.HalyardViews = (() => {
  const W = window.HalyardWidgets;
  const { h, fill, fmtTime, ago } = W;

  function errorBox(e) {
    if (!e) return null;
    const text = e.status === 403 ? `Not allowed with this token: ${e.message}` : `Error: ${e.message}`;
    return h('p', { class: 'error', role: 'alert' }, text);
  }

  // ---- skeletons ---------------------------------------------------------------------------
  function title(text) {
    return h('h1', { tabindex: '-1' }, text);
  }

  function panel(heading, id, ...extra) {
    return h('section', { class: 'panel', 'aria-label': heading }, h('h2', {}, heading), ...extra, h('div', { id }));
  }

  function mountFleet(route, actions) {
    const input = h('input', {
      id: 'selector', name: 'selector', type: 'search', value: route.selector || '', spellcheck: 'false',
      placeholder: 'hw=pos-x86,site=store-042,state=committed', 'aria-describedby': 'selector-hint',
    });
    const form = h('form', {
      role: 'search', class: 'search',
      onsubmit: (ev) => { ev.preventDefault(); actions.search(input.value.trim()); },
    }, h('label', { for: 'selector' }, 'Selector'), input, h('button', { type: 'submit' }, 'Search'),
    h('button', { type: 'button', class: 'quiet', onclick: () => actions.search('') }, 'Clear'));
    return h('section', { class: 'page', 'data-page': 'fleet' },
      title('Fleet'),
      h('div', { id: 'f-error' }),
      h('div', { id: 'f-cards', class: 'cards' }),
      h('div', { id: 'f-breakdowns', class: 'grid four' }),
      panel('Devices per version over time', 'f-chart'),
      h('div', { class: 'grid two' }, panel('Offline devices', 'f-offline'), panel('Rolled back', 'f-rolled')),
      h('section', { class: 'panel', 'aria-labelledby': 'devices-title' },
        h('h2', { id: 'devices-title' }, 'Devices'), form,
        h('p', { id: 'selector-hint', class: 'hint' },
          'Keys: hw, site, tag, version, state, id. Terms separated by commas must all match; ',
          'a repeated key means either (site=a,site=b).'),
        h('div', { id: 'f-table' })));
  }

  function mount(route, a) {
    switch (route.page) {
      case 'fleet':
        return mountFleet(route, a);
      case 'device':
        return h('section', { class: 'page' }, h('p', {}, h('a', { href: '#/fleet' }, '← Fleet')),
          title(`Device ${route.id}`), h('div', { id: 'd-body' }));
      case 'rollouts':
        return h('section', { class: 'page' }, title('Rollouts'), h('div', { id: 'r-list' }));
      case 'rollout':
        return h('section', { class: 'page', 'data-rollout': route.id },
          h('p', {}, h('a', { href: '#/rollouts' }, '← All rollouts')), title(`Rollout ${route.id}`),
          h('div', { id: 'ro-head' }), h('div', { id: 'ro-actions' }),
          h('section', { class: 'panel', 'aria-labelledby': 'waves-title' },
            h('h2', { id: 'waves-title' }, 'Waves'), h('div', { id: 'ro-waves' })),
          h('section', { class: 'panel', 'aria-labelledby': 'log-title' },
            h('h2', { id: 'log-title' }, 'Decision log'),
            h('ol', { id: 'ro-log', class: 'log', 'aria-live': 'polite', reversed: true })));
      default:
        return h('section', { class: 'page' }, title('Sites'), h('div', { id: 's-body' }));
    }
  }

  // ---- fleet ---------------------------------------------------------------------------------
  function card(label, value, key, tone) {
    return h('div', { class: `card ${tone || ''}`, 'data-count': key },
      h('span', { class: 'value' }, String(value)), h('span', { class: 'label' }, label));
  }

  function updateFleet(state) {
    const f = state.fleet;
    fill(document.getElementById('f-error'), errorBox(state.errors.fleet || state.errors.devices));
    if (!f) return;
    const all = state.allDevices || [];
    const offline = all.filter((d) => !d.online);
    fill(document.getElementById('f-cards'),
      card('devices', f.devices, 'devices'), card('online', f.online, 'online', 'good'),
      card('offline', f.devices - f.online, 'offline', f.devices - f.online ? 'warn' : ''),
      card('rolled back', f.rolled_back.length, 'rolled_back', f.rolled_back.length ? 'bad' : ''),
      card('versions', Object.keys(f.by_version).length, 'versions'));
    fill(document.getElementById('f-breakdowns'),
      W.breakdown('By version', 'version', f.by_version, f.devices, (k) => `version=${k}`),
      W.breakdown('By state', 'state', f.by_state, f.devices, (k) => `state=${k}`),
      W.breakdown('By site', 'site', f.by_site, f.devices, (k) => (k === 'none' ? null : `site=${k}`)),
      W.breakdown('By hardware class', 'hw', f.by_hardware_class, f.devices, (k) => `hw=${k}`));
    const chart = document.getElementById('f-chart');
    fill(chart, W.versionChart(state.samples, chart && chart.clientWidth));
    fill(document.getElementById('f-offline'), offline.length
      ? W.deviceList(offline.slice(0, 50).map((d) => [d.id, `last seen ${ago(d.last_seen)}`]), offline.length)
      : h('p', { class: 'quiet' }, state.allDevices ? 'Every device is online.' : 'Loading…'));
    fill(document.getElementById('f-rolled'), f.rolled_back.length
      ? W.deviceList(f.rolled_back.map((r) => [r.device, `${r.version}: ${r.reason}`]), f.rolled_back.length)
      : h('p', { class: 'quiet' }, 'No device has rolled back.'));
    fill(document.getElementById('f-table'), state.devices ? W.deviceTable(state.devices) : h('p', {}, 'Loading…'));
  }

  function updateDevice(state) {
    const id = state.route.id;
    const d = state.device[id];
    const body = document.getElementById('d-body');
    if (!d) return fill(body, errorBox(state.errors.device) || h('p', {}, 'Loading…'));
    fill(body, errorBox(state.errors.device), W.deviceDetail(d));
  }

  // ---- rollouts ------------------------------------------------------------------------------
  function updateRollouts(state) {
    const list = state.rollouts;
    const el = document.getElementById('r-list');
    if (!list) return fill(el, errorBox(state.errors.rollouts) || h('p', {}, 'Loading…'));
    if (!list.length) {
      return fill(el, h('p', {}, 'No rollouts yet. Start one with ',
        h('code', {}, 'halyardctl rollouts create policy.toml'), '.'));
    }
    const sorted = [...list].sort((a, b) => b.created_at - a.created_at);
    fill(el, errorBox(state.errors.rollouts), W.table(['Rollout', 'Version', 'Selector', 'Status', 'Progress', 'Updated'],
      sorted.map((r) => [
        h('a', { href: `#/rollouts/${encodeURIComponent(r.id)}`, 'data-rollout-link': r.id }, r.id),
        r.version, h('code', {}, r.selector || '(all)'), W.badge(r.status), W.miniProgress(r),
        ago(r.updated_at),
      ]), 'rollouts'));
  }

  function updateRollout(state, actions) {
    const id = state.route.id;
    const d = state.rollout[id];
    const head = document.getElementById('ro-head');
    if (!d) {
      const e = state.errors.rollout;
      return fill(head, e && e.status === 404
        ? h('p', { class: 'error', role: 'alert' }, `No rollout ${id} (yet): this page shows it when it starts.`)
        : errorBox(e) || h('p', {}, 'Loading…'));
    }
    const r = d.rollout;
    const st = r.state || {};
    const reason = st.status && st.status.reason;
    fill(head, h('div', { class: 'rollout-head' },
      h('p', { class: 'status-line' }, W.badge(r.status, 'rollout-status'),
        ` release ${r.version} to `, h('code', {}, r.selector || 'all devices'),
        st.planned ? ` · wave ${Math.min(st.wave_index + 1, st.waves.length)} of ${st.waves.length}` : ' · planning'),
      reason ? h('p', { class: 'reason' }, reason) : null,
      h('p', { class: 'quiet' }, `Created ${fmtTime(r.created_at)} · updated ${fmtTime(r.updated_at)}`)));
    fill(document.getElementById('ro-actions'), W.rolloutActions(r, state.errors.command, actions));
    fill(document.getElementById('ro-waves'), W.waves(r));
    fill(document.getElementById('ro-log'), d.decisions.length
      ? [...d.decisions].reverse().map((x) => h('li', { 'data-kind': x.kind },
        h('time', { datetime: new Date(x.at * 1000).toISOString() }, fmtTime(x.at)),
        W.badge(x.kind, 'kind'), h('span', { class: 'msg' }, x.message)))
      : h('li', { class: 'quiet' }, 'No decisions yet.'));
  }

  // ---- sites ---------------------------------------------------------------------------------
  function updateSites(state) {
    const el = document.getElementById('s-body');
    if (!state.sites) return fill(el, errorBox(state.errors.sites) || h('p', {}, 'Loading…'));
    const counts = (state.fleet && state.fleet.by_site) || {};
    if (!state.sites.length) return fill(el, h('p', {}, 'No sites defined. ', h('code', {}, 'halyardctl sites set …')));
    fill(el, errorBox(state.errors.sites), h('div', { class: 'cards sites' }, state.sites.map((site) => W.siteCard(site, counts[site.name] || 0))));
  }

  function update(view, state, actions) {
    switch (state.route.page) {
      case 'fleet': return updateFleet(state);
      case 'device': return updateDevice(state);
      case 'rollouts': return updateRollouts(state);
      case 'rollout': return updateRollout(state, actions);
      default: return updateSites(state);
    }
  }

  return { mount, update };
})();
