"""dlkernels.optim (sgd_step, adamw_step, adam_step, clip_grad_norm_, zero_grad) against torch.optim.SGD / AdamW / Adam
and torch.nn.utils.clip_grad_norm_ over several steps on the same data: same parameters, same gradients each step,
NumPy and torch containers, odd sizes, every option, parameter groups with a frozen one, and errors."""

import math

import numpy as np
import pytest

import dlkernels
from conftest import assert_close
from dlkernels import optim

torch = pytest.importorskip("torch")

SIZES = [(1,), (7,), (10, 100), (3, 7, 11), (100003,)]
STEPS = 4


def make_params(seed, sizes=SIZES):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g) for s in sizes], g


def wrap(ts, container):
    return [t.numpy() if container == "numpy" else t for t in ts]


def scale_of(*tensors):
    """Both sides compute in fp32 in different orders; an entry that lands near zero after an update is
    ill-conditioned relative to itself, so errors are judged against the norm of what went into it."""
    return float(sum(np.linalg.norm(t.double().numpy()) for t in tensors))


def torch_run(opt_cls, init, grads_per_step, **kw):
    params = [torch.nn.Parameter(p.clone()) for p in init]
    opt = opt_cls(params, **kw)
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()
    return params, opt


SGD_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=1e-2),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=5e-3),
    dict(lr=0.1, weight_decay=0.03),
]


@pytest.mark.parametrize("container", ["numpy", "torch"])
@pytest.mark.parametrize("kw", SGD_CASES, ids=lambda k: ",".join("%s=%s" % i for i in k.items()))
def test_sgd_matches_torch(ctx, seed, container, kw):
    init, g = make_params(seed)
    grads = [[torch.randn(p.shape, generator=g) for p in init] for _ in range(STEPS)]
    ref, opt = torch_run(torch.optim.SGD, init, grads, **kw)
    params = [p.clone() for p in init]
    mine = wrap(params, container)
    bufs = [None] * len(mine)
    for step in grads:
        optim.sgd_step(mine, wrap([x.clone() for x in step], container), bufs, context=ctx, **kw)
    for i, (p, r) in enumerate(zip(mine, ref)):
        grads_i = [step[i] for step in grads]
        assert_close(p, r, "float32", seed, "params[%d]" % i, scale_of(init[i]))
        if kw.get("momentum", 0):
            assert_close(bufs[i], opt.state[r]["momentum_buffer"], "float32", seed, "momentum_buffer[%d]" % i,
                         scale_of(*grads_i))


ADAM_CASES = [
    dict(),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=0.1, betas=(0.5, 0.9), eps=1e-3, weight_decay=0.0),
    dict(lr=3e-3, betas=(0.9, 0.95), weight_decay=0.1),
]


@pytest.mark.parametrize("container", ["numpy", "torch"])
@pytest.mark.parametrize("kw", ADAM_CASES, ids=lambda k: ",".join("%s=%s" % i for i in k.items()) or "defaults")
@pytest.mark.parametrize("kind", ["adamw", "adam"])
def test_adam_matches_torch(ctx, seed, container, kw, kind):
    init, g = make_params(seed)
    grads = [[torch.randn(p.shape, generator=g) * (1 if s % 2 == 0 else 0.3) for p in init] for s in range(STEPS)]
    cls = torch.optim.AdamW if kind == "adamw" else torch.optim.Adam
    kw = dict(kw)
    if kind == "adam" and "weight_decay" not in kw:
        kw["weight_decay"] = 0.02
    ref, opt = torch_run(cls, init, grads, **kw)
    mine = wrap([p.clone() for p in init], container)
    zeros = lambda: wrap([torch.zeros_like(p) for p in init], container)  # noqa: E731
    m, v, vmax = zeros(), zeros(), zeros()
    fn = optim.adamw_step if kind == "adamw" else optim.adam_step
    amsgrad = kw.pop("amsgrad", False)
    for step, gs in enumerate(grads, 1):
        fn(mine, wrap(gs, container), m, v, step=step, amsgrad=amsgrad, max_exp_avg_sqs=vmax if amsgrad else None,
           context=ctx, **kw)
    for i, (p, r) in enumerate(zip(mine, ref)):
        st = opt.state[r]
        assert_close(p, r, "float32", seed, "params[%d]" % i, scale_of(init[i]))
        assert_close(m[i], st["exp_avg"], "float32", seed, "exp_avg[%d]" % i, 0.1 * scale_of(*[s_[i] for s_ in grads]))
        assert_close(v[i], st["exp_avg_sq"], "float32", seed, "exp_avg_sq[%d]" % i)
        if amsgrad:
            assert_close(vmax[i], st["max_exp_avg_sq"], "float32", seed, "max_exp_avg_sq[%d]" % i)


def test_param_groups_with_frozen_backbone(ctx, seed):
    """torch param groups: backbone frozen (not in the optimizer at all), head at lr 1e-2, neck at lr 1e-3 and its
    own weight decay; dlkernels: one call with tensor_group = -1 for the backbone."""
    init, g = make_params(seed, [(50, 3), (3,), (20, 7), (7,), (33,)])
    groups = [-1, -1, 0, 0, 1]
    grads = [[torch.randn(p.shape, generator=g) for p in init] for _ in range(STEPS)]
    params = [torch.nn.Parameter(p.clone()) for p in init]
    opt = torch.optim.AdamW([{"params": params[2:4], "lr": 1e-2},
                             {"params": params[4:], "lr": 1e-3, "weight_decay": 0.5}], weight_decay=0.01)
    for gs in grads:
        for p, gg in zip(params, gs):
            p.grad = gg.clone()
        opt.step()
    mine = [p.clone() for p in init]
    m = [torch.zeros_like(p) for p in init]
    v = [torch.zeros_like(p) for p in init]
    for step, gs in enumerate(grads, 1):
        optim.adamw_step(mine, gs, m, v, step=step, weight_decay=0.01, tensor_group=groups, group_lr=[1e-2, 1e-3],
                         group_weight_decay=[0.01, 0.5], context=ctx)
    for i in range(len(init)):
        if groups[i] < 0:
            assert torch.equal(mine[i], init[i]) and not m[i].any() and not v[i].any(), "frozen tensor %d moved" % i
        else:
            assert_close(mine[i], params[i], "float32", seed, "params[%d]" % i)
    # SGD with momentum, same groups.
    params = [torch.nn.Parameter(p.clone()) for p in init]
    opt = torch.optim.SGD([{"params": params[2:4], "lr": 0.1}, {"params": params[4:], "lr": 0.02}], lr=0.5,
                          momentum=0.9)
    for gs in grads:
        for p, gg in zip(params, gs):
            p.grad = gg.clone()
        opt.step()
    mine = [p.clone() for p in init]
    bufs = [None] * len(init)
    for gs in grads:
        optim.sgd_step(mine, gs, bufs, lr=0.5, momentum=0.9, tensor_group=groups, group_lr=[0.1, 0.02], context=ctx)
    for i in range(len(init)):
        if groups[i] < 0:
            assert torch.equal(mine[i], init[i]) and not bufs[i].any(), "frozen tensor %d moved" % i
        else:
            assert_close(mine[i], params[i], "float32", seed, "sgd params[%d]" % i)


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("ratio", [0.3, 3.0])
def test_clip_grad_norm_matches_torch(ctx, seed, norm_type, ratio):
    init, g = make_params(seed)
    params = [torch.nn.Parameter(torch.zeros_like(p)) for p in init]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    grads = [p.grad.clone() for p in params]
    total = float(torch.nn.utils.clip_grad_norm_(params, 1.0, norm_type=norm_type, error_if_nonfinite=False))
    for p in params:
        p.grad = None
    # Same call with max_norm = ratio * total: clipped when ratio < 1.
    params = [torch.nn.Parameter(torch.zeros_like(p)) for p in init]
    for p, gg in zip(params, grads):
        p.grad = gg.clone()
    ref_total = float(torch.nn.utils.clip_grad_norm_(params, ratio * total, norm_type=norm_type))
    mine = [gg.clone().numpy() for gg in grads]
    got = optim.clip_grad_norm_(mine, ratio * total, norm_type=norm_type, context=ctx)
    # torch sums in fp32 (about 1e-5 off on 1e5 elements); the library in fp64: compare with both.
    flat = np.concatenate([gg.double().numpy().ravel() for gg in grads])
    exact = float(np.abs(flat).max() if math.isinf(norm_type) else np.linalg.norm(flat, ord=norm_type))
    assert got == pytest.approx(exact, rel=1e-6)
    assert got == pytest.approx(ref_total, rel=2e-5)
    coef = min(1.0, ratio * total / (got + 1e-6))
    for i, (a, p) in enumerate(zip(mine, params)):
        if ratio >= 1:
            assert np.array_equal(a, grads[i].numpy()), "gradient %d changed below max_norm" % i
        assert_close(a, grads[i].double() * coef, "float32", seed, "grads[%d]" % i)
        assert_close(a, p.grad, 2e-5, seed, "grads[%d] vs torch" % i)


def test_clip_takes_parameters_with_grad(ctx, seed):
    init, g = make_params(seed, [(4, 5), (9,)])
    params = [torch.nn.Parameter(p.clone()) for p in init]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g) * 10
    ref = [p.grad.clone() for p in params]
    no_grad = torch.nn.Parameter(torch.ones(3))  # skipped, as torch skips parameters without a gradient
    total = optim.clip_grad_norm_(params + [no_grad], 1.0, context=ctx)
    assert torch.equal(no_grad.detach(), torch.ones(3))
    expect = float(torch.norm(torch.stack([torch.norm(r) for r in ref])))
    assert total == pytest.approx(expect, rel=1e-6)
    assert float(torch.norm(torch.cat([p.grad.flatten() for p in params]))) == pytest.approx(1.0, rel=1e-5)


def test_zero_grad(ctx, seed):
    rng = np.random.default_rng(seed)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(1,), (7, 3), (100003,)]]
    arrays.append(rng.integers(1, 100, 13).astype(np.uint8))
    t = torch.randn(5, 5, dtype=torch.bfloat16)
    optim.zero_grad(arrays + [t], context=ctx)
    assert all(not a.any() for a in arrays) and not t.any()


def test_errors(ctx):
    p = [np.ones(8, np.float32), np.ones(3, np.float32)]
    m = [np.zeros(8, np.float32), np.zeros(3, np.float32)]
    v = [np.zeros(8, np.float32), np.zeros(3, np.float32)]
    with pytest.raises(dlkernels.Error, match=r"grads\[1\]"):
        optim.adamw_step(p, [np.ones(8, np.float32), np.ones(4, np.float32)], m, v, step=1, context=ctx)
    with pytest.raises(dlkernels.Error, match="lr"):
        optim.sgd_step(p, p, None, lr=-1.0, context=ctx)
    with pytest.raises(dlkernels.Error, match="beta1"):
        optim.adamw_step(p, p, m, v, step=1, betas=(math.nan, 0.9), context=ctx)
    with pytest.raises(dlkernels.Error, match="eps"):
        optim.adamw_step(p, p, m, v, step=1, eps=0.0, context=ctx)
    with pytest.raises(dlkernels.Error, match="step"):
        optim.adamw_step(p, p, m, v, step=0, context=ctx)
    with pytest.raises(dlkernels.Error, match="float32"):
        optim.sgd_step([np.ones(3)], [np.ones(3)], None, lr=0.1, context=ctx)
    with pytest.raises(ValueError, match="contiguous"):
        optim.sgd_step([np.ones((4, 4), np.float32)[:, 1]], [np.ones(4, np.float32)], None, lr=0.1, context=ctx)
    assert np.array_equal(p[0], np.ones(8, np.float32)) and not m[0].any()
