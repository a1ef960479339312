"""The Unified Medical Schema (UMS): Pydantic v2 models of one record, and the training target.

A record holds, for every field, a state (present / absent / uncertain / null), the answerability and
uncertainty flags derived from it (validators reject a record where they disagree), where the states came
from (provenance) and, for states read from report text, the evidence span in the report.
Keys in code, Parquet and ``ums_json`` are snake_case; the training target (``target_text``) uses the
display names a language model reads.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from vivid_med.fields import DISPLAY_NAMES, FIELDS, PRETRAIN_FIELDS

SCHEMA_VERSION = "1.1.0"  # 1.1.0: an evidence sentence may be null (records made without report text)

State = Optional[Literal["present", "absent", "uncertain"]]
View = Optional[Literal["PA", "AP", "LAT"]]
Source = Literal["label_table", "rule_extractor", "llm_extractor"]

#: CT modality fields (written by the evaluation's CT adapters) and their display names.
CT_DISPLAY_NAMES: dict[str, str] = {"nodule_malignancy": "Nodule Malignancy", "organ": "Organ"}

_STRICT = ConfigDict(extra="forbid", frozen=True, strict=True)


class Evidence(BaseModel):
    """Where in the report a state was read: the sentence (text and offsets) and the mention's span.

    Offsets are character offsets into the report string: ``report[start:end]`` is the mention and
    ``report[sentence_start:sentence_end] == sentence``. ``sentence`` is null in records made with
    ``records.report_text: drop`` (no report text kept; the offsets still point into the source report).
    """

    model_config = _STRICT
    sentence: Optional[str] = Field(min_length=1)
    sentence_index: int = Field(ge=0)
    sentence_start: int = Field(ge=0)
    sentence_end: int = Field(ge=0)
    start: int = Field(ge=0)
    end: int = Field(ge=0)

    @model_validator(mode="after")
    def _spans_nest(self) -> "Evidence":
        if not (self.sentence_start <= self.start < self.end <= self.sentence_end):
            raise ValueError(f"evidence span [{self.start},{self.end}) is not inside its sentence "
                             f"[{self.sentence_start},{self.sentence_end})")
        if self.sentence is not None and len(self.sentence) != self.sentence_end - self.sentence_start:
            raise ValueError("evidence sentence length does not match its offsets")
        return self

    def check(self, report: str) -> None:
        """Raise ValueError unless the offsets point at ``sentence`` inside ``report`` (and inside it at all)."""
        if self.sentence_end > len(report) or (self.sentence is not None
                                               and report[self.sentence_start:self.sentence_end] != self.sentence):
            raise ValueError(f"evidence sentence {self.sentence_index} does not occur at "
                             f"[{self.sentence_start},{self.sentence_end}) of the report")


class Finding(BaseModel):
    """One field: its state and the flags derived from it (answerable = state not null)."""

    model_config = _STRICT
    state: State
    answerable: bool
    uncertain: bool
    evidence: Optional[Evidence]

    @model_validator(mode="after")
    def _flags_follow_state(self) -> "Finding":
        if self.answerable != (self.state is not None):
            raise ValueError(f"answerable={self.answerable} contradicts state={self.state!r}")
        if self.uncertain != (self.state == "uncertain"):
            raise ValueError(f"uncertain={self.uncertain} contradicts state={self.state!r}")
        if self.evidence is not None and self.state is None:
            raise ValueError("a null (unanswerable) state cannot carry evidence")
        return self

    @classmethod
    def of(cls, state: str | None, evidence: Evidence | None = None) -> "Finding":
        """The finding for ``state`` with its flags derived."""
        return cls(state=state, answerable=state is not None, uncertain=state == "uncertain", evidence=evidence)


#: All 14 CheXpert observations, every key required (null = unanswerable), snake_case keys.
Findings = create_model(
    "Findings",
    __config__=_STRICT,
    __doc__="The 14 chest X-ray fields (CheXpert observations); every key present, null state = unanswerable.",
    **{key: (Finding, Field(title=DISPLAY_NAMES[key])) for key in FIELDS},
)


class CTFindings(BaseModel):
    """CT modality fields: LIDC-IDRI nodule malignancy and the organ label of an organ slice."""

    model_config = _STRICT
    nodule_malignancy: Optional[Literal["benign", "malignant"]] = Field(title=CT_DISPLAY_NAMES["nodule_malignancy"])
    organ: Optional[str] = Field(title=CT_DISPLAY_NAMES["organ"], pattern=r"^[a-z][a-z0-9_-]*$")


class Provenance(BaseModel):
    """Where the states came from; an extractor's version is required when an extractor produced them."""

    model_config = _STRICT
    source: Source
    extractor_version: Optional[str]
    label_file: Optional[str]
    note: Optional[str]

    @model_validator(mode="after")
    def _version_iff_extractor(self) -> "Provenance":
        if (self.source == "label_table") == (self.extractor_version is not None):
            raise ValueError(f"provenance {self.source!r}: extractor_version must be given exactly "
                             "when an extractor produced the states")
        return self


class UMSRecord(BaseModel):
    """One UMS record (one image's study): modality, anatomy, view, findings, provenance."""

    model_config = _STRICT
    schema_version: Literal[SCHEMA_VERSION]  # type: ignore[valid-type]
    modality: Literal["CXR", "CT"]
    anatomy: Literal["chest", "abdomen"]
    study_view: View
    findings: Optional[Findings]  # type: ignore[valid-type]
    ct_findings: Optional[CTFindings]
    provenance: Provenance

    @model_validator(mode="after")
    def _consistent(self) -> "UMSRecord":
        if self.modality == "CXR":
            if self.findings is None or self.ct_findings is not None or self.anatomy != "chest":
                raise ValueError("a CXR record has chest anatomy, findings and no ct_findings")
            evidence = [getattr(self.findings, f).evidence for f in FIELDS]
            if self.provenance.source == "label_table" and any(e is not None for e in evidence):
                raise ValueError("a label-table record carries no text evidence")
            unsupported = [f for f, e in zip(FIELDS, evidence) if e is None and getattr(self.findings, f).answerable]
            if self.provenance.source != "label_table" and unsupported:
                raise ValueError(f"states read from text need evidence; none for {unsupported}")
        elif self.findings is not None or self.ct_findings is None or self.study_view is not None:
            raise ValueError("a CT record has ct_findings, no chest findings and no study_view")
        return self

    def check_evidence(self, report: str) -> None:
        """Raise ValueError unless every evidence span points into ``report``."""
        for f in FIELDS:
            ev = getattr(self.findings, f).evidence if self.findings is not None else None
            if ev is not None:
                ev.check(report)


def provenance(source: Source = "label_table", extractor_version: str | None = None,
               label_file: str | None = None, note: str | None = None) -> Provenance:
    """A Provenance with the optional keys defaulted to null."""
    return Provenance(source=source, extractor_version=extractor_version, label_file=label_file, note=note)


def cxr_record(states: dict[str, str | None], view: str | None, prov: Provenance,
               evidence: dict[str, Evidence] | None = None) -> UMSRecord:
    """A chest X-ray record; fields missing from ``states`` are null."""
    unknown = set(states) - set(FIELDS)
    if unknown:
        raise ValueError(f"unknown field(s) {sorted(unknown)}")
    evidence = evidence or {}
    findings = Findings(**{f: Finding.of(states.get(f), evidence.get(f)) for f in FIELDS})
    return UMSRecord(schema_version=SCHEMA_VERSION, modality="CXR", anatomy="chest", study_view=view,
                     findings=findings, ct_findings=None, provenance=prov)


def ct_record(prov: Provenance, nodule_malignancy: str | None = None, organ: str | None = None,
              anatomy: str = "chest") -> UMSRecord:
    """A CT record (LIDC nodule: anatomy chest; organ slice: anatomy abdomen)."""
    return UMSRecord(schema_version=SCHEMA_VERSION, modality="CT", anatomy=anatomy, study_view=None,
                     findings=None, ct_findings=CTFindings(nodule_malignancy=nodule_malignancy, organ=organ),
                     provenance=prov)


def target_text(record: UMSRecord, fields: tuple[str, ...] | list[str] = PRETRAIN_FIELDS) -> str:
    """The training target: compact JSON of modality, the fields' states (display names) and study view.

    Every requested field is present (explicit nulls), in the order given; nothing else enters, so
    identical findings give identical text. For a CT record ``fields`` are keys of ``CT_DISPLAY_NAMES``.
    """
    if record.modality == "CXR":
        states = {f: getattr(record.findings, f).state for f in fields if f in DISPLAY_NAMES}
    else:
        states = {f: getattr(record.ct_findings, f) for f in fields if f in CT_DISPLAY_NAMES}
    return target_text_of(record.modality, record.study_view, states, fields)


def target_text_of(modality: str, view: str | None, states: dict[str, str | None],
                   fields: tuple[str, ...] | list[str]) -> str:
    """``target_text`` from plain values (``states`` keyed by field key; missing fields are null)."""
    names = DISPLAY_NAMES if modality == "CXR" else CT_DISPLAY_NAMES
    unknown = [f for f in fields if f not in names]
    if unknown:
        raise ValueError(f"target_text: unknown {modality} field(s) {unknown}")
    doc = {"modality": modality, "findings": {names[f]: {"state": states.get(f)} for f in fields},
           "study_view": view}
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)


def target_hash(text: str) -> str:
    """sha256 hex digest of a target text (the teacher's cache key)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def json_schema() -> str:
    """The UMS record's JSON Schema as stable text (what ``schema/ums.schema.json`` holds)."""
    schema = UMSRecord.model_json_schema()
    schema["$id"] = f"https://github.com/vivid-med/vivid-med/schema/ums-{SCHEMA_VERSION}.json"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_json_schema(path: str | Path) -> Path:
    """Write ``json_schema()`` to ``path`` (parents created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json_schema())
    return path


def without_report_text(ums_json: str) -> str:
    """The same record with every evidence sentence set to null: no report text left, offsets kept."""
    doc = json.loads(ums_json)
    for finding in (doc.get("findings") or {}).values():
        if finding.get("evidence"):
            finding["evidence"]["sentence"] = None
    return UMSRecord.model_validate_json(json.dumps(doc)).model_dump_json()
