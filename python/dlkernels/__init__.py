"""dlkernels: the dlkernels C library (libdlkernels.so) from Python, through ctypes: no compilation step.

    import dlkernels as dk
    y = dk.softmax(x, -1, causal=True)                      # like torch.nn.functional.softmax
    y, mean, rstd = dk.layer_norm(x, (C,), w, b, return_stats=True)
    dx, dw, db = dk.layer_norm_backward(dy, x, mean, rstd, (C,), w, b)

Arrays: NumPy (float32, float16) or PyTorch tensors (also bfloat16, CPU or CUDA); the output has the input's kind.
Library: $DLKERNELS_LIBRARY, else libdlkernels.so* beside this package, else <repo>/build/, else the system loader.
Device: the `context=` argument, else the current `with Context(...)`, else $DLKERNELS_DEVICE (auto|cpu|cuda|emu;
with auto the backend follows the data). Failures raise dlkernels.Error carrying dlk_last_error().
"""

from . import _lib
from ._context import Context, available_devices, current_context, default_context
from ._lib import Error, LibraryNotFoundError, MaskKind, Status, last_error, library_path
from .functional import layer_norm, layer_norm_backward, softmax, softmax_backward
from . import attention, elementwise, gemm, loss, metrics, norm_pool, optim, random  # noqa: E402  (op families)

__version__ = "0.1.0"

__all__ = [
    "Context", "Error", "LibraryNotFoundError", "MaskKind", "Status", "available_devices", "current_context",
    "default_context", "last_error", "layer_norm", "layer_norm_backward", "library_path", "softmax",
    "softmax_backward", "version",
]


_FAMILIES = (attention, elementwise, gemm, loss, metrics, norm_pool, optim, random)


def _export_families():
    """Lifts each family's public functions to the package (dk.relu, dk.cross_entropy, dk.adamw_step, ...), the way
    torch.nn.functional is one flat namespace; the family modules stay importable for the rest."""
    import inspect
    for mod in _FAMILIES:
        names = getattr(mod, "__all__", None) or [
            n for n, f in vars(mod).items() if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == mod.__name__]
        for n in names:
            if n not in globals():
                globals()[n] = getattr(mod, n)
                __all__.append(n)


_export_families()
init = random.init


def version():
    """The loaded library's version as a string, e.g. '0.1.0' (dlk_version() decoded)."""
    v = _lib.lib().dlk_version()
    return "%d.%d.%d" % (v // 10000, v // 100 % 100, v % 100)
