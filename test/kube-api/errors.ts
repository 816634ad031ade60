// API errors of the Kubernetes API test double and their wire form: every failure leaves the server as a
// real `Status` object (kind Status, apiVersion v1, status Failure, reason, details, code) with message texts
// shaped like kube-apiserver's.
import type { JsonObject } from "./json";

export type Reason =
  | "NotFound"
  | "AlreadyExists"
  | "Conflict"
  | "Invalid"
  | "BadRequest"
  | "MethodNotAllowed"
  | "Expired"
  | "Gone"
  | "UnsupportedMediaType"
  | "NotAcceptable"
  | "ServiceUnavailable"
  | "InternalError";

/** Names the resource an error is about, as in Status.details: group and plural resource (kind). */
export interface ResourceRef {
  group: string;
  resource: string;
}

export function qualifiedResource(r: ResourceRef): string {
  return r.group ? `${r.resource}.${r.group}` : r.resource;
}

export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: Reason,
    message: string,
    readonly details: JsonObject = {},
  ) {
    super(message);
  }
}

export function statusBody(code: number, reason: Reason, message: string, details: JsonObject = {}): JsonObject {
  return { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, details, code };
}

export function errorStatus(e: ApiError): JsonObject {
  return statusBody(e.code, e.reason, e.message, e.details);
}

function details(r: ResourceRef, name: string): JsonObject {
  return r.group ? { name, group: r.group, kind: r.resource } : { name, kind: r.resource };
}

export function notFound(r: ResourceRef, name: string): ApiError {
  return new ApiError(404, "NotFound", `${qualifiedResource(r)} "${name}" not found`, details(r, name));
}

export function alreadyExists(r: ResourceRef, name: string): ApiError {
  return new ApiError(409, "AlreadyExists", `${qualifiedResource(r)} "${name}" already exists`, details(r, name));
}

export function conflict(r: ResourceRef, name: string): ApiError {
  return new ApiError(
    409,
    "Conflict",
    `Operation cannot be fulfilled on ${qualifiedResource(r)} "${name}": the object has been modified; ` +
      "please apply your changes to the latest version and try again",
    details(r, name),
  );
}

export function badRequest(message: string): ApiError {
  return new ApiError(400, "BadRequest", message);
}

/** 422 Invalid, causes given as `field: message` pairs. */
export function invalid(kind: string, group: string, name: string, causes: [string, string][]): ApiError {
  const list = causes.map(([f, m]) => `${f}: ${m}`).join(", ");
  const qk = group ? `${kind}.${group}` : kind;
  return new ApiError(422, "Invalid", `${qk} "${name}" is invalid: ${list}`, {
    name,
    group,
    kind,
    causes: causes.map(([field, message]) => ({ reason: "FieldValueInvalid", message, field })),
  });
}
