"""dvc.yaml's plots draw what they mean, checked offline on the tiny DAG's outputs: every Vega-Lite spec that
`dvc plots show --json` returns is rendered by vl-convert (to a PNG, and to the scenegraph that PNG is drawn from),
and the marks are counted: one ROC line per backbone per protocol, one bar group per finding with one bar per
backbone, one training curve per run; each series in its own colour, present in the PNG; the axes titled.

Plots are found by their data (the ``filename`` DVC adds to each row), not by their ids in dvc.yaml.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path

import pandas as pd
import pytest
import vl_convert
from PIL import Image

from pipeline import dvc


@dataclass
class Rendered:
    """One vega plot of `dvc plots show --json`: its data rows, scenegraph and PNG pixels."""

    rows: list[dict]
    scenegraph: dict
    png: Image.Image

    def nodes(self) -> Iterator[dict]:
        """Every node of the scenegraph (groups, marks, items)."""
        todo: list = [self.scenegraph]
        while todo:
            node = todo.pop()
            if isinstance(node, dict):
                yield node
                todo.extend(node.values())
            elif isinstance(node, list):
                todo.extend(node)

    def marks(self, marktype: str) -> list[dict]:
        """Every mark node of this type that draws data (not axes or legends)."""
        return [n for n in self.nodes() if n.get("marktype") == marktype and n.get("role") == "mark"]

    def axis_titles(self) -> set[str]:
        return {item["text"] for n in self.nodes() if n.get("role") == "axis-title" for item in n["items"]}

    def has_colour(self, css: str) -> bool:
        """True when the PNG has a pixel of exactly this ``#rrggbb`` colour."""
        rgb = tuple(int(css[i:i + 2], 16) for i in (1, 3, 5))
        return any(c == rgb for _, c in self.png.getcolors(self.png.width * self.png.height))


def described(item: dict, name: str) -> str:
    """The value of encoding ``name`` in a mark item's description ("x: 0.1; backbone: vivid; ...")."""
    return re.search(rf"(?:^|; ){re.escape(name)}: ([^;]+)", item["description"])[1]


@pytest.fixture(scope="module")
def plots(tiny_run, tmp_path_factory) -> dict[str, Rendered]:
    """{plot id: Rendered} of every vega plot; the PNGs are kept in a pytest temporary folder (``plots*``)."""
    shown = json.loads(dvc(tiny_run, "plots", "show", "--json").stdout)
    assert not shown.get("errors"), shown["errors"]
    folder = tmp_path_factory.mktemp("plots")
    out = {}
    for plot_id, items in shown["data"].items():
        for item in (i for i in items if i["type"] == "vega"):
            spec = item["content"]
            png = vl_convert.vegalite_to_png(spec, scale=2)
            (folder / f"{re.sub(r'[^A-Za-z0-9]+', '_', plot_id)[:60]}.png").write_bytes(png)
            out[plot_id] = Rendered(spec["data"]["values"], vl_convert.vegalite_to_scenegraph(spec),
                                    Image.open(BytesIO(png)).convert("RGB"))
    return out


def plot_of(plots: dict[str, Rendered], data_file: str) -> Rendered:
    found = [p for p in plots.values() if {r.get("filename") for r in p.rows} == {data_file}]
    assert len(found) == 1, f"{len(found)} plots draw {data_file} alone (is the plots block of dvc.yaml pasted?)"
    return found[0]


def backbones(repo: Path) -> list[str]:
    return sorted(p.stem for p in (repo / "metrics" / "eval").glob("*.json"))


@pytest.mark.parametrize("protocol", ["chexpert_paper", "nih8"])
def test_roc_is_one_line_per_backbone(plots, tiny_run, protocol):
    plot = plot_of(plots, f"metrics/plots/roc_{protocol}.csv")
    lines = plot.marks("line")
    assert sorted(described(line["items"][0], "backbone") for line in lines) == backbones(tiny_run)
    assert all(len({described(i, "backbone") for i in line["items"]}) == 1 for line in lines)
    colours = {line["items"][0]["stroke"] for line in lines}
    assert len(colours) == len(lines) and all(plot.has_colour(c) for c in colours)
    assert plot.axis_titles() == {"false positive rate", "true positive rate"}


def test_per_field_auc_is_one_bar_group_per_finding_and_one_bar_per_backbone(plots, tiny_run):
    plot = plot_of(plots, "metrics/plots/per_field_auc.csv")
    table = pd.read_csv(tiny_run / "metrics" / "plots" / "per_field_auc.csv")
    expected = table.dropna().groupby("finding")["backbone"].apply(sorted).to_dict()
    bars = [item for node in plot.marks("rect") for item in node["items"]]
    groups: dict[str, list[dict]] = {}
    for bar in bars:
        groups.setdefault(described(bar, "finding"), []).append(bar)
    assert {f: sorted(described(b, "backbone") for b in g) for f, g in groups.items()} == expected
    assert all(len({b["y"] for b in g}) == len(g) for g in groups.values()), "bars of one group overlap"
    colours = {described(b, "backbone"): b["fill"] for b in bars}
    assert len(set(colours.values())) == len(colours) == len(backbones(tiny_run))
    assert all(plot.has_colour(c) for c in colours.values())
    assert plot.axis_titles() == {"test AUC", "finding"}
    assert len(set(table["finding"])) == 12  # every reported field in the table; no bar where it was not scored


def test_training_curves_are_overlaid_one_line_per_run(plots):
    overlays = [p for p in plots.values() if len({r.get("filename") for r in p.rows}) > 1]
    assert overlays, "no plot overlays the training curves of several runs"
    for plot in overlays:
        lines = plot.marks("line")
        runs = {r["filename"] for r in plot.rows}
        assert sorted(described(line["items"][0], "run") for line in lines) == sorted(runs)
        colours = {line["items"][0]["stroke"] for line in lines}
        assert len(colours) == len(runs) >= 2 and all(plot.has_colour(c) for c in colours)
        assert len(plot.axis_titles()) == 2
