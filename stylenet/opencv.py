"""OpenCV, imported in one place, with an error that says what to install when it cannot load.

The default install is `opencv-python`, the build with a window (the webcam's). Its import
needs the system's libGL and GLib, which a minimal server or container lacks: there the
import fails with "libGL.so.1: cannot open shared object file". Every module of the package
takes `cv2` from here (`from .opencv import cv2`), so that failure is one `error: ...` line
naming the package to install (a UserError: `commands/app.py` reports it), not a traceback.
"""

from __future__ import annotations

import re

from .errors import UserError

#: the Debian/Ubuntu package of each system library an OpenCV wheel loads
SYSTEM_PACKAGES = {
    "libGL.so.1": "libgl1", "libGLX.so.0": "libgl1", "libGLdispatch.so.0": "libgl1",
    "libglib-2.0.so.0": "libglib2.0-0", "libgthread-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6", "libICE.so.6": "libice6", "libXext.so.6": "libxext6",
    "libX11.so.6": "libx11-6", "libxcb.so.1": "libxcb1",
}
HEADLESS = "pip uninstall -y opencv-python && pip install opencv-python-headless"


class OpenCVError(UserError):
    """OpenCV is missing or cannot load (a system library it needs is not installed)."""


def explain(exc: ImportError) -> str:
    """The one-line reason `import cv2` failed, and the command that fixes it."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] == "cv2":
        return ("OpenCV is not installed: pip install opencv-python "
                "(or opencv-python-headless on a server that never opens a window)")
    missing = re.search(r"([\w.+-]+\.so[\w.]*): cannot open shared object file", text)
    if missing:
        lib = missing.group(1)
        packages = ["libgl1", "libglib2.0-0"]
        if SYSTEM_PACKAGES.get(lib, "libgl1") not in packages:
            packages.append(SYSTEM_PACKAGES[lib])
        return (f"OpenCV cannot load: the system library {lib} is missing; install it with "
                f"apt-get install {' '.join(packages)} (Debian/Ubuntu; as root or with sudo), or on a server that "
                f"never opens a window switch to the headless build: {HEADLESS}")
    return (f"OpenCV cannot load ({text}); reinstall it: pip install --force-reinstall --no-deps opencv-python "
            "(have only one of opencv-python and opencv-python-headless installed: they share the cv2 folder)")


try:
    import cv2
except ImportError as exc:
    raise OpenCVError(explain(exc)) from exc

__all__ = ["cv2", "OpenCVError", "explain"]
