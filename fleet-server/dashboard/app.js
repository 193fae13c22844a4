// Halyard dashboard: session, API calls, live updates (Server-Sent Events over a streaming fetch,
// polling when the stream is down), routing. Rendering is in views.js (window.HalyardViews).
'use strict';

(() => {
  const V = window.HalyardViews;
  const $ = (id) => document.getElementById(id);
  const TOKEN_KEY = 'halyard.token';
  const SAMPLES_KEY = 'halyard.samples';
  const MAX_SAMPLES = 720;
  const POLL_MS = 5000;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    me: null,
    route: { page: 'fleet' },
    selector: '',
    fleet: null,
    devices: null,
    allDevices: null,
    sites: null,
    rollouts: null,
    rollout: {},
    device: {},
    errors: {},
    samples: loadSamples(),
    live: 'connecting',
  };

  function loadSamples() {
    try {
      const s = JSON.parse(sessionStorage.getItem(SAMPLES_KEY) || '[]');
      return Array.isArray(s) ? s : [];
    } catch (_) {
      return [];
    }
  }

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  // ---- connection state -------------------------------------------------------------------
  function setLive(mode) {
    state.live = mode;
    const el = $('live');
    el.dataset.mode = mode;
    el.textContent = { live: 'Live', polling: 'Polling', offline: 'Offline', connecting: 'Connecting' }[mode];
    el.title = {
      live: 'Receiving changes from the server as they happen',
      polling: 'Live stream unavailable; refreshing every few seconds',
      offline: 'Server unreachable',
      connecting: 'Connecting to the live stream',
    }[mode];
  }

  function unreachable() {
    setLive('offline');
    const b = $('banner');
    b.textContent = `Cannot reach the Halyard server at ${location.origin}. Retrying every few seconds; ` +
      'what you see below may be out of date.';
    b.hidden = false;
    b.dataset.state = 'unreachable';
  }

  function reachable() {
    const b = $('banner');
    if (b.dataset.state === 'unreachable') {
      b.hidden = true;
      b.dataset.state = '';
    }
    if (state.live === 'offline') setLive('polling');
  }

  // ---- API ---------------------------------------------------------------------------------
  async function api(path, opts = {}) {
    const headers = { Authorization: `Bearer ${state.token}` };
    if (opts.body) headers['Content-Type'] = 'application/json';
    let res;
    try {
      res = await fetch(path, { method: opts.method || 'GET', body: opts.body, headers, cache: 'no-store' });
    } catch (_) {
      unreachable();
      throw new ApiError(0, 'cannot reach the server');
    }
    if ([502, 503, 504].includes(res.status)) {
      unreachable();
      throw new ApiError(res.status, `server unavailable (${res.status})`);
    }
    reachable();
    const text = await res.text();
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      const msg = (body && body.error) || text || res.statusText;
      if (res.status === 401) signOut(`The server refused the token: ${msg}`);
      throw new ApiError(res.status, msg);
    }
    return body;
  }

  // ---- live updates ------------------------------------------------------------------------
  let streamAbort = null;

  async function follow() {
    let backoff = 1000;
    while (state.token) {
      const ctl = new AbortController();
      streamAbort = ctl;
      try {
        const res = await fetch('/api/v1/events', {
          headers: { Authorization: `Bearer ${state.token}`, Accept: 'text/event-stream' },
          signal: ctl.signal,
          cache: 'no-store',
        });
        if (res.status === 401) return signOut('The server refused the token.');
        if (!res.ok || !res.body) throw new Error(`event stream answered ${res.status}`);
        setLive('live');
        reachable();
        backoff = 1000;
        markDirty('all');
        await readEvents(res.body, onEvent);
      } catch (e) {
        if (e && e.name === 'AbortError') return;
      }
      if (!state.token || ctl.signal.aborted) return;
      await probe();
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 8000);
    }
  }

  // After the stream broke: is the server gone, or only the stream (e.g. a buffering proxy)?
  async function probe() {
    try {
      const r = await fetch('/healthz', { cache: 'no-store' });
      if (!r.ok) throw new Error(String(r.status));
      reachable();
      setLive('polling');
    } catch (_) {
      unreachable();
    }
  }

  async function readEvents(body, on) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value.replace(/\r\n?/g, '\n');
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        let event = 'message';
        const data = [];
        for (const line of block.split('\n')) {
          if (!line || line.startsWith(':')) continue;
          const c = line.indexOf(':');
          const field = c < 0 ? line : line.slice(0, c);
          let v = c < 0 ? '' : line.slice(c + 1);
          if (v.startsWith(' ')) v = v.slice(1);
          if (field === 'event') event = v;
          else if (field === 'data') data.push(v);
        }
        if (data.length) on(event, data.join('\n'));
      }
    }
  }

  function onEvent(event, data) {
    if (event === 'lagged') return markDirty('all');
    if (event !== 'change') return;
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (_) {
      return;
    }
    if (msg.kind === 'device') {
      markDirty('fleet');
      if (state.route.page === 'device' && state.route.id === msg.id) markDirty('device');
      // a device's progress shows in the rollout it belongs to before the engine's next step
      if (state.route.page === 'rollout') markDirty('rollout');
    } else if (msg.kind === 'rollout') {
      markDirty('rollouts');
      if (state.route.page === 'rollout' && state.route.id === msg.id) markDirty('rollout');
    } else if (msg.kind === 'release') {
      markDirty('rollouts');
    }
  }

  // Changes are coalesced: the first refresh soon after a quiet spell, then at most one a second, or
  // less often when refreshing is slow (a big fleet's device list), so a busy fleet cannot flood the tab.
  const dirty = new Set();
  let flushTimer = null;
  let lastFlush = 0;
  let gap = 1000;

  function markDirty(what) {
    dirty.add(what);
    if (flushTimer) return;
    const wait = Math.max(150, gap - (Date.now() - lastFlush));
    flushTimer = setTimeout(flush, wait);
  }

  async function flush() {
    lastFlush = Date.now();
    const what = new Set(dirty);
    dirty.clear();
    try {
      await refresh(what);
    } finally {
      gap = Math.min(10000, Math.max(1000, 3 * (Date.now() - lastFlush)));
      flushTimer = null;
      if (dirty.size) markDirty([...dirty][0]);
    }
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---- data --------------------------------------------------------------------------------
  async function load(key, path, into = state, field = key) {
    try {
      into[field] = await api(path);
      delete state.errors[key];
    } catch (e) {
      if (e.status === 0 || e.status >= 502) return;
      state.errors[key] = e;
    }
  }

  function sample(fleet) {
    const last = state.samples[state.samples.length - 1];
    const now = Date.now();
    const same = last && JSON.stringify(last.v) === JSON.stringify(fleet.by_version);
    if (same && now - last.t < 30000) return;
    state.samples.push({ t: now, v: fleet.by_version });
    if (state.samples.length > MAX_SAMPLES) state.samples.splice(0, state.samples.length - MAX_SAMPLES);
    try {
      sessionStorage.setItem(SAMPLES_KEY, JSON.stringify(state.samples));
    } catch (_) {
      // storage full: the chart keeps what is in memory
    }
  }

  async function refresh(what) {
    if (!state.token) return;
    const all = what.has('all');
    const page = state.route.page;
    const jobs = [];
    if (all || what.has('fleet')) {
      jobs.push(load('fleet', '/api/v1/fleet').then(() => state.fleet && sample(state.fleet)));
      if (page === 'fleet') {
        const q = state.selector ? `?selector=${encodeURIComponent(state.selector)}` : '';
        jobs.push(load('devices', `/api/v1/devices${q}`));
        if (state.selector) jobs.push(load('allDevices', '/api/v1/devices'));
      }
    }
    if ((all || what.has('fleet')) && page === 'sites') jobs.push(load('sites', '/api/v1/sites'));
    if (all || what.has('rollouts')) jobs.push(load('rollouts', '/api/v1/rollouts'));
    if ((all || what.has('rollout')) && page === 'rollout') {
      const id = state.route.id;
      jobs.push(load('rollout', `/api/v1/rollouts/${encodeURIComponent(id)}`, state.rollout, id));
    }
    if ((all || what.has('device') || what.has('fleet')) && page === 'device') {
      const id = state.route.id;
      jobs.push(load('device', `/api/v1/devices/${encodeURIComponent(id)}`, state.device, id));
    }
    await Promise.all(jobs);
    if (!state.selector) state.allDevices = state.devices;
    render();
  }

  // ---- routing and rendering ---------------------------------------------------------------
  function parseRoute() {
    const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
    const parts = path.split('/').map(decodeURIComponent);
    const params = new URLSearchParams(query || '');
    switch (parts[0]) {
      case 'rollouts':
        return parts[1] ? { page: 'rollout', id: parts[1] } : { page: 'rollouts' };
      case 'devices':
        return parts[1] ? { page: 'device', id: parts[1] } : { page: 'fleet', selector: params.get('selector') || '' };
      case 'sites':
        return { page: 'sites' };
      default:
        return { page: 'fleet', selector: params.get('selector') || '' };
    }
  }

  let mounted = null;

  function onRoute() {
    if (!state.token) return;
    state.route = parseRoute();
    if (state.route.selector !== undefined && state.route.selector !== state.selector) {
      state.selector = state.route.selector;
      state.devices = null;
    }
    for (const a of document.querySelectorAll('[data-nav]')) {
      const here = a.dataset.nav === state.route.page ||
        (a.dataset.nav === 'rollouts' && state.route.page === 'rollout') ||
        (a.dataset.nav === 'fleet' && state.route.page === 'device');
      if (here) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    mounted = null;
    render();
    const h1 = document.querySelector('#view h1');
    if (h1) h1.focus({ preventScroll: true });
    markDirty('all');
  }

  function render() {
    if (!state.token) return;
    const key = `${state.route.page}/${state.route.id || ''}`;
    const view = $('view');
    if (mounted !== key) {
      view.replaceChildren(V.mount(state.route, actions));
      mounted = key;
    }
    V.update(view, state, actions);
  }

  // ---- actions offered to the views --------------------------------------------------------
  const actions = {
    search(selector) {
      location.hash = selector ? `#/fleet?selector=${encodeURIComponent(selector)}` : '#/fleet';
    },
    async command(id, cmd) {
      state.errors.command = null;
      try {
        await api(`/api/v1/rollouts/${encodeURIComponent(id)}/${cmd}`, { method: 'POST' });
        state.errors.command = { ok: true, message: `${cmd} sent to rollout ${id}` };
      } catch (e) {
        state.errors.command = { ok: false, message: `${cmd} refused: ${e.message}` };
      }
      markDirty('rollouts');
      markDirty('rollout');
    },
    canOperate: () => !!state.me && ['operator', 'admin'].includes(state.me.role),
  };

  // ---- session -----------------------------------------------------------------------------
  function showLogin(message) {
    $('login').hidden = false;
    $('view').replaceChildren();
    $('nav').hidden = true;
    $('who').hidden = true;
    $('login-error').textContent = message || '';
    $('token').focus();
  }

  function signOut(message) {
    state.token = null;
    state.me = null;
    sessionStorage.removeItem(TOKEN_KEY);
    if (streamAbort) streamAbort.abort();
    mounted = null;
    showLogin(message);
  }

  async function signIn(token) {
    state.token = token;
    try {
      state.me = await api('/api/v1/whoami');
    } catch (e) {
      if (e.status === 0) {
        state.token = null;
        return showLogin(`Cannot reach the server at ${location.origin}. Is halyard-server running?`);
      }
      if (e.status !== 401) signOut(`Sign-in failed: ${e.message}`);
      return;
    }
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login').hidden = true;
    $('nav').hidden = false;
    $('who').hidden = false;
    $('me').textContent = `${state.me.name} · ${state.me.role}`;
    document.body.dataset.role = state.me.role;
    setLive('connecting');
    onRoute();
    follow();
  }

  function start() {
    $('login-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const t = $('token').value.trim();
      if (!t) {
        $('login-error').textContent = 'Enter a token.';
        return;
      }
      $('token').value = '';
      signIn(t);
    });
    $('logout').addEventListener('click', () => signOut('Signed out.'));
    window.addEventListener('hashchange', onRoute);
    setInterval(() => {
      if (state.token && state.live !== 'live') markDirty('all');
    }, POLL_MS);
    setInterval(() => {
      if (state.token && ['sites', 'fleet'].includes(state.route.page)) markDirty('fleet');
    }, 30000);
    if (state.token) signIn(state.token);
    else showLogin('');
  }

  start();
})();
