/**
 * The client replica: server state, pending updates, visible state. No I/O, no clock.
 *
 * The same rules as the Rust `deltasync::client::Replica` (see its module documentation):
 *
 * - `serverRev` and the server state are what the server last said; the visible state is
 *   the server state with every pending update predicted on top, in order.
 * - An update leaves the pending list exactly once: acknowledged by an operation carrying
 *   its `clientReqId`, by a snapshot that already contains it, or by `ERROR
 *   FAILED_PRECONDITION` with `details.appliedRev` (a resent duplicate) once the replica
 *   has that revision; or rejected by an `ERROR` naming it in `details.clientReqId` (for
 *   an id over the server's limit, its marked prefix: `details.clientReqIdTruncated`).
 * - `SYNC.DELTAS` must start at `serverRev` and carry exactly `fromRev+1..=toRev`, in order;
 *   after `REVISION_GAP` the next message must be `SYNC.SNAPSHOT`. Anything else is refused
 *   whole ({@link ReplicaError}) and sets {@link Replica.needsResume}.
 * - After a snapshot, pending updates it does not contain must be sent again
 *   ({@link Replica.resendMessages}): the server applies each id at most once.
 * - An `ERROR` naming a pending update with `retryable: true` (a rate limit:
 *   `RESOURCE_EXHAUSTED` with `retryAfterMs`) did not process it, so the update stays
 *   pending (a `deferred` event) and is to be sent again after `retryAfterMs`
 *   ({@link Replica.messageOf}); the Rust replica does the same (`ReplicaEvent::Deferred`).
 *
 * @module
 */

import type { Model } from "./model.js";

/** The two dialects: `native` asks for `deltasync.v1` (with epochs), `ws-kit` asks for none. */
export type Dialect = "native" | "ws-kit";

/** The WebSocket subprotocol of the native dialect. */
export const NATIVE_SUBPROTOCOL = "deltasync.v1";

/** How many acknowledged (and how many rejected) ids a replica remembers. */
export const REMEMBERED_ACKS = 1024;

/** The payload of `REVISION_GAP`. */
export interface GapInfo {
  expectedRev: number;
  serverRev: number;
  bufferFirstRev: number;
  resumeFrom: number;
}

/** What a server message did to the replica, in the order it happened. */
export type ReplicaEvent =
  | { type: "snapshot"; rev: number; afterGap: boolean; epochChanged: boolean }
  | { type: "applied"; from: number; to: number }
  | { type: "acked"; clientReqId: string; rev: number }
  | { type: "rejected"; clientReqId: string; code: string; message: string }
  | { type: "deferred"; clientReqId: string; code: string; message: string; retryAfterMs: number | undefined }
  | { type: "gap"; gap: GapInfo }
  | { type: "error"; code: string; message: string; retryAfterMs?: number; retryable: boolean };

/** An `UPDATE` sent and not yet acknowledged or rejected. */
export interface Pending<Input> {
  readonly clientReqId: string;
  readonly input: Input;
  /** `serverRev` when the update was made. */
  readonly baseRev: number;
  /** When it was made: the time its prediction is replayed with. */
  readonly issuedAtMs: number;
  /** The encoded `UPDATE`, sent again as is after a reconnect. */
  readonly message: string;
  /** The revision the server said it was already committed at, not yet reached. */
  appliedRev: number | undefined;
}

/** A server message the replica refused; nothing of it was applied. */
export class ReplicaError extends Error {
  constructor(
    /** Which rule it broke. */
    readonly kind:
      | "decode"
      | "non-contiguous"
      | "bad-range"
      | "wrong-operation-count"
      | "bad-operation-revs"
      | "deltas-while-awaiting-snapshot"
      | "deltas-before-snapshot",
    message: string,
  ) {
    super(message);
    this.name = "ReplicaError";
  }
}

/** A bounded first-in-first-out memory of ids. */
class IdMemory {
  private readonly ids = new Set<string>();
  constructor(private readonly capacity: number) {}
  record(id: string): void {
    if (this.capacity === 0 || this.ids.has(id)) return;
    if (this.ids.size === this.capacity) {
      const oldest = this.ids.values().next().value;
      if (oldest !== undefined) this.ids.delete(oldest);
    }
    this.ids.add(id);
  }
  has(id: string): boolean {
    return this.ids.has(id);
  }
  /** Whether an id longer than `prefix` that starts with it is remembered. */
  hasLongerWithPrefix(prefix: string): boolean {
    for (const id of this.ids) if (id.length > prefix.length && id.startsWith(prefix)) return true;
    return false;
  }
}

/** 64 random bits as 16 hex digits (Web Crypto: browsers, Node, Bun, Deno). */
export function randomSuffix(): string {
  const bytes = new Uint8Array(8);
  globalThis.crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The longest prefix of `s` of at most `max` UTF-8 bytes that ends on a character. */
function cut(s: string, max: number): string {
  const encoder = new TextEncoder();
  let out = "";
  for (const ch of s) {
    if (encoder.encode(out + ch).length > max) break;
    out += ch;
  }
  return out;
}

interface DecodedOp<Op> {
  rev: number;
  op: Op;
  clientReqId: string | undefined;
}

const isRev = (v: unknown): v is number => typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
const isObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** A client's copy of one room. */
export class Replica<S, Op, Input> {
  private server: S | undefined;
  private visibleState: S | undefined;
  private rev = 0;
  private epochId: string | undefined;
  private pendingList: Pending<Input>[] = [];
  private readonly acks = new IdMemory(REMEMBERED_ACKS);
  private readonly rejected = new IdMemory(REMEMBERED_ACKS);
  private readonly idPrefix: string;
  private readonly idSuffix: string;
  private counter = 0;
  private awaitingSnapshot = false;
  private gapSeen = false;
  private lastGapInfo: GapInfo | undefined;
  private resume = false;

  /**
   * An empty replica for a client acting as participant `actor`. Request ids are
   * `<actor>-<counter>-<idSuffix>`; the suffix (random by default) must differ between
   * replicas of the same participant, including across page loads.
   */
  constructor(
    readonly model: Model<S, Op, Input>,
    readonly actor: string,
    idSuffix: string = randomSuffix(),
  ) {
    this.idPrefix = `${cut(actor, 32)}-`;
    this.idSuffix = idSuffix;
  }

  /** The revision of the server state (0 before any). */
  get serverRev(): number {
    return this.rev;
  }
  /** The server's history id (native dialect only). */
  get epoch(): string | undefined {
    return this.epochId;
  }
  /** The state at `serverRev`, as the server committed it; `undefined` before any snapshot. */
  get serverState(): S | undefined {
    return this.server;
  }
  /** What the user sees: the server state with the pending updates predicted on top. */
  get visible(): S | undefined {
    return this.visibleState;
  }
  /** Updates sent and not yet acknowledged or rejected, oldest first. */
  get pending(): readonly Pending<Input>[] {
    return this.pendingList;
  }
  /** Whether a `REVISION_GAP` was ever seen (sticky until {@link Replica.restore}). */
  get detectedGap(): boolean {
    return this.gapSeen;
  }
  /** The last `REVISION_GAP`. */
  get lastGap(): GapInfo | undefined {
    return this.lastGapInfo;
  }
  /** Whether the replica refused server data and must resume (send the `JOIN` again). */
  get needsResume(): boolean {
    return this.resume;
  }
  /** Whether `clientReqId` was acknowledged (among the last {@link REMEMBERED_ACKS}). */
  wasAcked(clientReqId: string): boolean {
    return this.acks.has(clientReqId);
  }

  /** Puts the replica in a known state: nothing pending, no gap seen. */
  restore(state: S, rev: number, epoch: string | undefined): void {
    this.server = state;
    this.visibleState = state;
    this.rev = rev;
    this.epochId = epoch;
    this.pendingList = [];
    this.lastGapInfo = undefined;
    this.awaitingSnapshot = false;
    this.gapSeen = false;
    this.resume = false;
  }

  /** The connection is gone: a snapshot is no longer expected on it. Pending stays. */
  disconnected(): void {
    this.awaitingSnapshot = false;
  }

  /** A fresh, never reused request id. */
  nextId(): string {
    this.counter += 1;
    return `${this.idPrefix}${this.counter}-${this.idSuffix}`;
  }

  /**
   * Makes an update, predicts it on the visible state and returns its id and the `UPDATE`
   * to send (with `baseRev` once the replica has a server state, unless `baseRev` is
   * `null`).
   */
  update(
    input: Input,
    nowMs: number,
    clientReqId: string = this.nextId(),
    baseRev: number | null | undefined = undefined,
  ): { clientReqId: string; message: string } {
    const base = baseRev === undefined ? (this.server !== undefined ? this.rev : null) : baseRev;
    const payload: Record<string, unknown> = { ...(input as object) };
    if (base !== null) payload.baseRev = base;
    payload.clientReqId = clientReqId;
    const message = JSON.stringify({ type: "UPDATE", meta: {}, payload });
    if (this.visibleState !== undefined) {
      this.visibleState =
        this.model.predict(this.visibleState, this.actor, input, nowMs) ?? this.visibleState;
    }
    this.pendingList.push({
      clientReqId,
      input,
      baseRev: base ?? this.rev,
      issuedAtMs: nowMs,
      message,
      appliedRev: undefined,
    });
    return { clientReqId, message };
  }

  /**
   * The `JOIN` for a connection: a resume (`rev`, and `epoch` in the native dialect) once
   * the replica has a server state, else a request for a snapshot.
   */
  joinMessage(participantId: string, name: string, dialect: Dialect): string {
    const payload: Record<string, unknown> = { participantId, name };
    if (this.server !== undefined) {
      payload.rev = this.rev;
      if (dialect === "native" && this.epochId !== undefined) payload.epoch = this.epochId;
    }
    return JSON.stringify({ type: "JOIN", meta: {}, payload });
  }

  /** The `UPDATE` of the pending update `clientReqId`, as first sent; `undefined` once settled. */
  messageOf(clientReqId: string): string | undefined {
    return this.pendingList.find((p) => p.clientReqId === clientReqId)?.message;
  }

  /** The `UPDATE`s of every pending update, oldest first, as first sent. */
  resendMessages(): string[] {
    return this.pendingList.map((p) => p.message);
  }

  /**
   * Handles one server text frame; returns what it did.
   *
   * @throws {ReplicaError} for a message that does not decode or breaks invariant 1 or 5;
   *   nothing of it is applied and {@link Replica.needsResume} becomes true.
   */
  handleText(text: string): ReplicaEvent[] {
    let message: unknown;
    try {
      message = JSON.parse(text);
    } catch (e) {
      throw this.refuse("decode", `undecodable server message: ${String(e)}`);
    }
    if (!isObject(message) || typeof message.type !== "string") {
      throw this.refuse("decode", "undecodable server message: no type");
    }
    const payload = isObject(message.payload) ? message.payload : {};
    switch (message.type) {
      case "SYNC.SNAPSHOT":
        return this.onSnapshot(payload);
      case "SYNC.DELTAS":
        return this.onDeltas(payload);
      case "REVISION_GAP":
        return this.onGap(payload);
      case "ERROR":
      case "RPC_ERROR":
        return this.onError(payload);
      default:
        throw this.refuse("decode", `undecodable server message: unknown type ${message.type}`);
    }
  }

  private refuse(kind: ReplicaError["kind"], message: string): ReplicaError {
    this.resume = true;
    return new ReplicaError(kind, message);
  }

  private onSnapshot(payload: Record<string, unknown>): ReplicaEvent[] {
    const rev = payload.rev;
    if (!isRev(rev)) throw this.refuse("decode", "SYNC.SNAPSHOT payload.rev must be a non-negative integer");
    const rest: Record<string, unknown> = { ...payload };
    delete rest.rev;
    delete rest.epoch;
    let state: S;
    try {
      state = this.model.fromSnapshot(rest);
    } catch (e) {
      throw this.refuse("decode", `undecodable SYNC.SNAPSHOT: ${String(e)}`);
    }
    const epoch = typeof payload.epoch === "string" ? payload.epoch : undefined;
    const afterGap = this.awaitingSnapshot;
    this.awaitingSnapshot = false;
    const epochChanged = epoch !== undefined && this.epochId !== undefined && epoch !== this.epochId;
    if (epochChanged) {
      // "Already applied at r" spoke of the old history.
      for (const p of this.pendingList) p.appliedRev = undefined;
    }
    if (epoch !== undefined) this.epochId = epoch;
    this.rev = rev;
    this.resume = false;
    const events: ReplicaEvent[] = [{ type: "snapshot", rev, afterGap, epochChanged }];
    const stay: Pending<Input>[] = [];
    for (const p of this.pendingList) {
      const applied = p.appliedRev !== undefined && p.appliedRev <= rev ? p.appliedRev : undefined;
      if (applied !== undefined || this.contains(state, p)) {
        this.acks.record(p.clientReqId);
        events.push({ type: "acked", clientReqId: p.clientReqId, rev: applied ?? rev });
      } else {
        stay.push(p);
      }
    }
    this.pendingList = stay;
    this.server = state;
    this.rebuildVisible();
    return events;
  }

  /** Whether `state` already holds what `p` asks: accepted there, and predicting it changes nothing. */
  private contains(state: S, p: Pending<Input>): boolean {
    const predicted = this.model.predict(state, this.actor, p.input, p.issuedAtMs);
    return predicted !== undefined && this.model.equals(predicted, state);
  }

  private onDeltas(payload: Record<string, unknown>): ReplicaEvent[] {
    const { fromRev: from, toRev: to, operations } = payload;
    if (!isRev(from) || !isRev(to) || !Array.isArray(operations)) {
      throw this.refuse("decode", "SYNC.DELTAS needs fromRev, toRev and operations");
    }
    const ops = this.decodeOps(operations);
    if (this.awaitingSnapshot) {
      throw this.refuse(
        "deltas-while-awaiting-snapshot",
        `SYNC.DELTAS ${from}->${to} came after REVISION_GAP; a SYNC.SNAPSHOT must come first`,
      );
    }
    if (this.server === undefined) {
      throw this.refuse("deltas-before-snapshot", `SYNC.DELTAS ${from}->${to} came before any snapshot`);
    }
    if (from !== this.rev) {
      throw this.refuse(
        "non-contiguous",
        `SYNC.DELTAS starts at revision ${from}, but the replica is at ${this.rev}`,
      );
    }
    this.checkRevs(from, to, ops);
    const rebase = this.pendingList.length > 0;
    let server: S = this.server;
    for (const record of ops) server = this.model.apply(server, record.op);
    this.server = server;
    if (!rebase) this.visibleState = server;
    this.rev = to;
    this.resume = false;
    const events: ReplicaEvent[] = [{ type: "applied", from, to }];
    for (const record of ops) {
      if (record.clientReqId !== undefined) {
        const acked = this.ack(record.clientReqId, record.rev);
        if (acked) events.push(acked);
      }
    }
    this.ackApplied(events);
    if (rebase) this.rebuildVisible();
    return events;
  }

  private decodeOps(operations: unknown[]): DecodedOp<Op>[] {
    return operations.map((raw, i) => {
      if (!isObject(raw) || !isRev(raw.rev) || typeof raw.type !== "string") {
        throw this.refuse("decode", `operation ${i} of SYNC.DELTAS is not {rev, type, payload}`);
      }
      const clientReqId = typeof raw.clientReqId === "string" ? raw.clientReqId : undefined;
      return { rev: raw.rev, op: { type: raw.type, payload: raw.payload } as Op, clientReqId };
    });
  }

  private checkRevs(from: number, to: number, ops: DecodedOp<Op>[]): void {
    if (to < from) throw this.refuse("bad-range", `SYNC.DELTAS goes backwards: fromRev ${from} is after toRev ${to}`);
    if (ops.length !== to - from) {
      throw this.refuse(
        "wrong-operation-count",
        `SYNC.DELTAS ${from}->${to} carries ${ops.length} operations instead of ${to - from}`,
      );
    }
    ops.forEach((record, index) => {
      const expected = from + 1 + index;
      if (record.rev !== expected) {
        throw this.refuse(
          "bad-operation-revs",
          `operation ${index} of SYNC.DELTAS ${from}->${to} has rev ${record.rev}; expected ${expected}`,
        );
      }
    });
  }

  private ack(id: string, rev: number): ReplicaEvent | undefined {
    const index = this.pendingList.findIndex((p) => p.clientReqId === id);
    if (index < 0) return undefined;
    const [p] = this.pendingList.splice(index, 1);
    this.acks.record(p!.clientReqId);
    return { type: "acked", clientReqId: id, rev };
  }

  /** Acknowledges pending updates said to be applied at a revision now reached. */
  private ackApplied(events: ReplicaEvent[]): void {
    const open: Pending<Input>[] = [];
    for (const p of this.pendingList) {
      if (p.appliedRev !== undefined && p.appliedRev <= this.rev) {
        this.acks.record(p.clientReqId);
        events.push({ type: "acked", clientReqId: p.clientReqId, rev: p.appliedRev });
      } else {
        open.push(p);
      }
    }
    this.pendingList = open;
  }

  private onGap(payload: Record<string, unknown>): ReplicaEvent[] {
    const { expectedRev, serverRev, bufferFirstRev, resumeFrom } = payload;
    if (!isRev(expectedRev) || !isRev(serverRev) || !isRev(bufferFirstRev) || !isRev(resumeFrom)) {
      throw this.refuse("decode", "REVISION_GAP needs expectedRev, serverRev, bufferFirstRev and resumeFrom");
    }
    const gap = { expectedRev, serverRev, bufferFirstRev, resumeFrom };
    this.awaitingSnapshot = true;
    this.gapSeen = true;
    this.lastGapInfo = gap;
    return [{ type: "gap", gap }];
  }

  private onError(payload: Record<string, unknown>): ReplicaEvent[] {
    const code = typeof payload.code === "string" ? payload.code : "UNKNOWN";
    const message = typeof payload.message === "string" ? payload.message : "";
    const details = isObject(payload.details) ? payload.details : {};
    const appliedRev = isRev(details.appliedRev) ? details.appliedRev : undefined;
    const id = typeof details.clientReqId === "string" ? details.clientReqId : undefined;
    const error: ReplicaEvent = { type: "error", code, message, retryable: payload.retryable === true };
    if (isRev(payload.retryAfterMs)) error.retryAfterMs = payload.retryAfterMs;
    if (id === undefined) return [error];
    // An over-long id is named by its marked prefix: the error is about the oldest pending
    // update whose longer id starts with it (the server answers in the order they were sent).
    const truncated = details.clientReqIdTruncated === true;
    const index = truncated
      ? this.pendingList.findIndex((p) => p.clientReqId.length > id.length && p.clientReqId.startsWith(id))
      : this.pendingList.findIndex((p) => p.clientReqId === id);
    if (index < 0) {
      const answerToResend =
        appliedRev !== undefined
          ? this.acks.has(id)
          : truncated
            ? this.rejected.hasLongerWithPrefix(id)
            : this.rejected.has(id);
      return answerToResend ? [] : [error];
    }
    const pendingId = this.pendingList[index]!.clientReqId;
    if (appliedRev !== undefined && appliedRev <= this.rev) {
      const acked = this.ack(pendingId, appliedRev);
      this.rebuildVisible();
      return acked ? [acked] : [];
    }
    if (appliedRev === undefined && payload.retryable === true) {
      // Not processed (a rate limit): keep it, to be sent again later.
      const retryAfterMs = isRev(payload.retryAfterMs) ? payload.retryAfterMs : undefined;
      return [{ type: "deferred", clientReqId: pendingId, code, message, retryAfterMs }];
    }
    if (appliedRev !== undefined) {
      // On its way in deltas (which ack it by id) or a snapshot; keep predicting it.
      this.pendingList[index]!.appliedRev = appliedRev;
      return [];
    }
    const [rejected] = this.pendingList.splice(index, 1);
    this.rejected.record(rejected!.clientReqId);
    this.rebuildVisible();
    return [{ type: "rejected", clientReqId: pendingId, code, message }];
  }

  /** visible = server state + pending predictions, in order. */
  private rebuildVisible(): void {
    if (this.server === undefined) {
      this.visibleState = undefined;
      return;
    }
    let visible = this.server;
    for (const p of this.pendingList) {
      visible = this.model.predict(visible, this.actor, p.input, p.issuedAtMs) ?? visible;
    }
    this.visibleState = visible;
  }
}
