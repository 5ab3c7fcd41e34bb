"""Arrays -> DLTensors, and outputs of the same kind as the inputs.

Two kinds of array cross the ABI:
  - 'numpy': NumPy arrays and anything np.asarray accepts; also DLPack producers other than PyTorch, read through
    np.from_dlpack (so they must live on the CPU in a dtype NumPy has). Made C-contiguous first when they are not.
  - 'torch': PyTorch tensors, exported zero-copy through __dlpack__ (detached, made contiguous first when they are
    not). This is the way to pass bfloat16, which NumPy lacks, and CUDA memory.
Outputs follow the call's main input: NumPy in -> NumPy out, torch in -> torch out (same device).
"""

import ctypes

import numpy as np

from . import _lib

_F, _I, _U, _BF = (_lib.DLDataTypeCode.kDLFloat, _lib.DLDataTypeCode.kDLInt, _lib.DLDataTypeCode.kDLUInt,
                   _lib.DLDataTypeCode.kDLBfloat)

_capsule_get = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_get.restype = ctypes.c_void_p
_capsule_get.argtypes = [ctypes.py_object, ctypes.c_char_p]


def is_torch(obj):
    return type(obj).__module__.split(".")[0] == "torch" and hasattr(obj, "__dlpack__")


def is_array(obj):
    """Whether `obj` is a NumPy array or a torch tensor (rather than something to convert first)."""
    return is_torch(obj) or isinstance(obj, np.ndarray)


def is_contiguous(obj):
    """Whether `obj` is a C-contiguous NumPy array or a contiguous torch tensor (so it crosses without a copy)."""
    if is_torch(obj):
        return obj.is_contiguous()
    return isinstance(obj, np.ndarray) and obj.flags.c_contiguous


def numel(shape):
    """The element count of `shape` (1 for ())."""
    return int(np.prod(shape, dtype=np.int64))


def ptr(t):
    """The DLTensor pointer of a Tensor, None (a NULL argument) for None."""
    return None if t is None else t.ptr


def array_of(t):
    """The array (NumPy or torch) a Tensor holds, None for None: what an optional output returns."""
    return None if t is None else t.obj


class Tensor:
    """One array as the C API sees it: `.obj` is the (contiguous) array, `.ptr` a pointer to its DLTensor.

    Holds every reference (array, DLPack capsule, shape buffer) the DLTensor points into, so keep it alive for the
    duration of the call."""

    __slots__ = ("obj", "kind", "shape", "dl", "ptr", "_keep")

    def __init__(self, obj, kind, shape, data, device, code, bits, byte_offset=0, keep=()):
        self.obj = obj
        self.kind = kind
        self.shape = tuple(int(s) for s in shape)
        ndim = len(self.shape)
        shape_buf = (ctypes.c_int64 * max(ndim, 1))(*self.shape)
        dl = _lib.DLTensor()
        dl.data = data
        dl.device = device
        dl.ndim = ndim
        dl.dtype = _lib.DLDataType(int(code), int(bits), 1)
        dl.shape = ctypes.cast(shape_buf, ctypes.POINTER(ctypes.c_int64))
        dl.strides = None  # compact row-major: every array here is contiguous
        dl.byte_offset = byte_offset
        self.dl = dl
        self.ptr = ctypes.pointer(dl)
        self._keep = (shape_buf,) + tuple(keep)

    @property
    def dtype_key(self):
        return (self.dl.dtype.code, self.dl.dtype.bits)

    @property
    def device(self):
        """('cpu', 0) for host memory, ('cuda', index) for CUDA memory."""
        d = self.dl.device
        if d.device_type in (_lib.DLDeviceType.kDLCUDA, _lib.DLDeviceType.kDLCUDAManaged):
            return ("cuda", int(d.device_id))
        return ("cpu", 0)


def _numpy_code(dtype, name):
    kind = dtype.kind
    if kind == "f":
        return _F, dtype.itemsize * 8
    if kind == "i":
        return _I, dtype.itemsize * 8
    if kind in "ub":  # DLPack 0.6 has no bool: 0/1 bytes read as uint8
        return _U, dtype.itemsize * 8
    raise TypeError("dlkernels: %s has dtype %s, which has no DLPack equivalent the library accepts"
                    % (name, dtype))


def from_numpy(a, name):
    if not isinstance(a, np.ndarray):
        a = np.asarray(a)
    if not a.dtype.isnative:
        a = a.astype(a.dtype.newbyteorder("="))
    if not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)  # the C API needs compact row-major tensors
    code, bits = _numpy_code(a.dtype, name)
    device = _lib.DLDevice(int(_lib.DLDeviceType.kDLCPU), 0)
    return Tensor(a, "numpy", a.shape, a.ctypes.data, device, code, bits, keep=(a,))


def from_torch(t, name):
    t = t.detach()
    if not t.is_contiguous():
        t = t.contiguous()
    if t.dtype.is_complex or t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    capsule = t.__dlpack__()
    address = _capsule_get(capsule, b"dltensor")
    managed = _lib.DLManagedTensor.from_address(address)
    src = managed.dl_tensor
    shape = tuple(src.shape[i] for i in range(src.ndim))
    if shape != tuple(t.shape):
        raise RuntimeError("dlkernels: DLPack export of %s disagrees with its shape" % name)
    device = _lib.DLDevice(src.device.device_type, src.device.device_id)
    # The capsule stays unconsumed and alive with the Tensor; its destructor gives the memory back to torch.
    return Tensor(t, "torch", shape, src.data, device, src.dtype.code, src.dtype.bits, src.byte_offset,
                  keep=(t, capsule))


def as_tensor(obj, name):
    """Any supported array -> Tensor. None stays None."""
    if obj is None:
        return None
    if isinstance(obj, Tensor):
        return obj
    if isinstance(obj, np.ndarray):
        return from_numpy(obj, name)
    if is_torch(obj):
        return from_torch(obj, name)
    if hasattr(obj, "__dlpack__") and hasattr(np, "from_dlpack"):
        try:
            return from_numpy(np.from_dlpack(obj), name)
        except (TypeError, RuntimeError, BufferError) as e:
            raise TypeError("dlkernels: %s (a %s) could not be read through DLPack as a host array: %s. Pass a "
                            "NumPy array or a PyTorch tensor." % (name, type(obj).__name__, e)) from None
    return from_numpy(obj, name)


# ------------------------------------------------------------------------------------------------ outputs

_NUMPY_BY_KEY = {(_F, 32): np.float32, (_F, 16): np.float16, (_F, 64): np.float64, (_I, 32): np.int32,
                 (_I, 64): np.int64, (_I, 8): np.int8, (_U, 8): np.uint8}
FLOAT32 = (_F, 32)


def _torch_dtype(key):
    import torch

    table = {(_F, 32): torch.float32, (_F, 16): torch.float16, (_BF, 16): torch.bfloat16, (_F, 64): torch.float64,
             (_I, 32): torch.int32, (_I, 64): torch.int64, (_I, 8): torch.int8, (_U, 8): torch.uint8}
    return table[key]


def empty(like, shape, dtype_key=None):
    """A new uninitialised output of `like`'s kind and device, with `shape` and dtype (default: like's dtype)."""
    key = like.dtype_key if dtype_key is None else dtype_key
    if like.kind == "torch":
        import torch

        out = torch.empty(tuple(shape), dtype=_torch_dtype(key), device=like.obj.device)
        return from_torch(out, "output")
    if key not in _NUMPY_BY_KEY:
        raise TypeError("dlkernels: a NumPy output cannot hold dtype code %d bits %d (bfloat16 needs torch tensors)"
                        % key)
    return from_numpy(np.empty(tuple(shape), dtype=_NUMPY_BY_KEY[key]), "output")


def with_shape(t, shape):
    """`t` (contiguous) viewed with another shape of the same size; unchanged when the sizes differ (the library
    then reports the mismatch) or when t is None."""
    shape = tuple(shape)
    if t is None or t.shape == shape:
        return t
    if numel(t.shape) != numel(shape):
        return t
    return as_tensor(t.obj.reshape(shape), "reshaped")


def as_mask(obj, name="mask"):
    """Boolean masks keep where True and cross as uint8 (zero-copy for NumPy); float64 masks cross as float32 (the
    library's additive masks are float32/float16/bfloat16); anything else as it is."""
    if obj is None:
        return None
    if is_torch(obj):
        import torch

        if obj.dtype == torch.bool:
            obj = obj.to(torch.uint8)
        elif obj.dtype == torch.float64:
            obj = obj.to(torch.float32)
        return from_torch(obj, name)
    if not isinstance(obj, np.ndarray):
        obj = np.asarray(obj) if not hasattr(obj, "__dlpack__") else np.from_dlpack(obj)
    if obj.dtype == np.bool_:
        obj = np.ascontiguousarray(obj).view(np.uint8)
    elif obj.dtype == np.float64:
        obj = obj.astype(np.float32)
    return from_numpy(obj, name)


def as_lengths(obj, name="lengths"):
    """Key-padding lengths: int32/int64 as they are; Python ints, lists and other integer arrays as int64."""
    if obj is None:
        return None
    if is_torch(obj):
        import torch

        if obj.dtype not in (torch.int32, torch.int64):
            obj = obj.to(torch.int64)
        return from_torch(obj, name)
    if not isinstance(obj, np.ndarray):
        obj = np.asarray(obj)
    if obj.dtype not in (np.int32, np.int64):
        obj = obj.astype(np.int64)
    return from_numpy(obj, name)


def sync_torch_cuda(*tensors):
    """The library runs on its own stream: let torch's queued work on these CUDA tensors finish first."""
    for t in tensors:
        if t is not None and t.kind == "torch" and t.device[0] == "cuda":
            import torch

            torch.cuda.current_stream(t.obj.device).synchronize()
            return True
    return False
