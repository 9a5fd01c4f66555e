'use strict';

// echo_client.js drives the npm `ws` client against a Herald /echo route and
// checks that every message comes back byte for byte with the same opcode.
//
//   node echo_client.js ws://127.0.0.1:PORT/echo
//
// It prints one JSON line and exits 0 when every check passed; on the first
// mismatch it prints {"ok":false,"error":...} and exits 1. The Go test
// TestNodeWS in ../node_test.go runs it.

const crypto = require('crypto');
const WebSocket = require('ws');

const STEP_TIMEOUT_MS = 10000;
const TOTAL_TIMEOUT_MS = 40000;

// Each mode is one connection. perMessageDeflate is passed to the ws client
// as is; expectDeflate is whether Herald must accept the offer.
const MODES = [
  { name: 'plain', perMessageDeflate: false, expectDeflate: false },
  // threshold 0 makes ws compress every message it sends, even empty ones.
  { name: 'deflate', perMessageDeflate: { threshold: 0 }, expectDeflate: true },
  // An offer that limits the server's window is accepted: Herald compresses
  // within 2^10 bytes (window_client.js checks every window from 8 to 15).
  { name: 'deflate-window-10', perMessageDeflate: { threshold: 0, serverMaxWindowBits: 10 }, expectDeflate: true },
];

class Mismatch extends Error {}

function fail(msg) {
  throw new Mismatch(msg);
}

function describe(buf) {
  const head = buf.subarray(0, 16).toString('hex');
  return `${buf.length} bytes starting ${head}`;
}

// Client wraps a ws connection with queues of received messages and pongs
// so the checks can await them in order.
class Client {
  constructor(url, mode) {
    this.mode = mode;
    this.messages = [];
    this.pongs = [];
    this.waiters = [];
    this.closed = null;
    this.error = null;
    this.extensionsHeader = '';
    this.ws = new WebSocket(url, { perMessageDeflate: mode.perMessageDeflate });
    this.ws.on('upgrade', (res) => {
      this.extensionsHeader = res.headers['sec-websocket-extensions'] || '';
    });
    this.ws.on('open', () => this.wake());
    this.ws.on('message', (data, isBinary) => {
      this.messages.push({ data: Buffer.from(data), isBinary });
      this.wake();
    });
    this.ws.on('pong', (data) => {
      this.pongs.push(Buffer.from(data));
      this.wake();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    this.ws.on('error', (err) => {
      this.error = err;
      this.wake();
    });
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  // until resolves with pick()'s first non-undefined result, failing on an
  // error, an unexpected close or the step timeout.
  until(what, pick) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Mismatch(`${this.mode.name}: timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
      const check = () => {
        if (this.error) {
          clearTimeout(timer);
          reject(new Mismatch(`${this.mode.name}: ${what}: connection error: ${this.error.message}`));
          return;
        }
        const v = pick();
        if (v !== undefined) {
          clearTimeout(timer);
          resolve(v);
          return;
        }
        if (this.closed) {
          clearTimeout(timer);
          reject(new Mismatch(`${this.mode.name}: ${what}: connection closed with ${this.closed.code} ${this.closed.reason}`));
          return;
        }
        this.waiters.push(check);
      };
      check();
    });
  }

  open() {
    if (this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    return this.until('open', () => (this.ws.readyState === WebSocket.OPEN ? true : undefined));
  }

  nextMessage(what) {
    return this.until(what, () => this.messages.shift());
  }

  nextPong(what) {
    return this.until(what, () => this.pongs.shift());
  }

  send(data, options) {
    return new Promise((resolve, reject) => {
      this.ws.send(data, options, (err) => (err ? reject(err) : resolve()));
    });
  }

  async expectEcho(what, want, isBinary) {
    const got = await this.nextMessage(what);
    if (got.isBinary !== isBinary) {
      fail(`${this.mode.name}: ${what}: got ${got.isBinary ? 'binary' : 'text'}, want ${isBinary ? 'binary' : 'text'}`);
    }
    if (!got.data.equals(want)) {
      let i = 0;
      while (i < got.data.length && i < want.length && got.data[i] === want[i]) i++;
      fail(`${this.mode.name}: ${what}: got ${describe(got.data)}, want ${describe(want)}; first difference at byte ${i}`);
    }
  }
}

function compressible(n) {
  const line = Buffer.from('{"channel":"prices","symbol":"HRLD","bid":101.25,"ask":101.5}\n');
  const out = Buffer.alloc(n);
  for (let i = 0; i < n; i += line.length) line.copy(out, i, 0, Math.min(line.length, n - i));
  return out;
}

async function runMode(url, mode) {
  const c = new Client(url, mode);
  const checks = [];
  const check = async (name, fn) => {
    await fn();
    checks.push(name);
  };

  await c.open();
  const negotiated = /permessage-deflate/.test(c.extensionsHeader);
  if (negotiated !== mode.expectDeflate) {
    fail(`${mode.name}: Sec-WebSocket-Extensions ${JSON.stringify(c.extensionsHeader)}, want deflate=${mode.expectDeflate}`);
  }
  if (negotiated && !/server_no_context_takeover/.test(c.extensionsHeader)) {
    fail(`${mode.name}: Herald accepted deflate without server_no_context_takeover: ${c.extensionsHeader}`);
  }

  await check('text', async () => {
    const s = 'hello, herald';
    await c.send(s, { binary: false });
    await c.expectEcho('text', Buffer.from(s), false);
  });

  await check('text-utf8', async () => {
    const s = 'h\u00e9llo w\u00f6rld \u2713 \u{1F680} \u4f60\u597d';
    await c.send(s, { binary: false });
    await c.expectEcho('text-utf8', Buffer.from(s, 'utf8'), false);
  });

  await check('binary', async () => {
    const b = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) b[i] = i;
    await c.send(b, { binary: true });
    await c.expectEcho('binary', b, true);
  });

  await check('empty', async () => {
    await c.send('', { binary: false });
    await c.expectEcho('empty text', Buffer.alloc(0), false);
    await c.send(Buffer.alloc(0), { binary: true });
    await c.expectEcho('empty binary', Buffer.alloc(0), true);
  });

  await check('fragmented-text', async () => {
    // The euro sign is split across two fragments: the server must validate
    // UTF-8 across frame boundaries, not per frame.
    const whole = Buffer.from('fragments: one, two, \u20ac three, four', 'utf8');
    const cut = whole.indexOf(0xe2) + 1;
    const parts = [whole.subarray(0, 11), whole.subarray(11, cut), whole.subarray(cut, cut + 5), whole.subarray(cut + 5)];
    for (let i = 0; i < parts.length; i++) {
      await c.send(parts[i], { binary: false, fin: i === parts.length - 1 });
    }
    await c.expectEcho('fragmented text', whole, false);
  });

  await check('fragmented-binary', async () => {
    const whole = crypto.randomBytes(3 * 70000 + 17); // fragments beyond the 16-bit length form
    const parts = [whole.subarray(0, 1), whole.subarray(1, 70001), whole.subarray(70001, 140001), whole.subarray(140001)];
    for (let i = 0; i < parts.length; i++) {
      await c.send(parts[i], { binary: true, fin: i === parts.length - 1 });
    }
    await c.expectEcho('fragmented binary', whole, true);
  });

  await check('ping-pong', async () => {
    const payload = Buffer.from('are you there?');
    c.ws.ping(payload);
    const got = await c.nextPong('pong');
    if (!got.equals(payload)) fail(`${mode.name}: pong payload ${describe(got)}, want ${describe(payload)}`);
    c.ws.ping();
    const empty = await c.nextPong('empty pong');
    if (empty.length !== 0) fail(`${mode.name}: empty ping answered with ${describe(empty)}`);
  });

  await check('1MiB', async () => {
    const bin = crypto.randomBytes(1 << 20);
    await c.send(bin, { binary: true });
    await c.expectEcho('1 MiB binary', bin, true);
    const text = compressible(1 << 20);
    await c.send(text, { binary: false });
    await c.expectEcho('1 MiB text', text, false);
  });

  await check('pipelined-100', async () => {
    const sent = [];
    for (let i = 0; i < 100; i++) {
      const isBinary = i % 3 === 0;
      const data = isBinary ? crypto.randomBytes(1 + ((i * 97) % 5000)) : Buffer.from(`message ${i} `.repeat(1 + (i % 40)));
      sent.push({ data, isBinary });
      c.ws.send(data, { binary: isBinary });
    }
    for (let i = 0; i < sent.length; i++) {
      await c.expectEcho(`pipelined message ${i}`, sent[i].data, sent[i].isBinary);
    }
  });

  await check('close-1000', async () => {
    c.ws.close(1000, 'bye');
    const closed = await c.until('close', () => c.closed || undefined);
    if (closed.code !== 1000) fail(`${mode.name}: close code ${closed.code}, want 1000`);
  });

  if (c.messages.length !== 0) fail(`${mode.name}: ${c.messages.length} unexpected extra messages`);
  return { mode: mode.name, extensions: c.extensionsHeader, deflate: negotiated, checks };
}

async function main() {
  const url = process.argv[2];
  if (!url || !/^wss?:\/\//.test(url)) {
    process.stderr.write('usage: node echo_client.js ws://host:port/echo\n');
    process.exit(2);
  }
  const watchdog = setTimeout(() => {
    process.stdout.write(JSON.stringify({ ok: false, error: `gave up after ${TOTAL_TIMEOUT_MS} ms` }) + '\n');
    process.exit(1);
  }, TOTAL_TIMEOUT_MS);
  const results = [];
  for (const mode of MODES) {
    results.push(await runMode(url, mode));
  }
  clearTimeout(watchdog);
  const wsVersion = require('ws/package.json').version;
  process.stdout.write(JSON.stringify({ ok: true, ws: wsVersion, node: process.version, results }) + '\n');
}

main().catch((err) => {
  const msg = err instanceof Mismatch ? err.message : `unexpected: ${err && err.stack ? err.stack : err}`;
  process.stdout.write(JSON.stringify({ ok: false, error: msg }) + '\n');
  process.exit(1);
});
