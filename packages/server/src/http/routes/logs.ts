// A job's output (Drover): the worker ships it in batches (POST), its owner reads it a page at a
// time or follows it with a long-poll (GET ?wait=). Scoped to the job's user like every job route.
import { EventEmitter, once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { Type } from '@sinclair/typebox';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { ErrorBody, JobIdParams, LogBatch, LogBatchResponse, LogPage, LogQuery, type LogStream } from '@drover/protocol';
import type { LogRead } from '../../store/types.js';
import type { AppContext } from '../app.js';
import { HttpError, notFound } from '../errors.js';

const err = Type.Ref(ErrorBody);

/** A follower on another coordinator (PostgreSQL replicas) hears no in-process signal: it reads again this often. */
const FOLLOW_RECHECK_MS = 1000;

export const logRoutes: FastifyPluginAsyncTypebox<AppContext> = async (app, ctx) => {
  /** Emits the job id once lines of it are stored in this process: wakes its followers. */
  const stored = new EventEmitter();
  stored.setMaxListeners(0);

  app.post(
    '/jobs/:id/logs',
    {
      schema: {
        tags: ['work'],
        summary: '(Drover) Ship a batch of an attempt\'s output lines (the machine that ran the attempt only)',
        description:
          'Lines are numbered per attempt (`seq` from 0); a line already stored is not stored twice, so a batch may be ' +
          'retried. Each attempt keeps up to `cap_bytes` of output; past it, lines are dropped and the answer says `truncated`.',
        params: JobIdParams,
        body: Type.Ref(LogBatch),
        response: { 200: Type.Ref(LogBatchResponse), 400: err, 401: err, 403: err, 404: err, 409: err, 413: err },
      },
    },
    async (req) => {
      const outcome = await ctx.store.appendLogs(
        { userId: req.user.id, jobId: req.params.id, machineId: req.body.machine_id, now: ctx.now(), capBytes: ctx.logCapBytes },
        req.body,
      );
      if (outcome.kind === 'not_found') throw notFound();
      if (outcome.kind === 'not_holder') throw new HttpError(409, 'conflict', `machine ${req.body.machine_id} did not run attempt ${req.body.attempt} of this job`);
      ctx.metrics.logLines.inc({ result: 'stored' }, outcome.accepted);
      const dropped = req.body.lines.length - outcome.accepted;
      if (dropped > 0 && outcome.cap.truncated) ctx.metrics.logLines.inc({ result: 'over_cap' }, dropped);
      if (outcome.accepted > 0) stored.emit(req.params.id);
      return { accepted: outcome.accepted, ...outcome.cap };
    },
  );

  app.get(
    '/jobs/:id/logs',
    {
      schema: {
        tags: ['jobs'],
        summary: '(Drover) A page of a job\'s output, of one attempt; follow it with `wait`',
        description:
          'Pass the previous page\'s `next` as `after` for the following lines. With `wait`, an answer with no new line ' +
          'comes only after that many seconds (or as soon as a line is stored); `done` says the attempt is over.',
        params: JobIdParams,
        querystring: LogQuery,
        response: { 200: Type.Ref(LogPage), 400: err, 401: err, 403: err, 404: err },
      },
    },
    async (req) => {
      const q = req.query;
      const jobId = req.params.id;
      const read = () =>
        ctx.store.readLogs(req.user.id, jobId, {
          after: q.after,
          limit: q.limit,
          ...(q.attempt !== undefined ? { attempt: q.attempt } : {}),
          ...(q.tail !== undefined ? { tail: q.tail } : {}),
        });
      let page = await read();
      if (!page) throw notFound();
      const deadline = Date.now() + (q.wait ?? 0) * 1000;
      if (q.wait && q.tail === undefined) {
        const gone = new AbortController();
        const onClose = () => gone.abort();
        req.raw.once('close', onClose);
        try {
          while (page.lines.length === 0 && !page.done && Date.now() < deadline && !gone.signal.aborted) {
            const wake = new AbortController();
            const signal = AbortSignal.any([wake.signal, gone.signal]);
            await Promise.race([
              once(stored, jobId, { signal }).catch(() => undefined),
              sleep(Math.min(FOLLOW_RECHECK_MS, deadline - Date.now()), undefined, { signal }).catch(() => undefined),
            ]);
            wake.abort();
            page = (await read()) ?? page;
          }
        } finally {
          req.raw.off('close', onClose);
        }
      }
      return toLogPage(jobId, page, ctx.logCapBytes, q.tail === undefined ? q.after : -1);
    },
  );
};

/** `after`: the cursor asked with, kept as `next` when no line came. */
function toLogPage(jobId: string, page: LogRead, capBytes: number, after: number): LogPage {
  const info = page.attempts.find((a) => a.attempt === page.attempt);
  const last = page.lines.at(-1);
  return {
    job_id: jobId,
    attempt: page.attempt,
    attempts: page.attempts.map((a) => a.attempt),
    machine_id: page.machineId,
    lines: page.lines.map((l) => ({ seq: l.seq, at: new Date(l.at).toISOString(), stream: l.stream as LogStream, text: l.text })),
    next: last ? last.seq : after,
    more: page.more,
    done: page.done,
    dropped_lines: info ? Number(info.dropped) : 0,
    cap_bytes: capBytes,
    stored_bytes: info ? Number(info.bytes) : 0,
    truncated: info?.truncated === 1,
  };
}
