#!/usr/bin/env python3
"""Compares what a running thecald serves with the introspection XML kept in the repo.

Usage: compare_introspection.py BUS_ADDRESS FILE.xml [FILE.xml ...]
Every interface in the files must be served with exactly the same methods (argument types and
directions), signals and properties (type, access); and the daemon serves no other member on
those interfaces. Prints each difference; exit 1 if any."""
import subprocess, sys
import xml.etree.ElementTree as ET

def members(root, wanted=None):
    out = {}
    for i in root.iter("interface"):
        name = i.get("name")
        if wanted is not None and name not in wanted:
            continue
        for m in i.findall("method"):
            args = tuple((a.get("type"), a.get("direction", "in")) for a in m.findall("arg"))
            out[(name, "method", m.get("name"))] = args
        for s in i.findall("signal"):
            out[(name, "signal", s.get("name"))] = tuple(a.get("type") for a in s.findall("arg"))
        for p in i.findall("property"):
            out[(name, "property", p.get("name"))] = (p.get("type"), p.get("access"))
    return out

def main(argv):
    address, files = argv[1], argv[2:]
    repo = {}
    for f in files:
        repo.update(members(ET.parse(f).getroot()))
    ifaces = {k[0] for k in repo}
    served_xml = subprocess.run(["busctl", "--address=" + address, "introspect", "--xml-interface",
                                 "org.thecal.Pump1", "/org/thecal/Pump1"],
                                capture_output=True, text=True, check=True).stdout
    served = members(ET.fromstring(served_xml), ifaces)
    diffs = []
    for k, v in repo.items():
        if k not in served:
            diffs.append("%s %s.%s: in the XML, not served" % (k[1], k[0], k[2]))
        elif served[k] != v:
            diffs.append("%s %s.%s: XML %s, served %s" % (k[1], k[0], k[2], v, served[k]))
    for k in served:
        if k not in repo:
            diffs.append("%s %s.%s: served, not in the XML" % (k[1], k[0], k[2]))
    for d in diffs:
        print(d)
    print("introspection: %d differences between the repo XML and the running daemon" % len(diffs))
    return 1 if diffs else 0

if __name__ == "__main__":
    sys.exit(main(sys.argv))
