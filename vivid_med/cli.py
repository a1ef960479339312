"""The ``vivid-med`` console script.

    vivid-med structure REPORTS --id-column ID --text-column TEXT --out OUT.parquet
        (exit 2 with one line naming the file and the cause when REPORTS cannot be read or OUT would overwrite it)
    vivid-med schema [--out schema/ums.schema.json] [--check]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_SCHEMA = Path("schema/ums.schema.json")


def rejects_path(out: Path) -> Path:
    """``OUT.parquet`` -> ``OUT.rejects.parquet`` (beside it)."""
    return out.with_name(f"{out.name.removesuffix('.parquet')}.rejects.parquet")


def output_problem(src: Path, outputs: tuple[Path, ...]) -> str | None:
    """Why ``outputs`` cannot be written for input ``src`` (one resolves to it, or is a folder), or None."""
    from vivid_med.io import same_file

    for out in outputs:
        if same_file(out, src):
            return f"{out}: is the input {src}; choose another --out"
        if out.exists() and not out.is_file():
            return f"{out}: exists and is not a file"
    return None


def cmd_structure(args: argparse.Namespace) -> int:
    from vivid_med.io import failpoint
    from vivid_med.reports import read_report_file, structure_reports
    from vivid_med.sources.tablefile import InputFileError
    from vivid_med.tables import STRUCTURED_SCHEMA, write_rejects, write_table

    src, out = Path(args.reports), Path(args.out)
    problem = output_problem(src, (out, rejects_path(out)))
    try:
        if problem:
            raise InputFileError(problem)
        structured, rejects = structure_reports(read_report_file(src, args.id_column, args.text_column))
    except (InputFileError, OSError) as e:  # the message names the file and the cause, never report text
        print(f"vivid-med structure: {e}", file=sys.stderr)
        return 2
    failpoint("structure:extracted")
    write_rejects(rejects, rejects_path(out))  # first: a new accepted table never sits beside old rejects
    write_table(structured, out, STRUCTURED_SCHEMA)
    n = len(structured) + len(rejects)
    print(f"{args.reports}: {n} rows = {len(structured)} accepted + {len(rejects)} rejected")
    print(f"accepted -> {out}")
    print(f"rejected -> {rejects_path(out)}")
    for reason, count in rejects["reason"].value_counts().sort_index().items():
        print(f"  {reason}: {count}")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from vivid_med.ums import json_schema, write_json_schema

    path = Path(args.out)
    if args.check:
        if not path.is_file() or path.read_text() != json_schema():
            print(f"{path} is stale: run `vivid-med schema`", file=sys.stderr)
            return 1
        print(f"{path} is up to date")
        return 0
    print(f"wrote {write_json_schema(path)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vivid-med", description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("structure", help="report file -> UMS records (rule extractor) + rejects")
    p.add_argument("reports", help="CSV, TSV (optionally .gz), JSONL or Parquet file of reports")
    p.add_argument("--id-column", required=True, help="column holding the report / study id")
    p.add_argument("--text-column", required=True, help="column holding the report text")
    p.add_argument("--out", required=True, help="output Parquet; rejects go to OUT.rejects.parquet")
    p.set_defaults(func=cmd_structure)
    p = sub.add_parser("schema", help="write (or --check) the UMS JSON Schema")
    p.add_argument("--out", default=str(DEFAULT_SCHEMA))
    p.add_argument("--check", action="store_true", help="exit 1 if the file differs from the models")
    p.set_defaults(func=cmd_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
