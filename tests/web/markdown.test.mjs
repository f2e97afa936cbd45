// The page's Markdown renderer: the tree parse() builds from markdown-it's
// tokens, which render() turns into DOM nodes one for one (tests/web/test_page.py
// and tests/web/test_markdown.py check the DOM side and streaming in Chromium).
import assert from "node:assert/strict";
import { describe, test } from "node:test";

import { MAX_NESTING, inline, parse, parseExact, plainText } from "../../src/askstream/web/markdown.js";

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
    // A javascript: link is not a link at all: its Markdown stays as text.
    assert.deepEqual(inline("[site](https://example.com) [x](javascript:alert(1)) [m](mailto:a@b.c)"), [
      { tag: "a", href: "https://example.com", children: ["site"] },
      " [x](javascript:alert(1)) ",
      { tag: "a", href: "mailto:a@b.c", children: ["m"] },
    ]);
  });

  test("no link to data:, vbscript: or relative targets, whatever the case or spaces", () => {
    for (const target of ["data:text/html,<script>alert(1)</script>", "JaVaScRiPt:alert(1)", " javascript:x", "vbscript:x", "/api/chats", "//evil.example"]) {
      const nodes = inline(`[x](${target}) ![y](${target})`);
      assert.equal(JSON.stringify(nodes).includes('"tag":"a"'), false, target);
    }
  });

  test("links with parentheses in them", () => {
    assert.deepEqual(inline("[Foo](https://en.wikipedia.org/wiki/Foo_(bar)) after"), [
      { tag: "a", href: "https://en.wikipedia.org/wiki/Foo_(bar)", children: ["Foo"] },
      " after",
    ]);
  });

  test("bare URLs are links, with parentheses and without the sentence's full stop", () => {
    assert.deepEqual(inline("See https://en.wikipedia.org/wiki/Foo_(bar). Or http://example.com/a?b=1"), [
      "See ",
      { tag: "a", href: "https://en.wikipedia.org/wiki/Foo_(bar)", children: ["https://en.wikipedia.org/wiki/Foo_(bar)"] },
      ". Or ",
      { tag: "a", href: "http://example.com/a?b=1", children: ["http://example.com/a?b=1"] },
    ]);
  });

  test("file names are not links", () => {
    assert.deepEqual(inline("Edit README.md and node.js"), ["Edit README.md and node.js"]);
  });

  test("an image is a link to it, never loaded", () => {
    assert.deepEqual(inline("![a cat](https://example.com/cat.png)"), [
      { tag: "a", href: "https://example.com/cat.png", children: ["a cat"] },
    ]);
  });

  test("html stays text", () => {
    assert.deepEqual(inline("<img src=x onerror=alert(1)> <b>b</b> <!-- c -->"), [
      "<img src=x onerror=alert(1)> <b>b</b> <!-- c -->",
    ]);
  });
});

describe("tables", () => {
  test("a GFM table with alignment", () => {
    assert.deepEqual(blocks("| a | *b* |\n|:--|--:|\n| 1 | `2` |"), [
      {
        tag: "table",
        children: [
          { tag: "thead", children: [{ tag: "tr", children: [
            { tag: "th", align: "left", children: ["a"] },
            { tag: "th", align: "right", children: [{ tag: "em", children: ["b"] }] },
          ] }] },
          { tag: "tbody", children: [{ tag: "tr", children: [
            { tag: "td", align: "left", children: ["1"] },
            { tag: "td", align: "right", children: [{ tag: "code", children: ["2"] }] },
          ] }] },
        ],
      },
    ]);
  });

  test("html in a cell stays text", () => {
    const [table] = blocks("| a |\n|---|\n| <script>alert(1)</script> |");
    assert.deepEqual(table.children[1].children[0].children[0].children, ["<script>alert(1)</script>"]);
  });
});

// The hostile inputs (issue 16): they end, keep the nesting capped and
// the output small. How long they take is bench/bench_markdown.py's business.
const K64 = 64 * 1024;

function depth(node) {
  // Iterative, so a deep tree cannot overflow this test's stack either.
  let deepest = 0;
  const todo = [[node, 0]];
  while (todo.length) {
    const [n, d] = todo.pop();
    deepest = Math.max(deepest, d);
    if (typeof n !== "string") for (const child of n.children) todo.push([child, d + 1]);
  }
  return deepest;
}

describe("hostile input", () => {
  for (const count of [3000, 10000]) {
    test(`${count} nested quotes nest at most MAX_NESTING deep`, () => {
      const tree = parse("> ".repeat(count) + "deep");
      assert.ok(depth(tree) <= MAX_NESTING + 1, depth(tree));
      assert.equal(tree.children[0].tag, "blockquote");
    });
  }

  test("nested lists are capped too", () => {
    const text = Array.from({ length: 500 }, (_, i) => `${"  ".repeat(i)}- item ${i}`).join("\n");
    assert.ok(depth(parse(text)) <= MAX_NESTING + 1);
  });

  test("nested emphasis and links are capped", () => {
    assert.ok(depth(parse("*a ".repeat(3000) + "b" + "*".repeat(3000))) <= 2 * MAX_NESTING + 1);
    assert.ok(depth(parse("[".repeat(3000) + "x" + "](https://e.com)".repeat(3000))) <= 2 * MAX_NESTING + 1);
  });

  for (const [name, text] of [
    ["[", "[".repeat(K64)],
    ["_a ", "_a ".repeat(K64 / 3)],
    ["*a ", "*a ".repeat(K64 / 3)],
    ["![", "![".repeat(K64 / 2)],
    ["`", "`a``".repeat(K64 / 4)],
    ["<", "<".repeat(K64)],
  ]) {
    test(`64 KiB of "${name}" is one paragraph of the same text`, () => {
      const blocksOut = blocks(text);
      assert.equal(blocksOut.length, 1);
      assert.equal(blocksOut[0].tag, "p");
      const flat = (n) => (typeof n === "string" ? n : n.children.map(flat).join(""));
      // Nothing lost and nothing made up: the text shows as written, less
      // what was markup (emphasis, code span delimiters).
      assert.ok(flat(blocksOut[0]).replace(/[*_`]/g, "").length >= text.replace(/[*_`]/g, "").trim().length - 2);
    });
  }
});

describe("plainText, for titles", () => {
  test("Markdown and HTML tags are left out", () => {
    assert.equal(plainText("**Bold** idea: `code` and [a link](https://example.com)"), "Bold idea: code and a link");
    assert.equal(plainText("<img src=x onerror=alert(1)> What is <b>this</b>?"), "What is this ?");
    assert.equal(plainText("cut off <img src=x onerr"), "cut off");
  });

  test("text that only looks like markup is kept", () => {
    assert.equal(plainText("Is 2 < 3 and 5 > 4?"), "Is 2 < 3 and 5 > 4?");
    assert.equal(plainText("snake_case_name * 2"), "snake_case_name * 2");
  });

  test("line breaks and runs of spaces are one space", () => {
    assert.equal(plainText("a\n\n  b\tc"), "a b c");
  });
});

describe("fast paths give the exact path's tree", () => {
  const cases = [
    "[".repeat(5000),
    "![".repeat(3000),
    "[a] [b](https://e.com) [c",
    "[x](https://e.com/[y]) and [ then ]",
    "text [ open and ![img](https://e.com/i.png) then [",
    "a [b\n\n[c](https://e.com) [",
    "| a [ | b |\n|---|---|\n| [ | [x](https://e.com) |",
    "> [quote\n> still [x](https://e.com)",
    "[*a* `[`](https://e.com)",
    "_a ".repeat(3000),
    "*a ".repeat(3000),
    "_a *b* _c_ and *d",
    "*a **b** c* _x_y_ *",
    "**a *b _c_ d* e** *f",
    "snake_case_name and _em_ and * star",
    "*a\n*b* _c\n_d_",
    "x *a*b* y _a_b_ \\*c*",
    "*** _ ** __a__ *",
    "a\u00a0*b* *c\u00a0*",
    "- *a\n- *b*\n\n> _q\n> q_",
    "| *a | _b_ |\n|---|---|\n| *c* | _ |",
  ];
  for (const text of cases) {
    test(JSON.stringify(text.slice(0, 40)), () => {
      assert.deepEqual(parse(text), parseExact(text));
    });
  }
});

test("fast paths give the exact path's tree on random Markdown-ish text", () => {
  // A small seeded generator: the same 3,000 strings every run.
  let seed = 16;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const alphabet = ["*", "_", "a", "b", " ", " ", "\n", "[", "]", "(", ")", "`", "~", "!", "\\", "\u00a0", "é", ".", "http://x.y/"];
  for (let n = 0; n < 3000; n++) {
    const length = 1 + Math.floor(random() * 40);
    let text = "";
    for (let i = 0; i < length; i++) text += alphabet[Math.floor(random() * alphabet.length)];
    assert.deepEqual(parse(text), parseExact(text), JSON.stringify(text));
  }
});
