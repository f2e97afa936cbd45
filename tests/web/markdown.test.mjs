// The page's Markdown renderer: the tree parse() builds, which render() turns
// into DOM nodes one for one (tests/web/test_page.py checks the DOM side).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { inline, parse } from "../../src/askstream/web/markdown.js";

const blocks = (text) => parse(text).children;

describe("blocks", () => {
  test("paragraphs split at blank lines and keep line breaks", () => {
    assert.deepEqual(blocks("one\ntwo\n\nthree"), [
      { tag: "p", children: ["one", { tag: "br", children: [] }, "two"] },
      { tag: "p", children: ["three"] },
    ]);
  });

  test("a fenced code block keeps its text verbatim", () => {
    assert.deepEqual(blocks("```python\nif a < b:\n    print('**x**')\n```\nafter"), [
      {
        tag: "pre",
        lang: "python",
        children: [{ tag: "code", children: ["if a < b:\n    print('**x**')"] }],
      },
      { tag: "p", children: ["after"] },
    ]);
  });

  test("an unclosed fence is code to the end, as while it streams", () => {
    assert.deepEqual(blocks("~~~\nline 1\nline"), [
      { tag: "pre", lang: null, children: [{ tag: "code", children: ["line 1\nline"] }] },
    ]);
  });

  test("a tight bullet list", () => {
    assert.deepEqual(blocks("- a\n- *b*\n* c"), [
      {
        tag: "ul",
        children: [
          { tag: "li", children: ["a"] },
          { tag: "li", children: [{ tag: "em", children: ["b"] }] },
        ],
      },
      { tag: "ul", children: [{ tag: "li", children: ["c"] }] },
    ]);
  });

  test("an ordered list keeps its start and nests a list", () => {
    assert.deepEqual(blocks("3. three\n4. four\n   - sub"), [
      {
        tag: "ol",
        start: 3,
        children: [
          { tag: "li", children: ["three"] },
          { tag: "li", children: ["four", { tag: "ul", children: [{ tag: "li", children: ["sub"] }] }] },
        ],
      },
    ]);
  });

  test("a loose list keeps paragraphs", () => {
    assert.deepEqual(blocks("1. a\n\n2. b"), [
      {
        tag: "ol",
        children: [
          { tag: "li", children: [{ tag: "p", children: ["a"] }] },
          { tag: "li", children: [{ tag: "p", children: ["b"] }] },
        ],
      },
    ]);
  });

  test("headings, rules and quotes", () => {
    assert.deepEqual(blocks("## Title ##\n---\n> quoted *x*"), [
      { tag: "h2", children: ["Title"] },
      { tag: "hr", children: [] },
      { tag: "blockquote", children: [{ tag: "p", children: ["quoted ", { tag: "em", children: ["x"] }] }] },
    ]);
  });

  test("html in the text stays text", () => {
    const text = "<img src=x onerror=alert(1)> and <script>alert(2)</script>";
    assert.deepEqual(blocks(text), [{ tag: "p", children: [text] }]);
  });

  test("CRLF line ends are line ends", () => {
    assert.deepEqual(blocks("a\r\n\r\nb"), [
      { tag: "p", children: ["a"] },
      { tag: "p", children: ["b"] },
    ]);
  });
});

describe("inline", () => {
  test("emphasis, strong, strikethrough and code", () => {
    assert.deepEqual(inline("*a* **b** _c_ __d__ ~~e~~ `f`"), [
      { tag: "em", children: ["a"] },
      " ",
      { tag: "strong", children: ["b"] },
      " ",
      { tag: "em", children: ["c"] },
      " ",
      { tag: "strong", children: ["d"] },
      " ",
      { tag: "del", children: ["e"] },
      " ",
      { tag: "code", children: ["f"] },
    ]);
  });

  test("nesting", () => {
    assert.deepEqual(inline("**bold *and em***"), [
      { tag: "strong", children: ["bold ", { tag: "em", children: ["and em"] }] },
    ]);
  });

  test("code spans are literal", () => {
    assert.deepEqual(inline("`a *b* <i>` and `` x ` y ``"), [
      { tag: "code", children: ["a *b* <i>"] },
      " and ",
      { tag: "code", children: ["x ` y"] },
    ]);
  });

  test("unclosed delimiters are text", () => {
    assert.deepEqual(inline("**still streaming"), ["**still streaming"]);
    assert.deepEqual(inline("a `b"), ["a `b"]);
    assert.deepEqual(inline("2 * 3 * 4"), ["2 * 3 * 4"]);
  });

  test("underscores inside words are not emphasis", () => {
    assert.deepEqual(inline("snake_case_name and _em_"), [
      "snake_case_name and ",
      { tag: "em", children: ["em"] },
    ]);
  });

  test("backslash escapes", () => {
    assert.deepEqual(inline("\\*not em\\*"), ["*not em*"]);
  });

  test("links keep only web and mail targets", () => {
    assert.deepEqual(inline("[site](https://example.com) [x](javascript:alert(1)) [m](mailto:a@b.c)"), [
      { tag: "a", href: "https://example.com", children: ["site"] },
      " ",
      { tag: "span", children: ["x"] },
      ") ",
      { tag: "a", href: "mailto:a@b.c", children: ["m"] },
    ]);
  });
});
