/** The replica alone: exact events for snapshots that contain pending updates, and refused deltas. */

import { describe, it } from "node:test";
import assert from "node:assert/strict";

import { Replica, ReplicaError, presence } from "../../src/index.js";

const ann = { id: "ann", name: "Ann", status: "online" as const, lastActive: 1000 };
const msg = (type: string, payload: object) => JSON.stringify({ type, meta: {}, payload });

function replica() {
  const r = new Replica(presence, "ann", "t");
  r.restore({ ann }, 1, "e1");
  return r;
}

describe("replica", () => {
  it("a snapshot acknowledges the pending updates it contains, and keeps the others", () => {
    const r = replica();
    const away = r.update({ patch: { status: "away" } }, 0).clientReqId;
    const offline = r.update({ patch: { status: "offline" } }, 0).clientReqId;
    const badName = r.update({ patch: { name: "" } }, 0).clientReqId;
    assert.deepEqual(r.visible, { ann: { ...ann, status: "offline" } });
    const events = r.handleText(msg("SYNC.SNAPSHOT", { rev: 3, epoch: "e1", participants: { ann: { ...ann, status: "away" } } }));
    assert.deepEqual(events, [
      { type: "snapshot", rev: 3, afterGap: false, epochChanged: false },
      { type: "acked", clientReqId: away, rev: 3 },
    ]);
    assert.deepEqual(r.pending.map((p) => p.clientReqId), [offline, badName]);
    assert.deepEqual(r.visible, { ann: { ...ann, status: "offline" } });
    assert.deepEqual(r.resendMessages().map((m) => JSON.parse(m).payload.clientReqId), [offline, badName]);
  });

  it("refuses deltas that are not contiguous or not exactly fromRev+1..=toRev, and asks to resume", () => {
    const cases: [object, string, string][] = [
      [{ fromRev: 2, toRev: 3, operations: [] }, "non-contiguous", "SYNC.DELTAS starts at revision 2, but the replica is at 1"],
      [{ fromRev: 1, toRev: 0, operations: [] }, "bad-range", "SYNC.DELTAS goes backwards: fromRev 1 is after toRev 0"],
      [{ fromRev: 1, toRev: 3, operations: [] }, "wrong-operation-count", "SYNC.DELTAS 1->3 carries 0 operations instead of 2"],
      [
        { fromRev: 1, toRev: 2, operations: [{ rev: 3, type: "participant.left", payload: { id: "ann" } }] },
        "bad-operation-revs",
        "operation 0 of SYNC.DELTAS 1->2 has rev 3; expected 2",
      ],
    ];
    for (const [payload, kind, message] of cases) {
      const r = replica();
      assert.throws(() => r.handleText(msg("SYNC.DELTAS", payload)), (e) => {
        assert.ok(e instanceof ReplicaError);
        assert.deepEqual([e.kind, e.message], [kind, message]);
        return true;
      });
      assert.deepEqual([r.serverRev, r.visible, r.needsResume], [1, { ann }, true]);
    }
  });

  it("after REVISION_GAP only a snapshot is taken", () => {
    const r = replica();
    r.handleText(msg("REVISION_GAP", { expectedRev: 1, serverRev: 9, bufferFirstRev: 5, resumeFrom: 9 }));
    assert.throws(() => r.handleText(msg("SYNC.DELTAS", { fromRev: 1, toRev: 1, operations: [] })), {
      message: "SYNC.DELTAS 1->1 came after REVISION_GAP; a SYNC.SNAPSHOT must come first",
    });
    const events = r.handleText(msg("SYNC.SNAPSHOT", { rev: 9, epoch: "e2", participants: {} }));
    assert.deepEqual(events, [{ type: "snapshot", rev: 9, afterGap: true, epochChanged: true }]);
    assert.deepEqual([r.serverRev, r.epoch, r.detectedGap, r.visible], [9, "e2", true, {}]);
  });

  it("ids are <actor>-<counter>-<suffix>, the actor cut to 32 bytes on a character boundary", () => {
    const r = new Replica(presence, `${"x".repeat(31)}é`, "abc");
    assert.equal(r.nextId(), `${"x".repeat(31)}-1-abc`);
    assert.match(new Replica(presence, "ann").nextId(), /^ann-1-[0-9a-f]{16}$/);
  });
});
