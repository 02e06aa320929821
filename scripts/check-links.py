#!/usr/bin/env python3
"""Check that every relative link in the repository's Markdown files resolves: the file exists
and, for `#anchor`, a heading of that file makes that anchor (GitHub's rule: lowercase, all but
letters, digits, spaces, `-` and `_` dropped, spaces to `-`, repeats numbered `-1`, `-2` …).
Run from anywhere: `scripts/check-links.py`. Exits 1 and lists every broken link."""
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
LINK = re.compile(r"\]\(([^)\s]+)\)")


def anchors(path):
    seen, found, fenced = {}, set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        if fenced or not line.startswith("#"):
            continue
        slug = re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def main():
    files = subprocess.run(["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    files += [f for f in subprocess.run(["git", "ls-files", "--others", "--exclude-standard",
                                         "*.md"], cwd=ROOT, capture_output=True, text=True,
                                        check=True).stdout.split() if f not in files]
    broken, checked = [], 0
    for name in files:
        path = ROOT / name
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.startswith("```"):
                fenced = not fenced
            if fenced:
                continue
            for target in LINK.findall(line):
                if re.match(r"[a-z]+:", target):
                    continue
                checked += 1
                file_part, _, anchor = target.partition("#")
                dest = (path.parent / file_part).resolve() if file_part else path
                if not dest.exists():
                    broken.append(f"{name}:{number}: {target}: no such file")
                elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest)):
                    broken.append(f"{name}:{number}: {target}: no such heading")
    for b in broken:
        print(b)
    print(f"{checked} relative links in {len(files)} files, {len(broken)} broken")
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
