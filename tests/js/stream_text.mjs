// streamText with the Vercel AI SDK's default OpenAI provider (the Responses API) through the facade.
// Usage: ATOMA_BASE_URL=... ATOMA_API_KEY=... ATOMA_MODEL=... node stream_text.mjs
// Prints one JSON line: the streamed text, the final text, usage and finish reason.
import { createOpenAI } from "@ai-sdk/openai";
import { streamText } from "ai";

const openai = createOpenAI({ baseURL: process.env.ATOMA_BASE_URL, apiKey: process.env.ATOMA_API_KEY });
let streamError = null;
const result = streamText({
  model: openai(process.env.ATOMA_MODEL),
  prompt: "Tell me about routing.",
  maxOutputTokens: Number(process.env.ATOMA_MAX_TOKENS ?? 1000),
  onError: ({ error }) => {
    streamError = String(error?.message ?? error);
  },
});
let streamed = "";
for await (const delta of result.textStream) streamed += delta;
const usage = await result.usage;
const text = await result.text;
const finishReason = await result.finishReason;
console.log(JSON.stringify({ streamed, text, usage, finishReason, error: streamError }));
