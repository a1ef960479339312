"""The student: a timm ViT backbone, the SPD query module, the projector, and export/load."""

from vivid_med.student.backbone import BackboneParams, count_params, create_backbone
from vivid_med.student.export import export_backbone, export_student, load_backbone, load_student
from vivid_med.student.projector import Projector
from vivid_med.student.spd import SPD, PooledTokens, SPDParams, build_spd, orthogonality_loss

__all__ = ["BackboneParams", "count_params", "create_backbone", "export_backbone", "export_student", "load_backbone",
           "load_student", "Projector", "SPD", "SPDParams", "PooledTokens", "build_spd", "orthogonality_loss"]
