// wss_client.js: one push-protocol client on the npm ws package, over
// wss:// with a CA it is told to trust, driven by the tlsproxy tests.
//
//   node wss_client.js '{"url":"wss://127.0.0.1:8443/ws","ca":"/path/ca.pem",
//                        "channel":"news","since":12,"sendBytes":0}'
//
// It trusts only the given CA (the "ca" option, not NODE_EXTRA_CA_CERTS,
// so that the system store cannot make a broken chain pass). With a
// channel it subscribes (with since when given); with sendBytes > 0 it
// sends one text message of that many bytes instead. Every event is one
// JSON line on stdout: {"event":"open"}, {"event":"frame","data":"..."},
// {"event":"close","code":1001,"reason":"..."}, {"event":"error",...}. It
// exits after the close.
'use strict';

const fs = require('fs');
const WebSocket = require('ws');

const opts = JSON.parse(process.argv[2] || '{}');
const emit = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const ws = new WebSocket(opts.url, {
  ca: fs.readFileSync(opts.ca),
  handshakeTimeout: 10000,
  perMessageDeflate: false,
});

ws.on('open', () => {
  emit({ event: 'open' });
  if (opts.sendBytes > 0) {
    ws.send('x'.repeat(opts.sendBytes));
    return;
  }
  const req = { op: 'subscribe', channel: opts.channel, id: 1 };
  if (opts.since !== undefined && opts.since !== null) {
    req.since = opts.since;
  }
  ws.send(JSON.stringify(req));
});
ws.on('message', (data, isBinary) => {
  emit({ event: 'frame', binary: isBinary, data: data.toString() });
});
ws.on('close', (code, reason) => {
  emit({ event: 'close', code, reason: reason.toString() });
  process.exit(0);
});
ws.on('error', (err) => {
  emit({ event: 'error', message: String(err && err.message) });
});
// A bound of its own, in case the test forgets to end the run.
setTimeout(() => {
  emit({ event: 'error', message: 'wss_client.js: 60 s passed' });
  process.exit(2);
}, 60000).unref();
