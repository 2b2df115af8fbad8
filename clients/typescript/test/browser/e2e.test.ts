/**
 * End to end in a real headless Chromium (the Debian package `chromium`, driven by
 * playwright-core; nothing downloads a browser) against a real `deltasync serve`: each
 * test starts its own server on a free loopback port and stops it. Pages are the demo
 * page (`demo/index.html`), which exposes its client as `window.demo`.
 */

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { chromium, type Browser, type Page } from "playwright-core";

import { PACKAGE_ROOT, startServer, type Server } from "../server.js";

const CHROMIUM = process.env.CHROMIUM_BIN ?? "/usr/bin/chromium";
const ARTIFACTS = join(PACKAGE_ROOT, "test-artifacts");
const WAIT = { timeout: 10_000, polling: 20 };
/** In-memory revisions from 0, so the tests can name exact revisions (the server's default
 * starts each in-memory history above any revision an earlier one could have reached). */
const FROM_ZERO = ["--set", "storage.memory_revisions=from-zero"];

let browser: Browser;
let http: HttpServer;
let site: string;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install -y chromium (or set CHROMIUM_BIN)`);
  }
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  // @ts-expect-error: a plain ES module without types
  const { serveStatic } = (await import("../../../scripts/static-server.mjs")) as {
    serveStatic: (port: number) => Promise<HttpServer>;
  };
  http = await serveStatic(0);
  site = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
});

after(async () => {
  await browser?.close();
  await new Promise((done) => (http ? http.close(done) : done(undefined)));
});

interface Report {
  kind: string;
  rev?: number;
  fromRev?: number;
  toRev?: number;
  operations?: number;
  gap?: { expectedRev: number; serverRev: number; bufferFirstRev: number; resumeFrom: number };
  epochChanged?: boolean;
}
interface Event {
  type: string;
  clientReqId?: string;
}
type Participants = Record<string, { id: string; name: string; status: string }>;

/** Opens the demo page as `id` in `room` and waits until it is live. */
async function open(server: Server, room: string, id: string, name: string, dialect = "native"): Promise<Page> {
  const page = await browser.newPage();
  page.on("pageerror", (e) => console.error(`page ${id}:`, e));
  const query = new URLSearchParams({ server: server.url, room, id, name, dialect });
  await page.goto(`${site}/demo/index.html?${query}`);
  await live(page);
  return page;
}

const live = (page: Page) =>
  page.waitForFunction(() => (window as any).demo?.client.status === "live" && (window as any).demo.client.replica.pending.length === 0, null, WAIT);
const state = (page: Page) => page.evaluate(() => (window as any).demo.client.getState() as Participants);
const rev = (page: Page) => page.evaluate(() => (window as any).demo.client.replica.serverRev as number);
const reports = (page: Page) => page.evaluate(() => (window as any).demo.log.reports as Report[]);
const events = (page: Page) => page.evaluate(() => (window as any).demo.log.events as Event[]);
const update = (page: Page, patch: Record<string, string>) =>
  page.evaluate((p) => (window as any).demo.client.update({ patch: p }) as string, patch);

/** Waits until every page shows `expected` (statuses by id), at one revision, nothing pending. */
async function converge(pages: Page[], expected: Record<string, string>): Promise<number> {
  for (const page of pages) {
    await page.waitForFunction(
      (want) => {
        const c = (window as any).demo.client;
        const s = c.getState() ?? {};
        const got = Object.fromEntries(Object.values(s).map((p: any) => [p.id, p.status]));
        return c.replica.pending.length === 0 && JSON.stringify(got, Object.keys(got).sort()) === JSON.stringify(want, Object.keys(want).sort());
      },
      expected,
      WAIT,
    );
  }
  const revs = await Promise.all(pages.map(rev));
  const states = await Promise.all(pages.map(state));
  assert.ok(revs.every((r) => r === revs[0]), `revisions differ: ${revs}`);
  for (const s of states) assert.deepEqual(s, states[0]);
  return revs[0]!;
}

const countOf = (list: Event[], type: string, id?: string) =>
  list.filter((e) => e.type === type && (id === undefined || e.clientReqId === id)).length;

describe("browser", () => {
  it("two pages converge on every update, and the demo page shows both participants", async () => {
    const server = await startServer(FROM_ZERO);
    try {
      const ann = await open(server, "converge", "ann", "Ann");
      const bob = await open(server, "converge", "bob", "Bob");
      let expected: Record<string, string> = { ann: "online", bob: "online" };
      assert.equal(await converge([ann, bob], expected), 2);
      const steps: [Page, string, string][] = [
        [ann, "ann", "away"],
        [bob, "bob", "away"],
        [bob, "bob", "offline"],
        [ann, "ann", "online"],
        [bob, "bob", "online"],
      ];
      for (const [i, [page, id, status]] of steps.entries()) {
        await update(page, { status });
        expected = { ...expected, [id]: status };
        assert.equal(await converge([ann, bob], expected), 3 + i);
      }
      // The toggle button of the demo sends an update like any other.
      await bob.click("#toggle");
      expected = { ...expected, bob: "away" };
      assert.equal(await converge([ann, bob], expected), 8);
      const items = await ann.$$eval("#participants li", (lis) => lis.map((li) => [li.getAttribute("data-id"), li.getAttribute("data-status"), li.textContent]));
      assert.deepEqual(items, [
        ["ann", "online", "Ann — online"],
        ["bob", "away", "Bob — away"],
      ]);
      assert.equal(await ann.textContent("#status"), "live");
      mkdirSync(ARTIFACTS, { recursive: true });
      const png = join(ARTIFACTS, "demo.png");
      await ann.screenshot({ path: png });
      const bytes = readFileSync(png);
      assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
      assert.ok(statSync(png).size > 5_000, `the screenshot is only ${statSync(png).size} bytes`);
      await ann.close();
      await bob.close();
    } finally {
      await server.stop();
    }
  });

  it("a page that went offline resumes with deltas, and its offline update is acknowledged exactly once", async () => {
    const server = await startServer(FROM_ZERO);
    try {
      const ann = await open(server, "offline", "ann", "Ann");
      const bob = await open(server, "offline", "bob", "Bob");
      const before = await converge([ann, bob], { ann: "online", bob: "online" });
      await ann.evaluate(() => (window as any).demo.client.stop());
      await ann.waitForFunction(() => (window as any).demo.client.status === "stopped", null, WAIT);
      for (const status of ["away", "offline", "online"]) await update(bob, { status });
      await bob.waitForFunction((r) => (window as any).demo.client.replica.serverRev === r, before + 3, WAIT);
      const offlineId = await update(ann, { status: "away" });
      assert.equal(await ann.evaluate(() => (window as any).demo.client.replica.pending.length), 1);
      assert.equal((await state(ann)).ann!.status, "away", "the offline update shows at once");
      await ann.evaluate(() => (window as any).demo.client.start());
      const after = await converge([ann, bob], { ann: "away", bob: "online" });
      assert.equal(after, before + 4, "bob's three updates and ann's one, each committed once");
      const annReports = await reports(ann);
      assert.deepEqual(annReports, [
        { kind: "joined", rev: 1 },
        { kind: "resumed", fromRev: before, toRev: before + 3, operations: 3 },
      ]);
      const annEvents = await events(ann);
      assert.equal(countOf(annEvents, "snapshot"), 1, "only the first join took a snapshot");
      assert.equal(countOf(annEvents, "gap"), 0);
      assert.equal(countOf(annEvents, "acked", offlineId), 1);
      assert.equal(countOf(annEvents, "rejected"), 0);
      assert.equal(countOf(annEvents, "error"), 0);
      await ann.close();
      await bob.close();
    } finally {
      await server.stop();
    }
  });

  it("after a restart on the same data directory both pages resume with deltas of the same history", async () => {
    const dir = mkdtempSync(join(tmpdir(), "deltasync-e2e-"));
    const args = ["--data-dir", dir];
    let server = await startServer(args);
    try {
      const ann = await open(server, "restart", "ann", "Ann");
      const bob = await open(server, "restart", "bob", "Bob");
      await update(ann, { status: "away" });
      const before = await converge([ann, bob], { ann: "away", bob: "online" });
      assert.equal(before, 3);
      const epoch = await ann.evaluate(() => (window as any).demo.client.replica.epoch as string);
      assert.match(epoch, /^[0-9a-f]{32}$/);
      await server.stop();
      for (const page of [ann, bob]) {
        await page.waitForFunction(() => (window as any).demo.log.statuses.includes("reconnecting"), null, WAIT);
      }
      // Made while the server is down: pending until the restarted server acknowledges it.
      const downId = await update(bob, { status: "away" });
      server = await startServer(args, server.port);
      for (const page of [ann, bob]) await live(page);
      const after = await converge([ann, bob], { ann: "away", bob: "away" });
      // The same history: the rejoins change nothing, bob's update is revision 4.
      assert.equal(after, 4);
      for (const page of [ann, bob]) {
        const last = (await reports(page)).at(-1)!;
        assert.equal(last.kind, "resumed", JSON.stringify(last));
        assert.equal(last.fromRev, 3);
        assert.equal(await page.evaluate(() => (window as any).demo.client.replica.epoch as string), epoch);
        const pageEvents = await events(page);
        assert.equal(countOf(pageEvents, "snapshot"), 1, "only the first join took a snapshot");
        assert.equal(countOf(pageEvents, "gap"), 0);
      }
      assert.equal(countOf(await events(bob), "acked", downId), 1);
      await ann.close();
      await bob.close();
    } finally {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("after a restart of an in-memory server both pages get a gap and a snapshot of a new history above the old revisions", async () => {
    let server = await startServer();
    try {
      const ann = await open(server, "restart-memory", "ann", "Ann");
      const bob = await open(server, "restart-memory", "bob", "Bob");
      await update(ann, { status: "away" });
      const before = await converge([ann, bob], { ann: "away", bob: "online" });
      const epoch = await ann.evaluate(() => (window as any).demo.client.replica.epoch as string);
      await server.stop();
      for (const page of [ann, bob]) {
        await page.waitForFunction(() => (window as any).demo.log.statuses.includes("reconnecting"), null, WAIT);
      }
      const downId = await update(bob, { status: "away" });
      server = await startServer([], server.port);
      for (const page of [ann, bob]) await live(page);
      const after = await converge([ann, bob], { ann: "online", bob: "away" });
      for (const page of [ann, bob]) {
        const last = (await reports(page)).at(-1)!;
        assert.equal(last.kind, "reset");
        assert.equal(last.epochChanged, true);
        assert.equal(last.gap?.expectedRev, before);
        // The new history starts above every revision the old one reached, so a client that
        // resumes by revision alone (ws-kit) can never be handed another history's deltas.
        assert.ok(last.gap!.bufferFirstRev > before, `new history at ${last.gap!.bufferFirstRev}, old at ${before}`);
        assert.equal(countOf(await events(page), "snapshot"), 2);
      }
      // In the new history: two joins (a new room) and bob's update.
      assert.ok(after > before);
      assert.notEqual(await ann.evaluate(() => (window as any).demo.client.replica.epoch as string), epoch);
      assert.equal(countOf(await events(bob), "acked", downId), 1);
      await ann.close();
      await bob.close();
    } finally {
      await server.stop();
    }
  });

  it("a ws-kit dialect page and a native page converge, and the ws-kit page resumes by rev alone", async () => {
    const server = await startServer(FROM_ZERO);
    try {
      const ann = await open(server, "wskit", "ann", "Ann");
      const kit = await open(server, "wskit", "kit", "Kit", "ws-kit");
      assert.equal(await kit.evaluate(() => (window as any).demo.client.replica.epoch), undefined, "ws-kit snapshots carry no epoch");
      assert.match(await ann.evaluate(() => (window as any).demo.client.replica.epoch as string), /^[0-9a-f]{32}$/);
      await update(kit, { status: "away" });
      await update(ann, { status: "away" });
      const before = await converge([ann, kit], { ann: "away", kit: "away" });
      await kit.evaluate(() => (window as any).demo.client.stop());
      await update(ann, { status: "online" });
      await ann.waitForFunction((r) => (window as any).demo.client.replica.serverRev === r, before + 1, WAIT);
      await kit.evaluate(() => (window as any).demo.client.start());
      await converge([ann, kit], { ann: "online", kit: "away" });
      assert.deepEqual((await reports(kit)).at(-1), { kind: "resumed", fromRev: before, toRev: before + 1, operations: 1 });
      await ann.close();
      await kit.close();
    } finally {
      await server.stop();
    }
  });
});
