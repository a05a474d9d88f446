/** Request building and error decoding, without a server. */
import assert from "node:assert/strict";
import { test } from "node:test";

import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";

import { toRoutingError } from "../src/errors.js";
import { chatRequest, completionRequest, embeddingsRequest } from "../src/requests.js";

test("chatRequest types the known fields and passes the rest on as extra_json", () => {
  const request = chatRequest(
    {
      model: "m",
      messages: [
        { role: "system", content: "be brief" },
        {
          role: "user",
          content: [
            { type: "text", text: "what is this?" },
            { type: "image_url", image_url: { url: "data:image/png;base64,AA==" } },
          ],
        },
        { role: "assistant", content: null, tool_calls: [{ id: "c1", type: "function" }] },
      ],
      max_tokens: 9,
      temperature: 0.5,
      stop: "END",
      seed: null,
      tools: [{ type: "function", function: { name: "f" } }],
      stream_options: { include_usage: true },
    },
    true,
  );
  assert.equal(request.maxTokens, 9n);
  assert.equal(request.temperature, 0.5);
  assert.equal(request.seed, undefined);
  assert.deepEqual(request.stop, ["END"]);
  assert.equal(request.stream, true);
  assert.equal(request.streamOptions?.includeUsage, true);
  assert.deepEqual(JSON.parse(request.extraJson), { tools: [{ type: "function", function: { name: "f" } }] });
  const [system, user, assistant] = request.messages;
  assert.deepEqual(system?.content, { case: "text", value: "be brief" });
  assert.equal(user?.content.case, "parts");
  const parts = user?.content.case === "parts" ? user.content.value.parts : [];
  assert.deepEqual(
    parts.map((part) => [part.type, part.text, part.imageUrl?.url]),
    [
      ["text", "what is this?", undefined],
      ["image_url", "", "data:image/png;base64,AA=="],
    ],
  );
  assert.equal(assistant?.content.case, undefined);
  assert.deepEqual(JSON.parse(assistant?.extraJson ?? ""), { tool_calls: [{ id: "c1", type: "function" }] });
});

test("prompt and input take OpenAI's four shapes", () => {
  assert.deepEqual(completionRequest({ model: "m", prompt: "a" }, false).prompt, ["a"]);
  assert.deepEqual(
    completionRequest({ model: "m", prompt: [1, 2] }, false).promptTokens.map((t) => t.ids),
    [[1n, 2n]],
  );
  assert.deepEqual(embeddingsRequest({ model: "m", input: ["a", "b"] }).input, ["a", "b"]);
  assert.deepEqual(
    embeddingsRequest({ model: "m", input: [[1], [2, 3]] }).inputTokens.map((t) => t.ids),
    [[1n], [2n, 3n]],
  );
});

test("malformed parameters are refused before anything is sent", () => {
  assert.throws(() => chatRequest({ model: "m", messages: [], max_tokens: 1.5 }, false), /max_tokens must be an integer/);
  assert.throws(() => chatRequest({ model: "m", messages: [], n: 2.5 }, false), /n must be an integer/);
  assert.throws(() => chatRequest({ model: 3 as unknown as string, messages: [] }, false), /model must be a string/);
  assert.throws(() => embeddingsRequest({ model: "m", input: [1, "a"] as unknown as string[] }), /input must be/);
});

function errorInfo(reason: string, domain: string, metadata: Record<string, string>): Uint8Array {
  const writer = new BinaryWriter().tag(1, 2).string(reason).tag(2, 2).string(domain);
  for (const [key, value] of Object.entries(metadata)) {
    writer.tag(3, 2).fork().tag(1, 2).string(key).tag(2, 2).string(value).join();
  }
  return writer.finish();
}

function retryInfo(seconds: number, nanos: number): Uint8Array {
  return new BinaryWriter().tag(1, 2).fork().tag(1, 0).int64(seconds).tag(2, 0).int32(nanos).join().finish();
}

test("a ConnectError's ErrorInfo, RetryInfo and routing headers become the RoutingError's fields", () => {
  const headers = { "x-atoma-node": "fast", "x-atoma-attempts": "2", "x-request-id": "req-1" };
  const cause = new ConnectError("slow down", Code.ResourceExhausted, headers);
  cause.details.push(
    { type: "google.rpc.RetryInfo", value: retryInfo(1, 250_000_000) },
    { type: "google.rpc.ErrorInfo", value: errorInfo("RATE_LIMITED", "atoma.network", { limit: "rpm", scope: "key" }) },
  );
  const error = toRoutingError(cause);
  assert.equal(error.code, "RESOURCE_EXHAUSTED");
  assert.equal(error.reason, "RATE_LIMITED");
  assert.equal(error.domain, "atoma.network");
  assert.deepEqual(error.metadata, { limit: "rpm", scope: "key" });
  assert.equal(error.retryAfterMs, 1250);
  assert.deepEqual(error.routing, { nodeId: "fast", attempts: 2, requestId: "req-1" });
  assert.equal(error.rawMessage, "slow down");
  assert.equal(error.message, "RESOURCE_EXHAUSTED/RATE_LIMITED: slow down");
  assert.equal(error.cause, cause);
});

test("a garbled ErrorInfo leaves the code and message intact", () => {
  const cause = new ConnectError("boom", Code.Internal);
  cause.details.push({ type: "google.rpc.ErrorInfo", value: new Uint8Array([0x0a, 0xff]) });
  const error = toRoutingError(cause);
  assert.equal(error.code, "INTERNAL");
  assert.equal(error.reason, undefined);
  assert.deepEqual(error.metadata, {});
  assert.equal(error.message, "INTERNAL: boom");
});
