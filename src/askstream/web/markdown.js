// A small Markdown renderer for model answers that never turns text into HTML.
//
// parse(text) reads the subset chat models write (paragraphs, headings, lists,
// block quotes, rules, fenced code blocks, emphasis, strong, strikethrough,
// inline code, links) into a plain tree of {tag, children} / strings;
// render(tree, document) builds DOM nodes from it with createElement and text
// nodes only. Model output is never assigned to innerHTML, so "<script>" in an
// answer is the text "<script>". Link targets are kept only for http:, https:
// and mailto: URLs. No dependencies; runs in a browser or in Node (parse only).
//
// It is forgiving on purpose, because it renders answers while they stream: an
// unclosed code fence is code up to the end, an unclosed "**" is text.

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$/;
const RULE = /^ {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*$/;
const QUOTE = /^ {0,3}> ?(.*)$/;
const ITEM = /^( {0,3})([-*+]|\d{1,9}[.)])([ \t]+|$)(.*)$/;
const BLANK = /^[ \t]*$/;

/** Parse Markdown text into a tree of `{tag, children, ...}` nodes and strings. */
export function parse(text) {
  return { tag: "root", children: blocks(text.replace(/\r\n?/g, "\n").split("\n")) };
}

function startsBlock(line) {
  return FENCE.test(line) || HEADING.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line);
}

function blocks(lines) {
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (BLANK.test(line)) {
      i++;
      continue;
    }
    let m;
    if ((m = FENCE.exec(line))) {
      const fence = m[1];
      const indent = line.length - line.trimStart().length;
      const body = [];
      i++;
      while (i < lines.length) {
        const close = lines[i].trim();
        if (close.startsWith(fence[0].repeat(fence.length)) && /^([`~])\1*$/.test(close)) {
          i++;
          break;
        }
        body.push(stripIndent(lines[i], indent));
        i++;
      }
      out.push({ tag: "pre", lang: m[2] || null, children: [{ tag: "code", children: [body.join("\n")] }] });
      continue;
    }
    if (RULE.test(line)) {
      out.push({ tag: "hr", children: [] });
      i++;
      continue;
    }
    if ((m = HEADING.exec(line))) {
      out.push({ tag: `h${m[1].length}`, children: inline(m[2] ?? "") });
      i++;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && !BLANK.test(lines[i])) {
        const q = QUOTE.exec(lines[i]);
        body.push(q ? q[1] : lines[i]);
        i++;
      }
      out.push({ tag: "blockquote", children: blocks(body) });
      continue;
    }
    if ((m = ITEM.exec(line))) {
      i = list(lines, i, out);
      continue;
    }
    // A paragraph: lines up to a blank line or the start of another block.
    const para = [line.trim()];
    i++;
    while (i < lines.length && !BLANK.test(lines[i]) && !startsBlock(lines[i])) {
      para.push(lines[i].trim());
      i++;
    }
    out.push({ tag: "p", children: inline(para.join("\n")) });
  }
  return out;
}

function stripIndent(line, indent) {
  let n = 0;
  while (n < indent && line[n] === " ") n++;
  return line.slice(n);
}

function list(lines, i, out) {
  const first = ITEM.exec(lines[i]);
  const ordered = /\d/.test(first[2]);
  const node = { tag: ordered ? "ol" : "ul", children: [] };
  if (ordered) {
    const start = parseInt(first[2], 10);
    if (start !== 1) node.start = start;
  }
  let loose = false;
  while (i < lines.length) {
    const m = ITEM.exec(lines[i]);
    // Another bullet character or ordered delimiter starts another list.
    if (!m || m[2].at(-1) !== first[2].at(-1) || /\d/.test(m[2]) !== ordered) break;
    // Continuation lines are indented past the marker (or lazily unindented).
    const width = m[1].length + m[2].length + Math.max(1, Math.min(m[3].length, 4));
    const body = [m[4]];
    i++;
    let blankBefore = false;
    while (i < lines.length) {
      const line = lines[i];
      if (BLANK.test(line)) {
        blankBefore = true;
        body.push("");
        i++;
        continue;
      }
      const indent = line.length - line.trimStart().length;
      if (indent >= width) {
        if (blankBefore) loose = true;
        blankBefore = false;
        body.push(stripIndent(line, width));
        i++;
        continue;
      }
      if (!blankBefore && !startsBlock(line)) {
        body.push(line.trim()); // a lazy continuation of the item's paragraph
        i++;
        continue;
      }
      break;
    }
    while (body.length > 1 && body.at(-1) === "") body.pop();
    node.children.push({ tag: "li", children: blocks(body) });
    if (blankBefore && i < lines.length && ITEM.test(lines[i])) loose = true;
    if (blankBefore && !(i < lines.length && ITEM.test(lines[i]))) break;
  }
  if (!loose) {
    // A tight list shows its items' paragraphs without paragraph spacing.
    for (const item of node.children) {
      item.children = item.children.flatMap((child) => (child.tag === "p" ? child.children : [child]));
    }
  }
  out.push(node);
  return i;
}

const PUNCT = /[!-/:-@[-`{-~]/;

/** Parse inline Markdown into an array of strings and nodes. */
export function inline(text) {
  const out = [];
  let plain = "";
  const flush = () => {
    if (plain) out.push(plain);
    plain = "";
  };
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length && PUNCT.test(text[i + 1])) {
      plain += text[i + 1];
      i += 2;
      continue;
    }
    if (c === "\n") {
      flush();
      out.push({ tag: "br", children: [] });
      i++;
      continue;
    }
    if (c === "`") {
      let run = 1;
      while (text[i + run] === "`") run++;
      const ticks = "`".repeat(run);
      let close = text.indexOf(ticks, i + run);
      while (close >= 0 && text[close + run] === "`") {
        let skip = close;
        while (text[skip] === "`") skip++;
        close = text.indexOf(ticks, skip);
      }
      if (close >= 0) {
        let code = text.slice(i + run, close).replace(/\n/g, " ");
        if (/^ .*[^ ].* $/.test(code)) code = code.slice(1, -1);
        flush();
        out.push({ tag: "code", children: [code] });
        i = close + run;
        continue;
      }
      plain += ticks;
      i += run;
      continue;
    }
    if (c === "*" || c === "_" || c === "~") {
      const span = emphasis(text, i);
      if (span) {
        flush();
        out.push(span.node);
        i = span.end;
        continue;
      }
    }
    if (c === "[") {
      const link = linkAt(text, i);
      if (link) {
        flush();
        out.push(link.node);
        i = link.end;
        continue;
      }
    }
    plain += c;
    i++;
  }
  flush();
  return out;
}

function isWordChar(ch) {
  return ch !== undefined && /[\p{L}\p{N}]/u.test(ch);
}

function emphasis(text, i) {
  const c = text[i];
  const double = text[i + 1] === c;
  if (c === "~" && !double) return null;
  const delim = double ? c + c : c;
  const n = delim.length;
  const after = text[i + n];
  // An opener is followed by non-space; "_" does not open inside a word (snake_case).
  if (after === undefined || /\s/.test(after) || after === c) return null;
  if (c === "_" && isWordChar(text[i - 1])) return null;
  let search = i + n + 1;
  for (;;) {
    const close = text.indexOf(delim, search);
    if (close < 0) return null;
    const before = text[close - 1];
    const next = text[close + n];
    const valid =
      !/\s/.test(before) &&
      next !== c &&
      !(n === 1 && text[close - 1] === c) &&
      !(c === "_" && isWordChar(next));
    if (valid) {
      const tag = c === "~" ? "del" : double ? "strong" : "em";
      return { node: { tag, children: inline(text.slice(i + n, close)) }, end: close + n };
    }
    search = close + 1;
  }
}

const SAFE_URL = /^(https?:|mailto:)/i;

function linkAt(text, i) {
  let depth = 0;
  let j = i;
  for (; j < text.length; j++) {
    if (text[j] === "\\") {
      j++;
      continue;
    }
    if (text[j] === "[") depth++;
    else if (text[j] === "]" && --depth === 0) break;
  }
  if (j >= text.length || text[j + 1] !== "(") return null;
  const close = text.indexOf(")", j + 2);
  if (close < 0) return null;
  const target = text.slice(j + 2, close).trim().split(/\s+/)[0] ?? "";
  const label = inline(text.slice(i + 1, j));
  if (!SAFE_URL.test(target)) {
    // Not a web or mail address (javascript:, data:, relative): keep the label only.
    return { node: { tag: "span", children: label }, end: close + 1 };
  }
  return { node: { tag: "a", href: target, children: label }, end: close + 1 };
}

/** Build DOM nodes for a parsed tree, with createElement and text nodes only. */
export function render(tree, document) {
  const fragment = document.createDocumentFragment();
  for (const child of tree.children) fragment.append(build(child, document));
  return fragment;
}

function build(node, document) {
  if (typeof node === "string") return document.createTextNode(node);
  const element = document.createElement(node.tag);
  if (node.tag === "a") {
    element.href = node.href;
    element.target = "_blank";
    element.rel = "noopener noreferrer nofollow";
  }
  if (node.start !== undefined) element.start = node.start;
  if (node.lang) element.dataset.lang = node.lang;
  for (const child of node.children) element.append(build(child, document));
  return element;
}

/** Render Markdown text into `element`, replacing what it held. */
export function renderInto(element, text) {
  element.replaceChildren(render(parse(text), element.ownerDocument));
}
