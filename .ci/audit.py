"""Dependency audit: fail on a known vulnerability that has a fixed release available.

Exports the locked dependency set with uv and audits it with pip-audit (PyPI's advisory
data). Vulnerabilities without any fixed release are listed but do not fail the build.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parent.parent
    uv = root / ".tools" / "bin" / "uv"
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        subprocess.run(
            [
                str(uv),
                "export",
                "--frozen",
                "--no-hashes",
                "--no-emit-project",
                "--all-extras",
                "--format",
                "requirements-txt",
                "-o",
                str(req),
            ],
            check=True,
            cwd=root,
            stdout=subprocess.DEVNULL,
        )
        out = Path(tmp) / "audit.json"
        proc = subprocess.run(
            [
                str(root / ".venv" / "bin" / "pip-audit"),
                "-r",
                str(req),
                "--no-deps",
                "--disable-pip",
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "-o",
                str(out),
            ],
            cwd=root,
            capture_output=True,
            text=True,
        )
        if not out.exists():
            print(proc.stdout, proc.stderr, file=sys.stderr)
            print("pip-audit did not produce a report", file=sys.stderr)
            return 2
        report = json.loads(out.read_text())
    fixable, unfixable = [], []
    for dep in report.get("dependencies", []):
        for vuln in dep.get("vulns", []):
            row = f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in: {', '.join(vuln.get('fix_versions') or []) or 'none'})"
            (fixable if vuln.get("fix_versions") else unfixable).append(row)
    for row in unfixable:
        print(f"audit: known vulnerability without a fix: {row}")
    for row in fixable:
        print(f"audit: FIXABLE vulnerability: {row}")
    print(
        f"audit: {len(report.get('dependencies', []))} locked packages, {len(fixable)} fixable, {len(unfixable)} unfixable"
    )
    return 1 if fixable else 0


if __name__ == "__main__":
    sys.exit(main())
