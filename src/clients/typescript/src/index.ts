/** Typed TypeScript client of the atoma-proxy core; see README.md "TypeScript client". */
export { type ConnectOptions, InferenceStream, RoutingClient } from "./client.js";
export { type GrpcCode, RoutingError } from "./errors.js";
export type * from "./types.js";
