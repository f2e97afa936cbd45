// askstream.js: a Server-Sent Events client for the browser (and Node 18+).
// No dependencies, no build step: `import { stream } from "/static/askstream.js"`.
//
//   for await (const event of stream("/api/ask", { method: "POST", body: { chatId: null, question } })) {
//     const payload = JSON.parse(event.data);   // event: { data, event, id, retry }
//   }
//
// Unlike the native EventSource it can POST a body and send headers, and unlike a
// hand-rolled `indexOf("\n\n")` loop it parses the stream exactly as a browser
// does: the Decoder below is the WHATWG HTML standard, §9.2.6 "Interpreting an
// event stream", checked against the same vectors as askstream's Python decoder
// (tests/sse/vectors.json, run by tests/web/decoder.test.mjs).

const DEFAULT_MAX_EVENT_SIZE = 16 * 1024 * 1024;
// A `retry` of any number of digits is kept, clamped to 2^31 - 1 ms (24.8 days),
// as the Python decoder does (docs/protocol.md, "retry"): the longest wait a
// browser timer can do (setTimeout fires at once past it) and exact everywhere.
export const MAX_RETRY = 2 ** 31 - 1;
const DIGITS = /^[0-9]+$/;
const LINE_END = /\r\n|\r|\n/g;

/** An SSE parser over text. No I/O: feed it the decoded body, get events back.
 *
 * Feed it what a `TextDecoder` in streaming mode (or a `TextDecoderStream`) gives,
 * in chunks of any size; it returns the events each chunk completed, as objects
 * `{ data, event, id, retry }`. `id` is the last event id in force when the
 * event was dispatched (`MessageEvent.lastEventId`, or `null` when there is
 * none); `retry` is the value of a valid `retry` field among the event's own
 * lines, else `null`. An event still unfinished when the stream ends is never
 * returned, as the spec says.
 *
 * The decoder takes text, not bytes: UTF-8 decoding, U+FFFD for invalid bytes
 * and dropping the one leading BOM are the TextDecoder's job (its defaults do
 * exactly what §9.2.5 asks), so a U+FEFF that reaches `feed` is data.
 *
 *   const decoder = new Decoder();
 *   decoder.feed("id: 1\ndata: a\n");   // []
 *   decoder.feed("\n");                 // [{ data: "a", event: "message", id: "1", retry: null }]
 *   decoder.lastEventId;                // "1": what a reconnect sends as Last-Event-ID
 */
export class Decoder {
  /** @param {{lastEventId?: string, maxEventSize?: number}} [options] */
  constructor({ lastEventId = "", maxEventSize = DEFAULT_MAX_EVENT_SIZE } = {}) {
    this._buffer = ""; // text after the last complete line
    this._pendingCR = false; // the last line ended in CR: an LF first in the next chunk is part of it
    // The spec's buffers for the event being gathered.
    this._data = [];
    this._dataSize = 0;
    this._eventType = "";
    this._eventRetry = null;
    this._idBuffer = lastEventId; // "last event ID buffer"
    this._lastEventId = lastEventId; // "last event ID string", set at dispatch
    this._retry = null;
    this._max = maxEventSize ?? Infinity;
  }

  /** The id a reconnect sends as `Last-Event-ID` ("" when there is none). */
  get lastEventId() {
    return this._lastEventId;
  }

  /** The reconnection time in ms from the last valid `retry` field, or null. */
  get retry() {
    return this._retry;
  }

  /** Parse the next piece of the body; return the events it completed.
   * @param {string} text
   * @returns {{data: string, event: string, id: string|null, retry: number|null}[]}
   */
  feed(text) {
    let buf = this._buffer + text;
    let start = 0;
    if (this._pendingCR && buf.length > 0) {
      this._pendingCR = false;
      if (buf.charCodeAt(0) === 10) start = 1; // the LF of a CRLF cut between chunks
    }
    const events = [];
    LINE_END.lastIndex = start;
    let match;
    while ((match = LINE_END.exec(buf)) !== null) {
      // A CR that ends the text may be the first half of a CRLF: the match is
      // still a line end, and an LF first in the next chunk is swallowed.
      this._line(buf.slice(start, match.index), events);
      start = LINE_END.lastIndex;
    }
    if (start > 0 && buf.charCodeAt(start - 1) === 13) this._pendingCR = true;
    buf = buf.slice(start);
    if (buf.length > this._max) {
      throw new EventTooLargeError(`a line grew past ${this._max} characters without a line end`);
    }
    this._buffer = buf;
    return events;
  }

  // §9.2.6: the steps for one line.
  _line(line, events) {
    if (line === "") {
      // Dispatch. The last event ID string is set first, even when nothing is dispatched.
      this._lastEventId = this._idBuffer;
      if (this._data.length > 0) {
        events.push({
          data: this._data.join("\n"),
          event: this._eventType || "message",
          id: this._idBuffer === "" ? null : this._idBuffer,
          retry: this._eventRetry,
        });
      }
      this._data = [];
      this._dataSize = 0;
      this._eventType = "";
      this._eventRetry = null;
      return;
    }
    const colon = line.indexOf(":");
    if (colon === 0) return; // a comment
    let name = line;
    let value = "";
    if (colon > 0) {
      name = line.slice(0, colon);
      value = line.slice(colon + (line.charCodeAt(colon + 1) === 32 ? 2 : 1));
    }
    switch (name) {
      case "data":
        this._data.push(value);
        this._dataSize += value.length + 1;
        if (this._dataSize > this._max) {
          this._data = [];
          throw new EventTooLargeError(`an event's data grew past ${this._max} characters`);
        }
        break;
      case "event":
        this._eventType = value;
        break;
      case "id":
        if (!value.includes("\0")) this._idBuffer = value;
        break;
      case "retry":
        if (DIGITS.test(value)) {
          // Leading zeros are decimal, not octal; over 10 significant digits is past the cap.
          const digits = value.replace(/^0+(?=.)/, "");
          this._eventRetry = this._retry =
            digits.length > 10 ? MAX_RETRY : Math.min(Number(digits), MAX_RETRY);
        }
        break;
      default: // any other field is ignored
    }
  }
}

/** A peer sent a line or an event larger than the decoder's `maxEventSize`. */
export class EventTooLargeError extends Error {
  constructor(message) {
    super(message);
    this.name = "EventTooLargeError";
  }
}

/** An HTTP error answer, carrying the server's `{code, message}`.
 *
 * `status` is the HTTP status, `code` the server's code (the status when the
 * body had none), `message` the server's message ("LLM request failed" when the
 * body had none), `body` the parsed JSON body if there was one, `headers` the
 * answer's `Headers` (e.g. `WWW-Authenticate` on a 401), or null.
 */
export class ResponseError extends Error {
  constructor(message, { status, code, body = null, headers = null } = {}) {
    super(message);
    this.name = "ResponseError";
    this.status = status;
    this.code = code;
    this.body = body;
    this.headers = headers;
  }
}

/** Read an error answer's `{code, message}` into a ResponseError. */
export async function responseError(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    // Not JSON (a proxy's HTML page, an empty body): the status speaks alone.
  }
  const message =
    body && typeof body.message === "string" && body.message ? body.message : "LLM request failed";
  const code = body && body.code != null ? body.code : response.status;
  const headers = response.headers;
  return new ResponseError(message, { status: response.status, code, body, headers });
}

// The reconnect policy's defaults: askstream.Reconnect()'s, in ms.
const DEFAULT_RECONNECT = Object.freeze({
  maxAttempts: 5,
  delay: 1000,
  maxDelay: 30000,
  multiplier: 2,
  jitter: 0.2,
});
// Options that were renamed to match the Python client; passing one is an error.
const RENAMED_OPTIONS = [
  ["terminal", "`until`"],
  ["retries", "`reconnect: { maxAttempts }`"],
  ["retryDelay", "`reconnect: { delay }` (ms)"],
];

/** Ms to wait before reconnect attempt `attempt` (1-based), as Reconnect.backoff in
 * Python: `retryMs` is the server's `retry` (or null), `rand` uniform in [0, 1).
 *
 *   backoff({ ...DEFAULT_RECONNECT, jitter: 0 }, 3, null, 0);  // 4000
 */
export function backoff(policy, attempt, retryMs, rand) {
  const base = retryMs ?? policy.delay;
  const grown = Math.min(policy.maxDelay, base * policy.multiplier ** Math.min(attempt - 1, 64));
  return Math.max(base, grown) * (1 + policy.jitter * rand);
}

function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(
      () => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      },
      Math.min(ms, MAX_RETRY), // a longer delay would wrap round and fire at once
    );
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function isPlainObject(value) {
  if (value === null || typeof value !== "object") return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null || Array.isArray(value);
}

/** Stream the Server-Sent Events of `url`, resuming after a dropped connection.
 *
 *   const controller = new AbortController();
 *   for await (const event of stream("/api/ask", {
 *     method: "POST",
 *     body: { chatId: null, question: "Hi" },   // an object is sent as JSON
 *     signal: controller.signal,                 // controller.abort() ends the loop
 *   })) {
 *     if (event.event === "done") ...;
 *   }
 *
 * Options (anything else goes to `fetch` unchanged):
 * - `method`, `headers`, `body`, `signal`: as for `fetch`. A plain object or
 *   array `body` is sent as JSON.
 * - `headers` and `credentials` (e.g. `{ Authorization: "Bearer ..." }`,
 *   `credentials: "include"`) are sent with the first request and with every
 *   resume, except that a resume on another origin than the first request's (a
 *   cross-origin `Content-Location`) sends no `Authorization` or `Cookie` header
 *   and no cookies (`credentials: "omit"`), as fetch does on a cross-origin
 *   redirect: a token is for the origin it was given to. Other headers travel.
 * - `lastEventId`: resume a stream after this id (sent as `Last-Event-ID`).
 * - `until`: event types after which the stream is complete and the loop
 *   ends (default `["done", "error"]`). A body that ends before one of them is a
 *   dropped connection and is resumed. With `until: []` the end of the body
 *   ends the loop and nothing is resumed. (Python: `until=`.)
 * - `reconnect`: the reconnect policy, the Python client's `Reconnect` with the
 *   same names in camelCase and times in ms: `{ maxAttempts: 5, delay: 1000,
 *   maxDelay: 30000, multiplier: 2, jitter: 0.2 }`; give only what you change.
 *   Attempt n (counted from the last event) waits `base * multiplier ** (n - 1)`
 *   ms, at most `maxDelay` but never less than `base`, plus up to `jitter` of
 *   it at random; `base` is the server's `retry` once it sent one, else `delay`.
 *   After `maxAttempts` failed attempts in a row the loop throws the last error.
 *   The first reconnect after a drop that followed events is immediate and not
 *   counted. `reconnect: null` never reconnects: a drop throws.
 * - `onResponse`: called with each successful `Response` (the first and every
 *   resume) before its events, e.g. to read `Content-Location` early.
 * - `fetch`: the fetch function to use (default `globalThis.fetch`).
 *
 * A non-2xx answer throws a `ResponseError` with the server's `code` and
 * `message`. A dropped stream is resumed by a GET of the URL the server named
 * in `Content-Location` (or, for a GET, the same URL) with `Last-Event-ID`, so
 * the caller sees every event once. Aborting the signal rejects with the
 * signal's reason (an `AbortError`) and closes the connection.
 */
export async function* stream(url, options = {}) {
  const {
    method = "GET",
    headers = {},
    body = undefined,
    signal = undefined,
    lastEventId = null,
    until = ["done", "error"],
    reconnect = {},
    onResponse = null,
    fetch: fetchImpl = globalThis.fetch,
    ...init
  } = options;
  for (const [old, now] of RENAMED_OPTIONS) {
    // Anything unknown goes to fetch, which would ignore it without a word.
    if (old in init) throw new TypeError(`stream(): the option \`${old}\` is now ${now}`);
  }
  const policy = reconnect === null ? null : { ...DEFAULT_RECONNECT, ...reconnect };
  // The origin the caller's credentials are for; a relative URL is the page's own.
  const origin = new URL(String(url), globalThis.location?.href).origin;
  const untilTypes = new Set(until ?? []);
  const baseHeaders = new Headers(headers);
  if (!baseHeaders.has("Accept")) baseHeaders.set("Accept", "text/event-stream");
  let requestBody = body;
  if (isPlainObject(body)) {
    requestBody = JSON.stringify(body);
    if (!baseHeaders.has("Content-Type")) baseHeaders.set("Content-Type", "application/json");
  }

  let decoder = new Decoder({ lastEventId: lastEventId ?? "" });
  let serverRetry = null; // the reconnection time the server asked for, if it did
  // Where a dropped stream is picked up: the POST's Content-Location, or the URL itself for a GET.
  let resumeUrl = method.toUpperCase() === "GET" ? String(url) : null;
  let request = { url: String(url), method, body: requestBody };
  let resuming = false;
  let failures = 0; // reconnects in a row that brought no event

  const giveUpOrWait = async (error) => {
    failures += 1;
    if (policy === null || failures > policy.maxAttempts) throw error;
    await sleep(backoff(policy, failures, serverRetry, Math.random()), signal);
  };

  for (;;) {
    const requestHeaders = new Headers(baseHeaders);
    if (request.body === undefined) requestHeaders.delete("Content-Type"); // a resume is a bare GET
    if (decoder.lastEventId !== "") requestHeaders.set("Last-Event-ID", decoder.lastEventId);
    const foreign = new URL(request.url, globalThis.location?.href).origin !== origin;
    if (foreign) {
      // Never hand the first origin's credentials to another one: the Fetch
      // standard's rule for a cross-origin redirect (§4.4 "HTTP-redirect fetch"
      // drops Authorization), httpx's too. A Cookie header can only be set outside
      // a browser; in one, "omit" keeps the other origin's own cookies home.
      requestHeaders.delete("Authorization");
      requestHeaders.delete("Cookie");
    }
    let response;
    try {
      response = await fetchImpl(request.url, {
        cache: "no-store",
        ...init,
        ...(foreign && { credentials: "omit" }),
        method: request.method,
        headers: requestHeaders,
        body: request.body,
        signal,
      });
    } catch (error) {
      // The first request's failure is the caller's to see; a resume tries again.
      if (signal?.aborted || !resuming) throw error;
      await giveUpOrWait(error);
      continue;
    }

    if (!response.ok) {
      const error = await responseError(response);
      // On a resume, a 5xx may be a server restarting behind a balancer; a 4xx
      // (404 unknown stream, 410 past retention) is final.
      if (!resuming || response.status < 500) throw error;
      await giveUpOrWait(error);
      continue;
    }
    if (response.status === 204) return; // "no content": the server says there is nothing more
    const type = response.headers.get("Content-Type") ?? "";
    if (!/^text\/event-stream\b/i.test(type)) {
      await response.body?.cancel();
      throw new ResponseError(`expected text/event-stream, got ${type || "no Content-Type"}`, {
        status: response.status,
        code: "content_type",
      });
    }
    const location = response.headers.get("Content-Location");
    if (location) resumeUrl = new URL(location, response.url || request.url).href;

    let progressed = false;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      onResponse?.(response);
      for (;;) {
        let chunk;
        try {
          chunk = await reader.read();
        } catch (error) {
          if (signal?.aborted) throw signal.reason ?? error;
          break; // the connection dropped: resume below
        }
        if (chunk.done) {
          // A complete stream ends only after an `until` event; without one, it dropped.
          if (untilTypes.size === 0) return;
          break;
        }
        const events = decoder.feed(chunk.value);
        serverRetry = decoder.retry ?? serverRetry;
        for (const event of events) {
          progressed = true;
          failures = 0;
          yield event;
          if (untilTypes.has(event.event)) return;
        }
      }
    } finally {
      // Closes the connection when the loop ends early (break, return, throw, abort).
      reader.cancel().catch(() => {});
    }

    const dropped = new ResponseError("the event stream dropped before it was complete", {
      status: response.status,
      code: "stream_dropped",
    });
    // A POST whose answer named no stream URL, or a caller who wants no reconnects.
    if (resumeUrl === null || policy === null) throw dropped;
    // The half-read event, if any, is discarded (the spec's end-of-stream rule); the
    // server replays everything after Last-Event-ID, so nothing is seen twice.
    decoder = new Decoder({ lastEventId: decoder.lastEventId });
    request = { url: resumeUrl, method: "GET", body: undefined };
    resuming = true;
    if (!progressed) await giveUpOrWait(dropped);
  }
}
