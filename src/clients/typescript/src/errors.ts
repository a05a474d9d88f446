/**
 * RoutingError: every failed call of a RoutingClient, with the gRPC code and the core's google.rpc.ErrorInfo.
 *
 * The core ends a failed RPC with a google.rpc.Status in the `grpc-status-details-bin` trailer; its
 * ErrorInfo carries a stable UPPER_SNAKE `reason` (branch on it, never on `message`) and string
 * `metadata` such as `{ param: "model" }`. Failures that never reached the core (connection refused,
 * a local deadline) carry no ErrorInfo: `reason` is undefined and only `code` tells what happened.
 */
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";

import { type RoutingInfo, routingFromHeaders } from "./types.js";

/** gRPC status codes as gRPC spells them. */
export type GrpcCode =
  | "OK"
  | "CANCELLED"
  | "UNKNOWN"
  | "INVALID_ARGUMENT"
  | "DEADLINE_EXCEEDED"
  | "NOT_FOUND"
  | "ALREADY_EXISTS"
  | "PERMISSION_DENIED"
  | "RESOURCE_EXHAUSTED"
  | "FAILED_PRECONDITION"
  | "ABORTED"
  | "OUT_OF_RANGE"
  | "UNIMPLEMENTED"
  | "INTERNAL"
  | "UNAVAILABLE"
  | "DATA_LOSS"
  | "UNAUTHENTICATED";

const CODE_NAMES: readonly GrpcCode[] = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

const ERROR_INFO = "google.rpc.ErrorInfo";
const RETRY_INFO = "google.rpc.RetryInfo";

export interface RoutingErrorFields {
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  retryAfterMs?: number;
  routing?: RoutingInfo;
  cause?: unknown;
}

/** A failed RoutingService call. */
export class RoutingError extends Error {
  override name = "RoutingError";
  /** The gRPC status code the RPC ended with, e.g. "UNAUTHENTICATED". */
  readonly code: GrpcCode;
  /** The status message, for people; not a contract. */
  readonly rawMessage: string;
  /** ErrorInfo.reason (stable UPPER_SNAKE, e.g. "INVALID_API_KEY"), or undefined when the status had no ErrorInfo. */
  readonly reason: string | undefined;
  /** ErrorInfo.domain ("atoma.network" for the core), or undefined. */
  readonly domain: string | undefined;
  /** ErrorInfo.metadata, e.g. `{ param: "messages" }`; empty when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Milliseconds from a google.rpc.RetryInfo detail (rate limits), or undefined. */
  readonly retryAfterMs: number | undefined;
  /** Node, attempts and request id from the response metadata, where the core sent them. */
  readonly routing: RoutingInfo;

  constructor(code: GrpcCode, message: string, fields: RoutingErrorFields = {}) {
    const label = fields.reason === undefined ? code : `${code}/${fields.reason}`;
    super(`${label}: ${message}`, fields.cause === undefined ? undefined : { cause: fields.cause });
    this.code = code;
    this.rawMessage = message;
    this.reason = fields.reason;
    this.domain = fields.domain;
    this.metadata = { ...fields.metadata };
    this.retryAfterMs = fields.retryAfterMs;
    this.routing = fields.routing ?? {};
  }
}

/** The RoutingError for anything a call threw: a ConnectError is decoded, a RoutingError kept, the rest is INTERNAL. */
export function toRoutingError(error: unknown): RoutingError {
  if (error instanceof RoutingError) {
    return error;
  }
  if (!(error instanceof ConnectError)) {
    const message = error instanceof Error ? error.message : String(error);
    return new RoutingError("INTERNAL", message, { cause: error });
  }
  const fields: RoutingErrorFields = { cause: error, routing: routingFromHeaders(error.metadata) };
  for (const detail of error.details) {
    if (!("type" in detail)) {
      continue; // an outgoing detail: only a server builds those
    }
    if (detail.type === ERROR_INFO && fields.reason === undefined) {
      Object.assign(fields, decodeErrorInfo(detail.value));
    } else if (detail.type === RETRY_INFO && fields.retryAfterMs === undefined) {
      fields.retryAfterMs = decodeRetryDelayMs(detail.value);
    }
  }
  return new RoutingError(codeName(error.code), error.rawMessage || codeName(error.code), fields);
}

function codeName(code: Code): GrpcCode {
  return CODE_NAMES[code] ?? "UNKNOWN";
}

/** google.rpc.ErrorInfo: reason = 1, domain = 2, map<string, string> metadata = 3. */
function decodeErrorInfo(bytes: Uint8Array): Pick<RoutingErrorFields, "reason" | "domain" | "metadata"> {
  const reader = new BinaryReader(bytes);
  const fields: Pick<RoutingErrorFields, "reason" | "domain" | "metadata"> = { metadata: {} };
  try {
    while (reader.pos < reader.len) {
      const [field, wireType] = reader.tag();
      if (field === 1 && wireType === WireType.LengthDelimited) {
        fields.reason = reader.string() || undefined;
      } else if (field === 2 && wireType === WireType.LengthDelimited) {
        fields.domain = reader.string() || undefined;
      } else if (field === 3 && wireType === WireType.LengthDelimited) {
        const [key, value] = decodeStringPair(reader.bytes());
        fields.metadata![key] = value;
      } else {
        reader.skip(wireType, field);
      }
    }
  } catch {
    return {}; // a garbled detail must not hide the error itself
  }
  return fields;
}

function decodeStringPair(bytes: Uint8Array): [string, string] {
  const reader = new BinaryReader(bytes);
  let key = "";
  let value = "";
  while (reader.pos < reader.len) {
    const [field, wireType] = reader.tag();
    if (field === 1 && wireType === WireType.LengthDelimited) {
      key = reader.string();
    } else if (field === 2 && wireType === WireType.LengthDelimited) {
      value = reader.string();
    } else {
      reader.skip(wireType, field);
    }
  }
  return [key, value];
}

/** google.rpc.RetryInfo: google.protobuf.Duration retry_delay = 1 (int64 seconds = 1, int32 nanos = 2). */
function decodeRetryDelayMs(bytes: Uint8Array): number | undefined {
  try {
    const outer = new BinaryReader(bytes);
    while (outer.pos < outer.len) {
      const [field, wireType] = outer.tag();
      if (field !== 1 || wireType !== WireType.LengthDelimited) {
        outer.skip(wireType, field);
        continue;
      }
      const duration = new BinaryReader(outer.bytes());
      let seconds = 0;
      let nanos = 0;
      while (duration.pos < duration.len) {
        const [inner, innerType] = duration.tag();
        if (inner === 1 && innerType === WireType.Varint) {
          seconds = Number(duration.int64());
        } else if (inner === 2 && innerType === WireType.Varint) {
          nanos = duration.int32();
        } else {
          duration.skip(innerType, inner);
        }
      }
      return seconds * 1000 + nanos / 1e6;
    }
  } catch {
    return undefined;
  }
  return undefined;
}
