// Herald admin page. No dependencies. The API key lives only in the `key`
// variable of this closure: it is never persisted by the browser nor put
// in a URL, so closing or reloading the page forgets it.
(() => {
  'use strict';

  const POLL_MS = 1000;
  const HISTORY = 120; // points kept per chart: two minutes

  let key = null;      // the API key, in memory only
  let timer = null;
  let prev = null;     // the previous snapshot, for rates and quantiles
  let polls = 0;
  const series = { connections: [], subscriptions: [], deliveries: [], p50: [], p99: [] };

  const $ = (sel) => document.querySelector(sel);

  function authHeaders(k) {
    return k ? { Authorization: 'Bearer ' + k } : {};
  }

  function setStatus(state, text) {
    const s = $('#status');
    s.dataset.state = state;
    s.textContent = text;
  }

  function showLogin(message) {
    clearInterval(timer);
    timer = null;
    key = null;
    prev = null;
    $('#dashboard').hidden = true;
    $('#login-view').hidden = false;
    $('#logout').hidden = true;
    const err = $('#login-error');
    err.hidden = !message;
    err.textContent = message || '';
    setStatus('logged-out', 'signed out');
    $('#key').focus();
  }

  async function fetchStats(k) {
    const res = await fetch('/api/admin/stats', { headers: authHeaders(k), cache: 'no-store' });
    if (res.status === 401) {
      const e = new Error('The API key was refused (401): wrong key.');
      e.unauthorized = true;
      throw e;
    }
    if (!res.ok) {
      throw new Error('GET /api/admin/stats: HTTP ' + res.status);
    }
    return res.json();
  }

  async function login(ev) {
    ev.preventDefault();
    const input = $('#key');
    const candidate = input.value;
    input.value = '';
    $('#login-submit').disabled = true;
    try {
      const snap = await fetchStats(candidate);
      key = candidate;
      $('#login-view').hidden = true;
      $('#dashboard').hidden = false;
      $('#logout').hidden = false;
      $('#login-error').hidden = true;
      render(snap);
      timer = setInterval(poll, POLL_MS);
    } catch (e) {
      showLogin(e.unauthorized ? e.message : 'Cannot reach the node: ' + e.message);
    } finally {
      $('#login-submit').disabled = false;
    }
  }

  async function poll() {
    if (key === null) return;
    try {
      render(await fetchStats(key));
    } catch (e) {
      if (e.unauthorized) {
        showLogin('The API key is no longer accepted (401). Sign in again.');
        return;
      }
      setStatus('error', 'unreachable: ' + e.message);
    }
  }

  // quantile estimates the q-quantile of the observations between two
  // cumulative histograms the way Prometheus' histogram_quantile does
  // (linear within a bucket); null when nothing was observed.
  function quantile(q, now, before) {
    const counts = now.counts.map((c, i) => c - (before && before.counts[i] !== undefined ? before.counts[i] : 0));
    const total = counts[counts.length - 1];
    if (!(total > 0)) return null;
    const rank = q * total;
    for (let i = 0; i < now.bounds.length; i++) {
      if (counts[i] >= rank) {
        const lo = i === 0 ? 0 : now.bounds[i - 1];
        const below = i === 0 ? 0 : counts[i - 1];
        const inBucket = counts[i] - below;
        return inBucket > 0 ? lo + (now.bounds[i] - lo) * (rank - below) / inBucket : now.bounds[i];
      }
    }
    return now.bounds[now.bounds.length - 1]; // in the +Inf bucket: at least the largest bound
  }

  function push(arr, v) {
    arr.push(v);
    if (arr.length > HISTORY) arr.shift();
  }

  const fmtInt = (n) => Math.round(n).toLocaleString('en-US');
  function fmtSeconds(s) {
    if (s === null || s === undefined) return '–';
    if (s < 1e-3) return (s * 1e6).toFixed(0) + ' µs';
    if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + ' ms';
    return s.toFixed(2) + ' s';
  }
  function fmtRate(r) {
    return r >= 100 ? fmtInt(r) : r.toFixed(1);
  }

  function text(sel, value, data) {
    const el = $(sel);
    el.textContent = value;
    if (data !== undefined) el.dataset.value = String(data);
  }

  function render(s) {
    polls++;
    const st = s.stats;
    text('#connections', fmtInt(st.connections), st.connections);
    text('#max-connections', s.max_connections > 0 ? 'of ' + fmtInt(s.max_connections) + ' (-max-conns)' : 'no -max-conns limit', s.max_connections);
    text('#subscriptions', fmtInt(st.subscriptions), st.subscriptions);
    text('#channels', fmtInt(st.channels) + ' channels', st.channels);
    text('#deliveries-total', fmtInt(st.deliveries) + ' delivered in all', st.deliveries);
    const pub = s.publishes || {};
    text('#broker', s.broker_up ? 'up' : 'down', s.broker_up ? 1 : 0);
    text('#publishes', fmtInt(pub.accepted || 0) + ' published, ' + fmtInt((pub.failed || 0) + (pub.unknown || 0)) + ' failed');

    let rate = null, p50 = null, p99 = null;
    if (prev) {
      const dt = (s.time - prev.time) / 1000;
      if (dt > 0) rate = Math.max(0, st.deliveries - prev.stats.deliveries) / dt;
      p50 = quantile(0.5, s.latency, prev.latency);
      p99 = quantile(0.99, s.latency, prev.latency);
    }
    text('#deliveries-rate', rate === null ? '–' : fmtRate(rate), rate === null ? '' : rate);
    text('#latency-p50', fmtSeconds(p50), p50 === null ? '' : p50);
    text('#latency-p99', fmtSeconds(p99), p99 === null ? '' : p99);
    push(series.connections, st.connections);
    push(series.subscriptions, st.subscriptions);
    push(series.deliveries, rate);
    push(series.p50, p50);
    push(series.p99, p99);
    prev = s;

    lineChart($('#chart-connections'), [{ values: series.connections, color: '#2463eb' }], fmtInt,
      s.max_connections > 0 ? s.max_connections : null);
    lineChart($('#chart-subscriptions'), [{ values: series.subscriptions, color: '#7048e8' }], fmtInt);
    lineChart($('#chart-deliveries'), [{ values: series.deliveries, color: '#2b8a3e' }], fmtRate);
    lineChart($('#chart-latency'), [
      { values: series.p50, color: '#2463eb', label: 'p50' },
      { values: series.p99, color: '#e8590c', label: 'p99' },
    ], fmtSeconds);
    renderTop(s.top_channels || []);
    renderNodes(s.nodes || [s.node]);
    $('#loops').textContent = (s.loop_connections || []).map((n, i) => 'loop ' + i + ': ' + fmtInt(n)).join(' · ');
    setStatus('live', 'live');
    $('#status').dataset.polls = String(polls);
  }

  function renderTop(top) {
    const ol = $('#top-channels');
    ol.replaceChildren(...top.map((c) => {
      const li = document.createElement('li');
      li.dataset.channel = c.channel;
      li.dataset.subscribers = String(c.subscribers);
      li.textContent = c.channel + ' (' + fmtInt(c.subscribers) + ')';
      return li;
    }));
    barChart($('#chart-top'), top);
  }

  function renderNodes(nodes) {
    const tbody = $('#nodes tbody');
    tbody.replaceChildren(...nodes.map((n) => {
      const tr = document.createElement('tr');
      tr.dataset.node = n.id;
      const cells = [n.id, n.version, n.client_addr, n.api_addr, n.broker,
        new Date(n.started).toLocaleString(), n.ready ? 'ready' : 'not ready: ' + (n.not_ready || '')];
      for (const c of cells) {
        const td = document.createElement('td');
        td.textContent = c;
        tr.appendChild(td);
      }
      return tr;
    }));
  }

  // fit sizes the canvas' backing store to its CSS size and the screen's
  // pixel ratio and returns a context scaled to CSS pixels.
  function fit(canvas) {
    const ratio = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * ratio) || canvas.height !== Math.round(h * ratio)) {
      canvas.width = Math.round(w * ratio);
      canvas.height = Math.round(h * ratio);
    }
    const ctx = canvas.getContext('2d');
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, w, h);
    ctx.font = '11px system-ui, sans-serif';
    return { ctx, w, h };
  }

  // lineChart draws series (arrays of numbers, null for a gap) over the
  // last HISTORY polls, with the y axis from 0 to the largest value (or
  // limit, drawn dashed) and the latest values labelled.
  function lineChart(canvas, lines, fmt, limit = null) {
    const { ctx, w, h } = fit(canvas);
    const left = 56, right = 8, top = 8, bottom = 16;
    let max = limit || 0;
    for (const l of lines) for (const v of l.values) if (v !== null && v > max) max = v;
    if (max <= 0) max = 1;
    max *= 1.1;
    const x = (i) => left + (w - left - right) * i / (HISTORY - 1);
    const y = (v) => top + (h - top - bottom) * (1 - v / max);
    ctx.strokeStyle = '#dfe2e7';
    ctx.fillStyle = '#6b7380';
    ctx.lineWidth = 1;
    ctx.textAlign = 'right';
    ctx.textBaseline = 'middle';
    for (let k = 0; k <= 4; k++) {
      const v = max * k / 4, yy = y(v);
      ctx.beginPath(); ctx.moveTo(left, yy); ctx.lineTo(w - right, yy); ctx.stroke();
      ctx.fillText(fmt(v), left - 4, yy);
    }
    ctx.textAlign = 'left';
    ctx.textBaseline = 'top';
    ctx.fillText('−' + Math.round(HISTORY * POLL_MS / 1000) + ' s', left, h - bottom + 3);
    if (limit) {
      ctx.setLineDash([4, 4]);
      ctx.strokeStyle = '#c92a2a';
      ctx.beginPath(); ctx.moveTo(left, y(limit)); ctx.lineTo(w - right, y(limit)); ctx.stroke();
      ctx.setLineDash([]);
    }
    let legend = w - right;
    for (const l of lines) {
      const off = HISTORY - l.values.length;
      ctx.strokeStyle = l.color;
      ctx.lineWidth = 2;
      ctx.beginPath();
      let pen = false;
      l.values.forEach((v, i) => {
        if (v === null) { pen = false; return; }
        if (pen) ctx.lineTo(x(off + i), y(v)); else ctx.moveTo(x(off + i), y(v));
        pen = true;
      });
      ctx.stroke();
      const last = l.values.length ? l.values[l.values.length - 1] : null;
      const label = (l.label ? l.label + ' ' : '') + (last === null ? '–' : fmt(last));
      ctx.fillStyle = l.color;
      ctx.textAlign = 'right';
      ctx.fillText(label, legend, top);
      legend -= ctx.measureText(label).width + 12;
    }
  }

  // barChart draws the top channels as horizontal bars.
  function barChart(canvas, top) {
    const { ctx, w, h } = fit(canvas);
    if (top.length === 0) {
      ctx.fillStyle = '#6b7380';
      ctx.fillText('no subscriptions on this node', 8, 16);
      return;
    }
    const left = 160, right = 60, rowH = Math.min(20, (h - 4) / top.length);
    const max = Math.max(...top.map((c) => c.subscribers));
    ctx.textBaseline = 'middle';
    top.forEach((c, i) => {
      const yy = 2 + i * rowH;
      const bw = (w - left - right) * c.subscribers / max;
      ctx.fillStyle = '#2463eb';
      ctx.fillRect(left, yy + 2, Math.max(bw, 1), rowH - 4);
      ctx.fillStyle = '#1d2430';
      ctx.textAlign = 'right';
      const name = c.channel.length > 24 ? c.channel.slice(0, 23) + '…' : c.channel;
      ctx.fillText(name, left - 6, yy + rowH / 2);
      ctx.textAlign = 'left';
      ctx.fillText(fmtInt(c.subscribers), left + bw + 6, yy + rowH / 2);
    });
  }

  async function publish(ev) {
    ev.preventDefault();
    const out = $('#publish-result');
    const channel = $('#publish-channel').value.trim();
    let data;
    try {
      data = JSON.parse($('#publish-data').value);
    } catch (e) {
      out.dataset.state = 'error';
      out.textContent = 'Data is not valid JSON: ' + e.message;
      return;
    }
    $('#publish-submit').disabled = true;
    try {
      const res = await fetch('/api/publish', {
        method: 'POST',
        headers: Object.assign({ 'Content-Type': 'application/json' }, authHeaders(key)),
        body: JSON.stringify({ channel, data }),
      });
      const body = await res.json().catch(() => ({}));
      if (res.status === 401) {
        showLogin('The API key is no longer accepted (401). Sign in again.');
        return;
      }
      if (!res.ok) {
        out.dataset.state = 'error';
        out.textContent = 'HTTP ' + res.status + ': ' + (body.error || res.statusText);
        return;
      }
      out.dataset.state = 'ok';
      out.dataset.offset = String(body.offset);
      out.textContent = 'Published to ' + channel + ' at offset ' + body.offset + '.';
    } catch (e) {
      out.dataset.state = 'error';
      out.textContent = 'Publish failed: ' + e.message;
    } finally {
      $('#publish-submit').disabled = false;
    }
  }

  document.addEventListener('DOMContentLoaded', () => {
    $('#login').addEventListener('submit', login);
    $('#publish').addEventListener('submit', publish);
    $('#logout').addEventListener('click', () => showLogin(''));
    showLogin('');
  });
})();
