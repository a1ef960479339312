"""Typed, strict configuration of the synthetic demo cohort (the ``demo:`` section of params.yaml).

Everything is validated before any file is written: unknown keys (including unknown findings in a
prevalence table), non-positive sizes, probabilities outside [0, 1] and inverted ranges raise a
``pydantic.ValidationError`` whose message names the offending key (``mimic.n_patients``,
``prevalence.edema``, ``prevalence.not_a_finding``).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, create_model, model_validator

from vivid_med.fields import FIELDS

#: The 13 findings a study can have (No Finding is derived, never sampled).
FINDINGS: tuple[str, ...] = tuple(f for f in FIELDS if f != "no_finding")

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
Range = Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]

#: MIMIC-like base prevalences (mean probability before co-occurrence rules; observed rates come out near
#: MIMIC-CXR's CheXpert label rates).
MIMIC_PREVALENCE: dict[str, float] = {
    "enlarged_cardiomediastinum": 0.02, "cardiomegaly": 0.13, "lung_opacity": 0.1, "lung_lesion": 0.04,
    "edema": 0.1, "consolidation": 0.04, "pneumonia": 0.05, "atelectasis": 0.15, "pneumothorax": 0.04,
    "pleural_effusion": 0.15, "pleural_other": 0.02, "fracture": 0.03, "support_devices": 0.25,
}
#: NIH-like base prevalences, after the frequencies in Data_Entry_2017 (rarest ones floored for a small cohort).
NIH_PREVALENCE: dict[str, float] = {
    "enlarged_cardiomediastinum": 0.03, "cardiomegaly": 0.05, "lung_opacity": 0.15, "lung_lesion": 0.1,
    "edema": 0.04, "consolidation": 0.04, "pneumonia": 0.03, "atelectasis": 0.1, "pneumothorax": 0.05,
    "pleural_effusion": 0.11, "pleural_other": 0.03, "fracture": 0.02, "support_devices": 0.1,
}


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


#: One probability per finding; an unknown finding key is an "extra input" error naming that key.
Prevalence: type[_Strict] = create_model(  # type: ignore[call-overload]
    "Prevalence", __base__=_Strict, **{k: (Prob, MIMIC_PREVALENCE[k]) for k in FINDINGS}
)


def _check_range(value: list[int], what: str) -> None:
    if value[0] > value[1]:
        raise ValueError(f"{what}: range {value} has low > high")


class MimicConfig(_Strict):
    """The main cohort (MIMIC-CXR-JPG layout, with free-text reports)."""

    n_patients: PositiveInt = 1000
    studies_per_patient: Range = [1, 3]
    lateral_fraction: Prob = 0.25
    image_size: Annotated[int, Field(ge=16, le=1024)] = 128
    val_fraction: Prob = 0.1
    test_fraction: Prob = 0.2

    @model_validator(mode="after")
    def _ranges(self) -> "MimicConfig":
        _check_range(self.studies_per_patient, "mimic.studies_per_patient")
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("mimic.val_fraction + mimic.test_fraction must be < 1")
        return self


class NihConfig(_Strict):
    """The "external site" cohort (NIH ChestX-ray14 layout, domain-shifted, labels only)."""

    n_patients: PositiveInt = 300
    images_per_patient: Range = [1, 3]
    image_size: Annotated[int, Field(ge=16, le=1024)] = 128
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.2
    prevalence: Prevalence = Field(default_factory=lambda: Prevalence(**NIH_PREVALENCE))  # type: ignore[valid-type]

    @model_validator(mode="after")
    def _ranges(self) -> "NihConfig":
        _check_range(self.images_per_patient, "nih.images_per_patient")
        return self


class LidcConfig(_Strict):
    """CT in the LIDC-IDRI layout (passed as a dict to ``vivid_med.demo.ct.write_lidc``)."""

    n_patients: PositiveInt = 30
    slices: Annotated[int, Field(ge=8)] = 24  # the limits write_lidc needs (nodules span slices)
    matrix: Annotated[int, Field(ge=32, le=512)] = 96


class OrganConfig(_Strict):
    """Abdominal organ slices (passed as a dict to ``vivid_med.demo.ct.write_organ``)."""

    n_per_class: Annotated[int, Field(ge=4)] = 40  # at least one crop per split (60/10/30)
    image_size: Annotated[int, Field(ge=16, le=512)] = 64
    n_nifti_cases: PositiveInt = 4


class DemoConfig(_Strict):
    """The whole ``demo:`` section. ``DemoConfig.model_validate(section)`` validates before any work."""

    seed: Annotated[int, Field(ge=0)] = 0
    mimic: MimicConfig = MimicConfig()
    nih: NihConfig = NihConfig()
    lidc: LidcConfig = LidcConfig()
    organ: OrganConfig = OrganConfig()
    prevalence: Prevalence = Prevalence()  # type: ignore[valid-type]

    @classmethod
    def from_section(cls, section: dict[str, Any]) -> "DemoConfig":
        """Validate a params.yaml ``demo:`` mapping (raises pydantic.ValidationError naming the key)."""
        return cls.model_validate(section)
