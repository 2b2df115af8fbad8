/**
 * The I/O shell: a {@link Replica} kept current over a WebSocket, reconnecting by itself.
 *
 * ## Reconnecting
 * A connection that closes for any reason but a refusal is opened again after a delay:
 * exponential backoff with full jitter (`random() * min(maxMs, initialMs * 2^attempt)`),
 * never shorter than a `retryAfterMs` the server asked for. The new connection resumes:
 * `JOIN` with `rev` (and `epoch` in the native dialect), then every pending update as first
 * sent. The server applies each `clientReqId` at most once and the replica settles each
 * update exactly once, so nothing is applied or acknowledged twice.
 *
 * Close codes: 1008 (policy), 1002, 1003, 1007, 1009, 1010 and 4400-4499 (refusals such as
 * 4401) stop the client (`status` becomes `stopped`, {@link Client.stopReason} says why);
 * every other code (1000, 1001 going away, 1005, 1006, 1011, 1012 restart, 1013, ...)
 * reconnects, except 1001 when `goingAwayIsFinal` is set (a server configured with
 * `server.shutdown_close_code = "going-away"` sends 1001 for a final stop; it sends 1012
 * for a restart). An `ERROR` answering the `JOIN` that is not retryable (`UNAUTHENTICATED`)
 * stops it too; a retryable one (a rate limit) reconnects after its `retryAfterMs`.
 * A rate-limited `UPDATE` (a retryable `ERROR` naming it) stays pending and is sent again
 * after its `retryAfterMs`; a new connection resends it anyway.
 *
 * @module
 */

import { presence, type Model, type Participants, type PresenceInput, type PresenceOp } from "./model.js";
import {
  NATIVE_SUBPROTOCOL,
  Replica,
  ReplicaError,
  type Dialect,
  type GapInfo,
  type ReplicaEvent,
} from "./replica.js";

/** The part of the WHATWG `WebSocket` the client uses. */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A `WebSocket` constructor: the platform's, or one injected (e.g. the `ws` package's on Node 20). */
export type WebSocketConstructor = new (url: string, protocols?: string[]) => WebSocketLike;

/** Where the client is. */
export type Status = "connecting" | "live" | "reconnecting" | "stopped";

/** What the answer to a `JOIN` was. */
export type ResumeReport =
  | { kind: "joined"; rev: number }
  | { kind: "resumed"; fromRev: number; toRev: number; operations: number }
  | { kind: "reset"; rev: number; gap: GapInfo | undefined; epochChanged: boolean };

/** Why a client stopped. */
export interface StopReason {
  /** The close code, or 0 for a local `stop()` or a refused `JOIN`. */
  code: number;
  reason: string;
}

/** Options of a {@link Client}. */
export interface ClientOptions<S, Op, Input> {
  /** `ws://host:port/` (room `default`) or `ws://host:port/rooms/NAME`. */
  url: string;
  participantId: string;
  /** Display name sent with every `JOIN`. */
  name: string;
  /** The application's model (default: presence). */
  model?: Model<S, Op, Input>;
  /** `native` (default: subprotocol `deltasync.v1`, resumes carry the epoch) or `ws-kit`. */
  dialect?: Dialect;
  /** A token for servers that require one. */
  token?: string;
  /** How to send it: `query` (`?access_token=`, default) or `subprotocol` (`bearer.<token>`). */
  tokenVia?: "query" | "subprotocol";
  /** The `WebSocket` constructor (default: `globalThis.WebSocket`). */
  WebSocket?: WebSocketConstructor;
  /** First reconnect delay bound, ms (default 250). */
  initialBackoffMs?: number;
  /** Largest reconnect delay bound, ms (default 10000). */
  maxBackoffMs?: number;
  /** Random numbers in [0, 1) for the jitter (default `Math.random`). */
  random?: () => number;
  /** Send `HEARTBEAT` this often while live, ms; 0 for never (default 20000). */
  heartbeatMs?: number;
  /** The clock (default `Date.now`). */
  now?: () => number;
  /** Whether close 1001 (going away) stops the client instead of reconnecting (default false). */
  goingAwayIsFinal?: boolean;
  /** Connect at once (default true); else call {@link Client.start}. */
  autoStart?: boolean;
  /** Request-id suffix (default random): for deterministic tests only. */
  idSuffix?: string;
}

/** Events a {@link Client} emits, by name. */
export interface ClientEvents<S> {
  /** The visible state changed. */
  state: (state: S | undefined) => void;
  status: (status: Status) => void;
  /** A `JOIN` was answered: first state, a resume by deltas, or a reset by a snapshot. */
  resume: (report: ResumeReport) => void;
  /** Everything the replica did with one server message. */
  replica: (events: readonly ReplicaEvent[]) => void;
  /** A reconnect is scheduled: the attempt (1-based) and the delay before it. */
  reconnect: (info: { attempt: number; delayMs: number }) => void;
  /** The server refused a message the replica could not take, or the socket failed. */
  problem: (error: Error) => void;
}

const STOP_CODES = new Set([1002, 1003, 1007, 1008, 1009, 1010]);
const OPEN = 1;

/** Whether a close with `code` is a refusal (stop) rather than a reason to reconnect. */
export function stopsOnClose(code: number): boolean {
  return STOP_CODES.has(code) || (code >= 4400 && code <= 4499);
}

/** The delay before reconnect attempt `attempt` (0-based): full jitter over a doubling bound. */
export function backoffDelay(attempt: number, initialMs: number, maxMs: number, random: () => number): number {
  const bound = Math.min(maxMs, initialMs * 2 ** Math.min(attempt, 30));
  return Math.floor(random() * bound);
}

type Listener = (...args: never[]) => void;

/** A replica of one room kept current over WebSocket. See the module documentation. */
export class Client<S = Participants, Op = PresenceOp, Input = PresenceInput> {
  /** The replica: `serverRev`, server state, pending updates, visible state. */
  readonly replica: Replica<S, Op, Input>;
  private readonly options: Required<
    Omit<ClientOptions<S, Op, Input>, "token" | "idSuffix" | "model" | "WebSocket">
  > & { token: string | undefined; WebSocket: WebSocketConstructor | undefined };
  private socket: WebSocketLike | undefined;
  /** Whether this connection's `JOIN` went out (updates wait for it, then go with the resends). */
  private joinSent = false;
  private statusValue: Status = "stopped";
  private stopped = true;
  private stopReasonValue: StopReason | undefined;
  private attempt = 0;
  private retryAfterMs = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  /** The revision the last `JOIN` resumed from (`undefined`: it asked for a snapshot), until answered. */
  private joinAnswer: { resumedFrom: number | undefined; gap: GapInfo | undefined } | undefined;
  private lastState: S | undefined;
  private readonly listeners = new Map<keyof ClientEvents<S> | "change", Set<Listener>>();

  constructor(options: ClientOptions<S, Op, Input>) {
    const model = (options.model ?? presence) as unknown as Model<S, Op, Input>;
    this.replica = new Replica(model, options.participantId, options.idSuffix);
    this.options = {
      url: options.url,
      participantId: options.participantId,
      name: options.name,
      dialect: options.dialect ?? "native",
      token: options.token,
      tokenVia: options.tokenVia ?? "query",
      WebSocket: options.WebSocket,
      initialBackoffMs: options.initialBackoffMs ?? 250,
      maxBackoffMs: options.maxBackoffMs ?? 10_000,
      random: options.random ?? Math.random,
      heartbeatMs: options.heartbeatMs ?? 20_000,
      now: options.now ?? Date.now,
      autoStart: options.autoStart ?? true,
      goingAwayIsFinal: options.goingAwayIsFinal ?? false,
    };
    if (this.options.autoStart) this.start();
  }

  /** The visible state (server state + pending updates); a new object whenever it changed. */
  getState(): S | undefined {
    return this.replica.visible;
  }

  /** Where the client is. */
  get status(): Status {
    return this.statusValue;
  }

  /** Why the client stopped, when it did. */
  get stopReason(): StopReason | undefined {
    return this.stopReasonValue;
  }

  /**
   * Calls `listener` after every change of state or status (for React's
   * `useSyncExternalStore`, Svelte stores, Vue refs). Returns the unsubscribe function.
   */
  subscribe(listener: () => void): () => void {
    return this.add("change", listener);
  }

  /** Listens to one kind of event; returns the function that stops listening. */
  on<K extends keyof ClientEvents<S>>(event: K, listener: ClientEvents<S>[K]): () => void {
    return this.add(event, listener as Listener);
  }

  private add(event: keyof ClientEvents<S> | "change", listener: Listener): () => void {
    let set = this.listeners.get(event);
    if (set === undefined) this.listeners.set(event, (set = new Set()));
    set.add(listener);
    return () => void set.delete(listener);
  }

  private emit<K extends keyof ClientEvents<S>>(event: K, ...args: Parameters<ClientEvents<S>[K]>): void {
    for (const listener of [...(this.listeners.get(event) ?? [])]) {
      (listener as (...a: unknown[]) => void)(...args);
    }
    if (event === "state" || event === "status") {
      for (const listener of [...(this.listeners.get("change") ?? [])]) (listener as () => void)();
    }
  }

  /**
   * Applies `input` to the visible state at once and sends it (or keeps it for the next
   * connection); returns its `clientReqId`. It stays pending until acknowledged or
   * rejected, across reconnects.
   */
  update(input: Input): string {
    const { clientReqId, message } = this.replica.update(input, this.options.now());
    if (this.socket?.readyState === OPEN && this.joinSent) this.socket.send(message);
    this.notifyState();
    return clientReqId;
  }

  /** Connects (resuming from the replica's revision) unless already started. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.stopReasonValue = undefined;
    this.attempt = 0;
    this.open();
  }

  /** Closes the connection (1000) and stays offline until {@link Client.start}; pending updates stay. */
  stop(): void {
    this.halt({ code: 0, reason: "stopped by the application" });
  }

  private halt(reason: StopReason): void {
    this.stopped = true;
    this.stopReasonValue = reason;
    clearTimeout(this.reconnectTimer);
    this.stopHeartbeat();
    const socket = this.socket;
    this.detach();
    if (socket !== undefined && socket.readyState <= OPEN) socket.close(1000, "client stopped");
    this.setStatus("stopped");
  }

  private detach(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    socket.onopen = socket.onmessage = socket.onclose = null;
    // Not null: Node's `ws` throws an 'error' it emits with no listener (it does after a
    // close() during the handshake).
    socket.onerror = () => {};
    this.socket = undefined;
    this.joinSent = false;
    this.joinAnswer = undefined;
    this.replica.disconnected();
  }

  private open(): void {
    this.setStatus(this.replica.serverState === undefined && this.attempt === 0 ? "connecting" : "reconnecting");
    const Ctor = this.options.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (Ctor === undefined) {
      this.halt({ code: 0, reason: "no WebSocket: pass the WebSocket option (e.g. the ws package on Node 20)" });
      return;
    }
    const { url, protocols } = this.target();
    let socket: WebSocketLike;
    try {
      socket = new Ctor(url, protocols);
    } catch (e) {
      this.halt({ code: 0, reason: `cannot open ${url}: ${String(e)}` });
      return;
    }
    this.socket = socket;
    this.watchRefusedUpgrade(socket);
    socket.onopen = () => this.onOpen();
    socket.onmessage = (event) => this.onMessage(event.data);
    socket.onclose = (event) => this.onClose(event.code, event.reason);
    socket.onerror = () => {};
  }

  /** The URL (with `access_token`) and subprotocols to ask for. */
  private target(): { url: string; protocols: string[] } {
    const { dialect, token, tokenVia } = this.options;
    let url = this.options.url;
    const protocols = dialect === "native" ? [NATIVE_SUBPROTOCOL] : [];
    if (token !== undefined && tokenVia === "query") {
      url += `${url.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(token)}`;
    } else if (token !== undefined) {
      protocols.push(`bearer.${token}`);
    }
    return { url, protocols };
  }

  /**
   * Node's `ws` reports a refused upgrade (HTTP 401, 503 + `Retry-After`) as an event; the
   * browser's `WebSocket` hides it (a plain close 1006).
   */
  private watchRefusedUpgrade(socket: WebSocketLike): void {
    const on = (socket as { on?: (event: string, fn: (...args: never[]) => void) => void }).on;
    if (typeof on !== "function") return;
    on.call(socket, "unexpected-response", ((_req: unknown, res: { statusCode?: number; headers?: Record<string, string> }) => {
      const status = res.statusCode ?? 0;
      const retryAfter = Number(res.headers?.["retry-after"]);
      if (Number.isFinite(retryAfter) && retryAfter >= 0) this.retryAfterMs = retryAfter * 1000;
      if (status === 401 || status === 403) {
        this.halt({ code: 0, reason: `the server refused the upgrade: HTTP ${status}` });
      }
      socket.close();
    }) as never);
  }

  private onOpen(): void {
    const socket = this.socket;
    if (socket === undefined) return;
    const { participantId, name, dialect } = this.options;
    const resumedFrom = this.replica.serverState === undefined ? undefined : this.replica.serverRev;
    this.joinAnswer = { resumedFrom, gap: undefined };
    socket.send(this.replica.joinMessage(participantId, name, dialect));
    for (const message of this.replica.resendMessages()) socket.send(message);
    this.joinSent = true;
  }

  private onMessage(data: unknown): void {
    if (typeof data !== "string") return;
    let events: ReplicaEvent[];
    try {
      events = this.replica.handleText(data);
    } catch (e) {
      this.emit("problem", e as Error);
      if (e instanceof ReplicaError && this.replica.needsResume && this.socket !== undefined) this.onOpen();
      return;
    }
    this.emit("replica", events);
    for (const event of events) this.react(event);
    this.notifyState();
  }

  private react(event: ReplicaEvent): void {
    switch (event.type) {
      case "snapshot": {
        const resumed = this.joinAnswer?.resumedFrom !== undefined || event.afterGap;
        const { rev, epochChanged } = event;
        this.answered(resumed ? { kind: "reset", rev, gap: this.joinAnswer?.gap, epochChanged } : { kind: "joined", rev });
        // A snapshot skips the acks its deltas carried: resend what is still pending.
        for (const message of this.replica.resendMessages()) this.socket?.send(message);
        break;
      }
      case "applied":
        this.answered({ kind: "resumed", fromRev: event.from, toRev: event.to, operations: event.to - event.from });
        break;
      case "gap":
        if (this.joinAnswer !== undefined) this.joinAnswer.gap = event.gap;
        break;
      case "deferred":
        this.resendLater(event.clientReqId, event.retryAfterMs ?? this.options.initialBackoffMs);
        break;
      case "error":
        if (this.joinAnswer === undefined) break;
        // The JOIN itself was answered with an error: a refusal stops, a retryable one
        // (a rate limit) reconnects after the time asked.
        if (!event.retryable) {
          this.halt({ code: 0, reason: `the server refused the JOIN: ${event.code}: ${event.message}` });
        } else {
          this.retryAfterMs = event.retryAfterMs ?? 0;
          this.socket?.close(1000, "JOIN refused for now; retrying");
        }
        break;
      default:
        break;
    }
  }

  /** Sends the pending update `clientReqId` again in `delayMs`, if still pending and connected. */
  private resendLater(clientReqId: string, delayMs: number): void {
    const socket = this.socket;
    setTimeout(() => {
      const message = this.replica.messageOf(clientReqId);
      if (message !== undefined && socket !== undefined && socket === this.socket && socket.readyState === OPEN) socket.send(message);
    }, delayMs);
  }

  /** The first state message after a `JOIN`: the connection is live. */
  private answered(report: ResumeReport): void {
    if (this.joinAnswer === undefined) return;
    this.joinAnswer = undefined;
    this.attempt = 0;
    this.retryAfterMs = 0;
    this.setStatus("live");
    this.startHeartbeat();
    this.emit("resume", report);
  }

  private onClose(code: number, reason: string): void {
    this.detach();
    this.stopHeartbeat();
    if (this.stopped) return;
    if (stopsOnClose(code) || (code === 1001 && this.options.goingAwayIsFinal)) {
      this.halt({ code, reason });
      return;
    }
    const { initialBackoffMs, maxBackoffMs, random } = this.options;
    const delay = Math.max(this.retryAfterMs, backoffDelay(this.attempt, initialBackoffMs, maxBackoffMs, random));
    this.attempt += 1;
    this.retryAfterMs = 0;
    this.setStatus("reconnecting");
    this.emit("reconnect", { attempt: this.attempt, delayMs: delay });
    this.reconnectTimer = setTimeout(() => {
      if (!this.stopped) this.open();
    }, delay);
  }

  private startHeartbeat(): void {
    this.stopHeartbeat();
    if (this.options.heartbeatMs <= 0) return;
    this.heartbeatTimer = setInterval(() => {
      if (this.socket?.readyState === OPEN) this.socket.send('{"type":"HEARTBEAT","meta":{}}');
    }, this.options.heartbeatMs);
  }

  private stopHeartbeat(): void {
    clearInterval(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private setStatus(status: Status): void {
    if (status === this.statusValue) return;
    this.statusValue = status;
    this.emit("status", status);
  }

  private notifyState(): void {
    const state = this.replica.visible;
    if (state === this.lastState) return;
    this.lastState = state;
    this.emit("state", state);
  }
}
