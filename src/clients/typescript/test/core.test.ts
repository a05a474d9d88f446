/**
 * The client against a running core with simulated nodes, started by tests/clients/test_typescript_client.py,
 * which passes the core's address, an API key, the models and the Python client's answer in the environment.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";

import {
  type ChatCompletionChunk,
  type ChatCompletionParams,
  type InferenceStream,
  RoutingClient,
  RoutingError,
  type StreamEnd,
} from "../src/index.js";

const env = (name: string): string => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this through tests/clients/test_typescript_client.py`);
  return value;
};

const TARGET = env("ATOMA_TS_TEST_CORE");
const API_KEY = env("ATOMA_TS_TEST_API_KEY");
const CHAT = env("ATOMA_TS_TEST_CHAT_MODEL");
const EMBED = env("ATOMA_TS_TEST_EMBED_MODEL");
// The non-streaming answer the Python RoutingClient got for CHAT_REQUEST.
const EXPECTED_ANSWER = env("ATOMA_TS_TEST_EXPECTED_ANSWER");
const CLOSED_PORT = env("ATOMA_TS_TEST_CLOSED_PORT");
// A model served only by a slow simulated node (20 tokens/s, long replies), and that node's base URL.
const SLOW_CHAT = env("ATOMA_TS_TEST_SLOW_MODEL");
const SLOW_NODE = env("ATOMA_TS_TEST_SLOW_NODE");

const CHAT_REQUEST: ChatCompletionParams = {
  model: CHAT,
  messages: [{ role: "user", content: "hello from typescript" }],
  max_tokens: 6,
  seed: 7,
};

describe("RoutingClient against the core", () => {
  let client: RoutingClient;

  before(async () => {
    client = await RoutingClient.connect(TARGET, { apiKey: API_KEY });
  });

  after(() => client.close());

  test("listModels returns the served models, sorted, OpenAI-shaped", async () => {
    const models = await client.listModels();
    const ids = models.map((model) => model.id);
    assert.ok(ids.includes(CHAT) && ids.includes(EMBED), `got ${ids.join(", ")}`);
    assert.deepEqual(ids, [...ids].sort());
    for (const model of models) {
      assert.equal(model.object, "model");
      assert.equal(typeof model.created, "number");
    }
  });

  test("chatCompletion returns the chat.completion with usage, routing and cost", async () => {
    const result = await client.chatCompletion(CHAT_REQUEST);
    assert.equal(result.completion.object, "chat.completion");
    assert.equal(result.completion.choices[0]?.message.content, EXPECTED_ANSWER);
    assert.equal(result.usage?.completion_tokens, 6);
    assert.equal(result.usage?.total_tokens, result.usage!.prompt_tokens + 6);
    assert.equal(result.completion.usage?.completion_tokens, 6);
    assert.ok(result.routing.nodeId === "fast" || result.routing.nodeId === "steady", JSON.stringify(result.routing));
    assert.equal(result.routing.attempts, 1);
    assert.match(result.routing.requestId ?? "", /\S/);
    assert.equal(typeof result.costMicroUsd, "bigint");
    assert.ok(result.costMicroUsd > 0n);
  });

  test("streamChatCompletion yields chunks that concatenate to the answer, then usage", async () => {
    const stream = client.streamChatCompletion(CHAT_REQUEST);
    const chunks: ChatCompletionChunk[] = [];
    assert.equal(endOf(stream), undefined);
    for await (const chunk of stream) {
      assert.equal(endOf(stream), undefined, "the end arrives after the last chunk");
      chunks.push(chunk);
    }
    assert.ok(chunks.length >= 6, `only ${chunks.length} chunks`);
    assert.ok(chunks.every((chunk) => chunk.object === "chat.completion.chunk"));
    const answer = chunks.map((chunk) => chunk.choices[0]?.delta.content ?? "").join("");
    assert.equal(answer, EXPECTED_ANSWER);
    assert.equal(stream.end?.usage?.completion_tokens, 6);
    assert.ok(stream.end!.usage!.prompt_tokens > 0);
    assert.match(stream.end?.routing.requestId ?? "", /\S/);
    assert.notEqual(stream.end?.routing.nodeId, undefined);
    assert.ok(stream.end!.costMicroUsd > 0n);
  });

  test("completion and streamCompletion agree, as do their usages", async () => {
    const request = { model: CHAT, prompt: "once upon a time", max_tokens: 5, seed: 3 };
    const whole = await client.completion(request);
    const stream = client.streamCompletion(request);
    let text = "";
    for await (const chunk of stream) {
      text += chunk.choices.map((choice) => choice.text).join("");
    }
    assert.equal(whole.completion.object, "text_completion");
    assert.equal(text, whole.completion.choices[0]?.text);
    assert.equal(whole.usage?.completion_tokens, 5);
    assert.deepEqual(stream.end?.usage, whole.usage);
  });

  test("embeddings returns the list object with usage", async () => {
    const result = await client.embeddings({ model: EMBED, input: ["one two three", "four"] });
    assert.equal(result.embeddings.object, "list");
    assert.deepEqual(
      result.embeddings.data.map((item) => item.index),
      [0, 1],
    );
    assert.ok(Array.isArray(result.embeddings.data[0]?.embedding));
    assert.equal(result.usage?.prompt_tokens, result.embeddings.usage?.prompt_tokens);
    assert.ok(result.usage!.prompt_tokens > 0);
    assert.notEqual(result.routing.nodeId, undefined);
  });

  test("leaving the loop early cancels the RPC and the node's request", async () => {
    const before = await nodeStats();
    let received = 0;
    for await (const _ of client.streamChatCompletion({ model: SLOW_CHAT, messages: CHAT_REQUEST.messages })) {
      if (++received === 3) break;
    }
    const after = await nodeCancelled(before.cancelled);
    assert.equal(after.cancelled, before.cancelled + 1);
    assert.equal(after.in_flight, 0);
  });

  test("cancel() ends the loop with CANCELLED and cancels the node's request", async () => {
    const before = await nodeStats();
    const stream = client.streamChatCompletion({ model: SLOW_CHAT, messages: CHAT_REQUEST.messages });
    let received = 0;
    const error = await rejection(
      (async () => {
        for await (const _ of stream) {
          if (++received === 2) stream.cancel();
        }
      })(),
    );
    assert.equal(error.code, "CANCELLED");
    assert.equal(received, 2);
    assert.equal(stream.end, undefined);
    const after = await nodeCancelled(before.cancelled);
    assert.equal(after.cancelled, before.cancelled + 1);
  });

  test("an unknown model is NOT_FOUND with reason MODEL_NOT_FOUND and its param", async () => {
    const error = await rejection(client.chatCompletion({ ...CHAT_REQUEST, model: "no/such-model" }));
    assert.equal(error.code, "NOT_FOUND");
    assert.equal(error.reason, "MODEL_NOT_FOUND");
    assert.equal(error.domain, "atoma.network");
    assert.deepEqual(error.metadata, { param: "model" });
  });

  test("a streamed call fails the loop with the RoutingError", async () => {
    const stream = client.streamChatCompletion({ ...CHAT_REQUEST, temperature: 7 });
    const error = await rejection(
      (async () => {
        for await (const _ of stream) {
          assert.fail("no chunk expected");
        }
      })(),
    );
    assert.equal(error.code, "INVALID_ARGUMENT");
    assert.equal(error.reason, "INVALID_REQUEST");
    assert.equal(stream.end, undefined);
  });

  test("bad parameters throw a TypeError before any call, a RoutingError never", async () => {
    await assert.rejects(client.chatCompletion({ ...CHAT_REQUEST, max_tokens: 2.5 }), TypeError);
    await assert.rejects(client.chatCompletion({ ...CHAT_REQUEST, stream: true }), /needs streamChatCompletion/);
    assert.throws(() => client.streamCompletion({ model: CHAT, prompt: {} as unknown as string }), TypeError);
    await assert.rejects(client.embeddings({ model: EMBED, input: "x", dimensions: 1.5 }), TypeError);
  });

  test("an authorization header in the call options replaces the client's key", async () => {
    const error = await rejection(client.listModels({ headers: { authorization: "Bearer sk-wrong" } }));
    assert.equal(error.reason, "INVALID_API_KEY");
  });
});

test("a bad API key is UNAUTHENTICATED with reason INVALID_API_KEY", async () => {
  const client = await RoutingClient.connect(TARGET, { apiKey: "sk-not-a-real-key" });
  try {
    const error = await rejection(client.chatCompletion(CHAT_REQUEST));
    assert.equal(error.code, "UNAUTHENTICATED");
    assert.equal(error.reason, "INVALID_API_KEY");
    assert.equal(error.domain, "atoma.network");
    assert.match(error.message, /^UNAUTHENTICATED\/INVALID_API_KEY: /);
  } finally {
    client.close();
  }
});

test("connecting to a port nobody listens on is UNAVAILABLE without a reason", async () => {
  const error = await rejection(RoutingClient.connect(`127.0.0.1:${CLOSED_PORT}`, { apiKey: API_KEY }));
  assert.equal(error.code, "UNAVAILABLE");
  assert.equal(error.reason, undefined);
});

interface NodeStats {
  cancelled: number;
  in_flight: number;
}

async function nodeStats(): Promise<NodeStats> {
  const response = await fetch(`${SLOW_NODE}/sim/stats`);
  assert.equal(response.status, 200);
  return (await response.json()) as NodeStats;
}

/** The slow node's stats once it has counted a cancellation more than `before` (polled, at most 10 s). */
async function nodeCancelled(before: number): Promise<NodeStats> {
  let stats = await nodeStats();
  for (let attempt = 0; attempt < 200 && stats.cancelled <= before; attempt++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    stats = await nodeStats();
  }
  return stats;
}

function endOf(stream: InferenceStream<unknown>): StreamEnd | undefined {
  return stream.end;
}

async function rejection(promise: Promise<unknown>): Promise<RoutingError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof RoutingError, `expected a RoutingError, got ${String(error)}`);
    return error;
  }
  return assert.fail("expected the call to fail");
}
