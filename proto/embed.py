#!/usr/bin/env python3
"""Embed a text file as a C string: embed.py INPUT OUTPUT SYMBOL."""
import sys

src, out, sym = sys.argv[1:4]
with open(src, encoding="utf-8") as f:
    text = f.read()
lines = []
for line in text.splitlines(keepends=True):
    esc = line.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    lines.append('\t"%s"' % esc)
with open(out, "w", encoding="utf-8") as f:
    f.write("/* Generated from %s by embed.py; do not edit. */\n" % src.split("/")[-1])
    f.write("const char %s[] =\n%s;\n" % (sym, "\n".join(lines) or '""'))
