/**
 * The application's state machine on the client side, and presence, the built-in one.
 *
 * A model never mutates a state: `apply` and `predict` return a new state (or the same
 * object when nothing changed), so a UI can compare references to know what changed.
 *
 * @module
 */

/**
 * What the client needs to know of an application's state.
 *
 * - `S`: the state (what `getState()` returns);
 * - `Op`: a committed operation, as the server sends it (`{type, payload}`);
 * - `Input`: the fields of an `UPDATE` this application sends (`{patch: ...}` for presence).
 */
export interface Model<S, Op, Input> {
  /** The state a `SYNC.SNAPSHOT` payload describes (its other keys than `rev` and `epoch`). */
  fromSnapshot(payload: Record<string, unknown>): S;
  /** The state after a committed operation. */
  apply(state: S, op: Op): S;
  /**
   * The expected effect of `actor`'s own `input` on `state` (what the server would commit),
   * or `undefined` when the server would refuse it (then the prediction shows nothing).
   */
  predict(state: S, actor: string, input: Input, nowMs: number): S | undefined;
  /** Whether two states hold the same thing (used to find updates a snapshot contains). */
  equals(a: S, b: S): boolean;
}

/** A participant's availability. */
export type Status = "online" | "away" | "offline";

/** One participant of a room. */
export interface Participant {
  id: string;
  name: string;
  status: Status;
  /** When the server last saw the participant act (ms since the Unix epoch; the server's clock). */
  lastActive: number;
}

/** The presence state: participants by id. */
export type Participants = Readonly<Record<string, Readonly<Participant>>>;

/** A committed presence operation. */
export type PresenceOp =
  | { type: "participant.joined"; payload: Participant }
  | {
      type: "participant.updated";
      payload: { id: string; name?: string; status?: Status; lastActive?: number };
    }
  | { type: "participant.left"; payload: { id: string } };

/** A presence `UPDATE`: the fields one changes on one's own participant. */
export interface PresenceInput {
  patch: { id?: string; name?: string; status?: Status };
}

/** The server's default limit on a display name, in characters. */
const MAX_NAME_CHARS = 64;

/** Whether the server would refuse `name` as a display name (the Rust model's checks). */
function badName(name: string): boolean {
  // Control characters: C0, DEL and C1, as Rust's `char::is_control`.
  // eslint-disable-next-line no-control-regex
  return name.trim() === "" || [...name].length > MAX_NAME_CHARS || /[\u0000-\u001f\u007f-\u009f]/.test(name);
}

/** Presence, the protocol's built-in model: the same rules as the server's. */
export const presence: Model<Participants, PresenceOp, PresenceInput> = {
  fromSnapshot(payload) {
    const participants = payload.participants;
    if (typeof participants !== "object" || participants === null || Array.isArray(participants)) {
      throw new TypeError("SYNC.SNAPSHOT payload.participants must be an object");
    }
    return participants as Participants;
  },

  apply(state, op) {
    switch (op.type) {
      case "participant.joined":
        return { ...state, [op.payload.id]: { ...op.payload } };
      case "participant.updated": {
        const present = state[op.payload.id];
        if (present === undefined) return state;
        const next: Participant = { ...present };
        if (op.payload.name !== undefined) next.name = op.payload.name;
        if (op.payload.status !== undefined) next.status = op.payload.status;
        if (op.payload.lastActive !== undefined) next.lastActive = op.payload.lastActive;
        return { ...state, [op.payload.id]: next };
      }
      case "participant.left": {
        if (!(op.payload.id in state)) return state;
        const next = { ...state };
        delete next[op.payload.id];
        return next;
      }
      default:
        return state;
    }
  },

  predict(state, actor, input) {
    const { id, name, status } = input.patch;
    if (id !== undefined && id !== actor) return undefined;
    if (state[actor] === undefined) return undefined;
    if (name === undefined && status === undefined) return undefined;
    if (name !== undefined && badName(name)) return undefined;
    const payload: { id: string; name?: string; status?: Status } = { id: actor };
    if (name !== undefined) payload.name = name;
    if (status !== undefined) payload.status = status;
    return presence.apply(state, { type: "participant.updated", payload });
  },

  equals(a, b) {
    const ids = Object.keys(a);
    if (ids.length !== Object.keys(b).length) return false;
    return ids.every((id) => {
      const x = a[id];
      const y = b[id];
      return (
        x !== undefined &&
        y !== undefined &&
        x.id === y.id &&
        x.name === y.name &&
        x.status === y.status &&
        x.lastActive === y.lastActive
      );
    });
  },
};
