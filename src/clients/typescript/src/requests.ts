/**
 * Request messages built from OpenAI-shaped parameters.
 *
 * The fields the proxy reads are typed in the proto; every other field of the OpenAI request
 * (tools, response_format, logprobs, ...) goes to `extra_json` and reaches the node unchanged, as
 * do a message's or a content part's other fields. A field given as null is left unset, as OpenAI
 * treats null. `stream` is set by the method called, never by the parameters.
 */
import { create, type MessageInitShape } from "@bufbuild/protobuf";

import type { ChatContentPart, ChatMessage } from "../../../../generated/ts/atoma/routing/v1/chat_pb.js";
import {
  ChatContentPartSchema,
  ChatMessageSchema,
} from "../../../../generated/ts/atoma/routing/v1/chat_pb.js";
import { TokenIdsSchema, type TokenIds } from "../../../../generated/ts/atoma/routing/v1/common_pb.js";
import {
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  type CompletionRequest,
  CompletionRequestSchema,
  type EmbeddingsRequest,
  EmbeddingsRequestSchema,
} from "../../../../generated/ts/atoma/routing/v1/routing_service_pb.js";
import type {
  ChatCompletionParams,
  ChatContentPartParam,
  ChatMessageParam,
  CompletionParams,
  EmbeddingsParams,
} from "./types.js";

type Params = Record<string, unknown>;

const SAMPLING_KEYS = ["model", "max_tokens", "temperature", "top_p", "n", "stream_options", "stop", "seed", "user"];
const CHAT_KEYS = new Set([
  ...SAMPLING_KEYS,
  "messages",
  "max_completion_tokens",
  "presence_penalty",
  "frequency_penalty",
  "stream",
]);
const COMPLETION_KEYS = new Set([...SAMPLING_KEYS, "prompt", "stream"]);
const EMBEDDINGS_KEYS = new Set(["model", "input", "encoding_format", "dimensions", "user"]);
const MESSAGE_KEYS = new Set(["role", "content", "name", "tool_call_id"]);
const PART_KEYS = new Set(["type", "text", "image_url"]);

export function chatRequest(params: ChatCompletionParams, stream: boolean): ChatCompletionRequest {
  const p = params as Params;
  if (!Array.isArray(params.messages)) {
    throw new TypeError("messages must be an array of chat messages");
  }
  const init: MessageInitShape<typeof ChatCompletionRequestSchema> = {
    ...samplingFields(p),
    messages: params.messages.map(chatMessage),
    maxCompletionTokens: int64(p, "max_completion_tokens"),
    presencePenalty: double(p, "presence_penalty"),
    frequencyPenalty: double(p, "frequency_penalty"),
    stream,
    extraJson: extraJson(p, CHAT_KEYS),
  };
  return create(ChatCompletionRequestSchema, init);
}

export function completionRequest(params: CompletionParams, stream: boolean): CompletionRequest {
  const p = params as Params;
  const [prompt, promptTokens] = textOrTokens(params.prompt, "prompt");
  return create(CompletionRequestSchema, {
    ...samplingFields(p),
    prompt,
    promptTokens,
    stream,
    extraJson: extraJson(p, COMPLETION_KEYS),
  });
}

export function embeddingsRequest(params: EmbeddingsParams): EmbeddingsRequest {
  const p = params as Params;
  const [input, inputTokens] = textOrTokens(params.input, "input");
  return create(EmbeddingsRequestSchema, {
    model: text(p, "model"),
    input,
    inputTokens,
    encodingFormat: text(p, "encoding_format"),
    dimensions: int32(p, "dimensions"),
    user: text(p, "user"),
    extraJson: extraJson(p, EMBEDDINGS_KEYS),
  });
}

function samplingFields(p: Params) {
  const options = p.stream_options as { include_usage?: boolean } | null | undefined;
  return {
    model: text(p, "model"),
    maxTokens: int64(p, "max_tokens"),
    temperature: double(p, "temperature"),
    topP: double(p, "top_p"),
    n: int32(p, "n"),
    streamOptions: options == null ? undefined : { includeUsage: Boolean(options.include_usage) },
    stop: typeof p.stop === "string" ? [p.stop] : ((p.stop as string[] | null | undefined) ?? []),
    seed: int64(p, "seed"),
    user: text(p, "user"),
  };
}

function chatMessage(message: ChatMessageParam): ChatMessage {
  const m = message as Params;
  const content = message.content;
  return create(ChatMessageSchema, {
    role: text(m, "role"),
    content:
      typeof content === "string"
        ? { case: "text", value: content }
        : Array.isArray(content)
          ? { case: "parts", value: { parts: content.map(contentPart) } }
          : { case: undefined },
    name: text(m, "name"),
    toolCallId: text(m, "tool_call_id"),
    extraJson: extraJson(m, MESSAGE_KEYS),
  });
}

function contentPart(part: ChatContentPartParam): ChatContentPart {
  const p = part as Params;
  return create(ChatContentPartSchema, {
    type: text(p, "type"),
    text: text(p, "text"),
    imageUrl: part.image_url == null ? undefined : { url: part.image_url.url, detail: part.image_url.detail ?? "" },
    extraJson: extraJson(p, PART_KEYS),
  });
}

/** OpenAI's four shapes of prompt/input: text, texts, one token list, token lists. */
function textOrTokens(value: unknown, name: string): [string[], MessageInitShape<typeof TokenIdsSchema>[]] {
  if (typeof value === "string") return [[value], []];
  if (!Array.isArray(value)) throw new TypeError(`${name} must be a string, strings or token lists`);
  if (value.length > 0 && value.every((item) => typeof item === "number")) return [[], [tokenIds(value, name)]];
  if (value.length > 0 && value.every((item) => Array.isArray(item))) {
    return [[], value.map((item) => tokenIds(item as unknown[], name))];
  }
  if (value.every((item) => typeof item === "string")) return [value as string[], []];
  throw new TypeError(`${name} must be a string, strings or token lists`);
}

function tokenIds(ids: unknown[], name: string): MessageInitShape<typeof TokenIdsSchema> {
  return { ids: ids.map((id) => toBigInt(id, name)) } satisfies Partial<TokenIds>;
}

function extraJson(p: Params, known: Set<string>): string {
  const extra = Object.fromEntries(Object.entries(p).filter(([key, value]) => !known.has(key) && value !== undefined));
  return Object.keys(extra).length === 0 ? "" : JSON.stringify(extra);
}

function text(p: Params, key: string): string {
  const value = p[key];
  if (value == null) return "";
  if (typeof value !== "string") throw new TypeError(`${key} must be a string`);
  return value;
}

function double(p: Params, key: string): number | undefined {
  const value = p[key];
  if (value == null) return undefined;
  if (typeof value !== "number") throw new TypeError(`${key} must be a number`);
  return value;
}

function int32(p: Params, key: string): number | undefined {
  const value = p[key];
  if (value == null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value)) throw new TypeError(`${key} must be an integer`);
  return value;
}

function int64(p: Params, key: string): bigint | undefined {
  const value = p[key];
  return value == null ? undefined : toBigInt(value, key);
}

function toBigInt(value: unknown, name: string): bigint {
  if (typeof value === "bigint") return value;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) throw new TypeError(`${name} must be an integer`);
  return BigInt(value);
}
