// stream() over real sockets: a tiny node:http server on a free loopback port
// plays the askstream service's part (POST answer naming its stream URL in
// Content-Location, GET replay after Last-Event-ID, JSON errors). The same
// handler listens on a second port too: another origin, for cross-origin resumes.
import assert from "node:assert/strict";
import { once } from "node:events";
import http from "node:http";
import { after, before, beforeEach, describe, test } from "node:test";

import { backoff, ResponseError, stream } from "../../src/askstream/web/askstream.js";

const ANSWER = ["Hel", "lo, ", "wor", "ld", "!", " Bye."];

function frame(index) {
  const data = JSON.stringify({ chatId: "c1", messageId: "m1", delta: ANSWER[index] });
  return `id: ${index + 1}\ndata: ${data}\n\n`;
}

function doneFrame() {
  const data = JSON.stringify({ chatId: "c1", messageId: "m1", answer: ANSWER.join("") });
  return `id: ${ANSWER.length + 1}\nevent: done\ndata: ${data}\n\n`;
}

const SSE_HEADERS = { "Content-Type": "text/event-stream", "Cache-Control": "no-store" };

let server;
let base;
let otherServer;
let otherBase; // the same routes on another port: another origin
let seen; // every request the server got: {method, url, lastEventId, contentType, body}
let closed; // resolves when a /slow response's connection closes
let dropsLeft;

function replayAfter(res, after) {
  res.writeHead(200, SSE_HEADERS);
  for (let i = after; i < ANSWER.length; i++) res.write(frame(i));
  res.end(doneFrame());
}

const routes = {
  // Three events, half of a fourth, then the connection dies.
  "POST /ask": (req, res) => {
    res.writeHead(200, { ...SSE_HEADERS, "Content-Location": "/streams/m1" });
    res.write(": a comment\n\n" + frame(0) + frame(1) + frame(2) + "id: 4\ndata: {\"par");
    setTimeout(() => res.socket.destroy(), 20);
  },
  // Names a stream URL on another origin, then drops.
  "POST /ask-elsewhere": (req, res) => {
    res.writeHead(200, { ...SSE_HEADERS, "Content-Location": `${otherBase}/streams/m1` });
    res.write(frame(0) + frame(1));
    setTimeout(() => res.socket.destroy(), 20);
  },
  "GET /streams/m1": (req, res) => {
    replayAfter(res, Number(req.headers["last-event-id"] ?? 0));
  },
  // A GET stream that ends cleanly (no done) twice before giving the rest.
  "GET /flaky": (req, res) => {
    const after = Number(req.headers["last-event-id"] ?? 0);
    if (dropsLeft-- > 0) {
      res.writeHead(200, SSE_HEADERS);
      res.end(frame(after));
      return;
    }
    replayAfter(res, after);
  },
  "GET /plain": (req, res) => {
    res.writeHead(200, SSE_HEADERS);
    res.end("data: one\n\ndata: two\n\n");
  },
  "POST /unprocessable": (req, res) => {
    res.writeHead(422, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ code: 422, message: "question must not be empty" }));
  },
  "POST /broken": (req, res) => {
    res.writeHead(502, { "Content-Type": "text/html" });
    res.end("<h1>Bad Gateway</h1>");
  },
  "GET /html": (req, res) => {
    res.writeHead(200, { "Content-Type": "text/html" });
    res.end("<p>hi</p>");
  },
  "POST /gone": (req, res) => {
    res.writeHead(200, { ...SSE_HEADERS, "Content-Location": "/streams/expired" });
    res.write(frame(0));
    setTimeout(() => res.socket.destroy(), 20);
  },
  "GET /streams/expired": (req, res) => {
    res.writeHead(410, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ code: 410, message: "stream expired" }));
  },
  "POST /nameless": (req, res) => {
    res.writeHead(200, SSE_HEADERS);
    res.write(frame(0));
    setTimeout(() => res.socket.destroy(), 20);
  },
  "GET /empty": (req, res) => {
    res.writeHead(200, SSE_HEADERS);
    res.end(": nothing here\n\n");
  },
  "POST /failing": (req, res) => {
    res.writeHead(200, SSE_HEADERS);
    res.write(frame(0));
    res.end(`event: error\ndata: ${JSON.stringify({ code: 502, message: "upstream failed" })}\n\n`);
  },
  "GET /slow": (req, res) => {
    res.writeHead(200, SSE_HEADERS);
    res.write(frame(0));
    res.on("close", () => closed.resolve());
  },
};

function handle(req, res) {
  let body = "";
  req.setEncoding("utf8");
  req.on("data", (piece) => (body += piece));
  req.on("end", () => {
    seen.push({
      port: req.socket.localPort,
      method: req.method,
      url: req.url,
      authorization: req.headers.authorization ?? null,
      cookie: req.headers.cookie ?? null,
      trace: req.headers["x-trace"] ?? null,
      lastEventId: req.headers["last-event-id"] ?? null,
      contentType: req.headers["content-type"] ?? null,
      accept: req.headers.accept ?? null,
      body,
    });
    const route = routes[`${req.method} ${req.url}`];
    if (route) return route(req, res);
    res.writeHead(404, { "Content-Type": "application/json" });
    res.end(JSON.stringify({ code: 404, message: "not found" }));
  });
}

async function listen() {
  const listening = http.createServer(handle);
  listening.listen(0, "127.0.0.1");
  await once(listening, "listening");
  return [listening, `http://127.0.0.1:${listening.address().port}`];
}

before(async () => {
  [server, base] = await listen();
  [otherServer, otherBase] = await listen();
});

after(() => {
  for (const listening of [server, otherServer]) {
    listening.closeAllConnections();
    listening.close();
  }
});

beforeEach(() => {
  seen = [];
  dropsLeft = 0;
  closed = Promise.withResolvers ? Promise.withResolvers() : deferred();
});

function deferred() {
  let resolve;
  const promise = new Promise((r) => (resolve = r));
  return { promise, resolve };
}

async function collect(iterable) {
  const events = [];
  for await (const event of iterable) events.push(event);
  return events;
}

describe("stream()", () => {
  test("a dropped POST resumes through Content-Location without repeating events", async () => {
    const responses = [];
    const events = await collect(
      stream(`${base}/ask`, {
        method: "POST",
        body: { chatId: null, question: "hi" },
        onResponse: (response) => responses.push(response.url),
      }),
    );
    assert.deepEqual(responses, [`${base}/ask`, `${base}/streams/m1`]);
    assert.deepEqual(
      events.map((e) => e.id),
      ["1", "2", "3", "4", "5", "6", "7"],
    );
    const deltas = events.filter((e) => e.event === "message").map((e) => JSON.parse(e.data).delta);
    assert.equal(deltas.join(""), ANSWER.join(""));
    assert.equal(events.at(-1).event, "done");
    assert.equal(JSON.parse(events.at(-1).data).answer, ANSWER.join(""));

    assert.equal(seen.length, 2);
    const [ask, resume] = seen;
    assert.deepEqual(
      [ask.method, ask.url, ask.contentType, ask.accept, ask.lastEventId],
      ["POST", "/ask", "application/json", "text/event-stream", null],
    );
    assert.deepEqual(JSON.parse(ask.body), { chatId: null, question: "hi" });
    assert.deepEqual(
      [resume.method, resume.url, resume.lastEventId, resume.contentType, resume.body],
      ["GET", "/streams/m1", "3", null, ""],
    );
  });

  test("a GET that ends before an `until` event is resumed at the same url", async () => {
    dropsLeft = 2;
    const events = await collect(stream(`${base}/flaky`, { reconnect: { delay: 1 } }));
    assert.deepEqual(
      events.map((e) => e.id),
      ["1", "2", "3", "4", "5", "6", "7"],
    );
    assert.deepEqual(
      seen.map((r) => r.lastEventId),
      [null, "1", "2"],
    );
  });

  test("lastEventId option resumes from that id", async () => {
    const events = await collect(stream(`${base}/streams/m1`, { lastEventId: "5" }));
    assert.deepEqual(
      events.map((e) => e.id),
      ["6", "7"],
    );
    assert.equal(seen[0].lastEventId, "5");
  });

  test("with `until: []` the end of the body ends the stream", async () => {
    const events = await collect(stream(`${base}/plain`, { until: [] }));
    assert.deepEqual(
      events.map((e) => e.data),
      ["one", "two"],
    );
    assert.equal(seen.length, 1);
  });

  test("an error event is yielded and ends the stream", async () => {
    const events = await collect(stream(`${base}/failing`, { method: "POST", body: "{}" }));
    assert.deepEqual(
      events.map((e) => e.event),
      ["message", "error"],
    );
    assert.equal(JSON.parse(events[1].data).message, "upstream failed");
    assert.equal(seen[0].contentType, "text/plain;charset=UTF-8"); // a string body is not JSON-typed
  });

  test("a non-OK answer throws the server's code and message", async () => {
    await assert.rejects(
      collect(stream(`${base}/unprocessable`, { method: "POST", body: { question: "" } })),
      (error) => {
        assert.ok(error instanceof ResponseError);
        assert.equal(error.status, 422);
        assert.equal(error.code, 422);
        assert.equal(error.message, "question must not be empty");
        return true;
      },
    );
  });

  test("a non-JSON error answer throws the guide's fallback message", async () => {
    await assert.rejects(
      collect(stream(`${base}/broken`, { method: "POST", body: {} })),
      (error) => {
        assert.equal(error.status, 502);
        assert.equal(error.code, 502);
        assert.equal(error.message, "LLM request failed");
        return true;
      },
    );
  });

  test("a 2xx answer that is not an event stream throws", async () => {
    await assert.rejects(collect(stream(`${base}/html`)), { code: "content_type", status: 200 });
  });

  test("a resume refused with 4xx throws that error", async () => {
    await assert.rejects(collect(stream(`${base}/gone`, { method: "POST", body: {} })), {
      status: 410,
      message: "stream expired",
    });
  });

  test("a dropped POST that named no stream url throws", async () => {
    await assert.rejects(collect(stream(`${base}/nameless`, { method: "POST", body: {} })), {
      code: "stream_dropped",
    });
  });

  test("reconnects that bring nothing give up after `reconnect.maxAttempts`", async () => {
    const reconnect = { maxAttempts: 2, delay: 1 };
    await assert.rejects(collect(stream(`${base}/empty`, { reconnect })), {
      code: "stream_dropped",
    });
    assert.equal(seen.length, 3);
  });

  test("`reconnect: null` never reconnects: a drop throws", async () => {
    dropsLeft = 1;
    await assert.rejects(collect(stream(`${base}/flaky`, { reconnect: null })), {
      code: "stream_dropped",
    });
    assert.equal(seen.length, 1);
  });

  test("the old option names throw instead of going to fetch unnoticed", async () => {
    for (const [old, now] of [
      ["terminal", /`until`/],
      ["retries", /maxAttempts/],
      ["retryDelay", /delay/],
    ]) {
      await assert.rejects(stream(`${base}/plain`, { [old]: 1 }).next(), {
        name: "TypeError",
        message: now,
      });
    }
    assert.equal(seen.length, 0); // thrown before any request
  });

  test("the backoff is the Python client's Reconnect.backoff, in ms", () => {
    const policy = { maxAttempts: 5, delay: 1000, maxDelay: 30000, multiplier: 2, jitter: 0 };
    // The doctest of askstream.http._reconnect.Reconnect, times 1000.
    assert.deepEqual(
      [1, 2, 3].map((n) => backoff(policy, n, null, 0)),
      [1000, 2000, 4000],
    );
    assert.equal(backoff(policy, 1, 250, 0), 250);
    assert.equal(backoff(policy, 10, null, 0), 30000); // capped at maxDelay
    assert.equal(backoff(policy, 10, 60000, 0), 60000); // never less than the server's retry
    assert.equal(backoff({ ...policy, jitter: 0.2 }, 1, null, 0.5), 1100);
  });

  test("headers and credentials are sent again on every resume", async () => {
    const inits = [];
    const events = await collect(
      stream(`${base}/ask`, {
        method: "POST",
        body: { chatId: null, question: "hi" },
        headers: { Authorization: "Bearer t0ken", "X-Trace": "abc" },
        credentials: "include",
        fetch: (url, init) => {
          inits.push(init);
          return fetch(url, init);
        },
      }),
    );
    assert.equal(events.at(-1).event, "done");
    assert.deepEqual(
      seen.map((r) => [r.method, r.url, r.authorization, r.trace, r.lastEventId]),
      [
        ["POST", "/ask", "Bearer t0ken", "abc", null],
        ["GET", "/streams/m1", "Bearer t0ken", "abc", "3"],
      ],
    );
    assert.deepEqual(
      inits.map((init) => init.credentials),
      ["include", "include"],
    );
  });

  test("a GET resumed at its own url keeps its credentials", async () => {
    dropsLeft = 1;
    const events = await collect(
      stream(`${base}/flaky`, { reconnect: { delay: 1 }, headers: { Authorization: "Bearer t0ken" } }),
    );
    assert.equal(events.at(-1).event, "done");
    assert.deepEqual(
      seen.map((r) => r.authorization),
      ["Bearer t0ken", "Bearer t0ken"],
    );
  });

  test("a resume on another origin sends no Authorization, no Cookie and no cookies", async () => {
    const inits = [];
    const events = await collect(
      stream(`${base}/ask-elsewhere`, {
        method: "POST",
        body: { question: "hi" },
        headers: { Authorization: "Bearer t0ken", Cookie: "session=s3cret", "X-Trace": "abc" },
        credentials: "include",
        fetch: (url, init) => {
          inits.push(init);
          return fetch(url, init);
        },
      }),
    );
    // The other origin replays the stream after the id the first one reached.
    assert.deepEqual(
      events.map((e) => e.id),
      ["1", "2", "3", "4", "5", "6", "7"],
    );
    const port = (url) => Number(new URL(url).port);
    assert.deepEqual(
      seen.map((r) => [r.port, r.url, r.authorization, r.cookie, r.trace, r.lastEventId]),
      [
        [port(base), "/ask-elsewhere", "Bearer t0ken", "session=s3cret", "abc", null],
        [port(otherBase), "/streams/m1", null, null, "abc", "2"],
      ],
    );
    assert.deepEqual(
      inits.map((init) => init.credentials),
      ["include", "omit"],
    );
  });

  test("abort rejects with AbortError and closes the connection", async () => {
    const controller = new AbortController();
    const events = [];
    await assert.rejects(
      (async () => {
        for await (const event of stream(`${base}/slow`, { signal: controller.signal })) {
          events.push(event);
          setTimeout(() => controller.abort(), 10);
        }
      })(),
      { name: "AbortError" },
    );
    assert.equal(events.length, 1);
    await closed.promise;
  });

  test("breaking out of the loop closes the connection", async () => {
    for await (const event of stream(`${base}/slow`)) {
      assert.equal(event.id, "1");
      break;
    }
    await closed.promise;
  });

  test("an already aborted signal never connects", async () => {
    const controller = new AbortController();
    controller.abort();
    await assert.rejects(collect(stream(`${base}/slow`, { signal: controller.signal })), {
      name: "AbortError",
    });
    assert.equal(seen.length, 0);
  });
});
