"""The frozen language-model teacher: loading (``load``), conversion (``convert``), embeddings of UMS JSON
(``embed``), the cache of one embedding per distinct target (``cache``) and the paper's online soft-prefix
loss (``online``)."""

from vivid_med.teacher.cache import TeacherCache, load_cache
from vivid_med.teacher.load import Teacher, load_teacher

__all__ = ["Teacher", "TeacherCache", "load_cache", "load_teacher"]
