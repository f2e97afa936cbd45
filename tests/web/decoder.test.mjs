// The browser client's parser against the shared conformance vectors
// (tests/sse/vectors.json, also run by the Python decoder). Every case runs three
// ways, as STYLE.md rule 13 asks: the whole input at once, one byte at a time, and
// seeded random chunkings. Bytes go through TextDecoder in streaming mode, as
// they do through the TextDecoderStream of askstream.js's stream().
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, test } from "node:test";

import { Decoder, EventTooLargeError, MAX_RETRY } from "../../src/askstream/web/askstream.js";

const vectors = JSON.parse(readFileSync(new URL("../sse/vectors.json", import.meta.url), "utf8"));

function inputBytes(vector) {
  if (vector.input_hex !== undefined) return Buffer.from(vector.input_hex, "hex");
  return new TextEncoder().encode(vector.input);
}

// mulberry32: a small seeded generator, so a failing chunking can be replayed.
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function wholeChunks(bytes) {
  return [bytes];
}

function byteChunks(bytes) {
  return Array.from(bytes, (_, i) => bytes.subarray(i, i + 1));
}

function randomChunks(bytes, seed) {
  const next = random(seed);
  const chunks = [];
  let at = 0;
  while (at < bytes.length) {
    const size = 1 + Math.floor(next() * Math.min(8, bytes.length - at));
    chunks.push(bytes.subarray(at, at + size));
    at += size;
  }
  // An empty chunk now and then: a read that brought nothing must change nothing.
  if (chunks.length > 1) chunks.splice(Math.floor(next() * chunks.length), 0, bytes.subarray(0, 0));
  return chunks;
}

function run(chunks) {
  const text = new TextDecoder("utf-8"); // fatal: false, ignoreBOM: false, as TextDecoderStream
  const decoder = new Decoder();
  const events = [];
  for (const chunk of chunks) events.push(...decoder.feed(text.decode(chunk, { stream: true })));
  events.push(...decoder.feed(text.decode()));
  return { events, lastEventId: decoder.lastEventId, retry: decoder.retry };
}

function check(vector, chunks, how) {
  const got = run(chunks);
  const context = `${vector.name} (${how}): ${vector.rule}`;
  assert.deepEqual(got.events, vector.events, context);
  assert.equal(got.lastEventId, vector.last_event_id, context);
  assert.equal(got.retry, vector.retry, context);
}

test("the vector file has cases", () => {
  assert.ok(vectors.cases.length > 50, `only ${vectors.cases.length} cases`);
});

describe("vectors", () => {
  for (const vector of vectors.cases) {
    test(vector.name, () => {
      const bytes = inputBytes(vector);
      check(vector, wholeChunks(bytes), "whole");
      check(vector, byteChunks(bytes), "one byte at a time");
      for (let seed = 1; seed <= 25; seed++) {
        check(vector, randomChunks(bytes, seed), `random chunking, seed ${seed}`);
      }
    });
  }
});

describe("Decoder", () => {
  test("crlf split across chunks is one line end", () => {
    const decoder = new Decoder();
    assert.deepEqual(decoder.feed("data: a\r"), []);
    assert.deepEqual(decoder.feed("\ndata: b\r"), []);
    assert.deepEqual(decoder.feed("\n\r\n"), [
      { data: "a\nb", event: "message", id: null, retry: null },
    ]);
  });

  test("a cr then an empty chunk then an lf is still one line end", () => {
    const decoder = new Decoder();
    assert.deepEqual(decoder.feed("data: a\r"), []);
    assert.deepEqual(decoder.feed(""), []);
    assert.deepEqual(decoder.feed("\n"), []);
    assert.deepEqual(decoder.feed("\n"), [{ data: "a", event: "message", id: null, retry: null }]);
  });

  test("a resumed decoder starts from the given last event id", () => {
    const decoder = new Decoder({ lastEventId: "7" });
    assert.equal(decoder.lastEventId, "7");
    assert.deepEqual(decoder.feed("data: x\n\n"), [
      { data: "x", event: "message", id: "7", retry: null },
    ]);
  });

  test("a retry past the cap is clamped to MAX_RETRY, not ignored (as in Python)", () => {
    const decoder = new Decoder();
    decoder.feed("retry: 1000\n");
    assert.equal(decoder.retry, 1000);
    decoder.feed("retry: 36893488147419103232\n"); // 2^65: the case the old comment got wrong
    assert.equal(decoder.retry, MAX_RETRY);
    assert.equal(MAX_RETRY, 2 ** 31 - 1);
  });

  test("a line longer than maxEventSize throws", () => {
    const decoder = new Decoder({ maxEventSize: 10 });
    assert.throws(() => decoder.feed("data: 0123456789"), EventTooLargeError);
  });

  test("an event's data longer than maxEventSize throws", () => {
    const decoder = new Decoder({ maxEventSize: 10 });
    decoder.feed("data: 01234\n");
    assert.throws(() => decoder.feed("data: 56789\n"), EventTooLargeError);
  });
});
