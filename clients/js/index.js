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
// data, a gap) is answered by the one-document snapshot. After a reconnect
// the replica catches up the same way.
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
    this.replica = new Replica({
      refetch: (r) => this._readOne(r),
      onChange: opts.onChange,
      onError: this._onError,
    });
    this.connection = null;
    this.state = 'stopped';
    this.stats = { snapshots: 0, snapshotDocs: 0, reloads: 0 };
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
    conn.on(this.method, (env) => this.replica.apply(env));
    conn.onreconnecting(() => {
      // What is sent while the connection is down is lost: hold what
      // arrives after the reconnect until the replica has caught up.
      this.replica.pause();
      this._setState('reconnecting');
    });
    conn.onreconnected(() => this._catchUp('reconnect'));
    conn.onclose((err) => {
      this._setState('stopped');
      if (err) this._onError(err);
    });
    this.replica.pause();
    this._setState('connecting');
    await conn.start();
    await this._catchUp('start');
  }

  /** stop closes the connection. */
  async stop() {
    if (this.connection) await this.connection.stop();
    this._setState('stopped');
  }

  // _catchUp loads the snapshot while live changes are held, then applies
  // them; a reload (after a reconnect) also removes what is gone.
  async _catchUp(cause) {
    this._setState('loading');
    for (let attempt = 0; ; attempt++) {
      try {
        if (cause !== 'start') {
          this.stats.reloads++;
          this.replica.beginReload();
        }
        const since = await this._loadSnapshot();
        if (cause !== 'start') this.replica.endReload(since);
        break;
      } catch (err) {
        this._onError(err);
        if (attempt >= 20) throw err;
        await new Promise((r) => setTimeout(r, Math.min(200 * 2 ** attempt, 5000)));
      }
    }
    // Gaps found while applying the held changes may be settled by later
    // ones (an old patch of a document deleted before the snapshot, then
    // its delete): refetch only what is still missing a moment later.
    this.replica.holdRefetches();
    this.replica.resume();
    this._setState('live');
    await new Promise((r) => setTimeout(r, this._settleMs));
    this.replica.releaseRefetches();
  }

  // _loadSnapshot reads every page of the snapshot into the replica and
  // returns the lowest version it holds (where it began).
  async _loadSnapshot() {
    this.stats.snapshots++;
    let cursor = null;
    let since = null;
    do {
      let q = `hub=${encodeURIComponent(this.hub)}`;
      if (this._snapshotLimit) q += `&limit=${this._snapshotLimit}`;
      if (cursor) q += `&cursor=${encodeURIComponent(cursor)}`;
      const page = await this._get(`/snapshot?${q}`);
      for (const d of page.docs) {
        this.stats.snapshotDocs++;
        this.replica.load(d.collection, d.id, d.doc, d.v, d.deleted === true);
        if (since == null || compareVersions(d.v, since) < 0) since = d.v;
      }
      cursor = page.next || null;
    } while (cursor);
    return since;
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
    for (let attempt = 0; ; attempt++) {
      const res = await this._request(path);
      if (res.ok) return res.json();
      if (res.status === 503 && attempt < 30) {
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      throw new Error(`GET ${path}: ${res.status} ${await res.text()}`);
    }
  }

  async _request(path) {
    const headers = {};
    if (this._tokenFactory) {
      const tok = await this._tokenFactory();
      if (tok) headers.Authorization = `Bearer ${tok}`;
    }
    return this._fetch(joinURL(this.url, path), { headers });
  }

  async _signalRModule() {
    if (this._signalR) return this._signalR;
    if (globalThis.signalR) return globalThis.signalR;
    return import('@microsoft/signalr');
  }

  _setState(s) {
    this.state = s;
    try {
      this._onState(s);
    } catch (err) {
      this._onError(err);
    }
  }
}
