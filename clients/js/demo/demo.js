// The demo page: follows one channel with herald.js and publishes through
// the HTTP API of the server that serves this page.
//
// Elements tests rely on: #state and #sub-state (text and data-state),
// #messages li[data-offset] with .offset and .data children (data is the
// message's JSON), #recovered (text and data-count: recovered:false events),
// #presence li[data-conn] (text: the user; data-count on the list).
// #transport (text and data-transport: the transport of the last connect).

import { HeraldClient } from '../herald.js';

const params = new URLSearchParams(location.search);
const defaultWS = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.hostname}:8080/ws`;
const wsURL = params.get('ws') || defaultWS;
const channel = params.get('channel') || 'news';
const numberParam = (name) => (params.has(name) ? Number(params.get(name)) : undefined);

const $ = (id) => document.getElementById(id);
const MAX_EVENTS = 50;

$('ws-url').textContent = wsURL;
$('channel').textContent = channel;

function showState(el, state) {
  el.textContent = state;
  el.dataset.state = state;
}

function logEvent(text) {
  const li = document.createElement('li');
  li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
  const list = $('events');
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild.remove();
}

function showError(text) {
  $('last-error').textContent = text;
  logEvent(`error: ${text}`);
}

const options = {};
if (params.has('token')) options.token = params.get('token');
if (params.has('transports')) options.transports = params.get('transports').split(',');
for (const name of ['minDelay', 'maxDelay', 'pingInterval', 'pongTimeout', 'fallbackAfter', 'pollTimeout']) {
  const v = numberParam(name);
  if (Number.isFinite(v) && v > 0) options[name] = v;
}

const client = new HeraldClient(wsURL, options);
client.on('state', ({ state }) => showState($('state'), state));
client.on('connected', ({ reconnected, transport }) => {
  $('transport').textContent = transport;
  $('transport').dataset.transport = transport;
  logEvent(`${reconnected ? 'reconnected' : 'connected'} over ${transport}`);
});
client.on('transport', ({ transport, previous }) => logEvent(`${previous} failed, falling back to ${transport}`));
client.on('connecting', ({ code, reason }) => logEvent(`connection lost (${code}${reason ? ` ${reason}` : ''}), reconnecting`));
client.on('disconnected', () => logEvent('disconnected'));
client.on('error', ({ error }) => showError(`${error.code || error.name}: ${error.message}`));

const last = numberParam('last');
const sub = client.subscribe(channel, Number.isSafeInteger(last) && last > 0 ? { last } : {});
sub.on('state', ({ state }) => showState($('sub-state'), state));
sub.on('subscribed', ({ offset, recovered, wasRecovering }) => {
  logEvent(`subscribed at offset ${offset}${wasRecovering ? `, recovered: ${recovered}` : ''}`);
});
sub.on('missed', ({ since, offset }) => {
  const el = $('recovered');
  const count = Number(el.dataset.count) + 1;
  el.dataset.count = String(count);
  el.textContent = String(count);
  logEvent(`missed messages between offsets ${since} and ${offset}`);
});
sub.on('unsubscribed', ({ code, reason }) => logEvent(`unsubscribed (${code}: ${reason})`));
sub.on('error', ({ error }) => showError(`${error.code}: ${error.message}`));
sub.on('message', ({ offset, data }) => {
  const li = document.createElement('li');
  li.dataset.offset = String(offset);
  const off = document.createElement('span');
  off.className = 'offset';
  off.textContent = String(offset);
  const body = document.createElement('code');
  body.className = 'data';
  body.textContent = JSON.stringify(data);
  li.append(off, ' ', body);
  $('messages').append(li);
  $('last-offset').textContent = String(offset);
});

$('publish-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const raw = $('publish-data').value;
  let data;
  try {
    data = JSON.parse(raw);
  } catch {
    data = raw; // plain text is published as a JSON string
  }
  const headers = { 'Content-Type': 'application/json' };
  const key = $('api-key').value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const out = $('publish-result');
  try {
    const res = await fetch('/api/publish', { method: 'POST', headers, body: JSON.stringify({ channel, data }) });
    const body = await res.json().catch(() => ({}));
    out.textContent = res.ok ? `published at offset ${body.offset}` : `HTTP ${res.status}: ${body.error || res.statusText}`;
  } catch (err) {
    out.textContent = `request failed: ${err.message}`;
  }
});

// Presence: the API's list, then joins and leaves.
const members = new Map(); // conn -> user
function showPresence() {
  const list = $('presence');
  list.replaceChildren(...[...members].map(([conn, user]) => {
    const li = document.createElement('li');
    li.dataset.conn = conn;
    li.textContent = user || '(anonymous)';
    return li;
  }));
  list.dataset.count = String(members.size);
}
async function loadPresence() {
  const headers = {};
  const key = $('api-key').value.trim();
  if (key) headers.Authorization = `Bearer ${key}`;
  const out = $('presence-result');
  try {
    const res = await fetch(`/api/presence?channel=${encodeURIComponent(channel)}`, { headers });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) {
      out.textContent = `HTTP ${res.status}: ${body.error || res.statusText}`;
      return;
    }
    members.clear();
    for (const m of body.members) members.set(m.conn, m.user);
    out.textContent = `${body.members.length} members on ${body.nodes} node(s)`;
    showPresence();
  } catch (err) {
    out.textContent = `request failed: ${err.message}`;
  }
}
sub.on('join', ({ user, conn }) => {
  members.set(conn, user);
  showPresence();
  logEvent(`${user || 'anonymous'} joined (${conn})`);
});
sub.on('leave', ({ user, conn }) => {
  members.delete(conn);
  showPresence();
  logEvent(`${user || 'anonymous'} left (${conn})`);
});
sub.on('subscribed', () => loadPresence());
$('presence-load').addEventListener('click', () => loadPresence());

window.herald = { client, sub }; // for the console
client.connect();
