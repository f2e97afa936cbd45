// A thinking model's reasoning through askstream's AI SDK door, read by the real
// `ai` package: every chunk passes its schema, and readUIMessageStream makes a
// reasoning part before the text part, as it does for a model's own reasoning.
//
// A running service in front of a thinking model is given by
// tests/service/test_model.py:
//   ASKSTREAM_URL    the service's base URL (the fake upstream's think mode)
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { parseJsonEventStream, readUIMessageStream, uiMessageChunkSchema } from "ai";

const BASE = process.env.ASKSTREAM_URL;
assert.ok(BASE, "ASKSTREAM_URL names the service under test");

async function ask(question) {
  const response = await fetch(`${BASE}/api/chat`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      id: randomUUID().replaceAll("-", "").slice(0, 16),
      messages: [{ id: randomUUID(), role: "user", parts: [{ type: "text", text: question }] }],
      trigger: "submit-message",
    }),
  });
  assert.equal(response.status, 200, await response.clone().text());
  return response;
}

test("reasoning chunks pass the package's schema, before the text", async () => {
  const response = await ask("Why think?");
  const chunks = [];
  const parsed = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema });
  for await (const result of parsed) {
    assert.ok(result.success, `a chunk the SDK refuses: ${result.error} (${result.rawValue})`);
    chunks.push(result.value);
  }
  const types = chunks.map((chunk) => chunk.type);
  const firstText = types.indexOf("text-start");
  assert.deepEqual(types.slice(0, 2), ["start", "reasoning-start"]);
  assert.equal(types[firstText - 1], "reasoning-end");
  assert.ok(types.slice(2, firstText - 1).every((type) => type === "reasoning-delta"));
  assert.deepEqual(types.slice(-2), ["text-end", "finish"]);
  const thought = chunks
    .filter((chunk) => chunk.type === "reasoning-delta")
    .map((chunk) => chunk.delta)
    .join("");
  assert.equal(thought, "Thinking about: Why think?");
});

test("readUIMessageStream makes a reasoning part before the text part", async () => {
  const response = await ask("Show your work");
  const stream = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema })
    .pipeThrough(
      new TransformStream({
        transform(result, controller) {
          assert.ok(result.success, String(result.error));
          controller.enqueue(result.value);
        },
      }),
    );
  let last;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) {
    last = message;
  }
  const kinds = last.parts.filter((part) => part.type !== "step-start").map((part) => part.type);
  assert.deepEqual(kinds, ["reasoning", "text"]);
  assert.equal(last.parts.find((part) => part.type === "reasoning").text, "Thinking about: Show your work");
  assert.equal(last.parts.find((part) => part.type === "reasoning").state, "done");
  assert.match(last.parts.find((part) => part.type === "text").text, /^Echo: Show your work/);
});
