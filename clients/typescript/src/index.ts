/**
 * `@deltasync/client`: a delta-sync client for browsers and Node.
 *
 * - {@link Client}: connects, joins, applies snapshots and deltas, sends updates
 *   optimistically, reconnects with backoff and resumes by revision (and epoch).
 * - {@link Replica}: the same logic without I/O, for tests and custom transports.
 * - {@link presence}: the protocol's built-in model; bring your own {@link Model} for others.
 *
 * @module
 */
export { Client, backoffDelay, stopsOnClose } from "./client.js";
export type {
  ClientEvents,
  ClientOptions,
  ResumeReport,
  Status,
  StopReason,
  WebSocketConstructor,
  WebSocketLike,
} from "./client.js";
export { NATIVE_SUBPROTOCOL, REMEMBERED_ACKS, Replica, ReplicaError, randomSuffix } from "./replica.js";
export type { Dialect, GapInfo, Pending, ReplicaEvent } from "./replica.js";
export { presence } from "./model.js";
export type {
  Model,
  Participant,
  Participants,
  PresenceInput,
  PresenceOp,
  Status as PresenceStatus,
} from "./model.js";
