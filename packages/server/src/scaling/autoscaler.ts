// The autoscaler of one coordinator process. It evaluates each active rule
//   - within `debounceMs` of a work signal for its group (jobs queued, handed back; on PostgreSQL
//     from any replica, by LISTEN/NOTIFY) or of a poke from this process's routes (a job ended, a
//     rule changed), so a submission reaches the provider in well under a second, not Kelpie's 5 min;
//   - when the oldest ended job it counted leaves the idle window (so scale-down is on time), when
//     a cooldown or start backoff ends, and every `intervalMs` regardless (drift, missed signals).
// A decision runs under the group's lease (store/scaling.ts): only one coordinator decides for a
// group at a time, the lease is renewed while the decision runs and checked before every provider
// call, and a coordinator that dies mid-decision leaves a `pending` decision that the next holder
// marks `interrupted`. Providers are told absolute targets (replicas = N, start, stop) chosen from
// a fresh read of the group, never "N more": a decision repeated after a crash finds the work done
// and does not do it twice.
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { backoffDelay, type Backoff } from '@drover/common';
import type { ScalingProviderName, ScalingTrigger } from '@drover/protocol';
import { Counter, type Registry } from 'prom-client';
import type { NewScalingDecision, ScalingLease, ScalingRuleAmendment, ScalingRuleState } from '../store/scaling.js';
import type { ScalingRuleRow } from '../store/schema.js';
import type { Store, WorkSignal } from '../store/types.js';
import { describeCounts, desiredReplicas, plan as makePlan, START_BACKOFF, windowExpiry, type GroupState, type Plan, type Step } from './evaluate.js';
import { GroupGoneError, RecordOnlyProvider, type ScalingProvider } from './provider.js';

export interface AutoscalerOptions {
  /** every rule is evaluated at least this often, ms (default 30 s) */
  intervalMs?: number;
  /** work signals for one group within this long make one evaluation, ms (default 200) */
  debounceMs?: number;
  /** a group's lease, ms (default 30 s): another coordinator may take over a decision this long after its holder was last heard of */
  leaseMs?: number;
  /** decisions running at once in this process (default 8) */
  concurrency?: number;
  startBackoff?: Backoff;
  /** after a failed decision (the provider unreachable), the group is looked at again after this backoff */
  errorBackoff?: Backoff;
}

export interface AutoscalerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

interface Slot {
  userId: string;
  groupId: string;
  timer: NodeJS.Timeout | undefined;
  /** when the timer fires (ms epoch), Infinity when none is set */
  due: number;
  /** the reason of the evaluation the timer is for */
  trigger: ScalingTrigger;
  /** earliest signal not yet answered by a decision (anyone's) that began after it */
  since: number;
  /** the timer's `need` (see Next) */
  need: number;
  running: boolean;
  /** a trigger came while a decision ran: evaluate again after it */
  again: boolean;
  /** what the last recorded decision said, so a decision saying the same is not recorded again */
  lastSignature: string | undefined;
  errors: number;
}

/** When to evaluate next, and why (a retry of a signal's evaluation keeps the signal's trigger). */
interface Next {
  at: number;
  trigger: ScalingTrigger;
  /** for a timer: an evaluation by anyone that began at or after this makes it unneeded */
  need?: number;
}

/** Ends a decision whose lease was lost (another coordinator took over). */
class LeaseLost extends Error {
  override readonly name = 'LeaseLost';
}

/** No look of its own needed (the periodic one stands). */
const NEVER = { at: Infinity } as const;
const TRIGGER_RANK: Record<ScalingTrigger, number> = { timer: 0, start: 1, work: 2, rule: 3 };
/** A group with work and no rule is looked up again after this long. */
const NO_RULE_MS = 2_000;
/** Wake a hair after a window or lease ends, so the comparison at that instant has flipped. */
const SLACK_MS = 20;

export class Autoscaler {
  /** this process, as decisions name it */
  readonly coordinator = `${hostname()}:${process.pid}`;
  /** this process, as leases name it (a pid is not unique across containers) */
  readonly holder = `${this.coordinator}:${randomBytes(4).toString('hex')}`;
  private readonly providers = new Map<ScalingProviderName, ScalingProvider>();
  private readonly slots = new Map<string, Slot>();
  private readonly making = new Map<string, Promise<Slot>>();
  /** groups found without an active rule, until when that finding stands */
  private readonly noRule = new Map<string, number>();
  private readonly opts: Required<AutoscalerOptions>;
  private readonly stopping = new AbortController();
  private readonly inFlight = new Set<Promise<void>>();
  private running = 0;
  private readonly queue: (() => void)[] = [];
  private refreshTimer: NodeJS.Timeout | undefined;
  private started = false;
  private unsubscribe: (() => void) | undefined;
  private readonly evaluations: Counter<'result'> | undefined;
  private readonly actions: Counter<'provider' | 'action' | 'outcome'> | undefined;

  constructor(
    private readonly store: Store,
    providers: ScalingProvider[],
    private readonly log: AutoscalerLog,
    options: AutoscalerOptions = {},
    registry?: Registry,
    private readonly now: () => number = Date.now,
  ) {
    for (const p of [new RecordOnlyProvider(), ...providers]) this.providers.set(p.name, p);
    this.opts = {
      intervalMs: 30_000,
      debounceMs: 200,
      leaseMs: 30_000,
      concurrency: 8,
      startBackoff: START_BACKOFF,
      errorBackoff: { baseMs: 5_000, maxMs: 5 * 60_000, jitter: 'proportional' },
      ...options,
    };
    if (registry) {
      this.evaluations = new Counter({
        name: 'drover_autoscaler_evaluations_total',
        help: 'Scaling rule evaluations by result (decided; lease_busy: another coordinator was deciding; skipped: one already decided since)',
        labelNames: ['result'],
        registers: [registry],
      });
      this.actions = new Counter({
        name: 'drover_autoscaler_decisions_total',
        help: 'Scaling decisions by provider, action and outcome',
        labelNames: ['provider', 'action', 'outcome'],
        registers: [registry],
      });
    }
  }

  /** The providers this coordinator can drive (`none` always). */
  has(provider: ScalingProviderName): boolean {
    return this.providers.has(provider);
  }

  /** Why `userId`'s rules cannot use `provider` on this coordinator, if they cannot. */
  refuse(provider: ScalingProviderName, userId: string): string | undefined {
    const p = this.providers.get(provider);
    if (!p) {
      return provider === 'saladcloud'
        ? 'this coordinator has no SaladCloud API key (start it with SALAD_API_KEY set)'
        : "this coordinator runs no local workers (that is `drover up --autoscale`)";
    }
    return p.refuse?.(userId);
  }

  /** The provider a new rule of `userId` gets when it names none: SaladCloud if this coordinator has a key, else its local workers, else none. */
  defaultProvider(userId: string): ScalingProviderName {
    for (const p of ['saladcloud', 'local'] as const) if (this.has(p) && this.refuse(p, userId) === undefined) return p;
    return 'none';
  }

  async start(): Promise<void> {
    this.started = true;
    this.unsubscribe = this.store.onWork((s) => this.onWork(s));
    await this.refresh('start');
    const every = () => {
      this.refreshTimer = setTimeout(() => {
        void this.refresh('timer')
          .catch((err: Error) => this.log.error({ err }, 'autoscaler: reading the scaling rules failed'))
          .finally(() => !this.stopping.signal.aborted && every());
      }, this.opts.intervalMs);
      this.refreshTimer.unref();
    };
    every();
  }

  /** Stops timers, interrupts provider calls in flight, and waits for the decisions to end. */
  async stop(): Promise<void> {
    this.stopping.abort(new Error('the coordinator is stopping'));
    this.unsubscribe?.();
    clearTimeout(this.refreshTimer);
    for (const s of this.slots.values()) clearTimeout(s.timer);
    for (const q of this.queue.splice(0)) q();
    await Promise.allSettled([...this.inFlight]);
  }

  /** Something in this process changed the group's work (a job ended, was canceled, purged): look again soon. */
  poke(userId: string, groupId: string): void {
    if (!this.started) return;
    const slot = this.slots.get(key(userId, groupId));
    if (slot) this.schedule(slot, this.opts.debounceMs, 'work');
  }

  /** A rule was created, changed or deleted through this process: evaluate it (or forget it) now. */
  async ruleChanged(userId: string, groupId: string): Promise<void> {
    if (!this.started) return; // --no-autoscale: another coordinator acts on the rules
    this.noRule.delete(key(userId, groupId));
    const rule = await this.store.scaling.getRule(userId, groupId);
    if (!rule || rule.enabled !== 1 || !this.has(rule.provider as ScalingProviderName)) {
      this.drop(key(userId, groupId));
      return;
    }
    const slot = await this.slotFor(rule);
    this.schedule(slot, 0, 'rule');
  }

  private onWork(s: WorkSignal): void {
    const k = key(s.userId, s.groupId);
    const slot = this.slots.get(k);
    if (slot) {
      this.schedule(slot, this.opts.debounceMs, 'work');
      return;
    }
    // A rule created through another coordinator is not known here until the next refresh: look
    // it up, at most once per NO_RULE_MS for a group that has none.
    if (this.stopping.signal.aborted || (this.noRule.get(k) ?? 0) > this.now()) return;
    this.noRule.set(k, this.now() + NO_RULE_MS);
    void this.store.scaling.getRule(s.userId, s.groupId).then(
      async (rule) => {
        if (!rule || rule.enabled !== 1 || !this.has(rule.provider as ScalingProviderName) || this.stopping.signal.aborted) return;
        this.noRule.delete(k);
        this.schedule(await this.slotFor(rule), this.opts.debounceMs, 'work');
      },
      (err: Error) => this.log.error({ err }, 'autoscaler: reading a scaling rule failed'),
    );
  }

  /** Reads the active rules: new ones get a slot and an evaluation, gone ones lose theirs. */
  private async refresh(trigger: 'start' | 'timer'): Promise<void> {
    const rules = await this.store.scaling.listActiveRules([...this.providers.keys()]);
    const seen = new Set<string>();
    for (const rule of rules) {
      const k = key(rule.user_id, rule.container_group_id);
      seen.add(k);
      if (this.slots.has(k)) continue;
      const slot = await this.slotFor(rule);
      // Spread a start's evaluations a little: many rules must not all call the provider in one instant.
      this.schedule(slot, trigger === 'start' ? Math.floor(Math.random() * this.opts.debounceMs) : 0, trigger);
    }
    for (const k of [...this.slots.keys()]) if (!seen.has(k)) this.drop(k);
    for (const [k, until] of this.noRule) if (until <= this.now()) this.noRule.delete(k);
  }

  /** The rule's slot, made once even when several callers ask at the same time. */
  private slotFor(rule: ScalingRuleRow): Promise<Slot> {
    const k = key(rule.user_id, rule.container_group_id);
    const existing = this.slots.get(k);
    if (existing) return Promise.resolve(existing);
    let making = this.making.get(k);
    if (!making) {
      making = this.makeSlot(rule).finally(() => this.making.delete(k));
      this.making.set(k, making);
    }
    return making;
  }

  private async makeSlot(rule: ScalingRuleRow): Promise<Slot> {
    const k = key(rule.user_id, rule.container_group_id);
    const last = await this.store.scaling.lastDecision(rule.user_id, rule.container_group_id);
    const slot: Slot = {
      userId: rule.user_id,
      groupId: rule.container_group_id,
      timer: undefined,
      due: Infinity,
      trigger: 'timer',
      since: Infinity,
      need: 0,
      running: false,
      again: false,
      lastSignature: last ? signature(last.action, last.outcome, last.desired, last.from_replicas, last.to_replicas, last.error, rule.provider_status) : undefined,
      errors: 0,
    };
    this.slots.set(k, slot);
    return slot;
  }

  private drop(k: string): void {
    const slot = this.slots.get(k);
    if (!slot) return;
    clearTimeout(slot.timer);
    this.slots.delete(k);
  }

  /** Evaluate within `delayMs` (an earlier timer stands: signals never postpone a decision). */
  private schedule(slot: Slot, delayMs: number, trigger: ScalingTrigger, need = this.now()): void {
    if (this.stopping.signal.aborted) return;
    const at = this.now() + Math.max(0, delayMs);
    if (trigger !== 'timer') slot.since = Math.min(slot.since, this.now());
    if (TRIGGER_RANK[trigger] > TRIGGER_RANK[slot.trigger] || slot.due === Infinity) slot.trigger = trigger;
    if (slot.running) {
      if (trigger !== 'timer') slot.again = true;
      return;
    }
    if (at >= slot.due) return;
    clearTimeout(slot.timer);
    slot.due = at;
    slot.need = need;
    slot.timer = setTimeout(() => this.fire(slot), at - this.now());
    slot.timer.unref();
  }

  private fire(slot: Slot): void {
    slot.timer = undefined;
    slot.due = Infinity;
    const trigger = slot.trigger;
    const need = slot.need;
    slot.trigger = 'timer';
    slot.running = true;
    const run = this.limited(() => this.evaluate(slot, trigger, need))
      .catch((err: Error): Next => {
        this.log.error({ err, group: slot.groupId }, 'autoscaler: evaluation failed');
        return { at: this.now() + backoffDelay(this.opts.errorBackoff, ++slot.errors), trigger, need };
      })
      .then((next) => {
        slot.running = false;
        if (this.slots.get(key(slot.userId, slot.groupId)) !== slot) return;
        if (slot.again) {
          slot.again = false;
          this.schedule(slot, this.opts.debounceMs, 'work');
        }
        const periodic = this.now() + this.opts.intervalMs;
        if (next.at >= periodic) this.schedule(slot, this.opts.intervalMs, next.trigger, next.at === Infinity ? this.now() : (next.need ?? this.now()));
        else this.schedule(slot, next.at - this.now(), next.trigger, next.need ?? next.at);
      })
      .finally(() => this.inFlight.delete(run));
    this.inFlight.add(run);
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.running >= this.opts.concurrency) await new Promise<void>((r) => this.queue.push(r));
    this.running++;
    try {
      return await fn();
    } finally {
      this.running--;
      this.queue.shift()?.();
    }
  }

  /** One evaluation; returns when the group should next be looked at. */
  private async evaluate(slot: Slot, trigger: ScalingTrigger, need: number): Promise<Next> {
    const started = this.now();
    const lease = await this.store.scaling.acquireLease(slot.userId, slot.groupId, this.holder, started, this.opts.leaseMs);
    if (!lease) {
      // Another coordinator is deciding for this group. If it is alive it answers what we were
      // told too (it hears the same signals); if it died, its lease lapses: look again then.
      this.evaluations?.inc({ result: 'lease_busy' });
      const held = await this.store.scaling.leaseHolder(slot.userId, slot.groupId);
      return { at: Math.max(started, held?.expires_at ?? started) + SLACK_MS, trigger, need };
    }
    const since = slot.since;
    slot.since = Infinity;
    const keepAlive = new AbortController();
    const renew = setInterval(() => {
      void this.store.scaling.renewLease(lease, this.now(), this.opts.leaseMs).then(
        (held) => held || keepAlive.abort(new LeaseLost('another coordinator took over the group')),
        () => undefined, // the database is unreachable: the next renewal or the fence before a call decides
      );
    }, Math.max(50, Math.floor(this.opts.leaseMs / 3)));
    renew.unref();
    try {
      const rule = await this.store.scaling.getRule(slot.userId, slot.groupId);
      if (!rule || rule.enabled !== 1) {
        this.drop(key(slot.userId, slot.groupId));
        return { at: Infinity, trigger: 'timer' };
      }
      // Someone (another replica) decided after our signal came, or after what our timer waits
      // for: it saw what we would. Timers of all replicas thus settle on one look per interval.
      const answered = (t: number) => rule.evaluated !== null && t !== Infinity && rule.evaluated >= t;
      if ((trigger === 'work' && answered(since)) || (trigger === 'timer' && answered(need))) {
        this.evaluations?.inc({ result: 'skipped' });
        return { at: rule.evaluated! + this.opts.intervalMs, trigger: 'timer', need: rule.evaluated! + 1 };
      }
      this.evaluations?.inc({ result: 'decided' });
      const next = await this.decide(slot, rule, lease, trigger, started, AbortSignal.any([keepAlive.signal, this.stopping.signal]));
      return { ...next, trigger: 'timer' };
    } finally {
      clearInterval(renew);
      await this.store.scaling.releaseLease(lease).catch(() => undefined);
    }
  }

  private async decide(slot: Slot, rule: ScalingRuleRow, lease: ScalingLease, trigger: ScalingTrigger, now: number, signal: AbortSignal): Promise<Omit<Next, 'trigger'>> {
    const provider = this.providers.get(rule.provider as ScalingProviderName);
    if (!provider) {
      this.drop(key(rule.user_id, rule.container_group_id));
      return NEVER;
    }
    const counts = await this.store.scaling.countJobs(rule.user_id, rule.container_group_id, now - rule.idle_threshold_seconds * 1000);
    const base = {
      at: now,
      trigger,
      provider: rule.provider,
      pending: counts.pending,
      running: counts.running,
      recently_ended: counts.recentlyEnded,
      coordinator: this.coordinator,
    };
    const expiry = windowExpiry(rule, counts);
    // The next look: the periodic one (any look after this one does), or one at an instant
    // something changes (only a look from then on does).
    const nextCheck = (extra?: number): Omit<Next, 'trigger'> => {
      const at = Math.min((expiry ?? Infinity) + SLACK_MS, (extra ?? Infinity) + SLACK_MS);
      return at < this.now() + this.opts.intervalMs ? { at, need: at } : { at: this.now() + this.opts.intervalMs, need: now + 1 };
    };
    const retry = (): Omit<Next, 'trigger'> => ({ at: this.now() + backoffDelay(this.opts.errorBackoff, slot.errors), need: now + 1 });

    // 1. What is the group now?
    let observation;
    try {
      await this.fence(lease, signal);
      observation = await provider.observe(rule, signal);
    } catch (err) {
      if (err instanceof LeaseLost || this.stopping.signal.aborted) return NEVER;
      slot.errors++;
      const message = errorText(err);
      const { desired } = desiredReplicas(rule, counts);
      await this.record(
        slot,
        lease,
        rule,
        { ...base, desired, from_replicas: null, to_replicas: null, action: 'none', outcome: 'error', reason: `${describeCounts(rule, counts)}; could not read the group: ${message}`, error: message },
        { replicas: rule.replicas, provider_status: rule.provider_status, evaluated: now },
        trigger,
      );
      return retry();
    }
    if (observation.kind === 'gone') {
      await this.record(
        slot,
        lease,
        rule,
        { ...base, desired: desiredReplicas(rule, counts).desired, from_replicas: null, to_replicas: null, action: 'disable', outcome: 'applied', reason: `${observation.reason}: the rule is disabled (PATCH it with enabled: true once the group is back)`, error: null },
        { replicas: null, provider_status: null, evaluated: now },
        trigger,
        { updated: rule.updated, enabled: false, disabled_reason: observation.reason },
      );
      this.drop(key(rule.user_id, rule.container_group_id));
      return NEVER;
    }
    const group = observation.state;
    const amendment: ScalingRuleAmendment | undefined = observation.containerGroupName ? { updated: rule.updated, container_group_name: observation.containerGroupName } : undefined;
    const acting: ScalingRuleRow = { ...rule, container_group_name: observation.containerGroupName ?? rule.container_group_name };
    // A group seen running has come up: its start backoff starts over.
    const startAttempts = group.status === 'running' ? 0 : rule.start_attempts;
    const p = makePlan({ ...rule, start_attempts: startAttempts }, counts, group, now, this.opts.startBackoff);
    const seen: ScalingRuleState = { replicas: group.replicas, provider_status: group.status, evaluated: now, start_attempts: startAttempts };

    // 2. Nothing to do: record it if it says something new.
    if (p.steps.length === 0) {
      slot.errors = 0;
      await this.record(slot, lease, rule, { ...base, desired: p.desired, from_replicas: p.from, to_replicas: p.to, action: 'none', outcome: 'unchanged', reason: p.reason, error: null }, seen, trigger, amendment);
      return nextCheck(p.recheckAt);
    }

    // 3. Act: the decision is written first (pending), so a coordinator that dies now leaves a trace.
    const id = await this.store.scaling.recordDecision(
      lease,
      { ...base, desired: p.desired, from_replicas: p.from, to_replicas: null, action: p.action, outcome: 'pending', reason: p.reason, error: null },
      { replicas: group.replicas, provider_status: group.status, start_attempts: startAttempts },
      amendment,
    );
    if (id === undefined) return NEVER; // lost the lease: the new holder decides
    let state: GroupState = group;
    const done: Step[] = [];
    try {
      for (const step of p.steps) {
        await this.fence(lease, signal);
        state = await this.apply(provider, acting, step, state, signal);
        done.push(step);
      }
    } catch (err) {
      if (err instanceof LeaseLost) return NEVER;
      const gone = err instanceof GroupGoneError;
      const stopped = this.stopping.signal.aborted;
      const message = errorText(err);
      slot.errors++;
      await this.store.scaling.finishDecision(
        lease,
        id,
        { outcome: stopped ? 'interrupted' : 'error', to_replicas: done.length > 0 ? state.replicas : p.from, error: stopped ? 'the coordinator stopped during the call; the next decision reads the group afresh' : message },
        { ...this.after(rule, group, state, done, now), evaluated: now },
        gone ? { updated: rule.updated, enabled: false, disabled_reason: message } : undefined,
      );
      this.count(rule.provider, p.action, stopped ? 'interrupted' : 'error');
      this.log.warn({ group: rule.container_group_id, provider: rule.provider, action: p.action, err: message }, 'scaling decision failed');
      if (gone) this.drop(key(rule.user_id, rule.container_group_id));
      return gone || stopped ? NEVER : retry();
    }
    slot.errors = 0;
    await this.store.scaling.finishDecision(lease, id, { outcome: 'applied', to_replicas: p.to }, { ...this.after(rule, group, state, done, now), evaluated: now });
    // The next look will most likely find the group as this left it: that needs no record of its own.
    slot.lastSignature = signature('none', 'unchanged', p.desired, p.to, p.to, null, state.status);
    this.count(rule.provider, p.action, 'applied');
    this.log.info({ group: rule.container_group_id, provider: rule.provider, action: p.action, from: p.from, to: p.to, reason: p.reason }, 'scaling decision');
    return nextCheck();
  }

  /** Carries out one step; the provider may report the state it left the group in. */
  private async apply(provider: ScalingProvider, rule: ScalingRuleRow, step: Step, state: GroupState, signal: AbortSignal): Promise<GroupState> {
    switch (step.kind) {
      case 'resize':
        await provider.resize(rule, step.replicas, signal);
        return { ...state, replicas: step.replicas, ...(provider.name === 'local' ? { status: step.replicas > 0 ? 'running' : 'stopped' } : {}) };
      case 'start':
        await provider.start(rule, signal);
        return { ...state, status: provider.name === 'saladcloud' ? 'deploying' : 'running' };
      case 'stop':
        await provider.stop(rule, signal);
        return { ...state, status: 'stopped', ...(provider.name === 'local' ? { replicas: 0 } : {}) };
    }
  }

  /** The rule's state after the steps that were carried out. */
  private after(rule: ScalingRuleRow, before: GroupState, state: GroupState, done: Step[], now: number): Omit<ScalingRuleState, 'evaluated'> {
    const started = done.some((s) => s.kind === 'start');
    const startAttempts = before.status === 'running' ? 0 : rule.start_attempts;
    return {
      replicas: state.replicas,
      provider_status: state.status,
      ...(done.length > 0 ? { last_change: now } : {}),
      start_attempts: started ? startAttempts + 1 : startAttempts,
      ...(started ? { last_start: now } : {}),
    };
  }

  /** Records a decision that needs no provider call, unless it says what the last one said. */
  private async record(
    slot: Slot,
    lease: ScalingLease,
    rule: ScalingRuleRow,
    d: NewScalingDecision,
    state: ScalingRuleState,
    trigger: ScalingTrigger,
    amendment?: ScalingRuleAmendment,
  ): Promise<void> {
    const sig = signature(d.action, d.outcome, d.desired, d.from_replicas ?? null, d.to_replicas ?? null, d.error ?? null, state.provider_status);
    if (sig === slot.lastSignature && trigger !== 'rule' && !amendment) {
      await this.store.scaling.updateState(lease, state);
      return;
    }
    const id = await this.store.scaling.recordDecision(lease, d, state, amendment);
    if (id === undefined) return;
    slot.lastSignature = sig;
    this.count(rule.provider, d.action, d.outcome);
    if (d.outcome === 'error') this.log.warn({ group: rule.container_group_id, provider: rule.provider, err: d.error }, 'scaling decision failed');
    else if (d.action === 'disable') this.log.warn({ group: rule.container_group_id, provider: rule.provider, reason: d.reason }, 'scaling rule disabled');
  }

  /** Before a provider call: the lease must still be ours, and is extended for the call. */
  private async fence(lease: ScalingLease, signal: AbortSignal): Promise<void> {
    if (signal.aborted) throw signal.reason instanceof LeaseLost ? signal.reason : new LeaseLost('stopping');
    if (!(await this.store.scaling.renewLease(lease, this.now(), this.opts.leaseMs))) throw new LeaseLost('another coordinator took over the group');
  }

  private count(provider: string, action: string, outcome: string): void {
    this.actions?.inc({ provider, action, outcome });
  }
}

function key(userId: string, groupId: string): string {
  return `${userId}\u0000${groupId}`;
}

/** What a decision says, less its wording: one that says the same as the last is not recorded again (a change of the group's status is news). */
function signature(action: string, outcome: string, desired: number, from: number | null, to: number | null, error: string | null, status: string | null): string {
  return `${action}|${outcome}|${desired}|${from ?? ''}|${to ?? ''}|${error ?? ''}|${status ?? ''}`;
}

function errorText(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).slice(0, 1000);
}

export type { Plan };
