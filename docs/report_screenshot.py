"""Render a run's HTML report in headless Chromium to the PNG the README shows (docs/images/report.png).

    make demo                                   # writes runs/amc-monas-lq-small/report/index.html
    .venv/bin/python docs/report_screenshot.py  # [--run runs/amc-monas-lq-small] [--width 1400] [--height 1100]

Needs Debian's chromium (`apt-get install chromium`). Chromium starts with the flags a closed network needs (no
background networking, sync, component updates) and an empty profile in a temporary folder; nothing is fetched.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    """Render the report page to the PNG; 0 on success, 1 (one line on stderr) without a report or Chromium."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=ROOT / "runs" / "amc-monas-lq-small", help="the run folder")
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "report.png")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=1100)
    args = ap.parse_args(argv)
    page = (args.run / "report" / "index.html").resolve()
    if not page.is_file():
        print(f"{page}: no report; run `make demo` first (or pass --run)", file=sys.stderr)
        return 1
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("chromium is not installed (apt-get install chromium)", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hwnas-shot-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--window-size={args.width},{args.height}",
               f"--screenshot={args.out.resolve()}", page.as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if done.returncode != 0 or not args.out.is_file():
        print(f"chromium failed ({done.returncode}): {done.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    print(f"{args.out} ({args.width}×{args.height}) from {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
