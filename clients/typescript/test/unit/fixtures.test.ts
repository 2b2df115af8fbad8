/**
 * Every conformance fixture of `fixtures/`, run against this package's replica: all of them
 * against their own transcript, and those that need no server control against a real
 * `deltasync serve --test-clock 1000` too (the rest are listed, with the step that needs it).
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { join } from "node:path";

import { TranscriptServer, WireServer, loadFixtures, notDrivable, runFixture } from "../fixture-runner.js";
import { REPO_ROOT, startServer, type Server } from "../server.js";

const fixtures = loadFixtures(join(REPO_ROOT, "fixtures"));

describe("conformance fixtures, client against the transcript", () => {
  it("finds the fixtures", () => assert.ok(fixtures.length >= 14, `found ${fixtures.length}`));
  for (const { file, fixture } of fixtures) {
    it(file, async () => runFixture(fixture, new TranscriptServer()));
  }
});

describe("conformance fixtures, client against deltasync serve --test-clock 1000", () => {
  let server: Server;
  before(async () => {
    server = await startServer(["--test-clock", "1000"]);
  });
  after(async () => server.stop());
  for (const { file, fixture } of fixtures) {
    const reason = notDrivable(fixture);
    const room = `conformance-ts-${fixture.name}-${Math.random().toString(16).slice(2, 10)}`;
    if (reason !== undefined) {
      // Listed, never silent: node --test prints "# SKIP <reason>" for each.
      it(file, { skip: `not run over the wire: ${reason} (run against its transcript above)` }, () => {});
      continue;
    }
    it(file, async () => {
      const wire = new WireServer(server.url, room);
      try {
        await runFixture(fixture, wire);
      } finally {
        wire.close();
      }
    });
  }
});
