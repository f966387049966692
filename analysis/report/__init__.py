"""The study report, as a package: `render` (HTML + Markdown), `charts`, `findings` (the headline
sentences and the verdict grid), `sections` (one topic each) and `build` (the whole report). One command
makes it: `python -m analysis.pareto`, which also draws the Pareto plots."""

from analysis.report.build import build, build_search, margin_arg, per_seed_table, write_report
from analysis.report.charts import curve, diff_panels, lth_curves
from analysis.report.findings import findings
from analysis.report.render import Report
from analysis.report.sections import masks_of

__all__ = ["Report", "build", "build_search", "curve", "diff_panels", "findings", "lth_curves", "margin_arg",
           "masks_of", "per_seed_table", "write_report"]
