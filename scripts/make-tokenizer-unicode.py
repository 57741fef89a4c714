#!/usr/bin/env python3
"""Writes text/tokenizer-unicode.c: the character classes Hugging Face tokenizers' regex engine
(Oniguruma, through the `onig` crate) gives \\p{L}, \\p{N} and \\s, measured on that engine itself,
the \\w and \\s of the Rust regex crate that its added-token matching uses (single_word,
lstrip, rstrip), measured through added tokens, and Rust's char::is_numeric that the Digits
pre-tokenizer uses, measured through Digits.

Why: tokenizers' Oniguruma knows a newer Unicode (16.0 in tokenizers 0.23) than Debian 12's PCRE2
(10.42, Unicode 14.0), so letters and digits added since 14.0 (Kawi, Garay, CJK extension H, ...)
would pre-tokenize differently. The file carries, for each class, the full list of ranges (tests
check PCRE2 plus our additions against it, code point by code point) and the additions to PCRE2's
own \\p{L} and \\p{N} as PCRE2 class text.

Run by hand (never in CI), from the repository root:

    /opt/skvpy/bin/python scripts/make-tokenizer-unicode.py

Needs `tokenizers` and a Python whose unicodedata has the Unicode version of the PCRE2 the build
uses (Python 3.11: 14.0.0, as Debian 12's PCRE2 10.42).
"""
import os
import sys
import unicodedata

from tokenizers import AddedToken, Regex, Tokenizer, models, pre_tokenizers

PCRE2_UNICODE = "14.0.0"


def onig_class(prop):
    """Code points (all but surrogates and U+0000) that tokenizers' regex matches with `prop`."""
    removed = set()
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    sp = pre_tokenizers.Split(Regex(prop), "removed")
    for i in range(0, len(cps), 50000):
        part = cps[i:i + 50000]
        kept = {ord(ch) for p, _ in sp.pre_tokenize_str("".join(map(chr, part))) for ch in p}
        removed.update(c for c in part if c not in kept)
    return removed


def rust_classes():
    """(\\w, \\s) of tokenizers' added-token matching: "ab" (single_word) is found before a
    character only when that character is not \\w; "XY" (lstrip) swallows a character before it
    only when it is \\s."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.add_tokens([AddedToken("ab", single_word=True), AddedToken("XY", lstrip=True)])
    ab, xy = tok.token_to_id("ab"), tok.token_to_id("XY")
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    word, space = set(), set()
    for i in range(0, len(cps), 50000):
        part = cps[i:i + 50000]
        for c, e in zip(part, tok.encode_batch(["ab" + chr(c) for c in part])):
            if ab not in e.ids:
                word.add(c)
        for c, e in zip(part, tok.encode_batch([chr(c) + "XY" for c in part])):
            if e.ids == [xy]:
                space.add(c)
    return word, space


def rust_numeric():
    """Rust's char::is_numeric as the Digits pre-tokenizer sees it: with individual_digits, each
    numeric character is a piece of its own; "a" is not numeric, so "a" + c + "a" ... puts every
    numeric c alone and every other c inside an "aca" piece."""
    dg = pre_tokenizers.Digits(individual_digits=True)
    cps = [c for c in range(1, 0x110000) if not 0xD800 <= c <= 0xDFFF and c != ord("a")]
    num = set()
    for i in range(0, len(cps), 50000):
        part = cps[i:i + 50000]
        text = "a" + "a".join(map(chr, part)) + "a"
        num.update(ord(p) for p, _ in dg.pre_tokenize_str(text) if len(p) == 1 and p != "a")
    return num


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def pcre_items(rs):
    return "".join(f"\\\\x{{{a:x}}}" if a == b else f"\\\\x{{{a:x}}}-\\\\x{{{b:x}}}" for a, b in rs)


def c_ranges(name, rs):
    lines = [f"const uint32_t {name}[][2] = {{"]
    row = ""
    for a, b in rs:
        item = f"{{0x{a:x}, 0x{b:x}}}, "
        if len(row) + len(item) > 96:
            lines.append("\t" + row.rstrip())
            row = ""
        row += item
    if row:
        lines.append("\t" + row.rstrip())
    lines.append("};")
    lines.append(f"const size_t {name}_n = {len(rs)};")
    return "\n".join(lines)


def main():
    if unicodedata.unidata_version != PCRE2_UNICODE:
        sys.exit(f"this Python has Unicode {unicodedata.unidata_version}; run it with one that has "
                 f"{PCRE2_UNICODE} (PCRE2's)")
    allcp = [c for c in range(0, 0x110000) if not 0xD800 <= c <= 0xDFFF]
    L, N, S = onig_class(r"\p{L}"), onig_class(r"\p{N}"), onig_class(r"\s")
    W, RS = rust_classes()
    D = rust_numeric()
    if RS != S:
        sys.exit("Rust's \\s and Oniguruma's \\s differ: one space table cannot serve both")
    base_l = {c for c in allcp if unicodedata.category(chr(c)).startswith("L")}
    base_n = {c for c in allcp if unicodedata.category(chr(c)).startswith("N")}
    if base_l - L or base_n - N:
        sys.exit("Oniguruma lacks letters or numbers PCRE2 has: additions alone cannot express it")
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "text", "tokenizer-unicode.c")
    with open(out, "w") as f:
        f.write(f"""/* tokenizer-unicode.c: GENERATED by scripts/make-tokenizer-unicode.py; do not edit.
 *
 * The character classes of Hugging Face tokenizers' regex engine (Oniguruma, Unicode 16.0 in
 * tokenizers 0.23), measured on that engine: \\p{{L}} ({len(L)} code points), \\p{{N}} ({len(N)}) and \\s
 * ({len(S)}); and the Rust regex \\w ({len(W)}) that single_word added tokens test (its \\s is the same
 * as Oniguruma's). PCRE2 10.42 knows Unicode {PCRE2_UNICODE}; the *_extra strings add, as PCRE2 class
 * items, what it lacks. The full range lists are the oracle the tests compare against.
 *
 * The Digits pre-tokenizer does not use the regex engine but Rust's char::is_numeric, whose Unicode
 * may be newer still: skv_tok_numeric_items is that class ({len(D)} code points) spelled out whole
 * as PCRE2 class items.
 */
#include "tokenizer-internal.h"

const char skv_tok_letters_extra[] = "{pcre_items(ranges(L - base_l))}";
const char skv_tok_numbers_extra[] = "{pcre_items(ranges(N - base_n))}";
const char skv_tok_numeric_items[] = "{pcre_items(ranges(D))}";

{c_ranges("skv_tok_letter_ranges", ranges(L))}

{c_ranges("skv_tok_number_ranges", ranges(N))}

{c_ranges("skv_tok_space_ranges", ranges(S))}

{c_ranges("skv_tok_word_ranges", ranges(W))}

{c_ranges("skv_tok_numeric_ranges", ranges(D))}
""")
    print(f"{out}: L {len(L)} (+{len(L - base_l)}), N {len(N)} (+{len(N - base_n)}), S {len(S)}, W {len(W)}, "
          f"is_numeric {len(D)} ({len(D - N)} beyond \\p{{N}}, {len(N - D)} not)")


if __name__ == "__main__":
    main()
