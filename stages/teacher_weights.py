"""Stage ``teacher_weights``: the teacher (``teacher.model``) as a plain safetensors checkpoint in models/teacher/<name>/.

``smollm2``: the bundled GGUF, dequantised once; ``minilm``: the bundled sentence encoder; a local Hugging Face
folder; or a hub id for users with network. Later stages load the folder in well under a second.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from stages._params import section
from vivid_med.teacher.config import TeacherParams
from vivid_med.teacher.convert import convert, teacher_name
from vivid_med.teacher.load import fingerprint_folder

OUT = Path("models/teacher")


def main(argv: list[str] | None = None) -> None:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    params = section(TeacherParams, "teacher")
    out = OUT / teacher_name(params.model)
    if OUT.exists():
        shutil.rmtree(OUT)
    convert(params.model, out, trust_remote_code=params.trust_remote_code)
    print(f"teacher_weights: {params.model} -> {out} (fingerprint {fingerprint_folder(out)[:16]})")


if __name__ == "__main__":
    main()
