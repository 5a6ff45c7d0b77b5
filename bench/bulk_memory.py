"""Benchmark: peak memory of `invite --csv` against the size of the file it reads.

Run from the repository root:

    .venv/bin/python -m bench.bulk_memory [--rows 100000]

Writes a CSV of `--rows` valid rows (~105 bytes each; 100,000 rows is ~10.5 MB), then runs
`worker.bulk.invite_file` on it in a child process with an invite function that answers at once
(Isograd unavailable: every row fails fast, so the figure is the command's own cost, not
Isograd's). Prints the file size, the child's peak RSS (ru_maxrss) above an idle baseline
(the same child importing everything and reading nothing) and their ratio.
"""

from __future__ import annotations

import argparse
import csv
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def child(path: str, run: bool) -> None:
    import io

    from worker.cli.invitations import invite_file
    from worker.errors import IsogradUnavailableError

    def unavailable(request: object, key: object) -> object:
        raise IsogradUnavailableError("bench: answers at once")

    if run:
        invite_file(Path(path), unavailable, out=io.StringIO(), err=io.StringIO())  # type: ignore[arg-type]
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)  # KiB on Linux


def peak_kib(path: Path, run: bool) -> int:
    command = [sys.executable, "-m", "bench.bulk_memory", "--child", str(path)]
    if run:
        command.append("--run")
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return int(output.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.run)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "people.csv"
        with path.open("w", newline="", encoding="utf-8") as stream:
            writer = csv.writer(stream)
            writer.writerow(["email", "first_name", "last_name", "tst_frm_id", "ext_id"])
            for n in range(args.rows):
                writer.writerow(
                    [
                        f"candidate{n:07d}@example.org",
                        f"First{n}",
                        f"Lastname{n}",
                        "101",
                        f"employee-{n:09d}-external-reference",
                    ]
                )
        size = path.stat().st_size
        idle = peak_kib(path, run=False)
        busy = peak_kib(path, run=True)
    grown = (busy - idle) * 1024
    print(f"file {size / 1e6:.1f} MB, {args.rows} rows")
    print(f"peak RSS above idle: {grown / 1e6:.1f} MB ({grown / size:.1f}x the file)")


if __name__ == "__main__":
    main()
