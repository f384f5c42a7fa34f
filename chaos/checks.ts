// What a chaos run must prove, computed from what it recorded: the coordinator's events, the
// outputs in the bucket, every write the S3 proxy saw (with the writer's access key = machine id),
// the job processes' own log lines (relayed by their workers) and the interruptions the harness
// caused. Pure functions, so the checks themselves are tested on hand-made histories.
import type { JobEvent } from '@drover/protocol';

export interface Interruption {
  machine: string;
  kind: 'kill' | 'term' | 'stop';
  /** Date.now() when the signal was sent. */
  at: number;
}

/** A series-sum process's line: "<iso> machine <id>: saved step N of T…" or "…resumed … at step N of T…". */
export interface AppLine {
  machine: string;
  jobId: string;
  at: number;
  kind: 'saved' | 'started';
  step: number;
}

const SAVED = /^(\S+) machine (\S+): saved step (\d+) of \d+/;
const STARTED = /^(\S+) machine (\S+): (?:started \S+ \(\d+ steps\) at step 0|resumed \S+ at step (\d+) of \d+)/;

/** Parses one line a series-sum process printed (undefined for other lines). */
export function parseAppLine(jobId: string, line: string): AppLine | undefined {
  const saved = SAVED.exec(line);
  if (saved) return { jobId, at: Date.parse(saved[1]!), machine: saved[2]!, kind: 'saved', step: Number(saved[3]) };
  const started = STARTED.exec(line);
  if (started) return { jobId, at: Date.parse(started[1]!), machine: started[2]!, kind: 'started', step: Number(started[3] ?? 0) };
  return undefined;
}

export interface Write {
  at: number;
  machine: string | undefined;
  /** The object key written (path without the bucket). */
  key: string;
}

export interface JobRecord {
  id: string;
  /** The job's prefix in the bucket ("chaos/job-3/"). */
  prefix: string;
  status: string;
  events: JobEvent[];
  expectedSum: string;
  /** output.json as read back from the bucket, or undefined if it is missing. */
  output: string | undefined;
  /** Whether output.json's ETag is the MD5 of the bytes read. */
  outputIntact: boolean;
}

/** One machine's hold of a job: from its claim to the next claim or the completion. */
export interface Tenure {
  machine: string;
  attempt: number;
  from: number;
  to: number;
}

export function tenures(events: readonly JobEvent[]): Tenure[] {
  const sorted = [...events].sort((a, b) => Date.parse(a.at) - Date.parse(b.at) || a.attempt - b.attempt);
  const out: Tenure[] = [];
  for (const e of sorted) {
    const at = Date.parse(e.at);
    const last = out.at(-1);
    if (e.type === 'claimed' && e.machine_id) {
      if (last && last.to === Infinity) last.to = at;
      out.push({ machine: e.machine_id, attempt: e.attempt, from: at, to: Infinity });
    } else if ((e.type === 'completed' || e.type === 'failed' || e.type === 'canceled') && last && last.to === Infinity) {
      last.to = at;
    }
  }
  return out;
}

export interface Problem {
  job: string;
  check: string;
  detail: string;
}

/**
 * The coordinator's own account: attempts go 1, 2, 3… one claim each; every claim after the first
 * follows the end of the attempt before it (lease_expired, released or failed_attempt of that
 * attempt); exactly one completion, by the holder of the last attempt.
 */
export function checkEvents(job: JobRecord): Problem[] {
  const problems: Problem[] = [];
  const p = (check: string, detail: string) => problems.push({ job: job.id, check, detail });
  const claims = job.events.filter((e) => e.type === 'claimed');
  claims.forEach((c, i) => {
    if (c.attempt !== i + 1) p('attempts', `claim ${i + 1} has attempt ${c.attempt}`);
    if (i === 0) return;
    const prev = claims[i - 1]!;
    const ended = job.events.some(
      (e) => ['lease_expired', 'released', 'failed_attempt'].includes(e.type) && e.attempt === prev.attempt && e.machine_id === prev.machine_id && Date.parse(e.at) <= Date.parse(c.at),
    );
    if (!ended) p('one holder', `attempt ${c.attempt} (${c.machine_id}) was claimed while attempt ${prev.attempt} (${prev.machine_id}) had not ended`);
  });
  const completions = job.events.filter((e) => e.type === 'completed');
  if (completions.length !== 1) p('exactly-once completion', `${completions.length} completions`);
  const last = claims.at(-1);
  for (const c of completions) {
    if (!last || c.machine_id !== last.machine_id || c.attempt !== last.attempt) p('exactly-once completion', `completed by ${c.machine_id}#${c.attempt}, the holder was ${last?.machine_id}#${last?.attempt}`);
  }
  return problems;
}

/** The job's result: completed, output present, intact, with the exact sum. */
export function checkOutput(job: JobRecord): Problem[] {
  const p = (check: string, detail: string): Problem[] => [{ job: job.id, check, detail }];
  if (job.status !== 'completed') return p('completed', `status ${job.status}`);
  if (job.output === undefined) return p('output present', 'output.json is missing');
  if (!job.outputIntact) return p('output intact', 'output.json does not match its ETag');
  let sum: unknown;
  try {
    sum = (JSON.parse(job.output) as { sum?: unknown }).sum;
  } catch {
    return p('output intact', 'output.json is not JSON');
  }
  return sum === job.expectedSum ? [] : p('exact sum', `sum ${String(sum)}, expected ${job.expectedSum}`);
}

/**
 * Fencing, seen from the bucket: every write under the job's prefix was made by the machine that
 * held the job at that moment (no stale holder wrote once another machine had the job).
 */
export function checkWrites(job: JobRecord, writes: readonly Write[]): Problem[] {
  const held = tenures(job.events);
  const problems: Problem[] = [];
  for (const w of writes) {
    if (!w.key.startsWith(job.prefix) || w.machine === undefined || w.machine === 'harness') continue;
    const mine = held.filter((t) => t.machine === w.machine);
    if (!mine.some((t) => w.at >= t.from - 50 && w.at <= t.to)) {
      const holder = held.find((t) => w.at >= t.from && w.at <= t.to);
      problems.push({ job: job.id, check: 'no stale writes', detail: `${w.machine} wrote ${w.key} at ${new Date(w.at).toISOString()} while ${holder?.machine ?? 'nobody'} held the job` });
    }
  }
  return problems;
}

export interface Redo {
  job: string;
  from: string;
  to: string;
  kind: Interruption['kind'] | 'lease';
  /** Steps the next holder did again: computed by the previous one, not in the checkpoint it resumed from. */
  steps: number;
  /** The same in time: from the save of the checkpoint the next holder resumed from to the interruption. */
  seconds: number;
  /** When the previous holder was interrupted (or the next one claimed the job). */
  at: number;
  /** When the checkpoint the next holder resumed from was saved. */
  since: number;
}

/** A time the coordinator could not be reached: from its stop to its start again. */
export interface Outage {
  down: number;
  up: number;
}

/**
 * The redone work a handover may have: one checkpoint interval plus one step; and when the
 * coordinator was unreachable in between, also that outage plus one lease, since a worker that
 * cannot confirm its lease writes nothing (fencing) until it can.
 */
export function redoBound(r: Pick<Redo, 'since' | 'at'>, baseSeconds: number, outages: readonly Outage[], leaseMs: number): number {
  let extra = 0;
  for (const o of outages) if (r.since <= o.up + leaseMs && r.at >= o.down) extra += (o.up - o.down + leaseMs) / 1000;
  return baseSeconds + extra;
}

/**
 * Work redone at each handover: the steps the previous holder computed (up to its interruption)
 * beyond the step the next holder resumed from. Steps after the previous holder's last local save
 * are estimated from the time between that save and the interruption, at most one save interval.
 */
export function redoneWork(job: JobRecord, allLines: readonly AppLine[], interruptions: readonly Interruption[], stepMs: number, stepsPerSave: number): Redo[] {
  // Logs are gathered worker by worker; every "last save" below means the latest in time.
  const lines = allLines.filter((l) => l.jobId === job.id).sort((a, b) => a.at - b.at);
  const held = tenures(job.events);
  const out: Redo[] = [];
  for (let i = 1; i < held.length; i++) {
    const prev = held[i - 1]!;
    const next = held[i]!;
    const hit = interruptions.find((x) => x.machine === prev.machine && x.at >= prev.from && x.at <= next.from);
    const end = hit?.at ?? next.from;
    const resumed = lines.find((l) => l.jobId === job.id && l.machine === next.machine && l.kind === 'started' && l.at >= next.from);
    if (!resumed) continue; // the next holder lost the job before its process said anything
    const saves = lines.filter((l) => l.jobId === job.id && l.machine === prev.machine && l.kind === 'saved' && l.at >= prev.from && l.at <= end);
    const lastSave = saves.at(-1);
    if (!lastSave) continue; // the previous holder computed nothing
    const after = Math.min(stepsPerSave, Math.max(0, Math.floor((end - lastSave.at) / stepMs)));
    // When the checkpoint resumed from was saved (by whichever holder saved it last before the handover).
    const savedAt = lines.filter((l) => l.jobId === job.id && l.kind === 'saved' && l.step === resumed.step && l.at <= end).at(-1)?.at ?? lastSave.at;
    out.push({
      job: job.id, from: prev.machine, to: next.machine, kind: hit?.kind ?? 'lease',
      steps: Math.max(0, lastSave.step - resumed.step) + after,
      seconds: Math.max(0, end - savedAt) / 1000,
      at: end,
      since: savedAt,
    });
  }
  return out;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : Math.round(((s[mid - 1]! + s[mid]!) / 2) * 100) / 100;
}
