"""Shared fixtures: the backend under test, a fresh seed per test, and the comparison helper.

Backend: DLKERNELS_DEVICE (cpu when unset; the CI runs the suite once with cpu and once with emu). Seed: fresh per
test, printed (pytest shows it with the failure); set DLKERNELS_TEST_SEED to replay one.
"""

import os
import secrets
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dlkernels  # noqa: E402

TOLERANCE = {"float32": 1e-5, "float16": 1e-2, "bfloat16": 1e-2}


@pytest.fixture(scope="session")
def device():
    name = os.environ.get("DLKERNELS_DEVICE", "cpu") or "cpu"
    if name != "auto" and name.split(":")[0] not in dlkernels.available_devices():
        pytest.skip("backend %r is not available in %s (available: %s)"
                    % (name, dlkernels.library_path(), dlkernels.available_devices()))
    return name


@pytest.fixture(scope="session")
def ctx(device):
    c = dlkernels.Context(device)
    assert device == "auto" or c.device == device.split(":")[0]
    return c


@pytest.fixture
def seed(request):
    env = os.environ.get("DLKERNELS_TEST_SEED")
    value = int(env) if env else secrets.randbits(31)
    print("seed=%d (replay with DLKERNELS_TEST_SEED=%d)" % (value, value))
    request.node.user_properties.append(("seed", value))
    return value


def to_f64(a):
    """Any array (NumPy, torch of any dtype) -> NumPy float64."""
    if hasattr(a, "detach"):
        return a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def assert_close(out, ref, dtype, seed, what="output", floor=0.0):
    """‖out − ref‖ / max(‖ref‖, floor) within the dtype's tolerance (absolute when both are 0); NaN never passes.

    `floor` is for outputs that are mathematically zero, where the float64 reference holds only rounding noise
    (layer norm over one element): the norm the error is measured against, at least."""
    tol = TOLERANCE[dtype] if isinstance(dtype, str) else dtype
    o, r = to_f64(out), to_f64(ref)
    assert o.shape == r.shape, "%s: shape %s, expected %s (seed=%d)" % (what, o.shape, r.shape, seed)
    assert not np.isnan(o).any(), "%s: %d NaN (seed=%d)" % (what, int(np.isnan(o).sum()), seed)
    assert np.isfinite(o).all() == np.isfinite(r).all(), "%s: non-finite values (seed=%d)" % (what, seed)
    diff = np.linalg.norm((o - r).ravel())
    norm = max(np.linalg.norm(r.ravel()), floor)
    err = diff / norm if norm > 0 else diff
    assert err <= tol, "%s: relative error %.3g > %.3g (seed=%d)" % (what, err, tol, seed)
