"""Typed, strict configuration of the synthetic demo cohort (the ``demo:`` section of params.yaml).

Everything is validated before any file is written: missing or unknown keys (including unknown findings in a
prevalence table), non-positive sizes, probabilities outside [0, 1] and inverted ranges are refused with a
message naming the key (``demo.mimic.n_patients``, ``demo.prevalence.edema``, ``demo.prevalence.not_a_finding``).
No key has a default: params.yaml holds the values.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, PositiveInt, create_model, model_validator

from vivid_med.fields import FIELDS
from vivid_med.params import NonNegativeInt, Probability, StrictParams

#: The 13 findings a study can have (No Finding is derived, never sampled).
FINDINGS: tuple[str, ...] = tuple(f for f in FIELDS if f != "no_finding")


def _low_le_high(value: list[int]) -> list[int]:
    if value[0] > value[1]:
        raise ValueError(f"range {value} has low > high")
    return value


#: An inclusive [low, high] range of counts.
Range = Annotated[list[PositiveInt], Field(min_length=2, max_length=2), AfterValidator(_low_le_high)]

#: One probability per finding (each required); an unknown finding key is an "extra input" error naming that key.
Prevalence: type[StrictParams] = create_model(  # type: ignore[call-overload]
    "Prevalence", __base__=StrictParams, **{k: (Probability, ...) for k in FINDINGS}
)


class MimicConfig(StrictParams):
    """The main cohort (MIMIC-CXR-JPG layout, with free-text reports)."""

    n_patients: PositiveInt
    studies_per_patient: Range
    lateral_fraction: Probability
    image_size: Annotated[int, Field(ge=16, le=1024)]
    val_fraction: Probability
    test_fraction: Probability

    @model_validator(mode="after")
    def _fractions(self) -> "MimicConfig":
        if self.val_fraction + self.test_fraction >= 1.0:
            raise ValueError("val_fraction + test_fraction must be < 1")
        return self


class NihConfig(StrictParams):
    """The "external site" cohort (NIH ChestX-ray14 layout, domain-shifted, labels only)."""

    n_patients: PositiveInt
    images_per_patient: Range
    image_size: Annotated[int, Field(ge=16, le=1024)]
    test_fraction: Annotated[float, Field(gt=0.0, lt=1.0)]
    prevalence: Prevalence  # type: ignore[valid-type]


class LidcConfig(StrictParams):
    """CT in the LIDC-IDRI layout (passed as a dict to ``vivid_med.demo.ct.write_lidc``)."""

    n_patients: PositiveInt
    slices: Annotated[int, Field(ge=8)]  # the limits write_lidc needs (nodules span slices)
    matrix: Annotated[int, Field(ge=32, le=512)]


class OrganConfig(StrictParams):
    """Abdominal organ slices (passed as a dict to ``vivid_med.demo.ct.write_organ``)."""

    n_per_class: Annotated[int, Field(ge=4)]  # at least one crop per split (60/10/30)
    image_size: Annotated[int, Field(ge=16, le=512)]
    n_nifti_cases: PositiveInt


class DemoConfig(StrictParams):
    """The whole ``demo:`` section (``stages._params.section(DemoConfig, "demo")`` validates it before any work);
    ``prevalence`` is the MIMIC cohort's base prevalence per finding."""

    seed: NonNegativeInt
    mimic: MimicConfig
    nih: NihConfig
    lidc: LidcConfig
    organ: OrganConfig
    prevalence: Prevalence  # type: ignore[valid-type]
