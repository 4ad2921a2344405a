#!/usr/bin/env python3
"""Strip the human-readable `source` snippets from stellar-xdr's xdr.json.

The skipper only needs the machine-readable structure; the `source` strings (the original .x
text of each definition) roughly double the file size. Everything else, including the `files`
list with the sha256 of every .x file, is kept verbatim so the provenance stays checkable.

Usage: python3 strip.py <path to stellar-xdr-X.Y.Z/xdr-definitions-json/xdr.json> <output>
"""

import json
import sys


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    with open(src, encoding="utf-8") as f:
        doc = json.load(f)
    for definition in doc["definitions"]:
        definition.pop("source", None)
    with open(dst, "w", encoding="utf-8") as f:
        # One definition per line: small, yet a refresh still diffs readably.
        f.write("{\n")
        f.write(f' "version": {json.dumps(doc["version"])},\n')
        f.write(f' "files": {json.dumps(doc["files"], indent=1)},\n')
        f.write(f' "resolved_features": {json.dumps(doc["resolved_features"])},\n')
        f.write(' "definitions": [\n')
        lines = [json.dumps(d, separators=(",", ":")) for d in doc["definitions"]]
        f.write(",\n".join(lines))
        f.write("\n ]\n}\n")
    # Guard against the writer above dropping a key the upstream format grew.
    with open(dst, encoding="utf-8") as f:
        stripped = json.load(f)
    if set(stripped) != set(doc):
        sys.exit(f"top-level keys differ: {set(doc) ^ set(stripped)}")


if __name__ == "__main__":
    main()
