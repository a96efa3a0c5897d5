"""The report: Markdown and self-contained HTML, with plots."""
