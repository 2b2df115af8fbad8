/**
 * Property: under any interleaving of local updates, other participants' commits, the
 * server processing (and resends), partial delivery, and gap-plus-snapshot resets, the
 * replica settles every update exactly once (acked if valid, rejected if not), its visible
 * state is always the server state with the pending updates predicted on top, and once
 * everything is delivered it equals the server's state at the server's revision.
 *
 * The reference server below is the trivially correct model: one room, presence, dedup of
 * `clientReqId`, `FAILED_PRECONDITION` + `appliedRev` for an applied resend.
 */

import { it } from "node:test";
import assert from "node:assert/strict";
import fc from "fast-check";

import { Replica, presence, type Participants, type PresenceInput, type ReplicaEvent } from "../../src/index.js";

type Command =
  | { t: "local"; status: "online" | "away" | "offline" | "bad" }
  | { t: "other"; status: "online" | "away" | "offline" }
  | { t: "process" }
  | { t: "deliver"; n: number }
  | { t: "reset" };

const status = fc.constantFrom("online" as const, "away" as const, "offline" as const);
const command: fc.Arbitrary<Command> = fc.oneof(
  fc.record({ t: fc.constant("local" as const), status: fc.constantFrom("online" as const, "away" as const, "offline" as const, "bad" as const) }),
  fc.record({ t: fc.constant("other" as const), status }),
  fc.record({ t: fc.constant("process" as const) }),
  fc.record({ t: fc.constant("deliver" as const), n: fc.integer({ min: 1, max: 4 }) }),
  fc.record({ t: fc.constant("reset" as const) }),
);

class ReferenceServer {
  state: Participants = {
    me: { id: "me", name: "Me", status: "online", lastActive: 1000 },
    bob: { id: "bob", name: "Bob", status: "online", lastActive: 1000 },
  };
  rev = 2;
  outbox: string[] = [];
  inbox: { id: string; input: PresenceInput }[] = [];
  applied = new Map<string, number | "rejected">();

  commit(actor: string, s: string, clientReqId?: string): void {
    const op = { type: "participant.updated" as const, payload: { id: actor, status: s as "away" } };
    this.state = presence.apply(this.state, op);
    this.rev += 1;
    const record: Record<string, unknown> = { rev: this.rev, ...op };
    if (clientReqId !== undefined) record.clientReqId = clientReqId;
    this.outbox.push(JSON.stringify({ type: "SYNC.DELTAS", meta: {}, payload: { fromRev: this.rev - 1, toRev: this.rev, operations: [record] } }));
  }

  error(payload: Record<string, unknown>): void {
    this.outbox.push(JSON.stringify({ type: "ERROR", meta: {}, payload: { retryable: false, ...payload } }));
  }

  process(): void {
    const next = this.inbox.shift();
    if (next === undefined) return;
    const done = this.applied.get(next.id);
    if (typeof done === "number") {
      this.error({ code: "FAILED_PRECONDITION", message: "already applied", details: { clientReqId: next.id, appliedRev: done } });
    } else if (done === "rejected" || next.input.patch.name === "") {
      this.applied.set(next.id, "rejected");
      this.error({ code: "INVALID_ARGUMENT", message: "name must not be empty", details: { clientReqId: next.id } });
    } else {
      this.commit("me", next.input.patch.status!, next.id);
      this.applied.set(next.id, this.rev);
    }
  }

  reset(): void {
    this.outbox = [
      JSON.stringify({ type: "REVISION_GAP", meta: {}, payload: { expectedRev: 0, serverRev: this.rev, bufferFirstRev: this.rev, resumeFrom: this.rev } }),
      JSON.stringify({ type: "SYNC.SNAPSHOT", meta: {}, payload: { rev: this.rev, participants: this.state } }),
    ];
  }
}

function visibleIsServerPlusPending(replica: Replica<Participants, never, PresenceInput>): void {
  let expected = replica.serverState!;
  for (const p of replica.pending) expected = presence.predict(expected, "me", p.input, 0) ?? expected;
  assert.deepEqual(replica.visible, expected);
}

it("ack and rebase settle every update exactly once under random interleavings", () => {
  fc.assert(
    fc.property(fc.array(command, { maxLength: 60 }), (commands) => {
      const server = new ReferenceServer();
      const replica = new Replica(presence, "me", "test") as unknown as Replica<Participants, never, PresenceInput>;
      replica.restore(server.state, server.rev, undefined);
      const events: ReplicaEvent[] = [];
      const valid = new Set<string>();
      const bad = new Set<string>();
      const deliver = (n: number) => {
        for (let i = 0; i < n && server.outbox.length > 0; i++) {
          const text = server.outbox.shift()!;
          const got = replica.handleText(text);
          events.push(...got);
          if (got.some((e) => e.type === "snapshot")) {
            for (const m of replica.resendMessages()) {
              const p = JSON.parse(m).payload;
              server.inbox.push({ id: p.clientReqId, input: { patch: p.patch } });
            }
          }
          visibleIsServerPlusPending(replica);
        }
      };
      for (const c of commands) {
        if (c.t === "local") {
          const input: PresenceInput = c.status === "bad" ? { patch: { name: "" } } : { patch: { status: c.status } };
          const { clientReqId } = replica.update(input, 0);
          (c.status === "bad" ? bad : valid).add(clientReqId);
          server.inbox.push({ id: clientReqId, input });
        } else if (c.t === "other") server.commit("bob", c.status);
        else if (c.t === "process") server.process();
        else if (c.t === "deliver") deliver(c.n);
        else server.reset();
        visibleIsServerPlusPending(replica);
      }
      for (let round = 0; round < 1000 && (server.outbox.length > 0 || server.inbox.length > 0); round++) {
        deliver(server.outbox.length);
        server.process();
      }
      assert.equal(server.outbox.length + server.inbox.length, 0);
      assert.equal(replica.pending.length, 0);
      assert.equal(replica.serverRev, server.rev);
      assert.deepEqual(replica.visible, server.state);
      const count = (type: string, id: string) =>
        events.filter((e) => e.type === type && "clientReqId" in e && e.clientReqId === id).length;
      for (const id of valid) assert.deepEqual([id, count("acked", id), count("rejected", id)], [id, 1, 0]);
      for (const id of bad) assert.deepEqual([id, count("acked", id), count("rejected", id)], [id, 0, 1]);
      assert.deepEqual(events.filter((e) => e.type === "error"), []);
    }),
    { numRuns: 500 },
  );
});
