// Type declarations of @changecast/client.

/** A change of the replica, as onChange receives it. */
export interface ReplicaChange {
  op: 'insert' | 'update' | 'delete' | 'clear';
  collection: string;
  id: string | null;
  doc: unknown;
  prev: unknown;
  /** The document's version after the change (null: unversioned). */
  v: string | null;
  /** What caused it: the envelope op, or 'snapshot', 'fetch', 'truncate'. */
  cause: string;
  /** With 'clear': how many documents went. */
  count?: number;
}

/** One change inside an envelope (the wire contract). */
export interface WireChange {
  op: 'patch' | 'upsert' | 'delete' | 'refetch' | 'truncate';
  collection: string;
  id?: string;
  v: string;
  pv?: string;
  patch?: unknown[];
  doc?: unknown;
  ts?: string;
  reason?: string;
}

/** The one argument of every hub invocation. */
export interface Envelope {
  source: string;
  hub: string;
  group?: string;
  user?: string;
  epoch?: string;
  offset?: number;
  changes: WireChange[];
}

export interface ReplicaStats {
  envelopes: number;
  changes: number;
  patches: number;
  upserts: number;
  deletes: number;
  refetches: number;
  truncates: number;
  ignored: number;
  gaps: number;
  loaded: number;
}

export interface ReplicaOptions {
  refetch?: (r: { collection: string; id: string; v: string; reason: string }) => Promise<{ doc: unknown; v: string } | null>;
  onChange?: (ch: ReplicaChange) => void;
  onError?: (err: Error) => void;
}

/** compareVersions orders two versions: -1, 0 or 1. */
export function compareVersions(a: string, b: string): -1 | 0 | 1;

export class Replica {
  constructor(opts?: ReplicaOptions);
  readonly stats: ReplicaStats;
  readonly paused: boolean;
  apply(envelope: Envelope): void;
  pause(): void;
  resume(): void;
  holdRefetches(): void;
  releaseRefetches(): void;
  load(collection: string, id: string, doc: unknown, v: string, deleted?: boolean): boolean;
  beginReload(): void;
  endReload(): void;
  put(collection: string, id: string, doc: unknown, v?: string | null): boolean;
  get(collection: string, id: string): unknown;
  version(collection: string, id: string): string | null | undefined;
  entries(collection: string): [string, unknown][];
  size(collection: string): number;
  collections(): string[];
  idle(): Promise<void>;
}

export interface ClientOptions {
  /** The app negotiate base, e.g. "https://changecast.example.com/api". */
  url: string;
  hub: string;
  /** Your app's token for negotiate, snapshots and catch-up. */
  accessTokenFactory?: () => string | Promise<string>;
  /** The SignalR method the mappings invoke. Default "changes". */
  method?: string;
  /** The @microsoft/signalr module; default window.signalR, else imported. */
  signalR?: unknown;
  /** Adjusts the HubConnectionBuilder (protocol, logging, transports). */
  configure?: (builder: any) => any;
  fetch?: typeof fetch;
  onChange?: (ch: ReplicaChange) => void;
  onError?: (err: Error) => void;
  /**
   * Each new state; with 'error' (start() failed: unreachable, CORS, 401,
   * no snapshot) the reason too.
   */
  onState?: (state: ClientState, error?: Error) => void;
  /** Documents per snapshot page. Default: the server's (1000). */
  snapshotLimit?: number;
  /**
   * How long, after catching up, gaps wait for the changes that settle
   * them before a refetch is made. Default 250 ms.
   */
  settleMs?: number;
  /**
   * How long an envelope that skips offsets waits for the missing ones
   * (several workers may write a stream out of order) before they are
   * fetched from {url}/changes. Default 200 ms.
   */
  gapWaitMs?: number;
}

export interface ClientStats {
  /** Snapshots loaded (at start, and after a lost history). */
  snapshots: number;
  snapshotDocs: number;
  /** Snapshots loaded again over a replica (resyncs, reconnects without a history). */
  reloads: number;
  /** Reconnects caught up from the streams' histories. */
  catchUps: number;
  /** Streams whose history was gone (a new epoch, or trimmed): reloaded. */
  resyncs: number;
  /** Gaps in a stream's offsets filled from {url}/changes. */
  gapsFilled: number;
  /** Envelopes received twice (by offset), ignored. */
  duplicates: number;
}

/**
 * connecting → loading → live; reconnecting → loading → live after a drop;
 * stopped after stop() or a connection closed for good; error when start()
 * failed (see ChangecastClient.error; start() rejects with it too).
 */
export type ClientState = 'connecting' | 'loading' | 'live' | 'reconnecting' | 'stopped' | 'error';

export class ChangecastClient {
  constructor(opts: ClientOptions);
  readonly url: string;
  readonly hub: string;
  readonly replica: Replica;
  readonly replicaStats: ReplicaStats;
  readonly stats: ClientStats;
  readonly state: ClientState;
  /** Why start() failed, in state 'error'; null otherwise. */
  readonly error: Error | null;
  /** The @microsoft/signalr HubConnection, once started. */
  readonly connection: any;
  start(): Promise<void>;
  stop(): Promise<void>;
  get(collection: string, id: string): unknown;
  version(collection: string, id: string): string | null | undefined;
  entries(collection: string): [string, unknown][];
  size(collection: string): number;
  collections(): string[];
  idle(): Promise<void>;
}
