"""DVC stages: one thin module per stage, run as ``python -m stages.<name>``.

A params mistake ends the stage before any work with one message naming the key, the rule and the value given
(exit status 1, no traceback: the traceback would only show where the check lives).
"""

import sys

from vivid_med.params import ParamsError


def _report_params_errors(kind, value, tb) -> None:
    if issubclass(kind, ParamsError):
        print(f"error: {value}", file=sys.stderr)
    else:
        sys.__excepthook__(kind, value, tb)


sys.excepthook = _report_params_errors
