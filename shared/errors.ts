// Typed errors: one class per failure mode, each with a stable `code`. Errors that cross NATS travel as
// `{ code, message }` (see protocol/messages.ts) and are rebuilt on receipt with `errorFromWire`.

export const ErrorCode = {
  Config: "CONFIG",
  Topology: "TOPOLOGY",
  Malformed: "MALFORMED",
  UnknownVersion: "UNKNOWN_VERSION",
  UnknownType: "UNKNOWN_TYPE",
  Oversized: "OVERSIZED",
  InvalidMessage: "INVALID_MESSAGE",
  InvalidSubjectToken: "INVALID_SUBJECT_TOKEN",
  MeshUnavailable: "MESH_UNAVAILABLE",
  CasConflict: "CAS_CONFLICT",
  NotFound: "NOT_FOUND",
  NotLeader: "NOT_LEADER",
  Rejected: "REJECTED",
  Netns: "NETNS",
  Pki: "PKI",
  Tunnel: "TUNNEL",
  Command: "COMMAND",
  MissingDependency: "MISSING_DEPENDENCY",
  KubeApi: "KUBE_API",
  Internal: "INTERNAL",
  // Proxy channels (ChannelError).
  BadTarget: "BAD_TARGET",
  Forbidden: "FORBIDDEN",
  NoGateway: "NO_GATEWAY",
  StaleTerm: "STALE_TERM",
  DialFailed: "DIAL_FAILED",
  Unauthorized: "UNAUTHORIZED",
  Timeout: "TIMEOUT",
  Closed: "CLOSED",
  Protocol: "PROTOCOL",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class RavenError extends Error {
  readonly code: ErrorCode;
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = "RavenError";
  }
}

/** A configuration value is missing or wrong; the message names the key. */
export class ConfigError extends RavenError {
  constructor(
    readonly key: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.Config, `config ${key}: ${message}`, options);
    this.name = "ConfigError";
  }
}

/** The topology file does not describe a valid fleet. */
export class TopologyError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Topology, message, options);
    this.name = "TopologyError";
  }
}

/** Bytes that are not a msgpack envelope. */
export class MalformedMessageError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Malformed, message, options);
    this.name = "MalformedMessageError";
  }
}

export class UnknownVersionError extends RavenError {
  constructor(readonly version: unknown) {
    super(ErrorCode.UnknownVersion, `unknown protocol version ${JSON.stringify(version)}`);
    this.name = "UnknownVersionError";
  }
}

export class UnknownTypeError extends RavenError {
  constructor(readonly type: unknown) {
    super(ErrorCode.UnknownType, `unknown message type ${JSON.stringify(type)}`);
    this.name = "UnknownTypeError";
  }
}

export class OversizedMessageError extends RavenError {
  constructor(
    readonly size: number,
    readonly limit: number,
  ) {
    super(ErrorCode.Oversized, `message of ${size} bytes exceeds the ${limit}-byte limit`);
    this.name = "OversizedMessageError";
  }
}

/** A well-formed envelope whose body does not match its type; the message names the field. */
export class InvalidMessageError extends RavenError {
  constructor(message: string) {
    super(ErrorCode.InvalidMessage, message);
    this.name = "InvalidMessageError";
  }
}

export class InvalidSubjectTokenError extends RavenError {
  constructor(
    readonly what: string,
    readonly token: unknown,
  ) {
    super(ErrorCode.InvalidSubjectToken, `invalid ${what} ${JSON.stringify(token)} for a NATS subject`);
    this.name = "InvalidSubjectTokenError";
  }
}

export class MeshUnavailableError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.MeshUnavailable, message, options);
    this.name = "MeshUnavailableError";
  }
}

/** A compare-and-swap write lost against a newer revision. */
export class CasConflictError extends RavenError {
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.CasConflict, `compare-and-swap on ${key} lost to a newer revision`, options);
    this.name = "CasConflictError";
  }
}

/** This coordinator does not hold the lease (any more): it must not write. */
export class NotLeaderError extends RavenError {
  constructor(message: string) {
    super(ErrorCode.NotLeader, message);
    this.name = "NotLeaderError";
  }
}

export type ChannelErrorCode =
  | typeof ErrorCode.BadTarget
  | typeof ErrorCode.Forbidden
  | typeof ErrorCode.NotFound
  | typeof ErrorCode.NoGateway
  | typeof ErrorCode.StaleTerm
  | typeof ErrorCode.DialFailed
  | typeof ErrorCode.Unauthorized
  | typeof ErrorCode.Timeout
  | typeof ErrorCode.Closed
  | typeof ErrorCode.Protocol;

/** A proxy channel could not be opened or broke; `code` says why and maps to an HTTP status at the front door. */
export class ChannelError extends RavenError {
  constructor(code: ChannelErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "ChannelError";
  }
}

/** A remote peer answered with an error. */
export class RemoteError extends RavenError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
    this.name = "RemoteError";
  }
}

/**
 * Building or tearing down the fleet's network namespaces failed. A bad plan input names the input; a failed
 * `ip` command carries its argv and ip's stderr (both also in the message).
 */
export class NetnsError extends RavenError {
  readonly command: readonly string[] | undefined;
  readonly stderr: string | undefined;
  constructor(message: string, options?: { cause?: unknown; command?: readonly string[]; stderr?: string }) {
    super(ErrorCode.Netns, message, options);
    this.name = "NetnsError";
    this.command = options?.command;
    this.stderr = options?.stderr;
  }
}

/** The fleet's keys, certificates or secret are missing or unusable; `file` names the one at fault. */
export class PkiError extends RavenError {
  constructor(
    readonly file: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(ErrorCode.Pki, `${file}: ${message}`, options);
    this.name = "PkiError";
  }
}

/** A tunnel-mode input (VPN peers, pod CIDRs, route facts) is invalid; the message names the field. */
export class TunnelError extends RavenError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCode.Tunnel, message, options);
    this.name = "TunnelError";
  }
}

/** The kernel refused a netlink request: errno, the kernel's own words when it gave some (extended ack), the request. */
export class NetlinkError extends RavenError {
  constructor(
    readonly request: string,
    readonly errno: string,
    readonly detail: string | null,
  ) {
    super(ErrorCode.Tunnel, `${request}: ${errno}${detail ? ` (${detail})` : ""}`);
    this.name = "NetlinkError";
  }
}

/** A binary or plugin Raven needs is not installed; the message names the file and the packages that bring it. */
export class MissingDependencyError extends RavenError {
  constructor(
    readonly path: string,
    readonly packages: readonly string[],
    what: string,
  ) {
    super(
      ErrorCode.MissingDependency,
      `${what}: ${path} not found; install the Debian packages ${packages.join(" ")} (scripts/setup.sh does)`,
    );
    this.name = "MissingDependencyError";
  }
}

const knownCodes = new Set<string>(Object.values(ErrorCode));

export function errorToWire(err: unknown): { code: ErrorCode; message: string } {
  if (err instanceof RavenError) return { code: err.code, message: err.message };
  return { code: ErrorCode.Internal, message: err instanceof Error ? err.message : String(err) };
}

export function errorFromWire(wire: { code: string; message: string }): RemoteError {
  const code = knownCodes.has(wire.code) ? (wire.code as ErrorCode) : ErrorCode.Internal;
  return new RemoteError(code, wire.message);
}

export function assertNever(value: never, what = "value"): never {
  throw new RavenError(ErrorCode.Internal, `unexpected ${what}: ${JSON.stringify(value)}`);
}

export function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  if (!err.cause) return err.message;
  const cause = describeError(err.cause);
  return err.message.includes(cause) ? err.message : `${err.message} (${cause})`;
}
