"""The ctypes layer: finds and loads libdlkernels.so, mirrors the C structs of include/dlk/dlk.h, raises Error.

Nothing here knows about NumPy or PyTorch; _tensor.py turns arrays into DLTensors and functional.py calls the ops.
The library is loaded on first use, not at import, so `import dlkernels` always succeeds and a missing library is
reported with every place that was searched.
"""

import ctypes
import ctypes.util
import enum
import glob
import os
import threading

# The package speaks the ABI of this major version (DLK_VERSION_MAJOR in dlk.h).
EXPECTED_MAJOR = 0

# ------------------------------------------------------------------------------------------------ DLPack 0.6


class DLDeviceType(enum.IntEnum):
    kDLCPU = 1
    kDLCUDA = 2
    kDLCUDAHost = 3
    kDLOpenCL = 4
    kDLVulkan = 7
    kDLMetal = 8
    kDLVPI = 9
    kDLROCM = 10
    kDLROCMHost = 11
    kDLExtDev = 12
    kDLCUDAManaged = 13
    kDLOneAPI = 14


class DLDataTypeCode(enum.IntEnum):
    kDLInt = 0
    kDLUInt = 1
    kDLFloat = 2
    kDLOpaqueHandle = 3
    kDLBfloat = 4
    kDLComplex = 5


class DLDevice(ctypes.Structure):
    _fields_ = [("device_type", ctypes.c_int), ("device_id", ctypes.c_int32)]


class DLDataType(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint8), ("bits", ctypes.c_uint8), ("lanes", ctypes.c_uint16)]


class DLTensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device", DLDevice),
        ("ndim", ctypes.c_int32),
        ("dtype", DLDataType),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.POINTER(ctypes.c_int64)),
        ("byte_offset", ctypes.c_uint64),
    ]


class DLManagedTensor(ctypes.Structure):
    pass


DLManagedTensor._fields_ = [
    ("dl_tensor", DLTensor),
    ("manager_ctx", ctypes.c_void_p),
    ("deleter", ctypes.CFUNCTYPE(None, ctypes.POINTER(DLManagedTensor))),
]

# The `const DLTensor*` / `DLTensor*` argument of every entry point.
TensorPtr = ctypes.POINTER(DLTensor)

# ------------------------------------------------------------------------------------------------ dlk.h


class Status(enum.IntEnum):
    """dlk_status; the member names are the C names, e.g. Status.DLK_ERROR_SHAPE."""

    DLK_SUCCESS = 0
    DLK_ERROR_INVALID_ARGUMENT = 1
    DLK_ERROR_SHAPE = 2
    DLK_ERROR_DTYPE = 3
    DLK_ERROR_DEVICE = 4
    DLK_ERROR_LAYOUT = 5
    DLK_ERROR_OVERFLOW = 6
    DLK_ERROR_OUT_OF_MEMORY = 7
    DLK_ERROR_NOT_AVAILABLE = 8
    DLK_ERROR_DEVICE_FAILURE = 9
    DLK_ERROR_INTERNAL = 10


class Device(enum.IntEnum):
    """dlk_device."""

    AUTO = 0
    CPU = 1
    CUDA = 2
    EMU = 3


class MaskKind(enum.IntEnum):
    """dlk_mask_kind."""

    NONE = 0
    CAUSAL = 1
    CAUSAL_BOTTOM_RIGHT = 2
    KEY_PADDING = 3
    TENSOR = 4


class Params(ctypes.Structure):
    """Base of the options/params structs of dlk.h, which all start with struct_size (the ABI's versioning, see
    _filled). A subclass appends its own _fields_ and names in _init_ the library function that fills in its
    defaults; Subclass.filled() returns an instance filled by it."""

    _fields_ = [("struct_size", ctypes.c_size_t)]
    _init_ = None

    @classmethod
    def filled(cls):
        return _filled(cls, cls._init_)

    @classmethod
    def init_prototype(cls):
        """{_init_: ctypes prototype}, for declare()."""
        return {cls._init_: (ctypes.c_int, [ctypes.POINTER(cls)])}


class ContextOptions(Params):
    _init_ = "dlk_context_options_init"
    _fields_ = [
        ("device", ctypes.c_int),
        ("device_index", ctypes.c_int),
        ("stream", ctypes.c_void_p),
        ("deterministic", ctypes.c_int),
        ("seed", ctypes.c_uint64),
        ("num_threads", ctypes.c_int),
    ]


class SoftmaxParams(Params):
    _init_ = "dlk_softmax_params_init"
    _fields_ = [
        ("scale", ctypes.c_float),
        ("mask_kind", ctypes.c_int),
        ("mask", TensorPtr),
        ("lengths", TensorPtr),
    ]


class LayerNormParams(Params):
    _init_ = "dlk_layernorm_params_init"
    _fields_ = [
        ("eps", ctypes.c_float),
        ("normalized_ndim", ctypes.c_int),
        ("accumulate", ctypes.c_int),
    ]


# ------------------------------------------------------------------------------------------------ errors


class Error(RuntimeError):
    """A dlk_* call failed. str(error) is dlk_last_error(); .status is the dlk_status (a Status, whose .name is the
    C name such as 'DLK_ERROR_SHAPE'); .code is its integer value; .function the C entry point that failed."""

    def __init__(self, status, message, function=None):
        try:
            status = Status(status)
        except ValueError:
            pass
        self.status = status
        self.code = int(status)
        self.status_name = status.name if isinstance(status, Status) else "dlk_status %d" % int(status)
        self.message = message
        self.function = function
        super().__init__(message)

    def __repr__(self):
        return "dlkernels.Error(%s, %r)" % (self.status_name, self.message)


class LibraryNotFoundError(OSError):
    """libdlkernels.so could not be found or loaded, or has an unsupported major version."""


# ------------------------------------------------------------------------------------------------ loading

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(os.path.dirname(_PACKAGE_DIR))


def candidates():
    """Where the library is looked for, in order: [(how, path-or-name)]."""
    env = os.environ.get("DLKERNELS_LIBRARY")
    if env:
        return [("DLKERNELS_LIBRARY", env)]  # an explicit choice is never second-guessed
    found = []
    # Next to the package: the plain name first, then versioned names (libdlkernels.so.0, .so.0.1.0).
    beside = sorted(glob.glob(os.path.join(_PACKAGE_DIR, "libdlkernels.so*")), key=lambda p: (len(p), p))
    found += [("package directory", p) for p in beside]
    found.append(("source tree build/", os.path.join(_REPO_DIR, "build", "libdlkernels.so")))
    system = ctypes.util.find_library("dlkernels")
    if system:
        found.append(("system loader", system))
    found.append(("system loader", "libdlkernels.so.0"))
    return found


_lock = threading.Lock()
_lib = None
_lib_path = None


_extra_protos = {}


def op_prototype(*argtypes):
    """The ctypes prototype of an op entry point, for declare(): every one returns a dlk_status and takes the
    dlk_context* first, then `argtypes`."""
    return (ctypes.c_int, [ctypes.c_void_p] + list(argtypes))


def declare(protos, params=()):
    """Registers ctypes prototypes {name: (restype, [argtypes])} for entry points an op module wraps, and the _init_
    function of each Params subclass in `params`; applied when the library loads (or at once if it is loaded)."""
    protos = dict(protos)
    for struct_type in params:
        protos.update(struct_type.init_prototype())
    with _lock:
        _extra_protos.update(protos)
        if _lib is not None:
            _apply(_lib, protos)


def _apply(lib, protos):
    for name, (restype, argtypes) in protos.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def _declare(lib):
    c_int, c_void_p, c_char_p, c_size_t = ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t
    T = TensorPtr
    protos = {
        "dlk_version": (c_int, []),
        "dlk_status_string": (c_char_p, [c_int]),
        "dlk_last_error": (c_char_p, []),
        "dlk_context_create": (c_int, [ctypes.POINTER(ContextOptions), ctypes.POINTER(c_void_p)]),
        "dlk_context_destroy": (c_int, [c_void_p]),
        "dlk_context_device": (c_int, [c_void_p, ctypes.POINTER(c_int)]),
        "dlk_context_synchronize": (c_int, [c_void_p]),
        "dlk_device_name": (c_char_p, [c_int]),
        "dlk_cuda_device_count": (c_int, []),
        "dlk_backend_available": (c_int, [c_int]),
        "dlk_alloc": (c_int, [c_void_p, c_size_t, ctypes.POINTER(c_void_p)]),
        "dlk_free": (c_int, [c_void_p, c_void_p]),
        "dlk_copy": (c_int, [c_void_p, c_void_p, DLDevice, c_void_p, DLDevice, c_size_t]),
        "dlk_softmax_forward": op_prototype(ctypes.POINTER(SoftmaxParams), T, T),
        "dlk_softmax_backward": op_prototype(ctypes.POINTER(SoftmaxParams), T, T, T),
        "dlk_layernorm_forward": op_prototype(ctypes.POINTER(LayerNormParams), T, T, T, T, T, T),
        "dlk_layernorm_backward": op_prototype(ctypes.POINTER(LayerNormParams), T, T, T, T, T, T, T, T),
    }
    for struct_type in (ContextOptions, SoftmaxParams, LayerNormParams):
        protos.update(struct_type.init_prototype())
    _apply(lib, protos)
    _apply(lib, _extra_protos)


def lib():
    """The loaded library (ctypes.CDLL), loading it on first call."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for how, path in candidates():
            if how != "system loader" and not os.path.exists(path):
                tried.append("%s: %s (not found)" % (how, path))
                continue
            try:
                handle = ctypes.CDLL(path)
                _declare(handle)
            except (OSError, AttributeError) as e:
                tried.append("%s: %s (%s)" % (how, path, e))
                if how == "DLKERNELS_LIBRARY":
                    break
                continue
            version = handle.dlk_version()
            if version // 10000 != EXPECTED_MAJOR:
                raise LibraryNotFoundError(
                    "dlkernels: %s has version %d.%d.%d, but this package needs major version %d"
                    % (path, version // 10000, version // 100 % 100, version % 100, EXPECTED_MAJOR))
            _lib, _lib_path = handle, path
            return _lib
        raise LibraryNotFoundError(
            "dlkernels: could not load libdlkernels.so. Build it (cmake -S . -B build && cmake --build build) or "
            "set DLKERNELS_LIBRARY to its path. Tried:\n  " + "\n  ".join(tried))


def library_path():
    """The path (or loader name) of the loaded library."""
    lib()
    return _lib_path


def last_error():
    """dlk_last_error() of the calling thread: the sentence describing its last failed call, "" after a success."""
    return lib().dlk_last_error().decode("utf-8", "replace")


def check(status, function=None):
    """Raises Error carrying dlk_last_error() when `status` is not DLK_SUCCESS."""
    if status != 0:
        # Read at once: the message is thread-local and the next call on this thread clears it.
        raise Error(status, last_error(), function)


def call(name, *args):
    """Calls dlk_<name>(*args) and raises Error on failure."""
    check(getattr(lib(), name)(*args), name)


def _filled(struct_type, init_name):
    """A params struct filled by the library's own *_init function `init_name` (Params.filled() passes its _init_).

    The init writes sizeof(the library's struct), which a newer library may make larger than ours, so it writes into
    a padded buffer; struct_size is then set to our size, which tells the library which fields we know about."""

    class Padded(ctypes.Structure):
        _fields_ = [("value", struct_type), ("_pad", ctypes.c_uint8 * 256)]

    buf = Padded()
    call(init_name, ctypes.byref(buf.value))
    value = struct_type()
    ctypes.memmove(ctypes.byref(value), ctypes.byref(buf.value), ctypes.sizeof(struct_type))
    value.struct_size = ctypes.sizeof(struct_type)
    return value


def context_options():
    return ContextOptions.filled()


def softmax_params():
    return SoftmaxParams.filled()


def layernorm_params():
    return LayerNormParams.filled()
