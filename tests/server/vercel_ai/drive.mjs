// Drives the Vercel AI SDK, unmodified: node drive.mjs URL MODEL responses|messages text|tool|whole|turns
// `responses` is @ai-sdk/openai's Responses API provider, `messages` is @ai-sdk/anthropic. The key comes from
// CHUNKWISE_API_KEY. Cases: `text` and `tool` stream one answer (streamText); `whole` asks for one answer
// unstreamed (generateText); `turns` streams a second turn after the first, its history made the SDK's way
// (the first answer's `response.messages`). Prints one JSON line with what the SDK made of the last answer:
// its stream parts' types, the text, the tool calls, the finish reason and the usage.
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAI } from "@ai-sdk/openai";
import { generateText, jsonSchema, streamText, tool } from "ai";

// The SDK would print its warnings (unsupported settings) to the console; they are reported in the JSON instead.
globalThis.AI_SDK_LOG_WARNINGS = false;

function languageModel(url, model, dialect) {
  const apiKey = process.env.CHUNKWISE_API_KEY ?? "not-checked";
  if (dialect === "responses") {
    return createOpenAI({ baseURL: `${url}/v1`, apiKey }).responses(model);
  }
  if (dialect === "messages") {
    return createAnthropic({ baseURL: `${url}/v1`, apiKey })(model);
  }
  throw new Error(`unknown dialect ${dialect}`);
}

const getWeather = tool({
  description: "The current weather in a city.",
  inputSchema: jsonSchema({
    type: "object",
    properties: { city: { type: "string", enum: ["Paris", "Tokyo", "Lima"] } },
    required: ["city"],
    additionalProperties: false,
  }),
});

function request(caseName) {
  if (caseName === "text" || caseName === "whole" || caseName === "turns") {
    return { prompt: "Say hello in five words.", maxOutputTokens: 16 };
  }
  if (caseName === "tool") {
    // A 135M model rarely chooses a tool by itself, so the call is forced; no `execute`, so the stream ends
    // with the call for the caller to run.
    return {
      prompt: "What is the weather in Paris?",
      maxOutputTokens: 64,
      tools: { get_weather: getWeather },
      toolChoice: { type: "tool", toolName: "get_weather" },
    };
  }
  throw new Error(`unknown case ${caseName}`);
}

async function streamed(options) {
  const errors = [];
  const result = streamText({ ...options, onError: ({ error }) => errors.push(String(error?.stack ?? error)) });
  const parts = [];
  let streamedText = "";
  for await (const part of result.fullStream) {
    parts.push(part.type);
    if (part.type === "text-delta") {
      streamedText += part.text;
    } else if (part.type === "error") {
      errors.push(String(part.error?.stack ?? part.error));
    }
  }
  if (errors.length > 0) {
    throw new Error(`the stream failed:\n${errors.join("\n")}`);
  }
  const response = await result.response;
  return {
    parts,
    streamedText,
    text: await result.text,
    toolCalls: await result.toolCalls,
    finishReason: await result.finishReason,
    usage: await result.usage,
    warnings: (await result.warnings) ?? [],
    response,
  };
}

async function whole(options) {
  const result = await generateText(options);
  return {
    text: result.text,
    toolCalls: result.toolCalls,
    finishReason: result.finishReason,
    usage: result.usage,
    warnings: result.warnings ?? [],
    response: result.response,
  };
}

async function main() {
  const [url, model, dialect, caseName] = process.argv.slice(2);
  const { prompt, ...options } = {
    model: languageModel(url, model, dialect),
    temperature: 0,
    maxRetries: 0,
    ...request(caseName),
  };
  let messages = [{ role: "user", content: prompt }];
  const turns = [];
  if (caseName === "turns") {
    const first = await streamed({ ...options, messages });
    turns.push(first.text);
    messages = [...messages, ...first.response.messages, { role: "user", content: "Say it again, shorter." }];
  }
  const answer = await (caseName === "whole" ? whole : streamed)({ ...options, messages });
  const { response, toolCalls, ...rest } = answer;
  const report = {
    ...rest,
    turns: [...turns, answer.text],
    toolCalls: toolCalls.map(({ toolCallId, toolName, input }) => ({ toolCallId, toolName, input })),
    responseId: response.id,
  };
  console.log(JSON.stringify(report));
}

main().catch((error) => {
  console.error(String(error?.stack ?? error));
  process.exit(1);
});
