"""The package around the ops: library lookup, version, devices, contexts, array kinds. NumPy only except where a
test says otherwise."""

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import dlkernels as dk
from dlkernels import _lib

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_version_and_devices():
    major, minor, patch = (int(p) for p in dk.version().split("."))
    assert major == _lib.EXPECTED_MAJOR
    assert _lib.lib().dlk_version() == major * 10000 + minor * 100 + patch
    devices = dk.available_devices()
    assert "cpu" in devices and set(devices) <= {"cpu", "cuda", "emu"}
    assert os.path.exists(dk.library_path()) or not os.path.isabs(dk.library_path())


def run_python(code, env_updates, cwd=None):
    env = dict(os.environ)
    for k, v in env_updates.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True)


def real_library():
    path = os.path.realpath(dk.library_path())
    if not os.path.exists(path):
        pytest.skip("the library was found by the system loader, no file to copy")
    return path


@pytest.mark.parametrize("where", ["package", "build"])
def test_lookup_beside_package_then_build_tree(tmp_path, where):
    """Without DLKERNELS_LIBRARY: libdlkernels.so* next to the package, else <repo>/build/libdlkernels.so."""
    lib = real_library()
    repo = tmp_path / "repo"
    shutil.copytree(os.path.join(PYTHON_DIR, "dlkernels"), repo / "python" / "dlkernels",
                    ignore=shutil.ignore_patterns("__pycache__", "libdlkernels.so*"))
    target = (repo / "python" / "dlkernels" / "libdlkernels.so.0") if where == "package" else (
        repo / "build" / "libdlkernels.so")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(lib, target)
    code = "import dlkernels, numpy as np; print(dlkernels.library_path()); print(dlkernels.softmax(np.ones(2, 'f')))"
    r = run_python(code, {"DLKERNELS_LIBRARY": None, "PYTHONPATH": str(repo / "python")}, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(target)
    assert "0.5" in r.stdout


def test_env_library_that_does_not_exist():
    code = "import dlkernels\ntry:\n  dlkernels.version()\nexcept dlkernels.LibraryNotFoundError as e:\n  print(e)"
    r = run_python(code, {"DLKERNELS_LIBRARY": "/nonexistent/libdlkernels.so", "PYTHONPATH": PYTHON_DIR})
    assert r.returncode == 0, r.stderr
    assert "DLKERNELS_LIBRARY: /nonexistent/libdlkernels.so (not found)" in r.stdout


def test_import_never_loads_the_library():
    r = run_python("import dlkernels, sys; print(dlkernels._lib._lib is None)",
                   {"DLKERNELS_LIBRARY": "/nonexistent.so", "PYTHONPATH": PYTHON_DIR})
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr


def test_params_are_filled_by_the_library():
    p = _lib.softmax_params()
    assert p.struct_size == __import__("ctypes").sizeof(_lib.SoftmaxParams) and p.scale == 1.0 and p.mask_kind == 0
    q = _lib.layernorm_params()
    assert abs(q.eps - 1e-5) < 1e-12 and q.normalized_ndim == 1 and q.accumulate == 0


def test_context_as_keyword_and_as_with_block(device):
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    ref = np.exp(x) / np.exp(x).sum()
    c = dk.Context(device, num_threads=1, deterministic=True, seed=7)
    assert c.device == (device if device != "auto" else c.device) and repr(c).startswith("dlkernels.Context(")
    np.testing.assert_allclose(dk.softmax(x, context=c), ref, rtol=1e-6)
    np.testing.assert_allclose(dk.softmax(x, context=device), ref, rtol=1e-6)  # a device name works too
    assert dk.current_context() is None
    with c as entered:
        assert entered is c and dk.current_context() is c
        with dk.Context("cpu") as inner:
            assert dk.current_context() is inner
        assert dk.current_context() is c
        np.testing.assert_allclose(dk.softmax(x), ref, rtol=1e-6)
    assert dk.current_context() is None
    np.testing.assert_allclose(dk.softmax(x, context=c), ref, rtol=1e-6)  # still usable after the block
    c.synchronize()
    c.close()
    c.close()  # closing twice is harmless


def test_default_context_follows_env():
    code = "import dlkernels; print(dlkernels.default_context().device)"
    r = run_python(code, {"DLKERNELS_DEVICE": "cpu", "PYTHONPATH": PYTHON_DIR})
    assert r.returncode == 0 and r.stdout.strip() == "cpu", r.stderr
    if "emu" in dk.available_devices():
        r = run_python(code, {"DLKERNELS_DEVICE": "emu", "PYTHONPATH": PYTHON_DIR})
        assert r.returncode == 0 and r.stdout.strip() == "emu", r.stderr


def test_numpy_in_numpy_out(ctx):
    y = dk.softmax(np.zeros((1, 2), np.float16), context=ctx)
    assert isinstance(y, np.ndarray) and y.dtype == np.float16
    np.testing.assert_array_equal(y, [[0.5, 0.5]])


def test_torch_in_torch_out_zero_copy(ctx):
    torch = pytest.importorskip("torch")
    x = torch.randn(3, 5, dtype=torch.bfloat16)
    y = dk.softmax(x, context=ctx)
    assert isinstance(y, torch.Tensor) and y.dtype == torch.bfloat16 and y.device == x.device
    # The output is written in place through DLPack: its storage is a fresh torch allocation.
    assert y.data_ptr() != x.data_ptr()
    w = torch.ones(5, requires_grad=True)  # parameters with requires_grad are accepted (detached)
    out = dk.layer_norm(x.float(), (5,), w, context=ctx)
    assert isinstance(out, torch.Tensor) and not out.requires_grad


def test_other_dlpack_producers_come_back_as_numpy(ctx):
    class Producer:
        def __init__(self, a):
            self.a = a

        def __dlpack__(self, stream=None):
            return self.a.__dlpack__()

        def __dlpack_device__(self):
            return self.a.__dlpack_device__()

    if not hasattr(np.ndarray, "__dlpack__"):
        pytest.skip("NumPy without DLPack support")
    y = dk.softmax(Producer(np.zeros((2, 4), np.float32)), context=ctx)
    assert isinstance(y, np.ndarray)
    np.testing.assert_allclose(y, 0.25)
