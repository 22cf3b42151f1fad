#!/usr/bin/python3
"""Reduce a botocore service-2.json model to the machine-readable parts skiff
uses (operations, shapes, constraints, errors), dropping documentation.

Usage: strip-model.py SOURCE.json[.gz] DEST.json
The result is committed under api/ so builds do not depend on a local botocore.
"""
import gzip
import json
import sys

KEEP_SHAPE = {"type", "members", "required", "member", "key", "value", "enum", "min", "max",
              "pattern", "exception", "fault", "error", "box", "document", "union"}
KEEP_MEMBER = {"shape", "locationName", "location", "jsonvalue", "idempotencyToken",
               "deprecated", "box"}
KEEP_OP = {"name", "http", "input", "output", "errors", "idempotent"}
KEEP_META = {"apiVersion", "endpointPrefix", "jsonVersion", "protocol", "serviceId",
             "signatureVersion", "signingName", "targetPrefix", "uid", "xmlNamespace"}


def main():
    src, dst = sys.argv[1], sys.argv[2]
    opener = gzip.open if src.endswith(".gz") else open
    with opener(src, "rt") as f:
        m = json.load(f)
    out = {"metadata": {k: v for k, v in m["metadata"].items() if k in KEEP_META},
           "operations": {}, "shapes": {}}
    for name, op in sorted(m["operations"].items()):
        o = {k: v for k, v in op.items() if k in KEEP_OP}
        for k in ("input", "output"):
            if k in o:
                o[k] = {"shape": o[k]["shape"]}
        if "errors" in o:
            o["errors"] = [e["shape"] for e in o["errors"]]
        out["operations"][name] = o
    for name, sh in sorted(m["shapes"].items()):
        s = {k: v for k, v in sh.items() if k in KEEP_SHAPE}
        if "members" in s:
            s["members"] = {mn: {k: v for k, v in mv.items() if k in KEEP_MEMBER}
                            for mn, mv in s["members"].items()}
        for k in ("member", "key", "value"):
            if k in s:
                s[k] = {kk: vv for kk, vv in s[k].items() if kk in KEEP_MEMBER}
        out["shapes"][name] = s
    with open(dst, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
