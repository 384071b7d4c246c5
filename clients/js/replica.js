// replica.js — a local replica of the documents changecast streams, kept
// with the version rules of the wire contract (docs/client.md):
//
//   patch     from pv to v applies onto the document held at w when
//             pv <= w < v (no change of it lies between pv and v, so its
//             content at w is its content at pv); ignored when the replica
//             has v or newer; otherwise a gap: refetch
//   upsert    takes the whole document unless the replica has v or newer
//   delete    removes the document unless the replica has a newer version
//   refetch   fetches the document (the change could not be sent as data)
//   truncate  drops the collection's documents older than v
//
// A document at version w is "the document after its last change at or
// before w": what a snapshot gives. Versions are dot-separated decimal
// integers compared segment by segment as BigInt (they do not fit a JS
// number). No DOM use: it runs in browsers and in Node (>= 20).
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
 * Replica holds documents by collection and id, each with its version (null
 * for a document loaded from elsewhere without one: upserts and deletes
 * apply to it, a patch makes the replica refetch it).
 *
 * Options:
 *   refetch({collection, id, v, reason}) → Promise<{doc, v} | null>
 *       reads one document (null: it does not exist, or is not yours);
 *       ChangecastClient answers it with changecast's one-document
 *       snapshot. Without it, refetches are only counted and reported.
 *   onChange({op, collection, id, doc, prev, v, cause}) after every change
 *       of the replica; op is 'insert', 'update', 'delete' or 'clear'.
 *   onError(err) for refetch failures and patches that do not apply.
 */
export class Replica {
  constructor({ refetch, onChange, onError } = {}) {
    this._refetch = refetch;
    this._onChange = onChange || (() => {});
    this._onError = onError || ((err) => console.warn('changecast:', err));
    this._cols = new Map(); // collection → Map(id → {doc, v, mark})
    this._tombs = new Map(); // collection → Map(id → version of its delete)
    this._truncated = new Map(); // collection → version of its last truncate
    this._pending = new Map(); // "collection\u0000id" → {want, reason, done}
    this._held = null; // Map of refetches held back, or null
    this._queue = null; // envelopes held while paused
    this._mark = 0; // reload generation
    this.stats = {
      envelopes: 0, changes: 0, patches: 0, upserts: 0, deletes: 0,
      refetches: 0, truncates: 0, ignored: 0, gaps: 0, loaded: 0,
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

  /** pause holds envelopes instead of applying them; resume applies them. */
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
   * holdRefetches collects refetches instead of starting them;
   * releaseRefetches starts those still needed (a later upsert or delete
   * may have settled a gap meanwhile). Use them around applying a buffer.
   */
  holdRefetches() {
    if (!this._held) this._held = new Map();
  }

  releaseRefetches() {
    const held = this._held || new Map();
    this._held = null;
    for (const { collection, id, v, reason } of held.values()) {
      if (!this._older(collection, id, v)) this._startRefetch(collection, id, v, reason);
    }
  }

  /**
   * load stores a snapshot document at version v, unless the replica holds
   * it, its delete or its collection's truncate at v or newer. deleted
   * records that it is gone at v.
   */
  load(collection, id, doc, v, deleted = false) {
    id = String(id);
    const col = this._col(collection);
    const cur = col.get(id);
    if (cur) cur.mark = this._mark;
    if (this._older(collection, id, v, true)) return false;
    this.stats.loaded++;
    if (deleted) {
      if (cur) this._remove(collection, id, v, 'snapshot');
      else this._tomb(collection, id, v);
      return true;
    }
    this._set(collection, id, doc, v, 'snapshot');
    return true;
  }

  /**
   * beginReload starts loading a whole snapshot again (after a reconnect
   * whose history was lost); endReload then removes the documents the new
   * snapshot did not hold. What changed after the snapshot began comes
   * next, from the streams' history or the envelopes held meanwhile, so a
   * document the snapshot missed because it was written after its page
   * was read comes back with that change. (Versions are not compared here:
   * those of different documents need not be comparable, e.g. Cosmos DB's
   * _lsn per physical partition.)
   */
  beginReload() {
    this._mark++;
  }

  endReload() {
    for (const [collection, col] of this._cols) {
      for (const [id, e] of [...col]) {
        if (e.mark !== this._mark) this._remove(collection, id, null, 'snapshot');
      }
    }
  }

  /**
   * put stores a document read on demand (a refetch) at version v; it does
   * not replace a newer one. doc null deletes.
   */
  put(collection, id, doc, v = null) {
    id = String(id);
    const cur = this._col(collection).get(id);
    if (v != null && cur && cur.v != null && compareVersions(cur.v, v) > 0) return false;
    if (v != null && this._older(collection, id, v, true)) return false;
    if (doc == null) {
      if (cur) this._remove(collection, id, v, 'fetch');
      else if (v != null) this._tomb(collection, id, v);
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

  /** collections lists the collections that hold documents. */
  collections() {
    return [...this._cols].filter(([, m]) => m.size > 0).map(([c]) => c);
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
  // (false for upserts: a move between two groups both received sends a
  // delete and an upsert with one version).
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
    col.set(id, { doc, v, mark: this._mark });
    this._tombs.get(collection)?.delete(id);
    this._emit({ op: prev ? 'update' : 'insert', collection, id, doc, prev: prev?.doc ?? null, v, cause });
  }

  _tomb(collection, id, v) {
    let tombs = this._tombs.get(collection);
    if (!tombs) this._tombs.set(collection, (tombs = new Map()));
    tombs.set(id, maxVersion(tombs.get(id), v));
  }

  _remove(collection, id, v, cause) {
    const col = this._col(collection);
    const prev = col.get(id);
    col.delete(id);
    if (v != null) this._tomb(collection, id, v);
    if (prev) this._emit({ op: 'delete', collection, id, doc: null, prev: prev.doc, v, cause });
  }

  _applyChange(c) {
    this.stats.changes++;
    const { collection } = c;
    const id = c.id == null ? null : String(c.id);
    const cur = id == null ? undefined : this._col(collection).get(id);
    switch (c.op) {
      case 'patch': {
        if (cur && cur.v != null && compareVersions(c.pv, cur.v) <= 0 && compareVersions(cur.v, c.v) < 0) {
          let doc;
          try {
            doc = applyPatch(deepClone(cur.doc), c.patch, true, true).newDocument;
          } catch (err) {
            this._onError(new Error(`${collection}/${id}: patch to ${c.v} does not apply to ${cur.v} (pv ${c.pv}): ${err.message}`));
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
        // A gap: the replica does not hold the document at a version
        // between pv and v.
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

  // _startRefetch reads a document, once at a time per document: a newer
  // gap seen while a read is in flight reads again when it is done, so the
  // result always covers the newest change seen.
  _startRefetch(collection, id, v, reason) {
    const k = `${collection}\u0000${id}`;
    if (this._held) {
      const h = this._held.get(k);
      this._held.set(k, { collection, id, v: maxVersion(h?.v, v), reason });
      return;
    }
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
          const got = await this._refetch({ collection, id, v: want, reason: entry.reason });
          // The read is at least as new as the change that asked for it:
          // a document read after the change arrived reflects it.
          const at = got?.v != null && compareVersions(got.v, want) > 0 ? got.v : want;
          if (entry.want === want) {
            this.put(collection, id, got?.doc ?? null, at);
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
