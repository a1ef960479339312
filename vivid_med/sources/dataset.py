"""The dataset registry: one class per ``kind:``, for record sources and evaluation image sets alike.

A params entry names a kind and its options::

    records.sources.<name>:      {kind: nih, root: /data/ChestX-ray14, val_fraction: 0.1}
    evaluate.image_sets.<name>:  {kind: lidc, root: /data/LIDC-IDRI, rule: median}

``parse_dataset(spec, role, where)`` checks the kind (registered, and providing ``role``) and validates the
options with the kind's ``Options`` model before any data is read; ``open_dataset(options)`` builds the adapter.
A record source's ``records()`` returns ``SourceRows``; an image set's ``image_set()`` returns an ``ImageSet``.
Only registered classes can be named: nothing is imported from a string.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import numpy as np
from pydantic import AfterValidator, BeforeValidator, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from vivid_med.params import NonNegativeInt, ParamsError, PositiveInt, Probability, StrictParams, describe_errors
from vivid_med.registry import Registry
from vivid_med.sources.base import SPLITS, ImageSet, split_by_patient
from vivid_med.sources.cxr import SourceRows

Role = Literal["records", "image_set"]
D = TypeVar("D", bound=type["Dataset"])


def _sums_to_one(fractions: list[float]) -> list[float]:
    if abs(sum(fractions) - 1) > 1e-6:
        raise ValueError(f"fractions must sum to 1, they sum to {sum(fractions):g}")
    return fractions


#: An option: the fractions of patients in train / val / test (3 numbers in [0, 1] summing to 1).
SplitFractions = Annotated[list[Probability], Field(min_length=3, max_length=3), AfterValidator(_sums_to_one)]


def _positive_width(window: list[float]) -> list[float]:
    if window[0] <= 0:
        raise ValueError(f"window width must be > 0, got {window[0]:g}")
    return window


#: An option: a display window [width, level] in Hounsfield units.
HuWindow = Annotated[list[float], Field(min_length=2, max_length=2), AfterValidator(_positive_width)]


class DatasetOptions(StrictParams):
    """Every dataset's options: its ``kind`` (the registry key) and ``root`` (folder or file it reads)."""

    kind: str
    root: Annotated[str, Field(min_length=1)]


class ResplitImageOptions(DatasetOptions):
    """A folder of images with a labels.csv, re-split by patient (its own splits share patients): the side the
    images are resized to, the split fractions (train, val, test) and the seed of the patient permutation."""

    size: PositiveInt = 64
    fractions: SplitFractions = [0.7, 0.1, 0.2]
    seed: NonNegativeInt = 0

    def splits(self, patient_ids) -> np.ndarray:
        """str [N]: each image's split, whole patients at a time."""
        return split_by_patient(patient_ids, dict(zip(SPLITS, self.fractions)), self.seed).to_numpy().astype(str)


class RecordOptions(DatasetOptions):
    """A record source's options; ``check_images: false`` skips the per-file image checks. Each kind adds
    ``labels`` (the routes it supports: ``table`` and/or ``reports``) and its own options."""

    check_images: bool = True
    labels: str


class Dataset(ABC):
    """One dataset kind. ``Options`` validates its params entry; ``roles()`` says what it provides."""

    kind: ClassVar[str]
    Options: ClassVar[type[DatasetOptions]] = DatasetOptions

    def __init__(self, options: DatasetOptions) -> None:
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} needs {self.Options.__qualname__}, got {type(options).__name__}")
        self.options = options

    @property
    def root(self) -> Path:
        return Path(self.options.root)

    @classmethod
    def roles(cls) -> tuple[Role, ...]:
        bases: tuple[tuple[Role, type], ...] = (("records", RecordSource), ("image_set", ImageSetSource))
        return tuple(role for role, base in bases if issubclass(cls, base))

    @classmethod
    def at(cls, root: str | Path, **options: Any) -> "Dataset":
        """The adapter for ``root`` with ``options`` (validated as a params entry would be; for code and tests)."""
        return cls(cls.Options.model_validate({"kind": cls.kind, "root": str(root), **options}))


class RecordSource(Dataset):
    """A dataset whose images become UMS records: ``records()`` -> ``SourceRows`` (one row per input image)."""

    Options: ClassVar[type[RecordOptions]] = RecordOptions

    @abstractmethod
    def records(self) -> SourceRows: ...


class ImageSetSource(Dataset):
    """A labelled image set for probes and transfer: ``image_set()`` -> ``ImageSet``."""

    @abstractmethod
    def image_set(self) -> ImageSet: ...


#: Every dataset kind, by the name params use as ``kind:``.
DATASETS: Registry[type[Dataset]] = Registry("dataset kind")


def register(kind: str) -> Callable[[D], D]:
    """``@register("nih") class NihChestXray14(RecordSource)``: adds the class to DATASETS under ``kind``."""
    def add(cls: D) -> D:
        cls.kind = kind
        return DATASETS.register(kind)(cls)
    return add


def kinds(role: Role) -> list[str]:
    """The registered kinds that provide ``role``."""
    return [k for k in DATASETS if role in DATASETS[k].roles()]


def _kind_error(spec: Any, kind_type: str, message: str) -> ValidationError:
    error = "missing" if kind_type == "missing" else PydanticCustomError(kind_type, message)
    return ValidationError.from_exception_data("dataset", [InitErrorDetails(
        type=error, loc=("kind",), input=spec.get("kind") if kind_type != "missing" else spec)])


def validate_options(role: Role, spec: Any) -> DatasetOptions:
    """``spec`` (a params mapping) -> the kind's validated Options; ValidationError located at the bad key."""
    if not isinstance(spec, dict):
        raise PydanticCustomError("dataset_spec", "expected a mapping {kind: ..., root: ..., <options>}")
    if "kind" not in spec:
        raise _kind_error(spec, "missing", "")
    allowed = kinds(role)
    kind = spec["kind"]
    if not isinstance(kind, str) or kind not in DATASETS:
        raise _kind_error(spec, "unknown_kind", f"unknown dataset kind; {role} kinds: {allowed}")
    if kind not in allowed:
        raise _kind_error(spec, "wrong_role", f"{kind!r} provides {list(DATASETS[kind].roles())}, not {role}; "
                                              f"{role} kinds: {allowed}")
    return DATASETS[kind].Options.model_validate(spec)


#: A params entry of a record source (``records.sources.<name>``), validated into its kind's Options.
RecordSourceSpec = Annotated[RecordOptions, BeforeValidator(partial(validate_options, "records"))]
#: A params entry of an evaluation image set (``evaluate.image_sets.<name>``), validated into its kind's Options.
ImageSetSpec = Annotated[DatasetOptions, BeforeValidator(partial(validate_options, "image_set"))]


def parse_dataset(spec: Any, role: Role, where: str) -> DatasetOptions:
    """Validate one params entry before any data is read; ParamsError naming ``<where>.<key>`` and what is allowed."""
    try:
        return validate_options(role, spec)
    except ValidationError as e:
        raise ParamsError(describe_errors(e, where)) from None
    except PydanticCustomError as e:
        raise ParamsError(f"{where}: {e.message()} (got {spec!r})") from None


def open_dataset(options: DatasetOptions) -> Dataset:
    """The adapter of validated options (``parse_dataset``'s result)."""
    return DATASETS[options.kind](options)
