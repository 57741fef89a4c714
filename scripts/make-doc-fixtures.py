#!/usr/bin/env python3
"""Writes tests/fixtures/doc/: small documents of every format `skv summarize` reads, made by the
generators people use (fpdf2 for PDF, python-docx for DOCX, odfpy for ODT; Python's codecs for
the charsets), for tests/test-doc.c. Every document carries the same few sentences, so the test
can check that each reader finds them, in order, and none of the noise (scripts, styles,
deleted text) around them.

Run by hand (never in CI), from the repository root:

    python3 -m venv /tmp/docpy && /tmp/docpy/bin/pip install fpdf2 python-docx odfpy
    /tmp/docpy/bin/python scripts/make-doc-fixtures.py

Tested with fpdf2 2.8.x, python-docx 1.x, odfpy 1.4.x. The output is deterministic: PDF and
zip timestamps are fixed.
"""
import io
import os
import zipfile
from datetime import datetime, timezone

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "doc")

TITLE = "Quarterly Report of the Harbour Authority"
PARAS = [
    "Cargo volumes rose by 12 percent in the third quarter, led by container traffic.",
    "The new crane on pier four entered service in August and cut average unloading time to 19 hours.",
    "Costs stayed within budget; the board approved the dredging plan for next year.",
]
WRAPPED = ("Dock workers and the port operator agreed on a new shift pattern that keeps the container "
           "terminal open around the clock, adds two inspection teams for refrigerated cargo, and moves "
           "the weekly maintenance window from Monday morning to Sunday night, when traffic is lowest.")
HYPHENATED = ["The authority will open an inter-", "national ferry terminal in the spring."]
FIXED = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def write(name, data):
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)


def pdfs():
    from fpdf import FPDF

    def base():
        pdf = FPDF()
        pdf.set_creation_date(FIXED)
        pdf.set_font("helvetica", size=12)
        return pdf

    pdf = base()
    pdf.add_page()
    pdf.set_font("helvetica", "B", 16)
    pdf.cell(0, 10, TITLE, new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("helvetica", size=12)
    pdf.multi_cell(0, 8, PARAS[0])
    pdf.ln(8)
    pdf.multi_cell(0, 8, PARAS[1])
    pdf.add_page()  # a second page: pages are read in order
    pdf.multi_cell(0, 8, PARAS[2])
    pdf.ln(10)
    # a paragraph that wraps over several lines at ordinary leading, then one with a word
    # hyphenated across a line end, as typeset documents have them
    pdf.multi_cell(0, 6, WRAPPED)
    pdf.ln(8)
    for line in HYPHENATED:
        pdf.cell(0, 6, line, new_x="LMARGIN", new_y="NEXT")
    write("report.pdf", bytes(pdf.output()))

    pdf = base()
    pdf.set_encryption(owner_password="owner", user_password="secret")
    pdf.add_page()
    pdf.multi_cell(0, 8, PARAS[0])
    write("encrypted.pdf", bytes(pdf.output()))

    pdf = base()
    pdf.add_page()  # a page with no text at all
    write("empty.pdf", bytes(pdf.output()))


def html():
    body = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{TITLE}</title>
<style>p {{ color: red; }} .secret {{ display: none }}</style>
<script>var tracking = "SCRIPT-NOISE"; document.write("<p>SCRIPT-NOISE</p>");</script>
</head><body>
<nav><ul><li>Home</li><li>Reports</li></ul></nav>
<h1>{TITLE}</h1>
<p>{PARAS[0].replace("12 percent", "12&nbsp;percent")}</p>
<div>{PARAS[1].replace("crane", "<b>crane</b>")}</div>
<noscript>NOSCRIPT-NOISE</noscript>
<table><tr><td>Tonnage</td><td>4.2 million</td></tr></table>
<pre>  col1   col2
  1      2</pre>
<p>{PARAS[2]}<br>Signed, the board &amp; staff.</p>
<template><p>TEMPLATE-NOISE</p></template>
</body></html>
"""
    write("page.html", body.encode("utf-8"))
    # the page's own charset: a <meta> in windows-1252, with characters outside ASCII
    latin = f"""<html><head><meta http-equiv="Content-Type" content="text/html; charset=windows-1252">
<title>Caf\u00e9 report</title></head><body><p>{PARAS[0]}</p><p>Na\u00efve \u201cquotes\u201d \u2013 \u00fcber.</p></body></html>"""
    write("page-cp1252.html", latin.encode("cp1252"))


def docx():
    import docx
    from docx.enum.text import WD_BREAK

    d = docx.Document()
    d.core_properties.created = FIXED.replace(tzinfo=None)
    d.core_properties.modified = FIXED.replace(tzinfo=None)
    d.add_heading(TITLE, level=1)
    d.add_paragraph(PARAS[0])
    p = d.add_paragraph()
    # a paragraph made of several runs, as Word writes them
    for part in PARAS[1].split(" crane "):
        p.add_run(part)
        if part != PARAS[1].split(" crane ")[-1]:
            p.add_run(" crane ").bold = True
    t = d.add_table(rows=1, cols=2)
    t.cell(0, 0).text = "Tonnage"
    t.cell(0, 1).text = "4.2 million"
    p = d.add_paragraph(PARAS[2])
    p.add_run().add_break(WD_BREAK.LINE)
    p.add_run("Signed,\tthe board.")
    buf = io.BytesIO()
    d.save(buf)
    write("report.docx", rezip(buf.getvalue()))


def odt():
    from odf.opendocument import OpenDocumentText
    from odf.text import H, P, S, Tab, LineBreak

    d = OpenDocumentText()
    d.text.addElement(H(outlinelevel=1, text=TITLE))
    d.text.addElement(P(text=PARAS[0]))
    d.text.addElement(P(text=PARAS[1]))
    p = P(text=PARAS[2])
    p.addElement(LineBreak())
    p.addText("Signed,")
    p.addElement(Tab())
    p.addText("the")
    p.addElement(S(c=3))
    p.addText("board.")
    d.text.addElement(p)
    buf = io.BytesIO()
    d.write(buf)
    write("report.odt", rezip(buf.getvalue()))


def rezip(data):
    """The same package with fixed timestamps and member order, so the fixture is reproducible."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for info in src.infolist():
            zi = zipfile.ZipInfo(info.filename, date_time=(2026, 1, 2, 3, 4, 6))
            zi.compress_type = zipfile.ZIP_STORED if info.filename == "mimetype" else zipfile.ZIP_DEFLATED
            z.writestr(zi, src.read(info.filename))
    return out.getvalue()


def bad_zips():
    # a zip bomb: word/document.xml inflates to 4 MiB of spaces (the test allows 1000 bytes of text)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        zi = zipfile.ZipInfo("word/document.xml", date_time=(2026, 1, 2, 3, 4, 6))
        zi.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(zi, b" " * (4 << 20))
    write("bomb.docx", out.getvalue())
    # a zip that is neither: no word/document.xml, no content.xml
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(zipfile.ZipInfo("hello.txt", date_time=(2026, 1, 2, 3, 4, 6)), b"hello")
    write("plain.zip", out.getvalue())
    # a DOCX whose document.xml is not XML
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(zipfile.ZipInfo("word/document.xml", date_time=(2026, 1, 2, 3, 4, 6)), b"<w:document><unclosed>")
    write("malformed.docx", out.getvalue())


def texts():
    text = TITLE + "\n\n" + "\n\n".join(PARAS) + "\n"
    write("report-utf8.txt", text.encode("utf-8"))
    write("report-utf8-bom.txt", b"\xef\xbb\xbf" + text.encode("utf-8"))
    write("report-utf16le-bom.txt", b"\xff\xfe" + text.encode("utf-16-le"))
    fr = ("Le caf\u00e9 du port a re\u00e7u trois cargaisons de th\u00e9 et de cacao cette ann\u00e9e. "
          "Les d\u00e9l\u00e9gu\u00e9s ont approuv\u00e9 le budget pr\u00e9vu pour l'\u00e9t\u00e9, "
          "apr\u00e8s une r\u00e9union tr\u00e8s anim\u00e9e \u00e0 la capitainerie.\n") * 3
    write("french-latin1.txt", fr.encode("latin-1"))
    ru = ("\u041e\u0442\u0447\u0451\u0442 \u043f\u043e\u0440\u0442\u0430: \u0433\u0440\u0443\u0437\u043e\u043e\u0431\u043e\u0440\u043e\u0442 "
          "\u0432\u044b\u0440\u043e\u0441 \u043d\u0430 \u0434\u0432\u0435\u043d\u0430\u0434\u0446\u0430\u0442\u044c "
          "\u043f\u0440\u043e\u0446\u0435\u043d\u0442\u043e\u0432 \u0432 \u0442\u0440\u0435\u0442\u044c\u0435\u043c "
          "\u043a\u0432\u0430\u0440\u0442\u0430\u043b\u0435, \u0438 \u0441\u043e\u0432\u0435\u0442 "
          "\u043e\u0434\u043e\u0431\u0440\u0438\u043b \u043f\u043b\u0430\u043d.\n") * 4
    write("russian-koi8r.txt", ru.encode("koi8-r"))
    write("russian-cp1251.txt", ru.encode("cp1251"))
    ja = ("\u6e2f\u6e7e\u5c40\u306e\u5831\u544a\u66f8\uff1a\u7b2c\u4e09\u56db\u534a\u671f\u306e\u8ca8\u7269\u91cf\u306f"
          "\u5341\u4e8c\u30d1\u30fc\u30bb\u30f3\u30c8\u5897\u52a0\u3057\u307e\u3057\u305f\u3002\u65b0\u3057\u3044"
          "\u30af\u30ec\u30fc\u30f3\u304c\u516b\u6708\u306b\u7a3c\u50cd\u3057\u307e\u3057\u305f\u3002\n") * 4
    write("japanese-sjis.txt", ja.encode("shift_jis"))
    write("binary.bin", bytes(range(256)) * 4)


def main():
    os.makedirs(OUT, exist_ok=True)
    pdfs()
    html()
    docx()
    odt()
    bad_zips()
    texts()
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
