'use strict';

// window_client.js checks Herald's permessage-deflate window limits with the
// npm `ws` client, whose zlib inflater enforces server_max_window_bits: a
// back-reference further back than 2^N bytes fails the connection with
// "invalid distance too far back".
//
//   node window_client.js ws://127.0.0.1:PORT/echo
//
// For each mode it opens one connection offering the mode's window, checks
// Herald answered server_max_window_bits=N, and sends messages that a
// full-window compressor would encode with long back-references (blocks
// repeating at periods past the window, at sizes around 2^N), expecting
// each echoed byte for byte. It prints one JSON line and exits 0 when every
// check passed, 1 otherwise. The Go test TestNodeWindowBits in
// ../window_test.go runs it.

const crypto = require('crypto');
const WebSocket = require('ws');

const STEP_TIMEOUT_MS = 10000;
const TOTAL_TIMEOUT_MS = 50000;

// serverBits is the server_max_window_bits offered (undefined: none);
// clientBits the client_max_window_bits ws compresses its own messages
// with.
const MODES = [
  { name: 'server-8', serverBits: 8 },
  { name: 'server-9', serverBits: 9 },
  { name: 'server-10', serverBits: 10 },
  { name: 'server-12', serverBits: 12 },
  { name: 'server-14', serverBits: 14 },
  { name: 'server-15', serverBits: 15 },
  { name: 'server-9-client-9', serverBits: 9, clientBits: 9 },
  { name: 'client-10', clientBits: 10 },
];

class Mismatch extends Error {}

function fail(msg) {
  throw new Mismatch(msg);
}

// periodic repeats one pseudo-random block of period bytes up to n bytes.
function periodic(n, period, seed) {
  const block = crypto.createHash('sha256').update(String(seed)).digest();
  const blk = Buffer.alloc(period);
  for (let i = 0; i < period; i++) blk[i] = block[i % 32] ^ (i * 131 + (i >> 5)) & 0xff;
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i++) out[i] = blk[i % period];
  return out;
}

function jsonLines(n) {
  const line = Buffer.from('{"op":"message","channel":"prices","offset":42,"data":{"symbol":"HRLD","bid":101.25}}\n');
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += line.length) line.copy(out, i, 0, Math.min(line.length, n - i));
  return out;
}

function connect(url, mode) {
  const pmd = { threshold: 0 };
  if (mode.serverBits !== undefined) pmd.serverMaxWindowBits = mode.serverBits;
  if (mode.clientBits !== undefined) pmd.clientMaxWindowBits = mode.clientBits;
  const ws = new WebSocket(url, { perMessageDeflate: pmd });
  const state = { ws, ext: '', messages: [], waiters: [], error: null, closed: null };
  const wake = () => {
    const w = state.waiters;
    state.waiters = [];
    for (const f of w) f();
  };
  ws.on('upgrade', (res) => {
    state.ext = res.headers['sec-websocket-extensions'] || '';
  });
  ws.on('open', wake);
  ws.on('message', (data, isBinary) => {
    state.messages.push({ data: Buffer.from(data), isBinary });
    wake();
  });
  ws.on('error', (err) => {
    state.error = err;
    wake();
  });
  ws.on('close', (code, reason) => {
    state.closed = { code, reason: reason.toString() };
    wake();
  });
  state.until = (what, pick) =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Mismatch(`${mode.name}: timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
      const check = () => {
        if (state.error) {
          clearTimeout(timer);
          reject(new Mismatch(`${mode.name}: ${what}: ${state.error.message}`));
          return;
        }
        const v = pick();
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
          return;
        }
        if (state.closed) {
          clearTimeout(timer);
          reject(new Mismatch(`${mode.name}: ${what}: closed with ${state.closed.code} ${state.closed.reason}`));
          return;
        }
        state.waiters.push(check);
      };
      check();
    });
  return state;
}

async function runMode(url, mode) {
  const c = connect(url, mode);
  await c.until('open', () => (c.ws.readyState === WebSocket.OPEN ? true : undefined));
  const params = c.ext.split(';').map((s) => s.trim());
  if (params[0] !== 'permessage-deflate') fail(`${mode.name}: extensions ${JSON.stringify(c.ext)}, want permessage-deflate`);
  const echoed = params.find((p) => p.startsWith('server_max_window_bits'));
  const want = mode.serverBits === undefined ? undefined : `server_max_window_bits=${mode.serverBits}`;
  if (echoed !== want) fail(`${mode.name}: response ${JSON.stringify(c.ext)}, want ${want || 'no server_max_window_bits'}`);

  const w = 1 << (mode.serverBits || 15);
  const payloads = [];
  for (const n of [w - 1, w, w + 1, 2 * w + 3, 3 * w + 7]) payloads.push([`periodic ${w + 1} of ${n}`, periodic(n, w + 1, n), true]);
  for (const period of [300, 1000, 5000, 20000]) payloads.push([`periodic ${period} of 96 KiB`, periodic(96 << 10, period, period), true]);
  payloads.push(['json lines 200 KiB', jsonLines(200 << 10), false]);
  payloads.push(['zeros 70000', Buffer.alloc(70000), true]);
  payloads.push(['random 5000', crypto.randomBytes(5000), true]);

  const checks = [];
  for (const [what, p, binary] of payloads) {
    await new Promise((resolve, reject) => c.ws.send(p, { binary }, (err) => (err ? reject(err) : resolve())));
    const got = await c.until(what, () => c.messages.shift());
    if (got.isBinary !== binary || !got.data.equals(p)) {
      fail(`${mode.name}: ${what}: echo of ${got.data.length} bytes (binary ${got.isBinary}) differs from the ${p.length} sent`);
    }
    checks.push(what);
  }
  c.ws.close(1000, 'done');
  await c.until('close', () => (c.closed ? true : undefined)).catch(() => {});
  if (!c.closed || c.closed.code !== 1000) fail(`${mode.name}: close ${JSON.stringify(c.closed)}, want 1000`);
  return { mode: mode.name, extensions: c.ext, checks };
}

async function main() {
  const url = process.argv[2];
  if (!url) throw new Error('usage: node window_client.js ws://host:port/echo');
  const results = [];
  for (const mode of MODES) results.push(await runMode(url, mode));
  return results;
}

const deadline = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, error: 'total timeout' }));
  process.exit(1);
}, TOTAL_TIMEOUT_MS);

main().then(
  (results) => {
    clearTimeout(deadline);
    console.log(JSON.stringify({ ok: true, ws: require('ws/package.json').version, node: process.version, results }));
    process.exit(0);
  },
  (err) => {
    clearTimeout(deadline);
    console.log(JSON.stringify({ ok: false, error: err instanceof Mismatch ? err.message : String(err && err.stack || err) }));
    process.exit(1);
  },
);
