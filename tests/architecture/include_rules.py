#!/usr/bin/env python3
"""Fails when a folder includes one it may not (issue 20).

The allowed matrix is the table under "## Include rules" in docs/architecture.md: one row
per folder, `| folder/ | what it may include |`, where each entry is a folder (`io/`) or
one header (`dbus/names.hpp`), and "nothing" allows no other folder.  A folder may always
include its own headers.  tests/ may include any folder but daemon/ (nothing includes
daemon/: it only assembles the process).

usage: include_rules.py SOURCE_DIR
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)
ROW = re.compile(r'^\|\s*`([a-z_]+)/`\s*\|([^|]*)\|', re.M)
ENTRY = re.compile(r'`([a-z_]+/(?:[A-Za-z0-9_./]+)?)`')
SOURCES = ('.cpp', '.hpp', '.h', '.inc')


def read_rules(doc: str) -> dict:
    section = doc.split('## Include rules', 1)
    if len(section) != 2:
        raise SystemExit('docs/architecture.md has no "## Include rules" section')
    body = section[1].split('\n## ', 1)[0]
    rules = {}
    for folder, allowed in ROW.findall(body):
        rules[folder] = ENTRY.findall(allowed)
    if not rules:
        raise SystemExit('docs/architecture.md: the include rules table has no rows')
    return rules


def allowed(rules: dict, folder: str, target: str) -> bool:
    top = target.split('/', 1)[0]
    if top == folder:
        return True
    if folder == 'tests':
        return top != 'daemon'
    for entry in rules.get(folder, []):
        if entry.endswith('/') and top + '/' == entry:
            return True
        if entry == target:
            return True
    return False


def violations(rules: dict, files: dict) -> list:
    """files: path relative to the root -> text."""
    out = []
    for path, text in sorted(files.items()):
        folder = path.split('/', 1)[0]
        for target in INCLUDE.findall(text):
            if '/' not in target:
                continue
            if not allowed(rules, folder, target):
                out.append(f'{path}: includes "{target}", which {folder}/ may not (docs/architecture.md, Include rules)')
    return out


def self_check(rules: dict) -> None:
    # The checker must be able to fail: a core that includes the application, a D-Bus
    # adapter that reaches the loop, a test that includes daemon/.
    bad = {
        'control/x.hpp': '#include "app/pump_service.hpp"\n',
        'dbus/x.cpp': '#include "loop/dosing_loop.hpp"\n',
        'tests/x.cpp': '#include "daemon/systemd.hpp"\n',
    }
    found = violations(rules, bad)
    if len(found) != 3:
        raise SystemExit(f'self-check: the rules let a forbidden include through: {found}')


def main() -> int:
    root = pathlib.Path(sys.argv[1])
    rules = read_rules((root / 'docs/architecture.md').read_text())
    self_check(rules)
    files = {}
    for folder in list(rules) + ['tests']:
        base = root / folder
        for p in base.rglob('*'):
            if p.suffix in SOURCES and p.is_file():
                files[str(p.relative_to(root))] = p.read_text(errors='replace')
    unknown = sorted({f.split('/', 1)[0] for f in files} - set(rules) - {'tests'})
    found = violations(rules, files)
    n = sum(len(INCLUDE.findall(t)) for t in files.values())
    if n == 0:
        print('no #include found: wrong source dir?')
        return 1
    for v in found:
        print(v)
    print(f'{len(files)} files, {n} includes, {len(rules)} folders with rules{"; unknown: " + str(unknown) if unknown else ""}: '
          f'{len(found)} violation(s)')
    return 1 if found else 0


if __name__ == '__main__':
    sys.exit(main())
