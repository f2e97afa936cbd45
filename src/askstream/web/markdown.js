// Markdown for model answers: markdown-it parses, this module builds the DOM.
//
// Why markdown-it (vendored, vendor/markdown-it/README.txt): answers are written
// by a model, so anyone who can steer a prompt can send any text at the page.
// The hand-written renderer this replaces was quadratic on unclosed "[" or "_"
// (64 KiB froze the tab for seconds) and recursed once per nested ">" (10,000
// of them overflowed the stack). markdown-it is linear on those inputs, caps
// nesting (maxNesting), and brings GFM tables, links with parentheses and
// linkify; bench/bench_markdown.py has the numbers, in Chromium, old beside new.
//
// What this module adds:
// - Safety. markdown-it runs with raw HTML off, and we never use its HTML
//   output: tokens become a plain tree of {tag, children} and strings (tree),
//   which render() turns into elements and text nodes one for one. Model output
//   is never parsed as HTML, so "<script>" in an answer is the text "<script>".
//   Links are kept only for http:, https: and mailto: targets.
// - Streaming that touches only the tail (appendTo, then renderInto).
//   A top-level block followed by another can no longer change as text is
//   appended (reference definitions, the one construct that reaches back, are
//   off), so it is built once and kept; each render parses only the last
//   block and what came after it. A render costs the tail's length, so renders
//   are paced by a budget: the characters parsed while an answer streams stay
//   under STREAM_BUDGET times its length, and between renders new text is
//   appended as plain text to the open block, so every piece shows at once.
//   Streaming a whole answer so costs about what rendering it twice would
//   (the bound), where rendering all of it on every frame costs
//   frames times as much.

import markdownit from "./vendor/markdown-it/markdown-it.esm.min.mjs";

/** Deepest nesting of blocks (quotes, lists) and of inline spans that is built;
 * markdown-it drops what lies deeper. No answer worth reading nests 20 deep. */
export const MAX_NESTING = 20;

// The tree's depth: blocks up to MAX_NESTING, and as many inline spans inside.
const MAX_DEPTH = 2 * MAX_NESTING;

/** While streaming, characters parsed stay under this many times the text's length
 * (each block is parsed once when the next one starts: that is 1 of it). */
export const STREAM_BUDGET = 1.35;

/** What one render costs beyond its characters, counted in characters: some
 * 150 µs in Chromium (markdown-it's fixed cost per parse, the tail's DOM built
 * and dropped), what 700 characters of one large render take
 * (bench/bench_markdown.py). Counting it keeps the budget one of time. */
export const RENDER_OVERHEAD = 700;

// Characters of work allowed beyond the budget, so the first paragraphs of an
// answer (when the budget, a share of a short text, is still small) render as
// they come. A few thousand characters parse in about a millisecond.
const STREAM_SLACK = 2000;

const SAFE_URL = /^(?:https?:|mailto:)/i;

function markdownIt({ fastPaths = true } = {}) {
  const md = markdownit("default", {
    html: false, // "<b>" is text
    breaks: true, // a newline in a paragraph is a line break, as chat answers mean it
    linkify: true, // bare http(s):// URLs become links
    typographer: false,
    maxNesting: MAX_NESTING,
  });
  // A definition ("[x]: url") would change a link written before it, which a
  // block already built cannot follow; answers rarely use them.
  md.disable(["reference"]);
  // Only web and mail links; anything else ([x](javascript:...)) stays text.
  md.validateLink = (url) => SAFE_URL.test(url.trim());
  // Links with a scheme only: "README.md" or "node.js" are not addresses.
  md.linkify.set({ fuzzyLink: false, fuzzyEmail: false, fuzzyIP: false });
  if (fastPaths) {
    md.inline.ruler.before("link", "unclosed_bracket", unclosedBracket); // before "image" too
    md.inline.ruler.before("emphasis", "lone_delimiter", loneDelimiter);
  }
  return md;
}

// A "[" (or "![") with no "]" after it opens no link or image: say so at once.
// markdown-it would look for the label's end from every "[" (linear, thanks to
// its cache, but some microseconds each: 64 KiB of "[" took ~80 ms, of "!["
// ~180 ms). The same tree results; tests/web/markdown.test.mjs checks it
// against the exact path (parseExact).
function unclosedBracket(state, silent) {
  const image = state.src.charCodeAt(state.pos) === 0x21 /* ! */;
  const at = image ? state.pos + 1 : state.pos;
  if (state.src.charCodeAt(at) !== 0x5b /* [ */) return false;
  if (state.lastBracketSrc !== state.src) {
    state.lastBracket = state.src.lastIndexOf("]");
    state.lastBracketSrc = state.src;
  }
  if (state.lastBracket > at) return false;
  if (!silent) state.pending += image ? "![" : "[";
  state.pos = at + 1;
  return true;
}

// A lone "*" or "_" that nothing after it could close is text: say so at once.
// markdown-it would note it as a delimiter and pair none (linear too, but each
// costs a token and a delimiter: 64 KiB of "_a " took ~60 ms). A closing run is
// never preceded by whitespace (CommonMark 6.2, right-flanking), so the last
// marker not preceded by a space, tab or line end bounds where closers can be.
function loneDelimiter(state, silent) {
  const marker = state.src.charCodeAt(state.pos);
  if (marker !== 0x2a /* * */ && marker !== 0x5f /* _ */) return false;
  if (state.lastCloserSrc !== state.src) {
    state.lastCloser = lastCloser(state.src);
    state.lastCloserSrc = state.src;
  }
  if (state.lastCloser[marker === 0x2a ? 0 : 1] >= state.pos) return false;
  if (state.src.charCodeAt(state.pos + 1) === marker) return false; // a run: markdown-it's
  if (!silent) state.pending += state.src[state.pos];
  state.pos += 1;
  return true;
}

function lastCloser(src) {
  const last = [-1, -1];
  for (let i = src.length - 1; i > 0 && (last[0] < 0 || last[1] < 0); i--) {
    const c = src.charCodeAt(i);
    if (c !== 0x2a && c !== 0x5f) continue;
    const before = src.charCodeAt(i - 1);
    if (before === 0x20 || before === 0x09 || before === 0x0a) continue;
    const k = c === 0x2a ? 0 : 1;
    if (last[k] < 0) last[k] = i;
  }
  return last;
}

const md = markdownIt();
let exact = null;

/** parse() without our fast paths in front of markdown-it: for tests. */
export function parseExact(text) {
  exact ??= markdownIt({ fastPaths: false });
  return { tag: "root", children: blocks(text, exact).flatMap((block) => block.nodes) };
}

// ---------------------------------------------------------------- the tree

/** Parse Markdown text into a tree `{tag: "root", children}` of `{tag, children, ...}`
 * nodes and strings. */
export function parse(text) {
  const children = [];
  for (const block of blocks(text)) children.push(...block.nodes);
  return { tag: "root", children };
}

/** Parse inline Markdown (no blocks) into an array of strings and nodes. */
export function inline(text) {
  const root = { tag: "root", children: [] };
  build(md.parseInline(text, {}), [root]);
  return root.children;
}

/** The text a reader sees in `text` read as one line of Markdown, markup and
 * HTML tags left out: for chat titles. */
export function plainText(text) {
  const noTags = String(text).replace(/<\/?[A-Za-z][^<>]*(?:>|$)/g, " ");
  let out = "";
  const walk = (nodes) => {
    for (const node of nodes) {
      if (typeof node === "string") out += node;
      else if (node.tag === "br") out += " ";
      else walk(node.children);
    }
  };
  walk(inline(noTags));
  return out.replace(/\s+/g, " ").trim();
}

/** The top-level blocks of `text`: `[{line, nodes}]`, `line` being where each starts. */
function blocks(text, parser = md) {
  const tokens = parser.parse(text, {});
  const out = [];
  const root = { tag: "root", children: [] };
  const stack = [root];
  for (const token of tokens) {
    if (stack.length === 1 && token.nesting >= 0 && token.map) {
      root.children = [];
      out.push({ line: token.map[0], nodes: root.children });
    }
    step(token, stack);
  }
  return out;
}

function build(tokens, stack) {
  for (const token of tokens) step(token, stack);
}

const TAGS = { s: "del" };

// Tokens nest by `nesting` (+1 open, -1 close), so a stack builds the tree
// without recursion; the depth is markdown-it's level, capped by maxNesting.
function step(token, stack) {
  const parent = stack.at(-1);
  if (token.nesting === -1) {
    if (!token.hidden) stack.pop();
    return;
  }
  if (token.nesting === 1) {
    if (token.hidden) return; // a tight list's paragraph: its text goes in the item
    if (stack.length > MAX_DEPTH) {
      // markdown-it caps blocks and links, not emphasis ("*a " 10,000 times then
      // 10,000 "*" nests 10,000 deep): deeper spans add no element.
      stack.push(parent);
      return;
    }
    const node = { tag: TAGS[token.tag] ?? token.tag, children: [] };
    if (token.type === "link_open") {
      const href = token.attrGet("href") ?? "";
      if (SAFE_URL.test(href)) node.href = href;
      else node.tag = "span";
    } else if (token.type === "ordered_list_open") {
      const start = Number(token.attrGet("start") ?? 1);
      if (start !== 1) node.start = start;
    } else if (token.tag === "th" || token.tag === "td") {
      const align = /text-align:(\w+)/.exec(token.attrGet("style") ?? "");
      if (align) node.align = align[1];
    }
    append(parent, node);
    stack.push(node);
    return;
  }
  switch (token.type) {
    case "inline":
      build(token.children ?? [], stack);
      return;
    case "text":
      append(parent, token.content);
      return;
    case "softbreak":
    case "hardbreak":
      append(parent, { tag: "br", children: [] });
      return;
    case "code_inline":
      append(parent, { tag: "code", children: [token.content] });
      return;
    case "fence":
    case "code_block": {
      const lang = token.info.trim().split(/\s+/)[0] || null;
      const code = token.content.replace(/\n$/, "");
      append(parent, { tag: "pre", lang, children: [{ tag: "code", children: [code] }] });
      return;
    }
    case "hr":
      append(parent, { tag: "hr", children: [] });
      return;
    case "image": {
      // Shown as a link to the picture: loading it would tell a third party who reads.
      const src = token.attrGet("src") ?? "";
      const label = token.content || src;
      append(parent, SAFE_URL.test(src) ? { tag: "a", href: src, children: [label] } : label);
      return;
    }
    default:
      // html_block and html_inline cannot appear with html: false; anything
      // unforeseen is shown as the text it came from.
      if (token.content) append(parent, token.content);
  }
}

function append(parent, child) {
  if (child === "") return;
  const last = parent.children.at(-1);
  if (typeof child === "string" && typeof last === "string") parent.children[parent.children.length - 1] = last + child;
  else parent.children.push(child);
}

// ---------------------------------------------------------------- the DOM

/** Build DOM nodes for a parsed tree, with createElement and text nodes only. */
export function render(tree, document) {
  const fragment = document.createDocumentFragment();
  for (const child of tree.children) fragment.append(toDom(child, document));
  return fragment;
}

function toDom(node, document) {
  if (typeof node === "string") return document.createTextNode(node);
  if (node.tag === "pre") return codeBlock(node, document);
  const element = document.createElement(node.tag);
  if (node.href !== undefined) {
    element.href = node.href;
    element.target = "_blank";
    element.rel = "noopener noreferrer nofollow";
  }
  if (node.start !== undefined) element.start = node.start;
  if (node.align) element.className = `align-${node.align}`;
  for (const child of node.children) element.append(toDom(child, document));
  return element;
}

// A code block with a Copy button. The button's label is CSS (style.css), so
// the answer's text (selection, textContent) holds only the code.
function codeBlock(node, document) {
  const wrap = document.createElement("div");
  wrap.className = "code-block";
  const pre = document.createElement("pre");
  const code = document.createElement("code");
  code.textContent = node.children[0].children[0];
  pre.append(code);
  if (node.lang) pre.dataset.lang = node.lang;
  const copy = document.createElement("button");
  copy.type = "button";
  copy.className = "copy";
  copy.setAttribute("aria-label", "Copy code");
  copy.addEventListener("click", () => copyCode(code, copy));
  wrap.append(copy, pre);
  return wrap;
}

async function copyCode(code, button) {
  const text = code.textContent;
  let copied = false;
  try {
    await navigator.clipboard.writeText(text);
    copied = true;
  } catch {
    // No clipboard API (a page not on https or localhost): copy the selection.
    const range = code.ownerDocument.createRange();
    range.selectNodeContents(code);
    const selection = getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    copied = code.ownerDocument.execCommand("copy");
    selection.removeAllRanges();
  }
  button.dataset.state = copied ? "copied" : "failed";
  setTimeout(() => delete button.dataset.state, 1500);
}

// ---------------------------------------------------------------- streaming

const live = new WeakMap(); // element -> Live

class Live {
  constructor() {
    this.text = ""; // what the element shows, built or previewed (never read while streaming)
    this.length = 0; // text.length, kept apart: reading a string built by += copies it whole
    this.done = 0; // text before this offset is built and kept (whole blocks)
    this.tailText = ""; // text from `done` on: all a render parses
    this.rendered = 0; // the length at the last render
    this.tail = []; // the DOM nodes of the blocks after `done`
    this.open = null; // the text node previewed text is appended to
    this.inCode = false; // `open` is in a code block: line ends show as they are
    this.work = 0; // characters parsed since the element was (re)started
  }
}

/** Render Markdown `text` into `element`, exactly, now.
 *
 * Called again with the same text and more after it (an answer that streamed,
 * then completed), it rebuilds only from the last block on. Any other text
 * replaces what the element held. */
export function renderInto(element, text) {
  let state = live.get(element);
  if (!state || text.length < state.length || !text.startsWith(state.text)) {
    state = new Live();
    live.set(element, state);
    element.replaceChildren();
  }
  if (text.length > state.length) add(state, text.slice(state.length));
  if (state.rendered !== state.length || state.length === 0) renderTail(element, state);
}

/** Add `delta` to what `element` shows, as an answer streams.
 *
 * Only the last block is parsed again, and only when the budget allows: the
 * characters parsed while an answer streams stay under STREAM_BUDGET times its
 * length. Until then `delta` is shown as plain text at the end of the last
 * block, so every piece shows at once and its Markdown follows within a few
 * pieces. renderInto() with the whole text makes it exact. */
export function appendTo(element, delta) {
  let state = live.get(element);
  if (!state) {
    state = new Live();
    live.set(element, state);
    element.replaceChildren();
  }
  add(state, delta);
  const cost = state.length - state.done + RENDER_OVERHEAD;
  const budget = STREAM_BUDGET * state.length + STREAM_SLACK;
  if (state.rendered > 0 && state.work + cost > budget) preview(element, state, delta);
  else renderTail(element, state);
}

/** What the renderer did for `element` since its text was last replaced:
 * `work`, the characters it parsed (each render also counted RENDER_OVERHEAD),
 * and `length`, the text's. For tests and the benchmark. */
export function workOf(element) {
  const state = live.get(element);
  return state ? { work: state.work, length: state.length } : { work: 0, length: 0 };
}

function add(state, delta) {
  state.text += delta;
  state.tailText += delta;
  state.length += delta.length;
}

const CONTAINER = /^(?:BLOCKQUOTE|UL|OL|LI|TABLE|THEAD|TBODY|TR|DIV|PRE)$/;
const BLOCK = /^(?:P|H[1-6]|BLOCKQUOTE|UL|OL|LI|TABLE|THEAD|TBODY|TR|TD|TH|PRE|CODE)$/;

function preview(element, state, delta) {
  if (!state.open) {
    // Into the last block that holds text: a paragraph, heading, item, cell or code.
    let at = state.tail.at(-1);
    while (at && CONTAINER.test(at.tagName)) {
      const next = at.tagName === "DIV" ? at.querySelector("code") : at.lastElementChild;
      if (!next || !BLOCK.test(next.tagName)) break;
      at = next;
    }
    if (!at || at.tagName === "HR") {
      at = element.ownerDocument.createElement("p");
      element.append(at);
      state.tail.push(at);
    }
    state.open = element.ownerDocument.createTextNode("");
    state.inCode = at.tagName === "CODE";
    at.append(state.open);
  }
  if (state.inCode || !delta.includes("\n")) {
    state.open.appendData(delta);
    return;
  }
  // Outside code a line end would show as a space: keep lines (a list's next
  // item, a table's next row) apart until the next render.
  const lines = delta.split(/\r\n?|\n/);
  state.open.appendData(lines[0]);
  const document = element.ownerDocument;
  for (const line of lines.slice(1)) {
    const text = document.createTextNode(line);
    state.open.after(document.createElement("br"), text);
    state.open = text;
  }
}

function renderTail(element, state) {
  for (const node of state.tail) node.remove();
  const source = state.tailText;
  state.work += source.length + RENDER_OVERHEAD;
  const parsed = blocks(source);
  const document = element.ownerDocument;
  // Built apart and inserted at once: each insertion into the page has a cost
  // of its own, beyond the nodes'.
  const fragment = document.createDocumentFragment();
  // Every block but the last is whole: build it for good.
  for (let i = 0; i < parsed.length - 1; i++) {
    for (const node of parsed[i].nodes) fragment.append(toDom(node, document));
  }
  state.tail = [];
  const last = parsed.at(-1);
  if (last) {
    for (const node of last.nodes) {
      const built = toDom(node, document);
      fragment.append(built);
      state.tail.push(built);
    }
    const offset = lineOffset(source, last.line);
    state.done += offset;
    state.tailText = source.slice(offset);
  }
  element.append(fragment);
  state.rendered = state.length;
  state.open = null;
}

// Where line `line` starts in `text`, with markdown-it's line ends (\r\n, \r, \n).
function lineOffset(text, line) {
  const ends = /\r\n?|\n/g;
  let at = 0;
  for (let n = 0; n < line; n++) {
    const end = ends.exec(text);
    if (!end) return text.length;
    at = end.index + end[0].length;
  }
  return at;
}
