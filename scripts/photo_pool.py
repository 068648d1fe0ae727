"""Gather the offline clean photos into folders for training and evaluating the default model.

    python scripts/photo_pool.py DEST   ->  DEST/train/  (sample photos' TRAIN split + opencv-doc photos)
                                            DEST/heldout/ (the HELDOUT sample photos, never trained on)

Run ``scripts/fetch_opencv_photos.sh`` first for the opencv-doc photos (without them only the ~8
package photos are used). Nothing is downloaded here.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from exda.data.samples import export_samples, opencv_photos


def main(dest: Path) -> None:
    train, heldout = dest / "train", dest / "heldout"
    train.mkdir(parents=True, exist_ok=True)
    exported = export_samples(train, "train")
    extra = opencv_photos()
    for path in extra:
        shutil.copy2(path, train / f"opencv_{path.name}")
    export_samples(heldout, "heldout")
    print(f"{len(exported)} sample photos + {len(extra)} opencv-doc photos in {train}; held-out in {heldout}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python scripts/photo_pool.py DEST")
    main(Path(sys.argv[1]))
