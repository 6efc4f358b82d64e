// The jarvis-dns dashboard: plain JavaScript, no build step, no library.
//
// Live without polling: each view holds one blocking query (?index=N&wait=30s, answered
// as soon as the registry's change index passes N) and draws what comes back. Only the
// sparklines sample GET /metrics, once every SAMPLE_S seconds. Everything registrants
// wrote (metadata, metrics, check output) is untrusted: it goes in as text, never HTML.
'use strict';

const TOKEN_KEY = 'jarvis-dns-token';
const WAIT = '30s'; // how long a blocking query may wait for a change
const SAMPLE_S = 5; // sparkline sampling interval
const SAMPLES = 60; // points per sparkline: five minutes
const EVENTS_SHOWN = 300;
const $ = (selector, root = document) => root.querySelector(selector);
let viewAbort = null; // stops the blocking queries of the view on screen
let skewMs = 0; // server clock minus ours, from the Date header (whole seconds)

// -- talking to the server --------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY) || '';
}

async function api(path, options = {}) {
  const headers = {...(options.headers || {})};
  if (token()) headers.Authorization = 'Bearer ' + token();
  if (options.body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {...options, headers});
  const date = Date.parse(response.headers.get('Date') || '');
  if (!Number.isNaN(date)) {
    const skew = date - Date.now();
    skewMs = Math.abs(skew) > 2000 ? skew : 0; // the header has whole seconds only
  }
  const text = await response.text();
  let body = text;
  try {
    body = text ? JSON.parse(text) : null;
  } catch (e) {
    // not JSON: /metrics, or a proxy's error page
  }
  const index = Number(response.headers.get('X-Jarvis-Index') || 0);
  return {ok: response.ok, status: response.status, body, index};
}

function problem(answer) {
  const error = answer.body && answer.body.error;
  if (answer.status === 401) return '401: a token is required (ACL)';
  if (answer.status === 403) return '403: this token may not read it';
  return `${answer.status}: ${error ? error.message : 'error'}`;
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, {once: true});
  });
}

function setStatus(text, kind) {
  const status = $('#status');
  status.textContent = text;
  status.className = kind;
}

// Ask again and again, each a blocking query on the index the last answer carried;
// `take(answer)` draws it and returns that index. Errors back off (0.5 s doubling to
// 30 s), so a server that is down sees a trickle.
async function follow(urlFor, signal, take) {
  let index = 0;
  let failures = 0;
  while (!signal.aborted) {
    let answer = null;
    try {
      answer = await api(urlFor(index), {signal});
    } catch (e) {
      if (signal.aborted) return;
    }
    if (signal.aborted) return;
    if (!answer || !answer.ok) {
      failures += 1;
      setStatus(answer ? problem(answer) : 'server unreachable; retrying', 'bad');
      await sleep(Math.min(30000, 250 * 2 ** failures), signal);
      continue;
    }
    failures = 0;
    setStatus('live', 'ok');
    index = take(answer);
  }
}

// One resource, drawn anew whenever its change index moves.
function watch(path, signal, draw) {
  const sep = path.includes('?') ? '&' : '?';
  const urlFor = (index) => (index ? `${path}${sep}index=${index}&wait=${WAIT}` : path);
  return follow(urlFor, signal, (answer) => {
    draw(answer.body);
    return answer.index; // lower than before: a fresh store; go on from its index
  });
}

// -- building the page (text only: nothing a registrant wrote becomes markup) -----------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class') node.className = value;
    else if (key === 'text') node.textContent = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
  }
  return node;
}

function cell(label, ...children) {
  return el('td', {'data-label': label}, ...children);
}

function badge(text, kind) {
  return el('span', {class: `badge ${kind || text}`, text});
}

function compact(value) {
  if (!value || (typeof value === 'object' && Object.keys(value).length === 0)) return '—';
  return Object.entries(value)
    .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
    .join(' ');
}

function age(seconds) {
  if (seconds < 0) seconds = 0;
  if (seconds < 90) return `${Math.floor(seconds)} s ago`;
  if (seconds < 5400) return `${Math.floor(seconds / 60)} min ago`;
  return `${Math.floor(seconds / 3600)} h ago`;
}

function tickAges() {
  const now = (Date.now() + skewMs) / 1000;
  for (const node of document.querySelectorAll('[data-since]')) {
    node.textContent = age(now - Number(node.dataset.since));
  }
}

function show(...children) {
  const view = $('#view');
  view.replaceChildren(...children);
  for (const link of document.querySelectorAll('nav a')) {
    link.classList.toggle('current', link.getAttribute('href') === (location.hash || '#/'));
  }
}

// -- sparklines: DNS answers and heartbeats a second, per service, from /metrics ---------

const history = new Map(); // service -> {dns: [rates], beats: [rates]}
let lastTotals = null;
let lastSampleAt = 0;

function parseMetrics(text) {
  const totals = new Map();
  const wanted = /^(jarvis_dns_answers_total|jarvis_heartbeats_total)\{service="([^"]+)"\} ([0-9.e+]+)$/;
  for (const line of text.split('\n')) {
    const m = line.match(wanted);
    if (!m) continue;
    const entry = totals.get(m[2]) || {dns: 0, beats: 0};
    entry[m[1] === 'jarvis_dns_answers_total' ? 'dns' : 'beats'] = Number(m[3]);
    totals.set(m[2], entry);
  }
  return totals;
}

async function sample(signal) {
  while (!signal.aborted) {
    try {
      const answer = await api('/metrics', {signal});
      if (answer.ok) record(parseMetrics(answer.body), Date.now());
    } catch (e) {
      if (signal.aborted) return;
    }
    drawSparks();
    await sleep(SAMPLE_S * 1000, signal);
  }
}

function record(totals, at) {
  if (lastTotals) {
    const seconds = Math.max(0.001, (at - lastSampleAt) / 1000);
    for (const [svc, now] of totals) {
      const before = lastTotals.get(svc) || {dns: now.dns, beats: now.beats};
      const line = history.get(svc) || {dns: [], beats: []};
      line.dns.push(Math.max(0, (now.dns - before.dns) / seconds));
      line.beats.push(Math.max(0, (now.beats - before.beats) / seconds));
      line.dns.splice(0, Math.max(0, line.dns.length - SAMPLES));
      line.beats.splice(0, Math.max(0, line.beats.length - SAMPLES));
      history.set(svc, line);
    }
  }
  lastTotals = totals;
  lastSampleAt = at;
}

function spark(svc) {
  const line = history.get(svc) || {dns: [], beats: []};
  const width = 120;
  const height = 24;
  const svgNs = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNs, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('role', 'img');
  const last = (xs) => (xs.length ? xs[xs.length - 1].toFixed(1) : '0');
  svg.setAttribute('aria-label', `${last(line.dns)} DNS answers/s, ${last(line.beats)} heartbeats/s`);
  for (const kind of ['dns', 'beats']) {
    // Each line to its own scale: heartbeats are far fewer than DNS answers.
    const top = Math.max(0.1, ...line[kind]);
    const steps = Math.max(1, line[kind].length - 1);
    const points = line[kind].map((v, i) => {
      const x = (i / steps) * width;
      const y = height - 1 - (v / top) * (height - 2);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    const poly = document.createElementNS(svgNs, 'polyline');
    poly.setAttribute('class', kind);
    poly.setAttribute('points', points.join(' '));
    svg.append(poly);
  }
  return svg;
}

function drawSparks() {
  for (const holder of document.querySelectorAll('[data-spark]')) {
    holder.replaceChildren(spark(holder.dataset.spark));
  }
}

// -- the services --------------------------------------------------------------------

function showServices(signal) {
  const body = el('tbody');
  const table = el('table', {id: 'services'},
    el('thead', {}, el('tr', {}, ['service', 'live', 'busy', 'dead', 'maintenance', 'total']
      .map((h) => el('th', {text: h})), el('th', {}, 'activity ',
      el('span', {class: 'legend'}, el('span', {class: 'dns', text: 'dns'}), ' / ',
        el('span', {class: 'beats', text: 'beats'}))))),
    body);
  const empty = el('p', {class: 'hint', id: 'no-services', text: 'No service registered yet.'});
  show(el('h1', {text: 'Services'}),
    el('p', {class: 'hint', text: 'Live counts follow every change as it happens. Activity: DNS answers and heartbeats a second over the last five minutes.'}),
    el('div', {class: 'card'}, table, empty));
  watch('/v1/services', signal, (answer) => {
    const services = Object.entries(answer.services);
    empty.hidden = services.length > 0;
    body.replaceChildren(...services.map(([svc, n]) => el('tr', {'data-service': svc},
      cell('service', el('a', {class: 'svc', href: `#/service/${svc}`, text: svc})),
      cell('live', el('span', {class: 'count-live num', text: n.active})),
      cell('busy', el('span', {class: 'count-busy num', text: n.busy})),
      cell('dead', el('span', {class: 'count-dead num', text: n.dead})),
      cell('maintenance', String(n.maintenance)),
      cell('total', String(n.total)),
      cell('activity', el('span', {'data-spark': svc}, spark(svc))))));
  });
  sample(signal);
}

// -- one service -----------------------------------------------------------------------

function instanceRow(inst, matched, picked) {
  const id = String(inst.instance_id);
  const check = inst.check
    ? [badge(inst.check_failing ? 'failing' : 'passing', inst.check_failing ? 'dead' : 'active'),
      ` ${inst.check.type} `, el('span', {class: 'kv', text: inst.check_output || ''})]
    : [el('span', {class: 'kv', text: 'heartbeats only'})];
  const classes = [matched ? 'match' : '', picked ? 'picked' : ''].join(' ').trim();
  return el('tr', {'data-id': id, 'data-status': inst.status, 'data-busy': String(inst.busy),
    class: classes || null},
  cell('instance', el('strong', {text: id})),
  cell('address', el('span', {class: 'mono', text: `${inst.host}:${inst.port}`})),
  cell('status', badge(inst.status)),
  cell('busy', badge(inst.busy ? 'busy' : 'idle')),
  cell('heartbeat', el('span', {'data-since': inst.last_heartbeat, title: new Date(inst.last_heartbeat * 1000).toISOString()})),
  cell('check', ...check),
  cell('metrics', el('span', {class: 'kv mono', text: compact(inst.metrics)})),
  cell('metadata', el('span', {class: 'kv mono', text: compact(inst.metadata)})));
}

function digText(answers) {
  const lines = [];
  for (const a of answers) {
    lines.push(el('span', {class: 'q', text: `;; ${a.name} ${a.type}  ->  ${a.rcode}\n`}));
    for (const rr of a.answer) lines.push(rr + '\n');
    if (a.additional.length) {
      lines.push(';; ADDITIONAL\n');
      for (const rr of a.additional) lines.push(rr + '\n');
    }
    lines.push('\n');
  }
  return lines;
}

function showService(svc, signal) {
  const state = {instances: [], matches: null, picked: null};
  const rows = el('tbody');
  const empty = el('p', {class: 'hint', text: 'No instance of this service.'});
  const dig = el('pre', {class: 'dig', id: 'dns'});
  const requirements = el('input', {id: 'requirements', placeholder: '{"version": "2.0", "busy": false}', 'aria-label': 'requirements (JSON)'});
  const strategy = el('select', {id: 'strategy', 'aria-label': 'strategy'},
    ['round_robin', 'random', 'weighted', 'least_loaded', 'consistent_hash']
      .map((s) => el('option', {value: s, text: s})));
  const pick = el('div', {id: 'pick', class: 'hint'});
  const filter = el('form', {class: 'filter', id: 'filter'}, requirements, strategy,
    el('button', {type: 'submit', text: 'Discover'}));
  const draw = () => {
    empty.hidden = state.instances.length > 0;
    rows.replaceChildren(...state.instances.map((inst) => instanceRow(inst,
      state.matches !== null && state.matches.has(String(inst.instance_id)),
      state.picked === String(inst.instance_id))));
    tickAges();
  };
  const refreshMatches = async () => {
    const text = requirements.value.trim();
    if (!text) {
      state.matches = null;
      pick.textContent = '';
      return;
    }
    let parsed;
    try {
      parsed = JSON.parse(text);
    } catch (e) {
      state.matches = null;
      pick.textContent = 'requirements must be a JSON object';
      pick.className = 'error';
      return;
    }
    const query = encodeURIComponent(JSON.stringify(parsed));
    const answer = await api(`/v1/services/${svc}?requirements=${query}&status=active`, {signal});
    if (!answer.ok) {
      pick.textContent = problem(answer);
      pick.className = 'error';
      return;
    }
    state.matches = new Set(answer.body.instances.map((i) => String(i.instance_id)));
    pick.className = 'hint';
    if (!state.picked) pick.textContent = `${state.matches.size} live instance(s) match`;
  };
  filter.addEventListener('submit', async (event) => {
    event.preventDefault();
    state.picked = null;
    await refreshMatches();
    if (state.matches === null && requirements.value.trim()) return draw();
    if (state.matches !== null && state.matches.size === 0) {
      pick.textContent = 'discover would find none: no live instance matches';
      return draw();
    }
    const request = {service_type: svc, strategy: strategy.value};
    if (requirements.value.trim()) request.requirements = JSON.parse(requirements.value);
    if (strategy.value === 'consistent_hash') request.key = 'dashboard';
    const answer = await api('/v1/discover', {method: 'POST', body: JSON.stringify(request), signal});
    if (answer.ok) {
      state.picked = String(answer.body.instance_id);
      pick.className = 'hint';
      pick.textContent = `discover picks ${answer.body.instance_id} at ${answer.body.host}:${answer.body.port} (${strategy.value})`;
    } else {
      pick.className = 'error';
      pick.textContent = problem(answer);
    }
    draw();
  });
  show(el('p', {}, el('a', {href: '#/', text: '← all services'})),
    el('h1', {text: svc}),
    el('div', {class: 'card'}, el('table', {id: 'instances'},
      el('thead', {}, el('tr', {}, ['instance', 'address', 'status', 'busy', 'heartbeat', 'check', 'metrics', 'metadata']
        .map((h) => el('th', {text: h})))), rows), empty),
    el('h2', {text: 'Requirements: what discover would pick'}),
    el('div', {class: 'card'}, filter, pick),
    el('h2', {text: 'What DNS answers'}),
    el('div', {class: 'card'}, dig));
  watch(`/v1/services/${svc}`, signal, async (answer) => {
    state.instances = answer.instances;
    await refreshMatches();
    draw();
    const dns = await api(`/v1/services/${svc}/dns`, {signal});
    if (dns.ok) dig.replaceChildren(...digText(dns.body.answers));
  });
}

// -- the event stream -------------------------------------------------------------------

function eventItem(e) {
  return el('li', {'data-index': e.index, 'data-kind': e.kind},
    el('span', {class: 'idx', text: `#${e.index}`}),
    el('span', {class: 'kv', text: new Date(e.time * 1000).toLocaleTimeString()}),
    el('a', {class: 'svc', href: `#/service/${e.service_type}`, text: `${e.service_type}/${e.instance_id}`}),
    el('strong', {text: e.kind}),
    el('span', {text: `${e.old_status || '—'} → ${e.new_status || '—'}`}),
    el('span', {class: 'kv', text: e.reason || ''}));
}

function showEvents(signal) {
  const list = el('ol', {class: 'events', id: 'events', reversed: true});
  show(el('h1', {text: 'Events'}),
    el('p', {class: 'hint', text: 'Every registry change, newest first, as it happens.'}),
    el('div', {class: 'card'}, list));
  const urlFor = (since) => `/v1/events?since=${since}` + (since ? `&index=${since}&wait=${WAIT}` : '');
  let since = 0;
  follow(urlFor, signal, (answer) => {
    if (answer.body.index < since) { // a fresh store: start over
      list.replaceChildren();
      since = 0;
      return 0;
    }
    const fresh = answer.body.events.filter((e) => e.index > since).slice(-EVENTS_SHOWN);
    list.prepend(...fresh.reverse().map(eventItem));
    while (list.children.length > EVENTS_SHOWN) list.lastChild.remove();
    since = answer.body.index;
    return since;
  });
}

// -- routing ------------------------------------------------------------------------------

function route() {
  if (viewAbort) viewAbort.abort();
  viewAbort = new AbortController();
  const path = location.hash.slice(1) || '/';
  const service = path.match(/^\/service\/([a-z0-9-]+)$/);
  if (service) showService(service[1], viewAbort.signal);
  else if (path === '/events') showEvents(viewAbort.signal);
  else showServices(viewAbort.signal);
}

$('#token').value = token();
$('#token-form').addEventListener('submit', (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $('#token').value.trim());
  route();
});
window.addEventListener('hashchange', route);
setInterval(tickAges, 1000); // ages only: no request
route();
