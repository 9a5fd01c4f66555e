'use strict';

// subscribe_client.js subscribes the npm `ws` client (which, as RFC 6455
// requires, fails a connection on a text frame that is not UTF-8) to one
// channel of Herald's /ws and reports what it received.
//
//   node subscribe_client.js ws://127.0.0.1:PORT/ws CHANNEL
//
// It prints {"ready":true} once the subscribe is acked, then waits for a
// message whose data is {"last":true}. It prints one JSON line at the end:
// {"ok":true,"received":[data...]} after that message, or
// {"ok":false,"close":code,"reason":...,"error":...,"received":[...]} when
// the connection ended first. The Go test TestNodeSubscriberSurvivesBadPublish
// in ../publish_node_test.go runs it.

const WebSocket = require('ws');

const [url, channel] = process.argv.slice(2);
const received = [];
let lastError = '';
let finished = false;

function finish(result, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(Object.assign({ received }, result)) + '\n');
  process.exitCode = code;
}

const ws = new WebSocket(url);
const timer = setTimeout(() => {
  finish({ ok: false, error: 'timeout' }, 1);
  ws.terminate();
}, 30000);

ws.on('open', () => ws.send(JSON.stringify({ op: 'subscribe', channel, id: 1 })));
ws.on('message', (raw, isBinary) => {
  if (isBinary) return;
  const m = JSON.parse(raw.toString('utf8'));
  if (m.op === 'ack' && m.id === 1) {
    process.stdout.write(JSON.stringify({ ready: true }) + '\n');
    return;
  }
  if (m.op !== 'message') return;
  received.push(m.data);
  if (m.data && m.data.last === true) {
    clearTimeout(timer);
    finish({ ok: true }, 0);
    ws.close(1000);
  }
});
ws.on('error', (err) => { lastError = String(err && err.message); });
ws.on('close', (code, reason) => {
  clearTimeout(timer);
  finish({ ok: false, close: code, reason: reason.toString(), error: lastError }, 1);
});
