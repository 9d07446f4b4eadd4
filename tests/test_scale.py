"""Scale: memory budgets, streamed == dense for every block size and precision, sharding."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrecon as jr
from jaxrecon.features.random_features import PRECISIONS
from jaxrecon.scale import (MARGIN, RUNTIME_BYTES, block_size_for, choose_layout, dense_bytes, parse_bytes,
                            step_bytes)


def test_parse_bytes():
    assert parse_bytes("b", "4GB") == 4 * 10**9
    assert parse_bytes("b", "512MiB") == 512 * 2**20
    assert parse_bytes("b", "1.5e3") == 1500
    assert parse_bytes("b", 2048) == 2048
    for bad in ("4 gigs", "-1GB", "0", "GB", True):
        with pytest.raises(ValueError, match="b: must be"):
            parse_bytes("b", bad)


def test_block_size_for_grows_with_budget_and_rejects_tiny():
    small = block_size_for(3072, 10, 307200, "500MB")
    large = block_size_for(3072, 10, 307200, "2GB")
    assert 128 <= small < large <= 307200 and small % 128 == 0 and large % 128 == 0
    assert MARGIN * step_bytes(3072, 10, 307200, large) <= 2e9
    assert block_size_for(10, 3, 100, "1GB") == 100  # everything fits: one block
    # sharding over 4 devices: each walks p/4 features, so the per-device block may not exceed p/4
    assert block_size_for(3072, 10, 307200, "40GB", shards=4) == 76800
    with pytest.raises(ValueError, match="memory_budget: .* too small .* need at least"):
        block_size_for(3072, 100, 3_072_000, "1MB")


def test_memory_budget_respected_by_compiled_step():
    """XLA's compile-time memory analysis of the streamed gradient step stays within the budget."""
    d, n, p, budget = 768, 8, 61_440, "40MB"
    B = block_size_for(d, n, p, budget)
    assert B < p  # the budget forces streaming
    fmap = jr.RandomFeatures(jax.random.key(0), d, p, block_size=B, dtype="float32")
    theta = jnp.ones((p,), jnp.float32)
    step = jax.jit(jax.value_and_grad(lambda x: jr.projector_loss(fmap, theta, x)))
    mem = step.lower(jax.ShapeDtypeStruct((n, d), jnp.float32)).compile().memory_analysis()
    if mem is None:
        pytest.skip("this backend gives no compile-time memory analysis")
    used = mem.temp_size_in_bytes + mem.argument_size_in_bytes + mem.output_size_in_bytes
    assert used <= parse_bytes("budget", budget), (B, used)
    # ... and a dense V of the same size alone would not fit
    assert p * d * 4 > parse_bytes("budget", budget)


@pytest.mark.parametrize("block,precision", [(b, "highest") for b in (7, 64, 301, 1000)]
                         + [pytest.param(64, prec, marks=pytest.mark.slow)
                            for prec in PRECISIONS if prec != "highest"])
def test_streamed_equals_dense_every_block_and_precision(block, precision):
    d, n, p = 9, 5, 301
    key = jax.random.key(3)
    x = jax.random.normal(jax.random.key(1), (n, d))
    theta = jax.random.normal(jax.random.key(2), (p,))
    dense = jr.RandomFeatures(key, d, p, precision=precision).prepare()
    streamed = jr.RandomFeatures(key, d, p, block_size=block, precision=precision)
    A0, v0 = dense.gram_project(x, theta)
    A1, v1 = jax.jit(lambda x: streamed.gram_project(x, theta))(x)
    grad = lambda f: jax.grad(lambda x: jr.projector_loss(f, theta, x, form="residual"))(x)
    g0, g1 = grad(dense), jax.jit(lambda: grad(streamed))()
    # same operands and rounding; only the summation order over blocks differs
    tol = 1e-5 if precision != "bf16" else 1e-3
    np.testing.assert_allclose(A1, A0, rtol=tol, atol=tol * float(jnp.abs(A0).max()))
    np.testing.assert_allclose(v1, v0, rtol=tol, atol=tol * float(jnp.abs(v0).max()))
    np.testing.assert_allclose(g1, g0, rtol=10 * tol, atol=10 * tol * float(jnp.abs(g0).max()))


def test_precision_changes_numbers_only_within_tolerance():
    """bf16 operands change the kernel by ~1e-2 relative at most; the other options not at all on CPU."""
    d, n, p = 64, 6, 4000
    x = jax.random.normal(jax.random.key(1), (n, d))
    ref = jr.RandomFeatures(jax.random.key(0), d, p).prepare().gram(x, x)
    for precision in PRECISIONS:
        A = jr.RandomFeatures(jax.random.key(0), d, p, precision=precision).prepare().gram(x, x)
        rel = float(jnp.abs(A - ref).max() / jnp.abs(ref).max())
        if precision == "bf16":
            assert 1e-5 < rel < 2e-2, rel  # it does round, and not by much
        elif jax.default_backend() == "cpu":
            assert rel < 1e-6, (precision, rel)


def test_cached_preactivations_same_gradient():
    d, n, p = 9, 5, 301
    x = jax.random.normal(jax.random.key(1), (n, d))
    theta = jax.random.normal(jax.random.key(2), (p,))
    grads = []
    for cache in (False, True):
        f = jr.RandomFeatures(jax.random.key(3), d, p, block_size=50, cache_preactivations=cache)
        grads.append(jax.jit(jax.grad(lambda x: jr.projector_loss(f, theta, x)))(x))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_final_error_unchanged_by_precision():
    """The default method's polish runs at full precision, so a bf16 first phase (operands rounded
    to 8 bits) ends as exact as "highest": error_sign <= 1e-4 for both (documented tolerance). The
    published method has no polish: with bf16 its floor is the rounding (reported, not asserted)."""
    d, n = 8, 3
    data = jr.synthetic(jax.random.key(0), n, d)
    fmap = jr.RandomFeatures(jax.random.key(1), d, 20 * d * n, block_size=200)
    theta = jr.fit(fmap, data.x, data.y)
    errs = {}
    for precision in ("highest", "bf16"):
        target = jr.Target(fmap.replace(precision=precision), theta)
        res = jr.reconstruct_seeds(target, jax.random.key(5), n, 2, steps=1500, progress=False)
        errs[precision] = max(jr.match(data.x, xh).error_sign for xh in res.x_hat)
    assert errs["highest"] <= 1e-4 and errs["bf16"] <= 1e-4, errs


def test_shards_need_streaming_and_devices():
    with pytest.raises(ValueError, match="shards: .*block_size"):
        jr.RandomFeatures(jax.random.key(0), 4, 10, shards=2)
    with pytest.raises(ValueError, match="shards: .*devices requested"):
        jr.RandomFeatures(jax.random.key(0), 4, 10, block_size=5, shards=len(jax.devices()) + 1)
    with pytest.raises(ValueError, match="seed_shards"):
        fmap = jr.RandomFeatures(jax.random.key(0), 4, 10)
        jr.reconstruct_seeds(jr.Target(fmap, jnp.ones(10)), jax.random.key(0), 2, 2, seed_shards=64,
                             progress=False)


SHARDED_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    import jaxrecon as jr
    assert len(jax.devices()) == 4, jax.devices()
    d, n, p = 12, 5, 1000
    key = jax.random.key(3)
    x = jax.random.normal(jax.random.key(1), (n, d))
    theta = jax.random.normal(jax.random.key(2), (p,))
    one = jr.RandomFeatures(key, d, p, block_size=96)
    four = one.replace(shards=4)  # 11 blocks of 96 padded to 12: three per device
    rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    for name, f in [("gram_project", lambda m: m.gram_project(x, theta)),
                    ("features", lambda m: m.features(x)),
                    ("adjoint", lambda m: m.adjoint(x, jnp.arange(n, dtype=jnp.float32))),
                    ("grad", lambda m: jax.grad(lambda z: jr.projector_loss(m, theta, z, form="residual"))(x))]:
        a, b = jax.jit(lambda: f(four))(), jax.jit(lambda: f(one))()
        for u, v in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
            assert rel(u, v) < 1e-6, (name, rel(u, v))
    # one Levenberg-Marquardt direction (linearize + linear_transpose through shard_map)
    import importlib
    R = importlib.import_module("jaxrecon.attack.lm")
    lm = lambda m: R.lm_direction(jr.Target(m, theta), x, jnp.float32(1e-3), 30)[0]
    # 30 CG iterations on an ill-conditioned system amplify the summation order: on ONE device a
    # different block size moves this direction by ~4e-5 relative too
    assert rel(jax.jit(lambda: lm(four))(), jax.jit(lambda: lm(one))()) < 1e-3
    # a whole attack (Adam), features sharded over p, then seeds sharded over devices
    data = jr.synthetic(jax.random.key(0), 4, 8)
    base = jr.RandomFeatures(key, 8, 640, block_size=64)
    th = jr.fit(base, data.x, data.y)
    runs = {}
    for name, fmap, ss in [("one", base, 1), ("p", base.replace(shards=4), 1), ("seeds", base, 4)]:
        res = jr.reconstruct_seeds(jr.Target(fmap, th), jax.random.key(9), 4, 4, steps=60, chunk=30,
                                   progress=False, seed_shards=ss, method="adam")
        runs[name] = res
    for name in ("p", "seeds"):
        assert rel(runs[name].x_hat, runs["one"].x_hat) < 1e-5, (name, rel(runs[name].x_hat, runs["one"].x_hat))
        assert (runs[name].steps == runs["one"].steps).all()
    print("SHARDED OK")
""")


@pytest.mark.slow
def test_sharded_equals_single_device_on_four_cpu_devices(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "SHARDED OK" in out.stdout, out.stderr[-3000:]


def test_cli_memory_budget_and_shards_errors(tmp_path):
    from jaxrecon.runner import ReconstructConfig

    cfg = ReconstructConfig(d=3072, n=10, p_over_dn=10, memory_budget="2GB").resolve()
    assert cfg.stream_block() == block_size_for(3072, 10, 307200, 2 * 10**9 - RUNTIME_BYTES, seeds=4)
    assert cfg.block_size is None
    with pytest.raises(ValueError, match="memory_budget: .* must exceed"):
        ReconstructConfig(d=3072, n=100, p_over_dn=10, memory_budget="1MB").resolve()
    with pytest.raises(ValueError, match="memory_budget: give only one"):
        ReconstructConfig(d=10, n=3, p=100, memory_budget="1GB", block_size=10).resolve()
    with pytest.raises(ValueError, match="shards: .*--block-size or --memory-budget"):
        ReconstructConfig(d=10, n=3, p=100, shards=2).resolve()
    with pytest.raises(ValueError, match="precision: unknown value"):
        ReconstructConfig(d=10, n=3, p=100, precision="fp8").resolve()


@pytest.mark.parametrize("d,n,p,seeds", [(4, 2, 50, 1), (100, 20, 20000, 4), (10, 3, 7, 2)])
def test_too_small_budget_names_the_real_minimum(d, n, p, seeds):
    import re

    from jaxrecon.scale import parse_bytes

    with pytest.raises(ValueError) as e:
        block_size_for(d, n, p, "1B", seeds=seeds)
    need = re.search(r"need at least (\d[\d.]*) (\w+) per device", str(e.value))
    assert need and float(need.group(1)) > 0, str(e.value)
    budget = parse_bytes("b", need.group(1) + need.group(2))
    assert block_size_for(d, n, p, budget, seeds=seeds) >= 1  # the named minimum works
    with pytest.raises(ValueError):
        block_size_for(d, n, p, int(budget * 0.99), seeds=seeds)  # and is close to the real one


GB = 10**9


@pytest.mark.parametrize("free,budget,dense", [
    (24 * GB, "auto", True),  # 4 GB of V and working set fit half of 24 GB
    (8.1 * GB, "auto", True),
    (7.9 * GB, "auto", False),  # ... but not half of 7.9 GB: streamed
    (1 * GB, "auto", False),
    (None, "auto", True),  # free memory unknown: stored
    (1 * GB, "5GB", True),  # an explicit budget is honoured whatever is free
    (100 * GB, "2GB", False),
])
def test_choose_layout_at_fake_free_memory(free, budget, dense):
    d, n, p, seeds = 3072, 10, 307200, 4
    need = dense_bytes(d, n, p, seeds, 4)
    assert 3.9 * GB < need < 4.1 * GB
    lay = choose_layout(p, d, n, seeds, 4, budget, None if free is None else int(free))
    assert lay.dense == dense and (lay.block_size is None) == dense, lay
    if not dense:
        limit = parse_bytes("b", budget) - RUNTIME_BYTES if budget != "auto" else int(free) // 2
        assert lay.block_size == block_size_for(d, n, p, limit, seeds)
        assert MARGIN * step_bytes(d, n, p, lay.block_size, seeds) <= limit
        assert f"blocks of {lay.block_size} rows" in lay.reason
    assert ("auto" in lay.reason) == (budget == "auto")


def test_choose_layout_errors_and_shards():
    with pytest.raises(ValueError, match=r"memory_budget: .* too small .*\(auto: .* give a larger --memory-budget"):
        choose_layout(100000, 4, 2, 1, 4, "auto", 10**6)
    with pytest.raises(ValueError, match="memory_budget: .* must exceed"):
        choose_layout(100000, 4, 2, 1, 4, "100kB", 10**12)
    with pytest.raises(ValueError, match="memory_budget: .* too small"):  # the runtime's share leaves 1 kB
        choose_layout(100000, 4, 2, 1, 4, RUNTIME_BYTES + 1000, 10**12)
    lay = choose_layout(1000, 10, 3, 1, 4, "auto", 10**12, shards=2)  # sharding always streams
    assert not lay.dense and lay.block_size == 500
    assert choose_layout(1000, 10, 3, 1, 8, "auto", 10**12).dense


def test_config_layout_auto_is_the_default_and_old_flags_keep_working():
    from jaxrecon.runner import ReconstructConfig

    cfg = ReconstructConfig(d=3072, n=10, p_over_dn=10).resolve()
    assert cfg.scale.memory_budget == "auto"
    assert cfg.layout(24 * GB).dense and cfg.stream_block(24 * GB) is None
    assert cfg.stream_block(2 * GB) == block_size_for(3072, 10, 307200, GB, seeds=4)
    assert ReconstructConfig(d=10, n=3, p=100, block_size=10).resolve().layout() == (False, 10, "--block-size 10")
    assert ReconstructConfig(d=10, n=3, p=100, memory_budget="1GB").resolve().layout().dense


def test_summary_records_the_memory_layout(capsys):
    from jaxrecon.runner import ReconstructConfig, run_reconstruction

    budget = RUNTIME_BYTES + 3000  # 3 kB for V and the attack: streamed
    cfg = ReconstructConfig(d=4, n=2, p=60, steps=2, seeds=1, method="adam", memory_budget=str(budget))
    summary = run_reconstruction(cfg, progress=False)
    mem = summary["memory"]
    assert mem["dense"] is False and mem["block_size"] == block_size_for(4, 2, 60, 3000)
    assert f"memory: V streamed, block_size={mem['block_size']}" in capsys.readouterr().out


def _gn_pieces(fmap, theta, x, u):
    from jaxrecon.loss import residual_linearization

    lin = residual_linearization(fmap, theta, x)
    return lin.residual, lin.coef, lin.grad, lin.gram_matvec(u)


@pytest.mark.parametrize("activation,block", [("relu", 64), ("relu", 401), ("erf", 100)])
def test_streamed_closed_form_gauss_newton_equals_dense_and_autodiff(activation, block, monkeypatch):
    data = jr.synthetic(jax.random.key(1), 5, 7, dtype="float64")
    dense = jr.RandomFeatures(jax.random.key(2), 7, 401, activation=activation, dtype="float64")
    theta = jr.fit(dense, data.x, data.y)
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape, jnp.float64)
    u = jax.random.normal(jax.random.key(4), x.shape, jnp.float64)
    streamed = dense.replace(block_size=block)
    ref = jax.jit(_gn_pieces)(dense, theta, x, u)
    got = jax.jit(_gn_pieces)(streamed, theta, x, u)
    monkeypatch.setattr(jr.RandomFeatures, "residual_linearization", lambda self, *a, **k: None)
    auto = jax.jit(lambda *a: _gn_pieces(*a))(streamed, theta, x, u)
    for a, b, c in zip(got, ref, auto):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12 * scale)
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=1e-9, atol=1e-12 * scale)


SHARDED_GN_SCRIPT = textwrap.dedent("""
    import jax, jax.numpy as jnp, numpy as np
    jax.config.update("jax_enable_x64", True)
    import jaxrecon as jr
    from jaxrecon.loss import residual_linearization
    assert len(jax.devices()) == 4, jax.devices()
    data = jr.synthetic(jax.random.key(1), 5, 7, dtype="float64")
    dense = jr.RandomFeatures(jax.random.key(2), 7, 401, dtype="float64")
    theta = jr.fit(dense, data.x, data.y)
    x = data.x + 0.3 * jax.random.normal(jax.random.key(3), data.x.shape, jnp.float64)
    u = jax.random.normal(jax.random.key(4), x.shape, jnp.float64)
    def pieces(fmap):
        lin = residual_linearization(fmap, theta, x)
        return lin.residual, lin.coef, lin.grad, lin.gram_matvec(u)
    ref = jax.jit(pieces)(dense)
    got = jax.jit(pieces)(dense.replace(block_size=48, shards=4))  # 9 blocks padded to 12
    for a, b in zip(got, ref):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-12 * float(jnp.max(jnp.abs(b))))
    print("SHARDED GN OK")
""")


def test_sharded_closed_form_gauss_newton_equals_dense_on_four_cpu_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", SHARDED_GN_SCRIPT], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "SHARDED GN OK" in out.stdout, out.stderr[-3000:]


def test_choose_layout_counts_the_split_starts_copy_of_a_prefix():
    """``copied_rows`` (the split start's first stage on the first ``split_features * d * n`` rows
    of ``V``, a copy) adds their bytes to the dense need: a budget that holds ``V`` alone streams
    once the copy is counted; ``ReconstructConfig`` passes it for ``adam-lm-split`` only."""
    from jaxrecon.runner import ReconstructConfig

    d, n, p = 3072, 10, 307200
    alone, copied = dense_bytes(d, n, p, 1, 4), dense_bytes(d, n, p, 1, 4, copied_rows=p // 2)
    assert copied - alone == 4 * (p // 2) * d
    budget = RUNTIME_BYTES + (alone + copied) // 2  # between the two needs
    assert choose_layout(p, d, n, 1, 4, budget, None).dense
    lay = choose_layout(p, d, n, 1, 4, budget, None, copied_rows=p // 2)
    assert not lay.dense and "a copy of 153,600 rows" in lay.reason
    cfg = lambda method, **kw: ReconstructConfig(d=d, n=n, p=p, seeds=1, method=method, **kw)
    assert cfg("adam-lm-split").copied_rows() == 5 * d * n  # split_features = 5 of p = 10 d n
    assert cfg("adam-lm-split", split_features=0).copied_rows() == 0
    assert cfg("adam-lm").copied_rows() == 0
    assert "a copy of 153,600 rows" in cfg("adam-lm-split").layout(free_bytes=100 * GB).reason
