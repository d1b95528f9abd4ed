#!/usr/bin/env python3
"""fhirpath-suite.py - turns the official FHIRPath R4 test suite into test data.

Reads tests-fhir-r4.xml (HL7 FHIR test cases, Apache-2.0) and writes
tests/data/fhirpath/suite.json: one object per test with its name, group,
input file (the .json twin of the .xml the suite names), expression,
expected outputs ({"type", "value"}), whether an error is expected
("invalid": "syntax" | "semantic" | "execution" | null), and the
predicate / mode / ordered attributes. Copies the JSON inputs and
LICENSE.txt next to it. With --search, also extracts every `expression`
of the official search parameters (search-parameters.json) into
tests/data/fhirpath/search-expressions.txt, one "Base<TAB>expression" a line.

Python 3 standard library only.

usage: tools/fhirpath-suite.py SUITE_DIR [--search search-parameters.json] [--out tests/data/fhirpath]
"""
import argparse
import json
import os
import shutil
import sys
import xml.etree.ElementTree as ET


def json_twin(name, src):
    """The input file to use: the .json twin of an .xml name when it exists."""
    if not name:
        return None
    base, ext = os.path.splitext(name)
    if ext == ".xml" and os.path.exists(os.path.join(src, base + ".json")):
        return base + ".json"
    return name


def convert(src, out):
    root = ET.parse(os.path.join(src, "tests-fhir-r4.xml")).getroot()
    tests = []
    for group in root.iter("group"):
        for t in group.iter("test"):
            expr = t.find("expression")
            outputs = [{"type": o.get("type"), "value": o.text or ""} for o in t.findall("output")]
            tests.append({
                "name": t.get("name"),
                "group": group.get("name"),
                "input": json_twin(t.get("inputfile"), src),
                "expression": (expr.text or "") if expr is not None else "",
                "invalid": expr.get("invalid") if expr is not None else None,
                "predicate": t.get("predicate") == "true",
                "mode": t.get("mode") or (expr.get("mode") if expr is not None else None),
                "ordered": t.get("ordered") != "false",
                "outputs": outputs,
            })
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "suite.json"), "w", encoding="utf-8") as f:
        json.dump({"source": "tests-fhir-r4.xml (HL7 FHIRPath test suite, Apache-2.0, see LICENSE.txt)",
                   "tests": tests}, f, indent=1, ensure_ascii=False)
        f.write("\n")
    for name in sorted(os.listdir(src)):
        if name.endswith(".json") or name == "LICENSE.txt":
            shutil.copyfile(os.path.join(src, name), os.path.join(out, name))
    return len(tests)


def search(path, out):
    with open(path, encoding="utf-8") as f:
        bundle = json.load(f)
    lines = []
    for entry in bundle.get("entry", []):
        sp = entry.get("resource", {})
        expr = sp.get("expression")
        if not expr:
            continue
        base = ",".join(sp.get("base", []))
        lines.append(base + "\t" + " ".join(expr.split()))
    with open(os.path.join(out, "search-expressions.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return len(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite_dir")
    ap.add_argument("--search")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data", "fhirpath"))
    a = ap.parse_args()
    n = convert(a.suite_dir, a.out)
    print("suite.json: %d tests" % n)
    if a.search:
        print("search-expressions.txt: %d expressions" % search(a.search, a.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
