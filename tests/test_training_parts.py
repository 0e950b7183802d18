"""The flat parameter buffer and the training loop's parts: sources, steps, hooks."""

from __future__ import annotations

import copy
import pickle

import numpy as np
import pytest

from deltaflow import DataError, Network, fit
from deltaflow.engine import backprop
from deltaflow.engine import params as flat
from deltaflow.training.batches import ArraySource
from deltaflow.training.hooks import Hook, TrainingState
from deltaflow.training.loop import run
from deltaflow.training.optimizers import SGD, get_optimizer
from deltaflow.training.steps import FusedSgdStep, OptimizerStep, make_step


def data(m=50, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, 4))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1)
    return X, y


# ------------------------------------------------------------------- flat parameters
def test_params_is_one_vector_and_the_layers_are_views_into_it():
    net = Network([4, 5, 3], seed=0)
    assert net.params.shape == (4 * 5 + 5 + 5 * 3 + 3,) == (net.n_params,)
    assert net.params.flags.c_contiguous
    layout = [net.weights[0], net.biases[0], net.weights[1], net.biases[1]]
    assert np.array_equal(np.concatenate([a.ravel() for a in layout]), net.params)
    for a in layout:
        assert a.flags.c_contiguous and np.shares_memory(a, net.params)
    net.weights[1][2, 0] = 7.0
    assert net.params[4 * 5 + 5 + 2 * 3] == 7.0
    net.params[-1] = -3.0
    assert net.biases[1][-1] == -3.0


def test_initialisation_draws_as_before():
    """Glorot uniform per layer, in layer order, cast to the dtype; biases zero."""
    for dtype in ("float32", "float64"):
        net = Network([4, 5, 3], "tanh", dtype=dtype, seed=3)
        rng = np.random.default_rng(3)
        for l, (fan_in, fan_out) in enumerate([(4, 5), (5, 3)]):
            r = np.sqrt(6.0 / (fan_in + fan_out))
            want = rng.uniform(-r, r, size=(fan_in, fan_out)).astype(dtype)
            assert net.weights[l].tobytes() == want.tobytes()
            assert not net.biases[l].any()


def test_the_views_cannot_be_rebound_only_written():
    net = Network([4, 5, 3], seed=0)
    with pytest.raises(TypeError, match=r"views into net.params.*set_params"):
        net.weights[0] = np.zeros((4, 5))
    with pytest.raises(TypeError, match="cannot be rebound"):
        net.biases.append(np.zeros(3))
    with pytest.raises(AttributeError):
        net.weights = []  # type: ignore[misc]


def test_set_params_copies_into_the_buffer_and_checks_shapes():
    net = Network([4, 5, 3], dtype="float32", seed=0)
    buffer = net.params
    W = [np.full((4, 5), 0.5), np.full((5, 3), -1.0)]
    b = [np.arange(5.0), np.ones(3)]
    net.set_params(W, b)
    assert net.params is buffer and net.params.dtype == np.float32
    assert np.array_equal(net.weights[1], W[1]) and np.array_equal(net.biases[0], b[0])
    W[0][0, 0] = 9.0  # a copy, not the caller's array
    assert net.weights[0][0, 0] == 0.5
    with pytest.raises(DataError, match=r"Theta\[2\] has shape \(3, 5\).*\(5, 3\)"):
        net.set_params([W[0], W[1].T], b)
    with pytest.raises(DataError, match="takes 2 weight and 2 bias arrays, got 1 and 2"):
        net.set_params(W[:1], b)


@pytest.mark.parametrize(
    "duplicate", [Network.copy, copy.deepcopy, lambda n: pickle.loads(pickle.dumps(n))]
)
def test_copies_have_their_own_buffer_with_views_into_it(duplicate):
    net = Network([4, 5, 3], seed=0)
    twin = duplicate(net)
    assert twin.params is not net.params and np.array_equal(twin.params, net.params)
    twin.weights[0][...] = 1.0
    assert twin.params[:20].sum() == 20.0 and net.weights[0].sum() != 20.0


def test_copy_to_another_dtype():
    net = Network([4, 5, 3], dtype="float32", seed=0)
    wide = net.copy(dtype="float64")
    assert wide.dtype == np.float64 and wide.params.dtype == np.float64
    assert wide.weights[0].dtype == np.float64 and np.shares_memory(wide.weights[0], wide.params)
    assert np.array_equal(wide.params, net.params.astype(np.float64))


def test_the_gradient_has_the_parameters_layout():
    net = Network([4, 5, 3], "tanh", "cross_entropy", seed=0)
    X, y = data(8)
    ws = backprop.Workspace(net, 8)
    assert ws.grad is not None and ws.grad.shape == net.params.shape
    backprop.forward(net, ws, net.check_X(X))
    backprop.backward(net, ws, net.encode_targets(y, 8)[0])
    dtheta, db = net.gradients(X, y)
    weights, biases = flat.split(ws.grad, net.sizes)
    for got, want in zip(weights + biases, dtheta + db):
        assert np.array_equal(got, want)
    assert all(np.shares_memory(g, ws.grad) for g in ws.dtheta + ws.db)
    assert backprop.Workspace(net, 8, gradients=False).grad is None


# ---------------------------------------------------------------------- batch sources
def test_array_source_serves_every_row_once_per_epoch_in_its_order():
    X = np.arange(23.0)[:, None] * np.ones((1, 4))
    Y = np.arange(23.0)[:, None]
    net = Network([4, 3, 1], seed=0)
    source = ArraySource(X, Y, np.linspace(1, 2, 23))
    ws = backprop.Workspace(net, 5)
    source.bind(ws)
    rng = np.random.default_rng(1)
    orders = []
    for _ in range(2):
        served = []
        for batch in source.epoch(rng):
            rows = source.order[batch.start : batch.start + batch.n]
            assert np.array_equal(batch.ws.a[0][:, 0], rows) and np.array_equal(batch.Y[:, 0], rows)
            assert batch.W is not None and np.array_equal(batch.W, np.linspace(1, 2, 23)[rows])
            served.append(batch.n)
        assert served == [5, 5, 5, 5, 3]
        assert sorted(source.order) == list(range(23))
        orders.append(source.order.copy())
    assert not np.array_equal(orders[0], orders[1])
    assert source.total_weight == pytest.approx(23 * 1.5)

    fixed = ArraySource(X, Y, shuffle=False)
    fixed.bind(ws)
    starts = [b.start for b in fixed.epoch(rng)]
    assert starts == [0, 5, 10, 15, 20] and np.array_equal(fixed.order, np.arange(23))


# ---------------------------------------------------------------------------- steps
def test_make_step_fuses_plain_sgd_only():
    net = Network([4, 5, 3], seed=0)
    assert isinstance(make_step(net, get_optimizer("sgd")), FusedSgdStep)
    assert isinstance(make_step(net, get_optimizer("adam")), OptimizerStep)


def train(step_for, lr, seed=0):
    """Three epochs of run() with the step ``step_for(net)``; the trained network."""
    X, y = data()
    net = Network([4, 6, 3], "tanh", "cross_entropy", seed=seed)
    source = ArraySource(net.check_X(X), net.encode_targets(y, len(y))[0])
    run(net, source, step_for(net), 3, 8, lambda epoch: lr, np.random.default_rng(5))
    return net


def test_the_reduce_seam_sees_the_flat_gradient_before_the_update():
    """Halving the gradient in the seam is the same step as halving the rate (bit for
    bit: scaling by a power of two is exact)."""
    seen = []

    def halve(grad):
        seen.append(grad.shape)
        grad *= 0.5

    halved = train(lambda net: OptimizerStep(net, SGD(), reduce_gradient=halve), 0.4)
    slower = train(lambda net: OptimizerStep(net, SGD()), 0.2)
    assert halved.params.tobytes() == slower.params.tobytes()
    assert seen == [halved.params.shape] * (3 * 7)


def test_the_unfused_sgd_step_matches_the_fused_one():
    fused = train(lambda net: FusedSgdStep(net, SGD()), 0.3)
    unfused = train(lambda net: OptimizerStep(net, SGD()), 0.3)
    np.testing.assert_allclose(unfused.params, fused.params, rtol=1e-12, atol=1e-14)


def test_fit_passes_flat_arrays_to_the_optimizer():
    X, y = data()
    net = Network([4, 6, 3], seed=0)
    opt = get_optimizer("adam")
    fit(net, X, y, optimizer=opt, epochs=1, batch_size=8, learning_rate=0.01)
    assert len(opt.m) == 1 and opt.m[0].shape == net.params.shape and opt.t == 7


# ---------------------------------------------------------------------------- hooks
class Log(Hook):
    def __init__(self, stop_at=None):
        self.moments, self.stop_at = [], stop_at

    def on_train_begin(self, state):
        self.moments.append("train")

    def on_epoch_begin(self, state):
        self.moments.append(f"epoch {state.epoch + 1}")

    def on_batch_end(self, state, batch):
        self.moments.append(batch.n)

    def on_batches_end(self, state):
        self.moments.append("batches done")

    def on_epoch_end(self, state):
        assert state.record is not None and state.history.epoch[-1] == state.epoch + 1
        self.moments.append(f"record {state.record.epoch}")
        if state.epoch + 1 == self.stop_at:
            state.request_stop()

    def on_train_end(self, state):
        self.moments.append("end")


def test_hooks_run_at_their_moments_and_can_stop_the_run():
    X, y = data(20)
    net = Network([4, 6, 3], seed=0)
    source = ArraySource(net.check_X(X), net.encode_targets(y, 20)[0])
    log = Log(stop_at=2)
    step = make_step(net, SGD())
    history = run(net, source, step, 5, 8, lambda e: 0.1, np.random.default_rng(0), [log])
    assert log.moments == [
        "train",
        *("epoch 1", 8, 8, 4, "batches done", "record 1"),
        *("epoch 2", 8, 8, 4, "batches done", "record 2"),
        "end",
    ]
    assert history.epoch == [1, 2] and history.stopped_early


def test_request_stop_in_the_last_epoch_is_not_early():
    state = TrainingState(Network([2, 1], seed=0), epochs=3, epoch=2)
    state.request_stop()
    assert state.stop and not state.history.stopped_early
