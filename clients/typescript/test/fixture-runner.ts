/**
 * Runs the repository's conformance fixtures (`fixtures/*.json`, see docs/conformance.md)
 * against this package's {@link Replica}, with the expectations of the Rust runner
 * (`src/conformance/runner.rs`): the same steps, the same end-of-run check for unexpected
 * messages, the same assertion paths. Unknown steps or paths fail the fixture.
 *
 * Two servers:
 * - {@link TranscriptServer}: the fixture's own `server SEND` messages are what the server
 *   sends (the fixture is the transcript). Every fixture runs this way; steps that control
 *   the server (`CLOCK`, `PROCESS_OPERATIONS`, `STATE`, `PAUSE`) only act through the
 *   messages the transcript shows. What it checks is the client: it takes every message,
 *   its `UPDATE`s encode as the fixture writes them, its visible state, pending list, acks
 *   and assertions match.
 * - {@link WireServer}: a real `deltasync serve --test-clock 1000`, over WebSocket (ws-kit
 *   dialect, a room per fixture), for the fixtures that need no server control; the others
 *   are listed as not run over the wire with the step that needs control.
 */

import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import WebSocket from "ws";

import { Replica, presence, type Participants, type PresenceInput, type PresenceOp } from "../src/index.js";

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type Obj = { [key: string]: Json };

export interface Step {
  actor: string;
  action: string;
  client?: string;
  msg?: Obj;
  raw?: string;
  count?: number;
  now?: number;
  serverRev?: number;
  participants?: Obj;
  state?: Json;
  pendingOps?: number;
  clientReqId?: string;
}

export interface Fixture {
  name: string;
  config?: { ringCapacity?: number };
  steps: Step[];
  assertions: Obj[];
}

const KNOWN_STEPS = new Set([
  "client SEND",
  "client SEND_RAW",
  "client DISCONNECT",
  "client RECONNECT",
  "client PAUSE",
  "client RESUME",
  "client STATE",
  "client OPTIMISTIC_APPLY",
  "client ACK_PENDING",
  "server SEND",
  "server PROCESS_OPERATIONS",
  "server CLOCK",
]);

/** The fixture files of `dir`, sorted by name, parsed. Unknown steps throw. */
export function loadFixtures(dir: string): { file: string; fixture: Fixture }[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith(".json"))
    .sort()
    .map((file) => {
      const fixture = JSON.parse(readFileSync(join(dir, file), "utf8")) as Fixture;
      if ((fixture as unknown as Obj).schemaVersion !== "1.0.0") throw new Error(`${file}: schemaVersion`);
      fixture.steps.forEach((s, i) => {
        if (!KNOWN_STEPS.has(`${s.actor} ${s.action}`)) throw new Error(`${file}: step ${i + 1}: unknown step`);
      });
      return { file, fixture };
    });
}

/** Why a fixture cannot run over the wire (the Rust `not_drivable`), or undefined. */
export function notDrivable(fixture: Fixture): string | undefined {
  if (fixture.config?.ringCapacity !== undefined) {
    return `needs a ring of ${fixture.config.ringCapacity} (config.ringCapacity)`;
  }
  const control: Record<string, string> = {
    "client PAUSE": "client PAUSE/RESUME",
    "client RESUME": "client PAUSE/RESUME",
    "client STATE": "client STATE",
    "server PROCESS_OPERATIONS": "server PROCESS_OPERATIONS",
    "server CLOCK": "server CLOCK",
  };
  const i = fixture.steps.findIndex((s) => control[`${s.actor} ${s.action}`] !== undefined);
  if (i < 0) return undefined;
  const s = fixture.steps[i]!;
  return `step ${i + 1} (${control[`${s.actor} ${s.action}`]}) needs control of the server`;
}

/** `{type, ...rest}` -> `{type, meta: {}, payload: rest}` (no payload when rest is empty for LEAVE/HEARTBEAT). */
export function envelope(flat: Obj): Obj {
  const { type, ...rest } = flat;
  const message: Obj = { type: type ?? null, meta: {} };
  if (Object.keys(rest).length > 0 || (type !== "LEAVE" && type !== "HEARTBEAT")) message.payload = rest;
  return message;
}

/** What the runner needs of a server. */
export interface FixtureServer {
  connect(client: string): Promise<void>;
  disconnect(client: string): void;
  send(client: string, text: string): void;
  /** The next message for `client`; the transcript server returns `expected`. */
  receive(client: string, expected: Obj): Promise<string | undefined>;
  /** A message nobody expects, if any. */
  receiveUnexpected(client: string): Promise<string | undefined>;
  /** The newest revision the server sent to any client of the fixture. */
  rev(): number;
  close(): void;
}

function revisionOf(text: string): number {
  try {
    const m = JSON.parse(text) as Obj;
    const p = (m.payload ?? {}) as Obj;
    if (m.type === "SYNC.SNAPSHOT") return Number(p.rev ?? 0);
    if (m.type === "SYNC.DELTAS") return Number(p.toRev ?? 0);
  } catch {
    // not JSON: no revision
  }
  return 0;
}

/** The fixture is the transcript: the server sends exactly what each `server SEND` says. */
export class TranscriptServer implements FixtureServer {
  private newest = 0;
  async connect(): Promise<void> {}
  disconnect(): void {}
  send(): void {}
  async receive(_client: string, expected: Obj): Promise<string> {
    const text = JSON.stringify({ ...expected, meta: {} });
    this.newest = Math.max(this.newest, revisionOf(text));
    return text;
  }
  async receiveUnexpected(): Promise<undefined> {
    return undefined;
  }
  rev(): number {
    return this.newest;
  }
  close(): void {}
}

/** A real server over WebSocket (ws-kit dialect), each client its own connection. */
export class WireServer implements FixtureServer {
  private readonly sockets = new Map<string, { ws: WebSocket; inbox: string[]; waiters: ((t: string | undefined) => void)[] }>();
  private newest = 0;
  constructor(private readonly base: string, private readonly room: string) {}

  connect(client: string): Promise<void> {
    this.disconnect(client);
    const ws = new WebSocket(`${this.base}/rooms/${this.room}`);
    const entry = { ws, inbox: [] as string[], waiters: [] as ((t: string | undefined) => void)[] };
    this.sockets.set(client, entry);
    ws.on("message", (data) => {
      const text = data.toString();
      this.newest = Math.max(this.newest, revisionOf(text));
      const waiter = entry.waiters.shift();
      if (waiter) waiter(text);
      else entry.inbox.push(text);
    });
    return new Promise((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
    });
  }
  disconnect(client: string): void {
    this.sockets.get(client)?.ws.close();
    this.sockets.delete(client);
  }
  send(client: string, text: string): void {
    const entry = this.sockets.get(client);
    if (entry === undefined) throw new Error(`client ${client} has no connection`);
    entry.ws.send(text);
  }
  private read(client: string, waitMs: number): Promise<string | undefined> {
    const entry = this.sockets.get(client);
    if (entry === undefined) return Promise.resolve(undefined);
    const queued = entry.inbox.shift();
    if (queued !== undefined) return Promise.resolve(queued);
    return new Promise((resolve) => {
      const waiter = (t: string | undefined) => {
        clearTimeout(timer);
        resolve(t);
      };
      const timer = setTimeout(() => {
        entry.waiters.splice(entry.waiters.indexOf(waiter), 1);
        resolve(undefined);
      }, waitMs);
      entry.waiters.push(waiter);
    });
  }
  receive(client: string): Promise<string | undefined> {
    return this.read(client, 5000);
  }
  receiveUnexpected(client: string): Promise<string | undefined> {
    return this.read(client, 300);
  }
  rev(): number {
    return this.newest;
  }
  close(): void {
    for (const client of [...this.sockets.keys()]) this.disconnect(client);
  }
}

interface ClientRun {
  replica: Replica<Participants, PresenceOp, PresenceInput> | undefined;
  joinedAs: [string, string] | undefined;
  connected: boolean;
  everConnected: boolean;
}

const PATCH_KEYS = new Set(["id", "name", "status"]);

/** A flat `UPDATE` as a presence input, id and baseRev (the Rust `parse_update`), or undefined. */
function parseUpdate(flat: Obj): [PresenceInput, string, number | null] | undefined {
  const { type: _type, clientReqId, baseRev, ...fields } = flat;
  if (typeof clientReqId !== "string") return undefined;
  if (baseRev !== undefined && (typeof baseRev !== "number" || baseRev < 0)) return undefined;
  const keys = Object.keys(fields);
  const patch = fields.patch;
  if (keys.length !== 1 || keys[0] !== "patch" || typeof patch !== "object" || patch === null || Array.isArray(patch)) {
    return undefined;
  }
  if (!Object.keys(patch).every((k) => PATCH_KEYS.has(k))) return undefined;
  if (patch.status !== undefined && !["online", "away", "offline"].includes(patch.status as string)) return undefined;
  return [{ patch } as PresenceInput, clientReqId, (baseRev as number | undefined) ?? null];
}

/** Same type, same payload; `meta` not compared. */
function sameMessage(expected: Obj, actual: Obj): boolean {
  return expected.type === actual.type && deepEqual(expected.payload ?? {}, actual.payload ?? {});
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => deepEqual((a as Obj)[k], (b as Obj)[k]));
}

/** Runs `fixture` against `server`; throws `step N: ...` or the failed assertion. */
export async function runFixture(fixture: Fixture, server: FixtureServer): Promise<void> {
  const clients = new Map<string, ClientRun>();
  const client = (name: string): ClientRun => {
    let c = clients.get(name);
    if (c === undefined) clients.set(name, (c = { replica: undefined, joinedAs: undefined, connected: false, everConnected: false }));
    return c;
  };
  const ensureConnected = async (name: string) => {
    const c = client(name);
    if (c.connected) return;
    if (c.everConnected) throw new Error(`client "${name}" is disconnected; RECONNECT first`);
    c.connected = c.everConnected = true;
    await server.connect(name);
  };
  for (const [i, step] of fixture.steps.entries()) {
    try {
      await runStep(step, step.client ?? "default");
    } catch (e) {
      throw new Error(`step ${i + 1}: ${(e as Error).message}`);
    }
  }

  async function runStep(step: Step, name: string): Promise<void> {
    switch (`${step.actor} ${step.action}`) {
      case "client SEND":
        return clientSend(name, step.msg!);
      case "client SEND_RAW":
        await ensureConnected(name);
        return server.send(name, step.raw!);
      case "client DISCONNECT":
        server.disconnect(name);
        client(name).connected = false;
        client(name).replica?.disconnected();
        return;
      case "client RECONNECT":
        return reconnect(name);
      case "client STATE":
        return state(name, step.serverRev!, step.participants!);
      case "client OPTIMISTIC_APPLY":
        return optimisticApply(name, step.state!, step.pendingOps!);
      case "client ACK_PENDING":
        return ackPending(name, step.clientReqId!);
      case "server SEND":
        return serverSend(name, step.msg!);
      default:
        // client PAUSE/RESUME, server PROCESS_OPERATIONS/CLOCK: the server's side; their
        // effect on this client is in the messages the next steps expect.
        return;
    }
  }

  async function clientSend(name: string, flat: Obj): Promise<void> {
    await ensureConnected(name);
    const c = client(name);
    const text = JSON.stringify(envelope(flat));
    if (flat.type === "JOIN" && typeof flat.participantId === "string" && typeof flat.name === "string") {
      c.replica ??= new Replica(presence, flat.participantId);
      c.joinedAs = [flat.participantId, flat.name];
    }
    const update = flat.type === "UPDATE" ? parseUpdate(flat) : undefined;
    if (c.replica !== undefined && update !== undefined) {
      const [input, id, baseRev] = update;
      const { message } = c.replica.update(input, 0, id, baseRev);
      if (!deepEqual(JSON.parse(message), JSON.parse(text))) {
        throw new Error(`the client encodes the UPDATE as ${message}, the fixture as ${text}`);
      }
    }
    server.send(name, text);
  }

  async function reconnect(name: string): Promise<void> {
    await server.connect(name);
    const c = client(name);
    c.connected = c.everConnected = true;
    if (c.joinedAs !== undefined && c.replica !== undefined) {
      const join = c.replica.joinMessage(c.joinedAs[0], c.joinedAs[1], "ws-kit");
      // RECONNECT resumes from the client's serverRev (protocol.md); the transcript's next
      // messages are the answer to exactly this JOIN.
      const resume: Obj = { participantId: c.joinedAs[0], name: c.joinedAs[1] };
      if (c.replica.serverState !== undefined) resume.rev = c.replica.serverRev;
      if (!deepEqual(JSON.parse(join), { type: "JOIN", meta: {}, payload: resume })) {
        throw new Error(`RECONNECT: the client sends ${join}, not a resume from its serverRev`);
      }
      server.send(name, join);
      for (const message of c.replica.resendMessages()) server.send(name, message);
    }
  }

  function state(name: string, rev: number, participants: Obj): void {
    for (const c of clients.values()) c.connected = false;
    const ids = Object.keys(participants);
    const single = ids.length === 1 ? (participants[ids[0]!] as Obj) : undefined;
    const c = client(name);
    c.replica = new Replica(presence, single ? String(single.id) : "");
    c.replica.restore(participants as unknown as Participants, rev, undefined);
    c.connected = single !== undefined;
    c.everConnected = true;
    c.joinedAs = single ? [String(single.id), String(single.name)] : undefined;
  }

  function optimisticApply(name: string, expected: Json, pendingOps: number): void {
    const replica = client(name).replica;
    if (replica === undefined) throw new Error("the client has no state yet");
    const visible = replica.visible ?? null;
    if (!deepEqual(visible, expected)) {
      throw new Error(`OPTIMISTIC_APPLY: expected visible state ${JSON.stringify(expected)}, the client shows ${JSON.stringify(visible)}`);
    }
    if (replica.pending.length !== pendingOps) {
      throw new Error(`OPTIMISTIC_APPLY: expected ${pendingOps} pending operations, the client has ${replica.pending.length}`);
    }
  }

  function ackPending(name: string, id: string): void {
    const replica = client(name).replica;
    if (replica === undefined) throw new Error("the client has no state yet");
    if (replica.pending.some((p) => p.clientReqId === id)) throw new Error(`ACK_PENDING: "${id}" is still pending`);
    if (!replica.wasAcked(id)) throw new Error(`ACK_PENDING: "${id}" was not acknowledged`);
  }

  async function serverSend(name: string, flat: Obj): Promise<void> {
    const expected = envelope(flat);
    const text = await server.receive(name, expected);
    if (text === undefined) throw new Error(`expected ${JSON.stringify(expected)}, the server sent nothing`);
    const actual = JSON.parse(text) as Obj;
    if (!sameMessage(expected, actual)) {
      throw new Error(`expected ${JSON.stringify(expected)}, got ${text}`);
    }
    const replica = client(name).replica;
    if (replica !== undefined) {
      try {
        replica.handleText(text);
      } catch (e) {
        throw new Error(`the client refused ${text}: ${(e as Error).message}`);
      }
    }
  }

  for (const name of clients.keys()) {
    const extra = await server.receiveUnexpected(name);
    if (extra !== undefined) throw new Error(`the server sent ${extra} to "${name}", which no step expected`);
  }
  for (const assertion of fixture.assertions) {
    for (const [path, expected] of Object.entries(assertion)) {
      const actual = lookup(path);
      if (!deepEqual(actual, expected)) {
        throw new Error(`assertion ${path}: expected ${JSON.stringify(expected)}, got ${JSON.stringify(actual)}`);
      }
    }
  }

  function lookup(path: string): Json {
    if (path === "server.rev") return server.rev();
    const [root, ...rest] = path.split(".");
    let name = "default";
    if (root === "clients") name = rest.shift() ?? "";
    else if (root !== "client") throw new Error(`unknown assertion path "${path}"`);
    const field = rest.join(".");
    const replica = clients.get(name)?.replica;
    if (field === "serverRev") return replica?.serverRev ?? 0;
    if (field === "pendingOps") return replica?.pending.length ?? 0;
    if (field === "detectedGap") return replica?.detectedGap ?? false;
    if (!field.startsWith("state.") || field === "state.") throw new Error(`unknown assertion path "${path}"`);
    let value: unknown = replica?.visible ?? null;
    for (const key of field.slice("state.".length).split(".")) {
      value = typeof value === "object" && value !== null ? (value as Obj)[key] : undefined;
    }
    return (value as Json) ?? null;
  }
}
