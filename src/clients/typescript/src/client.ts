/**
 * RoutingClient: a typed client of the core's RoutingService over gRPC (Connect for Node, HTTP/2).
 *
 * Every call sends `authorization: Bearer <apiKey>`, takes optional CallOptions (`timeoutMs`,
 * `signal`, extra `headers`; an `authorization` header there replaces the client's key for that
 * call) and throws a RoutingError on failure.
 */
import type { CallOptions, Client } from "@connectrpc/connect";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";

import type { StreamEnd as StreamEndMessage, Usage as UsageMessage } from "../../../../generated/ts/atoma/routing/v1/common_pb.js";
import {
  type ChatCompletionResponse,
  type CompletionResponse,
  RoutingService,
} from "../../../../generated/ts/atoma/routing/v1/routing_service_pb.js";
import { RoutingError, toRoutingError } from "./errors.js";
import { chatRequest, completionRequest, embeddingsRequest } from "./requests.js";
import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatCompletionParams,
  CompletionParams,
  CompletionResult,
  EmbeddingsList,
  EmbeddingsParams,
  EmbeddingsResult,
  Model,
  RoutingInfo,
  StreamEnd,
  TextCompletion,
  Usage,
} from "./types.js";
import { routingFromHeaders } from "./types.js";

export interface ConnectOptions {
  /** Sent as `authorization: Bearer <apiKey>` on every call. */
  apiKey: string;
  /** Milliseconds allowed to each call (a whole stream included) that gives no `timeoutMs`; 0 for none. Default 600 000. */
  defaultTimeoutMs?: number;
  /** Milliseconds to wait for the connection before `connect` throws UNAVAILABLE. Default 10 000. */
  connectTimeoutMs?: number;
}

/** The core's response events of a ChatCompletion or Completion stream. */
type InferenceEvent = ChatCompletionResponse | CompletionResponse;

export class RoutingClient {
  private readonly client: Client<typeof RoutingService>;
  private readonly authorization: string;
  private closed = false;

  private constructor(
    private readonly session: Http2SessionManager,
    apiKey: string,
    defaultTimeoutMs: number,
  ) {
    const transport = createGrpcTransport({ baseUrl: session.authority, sessionManager: session, defaultTimeoutMs });
    this.client = createClient(RoutingService, transport);
    this.authorization = `Bearer ${apiKey}`;
  }

  /**
   * Connect to the core at `target`: "host:port" or "http://host:port" for plaintext, "https://host:port" for TLS.
   * Throws a RoutingError UNAVAILABLE when the core cannot be reached within `connectTimeoutMs`.
   */
  static async connect(target: string, options: ConnectOptions): Promise<RoutingClient> {
    const url = /^[a-z]+:\/\//i.test(target) ? target : `http://${target}`;
    const session = new Http2SessionManager(url);
    const client = new RoutingClient(session, options.apiKey, options.defaultTimeoutMs ?? 600_000);
    const timeoutMs = options.connectTimeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), timeoutMs);
    });
    const state = await Promise.race([session.connect(), timedOut]).finally(() => clearTimeout(timer));
    if (state === "error" || state === "timeout") {
      const cause = session.error();
      session.abort();
      const detail = state === "timeout" ? `no connection within ${timeoutMs} ms` : describe(cause);
      throw new RoutingError("UNAVAILABLE", `cannot reach the core at ${url}: ${detail}`, { cause });
    }
    return client;
  }

  /** Close the connection; calls in flight fail with CANCELLED or UNAVAILABLE. */
  close(): void {
    this.closed = true;
    this.session.abort();
  }

  /** The models at least one node serves, sorted by id. */
  async listModels(options?: CallOptions): Promise<Model[]> {
    const callOptions = this.callOptions(options);
    try {
      const response = await this.client.listModels({}, callOptions);
      return response.data.map((model) => ({
        id: model.id,
        object: model.object,
        created: Number(model.created),
        owned_by: model.ownedBy,
      }));
    } catch (error) {
      throw toRoutingError(error);
    }
  }

  /** A non-streaming chat completion: OpenAI's chat.completion object with usage, routing and cost. */
  async chatCompletion(params: ChatCompletionParams, options?: CallOptions): Promise<CompletionResult<ChatCompletion>> {
    refuseStream(params, "streamChatCompletion");
    const request = chatRequest(params, false);
    const stream = new InferenceStream<ChatCompletion>(
      (callOptions) => this.client.chatCompletion(request, callOptions),
      this.callOptions(options),
    );
    return collect(stream);
  }

  /** A streamed chat completion: iterate its chat.completion.chunk objects; `end` holds usage and routing afterwards. */
  streamChatCompletion(params: ChatCompletionParams, options?: CallOptions): InferenceStream<ChatCompletionChunk> {
    const request = chatRequest(params, true);
    return new InferenceStream((callOptions) => this.client.chatCompletion(request, callOptions), this.callOptions(options));
  }

  /** A non-streaming text completion: OpenAI's text_completion object with usage, routing and cost. */
  async completion(params: CompletionParams, options?: CallOptions): Promise<CompletionResult<TextCompletion>> {
    refuseStream(params, "streamCompletion");
    const request = completionRequest(params, false);
    const stream = new InferenceStream<TextCompletion>(
      (callOptions) => this.client.completion(request, callOptions),
      this.callOptions(options),
    );
    return collect(stream);
  }

  /** A streamed text completion, iterated like `streamChatCompletion`. */
  streamCompletion(params: CompletionParams, options?: CallOptions): InferenceStream<TextCompletion> {
    const request = completionRequest(params, true);
    return new InferenceStream((callOptions) => this.client.completion(request, callOptions), this.callOptions(options));
  }

  /** Embeddings of `input`: OpenAI's embeddings list object with usage, routing and cost. */
  async embeddings(params: EmbeddingsParams, options?: CallOptions): Promise<EmbeddingsResult> {
    const request = embeddingsRequest(params);
    let headers = new Headers();
    const callOptions = this.callOptions(options, (received) => (headers = mergeHeaders(headers, received)));
    try {
      const response = await this.client.embeddings(request, callOptions);
      return {
        embeddings: parseJson<EmbeddingsList>(response.responseJson),
        usage: usage(response.usage),
        routing: completeRouting(response.routing, headers),
        costMicroUsd: response.costMicroUsd,
      };
    } catch (error) {
      throw toRoutingError(error);
    }
  }

  private callOptions(options: CallOptions = {}, onMetadata?: (headers: Headers) => void): CallOptions {
    if (this.closed) {
      throw new Error("this RoutingClient is closed");
    }
    const headers = new Headers(options.headers);
    if (!headers.has("authorization")) {
      headers.set("authorization", this.authorization);
    }
    return {
      ...options,
      headers,
      onHeader: (received) => {
        onMetadata?.(received);
        options.onHeader?.(received);
      },
      onTrailer: (received) => {
        onMetadata?.(received);
        options.onTrailer?.(received);
      },
    };
  }
}

/**
 * The events of one ChatCompletion or Completion call: iterate it once with `for await`; the items are
 * the node's chunks (or, for the non-streaming methods, the one whole completion). After the loop,
 * `end` holds the usage, routing and cost the core sent last. Leaving the loop early (break, throw)
 * or `cancel()` cancels the RPC, which the core passes on to the node.
 */
export class InferenceStream<T> implements AsyncIterable<T> {
  /** Usage, routing and cost: set once the stream has ended; undefined before and if the core sent no end. */
  end: StreamEnd | undefined;
  private readonly abort = new AbortController();
  private started = false;

  constructor(
    private readonly start: (options: CallOptions) => AsyncIterable<InferenceEvent>,
    private readonly options: CallOptions,
  ) {}

  /** Cancel the RPC; an iteration in progress ends with a RoutingError CANCELLED. */
  cancel(): void {
    this.abort.abort();
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    if (this.started) {
      throw new Error("an InferenceStream can be iterated only once");
    }
    this.started = true;
    let headers = new Headers();
    const signal = this.options.signal ? AbortSignal.any([this.options.signal, this.abort.signal]) : this.abort.signal;
    const merge = (received: Headers) => (headers = mergeHeaders(headers, received));
    const options: CallOptions = {
      ...this.options,
      signal,
      onHeader: (received) => {
        merge(received);
        this.options.onHeader?.(received);
      },
      onTrailer: (received) => {
        merge(received);
        this.options.onTrailer?.(received);
      },
    };
    let end: StreamEndMessage | undefined;
    const messages = this.start(options)[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const next = await messages.next();
        if (next.done) {
          finished = true;
          break;
        }
        const event = next.value.event;
        switch (event.case) {
          case "chunk":
          case "completion":
            yield parseJson<T>(event.value);
            break;
          case "chunks":
            for (const chunk of event.value.chunks) {
              yield parseJson<T>(chunk);
            }
            break;
          case "end":
            end = event.value; // completed from the trailers once the stream is over
            break;
        }
      }
    } catch (error) {
      throw toRoutingError(error);
    } finally {
      if (!finished) {
        // The loop was left early or failed: cancel the RPC. Connect's stream has no return(), and
        // releases the call (its deadline timer among others) only when a read fails, so read once more,
        // unawaited.
        this.abort.abort();
        messages.next().catch(() => undefined);
      }
    }
    if (end !== undefined) {
      this.end = { usage: usage(end.usage), routing: completeRouting(end.routing, headers), costMicroUsd: end.costMicroUsd };
    }
  }
}

async function collect<T>(stream: InferenceStream<T>): Promise<CompletionResult<T>> {
  let completion: T | undefined;
  for await (const item of stream) {
    if (completion !== undefined) {
      stream.cancel();
      throw new RoutingError("INTERNAL", "a non-streaming response carried more than one completion");
    }
    completion = item;
  }
  if (completion === undefined) {
    throw new RoutingError("INTERNAL", "the response stream ended without a completion");
  }
  const end = stream.end ?? { usage: undefined, routing: {}, costMicroUsd: 0n };
  return { completion, ...end };
}

function refuseStream(params: Record<string, unknown>, streamingMethod: string): void {
  if (params["stream"]) {
    throw new TypeError(`stream: true needs ${streamingMethod}(...), which yields the chunks`);
  }
}

function parseJson<T>(text: string): T {
  try {
    return JSON.parse(text) as T;
  } catch (error) {
    throw new RoutingError("INTERNAL", `the core relayed a payload that is not JSON: ${String(error)}`, { cause: error });
  }
}

function usage(message: UsageMessage | undefined): Usage | undefined {
  if (message === undefined) return undefined;
  return {
    prompt_tokens: Number(message.promptTokens),
    completion_tokens: Number(message.completionTokens),
    total_tokens: Number(message.totalTokens),
  };
}

/** Routing facts from the response body, each completed from the `x-atoma-*` metadata when the body lacks it. */
function completeRouting(body: { nodeId: string; attempts: number; requestId: string } | undefined, headers: Headers): RoutingInfo {
  const fromHeaders = routingFromHeaders(headers);
  const routing: RoutingInfo = {};
  const nodeId = body?.nodeId || fromHeaders.nodeId;
  const attempts = body?.attempts || fromHeaders.attempts;
  const requestId = body?.requestId || fromHeaders.requestId;
  if (nodeId) routing.nodeId = nodeId;
  if (attempts) routing.attempts = attempts;
  if (requestId) routing.requestId = requestId;
  return routing;
}

function describe(cause: unknown): string {
  if (cause instanceof ConnectError) return cause.rawMessage;
  return cause instanceof Error ? cause.message : String(cause);
}

function mergeHeaders(into: Headers, received: Headers): Headers {
  received.forEach((value, key) => {
    if (!into.has(key)) into.set(key, value);
  });
  return into;
}
