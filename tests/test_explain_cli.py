"""`ferkit predict --explain` and `ferkit predict --camera` on the command line (issue 29, items 5 and 6).

Skipped until commands.py has the flags (the hooks that call `ferkit.infer.explain` and
`ferkit.infer.video.run_camera`); the library under them is tested in test_explain.py and test_tracking.py.
"""
from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
from PIL import Image
from test_infer import grace_hopper

from ferkit.cli import main


def has_flag(flag: str) -> bool:
    from ferkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command" or getattr(a, "choices", None))
    return flag in sub.choices["predict"]._option_string_actions


def test_explain_writes_a_heatmap_per_face_and_paints_the_annotated_copy(tmp_path, capsys):
    if not has_flag("--explain"):
        pytest.skip("ferkit predict has no --explain yet (issue 29, item 5 hook in commands.py)")
    photo = tmp_path / "in" / "portrait.jpg"
    photo.parent.mkdir()
    shutil.copy(grace_hopper(), photo)
    heat, plain, painted = tmp_path / "heat", tmp_path / "plain", tmp_path / "painted"
    assert main(["predict", str(photo), "--annotate", str(plain), "--quiet"]) == 0
    assert main(["predict", str(photo), "--explain", str(heat), "--annotate", str(painted), "--quiet"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [p.name for p in heat.iterdir()] == ["portrait_face0.png"] and len(rows) == 2
    assert Image.open(heat / "portrait_face0.png").size == (192, 192)
    a, b = (np.asarray(Image.open(d / "portrait.jpg")).astype(int) for d in (plain, painted))
    x, y, w, h = rows[1]["box"]
    assert np.abs(a - b)[y:y + h, x:x + w].mean() > 5  # the heat is painted over the face
    # a second run: the heatmap file is there, so it is refused without --force, before any work
    assert main(["predict", str(photo), "--explain", str(heat), "--quiet"]) == 2
    assert "--force" in capsys.readouterr().err


def test_camera_on_the_command_line_with_a_stand_in_video(tmp_path):
    if not has_flag("--camera"):
        pytest.skip("ferkit predict has no --camera yet (issue 29, item 6 hook in commands.py)")
    from ferkit.infer.io import decode_image

    face = cv2.resize(decode_image(grace_hopper().read_bytes())[90:400, 110:420], (110, 110))
    clip = tmp_path / "camera.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (240, 180))
    for step in range(12):
        frame = np.full((180, 240, 3), 120, np.uint8)
        frame[30:140, 10 + 4 * step:120 + 4 * step] = face
        writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    writer.release()
    out = tmp_path / "rows.jsonl"
    assert main(["predict", "--camera", str(clip), "--out", str(out), "--quiet"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in rows] == list(range(12)) and {r["track"] for r in rows} == {0}
    assert all(r["file"] == f"camera:{clip}" and len(r["landmarks"]) == 5 for r in rows)
    assert main(["predict", "--camera", str(tmp_path / "video9")]) == 2  # no such device: one line, exit 2
