"""The one vocabulary of a field's state, and every conversion of it.

A state is ``present``, ``absent``, ``uncertain`` or null (None: not answerable from the source). Where states
travel as integers (label matrices, training batches) they use ``State.code`` and ``NULL_CODE``, everywhere:

| state     | code | CheXpert label value |
| --------- | ---- | -------------------- |
| present   | 0    | 1.0                  |
| absent    | 1    | 0.0                  |
| uncertain | 2    | -1.0                 |
| null      | 3    | blank                |
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum

import numpy as np
import pandas as pd


class State(str, Enum):
    """An answerable state; ``State.PRESENT == "present"`` (the value is what Parquet and JSON hold)."""

    PRESENT = "present"
    ABSENT = "absent"
    UNCERTAIN = "uncertain"

    @property
    def code(self) -> int:
        return STATE_VALUES.index(self.value)


#: The answerable states' values, in code order.
STATE_VALUES: tuple[str, ...] = tuple(s.value for s in State)
#: The integer of a null (unanswerable) state; one past the answerable codes (a 4th class where one is needed).
NULL_CODE: int = len(STATE_VALUES)
#: ``STATE_OF_CODE[codes]`` turns an integer array into states (object array; None for null).
STATE_OF_CODE = np.array([*STATE_VALUES, None], dtype=object)
_CODE_OF_STATE: dict[str | None, int] = {**{s: i for i, s in enumerate(STATE_VALUES)}, None: NULL_CODE}

#: CheXpert label-table values (1.0 / 0.0 / -1.0) <-> states; a blank cell is null.
STATE_OF_CHEXPERT_VALUE: dict[float, str] = {1.0: "present", 0.0: "absent", -1.0: "uncertain"}
CHEXPERT_VALUE_OF_STATE: dict[str, float] = {s: v for v, s in STATE_OF_CHEXPERT_VALUE.items()}
#: A CheXpert label cell as text -> state code (how the label tables are read).
CODE_OF_CHEXPERT_CELL: dict[str, int] = {
    **{text: _CODE_OF_STATE[s] for v, s in STATE_OF_CHEXPERT_VALUE.items() for text in (f"{v:g}", f"{v:.1f}")},
    "": NULL_CODE,
}


def code_of(state: str | None) -> int:
    """The code of a state value (None -> NULL_CODE); ValueError naming the allowed values otherwise."""
    try:
        return _CODE_OF_STATE[state]
    except (KeyError, TypeError):
        raise ValueError(f"unknown state {state!r}; expected one of {list(STATE_VALUES)} or null") from None


def is_null(value: object) -> bool:
    """True for a null cell: None or a float NaN (how pandas shows a missing string)."""
    return value is None or (isinstance(value, float) and np.isnan(value))


def state_codes(frame: pd.DataFrame, fields: Sequence[str], what: str = "records") -> np.ndarray:
    """int64 [N, F]: the code of each field's state (NULL_CODE for null); ValueError naming row and value."""
    missing = [f for f in fields if f not in frame.columns]
    if missing:
        raise ValueError(f"{what}: missing field column(s) {missing}")
    out = np.full((len(frame), len(fields)), NULL_CODE, dtype=np.int64)
    for j, f in enumerate(fields):
        for i, v in enumerate(frame[f].to_numpy(dtype=object)):
            if is_null(v):
                continue
            if v not in _CODE_OF_STATE:
                raise ValueError(f"{what}: row {i} ({frame.index[i]}), field {f}: unknown state {v!r}; "
                                 f"expected one of {list(STATE_VALUES)} or null")
            out[i, j] = _CODE_OF_STATE[v]
    return out
