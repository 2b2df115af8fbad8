// The presence demo: ?server=ws://127.0.0.1:7373&room=demo&id=ann&name=Ann[&dialect=ws-kit][&token=...]
import { Client } from "../dist/index.js";

const params = new URLSearchParams(location.search);
const server = params.get("server") ?? `ws://${location.hostname}:7373`;
const room = params.get("room") ?? "demo";
const id = params.get("id") ?? `guest-${Math.random().toString(16).slice(2, 6)}`;
const name = params.get("name") ?? id;

const client = new Client({
  url: `${server}/rooms/${encodeURIComponent(room)}`,
  participantId: id,
  name,
  dialect: params.get("dialect") === "ws-kit" ? "ws-kit" : "native",
  token: params.get("token") ?? undefined,
  initialBackoffMs: 100,
  maxBackoffMs: 2000,
});

// What the tests read: every resume report and every replica event, in order.
const log = { reports: [], events: [], statuses: [] };
window.demo = { client, log };
client.on("resume", (report) => log.reports.push(report));
client.on("replica", (events) => log.events.push(...events));
client.on("status", (status) => log.statuses.push(status));

const $ = (sel) => document.querySelector(sel);
$("#me").textContent = `${name} (${id})`;

function render() {
  const state = client.getState() ?? {};
  $("#status").textContent = client.status;
  $("#status").dataset.status = client.status;
  $("#connection").textContent = client.status === "stopped" ? "Connect" : "Disconnect";
  const mine = state[id];
  $("#toggle").textContent = mine?.status === "away" ? "Set online" : "Set away";
  const list = $("#participants");
  list.replaceChildren(
    ...Object.values(state)
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((p) => {
        const li = document.createElement("li");
        li.dataset.id = p.id;
        li.dataset.status = p.status;
        li.className = p.id === id ? "me" : "";
        const dot = document.createElement("span");
        dot.className = "dot";
        li.append(dot, `${p.name} — ${p.status}`);
        return li;
      }),
  );
  const last = log.reports.at(-1);
  $("#report").textContent = last ? `rev ${client.replica.serverRev}, last join: ${JSON.stringify(last)}` : "";
}

client.subscribe(render);
client.on("resume", render);
$("#toggle").addEventListener("click", () => {
  const mine = (client.getState() ?? {})[id];
  client.update({ patch: { status: mine?.status === "away" ? "online" : "away" } });
});
$("#connection").addEventListener("click", () => (client.status === "stopped" ? client.start() : client.stop()));
render();
