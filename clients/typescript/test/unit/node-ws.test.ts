/**
 * The client on Node 20 with the `ws` package injected, against a real `deltasync serve`:
 * tokens both ways, a refused upgrade (HTTP 401 stops), a full server (HTTP 503 with
 * `Retry-After: 5` sets the next delay), stopping during the handshake.
 */

import { describe, it } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { Client, type Status, type WebSocketConstructor } from "../../src/index.js";
import { startServer } from "../server.js";

function connect(url: string, id: string, extra: object = {}) {
  const client = new Client({
    url,
    participantId: id,
    name: id.toUpperCase(),
    WebSocket: WebSocket as unknown as WebSocketConstructor,
    random: () => 0,
    heartbeatMs: 0,
    autoStart: false,
    ...extra,
  });
  const statuses: Status[] = [];
  const delays: number[] = [];
  client.on("status", (s) => statuses.push(s));
  client.on("reconnect", ({ delayMs }) => delays.push(delayMs));
  client.start();
  return { client, statuses, delays };
}

/** Resolves once `done()` holds, checking on every event of the client (bounded by `ms`). */
function until(client: Client, done: () => boolean, ms = 5000): Promise<void> {
  return new Promise((resolve, reject) => {
    if (done()) return resolve();
    const timer = setTimeout(() => {
      off();
      reject(new Error(`not reached in ${ms} ms; status ${client.status}, stop reason ${JSON.stringify(client.stopReason)}`));
    }, ms);
    const check = () => {
      if (!done()) return;
      clearTimeout(timer);
      off();
      resolve();
    };
    const offs = [client.subscribe(check), client.on("resume", check), client.on("reconnect", check)];
    const off = () => offs.forEach((f) => f());
  });
}

describe("Node with ws, against deltasync serve", () => {
  it("presents the token as access_token or as a bearer subprotocol; a wrong one stops at HTTP 401", async () => {
    const server = await startServer(["--token", "s3cret"]);
    try {
      const url = `${server.url}/rooms/tokens`;
      const byQuery = connect(url, "ann", { token: "s3cret" });
      const bySubprotocol = connect(url, "bob", { token: "s3cret", tokenVia: "subprotocol" });
      for (const { client } of [byQuery, bySubprotocol]) {
        await until(client, () => client.getState()?.ann !== undefined && client.getState()?.bob !== undefined);
      }
      assert.equal(bySubprotocol.client.replica.epoch, byQuery.client.replica.epoch, "both in the native dialect");
      const wrong = connect(url, "eve", { token: "guess" });
      await until(wrong.client, () => wrong.client.status === "stopped");
      assert.deepEqual(wrong.client.stopReason, { code: 0, reason: "the server refused the upgrade: HTTP 401" });
      assert.deepEqual(wrong.statuses, ["connecting", "stopped"]);
      assert.deepEqual(wrong.delays, []);
      for (const { client } of [byQuery, bySubprotocol]) client.stop();
    } finally {
      await server.stop();
    }
  });

  it("waits the Retry-After of a full server before trying again", async () => {
    const server = await startServer(["--max-connections", "1"]);
    try {
      const url = `${server.url}/rooms/full`;
      const first = connect(url, "ann");
      await until(first.client, () => first.client.status === "live");
      const second = connect(url, "bob");
      await until(second.client, () => second.delays.length === 1);
      // Retry-After: 5 (seconds); the jitter (random() = 0) adds nothing.
      assert.deepEqual(second.delays, [5000]);
      assert.equal(second.client.status, "reconnecting");
      second.client.stop();
      first.client.stop();
    } finally {
      await server.stop();
    }
  });

  it("stops cleanly while the handshake is under way", async () => {
    const server = await startServer();
    try {
      const { client, statuses } = connect(`${server.url}/rooms/stop`, "ann");
      client.stop();
      assert.deepEqual(statuses, ["connecting", "stopped"]);
      // Give ws the tick in which it reports the aborted handshake: nothing may throw.
      await new Promise((done) => setTimeout(done, 50));
      assert.equal(client.status, "stopped");
    } finally {
      await server.stop();
    }
  });
});
