"""What a run leaves beside its report: the report (from the journal) and the audit record.

The report is written in CSV, JSONL or Parquet, in input order; the audit
record (`<report>.run.json`) is written, read and listed only by `_audit`.
"""

from ._audit import (
    AUDIT_SUFFIX,
    RunLine,
    audit_path,
    batch_of,
    is_audit,
    list_runs,
    read_audit,
    recorded_base_url,
    write_audit,
)
from ._page import PAGE_SUFFIX, is_page, page_path, render_again, write_page, write_page_quietly
from ._render import (
    REPORT_SUFFIXES,
    check_outputs,
    check_report_path,
    report_frame,
    write_report,
)

__all__ = [
    "AUDIT_SUFFIX",
    "PAGE_SUFFIX",
    "REPORT_SUFFIXES",
    "RunLine",
    "audit_path",
    "batch_of",
    "check_outputs",
    "check_report_path",
    "is_audit",
    "is_page",
    "list_runs",
    "page_path",
    "read_audit",
    "recorded_base_url",
    "render_again",
    "report_frame",
    "write_audit",
    "write_page",
    "write_page_quietly",
    "write_report",
]
