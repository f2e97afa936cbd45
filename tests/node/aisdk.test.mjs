// askstream's AI SDK door (POST /api/chat, GET /api/chat/{id}/stream) read by the
// real `ai` package (the version tests/node/package.json pins): its own SSE
// parsing and chunk schema, readUIMessageStream, DefaultChatTransport and the
// Chat machinery useChat runs on (AbstractChat, here with a plain state); the
// answer's usage arrives as the UIMessage's metadata.
//
// A running service is given by tests/service/test_aisdk.py:
//   ASKSTREAM_URL    the service's base URL (demo model, slow enough to drop mid-answer)
//   ASKSTREAM_TOKEN  a bearer token of one user
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import {
  AbstractChat,
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

const BASE = process.env.ASKSTREAM_URL;
const TOKEN = process.env.ASKSTREAM_TOKEN;
assert.ok(BASE, "ASKSTREAM_URL names the service under test");
assert.ok(TOKEN, "ASKSTREAM_TOKEN is a user's bearer token");
const AUTH = { Authorization: `Bearer ${TOKEN}` };
const API = `${BASE}/api/chat`;

function newChatId() {
  return randomUUID().replaceAll("-", "").slice(0, 16);
}

function userMessage(text) {
  return { id: randomUUID(), role: "user", parts: [{ type: "text", text }] };
}

function textOf(message) {
  return message.parts
    .filter((part) => part.type === "text")
    .map((part) => part.text)
    .join("");
}

/** The chat as the service stored it (GET /api/chats/{chatId}). */
async function stored(chatId) {
  const response = await fetch(`${BASE}/api/chats/${chatId}`, { headers: AUTH });
  assert.equal(response.status, 200, await response.clone().text());
  return response.json();
}

/** The stored answer once it has ended (its row is final before the stream's end). */
async function storedAnswer(chatId, messageId) {
  const chat = await stored(chatId);
  const answer = chat.messages.find((m) => m.messageId === messageId);
  assert.ok(answer, `answer ${messageId} is in chat ${chatId}`);
  return answer;
}

/** Every UIMessage snapshot readUIMessageStream gives for `stream`, the last one returned. */
async function readAll(stream, onSnapshot = () => {}) {
  let last;
  let count = 0;
  for await (const message of readUIMessageStream({ stream, terminateOnError: true })) {
    last = message;
    count += 1;
    await onSnapshot(message, count);
  }
  return last;
}

function transport() {
  return new DefaultChatTransport({ api: API, headers: AUTH });
}

test("the package's own parser takes every chunk of a POST /api/chat response", async () => {
  const chatId = newChatId();
  const response = await fetch(API, {
    method: "POST",
    headers: { ...AUTH, "content-type": "application/json" },
    body: JSON.stringify({
      id: chatId,
      messages: [userMessage("What is a UI message stream?")],
      trigger: "submit-message",
    }),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get("x-vercel-ai-ui-message-stream"), "v1");
  assert.match(response.headers.get("content-type"), /^text\/event-stream/);

  const chunks = [];
  const parsed = parseJsonEventStream({ stream: response.body, schema: uiMessageChunkSchema });
  for await (const result of parsed) {
    assert.ok(result.success, `a chunk the SDK refuses: ${result.error} (${result.rawValue})`);
    chunks.push(result.value);
  }
  const types = chunks.map((chunk) => chunk.type);
  assert.deepEqual(types.slice(0, 2), ["start", "text-start"]);
  assert.deepEqual(types.slice(-2), ["text-end", "finish"]);
  assert.ok(types.slice(2, -2).every((type) => type === "text-delta"), types.join(" "));
  assert.equal(chunks.at(-1).finishReason, "stop");

  const answer = await storedAnswer(chatId, chunks[0].messageId);
  const text = chunks
    .filter((chunk) => chunk.type === "text-delta")
    .map((chunk) => chunk.delta)
    .join("");
  assert.equal(text, answer.content);
  assert.equal(answer.status, "complete");
});

test("DefaultChatTransport and readUIMessageStream read a whole answer; the chat goes on", async () => {
  const chatId = newChatId();
  const first = await readAll(
    await transport().sendMessages({
      chatId,
      messages: [userMessage("First question?")],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    }),
  );
  assert.equal(first.role, "assistant");
  assert.match(first.id, /^[0-9a-f]{32}$/, "the answer's id is the service's messageId");
  assert.equal(first.parts.at(-1).state, "done");
  const firstStored = await storedAnswer(chatId, first.id);
  assert.equal(textOf(first), firstStored.content);
  // The usage of our `done` reaches the message's metadata through the `finish`
  // chunk's messageMetadata, in the SDK's own names (LanguageModelUsage).
  assert.ok(firstStored.usage.completionTokens > 0, JSON.stringify(firstStored.usage));
  assert.deepEqual(first.metadata, {
    usage: {
      inputTokens: firstStored.usage.promptTokens,
      outputTokens: firstStored.usage.completionTokens,
      totalTokens: firstStored.usage.totalTokens,
    },
  });

  // The second turn of the same chat: the server's history is its context.
  const second = await readAll(
    await transport().sendMessages({
      chatId,
      messages: [
        userMessage("First question?"),
        first,
        userMessage("Second question?"),
      ],
      trigger: "submit-message",
      messageId: undefined,
      abortSignal: undefined,
    }),
  );
  assert.match(textOf(second), /Second question\?.*This chat has 2 earlier messages/);
  const chat = await stored(chatId);
  assert.deepEqual(
    chat.messages.map((m) => m.role),
    ["user", "assistant", "user", "assistant"],
  );
});

test("a dropped connection resumes with GET /api/chat/{id}/stream, from the start", async () => {
  const chatId = newChatId();
  const aborted = new AbortController();
  const stream = await transport().sendMessages({
    chatId,
    messages: [userMessage("Will you survive a drop?")],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: aborted.signal,
  });
  let before;
  await assert.rejects(
    readAll(stream, (message) => {
      before = structuredClone(message);
      if (textOf(message).length >= 10) {
        aborted.abort(); // the tab is closed or the network drops, mid-answer
      }
    }),
    (error) => error.name === "AbortError",
  );
  assert.ok(textOf(before).length >= 10);
  const answer = await storedAnswer(chatId, before.id);
  assert.equal(answer.status, "streaming", "the answer went on without its reader");

  const resumed = await transport().reconnectToStream({ chatId });
  assert.notEqual(resumed, null, "204: no answer to resume");
  const after = await readAll(resumed);
  assert.equal(after.id, before.id, "the same answer");
  assert.ok(textOf(after).startsWith(textOf(before)), "replayed from its start");
  const done = await storedAnswer(chatId, before.id);
  assert.equal(done.status, "complete");
  assert.equal(textOf(after), done.content);
  assert.equal(after.parts.at(-1).state, "done");

  // Over: nothing to resume (the transport turns the 204 into null).
  assert.equal(await transport().reconnectToStream({ chatId }), null);
});

test("a cancel (POST /api/streams/{messageId}/cancel) ends the stream with abort", async () => {
  const chatId = newChatId();
  const chunks = [];
  const stream = await transport().sendMessages({
    chatId,
    messages: [userMessage("Stop me halfway")],
    trigger: "submit-message",
    messageId: undefined,
    abortSignal: undefined,
  });
  let cancelled = false;
  const tee = stream.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        chunks.push(chunk);
        controller.enqueue(chunk);
      },
    }),
  );
  const last = await readAll(tee, async (message) => {
    if (!cancelled && textOf(message).length >= 10) {
      cancelled = true;
      const response = await fetch(`${BASE}/api/streams/${message.id}/cancel`, {
        method: "POST",
        headers: AUTH,
      });
      assert.equal(response.status, 204);
    }
  });
  assert.ok(cancelled);
  assert.deepEqual(chunks.at(-1), { type: "abort", reason: "cancelled" });
  const answer = await storedAnswer(chatId, last.id);
  assert.equal(answer.status, "cancelled");
  assert.equal(textOf(last), answer.content);
});

/** The state useChat keeps in React, kept in plain fields: AbstractChat runs headless. */
class PlainState {
  status = "ready";
  error = undefined;
  messages;

  constructor(messages = []) {
    this.messages = messages;
  }

  pushMessage(message) {
    this.messages = [...this.messages, message];
  }

  popMessage() {
    this.messages = this.messages.slice(0, -1);
  }

  replaceMessage(index, message) {
    this.messages = this.messages.with(index, message);
  }

  snapshot(value) {
    return structuredClone(value);
  }
}

class Chat extends AbstractChat {
  constructor({ messages, ...init }) {
    super({ ...init, state: new PlainState(messages) });
  }
}

test("the Chat useChat runs on asks, and a new page resumes its answer (resume: true)", async () => {
  const chatId = newChatId();
  const errors = [];
  const tab = new Chat({ id: chatId, transport: transport(), onError: (e) => errors.push(e) });
  await tab.sendMessage({ text: "Hello from a headless chat" });
  assert.deepEqual(errors, []);
  assert.equal(tab.status, "ready");
  assert.deepEqual(
    tab.messages.map((m) => m.role),
    ["user", "assistant"],
  );
  const reply = tab.messages[1];
  assert.equal(textOf(reply), (await storedAnswer(chatId, reply.id)).content);

  // Another question; the tab is closed mid-answer (stop() aborts the request).
  const asking = tab.sendMessage({ text: "And again, but I will leave" });
  while (tab.messages.length < 4 || textOf(tab.messages.at(-1)).length < 10) {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const leftAt = tab.messages.at(-1);
  await tab.stop();
  await asking;

  // A new page of the same chat: useChat({resume: true}) calls resumeStream() on mount.
  const page = new Chat({
    id: chatId,
    transport: transport(),
    messages: tab.messages.slice(0, -1),
    onError: (e) => errors.push(e),
  });
  await page.resumeStream();
  assert.deepEqual(errors, []);
  const resumed = page.messages.at(-1);
  assert.equal(resumed.role, "assistant");
  assert.equal(resumed.id, leftAt.id);
  const answer = await storedAnswer(chatId, resumed.id);
  assert.equal(answer.status, "complete");
  assert.equal(textOf(resumed), answer.content);
  assert.equal(page.messages.length, 4);
});
