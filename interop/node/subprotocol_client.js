'use strict';

// subprotocol_client.js opens the npm `ws` client against Herald's /ws
// with several Sec-WebSocket-Protocol offers and reports, for each, the
// subprotocol the server chose and the first reply to a ping, or the HTTP
// status and body of a refused upgrade.
//
//   node subprotocol_client.js ws://127.0.0.1:PORT/ws
//
// It prints one JSON line: {"ok":true,"results":[{"offer":[...],
// "protocol":"...","reply":"pong"} or {"offer":[...],"status":400,
// "body":"..."}]}. The Go test TestNodeSubprotocol in
// ../subprotocol_node_test.go runs it and checks the results.

const WebSocket = require('ws');

const url = process.argv[2];
const offers = [[], ['herald.json.v1'], ['chat', 'herald.json.v1'], ['chat'], ['chat', 'superchat']];

function attempt(offer) {
  return new Promise((resolve) => {
    const ws = offer.length ? new WebSocket(url, offer) : new WebSocket(url);
    const timer = setTimeout(() => { ws.terminate(); resolve({ offer, error: 'timeout' }); }, 10000);
    ws.on('unexpected-response', (req, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { clearTimeout(timer); resolve({ offer, status: res.statusCode, body }); });
    });
    ws.on('open', () => ws.send(JSON.stringify({ op: 'ping', id: 1 })));
    ws.on('message', (raw) => {
      clearTimeout(timer);
      resolve({ offer, protocol: ws.protocol, reply: JSON.parse(raw.toString('utf8')).op });
      ws.close(1000);
    });
    ws.on('error', (err) => { clearTimeout(timer); resolve({ offer, error: String(err && err.message) }); });
  });
}

(async () => {
  const results = [];
  for (const offer of offers) results.push(await attempt(offer));
  process.stdout.write(JSON.stringify({ ok: true, results }) + '\n');
})();
