/**
 * herald.js: the browser client for Herald's push protocol on /ws, with
 * Server-Sent Events (/sse) and long polling (/poll) as fallbacks.
 *
 * One ES module, no dependencies, no build step. Import it from the server
 * (`GET /herald.js` on the API listener) or copy it into your app.
 *
 *   import { HeraldClient } from '/herald.js';
 *
 *   const client = new HeraldClient('ws://127.0.0.1:8080/ws', {
 *     getToken: async () => (await fetch('/my/token')).text(), // or token: '...'
 *   });
 *   client.on('state', ({ state }) => console.log('client is', state));
 *
 *   const sub = client.subscribe('news');            // or ('news', { since: 41 })
 *   sub.on('message', ({ offset, data }) => render(offset, data));
 *   sub.on('missed', () => reloadFromBackend());     // history could not fill the gap
 *
 *   client.connect();
 *   await sub.ready();
 *   const { offset } = await client.publish('chat', { text: 'hi' }); // needs the publish right
 *   client.close();
 *
 * The shape follows centrifuge-js: a client with states and events, and one
 * Subscription object per channel with its own states and events. Both are
 * small event emitters: `on(event, fn)`, `once(event, fn)`, `off(event, fn)`;
 * every listener gets one context object. A throwing listener is reported
 * (window `error` event) and does not disturb the client.
 *
 * Options (all optional):
 *   token         string   sent as `?token=` (URL-encoded)
 *   getToken      async () => string; called before the first connect when
 *                 there is no token, and before any attempt that follows an
 *                 attempt that never opened (a browser cannot see the HTTP 401
 *                 of an expired token, only that the handshake failed)
 *   refreshToken  async () => string; when the connection's token expires the
 *                 server sends {"op":"refresh"} and closes the connection
 *                 with 4001 unless a new token for the same user arrives
 *                 within its -refresh-grace: the client calls refreshToken
 *                 (or getToken when refreshToken is not given) and sends the
 *                 result; 'refreshed' follows, or an 'error' of type 'token'
 *   minDelay      500      reconnect backoff, ms: the n-th retry waits
 *   maxDelay      15000      min(maxDelay, minDelay + random(0, minDelay * 2^n))
 *   pingInterval  20000    app-level {"op":"ping"} period in ms; 0 disables
 *   pongTimeout   10000    no pong within this: the connection is dead, reconnect
 *   timeout       10000    reply timeout for requests and for the WebSocket
 *                          handshake, ms
 *   WebSocket     globalThis.WebSocket; another constructor for other runtimes
 *   transports    ['websocket', 'sse', 'poll']: the transports to use, in
 *                 order of preference
 *   fallbackAfter 2        attempts in a row that never open before the
 *                          client moves on to the next transport (a proxy
 *                          that strips Upgrade, a network that blocks it)
 *   sseURL, pollURL  the /sse and /poll endpoints; default: url with
 *                 http(s) for ws(s) and the last path segment replaced
 *   pollTimeout   25000    how long the server may hold a poll, ms; a poll
 *                          not answered within it plus `timeout` is a dead
 *                          connection: reconnect
 *   EventSource, fetch  globalThis's; others for other runtimes
 *
 * Transports. WebSocket comes first; when fallbackAfter attempts in a row
 * cannot open it, the client moves to Server-Sent Events, then to long
 * polling (and round again, while none has ever opened: the server may
 * simply be down). The first transport that opens is kept until close(),
 * through reconnects: a server restart is not a reason to fall back.
 * connect() starts from the first again. `client.transport` says which it
 * uses, and the 'transport' event ({ transport, previous }) reports each
 * move. The subscription events and
 * the recovery are the same on every transport; SSE and polling are
 * receive-only, so publish() and ping() reject with 'receive_only' there
 * (publish through the HTTP API instead). On them, changing the
 * subscriptions reopens the stream (the client goes through 'connecting').
 *
 * Client states ('state' event: { state, previous }):
 *   'disconnected' -> connect() -> 'connecting' -> 'connected'
 *   A lost connection goes back to 'connecting' and retries with backoff until
 *   it reconnects or close() is called; close() and a server API
 *   disconnect (close code 4100) are the only ways to 'disconnected'. Every
 *   other close reconnects: server restarts (1001), slow-consumer closes
 *   (1008), network loss, a missing pong.
 * Client events:
 *   'connecting'   { code, reason }  the connection was lost; retrying
 *   'connected'    { reconnected, transport }  reconnected is false on the
 *                  first connect
 *   'transport'    { transport, previous }  the client fell back
 *   'disconnected' { code, reason }  after close()
 *   'refreshed'    {}                the server accepted a refreshed token
 *   'granted'      { subscription }  the server subscribed the connection to a
 *                  channel its token grants (the subs claim, -auto-personal)
 *                  and the app had no Subscription for it: attach listeners
 *                  here. Granted subscriptions are granted again after each
 *                  reconnect (the client does not resubscribe them; a gap in
 *                  between is reported as 'missed'). Do not subscribe() to a
 *                  channel the token grants: in a cluster the server may
 *                  answer that subscribe with bad_request first.
 *   'error'        { type, error }   type: 'transport' (an attempt failed),
 *                  'token' (getToken threw), 'server' (an error reply with no
 *                  request to reject), 'protocol' (an unreadable frame)
 *
 * client.subscribe(channel, { since }) returns a Subscription at once and
 * subscribes as soon as the client is connected (it throws if the channel
 * name is invalid or already subscribed). With `since`, the server first
 * replays the history after that offset; with `last: N` (1-1000, not with
 * since), the channel's newest N publications (a cache channel's latest
 * value); later resubscribes continue with since.
 * Subscription states: 'subscribing' -> 'subscribed' (back to 'subscribing'
 * while the client reconnects) -> 'unsubscribed' (after unsubscribe(), or a
 * permanent error such as 'forbidden').
 * Subscription events:
 *   'message'      { channel, offset, data }  each publication exactly once,
 *                  in offset order
 *   'subscribed'   { channel, offset, recovered, wasRecovering }
 *   'subscribing'  { code, reason }
 *   'unsubscribed' { code, reason }
 *   'missed'       { channel, since, offset }  the subscribe ack said
 *                  "recovered":false: messages after `since` are lost, so the
 *                  app should reload its state from its own backend
 *   'error'        { type: 'subscribe', error }
 *   'state'        { state, previous }
 *   'join', 'leave' { channel, user, conn }  presence changes on a channel
 *                  the server keeps presence for (-presence-join-leave)
 * A server API unsubscribe ({"op":"unsubscribed"}) ends the subscription
 * ('unsubscribed' with code 'unsubscribed'). A server API disconnect
 * (close code 4100) stops the client: 'disconnected' with that code, no
 * reconnect.
 *
 * Recovery. The subscription remembers the last offset it delivered
 * (`sub.offset`). After a reconnect it resubscribes with `since` = that
 * offset: the server replays what was published meanwhile, and any message
 * whose offset is not above the last one is dropped, so nothing is missed
 * and nothing is seen twice. Offsets are JavaScript numbers: exact up to
 * 2^53.
 *
 * Requests: publish(), ping() and sub.unsubscribe() return promises. An
 * {"op":"ack"} or {"op":"pong"} reply resolves; an {"op":"error"} reply
 * rejects with a HeraldError whose `code` is the server's (bad_request,
 * forbidden, unknown_op, rate_limited, too_many_channels, unavailable). The
 * client adds 'timeout' (no reply in time) and 'disconnected' (not connected
 * when called, or the connection was lost before the reply). Requests are
 * not queued while disconnected.
 */

const CHANNEL_RE = /^[A-Za-z0-9:_.-]{1,255}$/;

// The close code of a server API disconnect (docs/protocol.md).
const DISCONNECTED = 4100;

// Subscribe errors worth retrying on the same connection.
const TEMPORARY = new Set(['unavailable', 'rate_limited']);

const DEFAULTS = Object.freeze({
  token: '',
  getToken: null,
  refreshToken: null,
  minDelay: 500,
  maxDelay: 15000,
  pingInterval: 20000,
  pongTimeout: 10000,
  timeout: 10000,
  WebSocket: globalThis.WebSocket,
  transports: ['websocket', 'sse', 'poll'],
  fallbackAfter: 2,
  sseURL: '',
  pollURL: '',
  pollTimeout: 25000,
  EventSource: globalThis.EventSource,
  fetch: globalThis.fetch?.bind(globalThis),
});

const TRANSPORTS = new Set(['websocket', 'sse', 'poll']);

/** Client states. */
export const State = Object.freeze({
  Disconnected: 'disconnected',
  Connecting: 'connecting',
  Connected: 'connected',
});

/** Subscription states. */
export const SubState = Object.freeze({
  Unsubscribed: 'unsubscribed',
  Subscribing: 'subscribing',
  Subscribed: 'subscribed',
});

/** An error reply, or a request the client gave up on. */
export class HeraldError extends Error {
  /**
   * @param {string} code    the server's error code, or 'timeout' / 'disconnected'
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'HeraldError';
    this.code = code;
  }
}

/**
 * Backoff with full jitter, capped: minDelay + random(0, minDelay * 2^attempt),
 * never above maxDelay.
 */
export function backoff(attempt, minDelay, maxDelay) {
  const spread = Math.min(maxDelay, minDelay * 2 ** Math.min(attempt, 30));
  return Math.min(maxDelay, minDelay + Math.floor(Math.random() * spread));
}

function reportListenerError(err) {
  if (typeof globalThis.reportError === 'function') globalThis.reportError(err);
  else setTimeout(() => { throw err; });
}

/** A minimal event emitter: on, once, off. */
class Emitter {
  #listeners = new Map();

  /** Adds fn for event; returns this. */
  on(event, fn) {
    let set = this.#listeners.get(event);
    if (!set) this.#listeners.set(event, (set = new Set()));
    set.add(fn);
    return this;
  }

  /** Adds fn for the next event only; returns this. */
  once(event, fn) {
    const wrapper = (ctx) => {
      this.off(event, wrapper);
      fn(ctx);
    };
    wrapper.listener = fn; // so that off(event, fn) finds it
    return this.on(event, wrapper);
  }

  /** Removes fn, or every listener of event when fn is omitted; returns this. */
  off(event, fn) {
    const set = this.#listeners.get(event);
    if (!set) return this;
    if (fn === undefined) {
      this.#listeners.delete(event);
      return this;
    }
    for (const l of set) {
      if (l === fn || l.listener === fn) set.delete(l);
    }
    return this;
  }

  _emit(event, ctx) {
    const set = this.#listeners.get(event);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(ctx);
      } catch (err) {
        reportListenerError(err);
      }
    }
  }
}

/** A connection to Herald's /ws endpoint that survives reconnects. */
export class HeraldClient extends Emitter {
  /**
   * @param {string} url     ws:// or wss:// URL of /ws; a path ('/ws') is
   *                         resolved against the page's location
   * @param {object} [options] see the module comment
   */
  constructor(url, options = {}) {
    super();
    this.url = url;
    this.options = { ...DEFAULTS, ...options };
    const transports = this.options.transports.filter((t) => TRANSPORTS.has(t));
    if (transports.length === 0) throw new HeraldError('bad_request', 'no known transport in options.transports');
    this._transports = transports;
    this._transportIndex = 0;
    this._failsHere = 0; // attempts in a row on this transport that never opened
    this._kept = false; // a transport opened since connect(): no more fallback
    /** 'websocket', 'sse' or 'poll': the transport in use (or being tried). */
    this.transport = transports[0];
    /** 'disconnected', 'connecting' or 'connected'. */
    this.state = State.Disconnected;

    this._token = this.options.token || '';
    this._subs = new Map(); // channel -> Subscription
    this._pending = new Map(); // request id -> { done, timer }
    this._nextId = 1;
    this._ws = null;
    this._stream = null; // the SSE or poll transport: { close() }
    this._streamSince = new Map(); // channel -> the since the open stream asked for
    this._reopenQueued = false;
    this._generation = 0; // bumped per transport; stale async steps check it
    this._attempt = 0; // failed attempts since the last successful connect
    this._lastOpened = true; // whether the latest attempt opened
    this._everConnected = false;
    this._reconnectTimer = null;
    this._connectTimer = null;
    this._pingTimer = null;
    this._pingInFlight = false;
    this._replayWaiters = [];
    // When the browser comes back online, retry now rather than after the
    // backoff delay.
    this._onOnline = () => {
      if (this.state !== State.Connecting || !this._reconnectTimer) return;
      clearTimeout(this._reconnectTimer);
      this._reconnectTimer = null;
      this._attempt = 0;
      this._openTransport();
    };
  }

  /** Starts connecting; a no-op unless disconnected. */
  connect() {
    if (this.state !== State.Disconnected) return;
    this._attempt = 0;
    this._transportIndex = 0;
    this._failsHere = 0;
    this._kept = false;
    this.transport = this._transports[0];
    globalThis.addEventListener?.('online', this._onOnline);
    this._setState(State.Connecting);
    if (this.state === State.Connecting) this._openTransport();
  }

  /**
   * Closes the connection (code 1000) and stops reconnecting. Subscriptions
   * are kept: connect() resubscribes them from their last offsets.
   */
  close() {
    this._stop(1000, 'client closed');
  }

  /** Stops for good (close(), or a server API disconnect). */
  _stop(code, reason) {
    if (this.state === State.Disconnected) return;
    globalThis.removeEventListener?.('online', this._onOnline);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = null;
    this._teardown(code, reason);
    this._setState(State.Disconnected);
    this._subsLost(code, reason);
    this._emit('disconnected', { code, reason });
  }

  /**
   * Returns a new Subscription to channel; it subscribes once the client is
   * connected. options.since replays the history after that offset.
   */
  subscribe(channel, options = {}) {
    if (typeof channel !== 'string' || !CHANNEL_RE.test(channel)) {
      throw new HeraldError('bad_request', `invalid channel name ${JSON.stringify(channel)}`);
    }
    if (this._subs.has(channel)) {
      throw new HeraldError('already_subscribed', `already subscribed to ${channel}`);
    }
    const sub = new Subscription(this, channel, options);
    this._subs.set(channel, sub);
    sub._setState(SubState.Subscribing);
    if (this.state === State.Connected) this._sendSubscribe(sub);
    return sub;
  }

  /** The active Subscription to channel, or undefined. */
  getSubscription(channel) {
    return this._subs.get(channel);
  }

  /** Publishes data (any JSON value) to channel; resolves to { offset }. */
  async publish(channel, data) {
    this._needWebSocket('publish');
    const reply = await this._request({ op: 'publish', channel, data });
    return { offset: reply.offset };
  }

  /** Sends an app-level ping; resolves when the pong arrives. */
  async ping() {
    this._needWebSocket('ping');
    await this._request({ op: 'ping' }, this.options.pongTimeout);
  }

  _needWebSocket(what) {
    if (this.transport !== 'websocket') {
      throw new HeraldError('receive_only', `${what} needs the WebSocket transport; ${this.transport} is receive-only`);
    }
  }

  // --- transport ---------------------------------------------------------

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  _transportURL() {
    const u = new URL(this.url, globalThis.location?.href);
    if (u.protocol === 'http:') u.protocol = 'ws:';
    if (u.protocol === 'https:') u.protocol = 'wss:';
    if (this._token) u.searchParams.set('token', this._token);
    return u.href;
  }

  async _openTransport() {
    const gen = ++this._generation;
    const { getToken } = this.options;
    if (getToken && (!this._token || !this._lastOpened)) {
      let token;
      try {
        token = await getToken();
      } catch (error) {
        if (gen !== this._generation || this.state !== State.Connecting) return;
        this._emit('error', { type: 'token', error });
        this._scheduleReconnect();
        return;
      }
      if (gen !== this._generation || this.state !== State.Connecting) return;
      this._token = token || '';
    }
    if (this.transport !== 'websocket') {
      this._openStream(gen);
      return;
    }
    let ws;
    try {
      ws = new this.options.WebSocket(this._transportURL());
    } catch (error) {
      // A malformed URL: retrying cannot help.
      this._emit('error', { type: 'transport', error });
      this.close();
      return;
    }
    this._ws = ws;
    this._lastOpened = false;
    ws.onopen = () => ws === this._ws && this._onOpen();
    ws.onmessage = (ev) => ws === this._ws && this._onFrame(ev.data);
    ws.onclose = (ev) => ws === this._ws && this._lose(ev.code, ev.reason);
    // onerror carries no detail; the close event that follows has the code.
    this._connectTimer = setTimeout(() => {
      if (ws === this._ws) this._lose(4000, 'handshake timeout');
    }, this.options.timeout);
  }

  _onOpen() {
    clearTimeout(this._connectTimer);
    this._connectTimer = null;
    this._lastOpened = true;
    this._attempt = 0;
    const reconnected = this._everConnected;
    this._everConnected = true;
    this._failsHere = 0;
    this._kept = true;
    this._setState(State.Connected);
    this._emit('connected', { reconnected, transport: this.transport });
    if (this.state !== State.Connected) return; // a listener closed the client
    if (this.transport !== 'websocket') return; // the stream carries its subscriptions
    if (this.options.pingInterval > 0) {
      this._pingTimer = setInterval(() => this._keepalive(), this.options.pingInterval);
    }
    for (const sub of this._subs.values()) {
      if (sub.state === SubState.Subscribing && !sub._granted && !sub._retryTimer && !sub._inFlight) this._sendSubscribe(sub);
    }
  }

  _keepalive() {
    if (this._pingInFlight) return;
    this._pingInFlight = true;
    this._call({ op: 'ping' }, this.options.pongTimeout, () => {
      this._pingInFlight = false;
    });
  }

  /** The connection (or an attempt) is gone or unusable: drop it and retry. */
  _lose(code, reason) {
    if (code === DISCONNECTED) {
      // The server API disconnected this user: reconnecting would undo it.
      this._stop(code, reason || 'disconnected by the server');
      return;
    }
    const wasConnected = this.state === State.Connected;
    this._teardown(code, reason);
    this._setState(State.Connecting);
    if (wasConnected) {
      this._subsLost(code, reason);
      this._emit('connecting', { code, reason });
    } else {
      const detail = `code ${code}${reason ? `, ${reason}` : ''}`;
      this._emit('error', { type: 'transport', error: new HeraldError('transport', `${this.transport} connection failed (${detail})`) });
      this._maybeFallBack();
    }
    this._scheduleReconnect(); // unless a listener closed the client
  }

  /** After fallbackAfter attempts in a row that never opened, the next transport. */
  _maybeFallBack() {
    if (this._kept || this._transports.length < 2) return;
    if (++this._failsHere < this.options.fallbackAfter) return;
    const previous = this.transport;
    this._transportIndex = (this._transportIndex + 1) % this._transports.length;
    this.transport = this._transports[this._transportIndex];
    this._failsHere = 0;
    this._attempt = 0;
    this._emit('transport', { transport: this.transport, previous });
  }

  _scheduleReconnect() {
    if (this.state !== State.Connecting) return;
    const delay = backoff(this._attempt++, this.options.minDelay, this.options.maxDelay);
    clearTimeout(this._reconnectTimer);
    this._reconnectTimer = setTimeout(() => {
      this._reconnectTimer = null;
      this._openTransport();
    }, delay);
  }

  /** Forgets the current WebSocket (closing it if open) and fails pending requests. */
  _teardown(code, reason) {
    this._generation++;
    clearTimeout(this._connectTimer);
    clearInterval(this._pingTimer);
    this._connectTimer = this._pingTimer = null;
    this._pingInFlight = false;
    const stream = this._stream;
    this._stream = null;
    if (stream) stream.close();
    const ws = this._ws;
    this._ws = null;
    if (ws) {
      ws.onopen = ws.onmessage = ws.onclose = null;
      if (ws.readyState === 0 || ws.readyState === 1) {
        try {
          ws.close(code === 1000 ? 1000 : 4000, String(reason).slice(0, 100));
        } catch {
          ws.close();
        }
      }
    }
    const pending = [...this._pending.values()];
    this._pending.clear();
    this._replayWaiters = [];
    for (const p of pending) {
      clearTimeout(p.timer);
      p.done(new HeraldError('disconnected', 'the connection was lost before the reply'));
    }
  }

  /** Moves subscriptions back to 'subscribing' until the next connect. */
  _subsLost(code, reason) {
    for (const sub of [...this._subs.values()]) sub._onTransportLost(code, reason);
  }

  // --- requests and frames -----------------------------------------------

  /**
   * Sends frame with a fresh id; done(err, reply) runs exactly once,
   * synchronously with the reply frame (so the reply is handled before any
   * frame that follows it).
   */
  _call(frame, timeout, done) {
    if (this.state !== State.Connected || !this._ws) {
      done(new HeraldError('disconnected', 'not connected'));
      return;
    }
    const id = this._nextId++;
    const timer = setTimeout(() => {
      if (!this._pending.delete(id)) return;
      done(new HeraldError('timeout', `no reply to ${frame.op} within ${timeout} ms`));
      if (frame.op === 'ping') this._lose(4000, 'no pong');
    }, timeout);
    this._pending.set(id, { done, timer });
    this._ws.send(JSON.stringify({ ...frame, id }));
  }

  _request(frame, timeout = this.options.timeout) {
    return new Promise((resolve, reject) => {
      this._call(frame, timeout, (err, reply) => (err ? reject(err) : resolve(reply)));
    });
  }

  _onFrame(data) {
    let msg;
    try {
      if (typeof data !== 'string') throw new Error('binary frame');
      msg = JSON.parse(data);
      if (msg === null || typeof msg !== 'object') throw new Error('not a JSON object');
    } catch (err) {
      this._emit('error', { type: 'protocol', error: new HeraldError('protocol', `unreadable frame: ${err.message}`) });
      return;
    }
    switch (msg.op) {
      case 'message': {
        const sub = this._subs.get(msg.channel);
        if (sub) sub._onMessage(msg);
        return;
      }
      case 'join':
      case 'leave': {
        const sub = this._subs.get(msg.channel);
        if (sub && sub.state === SubState.Subscribed) {
          sub._emit(msg.op, { channel: msg.channel, user: msg.user, conn: msg.conn });
        }
        return;
      }
      case 'unsubscribed': {
        const sub = this._subs.get(msg.channel);
        if (sub) sub._finish('unsubscribed', 'unsubscribed by the server');
        return;
      }
      case 'ack':
      case 'pong':
      case 'error': {
        const p = typeof msg.id === 'number' ? this._pending.get(msg.id) : undefined;
        if (!p) {
          if (msg.op === 'error') {
            this._emit('error', { type: 'server', error: new HeraldError(msg.code, msg.message) });
          }
          return;
        }
        this._pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.op === 'error') p.done(new HeraldError(msg.code, msg.message));
        else p.done(null, msg);
        return;
      }
      case 'refresh':
        this._refresh();
        return;
      case 'subscribed':
        this._onGranted(msg);
        return;
      case 'unsubscribed': {
        // The server dropped a subscription (a refreshed token no longer
        // allows it).
        const sub = this._subs.get(msg.channel);
        if (sub) sub._finish(msg.code, 'the server dropped the subscription');
        return;
      }
      default:
        // Unknown ops are ignored so that newer servers can add some.
    }
  }

  /** A subscription the token grants arrived; see the 'granted' event. */
  _onGranted(msg) {
    if (typeof msg.channel !== 'string' || typeof msg.offset !== 'number') return;
    let sub = this._subs.get(msg.channel);
    const created = !sub;
    if (created) {
      sub = new Subscription(this, msg.channel, {});
      this._subs.set(msg.channel, sub);
    }
    sub._granted = true;
    if (sub.state === SubState.Subscribed) return;
    sub._setState(SubState.Subscribing);
    if (created) this._emit('granted', { subscription: sub });
    const since = sub.offset;
    sub._onAck({ offset: msg.offset, recovered: since === null || since === msg.offset }, since);
  }

  /**
   * Answers the server's refresh request with a token from refreshToken (or
   * getToken). When none comes, the server closes with 4001; the token is
   * then forgotten so that the reconnect asks getToken for a fresh one.
   */
  async _refresh() {
    const gen = this._generation;
    const fn = this.options.refreshToken || this.options.getToken;
    const fail = (error) => {
      if (this.options.getToken) this._token = '';
      this._emit('error', { type: 'token', error });
    };
    if (!fn) {
      fail(new HeraldError('token_expired', 'the token expired and no refreshToken option is set'));
      return;
    }
    let token;
    try {
      token = await fn();
    } catch (error) {
      if (gen === this._generation) fail(error);
      return;
    }
    if (gen !== this._generation) return; // the connection is gone meanwhile
    try {
      await this._request({ op: 'refresh', token: token || '' });
    } catch (error) {
      if (gen === this._generation) fail(error);
      return;
    }
    this._token = token;
    this._emit('refreshed', {});
  }

  _sendSubscribe(sub) {
    if (this.transport !== 'websocket') {
      this._queueReopen();
      return;
    }
    const frame = { op: 'subscribe', channel: sub.channel };
    const since = sub.offset;
    const last = since === null ? sub._last : 0;
    if (since !== null) frame.since = since;
    else if (last) frame.last = last;
    sub._inFlight = true;
    this._call(frame, this.options.timeout, (err, ack) => {
      sub._inFlight = false;
      if (err) sub._onSubscribeError(err);
      else sub._onAck(ack, since, last);
    });
  }

  // --- SSE and long polling ---------------------------------------------

  /** The /sse or /poll URL for the current subscriptions and positions. */
  _streamURL(kind) {
    const explicit = kind === 'sse' ? this.options.sseURL : this.options.pollURL;
    const u = new URL(explicit || this.url, globalThis.location?.href);
    if (!explicit) {
      if (u.protocol === 'ws:') u.protocol = 'http:';
      if (u.protocol === 'wss:') u.protocol = 'https:';
      u.pathname = u.pathname.replace(/[^/]*$/, kind);
    }
    this._streamSince = new Map();
    const since = [];
    for (const sub of this._subs.values()) {
      if (sub.state === SubState.Unsubscribed) continue;
      u.searchParams.append('channel', sub.channel);
      this._streamSince.set(sub.channel, sub.offset);
      if (sub.offset !== null) since.push(`${sub.channel}:${sub.offset}`);
    }
    if (since.length > 0) u.searchParams.set('since', since.join(','));
    if (this._token) u.searchParams.set('token', this._token);
    return u;
  }

  /** Opens the SSE or poll transport; with no subscription it is connected idle. */
  _openStream(gen) {
    this._lastOpened = false;
    if (this._subs.size === 0) {
      this._onOpen();
      return;
    }
    this._connectTimer = setTimeout(() => {
      if (gen === this._generation) this._lose(4000, 'open timeout');
    }, this.options.timeout);
    if (this.transport === 'sse') this._openSSE(gen);
    else this._poll(gen, true);
  }

  _openSSE(gen) {
    let es;
    try {
      es = new this.options.EventSource(this._streamURL('sse').href);
    } catch (error) {
      this._emit('error', { type: 'transport', error });
      this.close();
      return;
    }
    this._stream = { close: () => es.close() };
    const live = () => gen === this._generation;
    es.onopen = () => live() && this._onOpen();
    // EventSource reconnects by itself; the client does, with its backoff,
    // its fallback and its own positions.
    es.onerror = () => live() && this._lose(4000, 'event stream failed');
    es.addEventListener('message', (ev) => live() && this._onFrame(ev.data));
    es.addEventListener('subscribed', (ev) => live() && this._onStreamAck(JSON.parse(ev.data)));
    es.addEventListener('subscribe_error', (ev) => {
      if (!live()) return;
      const e = JSON.parse(ev.data);
      this._subs.get(e.channel)?._onSubscribeError(new HeraldError(e.code, e.message));
    });
  }

  _onStreamAck(ack, offset = ack.offset) {
    const sub = this._subs.get(ack.channel);
    if (!sub || !this._streamSince.has(ack.channel)) return;
    sub._onAck({ ...ack, offset }, this._streamSince.get(ack.channel));
  }

  /** One long poll after another until the transport is torn down. */
  async _poll(gen, first) {
    const live = () => gen === this._generation;
    while (live()) {
      const u = this._streamURL('poll');
      u.searchParams.set('timeout', first ? '0' : `${Math.round(this.options.pollTimeout / 1000)}s`);
      const ctrl = new AbortController();
      this._stream = { close: () => ctrl.abort() };
      // A poll the server should have answered by now is a dead path
      // (a proxy or network that swallows it), as a missing pong is.
      const hold = first ? 0 : this.options.pollTimeout;
      const deadline = setTimeout(() => ctrl.abort(), hold + this.options.timeout);
      let answer;
      try {
        const res = await this.options.fetch(u.href, { signal: ctrl.signal, cache: 'no-store' });
        if (!res.ok) throw new HeraldError('transport', `poll answered HTTP ${res.status}`);
        answer = await res.json();
      } catch (err) {
        if (live()) this._lose(4000, ctrl.signal.aborted ? 'poll not answered in time' : err.message || 'poll failed');
        return;
      } finally {
        clearTimeout(deadline);
      }
      if (!live()) return;
      const since = answer.since || {};
      if (first) {
        first = false;
        this._onOpen();
        if (!live()) return;
        // The answer's positions follow its messages; the ack's comes
        // before the first of them.
        const firstOffset = new Map();
        for (const m of answer.messages) if (!firstOffset.has(m.channel)) firstOffset.set(m.channel, m.offset);
        for (const [channel, pos] of Object.entries(since)) {
          const before = firstOffset.has(channel) ? firstOffset.get(channel) - 1 : pos;
          const asked = this._streamSince.get(channel);
          const ack = { channel, offset: before };
          if (asked !== null && asked !== undefined) ack.recovered = answer.recovered;
          this._onStreamAck(ack);
        }
      }
      for (const m of answer.messages) this._subs.get(m.channel)?._onMessage(m);
      for (const [channel, pos] of Object.entries(since)) {
        const sub = this._subs.get(channel);
        if (sub && sub.state === SubState.Subscribed && (sub.offset === null || pos > sub.offset)) sub.offset = pos;
      }
    }
  }

  /** The subscriptions changed while on a stream: reopen it once, soon. */
  _queueReopen() {
    if (this._reopenQueued || this.state !== State.Connected) return;
    this._reopenQueued = true;
    queueMicrotask(() => {
      this._reopenQueued = false;
      if (this.state !== State.Connected || this.transport === 'websocket') return;
      this._teardown(4001, 'subscriptions changed');
      this._setState(State.Connecting);
      this._subsLost(4001, 'subscriptions changed');
      this._emit('connecting', { code: 4001, reason: 'subscriptions changed' });
      this._openTransport();
    });
  }

  /**
   * After a subscribe with since, the server sends the ack, then the
   * replayed history, in one go. A pong to a ping sent after the ack arrives
   * behind the whole replay, so when it comes, the subscription's position
   * can move up to the ack's offset even if the history had nothing to send
   * (it may have been lost on a restart).
   */
  _afterReplay(sub, top) {
    this._replayWaiters.push([sub, top]);
    if (this._replayWaiters.length > 1) return;
    queueMicrotask(() => {
      const waiters = this._replayWaiters;
      this._replayWaiters = [];
      if (waiters.length === 0) return;
      this._call({ op: 'ping' }, this.options.pongTimeout, (err) => {
        if (err) return;
        for (const [s, t] of waiters) s._onReplayDone(t);
      });
    });
  }
}

/** One channel's subscription; create it with client.subscribe(). */
export class Subscription extends Emitter {
  constructor(client, channel, options) {
    super();
    this.client = client;
    this.channel = channel;
    /** 'unsubscribed', 'subscribing' or 'subscribed'. */
    this.state = SubState.Unsubscribed;
    /**
     * The last offset delivered (or the channel's offset at subscribe time);
     * the next subscribe asks for what came after it. null before the first
     * subscribe without since.
     */
    this.offset = Number.isSafeInteger(options.since) && options.since >= 0 ? options.since : null;
    this._replayTop = null; // ack offset a replay may still be running up to
    this._attempt = 0; // temporary subscribe failures in a row
    this._retryTimer = null;
    this._inFlight = false; // a subscribe request awaits its reply
    this._last = Number.isSafeInteger(options.last) && options.last > 0 && this.offset === null ? options.last : 0;
    this._granted = false; // the server subscribes it on connect (see 'granted')
  }

  /** Resolves once subscribed; rejects if unsubscribed first or timeout ms pass. */
  ready(timeout = 0) {
    if (this.state === SubState.Subscribed) return Promise.resolve(this);
    if (this.state === SubState.Unsubscribed) {
      return Promise.reject(new HeraldError('unsubscribed', `not subscribed to ${this.channel}`));
    }
    return new Promise((resolve, reject) => {
      let timer = null;
      const onState = ({ state }) => {
        if (state === SubState.Subscribed) finish(null);
        else if (state === SubState.Unsubscribed) {
          finish(new HeraldError('unsubscribed', `unsubscribed from ${this.channel}`));
        }
      };
      const finish = (err) => {
        clearTimeout(timer);
        this.off('state', onState);
        if (err) reject(err);
        else resolve(this);
      };
      this.on('state', onState);
      if (timeout > 0) {
        timer = setTimeout(
          () => finish(new HeraldError('timeout', `not subscribed to ${this.channel} within ${timeout} ms`)),
          timeout,
        );
      }
    });
  }

  /** Publishes data to this channel; see HeraldClient.publish. */
  publish(data) {
    return this.client.publish(this.channel, data);
  }

  /**
   * Stops the subscription; the client forgets it (subscribe again with
   * { since: sub.offset } to continue where it stopped). Resolves when the
   * server has acknowledged, or at once when not connected.
   */
  unsubscribe() {
    if (this.state === SubState.Unsubscribed) return Promise.resolve();
    const client = this.client;
    const onServer = this.state === SubState.Subscribed || this._inFlight;
    this._finish('unsubscribe', 'unsubscribe called');
    if (client.transport !== 'websocket') {
      client._queueReopen();
      return Promise.resolve();
    }
    if (!onServer || client.state !== State.Connected) return Promise.resolve();
    return client._request({ op: 'unsubscribe', channel: this.channel }).then(
      () => undefined,
      (err) => {
        // A lost connection drops every subscription on the server anyway.
        if (err.code !== 'disconnected') throw err;
      },
    );
  }

  _setState(state) {
    if (state === this.state) return;
    const previous = this.state;
    this.state = state;
    this._emit('state', { state, previous });
  }

  /** Leaves for good: the client forgets this subscription. */
  _finish(code, reason) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._replayTop = null;
    if (this.client._subs.get(this.channel) === this) this.client._subs.delete(this.channel);
    this._setState(SubState.Unsubscribed);
    this._emit('unsubscribed', { code, reason });
  }

  _onTransportLost(code, reason) {
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    this._replayTop = null;
    if (this.state === SubState.Subscribed) {
      this._setState(SubState.Subscribing);
      this._emit('subscribing', { code, reason });
    }
  }

  _onAck(ack, since, last) {
    if (this.state !== SubState.Subscribing) return;
    this._attempt = 0;
    const top = typeof ack.offset === 'number' ? ack.offset : 0;
    const wasRecovering = since !== null;
    let recovered = true;
    if (!wasRecovering && last) {
      // The newest publications up to top follow the ack: take every one,
      // then stand at top once they are through.
      this._last = 0;
      this.offset = null;
      this._replayTop = top;
      this.client._afterReplay(this, top);
    } else if (!wasRecovering) {
      this.offset = top;
    } else {
      recovered = ack.recovered !== false;
      if (top < since) {
        // Offsets never go backwards on a channel; a top below our position
        // means the channel was reset, and keeping the old position would
        // drop every new message as a duplicate.
        recovered = false;
        this.offset = top;
      } else if (top > since) {
        this._replayTop = top;
        this.client._afterReplay(this, top);
      }
    }
    this._setState(SubState.Subscribed);
    this._emit('subscribed', { channel: this.channel, offset: top, recovered, wasRecovering });
    if (!recovered && this.state === SubState.Subscribed) {
      this._emit('missed', { channel: this.channel, since, offset: top });
    }
  }

  _onReplayDone(top) {
    if (this._replayTop !== top || this.state !== SubState.Subscribed) return;
    this._replayTop = null;
    if (top > this.offset) this.offset = top;
  }

  _onSubscribeError(err) {
    if (this.state !== SubState.Subscribing) return;
    if (err.code === 'disconnected') return; // resubscribes on reconnect
    if (err.code === 'timeout') {
      // The server may yet subscribe us; a fresh connection is the clean state.
      this._emit('error', { type: 'subscribe', error: err });
      if (this.client.state === State.Connected) this.client._lose(4000, 'subscribe timeout');
      return;
    }
    this._emit('error', { type: 'subscribe', error: err });
    if (TEMPORARY.has(err.code)) {
      const { minDelay, maxDelay } = this.client.options;
      this._retryTimer = setTimeout(() => {
        this._retryTimer = null;
        if (this.state === SubState.Subscribing && this.client.state === State.Connected) {
          this.client._sendSubscribe(this);
        }
      }, backoff(this._attempt++, minDelay, maxDelay));
      return;
    }
    this._finish(err.code, err.message);
  }

  _onMessage(msg) {
    if (this.state !== SubState.Subscribed || typeof msg.offset !== 'number') return;
    if (this.offset !== null && msg.offset <= this.offset) return; // seen already
    this.offset = msg.offset;
    if (this._replayTop !== null && msg.offset >= this._replayTop) this._replayTop = null;
    this._emit('message', { channel: this.channel, offset: msg.offset, data: msg.data });
  }
}

export default HeraldClient;
