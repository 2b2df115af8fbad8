/** The reconnecting client against a scripted WebSocket: what it sends, when it reconnects or stops. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { Client, backoffDelay, stopsOnClose, type ResumeReport, type Status, type WebSocketLike } from "../../src/index.js";

class FakeSocket implements WebSocketLike {
  static all: FakeSocket[] = [];
  readyState = 0;
  protocol = "";
  sent: string[] = [];
  onopen: ((e: unknown) => void) | null = null;
  onmessage: ((e: { data: unknown }) => void) | null = null;
  onclose: ((e: { code: number; reason: string }) => void) | null = null;
  onerror: ((e: unknown) => void) | null = null;
  constructor(readonly url: string, readonly protocols?: string[]) {
    FakeSocket.all.push(this);
  }
  send(data: string): void {
    this.sent.push(data);
  }
  close(): void {
    this.readyState = 3;
  }
  open(protocol = "deltasync.v1"): void {
    this.readyState = 1;
    this.protocol = protocol;
    this.onopen?.({});
  }
  receive(type: string, payload: object): void {
    this.onmessage?.({ data: JSON.stringify({ type, meta: {}, payload }) });
  }
  drop(code: number, reason = ""): void {
    this.readyState = 3;
    this.onclose?.({ code, reason });
  }
  payloads(): unknown[] {
    return this.sent.map((s) => JSON.parse(s));
  }
}

const ann = { id: "ann", name: "Ann", status: "online", lastActive: 1000 };
const tick = () => new Promise((done) => setTimeout(done, 5));

function client(extra: object = {}) {
  FakeSocket.all = [];
  const c = new Client({
    url: "ws://server/rooms/r",
    participantId: "ann",
    name: "Ann",
    WebSocket: FakeSocket,
    random: () => 0,
    heartbeatMs: 0,
    idSuffix: "t",
    autoStart: false,
    ...extra,
  });
  const statuses: Status[] = [];
  const reports: ResumeReport[] = [];
  c.on("status", (s) => statuses.push(s));
  c.on("resume", (r) => reports.push(r));
  c.start();
  return { c, statuses, reports };
}

describe("backoff and close codes", () => {
  it("full jitter under a doubling bound, capped", () => {
    assert.deepEqual([0, 1, 2, 3, 10].map((a) => backoffDelay(a, 250, 10_000, () => 0.999)), [249, 499, 999, 1998, 9990]);
    assert.equal(backoffDelay(5, 250, 10_000, () => 0), 0);
  });
  it("refusals stop, the rest reconnect", () => {
    assert.deepEqual([1008, 4401, 4403, 1002, 1009].map(stopsOnClose), [true, true, true, true, true]);
    assert.deepEqual([1000, 1001, 1005, 1006, 1011, 1012, 1013, 4500].map(stopsOnClose), Array(8).fill(false));
  });
});

describe("client", () => {
  it("joins, resumes after a drop with rev and epoch, resends the pending update, acks it once", async () => {
    const { c, statuses, reports } = client();
    const first = FakeSocket.all[0]!;
    assert.deepEqual([first.url, first.protocols], ["ws://server/rooms/r", ["deltasync.v1"]]);
    first.open();
    assert.deepEqual(first.payloads(), [{ type: "JOIN", meta: {}, payload: { participantId: "ann", name: "Ann" } }]);
    first.receive("SYNC.SNAPSHOT", { rev: 1, epoch: "e1", participants: { ann } });
    assert.equal(c.status, "live");
    first.drop(1006);
    assert.equal(c.status, "reconnecting");
    const id = c.update({ patch: { status: "away" } });
    assert.equal(id, "ann-1-t");
    assert.equal(c.getState()!.ann!.status, "away");
    await tick();
    const second = FakeSocket.all[1]!;
    second.open();
    assert.deepEqual(second.payloads(), [
      { type: "JOIN", meta: {}, payload: { participantId: "ann", name: "Ann", rev: 1, epoch: "e1" } },
      { type: "UPDATE", meta: {}, payload: { patch: { status: "away" }, baseRev: 1, clientReqId: "ann-1-t" } },
    ]);
    second.receive("SYNC.DELTAS", { fromRev: 1, toRev: 1, operations: [] });
    second.receive("SYNC.DELTAS", {
      fromRev: 1,
      toRev: 2,
      operations: [{ rev: 2, type: "participant.updated", payload: { id: "ann", status: "away" }, clientReqId: id }],
    });
    second.receive("ERROR", { code: "FAILED_PRECONDITION", message: "already", retryable: false, details: { clientReqId: id, appliedRev: 2 } });
    assert.deepEqual([c.replica.pending.length, c.replica.serverRev, c.replica.wasAcked(id)], [0, 2, true]);
    assert.deepEqual(statuses, ["connecting", "live", "reconnecting", "live"]);
    assert.deepEqual(reports, [
      { kind: "joined", rev: 1 },
      { kind: "resumed", fromRev: 1, toRev: 1, operations: 0 },
    ]);
    c.stop();
  });

  it("stops on close 1008 and on a refused JOIN, and sends the token as asked", async () => {
    const { c } = client({ token: "s3cret", tokenVia: "subprotocol" });
    const socket = FakeSocket.all[0]!;
    assert.deepEqual(socket.protocols, ["deltasync.v1", "bearer.s3cret"]);
    socket.open();
    socket.drop(1008, "too slow");
    await tick();
    assert.deepEqual([c.status, c.stopReason, FakeSocket.all.length], ["stopped", { code: 1008, reason: "too slow" }, 1]);

    const refused = client({ token: "x y", dialect: "ws-kit" });
    const s = FakeSocket.all[0]!;
    assert.deepEqual([s.url, s.protocols], ["ws://server/rooms/r?access_token=x%20y", []]);
    s.open("");
    s.receive("ERROR", { code: "UNAUTHENTICATED", message: "bad token", retryable: false });
    assert.equal(refused.c.status, "stopped");
    assert.equal(refused.c.stopReason?.reason, "the server refused the JOIN: UNAUTHENTICATED: bad token");
  });

  it("close 1001 reconnects unless the client is told it is final", async () => {
    const { c } = client();
    FakeSocket.all[0]!.open();
    FakeSocket.all[0]!.drop(1001, "server shutting down");
    await tick();
    assert.equal(c.status, "reconnecting");
    c.stop();
    const final = client({ goingAwayIsFinal: true });
    FakeSocket.all[0]!.open();
    FakeSocket.all[0]!.drop(1001, "server shutting down");
    await tick();
    assert.deepEqual([final.c.status, final.c.stopReason], ["stopped", { code: 1001, reason: "server shutting down" }]);
    assert.equal(FakeSocket.all.length, 1);
  });

  it("a restart answered by a gap and a snapshot is reported as a reset with a new epoch", async () => {
    const { c, reports } = client();
    FakeSocket.all[0]!.open();
    FakeSocket.all[0]!.receive("SYNC.SNAPSHOT", { rev: 5, epoch: "e1", participants: { ann } });
    FakeSocket.all[0]!.drop(1001, "server stopping");
    await tick();
    const s = FakeSocket.all[1]!;
    s.open();
    s.receive("REVISION_GAP", { expectedRev: 5, serverRev: 1, bufferFirstRev: 0, resumeFrom: 1, epoch: "e2" });
    s.receive("SYNC.SNAPSHOT", { rev: 1, epoch: "e2", participants: { ann } });
    assert.deepEqual(reports.at(-1), {
      kind: "reset",
      rev: 1,
      gap: { expectedRev: 5, serverRev: 1, bufferFirstRev: 0, resumeFrom: 1 },
      epochChanged: true,
    });
    assert.equal(c.replica.epoch, "e2");
    c.stop();
  });

  it("a rate-limited update stays pending and is sent again after retryAfterMs", async () => {
    const { c } = client();
    const s = FakeSocket.all[0]!;
    s.open();
    s.receive("SYNC.SNAPSHOT", { rev: 1, epoch: "e1", participants: { ann } });
    const id = c.update({ patch: { status: "away" } });
    const update = s.sent.at(-1)!;
    s.receive("ERROR", {
      code: "RESOURCE_EXHAUSTED",
      message: "message rate limit exceeded; slow down",
      retryable: true,
      retryAfterMs: 1,
      details: { clientReqId: id },
    });
    assert.deepEqual([c.replica.pending.length, c.getState()!.ann!.status], [1, "away"]);
    await tick();
    assert.deepEqual(s.sent.slice(-2), [update, update]);
    s.receive("SYNC.DELTAS", {
      fromRev: 1,
      toRev: 2,
      operations: [{ rev: 2, type: "participant.updated", payload: { id: "ann", status: "away" }, clientReqId: id }],
    });
    assert.deepEqual([c.replica.pending.length, c.replica.wasAcked(id), c.status], [0, true, "live"]);
    c.stop();
  });
});
