'use strict';

// sse_client.js reads Herald's /sse with the npm `eventsource` package (the
// WHATWG EventSource for Node) and reports what it received.
//
//   node sse_client.js http://127.0.0.1:PORT/sse?channel=CHANNEL
//
// It prints {"ready":true} once the first "subscribed" event arrives, then
// reads "message" events until one whose data is {"last":true}; when the
// stream breaks, EventSource reconnects by itself, sending the last event id
// as Last-Event-ID. It prints one JSON line at the end:
// {"ok":true,"offsets":[...],"acks":[...],"errors":n} (offsets of every
// message event in arrival order, the data of every "subscribed" event, the
// stream failures seen), or {"ok":false,"error":...} on a timeout. The Go
// test TestNodeEventSource in ../sse_node_test.go runs it.

const { EventSource } = require('eventsource');

const [url] = process.argv.slice(2);
const offsets = [];
const acks = [];
let errors = 0;
let finished = false;

const es = new EventSource(url);
const timer = setTimeout(() => finish({ ok: false, error: 'timeout' }, 1), 30000);

function finish(result, code) {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  es.close();
  process.stdout.write(JSON.stringify(Object.assign({ offsets, acks, errors }, result)) + '\n');
  process.exitCode = code;
}

es.addEventListener('subscribed', (e) => {
  acks.push(JSON.parse(e.data));
  if (acks.length === 1) process.stdout.write(JSON.stringify({ ready: true }) + '\n');
});
es.addEventListener('message', (e) => {
  const m = JSON.parse(e.data);
  if (m.op !== 'message' || e.lastEventId !== `${m.channel}:${m.offset}`) {
    finish({ ok: false, error: `bad event id ${e.lastEventId} for ${e.data}` }, 1);
    return;
  }
  offsets.push(m.offset);
  if (m.data && m.data.last === true) finish({ ok: true }, 0);
});
es.onerror = () => { errors++; };
