"""Contexts: the Context class, the one made current by `with`, and the default ones.

Which context runs a call, first match wins:
  1. the `context=` argument (a Context, or a device string such as 'emu' or 'cuda:1');
  2. the innermost `with Context(...)` block of the calling thread;
  3. the default for the environment variable DLKERNELS_DEVICE (auto|cpu|cuda|emu, 'auto' when unset). With 'auto'
     the backend follows the data: host arrays (NumPy, CPU tensors) run on cpu, CUDA tensors on cuda. Naming a
     device pins every call to it.
run() is how every op calls the library: it resolves the context and orders the work with torch's CUDA stream.
"""

import ctypes
import os
import threading

from . import _lib, _tensor

_DEVICE_NAMES = {"auto": _lib.Device.AUTO, "cpu": _lib.Device.CPU, "cuda": _lib.Device.CUDA, "emu": _lib.Device.EMU}


def _parse_device(device, device_index):
    """'cuda:1' -> (Device.CUDA, 1); Device/int values pass through."""
    if isinstance(device, _lib.Device):
        return device, device_index
    if isinstance(device, int) and not isinstance(device, bool):
        return _lib.Device(device), device_index
    if isinstance(device, str):
        name, _, index = device.strip().lower().partition(":")
        if name in _DEVICE_NAMES:
            if index:
                if not index.isdigit():
                    raise ValueError("dlkernels: bad device index in %r" % device)
                device_index = int(index)
            return _DEVICE_NAMES[name], device_index
    raise ValueError("dlkernels: device must be one of 'auto', 'cpu', 'cuda', 'cuda:<index>', 'emu', got %r"
                     % (device,))


class Context:
    """A dlk_context: one backend with its stream and workspace.

    Context(device='auto', device_index=0, deterministic=False, seed=0, num_threads=0, stream=None)

    Pass it as `context=` to any function, or make it current for the calling thread with `with Context('emu'):`.
    Leaving the `with` block restores the previous context but keeps this one usable; close() (or garbage
    collection) destroys it. `stream` is a cudaStream_t as an int (e.g. torch.cuda.current_stream().cuda_stream).
    """

    def __init__(self, device="auto", device_index=0, deterministic=False, seed=0, num_threads=0, stream=None):
        kind, index = _parse_device(device, device_index)
        opts = _lib.context_options()
        opts.device = int(kind)
        opts.device_index = int(index)
        opts.deterministic = 1 if deterministic else 0
        opts.seed = int(seed)
        opts.num_threads = int(num_threads)
        opts.stream = stream
        handle = ctypes.c_void_p()
        _lib.call("dlk_context_create", ctypes.byref(opts), ctypes.byref(handle))
        self._handle = handle
        resolved = ctypes.c_int()
        _lib.call("dlk_context_device", handle, ctypes.byref(resolved))
        self._device = _lib.Device(resolved.value)
        self.device_index = int(index)
        self.deterministic = bool(deterministic)
        self.seed = int(seed)
        self.num_threads = int(num_threads)

    @property
    def device(self):
        """The backend this context resolved to: 'cpu', 'cuda' or 'emu' (never 'auto')."""
        return self._device.name.lower()

    @property
    def handle(self):
        """The dlk_context* as a ctypes.c_void_p; raises ValueError once closed."""
        if self._handle is None:
            raise ValueError("dlkernels: this Context is closed")
        return self._handle

    def synchronize(self):
        """Waits for all work issued on this context."""
        _lib.call("dlk_context_synchronize", self.handle)

    def close(self):
        """Destroys the context; using it afterwards raises ValueError."""
        handle, self._handle = getattr(self, "_handle", None), None
        if handle is not None and _lib is not None and _lib._lib is not None:
            _lib._lib.dlk_context_destroy(handle)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown: the module may already be torn down
            pass

    def __enter__(self):
        _stack().append(self)
        return self

    def __exit__(self, *exc):
        stack = _stack()
        if stack and stack[-1] is self:
            stack.pop()
        return False

    def __repr__(self):
        state = "closed" if self._handle is None else "device=%r" % self.device
        if self.device == "cuda":
            state += ", device_index=%d" % self.device_index
        return "dlkernels.Context(%s)" % state


_local = threading.local()
_defaults = {}
_defaults_lock = threading.Lock()


def _stack():
    if not hasattr(_local, "stack"):
        _local.stack = []
    return _local.stack


def _cached(device, index=0):
    """One shared Context per (device, index) for string devices and the defaults."""
    key = (int(device), index)
    with _defaults_lock:
        ctx = _defaults.get(key)
        if ctx is None:
            ctx = _defaults[key] = Context(device, index)
        return ctx


def default_device():
    """DLKERNELS_DEVICE, 'auto' when unset."""
    name = os.environ.get("DLKERNELS_DEVICE", "auto") or "auto"
    _parse_device(name, 0)  # validate
    return name


def default_context():
    """The module-level context for DLKERNELS_DEVICE (with 'auto', the library's choice: cuda on a GPU, else cpu)."""
    kind, index = _parse_device(default_device(), 0)
    return _cached(kind, index)


def current_context():
    """The innermost `with Context(...)` of this thread, else None."""
    stack = _stack()
    return stack[-1] if stack else None


def resolve(context, data_device):
    """The Context to run on; `data_device` is ('cpu', 0) or ('cuda', index) of the call's first tensor."""
    if isinstance(context, Context):
        return context
    if context is not None:
        kind, index = _parse_device(context, 0)
        if kind == _lib.Device.AUTO:
            kind, index = _follow_data(data_device)
        return _cached(kind, index)
    ctx = current_context()
    if ctx is not None:
        return ctx
    kind, index = _parse_device(default_device(), 0)
    if kind == _lib.Device.AUTO:
        kind, index = _follow_data(data_device)
    return _cached(kind, index)


def run(context, main, inputs, name, *args):
    """Runs dlk_<name>(handle, *args) on the context resolved from `main`'s device (host when main is None), first
    letting torch's queued CUDA work on `inputs` finish, and after it waiting for the library's work the caller will
    read. Returns the Context."""
    ctx = resolve(context, main.device if main is not None else ("cpu", 0))
    cuda = _tensor.sync_torch_cuda(*inputs)
    _lib.call(name, ctx.handle, *args)
    if cuda:
        ctx.synchronize()
    return ctx


def _follow_data(data_device):
    if data_device[0] == "cuda":
        return _lib.Device.CUDA, data_device[1]
    return _lib.Device.CPU, 0


def available_devices():
    """Backends usable here: 'cpu' always, 'emu' when built in, 'cuda' when built in and a GPU is present."""
    lib = _lib.lib()
    out = []
    for name in ("cpu", "cuda", "emu"):
        kind = _DEVICE_NAMES[name]
        if not lib.dlk_backend_available(int(kind)):
            continue
        if kind == _lib.Device.CUDA and lib.dlk_cuda_device_count() <= 0:
            continue
        out.append(name)
    return out
