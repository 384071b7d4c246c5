// changecast.js — a local replica of the documents changecast streams.
//
// It applies changecast envelopes (what the `changes` SignalR method
// receives) with the version rules of the wire contract (docs/client.md):
//
//   patch     apply only onto the document held at `pv`; otherwise ignore it
//             when the replica already has `v` or newer, else refetch
//   upsert    take the whole document unless the replica has `v` or newer
//   delete    remove the document unless the replica has a newer version
//   refetch   fetch the document from your API
//   truncate  drop the collection's documents older than `v`
//
// Versions are dot-separated decimal integers, compared segment by segment
// as BigInt (they do not fit a JS number). The module is an ES module with
// no DOM use: it runs in browsers and in Node (>= 20). Its one dependency,
// fast-json-patch, applies the RFC 6902 patches; in a browser map the bare
// specifier with an import map:
//
//   <script type="importmap">
//     {"imports": {"fast-json-patch/": "/vendor/fast-json-patch/"}}
//   </script>
//
// Usage:
//
//   const replica = new Replica({
//     refetch: async ({ collection, id }) => fetchDocOrNull(collection, id),
//     onChange: (ch) => render(ch),
//   });
//   connection.on('changes', (env) => replica.apply(env));
import { applyPatch, deepClone } from 'fast-json-patch/index.mjs';

const versionRe = /^[0-9]+(\.[0-9]+)*$/;

/**
 * compareVersions compares two changecast versions ("23456789.1"): -1 when
 * a < b, 0 when equal, 1 when a > b. Segments are compared as BigInt; when
 * one version is a prefix of the other, the shorter one is smaller.
 */
export function compareVersions(a, b) {
  if (!versionRe.test(a) || !versionRe.test(b)) {
    throw new TypeError(`not a changecast version: ${JSON.stringify(versionRe.test(a) ? b : a)}`);
  }
  const as = a.split('.');
  const bs = b.split('.');
  for (let i = 0; i < Math.min(as.length, bs.length); i++) {
    const x = BigInt(as[i]);
    const y = BigInt(bs[i]);
    if (x !== y) return x < y ? -1 : 1;
  }
  return Math.sign(as.length - bs.length);
}

const maxVersion = (a, b) => (a == null ? b : b == null ? a : compareVersions(a, b) >= 0 ? a : b);

/**
 * Replica holds the documents of one client, by collection and id, each
 * with the version it is at. A document loaded from your own API has no
 * changecast version (null, "unversioned"): upserts and deletes apply to it,
 * and a patch, which cannot be checked against its `pv`, makes the replica
 * refetch it.
 *
 * Options:
 *   refetch({collection, id, v, reason}) → Promise<doc | null>
 *       fetches one document from your API (null: it does not exist). The
 *       result is taken as the document at version `v` (a change at `v` is
 *       committed before changecast sends it, so a fetch started after it
 *       arrived sees it). Without it, refetches are only counted/reported.
 *   onChange({op, collection, id, doc, prev, v, cause}) is called after
 *       every change to the replica; op is 'insert', 'update', 'delete' or
 *       'clear' (truncate and load), cause the envelope op or 'load'/'fetch'.
 *   onError(err) gets refetch failures and patches that do not apply
 *       (both also trigger or retry a refetch later). Default: console.warn.
 */
export class Replica {
  constructor({ refetch, onChange, onError } = {}) {
    this._refetch = refetch;
    this._onChange = onChange || (() => {});
    this._onError = onError || ((err) => console.warn('changecast:', err));
    this._cols = new Map(); // collection → Map(id → {doc, v})
    this._tombs = new Map(); // collection → Map(id → version of its delete)
    this._truncated = new Map(); // collection → version of its last truncate
    this._pending = new Map(); // "collection\u0000id" → {want, reason}
    this._queue = null; // envelopes held while paused
    this.stats = {
      envelopes: 0, changes: 0, patches: 0, upserts: 0, deletes: 0,
      refetches: 0, truncates: 0, ignored: 0, gaps: 0,
    };
  }

  /** apply takes one envelope ({changes: [...]}) and applies its changes in order. */
  apply(envelope) {
    if (this._queue) {
      this._queue.push(envelope);
      return;
    }
    if (!envelope || !Array.isArray(envelope.changes)) throw new TypeError('not a changecast envelope');
    this.stats.envelopes++;
    for (const c of envelope.changes) this._applyChange(c);
  }

  /**
   * pause holds envelopes instead of applying them, resume applies what was
   * held. Use them around a (re)load: connect first, pause, load from your
   * API, resume — every change committed after the connection started is
   * then applied on top of the load, so nothing is missed.
   */
  pause() {
    if (!this._queue) this._queue = [];
  }

  resume() {
    const q = this._queue || [];
    this._queue = null;
    for (const env of q) this.apply(env);
  }

  get paused() {
    return this._queue !== null;
  }

  /**
   * load replaces every document of collection with docs from your API,
   * unversioned; key(doc) gives a document's id as changecast sends it (the
   * key's text, e.g. String(doc.id)).
   */
  load(collection, docs, key = (d) => String(d.id)) {
    const old = this._col(collection);
    const next = new Map();
    for (const doc of docs) next.set(String(key(doc)), { doc, v: null });
    this._cols.set(collection, next);
    this._tombs.delete(collection);
    this._truncated.delete(collection);
    this._emit({ op: 'clear', collection, id: null, doc: null, prev: null, v: null, cause: 'load', count: old.size });
    for (const [id, e] of next) this._emit({ op: 'insert', collection, id, doc: e.doc, prev: null, v: null, cause: 'load' });
  }

  /**
   * put stores one document from your API at version v (null:
   * unversioned); it does not replace a newer one. doc null deletes.
   */
  put(collection, id, doc, v = null) {
    id = String(id);
    const cur = this._col(collection).get(id);
    if (v != null && cur && cur.v != null && compareVersions(cur.v, v) > 0) return false;
    if (v != null && this._older(collection, id, v, true)) return false;
    if (doc == null) {
      if (cur) this._remove(collection, id, v, 'fetch');
      return true;
    }
    this._set(collection, id, doc, v, 'fetch');
    return true;
  }

  /** get returns a document (undefined when absent). Do not modify it. */
  get(collection, id) {
    return this._col(collection).get(String(id))?.doc;
  }

  /** version returns a document's version, null when unversioned, undefined when absent. */
  version(collection, id) {
    return this._col(collection).get(String(id))?.v;
  }

  /** entries lists [id, doc] of a collection. */
  entries(collection) {
    return [...this._col(collection)].map(([id, e]) => [id, e.doc]);
  }

  /** size counts a collection's documents. */
  size(collection) {
    return this._col(collection).size;
  }

  /** idle resolves when no refetch is in flight. */
  async idle() {
    while (this._pending.size) await Promise.all([...this._pending.values()].map((p) => p.done));
  }

  // --- internals ---

  _col(collection) {
    let m = this._cols.get(collection);
    if (!m) {
      m = new Map();
      this._cols.set(collection, m);
    }
    return m;
  }

  _emit(ch) {
    try {
      this._onChange(ch);
    } catch (err) {
      this._onError(err);
    }
  }

  // _older: a change at v is not newer than what the replica knows of the
  // document (its version, its delete, its collection's truncate).
  // orEqualTomb: a version equal to the delete's counts as older too
  // (false for upserts: a move between two groups both received deletes
  // and upserts with one version).
  _older(collection, id, v, orEqualTomb = true) {
    const cur = this._col(collection).get(id);
    if (cur && cur.v != null && compareVersions(v, cur.v) <= 0) return true;
    const t = this._tombs.get(collection)?.get(id);
    if (t != null && compareVersions(v, t) < (orEqualTomb ? 1 : 0)) return true;
    const tr = this._truncated.get(collection);
    return tr != null && compareVersions(v, tr) <= 0;
  }

  _set(collection, id, doc, v, cause) {
    const col = this._col(collection);
    const prev = col.get(id);
    col.set(id, { doc, v });
    this._tombs.get(collection)?.delete(id);
    this._emit({ op: prev ? 'update' : 'insert', collection, id, doc, prev: prev?.doc ?? null, v, cause });
  }

  _remove(collection, id, v, cause) {
    const col = this._col(collection);
    const prev = col.get(id);
    col.delete(id);
    if (v != null) {
      let tombs = this._tombs.get(collection);
      if (!tombs) this._tombs.set(collection, (tombs = new Map()));
      tombs.set(id, maxVersion(tombs.get(id), v));
    }
    if (prev) this._emit({ op: 'delete', collection, id, doc: null, prev: prev.doc, v, cause });
  }

  _applyChange(c) {
    this.stats.changes++;
    const { collection } = c;
    const id = c.id == null ? null : String(c.id);
    const cur = id == null ? undefined : this._col(collection).get(id);
    switch (c.op) {
      case 'patch': {
        if (cur && cur.v != null && compareVersions(cur.v, c.pv) === 0) {
          let doc;
          try {
            doc = applyPatch(deepClone(cur.doc), c.patch, true, true).newDocument;
          } catch (err) {
            this._onError(new Error(`${collection}/${id}: patch to ${c.v} does not apply to ${c.pv}: ${err.message}`));
            this.stats.gaps++;
            this._startRefetch(collection, id, c.v, 'patch_failed');
            return;
          }
          this.stats.patches++;
          this._set(collection, id, doc, c.v, 'patch');
          return;
        }
        if (this._older(collection, id, c.v)) {
          this.stats.ignored++;
          return;
        }
        // A gap: the replica does not hold pv (or holds an unversioned
        // document it cannot check pv against).
        this.stats.gaps++;
        this._startRefetch(collection, id, c.v, cur && cur.v == null ? 'unversioned' : 'gap');
        return;
      }
      case 'upsert':
        if (this._older(collection, id, c.v, false)) {
          this.stats.ignored++;
          return;
        }
        this.stats.upserts++;
        this._set(collection, id, c.doc, c.v, 'upsert');
        return;
      case 'delete':
        // Strictly newer only: a document moved between two groups this
        // client receives gets a delete and an upsert with one version.
        if (cur && cur.v != null && compareVersions(cur.v, c.v) >= 0) {
          this.stats.ignored++;
          return;
        }
        this.stats.deletes++;
        this._remove(collection, id, c.v, 'delete');
        return;
      case 'refetch':
        if (this._older(collection, id, c.v)) {
          this.stats.ignored++;
          return;
        }
        this._startRefetch(collection, id, c.v, c.reason || 'refetch');
        return;
      case 'truncate': {
        const tr = this._truncated.get(collection);
        if (tr != null && compareVersions(c.v, tr) <= 0) {
          this.stats.ignored++;
          return;
        }
        this.stats.truncates++;
        this._truncated.set(collection, c.v);
        const col = this._col(collection);
        let count = 0;
        for (const [did, e] of [...col]) {
          if (e.v == null || compareVersions(e.v, c.v) < 0) {
            col.delete(did);
            count++;
          }
        }
        this._emit({ op: 'clear', collection, id: null, doc: null, prev: null, v: c.v, cause: 'truncate', count });
        return;
      }
      default:
        this.stats.ignored++;
        this._onError(new Error(`unknown change op ${JSON.stringify(c.op)}`));
    }
  }

  // _startRefetch fetches a document, once at a time per document: a newer
  // gap seen while a fetch is in flight fetches again when it is done, so
  // the result always covers the newest change seen.
  _startRefetch(collection, id, v, reason) {
    const k = `${collection}\u0000${id}`;
    const p = this._pending.get(k);
    if (p) {
      p.want = maxVersion(p.want, v);
      return;
    }
    this.stats.refetches++;
    if (!this._refetch) {
      this._onError(new Error(`${collection}/${id} needs a refetch (${reason}) and no refetch option is set`));
      return;
    }
    const entry = { want: v, reason };
    this._pending.set(k, entry);
    entry.done = (async () => {
      try {
        for (;;) {
          const want = entry.want;
          const doc = await this._refetch({ collection, id, v: want, reason: entry.reason });
          if (entry.want === want) {
            this.put(collection, id, doc ?? null, want);
            return;
          }
          this.stats.refetches++;
        }
      } catch (err) {
        this._onError(new Error(`refetch of ${collection}/${id} failed: ${err?.message ?? err}`));
      } finally {
        this._pending.delete(k);
      }
    })();
  }
}
