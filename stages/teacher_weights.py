"""Stage `teacher_weights`: the teacher as a plain safetensors checkpoint in models/teacher/<name>/.

params (section ``teacher``): ``model`` (``smollm2``: the bundled GGUF, dequantised once; ``minilm``: the
bundled sentence encoder; a local Hugging Face folder; or a hub id for users with network),
``trust_remote_code``. Later stages load the folder in well under a second.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from stages._params import load_section
from vivid_med.teacher.convert import convert, teacher_name
from vivid_med.teacher.load import fingerprint_folder

OUT = Path("models/teacher")


def main() -> None:
    params = load_section("teacher")
    out = OUT / teacher_name(params["model"])
    if OUT.exists():
        shutil.rmtree(OUT)
    convert(params["model"], out, trust_remote_code=bool(params.get("trust_remote_code", False)))
    print(f"teacher_weights: {params['model']} -> {out} (fingerprint {fingerprint_folder(out)[:16]})")


if __name__ == "__main__":
    sys.exit(main())
