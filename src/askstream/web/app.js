// The chat page: a list of chats, the open chat's messages, and an input whose
// answers stream in through askstream.js. No framework and no build step.
//
// Reloading mid-answer: when the page is left (a reload fires pagehide) or
// hidden while an answer streams, it keeps the answer's messageId, the last
// event id and the text so far in sessionStorage. After a reload it shows that
// text and resumes GET /api/streams/{messageId} after that id, so no piece
// arrives twice. An answer still streaming that this tab did not start
// (another tab, a new session) is followed from the start of its stream, which
// replaces the partial text the server stored.
//
// Who is asking: by default the service gives this browser an anonymous session
// in an HttpOnly cookie, which a same-origin fetch sends by itself. A service
// configured with tokens answers 401 with `WWW-Authenticate: Bearer` instead;
// then the page asks for a token once (see "the token" below) and sends
// `Authorization: Bearer <token>` on every call and stream.

import { ResponseError, stream } from "./askstream.js";
import { appendTo, plainText, renderInto } from "./markdown.js";

const ACTIVE_KEY = "askstream.active";
const STOP_GRACE_MS = 3000; // how long Stop waits for the server's cancelled `done`

const $ = (id) => document.getElementById(id);
const ui = {
  app: $("app"),
  sidebar: $("sidebar"),
  scrim: $("scrim"),
  menu: $("menu"),
  newChat: $("new-chat"),
  chatList: $("chat-list"),
  chatListEmpty: $("chat-list-empty"),
  moreChats: $("more-chats"),
  title: $("chat-title"),
  messages: $("messages"),
  welcome: $("welcome"),
  suggestions: document.querySelectorAll("#welcome .suggestion"),
  composer: $("composer"),
  question: $("question"),
  send: $("send"),
  stop: $("stop"),
  tokenOverlay: $("token-overlay"),
  tokenForm: $("token-form"),
  token: $("token"),
  tokenError: $("token-error"),
};

const state = {
  chatId: null, // the open chat; null for a new one
  chats: [], // newest first: the first page, then any the person asked for with "Show more"
  nextCursor: null, // where the next page of chats starts; null when there is none
  morePages: false, // "Show more" was used: a refresh keeps the older pages
  views: new Map(), // messageId -> MessageView, for the open chat
  active: null, // the answer this tab is streaming: see Answer
  loadToken: 0, // bumps on every chat switch, so a slow load cannot draw over a newer one
};

// ---------------------------------------------------------------- the token
//
// Kept in localStorage under "askstream.token": it survives reloads, restarts
// and new tabs, so a person is asked once (sessionStorage would ask in every
// tab). Any script running on this origin could read it there; what guards it
// is that no foreign script runs here: the Content-Security-Policy allows script
// from 'self' only (an injected <script> or onerror= never runs, proved by
// tests/web/test_csp.py), and markdown.js builds answers as DOM nodes, never
// parsing HTML. An HttpOnly cookie would be out of script's reach, but the
// service takes tokens as a header only. A refused token is forgotten at once.

const TOKEN_KEY = "askstream.token";
// RFC 6750 §2.1's b64token, loosened to any visible ASCII: what a header can carry.
const TOKEN_SHAPE = /^[\x21-\x7e]+$/;

const auth = {
  token: null, // the token calls carry, or null (anonymous)
  refused: false, // the last token was refused: say so when asking again
  waiting: null, // the open prompt: a promise every call that needs a token awaits
  answer: null, // resolves `waiting`
};

try {
  auth.token = localStorage.getItem(TOKEN_KEY);
} catch {
  // Storage disabled: the token lives as long as the page.
}

function withToken(headers) {
  const all = new Headers(headers);
  if (auth.token !== null) all.set("Authorization", `Bearer ${auth.token}`);
  return all;
}

function keepToken(token) {
  auth.token = token;
  try {
    if (token === null) localStorage.removeItem(TOKEN_KEY);
    else localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Storage disabled or full: kept in memory only.
  }
}

const wantsBearer = (headers) => /^\s*bearer\b/i.test(headers?.get("WWW-Authenticate") ?? "");

/** A 401 asking for a bearer token answered a call that carried `sent` (or none):
 * forget a refused token, or ask for one; then the caller tries again. */
async function unauthorized(sent) {
  if (sent !== null) {
    // Refused: forget it, unless another call has already replaced it. The
    // retry goes without a token, so a service that no longer wants one (a
    // token left over from a former configuration) just works; one that does
    // answers 401 again and the person is asked.
    if (auth.token === sent) {
      keepToken(null);
      auth.refused = true;
    }
    return;
  }
  if (auth.token !== null) return; // given while this call was on its way
  if (!auth.waiting) {
    auth.waiting = new Promise((resolve) => (auth.answer = resolve));
    ui.tokenError.textContent = auth.refused ? "That token was refused. Try again." : "";
    ui.tokenError.hidden = !auth.refused;
    ui.token.value = "";
    ui.tokenOverlay.hidden = false;
    ui.token.focus();
  }
  await auth.waiting;
}

ui.tokenForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!TOKEN_SHAPE.test(token)) {
    ui.tokenError.textContent = "A token is one word of visible characters.";
    ui.tokenError.hidden = false;
    return;
  }
  keepToken(token);
  auth.refused = false;
  ui.tokenOverlay.hidden = true;
  const answer = auth.answer;
  auth.waiting = auth.answer = null;
  answer();
});

// ---------------------------------------------------------------- the API

async function api(path, init = {}) {
  let response;
  for (;;) {
    const sent = auth.token;
    response = await fetch(path, { cache: "no-store", ...init, headers: withToken(init.headers) });
    if (response.status !== 401 || !wantsBearer(response.headers)) break;
    await unauthorized(sent);
  }
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch {
      // not JSON: the status speaks alone
    }
    throw new ResponseError(body?.message || `${response.status} ${response.statusText}`, {
      status: response.status,
      code: body?.code ?? response.status,
      body,
      headers: response.headers,
    });
  }
  return response.status === 204 ? null : response.json();
}

/** `stream(url, options)` with the token; a 401 before the first event asks for
 * one (nothing was started yet, so trying again is safe). */
async function* authorizedStream(url, options) {
  for (;;) {
    const sent = auth.token;
    let started = false;
    try {
      for await (const event of stream(url, { ...options, headers: withToken(options.headers) })) {
        started = true;
        yield event;
      }
      return;
    } catch (error) {
      if (started || error?.status !== 401 || !wantsBearer(error.headers)) throw error;
      await unauthorized(sent);
    }
  }
}

// GET /api/chats answers {chats, nextCursor} a page at a time (a bare list before issue 11).
const chatsOf = (body) => (Array.isArray(body) ? body : (body?.chats ?? []));
const cursorOf = (body) => (Array.isArray(body) ? null : (body?.nextCursor ?? null));
const idOf = (chat) => chat.chatId ?? chat.id;
const messageIdOf = (message) => message.messageId ?? message.id ?? null;

// ---------------------------------------------------------------- views

function formatTime(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

// Who wrote a message, shown above it and naming it for screen readers.
const SENDER = { user: "You", assistant: "Assistant" };
let senderIds = 0;

const STATUS_LABEL = {
  streaming: "",
  complete: "",
  cancelled: "Stopped",
  failed: "Failed",
};

/** One message on screen. Assistant text is Markdown, built as DOM nodes. */
class MessageView {
  constructor(role, { messageId = null, createdAt = null } = {}) {
    this.role = role;
    this.messageId = messageId;
    this.content = "";
    this.status = "complete";
    this.renders = 0;
    this.root = document.createElement("article");
    this.root.className = `message ${role}`;
    this.sender = document.createElement("div");
    this.sender.className = "sender";
    this.sender.id = `sender-${++senderIds}`;
    this.sender.textContent = SENDER[role] ?? role;
    this.root.setAttribute("aria-labelledby", this.sender.id);
    this.body = document.createElement("div");
    this.body.className = "content";
    this.foot = document.createElement("div");
    this.foot.className = "meta";
    this.error = document.createElement("div");
    this.error.className = "error";
    this.error.setAttribute("role", "alert");
    this.error.hidden = true;
    this.root.append(this.sender, this.body, this.error, this.foot);
    if (messageId) this.root.dataset.messageId = messageId;
    if (createdAt) this.root.title = formatTime(createdAt);
    this._frame = 0;
    this._pending = ""; // streamed text not drawn yet
    this._whole = false; // the next draw renders `content` whole
    this.thinking = null; // the folded "Thinking" block, made with the first thought
  }

  /** A thinking model's reasoning (`reasoning` events), folded above the answer:
   * there if wanted, out of the way of the answer it leads to. Plain text. */
  _thoughts() {
    if (!this.thinking) {
      this.thinking = document.createElement("details");
      this.thinking.className = "thinking";
      const summary = document.createElement("summary");
      summary.textContent = "Thinking";
      this.thoughtText = document.createElement("div");
      this.thoughtText.className = "reasoning";
      this.thinking.append(summary, this.thoughtText);
      this.body.before(this.thinking);
    }
    return this.thoughtText;
  }

  setReasoning(text) {
    if (!text && !this.thinking) return;
    this._thoughts().textContent = text;
    this.thinking.hidden = !text;
  }

  appendReasoning(delta) {
    // A text node a piece: no copy of the whole reasoning on every piece.
    this._thoughts().append(delta);
    this.thinking.hidden = false;
  }

  setMessageId(messageId) {
    this.messageId = messageId;
    this.root.dataset.messageId = messageId;
    state.views.set(messageId, this);
  }

  setContent(text, { now = false } = {}) {
    this.content = text;
    this._whole = true;
    if (now) this._draw();
    else this._schedule();
  }

  /** `delta` streamed in, making the answer `whole`. Only the delta goes to the
   * renderer: reading `whole` would copy the whole answer on every piece. */
  appendContent(delta, whole) {
    if (this._whole || this.content.length + delta.length !== whole.length) {
      this.setContent(whole); // not a continuation of what is shown (a replay from the start)
      return;
    }
    this.content = whole;
    this._pending += delta;
    this._schedule();
  }

  _schedule() {
    // Deltas can come faster than frames: draw at most once a frame.
    if (!this._frame) this._frame = requestAnimationFrame(() => this._draw());
  }

  _draw() {
    if (this._frame) cancelAnimationFrame(this._frame);
    this._frame = 0;
    const stick = nearBottom();
    if (this.role !== "assistant") this.body.textContent = this.content; // the user's own text, shown as typed
    else if (this._whole) renderInto(this.body, this.content);
    // markdown.js parses only the answer's last block again, within a budget.
    else if (this._pending) appendTo(this.body, this._pending);
    this._whole = false;
    this._pending = "";
    this.renders += 1;
    this.root.dataset.renders = String(this.renders);
    if (stick) scrollToBottom();
  }

  setStatus(status) {
    this.status = status;
    this.root.dataset.status = status;
    // Screen readers announce the answer once it is whole, not every piece.
    this.root.setAttribute("aria-busy", String(status === "streaming"));
    this.foot.textContent = STATUS_LABEL[status] ?? status;
  }

  showError(message) {
    this.error.hidden = false;
    this.error.textContent = message;
    if (nearBottom(200)) scrollToBottom();
  }
}

function nearBottom(slack = 80) {
  const m = ui.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < slack;
}

function scrollToBottom() {
  ui.messages.scrollTop = ui.messages.scrollHeight;
}

function addView(view) {
  ui.welcome.hidden = true;
  ui.messages.append(view.root);
  if (view.messageId) state.views.set(view.messageId, view);
  return view;
}

function clearMessages() {
  for (const view of state.views.values()) view.root.remove();
  ui.messages.querySelectorAll(".message").forEach((node) => node.remove());
  state.views.clear();
  ui.welcome.hidden = false;
}

function renderChatList() {
  ui.chatList.replaceChildren();
  ui.chatListEmpty.hidden = state.chats.length > 0;
  ui.moreChats.hidden = state.nextCursor === null;
  for (const chat of state.chats) {
    const id = idOf(chat);
    const item = document.createElement("li");
    item.className = "chat-item";
    item.dataset.chatId = id;
    if (id === state.chatId) item.setAttribute("aria-current", "page");
    const link = document.createElement("a");
    link.href = `#chat/${encodeURIComponent(id)}`;
    link.className = "chat-link";
    // A title is the first line of a question, as typed: shown as the text a
    // reader sees, without its Markdown or HTML, in full on hover.
    const title = chatTitle(chat);
    link.textContent = title;
    const time = formatTime(chat.updatedAt ?? chat.createdAt);
    link.title = time ? `${title}\n${time}` : title;
    link.addEventListener("click", closeSidebar); // the open chat's link changes no hash
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "icon-button delete";
    remove.setAttribute("aria-label", `Delete chat “${link.textContent}”`);
    remove.textContent = "×";
    remove.addEventListener("click", () => deleteChat(id, link.textContent));
    item.append(link, remove);
    ui.chatList.append(item);
  }
}

const chatTitle = (chat) => plainText(chat.title ?? "") || "Untitled chat";

function setTitle(title) {
  const text = plainText(title ?? "");
  ui.title.textContent = text || "New chat";
  ui.title.title = text;
  document.title = text ? `${text} · askstream` : "askstream";
}

function updateComposer() {
  const active = state.active;
  const streamingHere = active !== null && active.chatId === state.chatId && state.chatId !== null;
  const startingHere = active !== null && active.chatId === null && state.chatId === null;
  const busy = active !== null;
  const showStop = streamingHere || startingHere;
  // The button that goes away hands its focus to the one that takes its place,
  // so a keyboard user's next Enter or Space stops (or sends) as they expect.
  const focused = document.activeElement;
  ui.stop.hidden = !showStop;
  // aria-disabled, not disabled: a disabled button drops the focus (to <body>),
  // and then the Send that comes back could not take it over. stop() ignores
  // the presses that follow the first.
  ui.stop.setAttribute("aria-disabled", String(Boolean(active?.stopping)));
  ui.send.hidden = showStop;
  ui.send.disabled = busy;
  ui.send.title = busy ? "An answer is still being written" : "";
  if (showStop && focused === ui.send) ui.stop.focus();
  else if (!showStop && focused === ui.stop) ui.send.focus();
}

function closeSidebar() {
  ui.app.classList.remove("sidebar-open");
  ui.scrim.hidden = true;
  ui.menu.setAttribute("aria-expanded", "false");
}

// ---------------------------------------------------------------- chats

async function refreshChats() {
  let page;
  try {
    page = await api("/api/chats");
  } catch (error) {
    console.warn("askstream: could not list chats:", error);
    return;
  }
  const first = chatsOf(page);
  if (state.morePages) {
    // Keep the older pages the person opened; the first page replaces its own
    // chats (a chat answered since moved to the top), the cursor stays theirs.
    const fresh = new Set(first.map(idOf));
    state.chats = [...first, ...state.chats.filter((chat) => !fresh.has(idOf(chat)))];
  } else {
    state.chats = first;
    state.nextCursor = cursorOf(page);
  }
  renderChatList();
  const open = state.chats.find((chat) => idOf(chat) === state.chatId);
  if (open?.title) setTitle(open.title);
}

async function moreChats() {
  if (state.nextCursor === null) return;
  ui.moreChats.disabled = true;
  try {
    const page = await api(`/api/chats?cursor=${encodeURIComponent(state.nextCursor)}`);
    const known = new Set(state.chats.map(idOf));
    state.chats.push(...chatsOf(page).filter((chat) => !known.has(idOf(chat))));
    state.nextCursor = cursorOf(page);
    state.morePages = true;
  } catch (error) {
    console.warn("askstream: could not list more chats:", error);
  } finally {
    ui.moreChats.disabled = false;
  }
  renderChatList();
}

async function openChat(chatId) {
  const token = ++state.loadToken;
  state.chatId = chatId;
  closeSidebar();
  clearMessages();
  renderChatList();
  updateComposer();
  if (chatId === null) {
    setTitle("");
    return;
  }
  let chat;
  try {
    chat = await api(`/api/chats/${encodeURIComponent(chatId)}`);
  } catch (error) {
    if (token !== state.loadToken) return;
    if (error.status === 404) {
      forgetActive(chatId);
      history.replaceState(null, "", location.pathname);
      await openChat(null);
      return;
    }
    setTitle("");
    addView(new MessageView("assistant")).showError(error.message);
    return;
  }
  if (token !== state.loadToken) return;
  setTitle(chat.title ?? "");
  const saved = loadActive();
  for (const message of chat.messages ?? []) {
    const messageId = messageIdOf(message);
    const view = addView(new MessageView(message.role, { messageId, createdAt: message.createdAt }));
    const status = message.status ?? "complete";
    view.setStatus(status);
    if (state.active && messageId && state.active.messageId === messageId) {
      // This tab is streaming it right now: the live text is ahead of the stored one.
      state.active.attach(view);
      continue;
    }
    if (status === "streaming" && message.role === "assistant" && messageId) {
      // Text saved with the id of its last event resumes after it; anything else replays.
      const resume = saved?.messageId === messageId && saved.lastEventId ? saved : null;
      if (resume) view.setReasoning(resume.reasoning ?? "");
      view.setContent(resume ? resume.content : message.content ?? "", { now: true });
      if (!state.active) follow(chatId, messageId, view, resume);
      continue;
    }
    if (saved?.messageId === messageId) forgetActive();
    view.setReasoning(message.reasoning ?? "");
    view.setContent(message.content ?? "", { now: true });
    if (status === "failed" && message.error) view.showError(message.error);
  }
  scrollToBottom();
  updateComposer();
}

async function deleteChat(chatId, title) {
  if (!confirm(`Delete the chat “${title}”?`)) return;
  try {
    await api(`/api/chats/${encodeURIComponent(chatId)}`, { method: "DELETE" });
  } catch (error) {
    alert(`The chat could not be deleted: ${error.message}`);
    return;
  }
  forgetActive(chatId);
  state.chats = state.chats.filter((chat) => idOf(chat) !== chatId);
  if (state.chatId === chatId) {
    history.replaceState(null, "", location.pathname);
    await openChat(null);
  }
  await refreshChats();
}

// ---------------------------------------------------------------- answers

// The text so far is saved when the page is hidden or left, not as it grows:
// writing the whole answer on every piece cost its length each time, quadratic
// over an answer. pagehide comes with every reload, close and navigation;
// visibilitychange to "hidden" comes first where a browser may then discard the
// tab unannounced (a phone's background tab). Whatever is saved pairs the text
// with the id of its last event, so a resume after it repeats nothing even if
// the answer went on after the save; a tab that dies without either event
// saved nothing and replays the stream from its start after a reload.
function saveOnLeave() {
  const answer = state.active;
  if (answer && !answer.finished) saveActive(answer);
}

window.addEventListener("pagehide", saveOnLeave);
document.addEventListener("visibilitychange", () => {
  if (document.visibilityState === "hidden") saveOnLeave();
});

function saveActive(answer) {
  try {
    sessionStorage.setItem(
      ACTIVE_KEY,
      JSON.stringify({
        chatId: answer.chatId,
        messageId: answer.messageId,
        lastEventId: answer.lastEventId,
        content: answer.content,
        reasoning: answer.reasoning,
      }),
    );
  } catch {
    // Storage full or disabled: a reload then replays the stream from its start.
  }
}

function loadActive() {
  try {
    return JSON.parse(sessionStorage.getItem(ACTIVE_KEY) ?? "null");
  } catch {
    return null;
  }
}

function forgetActive(chatId = null) {
  const saved = loadActive();
  if (saved && (chatId === null || saved.chatId === chatId)) sessionStorage.removeItem(ACTIVE_KEY);
}

/** The answer this tab is streaming, from POST /api/ask or a resumed stream. */
class Answer {
  constructor({ chatId, messageId = null, view, content = "", reasoning = "", lastEventId = null }) {
    this.chatId = chatId;
    this.messageId = messageId;
    this.view = view;
    this.content = content;
    this.reasoning = reasoning;
    this.lastEventId = lastEventId;
    this.controller = new AbortController();
    this.stopping = false;
    this.cancelSent = false;
    this.finished = false;
  }

  attach(view) {
    this.view = view;
    view.setStatus("streaming");
    view.setReasoning(this.reasoning);
    view.setContent(this.content, { now: true });
  }

  visible() {
    return this.view.root.isConnected;
  }

  learn(payload) {
    if (payload.messageId && !this.messageId) {
      this.messageId = payload.messageId;
      if (this.visible()) this.view.setMessageId(payload.messageId);
      if (this.stopping) this.sendCancel();
    }
    if (payload.chatId && !this.chatId) {
      this.chatId = payload.chatId;
      if (state.chatId === null && this.visible()) {
        state.chatId = payload.chatId;
        history.replaceState(null, "", `#chat/${encodeURIComponent(payload.chatId)}`);
      }
      refreshChats();
    }
  }

  async run(events) {
    state.active = this;
    updateComposer();
    let outcome = null;
    try {
      for await (const event of events) {
        let payload = {};
        try {
          payload = JSON.parse(event.data);
        } catch {
          payload = {};
        }
        this.lastEventId = event.id;
        if (event.event === "error") {
          outcome = { status: "failed", error: payload.message || "The answer failed." };
          break;
        }
        this.learn(payload);
        if (event.event === "done") {
          const cancelled = payload.finishReason === "cancelled";
          if (typeof payload.answer === "string") this.content = payload.answer;
          outcome = { status: cancelled ? "cancelled" : "complete" };
          break;
        }
        if (event.event === "reasoning") {
          // The model's thoughts before its answer: never part of the answer.
          if (typeof payload.delta === "string") {
            this.reasoning += payload.delta;
            this.view.appendReasoning(payload.delta);
          }
          continue;
        }
        if (typeof payload.delta === "string") {
          this.content += payload.delta;
          this.view.appendContent(payload.delta, this.content);
        }
      }
      if (!outcome) outcome = { status: "failed", error: "The answer ended without finishing." };
    } catch (error) {
      if (this.controller.signal.aborted) {
        outcome = { status: "cancelled" };
      } else {
        outcome = { status: "failed", error: error.message || "LLM request failed" };
      }
    } finally {
      this.finished = true;
      forgetActive();
      if (state.active === this) state.active = null;
    }
    this.view.setContent(this.content, { now: true });
    this.view.setStatus(outcome.status);
    if (outcome.error) this.view.showError(outcome.error);
    updateComposer();
    refreshChats();
  }

  async sendCancel() {
    if (this.cancelSent || !this.messageId) return;
    this.cancelSent = true;
    let status = 0;
    try {
      await api(`/api/streams/${encodeURIComponent(this.messageId)}/cancel`, { method: "POST" });
      status = 204;
    } catch (error) {
      status = error.status ?? 0; // a ResponseError's status, or 0 for a network failure
    }
    if (status === 409) return; // it ended already: its last event is on its way
    if (status < 200 || status > 299) {
      this.controller.abort(); // the server could not cancel it: at least stop reading
      return;
    }
    // The server ends the stream with done (finishReason "cancelled"); if that
    // does not come soon, stop waiting for it.
    setTimeout(() => this.finished || this.controller.abort(), STOP_GRACE_MS);
  }

  stop() {
    if (this.stopping || this.finished) return;
    this.stopping = true;
    updateComposer();
    // Before the server named the message there is nothing to cancel yet; learn() sends it.
    if (this.messageId) this.sendCancel();
  }
}

async function ask(question) {
  ui.welcome.hidden = true;
  addView(new MessageView("user")).setContent(question, { now: true });
  const view = addView(new MessageView("assistant"));
  view.setStatus("streaming");
  const answer = new Answer({ chatId: state.chatId, view });
  const events = authorizedStream("/api/ask", {
    method: "POST",
    body: { chatId: state.chatId, question },
    signal: answer.controller.signal,
    onResponse(response) {
      // The answer's stream URL names its messageId before the first piece arrives.
      const location = response.headers.get("Content-Location") ?? "";
      const match = /\/api\/streams\/([^/?#]+)/.exec(location);
      if (match) answer.learn({ messageId: decodeURIComponent(match[1]) });
    },
  });
  scrollToBottom();
  await answer.run(events);
}

function follow(chatId, messageId, view, resume) {
  // Resuming with the text this tab saved: replay after its last event id. Else
  // replay the whole stream, which replaces the partial text the server stored.
  const answer = new Answer({
    chatId,
    messageId,
    view,
    content: resume ? resume.content : "",
    reasoning: resume ? (resume.reasoning ?? "") : "",
    lastEventId: resume?.lastEventId ?? null,
  });
  view.setStatus("streaming");
  let first = !resume;
  const url = `/api/streams/${encodeURIComponent(messageId)}`;
  const events = authorizedStream(url, {
    lastEventId: answer.lastEventId,
    signal: answer.controller.signal,
  });
  answer.run(
    (async function* () {
      for await (const event of events) {
        if (first) {
          first = false;
          answer.content = "";
          answer.reasoning = "";
          view.setReasoning("");
        }
        yield event;
      }
    })(),
  );
}

// ---------------------------------------------------------------- wiring

function chatIdFromHash() {
  const match = /^#chat\/(.+)$/.exec(location.hash);
  return match ? decodeURIComponent(match[1]) : null;
}

ui.composer.addEventListener("submit", (event) => {
  event.preventDefault();
  const question = ui.question.value.trim();
  if (!question || state.active) return;
  ui.question.value = "";
  autosize();
  ask(question);
});

ui.question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.composer.requestSubmit();
  }
});

function autosize() {
  ui.question.style.height = "auto";
  ui.question.style.height = `${Math.min(ui.question.scrollHeight, 200)}px`;
}
ui.question.addEventListener("input", autosize);

ui.stop.addEventListener("click", () => state.active?.stop());

for (const suggestion of ui.suggestions) {
  // An example question goes into the box, to send as it is or change first.
  suggestion.addEventListener("click", () => {
    ui.question.value = suggestion.textContent.trim();
    autosize();
    ui.question.focus();
  });
}

ui.newChat.addEventListener("click", () => {
  if (location.hash) history.pushState(null, "", location.pathname);
  openChat(null);
  ui.question.focus();
});

ui.menu.addEventListener("click", () => {
  const open = !ui.app.classList.contains("sidebar-open");
  ui.app.classList.toggle("sidebar-open", open);
  ui.scrim.hidden = !open;
  ui.menu.setAttribute("aria-expanded", String(open));
});
ui.scrim.addEventListener("click", closeSidebar);
ui.moreChats.addEventListener("click", moreChats);

window.addEventListener("hashchange", () => openChat(chatIdFromHash()));

async function start() {
  let chatId = chatIdFromHash();
  const saved = loadActive();
  if (chatId === null && saved?.chatId) {
    // A reload of a new chat whose first answer was streaming.
    chatId = saved.chatId;
    history.replaceState(null, "", `#chat/${encodeURIComponent(chatId)}`);
  }
  await Promise.all([refreshChats(), openChat(chatId)]);
  document.documentElement.dataset.ready = "true";
}

start();
