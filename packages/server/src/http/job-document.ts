// A stored job row as the wire's job document (Kelpie's field names, ISO timestamps, null for unset).
import type { Job, Progress, SyncBlock } from '@drover/protocol';
import type { JobRow } from '../store/types.js';

interface StoredSpec {
  command: string;
  arguments: string[];
  environment: Record<string, string>;
  compression: boolean;
  sync?: SyncBlock;
  input_bucket?: string;
  input_prefix?: string;
  checkpoint_bucket?: string;
  checkpoint_prefix?: string;
  output_bucket?: string;
  output_prefix?: string;
}

const iso = (ms: number | null) => (ms === null ? null : new Date(ms).toISOString());

/** `leaseFactor`: the store's, for `lease_timeout` (workers fence their uploads with it); `notice`: see GroupPolls. */
export function toJobDocument(row: JobRow, leaseFactor: number, notice?: string): Job {
  const spec = JSON.parse(row.spec) as StoredSpec;
  return {
    id: row.id,
    user_id: row.user_id,
    status: row.status as Job['status'],
    created: new Date(row.created).toISOString(),
    started: iso(row.started),
    completed: iso(row.completed),
    canceled: iso(row.canceled),
    failed: iso(row.failed),
    heartbeat: iso(row.heartbeat),
    num_failures: row.num_failures,
    num_heartbeats: row.num_heartbeats,
    machine_id: row.machine_id,
    command: spec.command,
    arguments: spec.arguments,
    environment: spec.environment,
    container_group_id: row.container_group_id,
    webhook: row.webhook,
    max_failures: row.max_failures,
    heartbeat_interval: row.heartbeat_interval,
    lease_timeout: row.heartbeat_interval * leaseFactor,
    compression: spec.compression,
    sync: spec.sync ?? null,
    input_bucket: spec.input_bucket ?? null,
    input_prefix: spec.input_prefix ?? null,
    checkpoint_bucket: spec.checkpoint_bucket ?? null,
    checkpoint_prefix: spec.checkpoint_prefix ?? null,
    output_bucket: spec.output_bucket ?? null,
    output_prefix: spec.output_prefix ?? null,
    attempt: row.attempt,
    progress: row.progress === null ? null : (JSON.parse(row.progress) as Progress),
    ...(notice !== undefined ? { notice } : {}),
  };
}
