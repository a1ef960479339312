"""CheXpert Plus (Chambon et al. 2024, arXiv 2405.19538): CheXpert's images with their radiology reports
(kind ``chexpert_plus``).

What the release ships (Stanford AIMI, https://aimi.stanford.edu/datasets/chexpert-plus), as found:

- ``df_chexpert_plus_240401.csv``: one row per image (223,462), the input rows. Columns, as in the header line
  quoted by public code that reads the file: an unnamed index column, ``path_to_image, path_to_dcm,
  frontal_lateral, ap_pa, deid_patient_id, patient_report_date_order, report, section_narrative,
  section_clinical_history, section_history, section_comparison, section_technique, section_procedure_comments,
  section_findings, section_impression, section_end_of_impression, section_summary, section_accession_number,
  age, sex, race, ethnicity, interpreter_needed, insurance_type, recent_bmi, deceased, split``. The release
  README (github.com/Stanford-AIMI/chexpert-plus) reads the file and its ``section_findings``; the paper
  describes the parsed report sections, the demographics and the CheXbert labels. ``path_to_image`` is
  CheXpert's path, ``train/patient00001/study1/view1_frontal.jpg``; ``split`` is ``train`` or ``valid``.
- images: the PNG release (``PNG/train/...``, ``PNG/valid/...``); ``path_to_image`` says ``.jpg`` where the
  files are ``.png`` (noted by a public TFDS builder of the release), hence ``image_dir`` and ``image_suffix``.
- ``chexbert_labels/{findings,impression,report}_fixed.json``: JSON Lines, one object per image with
  ``path_to_image`` and the 14 CheXpert observations (1.0 / 0.0 / -1.0 / null) that CheXbert read from that
  section (file names as listed by the release's download page and by public code that reads them).

``labels: reports`` (default): the rule extractor on ``"FINDINGS: <section_findings>\\n\\nIMPRESSION:
<section_impression>"``. ``labels: table``: the CheXbert labels of ``label_section`` (default ``impression``,
the section CheXpert's own labels came from), joined on ``path_to_image``. Patients and studies come from the
image path (``patient00001``, ``patient00001/study1``, the same ids as the ``chexpert`` kind). The release has no
test split: as for CheXpert-v1.0-small, ``valid`` (the radiologist-labelled set) becomes the test split and
``val_fraction`` of the train patients (seeded) the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from vivid_med.fields import DISPLAY_NAMES
from vivid_med.params import NonNegativeInt, Probability
from vivid_med.sources.cxr import (SourceRows, frontal_lateral_view, join_labels, label_codes, normalise_split,
                                   patient_study_of_path, reject_by_reason, reject_where, sectioned_report,
                                   table_frame, valid_as_test)
from vivid_med.sources.dataset import RecordOptions, RecordSource, register
from vivid_med.sources.tablefile import TableFile, read_csv, read_jsonl
from vivid_med.tables import Reason

TABLE = "df_chexpert_plus_240401.csv"
LABELS_DIR = "chexbert_labels"
COLUMNS = ("path_to_image", "frontal_lateral", "ap_pa", "section_findings", "section_impression", "split")


def read_label_lines(path: Path) -> TableFile:
    """A CheXbert JSON Lines file (a lookup table: blank lines skipped, any other bad line an error naming it)
    as text cells ('' for null): ``path_to_image`` and the 14 observations."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (CheXpert Plus labels: {LABELS_DIR}/<section>_fixed.json)")
    return read_jsonl(path, ("path_to_image", *DISPLAY_NAMES.values()), lookup=True)


@register("chexpert_plus")
class CheXpertPlus(RecordSource):
    """One row per row of ``df_chexpert_plus_240401.csv``; report text from its findings and impression sections,
    or the CheXbert labels of one section."""

    class Options(RecordOptions):
        labels: Literal["reports", "table"] = "reports"
        label_section: Literal["impression", "findings", "report"] = "impression"
        image_dir: str = "PNG"
        image_suffix: Literal[".png", ".jpg"] = ".png"
        val_fraction: Probability = 0.05
        seed: NonNegativeInt = 0

    def records(self) -> SourceRows:
        o, root = self.options, self.root
        table = read_csv(root / TABLE, COLUMNS)
        rel = table["path_to_image"].str.strip()
        stem = rel.str.replace(r"\.[A-Za-z]+$", "", regex=True)
        patient, study = patient_study_of_path(rel)
        prefix = f"{o.image_dir.strip('/')}/" if o.image_dir.strip("/") else ""
        report = [sectioned_report({"FINDINGS": f.strip(), "IMPRESSION": i.strip()})
                  for f, i in zip(table["section_findings"], table["section_impression"])]
        df = table_frame(table, study_id=study, patient_id=patient, image_id=stem,
                         image_path=prefix + stem + o.image_suffix,
                         view=frontal_lateral_view(table["frontal_lateral"], table["ap_pa"]),
                         split=normalise_split(table["split"]), report=report)
        reject_where(df, df["split"].isna().to_numpy(), Reason.UNKNOWN_SPLIT, "split is not train / valid / test")
        if not (df["split"] == "test").any():
            valid_as_test(df, o.val_fraction, o.seed)
        if o.labels == "reports":
            return SourceRows(self.kind, root, df)
        name = f"{o.label_section}_fixed.json"
        labels = read_label_lines(root / LABELS_DIR / name)
        codes, bad = label_codes(labels.cells, DISPLAY_NAMES, name)
        codes, reason, detail = join_labels(labels["path_to_image"].str.strip(), codes, bad, rel, name, "image")
        reject_by_reason(df, reason, detail)
        return SourceRows(self.kind, root, df, codes, label_file=f"{LABELS_DIR}/{name}")
