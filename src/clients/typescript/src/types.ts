/**
 * What a RoutingClient takes and returns. Node payloads (chunks, completions, embeddings) are OpenAI's
 * objects, parsed from the JSON text the node sent; the index signatures keep every field a node adds.
 */

/** Token usage of one request, as the serving node reported it (OpenAI's usage object). */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Where and how the proxy served a request; a field is undefined when the server did not say. */
export interface RoutingInfo {
  nodeId?: string;
  attempts?: number;
  requestId?: string;
}

/** The last event of an inference stream: usage, routing and what the request was charged. */
export interface StreamEnd {
  /** Undefined when the node reported no usage. */
  usage: Usage | undefined;
  routing: RoutingInfo;
  /** The charge in micro-USD, exact (0 when a prepaid stack paid or metering is off). */
  costMicroUsd: bigint;
}

/** A model the network serves (OpenAI's model object). */
export interface Model {
  id: string;
  object: string;
  created: number;
  owned_by: string;
}

/** A content part of a chat message. */
export interface ChatContentPartParam {
  type: string;
  text?: string;
  image_url?: { url: string; detail?: string };
  [field: string]: unknown;
}

/** An OpenAI chat message; fields other than role, content, name and tool_call_id (tool_calls, ...) pass through. */
export interface ChatMessageParam {
  role: string;
  content?: string | ChatContentPartParam[] | null;
  name?: string;
  tool_call_id?: string;
  [field: string]: unknown;
}

/** Fields common to chat and text completion requests. Unknown fields (tools, response_format, ...) pass through. */
interface SamplingParams {
  model: string;
  max_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  n?: number | null;
  stream_options?: { include_usage?: boolean } | null;
  stop?: string | string[] | null;
  seed?: number | null;
  user?: string | null;
  [field: string]: unknown;
}

/** OpenAI's chat completion request; `stream` is chosen by the method called. */
export interface ChatCompletionParams extends SamplingParams {
  messages: ChatMessageParam[];
  max_completion_tokens?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
}

/** OpenAI's (legacy) text completion request. */
export interface CompletionParams extends SamplingParams {
  prompt: string | string[] | number[] | number[][];
}

/** OpenAI's embeddings request. */
export interface EmbeddingsParams {
  model: string;
  input: string | string[] | number[] | number[][];
  encoding_format?: "float" | "base64" | null;
  dimensions?: number | null;
  user?: string | null;
  [field: string]: unknown;
}

/** One chat.completion.chunk. */
export interface ChatCompletionChunk {
  id: string;
  object: "chat.completion.chunk";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    delta: { role?: string; content?: string | null; [field: string]: unknown };
    finish_reason: string | null;
    [field: string]: unknown;
  }>;
  usage?: Usage | null;
  [field: string]: unknown;
}

/** The chat.completion object of a non-streaming chat. */
export interface ChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: { role: string; content: string | null; [field: string]: unknown };
    finish_reason: string | null;
    [field: string]: unknown;
  }>;
  usage?: Usage;
  [field: string]: unknown;
}

/** A text_completion object, whole or as one chunk of a stream. */
export interface TextCompletion {
  id: string;
  object: "text_completion";
  created: number;
  model: string;
  choices: Array<{ index: number; text: string; finish_reason: string | null; [field: string]: unknown }>;
  usage?: Usage | null;
  [field: string]: unknown;
}

/** OpenAI's embeddings list object. */
export interface EmbeddingsList {
  object: "list";
  model: string;
  data: Array<{ object: "embedding"; index: number; embedding: number[] | string; [field: string]: unknown }>;
  usage?: { prompt_tokens: number; total_tokens: number };
  [field: string]: unknown;
}

/** A non-streaming chat or text completion with what the proxy adds to it. */
export interface CompletionResult<T> extends StreamEnd {
  completion: T;
}

/** An embeddings response with what the proxy adds to it. */
export interface EmbeddingsResult {
  embeddings: EmbeddingsList;
  usage: Usage | undefined;
  routing: RoutingInfo;
  costMicroUsd: bigint;
}

const NODE_KEY = "x-atoma-node";
const ATTEMPTS_KEY = "x-atoma-attempts";
const REQUEST_ID_KEY = "x-request-id";

/** Routing facts from the `x-atoma-*` response metadata. */
export function routingFromHeaders(headers: Headers): RoutingInfo {
  const routing: RoutingInfo = {};
  const node = headers.get(NODE_KEY);
  const attempts = headers.get(ATTEMPTS_KEY);
  const requestId = headers.get(REQUEST_ID_KEY);
  if (node) routing.nodeId = node;
  if (attempts && /^\d+$/.test(attempts)) routing.attempts = Number(attempts);
  if (requestId) routing.requestId = requestId;
  return routing;
}
