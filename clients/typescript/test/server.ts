/** Starts and stops a real `deltasync serve` for tests. */

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { dirname, resolve } from "node:path";

/** The package root (this file is compiled to `.test-build/test/`). */
export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** The repository root. */
export const REPO_ROOT = resolve(PACKAGE_ROOT, "..", "..");

/** The server binary: `DELTASYNC_BIN`, else `target/release/deltasync`, else `target/debug/deltasync`. */
export function serverBinary(): string {
  const candidates = [
    process.env.DELTASYNC_BIN,
    resolve(REPO_ROOT, "target/release/deltasync"),
    resolve(REPO_ROOT, "target/debug/deltasync"),
  ].filter((p): p is string => p !== undefined && p !== "");
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error(
      `no deltasync binary: tried ${candidates.join(", ")}; build it (cargo build --release) or set DELTASYNC_BIN`,
    );
  }
  return found;
}

/** A running `deltasync serve`. */
export interface Server {
  /** `ws://127.0.0.1:PORT` (no trailing slash). */
  url: string;
  port: number;
  stop(): Promise<void>;
}

/** Starts `deltasync serve --listen 127.0.0.1:PORT` (0: any free port) with `args`; resolves once it listens. */
export function startServer(args: string[] = [], port = 0): Promise<Server> {
  const child: ChildProcess = spawn(serverBinary(), ["serve", "--listen", `127.0.0.1:${port}`, ...args], {
    stdio: ["ignore", "pipe", "pipe"],
    // The server refuses unknown DELTASYNC_* variables (its configuration is strict), and
    // DELTASYNC_BIN is ours, not its.
    env: Object.fromEntries(Object.entries({ ...process.env, RUST_LOG: "warn" }).filter(([k]) => k !== "DELTASYNC_BIN")),
  });
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolvePromise, reject) => {
    let stdout = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`deltasync serve did not say where it listens within 10 s: ${stdout} ${stderr}`));
    }, 10_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`deltasync serve exited with ${code}: ${stderr}`));
    });
    child.stdout!.on("data", (d: Buffer) => {
      stdout += d.toString();
      const match = /listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(stdout);
      if (match === null) return;
      clearTimeout(timer);
      child.removeAllListeners("exit");
      const listenPort = Number(match[1]);
      resolvePromise({
        url: `ws://127.0.0.1:${listenPort}`,
        port: listenPort,
        stop: () =>
          new Promise<void>((done) => {
            if (child.exitCode !== null) return done();
            child.once("exit", () => done());
            child.kill("SIGTERM");
          }),
      });
    });
  });
}
