// @changecast/client — an exact local replica of the documents changecast
// streams to you.
//
//   const client = new ChangecastClient({
//     url: 'https://changecast.example.com/api',   // the app negotiate base
//     hub: 'orders',
//     accessTokenFactory: () => myLogin.token,       // your app's token
//     onChange: (ch) => render(ch),
//   });
//   await client.start();
//   client.get('public.orders', '17');
//
// start() connects through changecast's app negotiate with the official
// SignalR client and buffers what arrives, loads the snapshot
// ({url}/snapshot: your documents with exact versions), then applies the
// buffer: from then on the replica equals the source's documents you may
// see, and follows them. A refetch (a change that could not be sent as
// data, a gap) is answered by the one-document snapshot. With a history on
// the server, every envelope carries its stream's epoch and offset: the
// client applies each stream in order, fills gaps from {url}/changes,
// catches up every stream after a reconnect, and reloads a stream from a
// snapshot when its history is gone (a new epoch, or trimmed: 410).
//
// @microsoft/signalr is a peer dependency: pass the module as `signalR`
// (in a page, window.signalR from its browser bundle); otherwise it is
// imported.
import { Replica, compareVersions } from './replica.js';

export { Replica, compareVersions };

const joinURL = (base, path) => base.replace(/\/+$/, '') + path;

/** ChangecastClient keeps a Replica current from one hub. */
export class ChangecastClient {
  constructor(opts = {}) {
    if (!opts.url) throw new TypeError('ChangecastClient: url (the app negotiate base, e.g. https://host/api) is required');
    if (!opts.hub) throw new TypeError('ChangecastClient: hub is required');
    this.url = opts.url;
    this.hub = opts.hub;
    this.method = opts.method || 'changes';
    this._tokenFactory = opts.accessTokenFactory;
    this._signalR = opts.signalR;
    this._configure = opts.configure;
    this._fetch = opts.fetch || ((...a) => globalThis.fetch(...a));
    this._onState = opts.onState || (() => {});
    this._onError = opts.onError || ((err) => console.warn('changecast:', err));
    this._snapshotLimit = opts.snapshotLimit;
    this._settleMs = opts.settleMs ?? 250;
    this._gapWaitMs = opts.gapWaitMs ?? 200;
    this._streams = new Map(); // stream key → {key, epoch, next, pending, timer}
    this._held = null; // envelopes held while catching up
    this._stopped = false;
    this._resyncing = null;
    this.replica = new Replica({
      refetch: (r) => this._readOne(r),
      onChange: opts.onChange,
      onError: this._onError,
    });
    this.connection = null;
    this.state = 'stopped';
    this.error = null; // why start() failed (state 'error')
    this.stats = { snapshots: 0, snapshotDocs: 0, reloads: 0, catchUps: 0, resyncs: 0, gapsFilled: 0, duplicates: 0 };
  }

  /** stats of the replica (envelopes, patches, refetches, gaps…). */
  get replicaStats() {
    return this.replica.stats;
  }

  get(collection, id) {
    return this.replica.get(collection, id);
  }

  version(collection, id) {
    return this.replica.version(collection, id);
  }

  entries(collection) {
    return this.replica.entries(collection);
  }

  size(collection) {
    return this.replica.size(collection);
  }

  collections() {
    return this.replica.collections();
  }

  /** idle resolves when no refetch is in flight. */
  idle() {
    return this.replica.idle();
  }

  /**
   * start connects, loads the snapshot and applies what arrived meanwhile.
   * It resolves once the replica is current.
   */
  async start() {
    const signalR = await this._signalRModule();
    let b = new signalR.HubConnectionBuilder()
      .withUrl(`${this.url}?hub=${encodeURIComponent(this.hub)}`, {
        accessTokenFactory: this._tokenFactory ? () => this._tokenFactory() : undefined,
      })
      .withAutomaticReconnect({ nextRetryDelayInMilliseconds: (ctx) => Math.min(1000 * 2 ** ctx.previousRetryCount, 10000) });
    if (this._configure) b = this._configure(b) || b;
    const conn = b.build();
    this.connection = conn;
    conn.on(this.method, (env) => this._receive(env));
    conn.onreconnecting(() => {
      // What is sent while the connection is down is lost: hold what
      // arrives after the reconnect until the replica has caught up.
      this._held = this._held || [];
      this._setState('reconnecting');
    });
    conn.onreconnected(() => this._catchUp('reconnect').catch((err) => this._onError(err)));
    conn.onclose((err) => {
      if (this._failed) return; // start() failed: the state is 'error'
      this._setState('stopped');
      if (err) this._onError(err);
    });
    this._held = [];
    this.error = null;
    this._setState('connecting');
    try {
      await conn.start();
      await this._catchUp('start');
    } catch (err) {
      // Unreachable, refused by CORS, 401/403, no snapshot: the client
      // does not retry a start, so it must not look as if it still tries.
      // State 'error' carries the reason (also in client.error).
      this._failed = true;
      await conn.stop().catch(() => {});
      this.error = err;
      this._setState('error', err);
      throw err;
    }
  }

  /** stop closes the connection. */
  async stop() {
    this._stopped = true;
    for (const st of this._streams.values()) clearTimeout(st.timer);
    if (this.connection) await this.connection.stop();
    this._setState('stopped');
  }

  // --- streams: epochs, offsets, gaps ---

  // A stream is one audience of the hub: a group, this user, or the whole
  // hub. With a history, its envelopes carry an epoch and contiguous
  // offsets; the client applies them in offset order, fills gaps from
  // {url}/changes, and reloads from a snapshot when the epoch changes.
  _key(env) {
    if (env.group != null) return `g:${env.group}`;
    if (env.user != null) return `u:${env.user}`;
    return 'hub';
  }

  _stream(key, epoch, next) {
    let st = this._streams.get(key);
    if (!st) {
      st = { key, epoch, next, pending: new Map(), timer: null };
      this._streams.set(key, st);
    }
    return st;
  }

  // _receive takes an envelope from the hub.
  _receive(env) {
    if (this._held) {
      this._held.push(env);
      return;
    }
    this._route(env);
  }

  // _route applies an envelope in its stream's order.
  _route(env) {
    if (env.offset == null || env.epoch == null) {
      this.replica.apply(env); // no history: apply as it comes
      return;
    }
    const key = this._key(env);
    const st = this._streams.get(key) || this._stream(key, env.epoch, env.offset);
    if (env.epoch !== st.epoch) {
      // The history was lost (a restart of a memory store, a flushed
      // Redis): what this stream sent before is unknown. Reload.
      this.stats.resyncs++;
      this._resync();
      return;
    }
    if (env.offset < st.next) {
      this.stats.duplicates++;
      return;
    }
    if (env.offset > st.next) {
      // Out of order (several workers write a stream) or lost: wait a
      // little for the missing ones, then fetch them.
      st.pending.set(env.offset, env);
      if (!st.timer) st.timer = setTimeout(() => this._fillGap(st), this._gapWaitMs);
      return;
    }
    this.replica.apply(env);
    st.next++;
    this._drain(st);
  }

  _drain(st) {
    for (;;) {
      const env = st.pending.get(st.next);
      if (!env) break;
      st.pending.delete(st.next);
      this.replica.apply(env);
      st.next++;
    }
    for (const off of st.pending.keys()) if (off < st.next) st.pending.delete(off);
    if (st.pending.size === 0 && st.timer) {
      clearTimeout(st.timer);
      st.timer = null;
    }
  }

  async _fillGap(st) {
    st.timer = null;
    if (st.pending.size === 0 || this._stopped || this._held) return;
    this.stats.gapsFilled++;
    try {
      if (!(await this._changes(st))) {
        this.stats.resyncs++;
        await this._resync();
        return;
      }
    } catch (err) {
      this._onError(err);
    }
    if (st.pending.size > 0 && !st.timer && !this._stopped) st.timer = setTimeout(() => this._fillGap(st), this._gapWaitMs);
  }

  // _changes applies the stream's envelopes after what it holds, from
  // {url}/changes. It answers false on a 410: the history no longer
  // reaches back (or its epoch is gone), and the stream must be reloaded.
  async _changes(st) {
    for (;;) {
      let q = `hub=${encodeURIComponent(this.hub)}&epoch=${encodeURIComponent(st.epoch)}&after=${st.next - 1}`;
      if (st.key.startsWith('g:')) q += `&group=${encodeURIComponent(st.key.slice(2))}`;
      else if (st.key.startsWith('u:')) q += '&user=me';
      const res = await this._request(`/changes?${q}`);
      if (res.status === 410) return false;
      if (!res.ok) throw new Error(`GET changes of ${st.key}: ${res.status} ${await res.text()}`);
      const page = await res.json();
      for (const env of page.envelopes) {
        if (env.offset === st.next) {
          this.replica.apply(env);
          st.next++;
        } else if (env.offset > st.next) st.pending.set(env.offset, env);
      }
      this._drain(st);
      if (!page.more) return true;
    }
  }

  // _resync reloads everything from a snapshot (once at a time).
  _resync() {
    if (!this._resyncing) {
      this._resyncing = this._catchUp('resync').finally(() => {
        this._resyncing = null;
      });
    }
    return this._resyncing;
  }

  // _catchUp runs catch-ups one at a time: a reconnect (or a resync) that
  // comes while one runs waits for it, then catches up again. Two at once
  // would share the held envelopes, and the first to finish would take
  // them from the other.
  _catchUp(cause) {
    const prev = this._catchingUp || Promise.resolve();
    const run = prev.catch(() => {}).then(() => this._catchUpOnce(cause));
    this._catchingUp = run;
    return run.finally(() => {
      if (this._catchingUp === run) this._catchingUp = null;
    });
  }

  // _catchUpOnce makes the replica current while live envelopes are held: at
  // start (and after a lost history) from a snapshot, then every stream's
  // envelopes after the snapshot's positions; after a reconnect from each
  // stream's history alone, or a snapshot again where it is gone (or there
  // is no history). Then it applies what was held.
  async _catchUpOnce(cause) {
    this._held = this._held || [];
    this._setState('loading');
    this.replica.holdRefetches();
    for (let attempt = 0; ; attempt++) {
      try {
        let reload = cause !== 'reconnect' || this._streams.size === 0;
        if (!reload) {
          this.stats.catchUps++;
          for (const st of [...this._streams.values()]) {
            if (!(await this._changes(st))) {
              this.stats.resyncs++;
              reload = true;
              break;
            }
          }
        }
        if (reload) {
          if (cause !== 'start') {
            this.stats.reloads++;
            this.replica.beginReload();
          }
          for (const st of this._streams.values()) clearTimeout(st.timer);
          this._streams.clear();
          await this._loadSnapshot();
          if (cause !== 'start') this.replica.endReload();
          // Everything appended since the snapshot began (older changes of
          // its documents among them, which settle gaps at once).
          for (const st of [...this._streams.values()]) await this._changes(st);
        }
        break;
      } catch (err) {
        this._onError(err);
        if (attempt >= 20 || this._stopped) throw err;
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
    const held = this._held;
    this._held = null;
    for (const env of held) this._route(env);
    this._setState('live');
    // Gaps found while catching up may be settled by later changes (an
    // old patch of a document deleted before the snapshot, then its
    // delete): refetch only what is still missing a moment later.
    if (this._settleMs > 0) await new Promise((r) => setTimeout(r, this._settleMs));
    this.replica.releaseRefetches();
  }

  // _loadSnapshot reads every page of the snapshot into the replica and
  // takes the streams' positions from its first page.
  async _loadSnapshot() {
    this.stats.snapshots++;
    let cursor = null;
    do {
      let q = `hub=${encodeURIComponent(this.hub)}`;
      if (this._snapshotLimit) q += `&limit=${this._snapshotLimit}`;
      if (cursor) q += `&cursor=${encodeURIComponent(cursor)}`;
      const page = await this._get(`/snapshot?${q}`);
      for (const st of page.streams || []) {
        const key = st.group != null ? `g:${st.group}` : st.user != null ? `u:${st.user}` : 'hub';
        this._stream(key, st.epoch, st.offset + 1);
      }
      for (const d of page.docs) {
        this.stats.snapshotDocs++;
        this.replica.load(d.collection, d.id, d.doc, d.v, d.deleted === true);
      }
      cursor = page.next || null;
    } while (cursor);
  }

  // _readOne answers a refetch with the one-document snapshot.
  async _readOne({ collection, id }) {
    const q = `hub=${encodeURIComponent(this.hub)}&collection=${encodeURIComponent(collection)}&id=${encodeURIComponent(id)}`;
    const res = await this._request(`/snapshot?${q}`);
    if (res.status === 404) return null;
    if (!res.ok) throw new Error(`GET snapshot of ${collection}/${id}: ${res.status}`);
    const page = await res.json();
    const d = page.docs && page.docs[0];
    return d ? { doc: d.deleted ? null : d.doc, v: d.v } : null;
  }

  async _get(path) {
    const res = await this._request(path);
    if (res.ok) return res.json();
    throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
  }

  // _request GETs path with the caller's token. A 503 (this instance
  // cannot read beside the stream now) or a 429 (too many reads of this
  // caller in flight) is asked again after its Retry-After (at most 5 s
  // each, 30 times): both say "retry", and every read is worth one.
  async _request(path) {
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      if (this._tokenFactory) {
        const tok = await this._tokenFactory();
        if (tok) headers.Authorization = `Bearer ${tok}`;
      }
      const res = await this._fetch(joinURL(this.url, path), { headers });
      if ((res.status === 503 || res.status === 429) && attempt < 30 && !this._stopped) {
        const after = Number(res.headers?.get?.('Retry-After'));
        await new Promise((r) => setTimeout(r, after > 0 ? Math.min(after * 1000, 5000) : 200));
        continue;
      }
      return res;
    }
  }

  async _signalRModule() {
    if (this._signalR) return this._signalR;
    if (globalThis.signalR) return globalThis.signalR;
    return import('@microsoft/signalr');
  }

  _setState(s, err) {
    this.state = s;
    try {
      if (s === 'error') this._onState(s, err);
      else this._onState(s);
    } catch (err) {
      this._onError(err);
    }
  }
}
