"""What a sweep looks like: plotly figures and HTML pages built from the sweep store's records
(``tuner.store.sweep_detail``). The live dashboard (``tuner.service.dashboard``) and the offline report (``tuner
report``, and ``report.html`` beside each sweep's summary) render the same page from here."""

from tuner.view.figures import figures
from tuner.view.page import report_html, sweep_fragment, sweeps_fragment

__all__ = ["figures", "report_html", "sweep_fragment", "sweeps_fragment"]
