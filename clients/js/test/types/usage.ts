// Uses @changecast/client's API as an app would, for the TypeScript
// compiler to check index.d.ts against (test/types.test.mjs runs
// tsc --noEmit -p test/types). It is compiled, never run.
import { ChangecastClient, Replica, compareVersions } from '@changecast/client';
import type { ClientOptions, ClientStats, Envelope, ReplicaChange, ReplicaStats, WireChange } from '@changecast/client';
import { Replica as ReplicaOnly } from '@changecast/client/replica';

const seen: ReplicaChange[] = [];
const opts: ClientOptions = {
  url: 'https://changecast.example.com/api',
  hub: 'orders',
  accessTokenFactory: async () => 'token',
  method: 'changes',
  configure: (b) => b,
  onChange: (ch) => {
    seen.push(ch);
    const op: 'insert' | 'update' | 'delete' | 'clear' = ch.op;
    const v: string | null = ch.v;
    void op;
    void v;
  },
  onError: (err: Error) => console.error(err.message),
  onState: (s: string) => void s,
  snapshotLimit: 500,
  settleMs: 250,
  gapWaitMs: 200,
};

export async function app(): Promise<number> {
  const client = new ChangecastClient(opts);
  await client.start();
  const doc: unknown = client.get('public.orders', '17');
  const v: string | null | undefined = client.version('public.orders', '17');
  const rows: [string, unknown][] = client.entries('public.orders');
  const n: number = client.size('public.orders') + client.collections().length;
  const stats: ClientStats = client.stats;
  const rstats: ReplicaStats = client.replicaStats;
  const replica: Replica = client.replica;
  await client.idle();
  await client.stop();
  void doc;
  void v;
  void rows;
  return n + stats.snapshots + stats.gapsFilled + rstats.refetches + replica.size('public.orders');
}

export function replicaAlone(): number {
  const change: WireChange = { op: 'upsert', collection: 'c', id: '1', v: '10', doc: { s: 'new' } };
  const env: Envelope = { source: 's', hub: 'h', group: 'g', epoch: 'e', offset: 1, changes: [change] };
  const r = new ReplicaOnly({
    refetch: async ({ collection, id, v, reason }) => (collection && id && v && reason ? { doc: {}, v } : null),
    onChange: (ch) => void ch.cause,
  });
  r.apply(env);
  r.load('c', '2', { s: 'x' }, '5');
  r.pause();
  r.resume();
  const order: -1 | 0 | 1 = compareVersions('9.2', '10.1');
  return order + r.stats.upserts + (r.paused ? 1 : 0);
}
